//! One conntrack entry as the kernel reports it, through netlink or text.
//! Fields a source does not provide are `None` (text dumps carry no status
//! word, only the [ASSURED]/[UNREPLIED]/[OFFLOAD] flags); nothing is invented.

use std::net::{IpAddr, Ipv4Addr};

use crate::proto::{L3Proto, L4Proto, State};

bitflags::bitflags! {
    /// `enum ip_conntrack_status` (include/uapi/linux/netfilter/nf_conntrack_common.h).
    /// Bits this code does not name are kept (`from_bits_retain`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Status: u32 {
        const EXPECTED = 1 << 0;
        const SEEN_REPLY = 1 << 1;
        const ASSURED = 1 << 2;
        const CONFIRMED = 1 << 3;
        const SRC_NAT = 1 << 4;
        const DST_NAT = 1 << 5;
        const SEQ_ADJUST = 1 << 6;
        const SRC_NAT_DONE = 1 << 7;
        const DST_NAT_DONE = 1 << 8;
        const DYING = 1 << 9;
        const FIXED_TIMEOUT = 1 << 10;
        const TEMPLATE = 1 << 11;
        const UNTRACKED = 1 << 12;
        const HELPER = 1 << 13;
        const OFFLOAD = 1 << 14;
        const HW_OFFLOAD = 1 << 15;
        const _ = !0;
    }
}

/// The layer-4 part of a tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum L4Tuple {
    /// Protocols without ports (and DCCP on kernels that no longer track it).
    #[default]
    None,
    Ports {
        sport: u16,
        dport: u16,
    },
    Icmp {
        kind: u8,
        code: u8,
        id: u16,
    },
    /// GRE keys (PPTP call ids), printed as `srckey=0x1 dstkey=0x2`.
    Gre {
        skey: u32,
        dkey: u32,
    },
}

/// One direction of a connection: addresses plus the layer-4 identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4Tuple,
    /// Per-direction zone (`CTA_TUPLE_ZONE`, `zone-orig=` / `zone-reply=`).
    pub zone: Option<u16>,
}

impl Default for Tuple {
    fn default() -> Self {
        Self {
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            l4: L4Tuple::None,
            zone: None,
        }
    }
}

impl Tuple {
    /// Whether `reply` is exactly this tuple seen from the other side, i.e.
    /// no address or port was translated.
    pub fn source_side_matches(&self, reply: &Tuple) -> bool {
        self.src == reply.dst
            && match (self.l4, reply.l4) {
                (L4Tuple::Ports { sport, .. }, L4Tuple::Ports { dport, .. }) => sport == dport,
                (L4Tuple::Icmp { id: a, .. }, L4Tuple::Icmp { id: b, .. }) => a == b,
                (L4Tuple::Gre { skey, .. }, L4Tuple::Gre { dkey, .. }) => skey == dkey,
                _ => true,
            }
    }

    pub fn dest_side_matches(&self, reply: &Tuple) -> bool {
        self.dst == reply.src
            && match (self.l4, reply.l4) {
                (L4Tuple::Ports { dport, .. }, L4Tuple::Ports { sport, .. }) => dport == sport,
                (L4Tuple::Gre { dkey, .. }, L4Tuple::Gre { skey, .. }) => dkey == skey,
                _ => true,
            }
    }

    pub fn dport(&self) -> Option<u16> {
        match self.l4 {
            L4Tuple::Ports { dport, .. } => Some(dport),
            _ => None,
        }
    }

    pub fn sport(&self) -> Option<u16> {
        match self.l4 {
            L4Tuple::Ports { sport, .. } => Some(sport),
            _ => None,
        }
    }
}

/// Packet and byte counters of one direction (present when nf_conntrack_acct=1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// Address translation, derived from the tuples: the reply tuple differs from
/// the swapped original when the kernel rewrote the source (SNAT/masquerade)
/// or the destination (DNAT/port forward).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Nat {
    None,
    Snat,
    Dnat,
    Both,
}

impl Nat {
    pub const ALL: [Nat; 4] = [Nat::None, Nat::Snat, Nat::Dnat, Nat::Both];

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Snat => "snat",
            Self::Dnat => "dnat",
            Self::Both => "snat+dnat",
        }
    }
}

/// One conntrack entry.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Entry {
    pub l3: Option<L3Proto>,
    pub l4: Option<L4Proto>,
    /// Seconds until expiry.
    pub timeout: Option<u32>,
    pub state: Option<State>,
    pub orig: Tuple,
    pub reply: Tuple,
    pub status: Status,
    pub mark: Option<u32>,
    pub zone: Option<u16>,
    pub use_count: Option<u32>,
    pub id: Option<u32>,
    pub counters_orig: Option<Counters>,
    pub counters_reply: Option<Counters>,
    /// Start and stop in nanoseconds since the epoch (nf_conntrack_timestamp=1).
    pub timestamp_start: Option<u64>,
    pub timestamp_stop: Option<u64>,
    /// Seconds since creation (`delta-time=`, /proc and conntrack -L with timestamps).
    pub delta_time: Option<u64>,
    /// The connlabel bitmap (netlink) or its printed form (text).
    pub labels: Option<Box<[u8]>>,
    pub secctx: Option<Box<str>>,
}

impl Entry {
    pub fn l4(&self) -> L4Proto {
        self.l4.unwrap_or(L4Proto::Unknown(255))
    }

    pub fn assured(&self) -> bool {
        self.status.contains(Status::ASSURED)
    }

    /// No reply seen yet: conntrack prints `[UNREPLIED]`.
    pub fn unreplied(&self) -> bool {
        !self.status.contains(Status::SEEN_REPLY)
    }

    pub fn nat(&self) -> Nat {
        let snat = !self.orig.source_side_matches(&self.reply);
        let dnat = !self.orig.dest_side_matches(&self.reply);
        match (snat, dnat) {
            (false, false) => Nat::None,
            (true, false) => Nat::Snat,
            (false, true) => Nat::Dnat,
            (true, true) => Nat::Both,
        }
    }

    pub fn state_name(&self) -> Option<&str> {
        self.state.as_ref().and_then(|s| s.name(self.l4()))
    }
}
