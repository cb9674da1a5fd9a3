//! The ctnetlink client: one NETLINK_NETFILTER socket bound to the network
//! namespace of the thread that opened it (see [`crate::netns`]). Dumps
//! stream entries to a callback so memory stays flat whatever the table size.

use ctmodel::Entry;
use netlink_sys::Socket;
use nix::sys::socket::{setsockopt, sockopt};
use std::os::fd::AsFd;

use crate::codec::{Message, MessageBuilder, Messages};
use crate::consts::*;
use crate::decode::{self, CpuStats, GlobalStats};
use crate::encode;
use crate::error::{DecodeError, Error};

/// Which address families a dump covers (`nfgenmsg.nfgen_family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// AF_UNSPEC: IPv4 and IPv6 in one dump.
    Any,
    Ipv4,
    Ipv6,
}

impl Family {
    fn number(self) -> u8 {
        match self {
            Self::Any => libc::AF_UNSPEC as u8,
            Self::Ipv4 => libc::AF_INET as u8,
            Self::Ipv6 => libc::AF_INET6 as u8,
        }
    }
}

/// What a dump saw besides the entries it delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpSummary {
    pub entries: u64,
    /// Entry messages that did not decode (counted, first error kept).
    pub malformed: u64,
    pub first_malformed: Option<DecodeError>,
    /// NLM_F_DUMP_INTR was set: the table changed while it was walked, so
    /// the dump may have missed or repeated entries.
    pub interrupted: bool,
}

/// Outcome of a batch of create or delete requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub ok: u64,
    /// (errno, count), e.g. EEXIST for duplicates, ENOSPC for a full chain.
    pub failed: Vec<(i32, u64)>,
}

impl BatchReport {
    fn fail(&mut self, errno: i32) {
        match self.failed.iter_mut().find(|(e, _)| *e == errno) {
            Some((_, n)) => *n += 1,
            None => self.failed.push((errno, 1)),
        }
    }

    pub fn failures(&self) -> u64 {
        self.failed.iter().map(|(_, n)| n).sum()
    }
}

/// Outcome of [`Conntrack::delete_exact`]: every request is counted once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteReport {
    pub deleted: u64,
    /// ENOENT: gone already (expired, deleted by someone else) or
    /// re-created since the dump (another CTA_ID).
    pub gone: u64,
    /// Other errors, (errno, count).
    pub failed: Vec<(i32, u64)>,
}

impl DeleteReport {
    pub fn failures(&self) -> u64 {
        self.failed.iter().map(|(_, n)| n).sum()
    }
}

/// Delete requests per sendmsg: 1024 x ~90 bytes stays under the default
/// socket send buffer (212 KiB; netlink_sendmsg refuses a larger message),
/// and 1024 error answers fit the forced receive buffer.
const DELETE_BATCH: usize = 1024;
const DELETE_RCVBUF: usize = 8 << 20;

/// Requests in one datagram; stays well under the socket send buffer.
const BATCH: usize = 256;
const RECV_BUF: usize = 256 * 1024;

pub struct Conntrack {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
    /// The requests of a delete batch, kept between calls.
    delete_buf: Vec<u8>,
    /// The receive buffer was raised to [`DELETE_RCVBUF`] for deletes.
    delete_rcvbuf: bool,
}

/// The errno in an NLMSG_ERROR payload (negative in the kernel's int).
fn ack_errno(msg: &Message<'_>) -> Result<i32, DecodeError> {
    let b: [u8; 4] = msg
        .payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(DecodeError::Truncated("nlmsgerr"))?;
    Ok(-i32::from_ne_bytes(b))
}

/// The netlink control messages that end or fail a request, handled the
/// same way for every request: `Some(Ok(true))` done (NLMSG_DONE or an ACK),
/// `Some(Err)` the kernel's error, `Some(Ok(false))` skip (NLMSG_NOOP),
/// `None` a data message for the caller.
fn control(what: &'static str, msg: &Message<'_>) -> Option<Result<bool, Error>> {
    Some(match msg.kind {
        // NLMSG_DONE carries the dump callback's final int; < 0 is an error.
        NLMSG_DONE => match ack_errno(msg) {
            Ok(errno) if errno > 0 => Err(Error::from_errno(what, errno)),
            _ => Ok(true),
        },
        NLMSG_ERROR => match ack_errno(msg) {
            Ok(0) => Ok(true),
            Ok(errno) => Err(Error::from_errno(what, errno)),
            Err(source) => Err(Error::Decode { what, source }),
        },
        NLMSG_NOOP => Ok(false),
        NLMSG_OVERRUN => Err(Error::Overrun { what }),
        _ => return None,
    })
}

