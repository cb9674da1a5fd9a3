//! ctnetlink events: a NETLINK_NETFILTER socket subscribed to the
//! conntrack multicast groups (NFNLGRP_CONNTRACK_NEW, _UPDATE, _DESTROY) of
//! the calling thread's network namespace. Messages are decoded with the
//! dump codec ([`crate::decode::decode_entry`]).
//!
//! Lost events are reported, never hidden: the socket keeps the kernel's
//! ENOBUFS (NETLINK_NO_ENOBUFS stays off), and [`Poll::lost`] tells the
//! caller to resynchronise with a dump. The receive buffer is raised past
//! `rmem_max` with SO_RCVBUFFORCE when the caller has CAP_NET_ADMIN.
//!
//! The kernel sends events only while `net.netfilter.nf_conntrack_events`
//! is 1, or 2 (the default on recent kernels) once a listener exists; an
//! entry allocated while nobody listened has no event extension and never
//! sends UPDATE or DESTROY (KERNEL.md section 12).

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use ctmodel::Entry;
pub use ctmodel::flows::EventKind;
use netlink_sys::Socket;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{setsockopt, sockopt};

use crate::codec::{Message, Messages};
use crate::consts::*;
use crate::decode::decode_entry;
use crate::error::{DecodeError, Error};

/// Which event groups to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Groups {
    pub new: bool,
    pub update: bool,
    pub destroy: bool,
}

impl Groups {
    pub const ALL: Groups = Groups {
        new: true,
        update: true,
        destroy: true,
    };
}

/// What one [`Events::poll`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Poll {
    /// Events decoded and handed to the callback.
    pub events: u64,
    /// Event messages that did not decode (counted, first error kept).
    pub malformed: u64,
    pub first_malformed: Option<DecodeError>,
    /// The kernel dropped events for this socket (ENOBUFS): whatever the
    /// caller keeps from events is incomplete until it dumps again.
    pub lost: bool,
}

/// Receive buffer asked for: at 100,000 new flows/s (about 3 events each,
/// 250-300 bytes of skb truesize per event... plus overhead) 64 MiB holds
/// well over a second of events if the reader stalls.
pub const DEFAULT_RCVBUF: usize = 64 << 20;
const RECV_BUF: usize = 64 * 1024;
/// Datagrams read per poll before returning to the caller, so a flood
/// cannot starve the caller's own clock.
const DRAIN_MAX: usize = 16_384;

pub struct Events {
    sock: Socket,
    buf: Vec<u8>,
    rcvbuf: usize,
}

/// NFNLGRP_CONNTRACK_* numbers (include/uapi/linux/netfilter/nfnetlink.h).
const NFNLGRP_CONNTRACK_NEW: u32 = 1;
const NFNLGRP_CONNTRACK_UPDATE: u32 = 2;
const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;

/// The event a message carries: DELETE is a destroy; NEW with
/// NLM_F_CREATE|NLM_F_EXCL a new entry; NEW without them an update
/// (ctnetlink_conntrack_event in net/netfilter/nf_conntrack_netlink.c).
pub fn event_kind(msg: &Message<'_>) -> Option<EventKind> {
    match msg.kind {
        k if k == ctnl_msg(IPCTNL_MSG_CT_DELETE) => Some(EventKind::Destroy),
        k if k == ctnl_msg(IPCTNL_MSG_CT_NEW) => {
            if msg.flags & (NLM_F_CREATE | NLM_F_EXCL) == NLM_F_CREATE | NLM_F_EXCL {
                Some(EventKind::New)
            } else {
                Some(EventKind::Update)
            }
        }
        _ => None,
    }
}

/// Decode the event messages of one datagram into `f`; other messages
/// are skipped, malformed ones counted in `out`.
pub fn decode_datagram(data: &[u8], out: &mut Poll, f: &mut impl FnMut(EventKind, &Entry)) {
    for msg in Messages::new(data) {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                out.malformed += 1;
                out.first_malformed.get_or_insert(e);
                break;
            }
        };
        let Some(kind) = event_kind(&msg) else {
            continue;
        };
        match decode_entry(msg.payload) {
            Ok(e) => {
                out.events += 1;
                f(kind, &e);
            }
            Err(e) => {
                out.malformed += 1;
                out.first_malformed.get_or_insert(e);
            }
        }
    }
}

impl Events {
    /// Subscribe in the calling thread's network namespace.
    pub fn subscribe(groups: Groups) -> Result<Self, Error> {
        Self::subscribe_with_buffer(groups, DEFAULT_RCVBUF)
    }

