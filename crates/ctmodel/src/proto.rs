//! Protocol identities as the kernel numbers them: the L3 family, the L4
//! protocol and the per-protocol connection state. Numbers the code does not
//! know survive as raw values (`Unknown(n)`) and render as numbers, so a newer
//! kernel never breaks parsing.

use std::fmt;

/// Address family of an entry (`nfgen_family` / the `ipv4 2` prefix of /proc lines).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L3Proto {
    Ipv4,
    Ipv6,
    Unknown(u8),
}

impl L3Proto {
    /// From the kernel family number (AF_INET = 2, AF_INET6 = 10).
    pub fn from_family(family: u8) -> Self {
        match family {
            2 => Self::Ipv4,
            10 => Self::Ipv6,
            n => Self::Unknown(n),
        }
    }

    pub fn family(self) -> u8 {
        match self {
            Self::Ipv4 => 2,
            Self::Ipv6 => 10,
            Self::Unknown(n) => n,
        }
    }
}

impl fmt::Display for L3Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ipv4 => f.write_str("ipv4"),
            Self::Ipv6 => f.write_str("ipv6"),
            Self::Unknown(n) => write!(f, "{n}"),
        }
    }
}

/// Layer-4 protocol, identified by its IP protocol number. The name printed by
/// the kernel or conntrack-tools is ignored in favour of the number: /proc
/// prints DCCP (33) as `unknown` since DCCP tracking was removed in 6.17,
/// while conntrack-tools still calls it `dccp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4Proto {
    Icmp,
    Tcp,
    Udp,
    Dccp,
    Gre,
    Icmpv6,
    Sctp,
    Udplite,
    Unknown(u8),
}

impl L4Proto {
    pub fn from_number(n: u8) -> Self {
        match n {
            1 => Self::Icmp,
            6 => Self::Tcp,
            17 => Self::Udp,
            33 => Self::Dccp,
            47 => Self::Gre,
            58 => Self::Icmpv6,
            132 => Self::Sctp,
            136 => Self::Udplite,
            n => Self::Unknown(n),
        }
    }

    pub fn number(self) -> u8 {
        match self {
            Self::Icmp => 1,
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Dccp => 33,
            Self::Gre => 47,
            Self::Icmpv6 => 58,
            Self::Sctp => 132,
            Self::Udplite => 136,
            Self::Unknown(n) => n,
        }
    }

    /// The name conntrack-tools prints, or `None` for protocols it has no name for.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::Icmp => "icmp",
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Dccp => "dccp",
            Self::Gre => "gre",
            Self::Icmpv6 => "icmpv6",
            Self::Sctp => "sctp",
            Self::Udplite => "udplite",
            Self::Unknown(_) => return None,
        })
    }

    /// Whether the tuple carries source and destination ports.
    pub fn has_ports(self) -> bool {
        matches!(
            self,
            Self::Tcp | Self::Udp | Self::Udplite | Self::Sctp | Self::Dccp
        )
    }

    pub fn is_icmp(self) -> bool {
        matches!(self, Self::Icmp | Self::Icmpv6)
    }

    /// The state table of this protocol, if the kernel tracks a state for it.
    pub fn state_names(self) -> Option<&'static [&'static str]> {
        match self {
            Self::Tcp => Some(TCP_STATES),
            Self::Sctp => Some(SCTP_STATES),
            Self::Dccp => Some(DCCP_STATES),
            _ => None,
        }
    }
}

impl fmt::Display for L4Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.number()),
        }
    }
}

/// `enum tcp_conntrack` (include/uapi/linux/netfilter/nf_conntrack_tcp.h),
/// names as printed by `tcp_conntrack_names` in nf_conntrack_proto_tcp.c.
pub const TCP_STATES: &[&str] = &[
    "NONE",
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "TIME_WAIT",
    "CLOSE",
    "SYN_SENT2",
];