/// Whether a datagram holds the last message of request `seq` (its
/// NLMSG_DONE or NLMSG_ERROR), or cannot be read at all.
fn ends_request(data: &[u8], seq: u32) -> bool {
    Messages::new(data).any(|m| match m {
        Ok(m) => m.seq == seq && matches!(m.kind, NLMSG_DONE | NLMSG_ERROR | NLMSG_OVERRUN),
        Err(_) => true,
    })
}

impl Conntrack {
    /// Open a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, Error> {
        let what = "opening NETLINK_NETFILTER socket";
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|e| Error::from_io(what, e))?;
        sock.bind_auto().map_err(|e| Error::from_io(what, e))?;
        // Best effort: a larger buffer only matters for big create batches.
        let _ = sock.set_rx_buf_sz(4 << 20);
        let _ = sock.set_cap_ack(true);
        Ok(Self {
            sock,
            seq: 1,
            buf: vec![0; RECV_BUF],
            delete_buf: Vec::with_capacity(DELETE_BATCH * 96),
            delete_rcvbuf: false,
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Build and send a request without attributes; returns its sequence number.
    fn request(
        &mut self,
        what: &'static str,
        msg: u16,
        flags: u16,
        family: u8,
    ) -> Result<u32, Error> {
        let seq = self.next_seq();
        let req = MessageBuilder::new(Vec::new(), ctnl_msg(msg), flags, seq, family).finish();
        self.send(what, &req)?;
        Ok(seq)
    }

    fn send(&self, what: &'static str, bytes: &[u8]) -> Result<(), Error> {
        self.sock
            .send(bytes, 0)
            .map_err(|e| Error::from_io(what, e))?;
        Ok(())
    }

    /// Receive datagrams and hand each message of sequence `seq` to `on_msg`
    /// until it returns `Ok(true)` (done).
    fn receive(
        &mut self,
        what: &'static str,
        seq: u32,
        mut on_msg: impl FnMut(&Message<'_>) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| loop {
            let n = self
                .sock
                .recv(&mut &mut buf[..], 0)
                .map_err(|e| Error::from_io(what, e))?;
            let data = buf.get(..n).ok_or(Error::Decode {
                what,
                source: DecodeError::Truncated("datagram larger than the receive buffer"),
            })?;
            for msg in Messages::new(data) {
                let msg = msg.map_err(|source| Error::Decode { what, source })?;
                if msg.seq != seq {
                    continue; // a late answer to an earlier request
                }
                if on_msg(&msg)? {
                    return Ok(());
                }
            }
        })();
        self.buf = buf;
        result
    }

    /// Like [`Self::receive`], but a second thread does the `recv` calls so
    /// that decoding overlaps with the kernel filling the next datagram: a
    /// dump then costs about what the kernel spends, not kernel plus decode.
    /// The receiving thread stops by itself at the request's NLMSG_DONE or
    /// NLMSG_ERROR, so it never blocks on a socket that has nothing more.
    fn receive_pipelined(
        &mut self,
        what: &'static str,
        seq: u32,
        mut on_msg: impl FnMut(&Message<'_>) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        use std::sync::mpsc;
        let sock = &self.sock;
        std::thread::scope(|s| {
            let (full_tx, full_rx) = mpsc::sync_channel::<std::io::Result<(Vec<u8>, usize)>>(8);
            let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
            s.spawn(move || {
                loop {
                    let mut buf = free_rx.try_recv().unwrap_or_else(|_| vec![0; RECV_BUF]);
                    let got = sock.recv(&mut &mut buf[..], 0).map(|n| n.min(buf.len()));
                    let last = match &got {
                        Ok(n) => ends_request(&buf[..*n], seq),
                        Err(_) => true,
                    };
                    if full_tx.send(got.map(|n| (buf, n))).is_err() || last {
                        break;
                    }
                }
            });
            for got in full_rx {
                let (buf, n) = got.map_err(|e| Error::from_io(what, e))?;
                for msg in Messages::new(&buf[..n]) {
                    let msg = msg.map_err(|source| Error::Decode { what, source })?;
                    if msg.seq == seq && on_msg(&msg)? {
                        return Ok(());
                    }
                }
                let _ = free_tx.send(buf);
            }
            Err(Error::Decode {
                what,
                source: DecodeError::Missing("NLMSG_DONE"),
            })
        })
    }

    /// Dump the table of this namespace, calling `f` for every entry.
    pub fn dump(&mut self, family: Family, f: impl FnMut(&Entry)) -> Result<DumpSummary, Error> {
        let what = "ctnetlink dump (IPCTNL_MSG_CT_GET)";
        let seq = self.request(
            what,
            IPCTNL_MSG_CT_GET,
            NLM_F_REQUEST | NLM_F_DUMP,
            family.number(),
        )?;
        self.dump_replies(what, seq, f)
    }

    /// Dump only the entries whose `mark & mask == mark`, filtered by the
    /// kernel (CTA_MARK + CTA_MARK_MASK in the request, ctnetlink_filter_match;
    /// needs CONFIG_NF_CONNTRACK_MARK): the others are never copied out.
    pub fn dump_marked(
        &mut self,
        family: Family,
        mark: u32,
        mask: u32,
        f: impl FnMut(&Entry),
    ) -> Result<DumpSummary, Error> {
        let what = "ctnetlink dump by mark (IPCTNL_MSG_CT_GET, CTA_MARK)";
        let seq = self.next_seq();
        let mut b = MessageBuilder::new(
            Vec::new(),
            ctnl_msg(IPCTNL_MSG_CT_GET),
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            family.number(),
        );
        b.attr(CTA_MARK, &mark.to_be_bytes())
            .attr(CTA_MARK_MASK, &mask.to_be_bytes());
        self.send(what, &b.finish())?;
        self.dump_replies(what, seq, f)
    }

    /// Dump only the entries of L4 protocol `proto` (a CTA_FILTER on the
    /// original tuple's CTA_PROTO_NUM, kernel 5.8+): the kernel still walks
    /// the table but copies out only the matches. `family` must be Ipv4 or
    /// Ipv6 (the kernel parses the filter tuple for one family).
    pub fn dump_l4(
        &mut self,
        family: Family,
        proto: u8,
        f: impl FnMut(&Entry),
    ) -> Result<DumpSummary, Error> {
        let what = "ctnetlink dump by protocol (IPCTNL_MSG_CT_GET, CTA_FILTER)";
        let seq = self.next_seq();
        let mut b = MessageBuilder::new(
            Vec::new(),
            ctnl_msg(IPCTNL_MSG_CT_GET),
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            family.number(),
        );
        b.begin(CTA_TUPLE_ORIG)
            .begin(CTA_TUPLE_PROTO)
            .attr(CTA_PROTO_NUM, &[proto])
            .end()
            .end();
        b.begin(CTA_FILTER)
            .attr(
                CTA_FILTER_ORIG_FLAGS,
                &CTA_FILTER_F_CTA_PROTO_NUM.to_ne_bytes(),
            )
            .end();
        self.send(what, &b.finish())?;
        self.dump_replies(what, seq, f)
    }

    fn dump_replies(
        &mut self,
        what: &'static str,
        seq: u32,
        mut f: impl FnMut(&Entry),
    ) -> Result<DumpSummary, Error> {
        let mut summary = DumpSummary::default();
        self.receive_pipelined(what, seq, |msg| {
            if msg.flags & NLM_F_DUMP_INTR != 0 {
                summary.interrupted = true;
            }
            if let Some(done) = control(what, msg) {
                return done;
            }
            match decode::decode_entry(msg.payload) {
                Ok(e) => {
                    summary.entries += 1;
                    f(&e);
                }
                Err(err) => {
                    summary.malformed += 1;
                    summary.first_malformed.get_or_insert(err);
                }
            }
            Ok(false)
        })?;
        Ok(summary)
    }

    /// Dump into a vector (for tests and small tables).
    pub fn dump_all(&mut self, family: Family) -> Result<(Vec<Entry>, DumpSummary), Error> {
        let mut v = Vec::new();
        let s = self.dump(family, |e| v.push(e.clone()))?;
        Ok((v, s))
    }

    /// Bytes of a dump without decoding anything: the kernel's cost, used
    /// as the floor in benchmarks. Returns (messages, bytes).
    pub fn dump_raw(&mut self, family: Family) -> Result<(u64, u64), Error> {
        let what = "ctnetlink dump (IPCTNL_MSG_CT_GET)";
        let seq = self.request(
            what,
            IPCTNL_MSG_CT_GET,
            NLM_F_REQUEST | NLM_F_DUMP,
            family.number(),
        )?;
        let (mut msgs, mut bytes) = (0u64, 0u64);
        self.receive(what, seq, |msg| {
            msgs += 1;
            bytes += msg.payload.len() as u64;
            Ok(msg.kind == NLMSG_DONE || msg.kind == NLMSG_ERROR)
        })?;
        Ok((msgs, bytes))
    }

    /// Per-CPU statistics (IPCTNL_MSG_CT_GET_STATS_CPU, a dump: one
    /// message per possible CPU).
    pub fn stats_cpu(&mut self) -> Result<Vec<CpuStats>, Error> {
        let what = "ctnetlink per-CPU stats (IPCTNL_MSG_CT_GET_STATS_CPU)";
        let seq = self.request(
            what,
            IPCTNL_MSG_CT_GET_STATS_CPU,
            NLM_F_REQUEST | NLM_F_DUMP,
            libc::AF_UNSPEC as u8,
        )?;
        let mut out = Vec::new();
        self.receive(what, seq, |msg| {
            if let Some(done) = control(what, msg) {
                return done;
            }
            let s = decode::decode_cpu_stats(msg.payload)
                .map_err(|source| Error::Decode { what, source })?;
            out.push(s);
            Ok(false)
        })?;
        Ok(out)
    }

    /// Count of this namespace and the global max (IPCTNL_MSG_CT_GET_STATS,
    /// kernel 4.18+). Its reply has NLM_F_MULTI but no NLMSG_DONE, so the
    /// request asks for an ACK and reading stops there.
    pub fn stats(&mut self) -> Result<GlobalStats, Error> {
        let what = "ctnetlink stats (IPCTNL_MSG_CT_GET_STATS)";
        let seq = self.request(
            what,
            IPCTNL_MSG_CT_GET_STATS,
            NLM_F_REQUEST | NLM_F_ACK,
            libc::AF_UNSPEC as u8,
        )?;
        let mut stats = None;
        self.receive(what, seq, |msg| {
            if let Some(done) = control(what, msg) {
                return done;
            }
            let s = decode::decode_global_stats(msg.payload)
                .map_err(|source| Error::Decode { what, source })?;
            stats = Some(s);
            Ok(false)
        })?;
        stats.ok_or(Error::Decode {
            what,
            source: DecodeError::Missing("IPCTNL_MSG_CT_GET_STATS reply"),
        })
    }

    /// Read the answers (NLMSG_ERROR: errno 0 is an ACK) to the requests
    /// numbered `first..first + sent` of one sendmsg, in order, handing
    /// each errno to `on_answer` until it returns true (the last answer
    /// expected). EPERM stops at once; a receive buffer overflow (ENOBUFS)
    /// means answers were lost, so the counts cannot be known: an error,
    /// never a guess. One loop for every batched request (create, delete).
    fn answers(
        &mut self,
        what: &'static str,
        first: u32,
        sent: u32,
        mut on_answer: impl FnMut(u32, i32) -> bool,
    ) -> Result<(), Error> {
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0).map_err(|e| {
                if e.raw_os_error() == Some(libc::ENOBUFS) {
                    Error::from_io(
                        "ctnetlink batch: answers lost (receive buffer overflow), \
                         the counts are unknown",
                        e,
                    )
                } else {
                    Error::from_io(what, e)
                }
            })?;
            let data = self.buf.get(..n).unwrap_or_default();
            for msg in Messages::new(data) {
                let msg = msg.map_err(|source| Error::Decode { what, source })?;
                if msg.kind != NLMSG_ERROR || msg.seq.wrapping_sub(first) >= sent {
                    continue; // a late answer to an earlier request
                }
                match ack_errno(&msg).map_err(|source| Error::Decode { what, source })? {
                    libc::EPERM => return Err(Error::Permission { what }),
                    errno => {
                        if on_answer(msg.seq, errno) {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    fn batch<'a>(
        &mut self,
        what: &'static str,
        entries: impl IntoIterator<Item = &'a Entry>,
        encode: fn(Vec<u8>, u32, &Entry) -> Vec<u8>,
    ) -> Result<BatchReport, Error> {
        let mut report = BatchReport::default();
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let first = self.seq.wrapping_add(1);
            let mut buf = Vec::with_capacity(BATCH * 160);
            let mut sent = 0u32;
            for e in entries.by_ref().take(BATCH) {
                let seq = self.next_seq();
                buf = encode(buf, seq, e);
                sent += 1;
            }
            self.send(what, &buf)?;
            // Every request asks for an ACK: one answer each.
            let mut pending = sent;
            self.answers(what, first, sent, |_, errno| {
                match errno {
                    0 => report.ok += 1,
                    errno => report.fail(errno),
                }
                pending -= 1;
                pending == 0
            })?;
        }
        Ok(report)
    }

    /// Insert entries (IPCTNL_MSG_CT_NEW with NLM_F_CREATE|NLM_F_EXCL), in
    /// batches. Each entry needs both tuples; a missing timeout becomes 600 s.
    pub fn create<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a Entry>,
    ) -> Result<BatchReport, Error> {
        self.batch(
            "ctnetlink create (IPCTNL_MSG_CT_NEW)",
            entries,
            encode::create_request,
        )
    }

    /// Delete entries by original tuple (and zone).
    pub fn delete<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a Entry>,
    ) -> Result<BatchReport, Error> {
        self.batch(
            "ctnetlink delete (IPCTNL_MSG_CT_DELETE)",
            entries,
            encode::delete_request,
        )
    }

    /// Delete exactly these entries (tuple, zone and CTA_ID when the entry
    /// has one), [`DELETE_BATCH`] requests per sendmsg. Only the last
    /// request of a batch asks for an ACK: the kernel handles a sendmsg's
    /// requests in order before the call returns and answers every failed
    /// one even without NLM_F_ACK, so once the last ACK is read every error
    /// of the batch has been read, and deleted = sent - errors. Should the
    /// receive buffer overflow (ENOBUFS), answers were lost and the counts
    /// cannot be known: that is an error, never a guess.
    pub fn delete_exact<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a Entry>,
    ) -> Result<DeleteReport, Error> {
        let what = "ctnetlink delete (IPCTNL_MSG_CT_DELETE)";
        if !self.delete_rcvbuf {
            let want = DELETE_RCVBUF;
            if setsockopt(&self.sock.as_fd(), sockopt::RcvBufForce, &want).is_err() {
                let _ = setsockopt(&self.sock.as_fd(), sockopt::RcvBuf, &want);
            }
            self.delete_rcvbuf = true;
        }
        let mut report = DeleteReport::default();
        let mut entries = entries.into_iter().peekable();
        let mut buf = std::mem::take(&mut self.delete_buf);
        while entries.peek().is_some() {
            buf.clear();
            let first = self.seq.wrapping_add(1);
            let mut sent = 0u32;
            while let Some(e) = entries.next() {
                let seq = self.next_seq();
                sent += 1;
                let last = sent as usize == DELETE_BATCH || entries.peek().is_none();
                buf = encode::delete_exact_request(std::mem::take(&mut buf), seq, e, last);
                if last {
                    break;
                }
            }
            let last_seq = first.wrapping_add(sent - 1);
            self.send(what, &buf)?;
            let mut errors = 0u64;
            self.answers(what, first, sent, |seq, errno| {
                match errno {
                    0 => {}
                    libc::ENOENT => {
                        report.gone += 1;
                        errors += 1;
                    }
                    errno => {
                        match report.failed.iter_mut().find(|(e, _)| *e == errno) {
                            Some((_, n)) => *n += 1,
                            None => report.failed.push((errno, 1)),
                        }
                        errors += 1;
                    }
                }
                seq == last_seq
            })?;
            report.deleted += u64::from(sent) - errors;
        }
        self.delete_buf = buf;
        Ok(report)
    }

    /// Delete every entry of this namespace (IPCTNL_MSG_CT_DELETE without a tuple).
    pub fn flush(&mut self) -> Result<(), Error> {
        let what = "ctnetlink flush (IPCTNL_MSG_CT_DELETE)";
        let seq = self.request(
            what,
            IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            libc::AF_UNSPEC as u8,
        )?;
        self.receive(what, seq, |msg| {
            Ok(control(what, msg).transpose()?.unwrap_or(false))
        })
    }
}