    pub fn subscribe_with_buffer(groups: Groups, rcvbuf: usize) -> Result<Self, Error> {
        let what = "subscribing to ctnetlink events";
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|e| Error::from_io(what, e))?;
        sock.bind_auto().map_err(|e| Error::from_io(what, e))?;
        let want = i32::try_from(rcvbuf).unwrap_or(i32::MAX) as usize;
        // SO_RCVBUFFORCE needs CAP_NET_ADMIN (which joining the groups
        // needs anyway); fall back to SO_RCVBUF, capped at rmem_max.
        if setsockopt(&sock.as_fd(), sockopt::RcvBufForce, &want).is_err() {
            let _ = setsockopt(&sock.as_fd(), sockopt::RcvBuf, &want);
        }
        for (on, group) in [
            (groups.new, NFNLGRP_CONNTRACK_NEW),
            (groups.update, NFNLGRP_CONNTRACK_UPDATE),
            (groups.destroy, NFNLGRP_CONNTRACK_DESTROY),
        ] {
            if on {
                sock.add_membership(group)
                    .map_err(|e| Error::from_io(what, e))?;
            }
        }
        sock.set_non_blocking(true)
            .map_err(|e| Error::from_io(what, e))?;
        let rcvbuf = sock.get_rx_buf_sz().unwrap_or(0);
        Ok(Self {
            sock,
            buf: vec![0; RECV_BUF],
            rcvbuf,
        })
    }

    /// The receive buffer the kernel granted, in bytes (it doubles the request).
    pub fn receive_buffer(&self) -> usize {
        self.rcvbuf
    }

    /// Wait up to `timeout` for events, then read what is queued (at most
    /// a bounded number of datagrams, or until `timeout` has passed),
    /// calling `f` for each. Returns with `events == 0` on a timeout.
    pub fn poll(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(EventKind, &Entry),
    ) -> Result<Poll, Error> {
        let what = "reading ctnetlink events";
        let deadline = Instant::now() + timeout;
        let mut out = Poll::default();
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| {
            for _ in 0..DRAIN_MAX {
                match self.sock.recv(&mut &mut buf[..], 0) {
                    Ok(n) => decode_datagram(&buf[..n.min(buf.len())], &mut out, &mut f),
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => out.lost = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if out.events > 0 || out.lost || left.is_zero() {
                            return Ok(());
                        }
                        self.wait(left)?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
                    Err(e) => return Err(Error::from_io(what, e)),
                }
            }
            Ok(())
        })();
        self.buf = buf;
        result.map(|()| out)
    }

    /// Block until the socket is readable or `left` passes.
    fn wait(&self, left: Duration) -> Result<(), Error> {
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(Error::from_errno("waiting for ctnetlink events", e as i32)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::MessageBuilder;
    use proptest::prelude::*;

    fn message(kind: u16, flags: u16) -> Vec<u8> {
        let mut b = MessageBuilder::new(Vec::new(), kind, flags, 0, libc::AF_INET as u8);
        for (tuple, (src, dst), (sport, dport)) in [
            (
                CTA_TUPLE_ORIG,
                ([10, 0, 0, 1], [10, 0, 0, 2]),
                (1234u16, 53u16),
            ),
            (CTA_TUPLE_REPLY, ([10, 0, 0, 2], [10, 0, 0, 1]), (53, 1234)),
        ] {
            b.begin(tuple)
                .begin(CTA_TUPLE_IP)
                .attr(CTA_IP_V4_SRC, &src)
                .attr(CTA_IP_V4_DST, &dst)
                .end()
                .begin(CTA_TUPLE_PROTO)
                .attr(CTA_PROTO_NUM, &[17])
                .attr(CTA_PROTO_SRC_PORT, &sport.to_be_bytes())
                .attr(CTA_PROTO_DST_PORT, &dport.to_be_bytes())
                .end()
                .end();
        }
        b.attr(CTA_ID, &7u32.to_be_bytes());
        b.finish()
    }

    fn decode(data: &[u8]) -> (Poll, Vec<(EventKind, Entry)>) {
        let mut out = Poll::default();
        let mut seen = Vec::new();
        decode_datagram(data, &mut out, &mut |k, e| seen.push((k, e.clone())));
        (out, seen)
    }

    #[test]
    fn kinds_follow_type_and_flags() {
        let new = message(ctnl_msg(IPCTNL_MSG_CT_NEW), NLM_F_CREATE | NLM_F_EXCL);
        let upd = message(ctnl_msg(IPCTNL_MSG_CT_NEW), 0);
        let del = message(ctnl_msg(IPCTNL_MSG_CT_DELETE), 0);
        let other = message(ctnl_msg(IPCTNL_MSG_CT_GET_STATS), 0);
        let all = [new, upd, del, other].concat();
        let (out, seen) = decode(&all);
        assert_eq!(out.events, 3);
        assert_eq!(out.malformed, 0);
        let kinds: Vec<EventKind> = seen.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [EventKind::New, EventKind::Update, EventKind::Destroy]
        );
        assert_eq!(seen[0].1.id, Some(7));
        assert_eq!(seen[0].1.orig.dport(), Some(53));
    }

    #[test]
    fn truncated_datagram_is_counted_not_fatal() {
        let new = message(ctnl_msg(IPCTNL_MSG_CT_NEW), NLM_F_CREATE | NLM_F_EXCL);
        for cut in 0..new.len() {
            let (out, seen) = decode(&new[..cut]);
            assert!(seen.is_empty() || out.malformed == 0, "cut at {cut}");
        }
        let (out, _) = decode(&new[..new.len() - 3]);
        assert_eq!(out.malformed, 1);
    }

    proptest! {
        #[test]
        fn random_datagrams_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(&data);
        }

        #[test]
        fn mutated_events_never_panic(at in 0usize..200, byte in any::<u8>()) {
            let mut m = message(ctnl_msg(IPCTNL_MSG_CT_NEW), NLM_F_CREATE | NLM_F_EXCL);
            let i = at % m.len();
            m[i] = byte;
            let _ = decode(&m);
        }
    }
}