/// `enum sctp_conntrack` (include/uapi/linux/netfilter/nf_conntrack_sctp.h).
pub const SCTP_STATES: &[&str] = &[
    "NONE",
    "CLOSED",
    "COOKIE_WAIT",
    "COOKIE_ECHOED",
    "ESTABLISHED",
    "SHUTDOWN_SENT",
    "SHUTDOWN_RECD",
    "SHUTDOWN_ACK_SENT",
    "HEARTBEAT_SENT",
    "HEARTBEAT_ACKED",
];

/// `enum ct_dccp_states` (include/uapi/linux/netfilter/nf_conntrack_dccp.h, removed in 6.17).
pub const DCCP_STATES: &[&str] = &[
    "NONE", "REQUEST", "RESPOND", "PARTOPEN", "OPEN", "CLOSEREQ", "CLOSING", "TIMEWAIT", "IGNORE",
    "INVALID",
];

/// Whether `name` (case-insensitive) is a state the kernel reports for some
/// protocol's entries: a name of [`TCP_STATES`], [`SCTP_STATES`] or
/// [`DCCP_STATES`] other than `NONE`, the "no state yet" value an entry in
/// the table is never in.
pub fn is_reported_state(name: &str) -> bool {
    reported_states().any(|n| n.eq_ignore_ascii_case(name))
}

/// The state names the kernel reports, in table order, each once (TCP, then
/// the SCTP and DCCP names TCP does not have).
pub fn reported_states() -> impl Iterator<Item = &'static str> {
    let all = || TCP_STATES.iter().chain(SCTP_STATES).chain(DCCP_STATES);
    all()
        .enumerate()
        .filter(move |(i, n)| **n != "NONE" && !all().take(*i).any(|m| m == *n))
        .map(|(_, n)| *n)
}

/// Protocol state of an entry: the kernel's state number for its L4 protocol.
/// A state name that a text dump printed but that this code does not know is
/// kept as `Other` rather than rejected.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Code(u8),
    Other(Box<str>),
}

impl State {
    /// Look a printed state name up in the protocol's state table.
    pub fn from_name(l4: L4Proto, name: &str) -> Self {
        l4.state_names()
            .and_then(|names| names.iter().position(|n| *n == name))
            .and_then(|i| u8::try_from(i).ok())
            .map_or_else(|| Self::Other(name.into()), Self::Code)
    }

    /// The name for this state under `l4`, or `None` when only a number is known.
    pub fn name(&self, l4: L4Proto) -> Option<&str> {
        match self {
            Self::Code(c) => l4
                .state_names()
                .and_then(|names| names.get(usize::from(*c)).copied()),
            Self::Other(name) => Some(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for n in 0..=255u8 {
            assert_eq!(L4Proto::from_number(n).number(), n);
            assert_eq!(L3Proto::from_family(n).family(), n);
        }
    }

    #[test]
    fn state_names() {
        assert_eq!(State::from_name(L4Proto::Tcp, "TIME_WAIT"), State::Code(7));
        assert_eq!(State::Code(3).name(L4Proto::Tcp), Some("ESTABLISHED"));
        assert_eq!(State::Code(4).name(L4Proto::Sctp), Some("ESTABLISHED"));
        assert_eq!(State::Code(77).name(L4Proto::Tcp), None);
        assert_eq!(
            State::from_name(L4Proto::Tcp, "LISTEN"),
            State::Other("LISTEN".into())
        );
        assert_eq!(L4Proto::Unknown(50).to_string(), "50");
    }

    #[test]
    fn reported_states_are_the_tables_without_none() {
        assert!(is_reported_state("established") && is_reported_state("SYN_SENT2"));
        assert!(is_reported_state("cookie_echoed") && is_reported_state("PARTOPEN"));
        assert!(!is_reported_state("ESTABLISHD") && !is_reported_state("NONE"));
        assert!(!is_reported_state("") && !is_reported_state("LISTEN"));
        let all: Vec<_> = reported_states().collect();
        assert_eq!(all.iter().filter(|n| **n == "ESTABLISHED").count(), 1);
        assert_eq!(all[0], "SYN_SENT");
        assert_eq!(all.len(), 9 + 8 + 9);
    }
}
