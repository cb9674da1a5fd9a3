//! The conntrack timeout sysctls, in one table keyed by the kernel's sysctl
//! name: each timeout's default by kernel version (KERNEL.md section 6),
//! the lowest value `plan` sets it to and why, and the connection classes
//! (`ctmodel::flows` class keys, `l4/STATE`) whose entries expire after it.
//! Every command that names, defaults, floors or maps a timeout asks here;
//! nothing else adds or strips the `nf_conntrack_` prefix.

use crate::version::Version;

/// The prefix of every conntrack sysctl under net.netfilter.
pub const PREFIX: &str = "nf_conntrack_";

/// One timeout sysctl. The discriminant indexes [`TimeoutTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timeout {
    TcpSynSent,
    TcpSynRecv,
    TcpEstablished,
    TcpFinWait,
    TcpCloseWait,
    TcpLastAck,
    TcpTimeWait,
    TcpClose,
    TcpMaxRetrans,
    TcpUnacknowledged,
    Udp,
    UdpStream,
    Icmp,
    Icmpv6,
    Generic,
}

/// The lowest value `plan` sets a timeout to, for hosts that serve their
/// own connections and for NAT profiles (gateway, router), and the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floor {
    pub host: u64,
    pub nat: u64,
    pub source: &'static str,
}

/// What the table knows of one timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub timeout: Timeout,
    /// Under /proc/sys/net/netfilter, e.g. `nf_conntrack_udp_timeout`.
    pub sysctl: &'static str,
    /// The kernel's default in seconds (before [`Timeout::default_s`]'s
    /// version changes).
    pub default_s: u64,
    /// None: plan has no rule for it and leaves it as it is.
    pub floor: Option<Floor>,
    /// Class keys whose entries expire after this timeout (`proto/*`: any
    /// state of that protocol).
    pub classes: &'static [&'static str],
}

const fn spec(
    timeout: Timeout,
    sysctl: &'static str,
    default_s: u64,
    floor: Option<Floor>,
    classes: &'static [&'static str],
) -> Spec {
    Spec {
        timeout,
        sysctl,
        default_s,
        floor,
        classes,
    }
}

const fn floor(host: u64, nat: u64, source: &'static str) -> Option<Floor> {
    Some(Floor { host, nat, source })
}

/// In [`Timeout`] order.
const TABLE: [Spec; 15] = [
    spec(
        Timeout::TcpSynSent,
        "nf_conntrack_tcp_timeout_syn_sent",
        120,
        floor(
            60,
            60,
            "covers 5 SYN retransmissions (1+2+4+8+16+32 s); kernel default 120 s",
        ),
        &["tcp/SYN_SENT", "tcp/SYN_SENT2"],
    ),
    spec(
        Timeout::TcpSynRecv,
        "nf_conntrack_tcp_timeout_syn_recv",
        60,
        floor(60, 60, "kernel default 60 s"),
        &["tcp/SYN_RECV"],
    ),
    spec(
        Timeout::TcpEstablished,
        "nf_conntrack_tcp_timeout_established",
        432_000,
        floor(
            600,
            7440,
            "NAT: RFC 5382 REQ-5 (2 h 4 min); hosts: above the applications' idle time (TCP keepalive starts at 7200 s by default)",
        ),
        &["tcp/ESTABLISHED"],
    ),
    spec(
        Timeout::TcpFinWait,
        "nf_conntrack_tcp_timeout_fin_wait",
        120,
        floor(60, 60, "kernel default 120 s"),
        &["tcp/FIN_WAIT"],
    ),
    spec(
        Timeout::TcpCloseWait,
        "nf_conntrack_tcp_timeout_close_wait",
        60,
        floor(
            60,
            60,
            "kernel default 60 s; kube-proxy sets 3600 s (--conntrack-tcp-timeout-close-wait)",
        ),
        &["tcp/CLOSE_WAIT"],
    ),
    spec(
        Timeout::TcpLastAck,
        "nf_conntrack_tcp_timeout_last_ack",
        30,
        None,
        &["tcp/LAST_ACK"],
    ),
    spec(
        Timeout::TcpTimeWait,
        "nf_conntrack_tcp_timeout_time_wait",
        120,
        floor(
            120,
            120,
            "2 x MSL: the kernel's TIME_WAIT is 2 x 60 s (TCP_TIMEWAIT_LEN)",
        ),
        &["tcp/TIME_WAIT"],
    ),
    spec(
        Timeout::TcpClose,
        "nf_conntrack_tcp_timeout_close",
        10,
        None,
        &["tcp/CLOSE"],
    ),
    spec(
        Timeout::TcpMaxRetrans,
        "nf_conntrack_tcp_timeout_max_retrans",
        300,
        None,
        &[],
    ),
    spec(
        Timeout::TcpUnacknowledged,
        "nf_conntrack_tcp_timeout_unacknowledged",
        300,
        None,
        &[],
    ),
    spec(
        Timeout::Udp,
        "nf_conntrack_udp_timeout",
        30,
        floor(30, 30, "kernel default 30 s"),
        &["udp/UNREPLIED", "udp/REPLIED", "udplite/*"],
    ),
    spec(
        Timeout::UdpStream,
        "nf_conntrack_udp_timeout_stream",
        120,
        floor(
            120,
            120,
            "NAT: RFC 4787 REQ-5 (UDP mappings at least 2 min); kernel default 120 s",
        ),
        &["udp/ASSURED", "udplite/ASSURED"],
    ),
    spec(
        Timeout::Icmp,
        "nf_conntrack_icmp_timeout",
        30,
        floor(
            30,
            60,
            "NAT: RFC 5508 REQ-1 (ICMP query mappings at least 60 s); kernel default 30 s",
        ),
        &["icmp/UNREPLIED", "icmp/REPLIED"],
    ),
    spec(
        Timeout::Icmpv6,
        "nf_conntrack_icmpv6_timeout",
        30,
        None,
        &["icmpv6/*"],
    ),
    spec(
        Timeout::Generic,
        "nf_conntrack_generic_timeout",
        600,
        None,
        &[],
    ),
];

/// Protocols with timeouts of their own that the table does not hold
/// (sctp, gre, dccp) or whose other states have none (tcp, udp, icmp):
/// no timeout is known for their other classes. Any other protocol
/// (an unknown number) expires after the generic timeout.
const NO_TIMEOUT_KNOWN: [&str; 6] = ["tcp", "udp", "icmp", "sctp", "gre", "dccp"];

impl Timeout {
    pub const ALL: [Timeout; 15] = [
        Timeout::TcpSynSent,
        Timeout::TcpSynRecv,
        Timeout::TcpEstablished,
        Timeout::TcpFinWait,
        Timeout::TcpCloseWait,
        Timeout::TcpLastAck,
        Timeout::TcpTimeWait,
        Timeout::TcpClose,
        Timeout::TcpMaxRetrans,
        Timeout::TcpUnacknowledged,
        Timeout::Udp,
        Timeout::UdpStream,
        Timeout::Icmp,
        Timeout::Icmpv6,
        Timeout::Generic,
    ];

    pub fn spec(self) -> &'static Spec {
        &TABLE[self as usize]
    }

    /// The full sysctl name, `nf_conntrack_udp_timeout`.
    pub fn sysctl(self) -> &'static str {
        self.spec().sysctl
    }

    /// The sysctl name without `nf_conntrack_` (`udp_timeout`), as
    /// scenario files, `--timeout` and the JSON outputs spell it.
    pub fn short(self) -> &'static str {
        &self.sysctl()[PREFIX.len()..]
    }

    /// From the full or the short sysctl name.
    pub fn from_name(name: &str) -> Option<Self> {
        let short = name.strip_prefix(PREFIX).unwrap_or(name);
        Self::ALL.into_iter().find(|t| t.short() == short)
    }

    /// The kernel's default for `kernel`: udp_timeout_stream became 120 s
    /// in 5.11 (180 before).
    pub fn default_s(self, kernel: Version) -> u64 {
        match self {
            Timeout::UdpStream if !kernel.at_least(5, 11) => 180,
            t => t.spec().default_s,
        }
    }

    /// plan's lowest value and its source, by profile kind.
    pub fn floor(self, nat: bool) -> Option<(u64, &'static str)> {
        self.spec()
            .floor
            .map(|f| (if nat { f.nat } else { f.host }, f.source))
    }

    /// The TCP state this timeout governs (`ESTABLISHED`), for TCP timeouts
    /// that govern one.
    pub fn tcp_state(self) -> Option<&'static str> {
        self.spec().classes.first()?.strip_prefix("tcp/")
    }

    /// The timeout that bounds the time an entry spends in `class` (a
    /// `ctmodel::flows` class key, state matched case-insensitively), if
    /// one is known.
    pub fn for_class(class: &str) -> Option<Self> {
        let (l4, _) = class.split_once('/')?;
        let find = |governs: &dyn Fn(&str) -> bool| {
            Self::ALL
                .into_iter()
                .find(|t| t.spec().classes.iter().any(|c| governs(c)))
        };
        // A class named exactly wins over its protocol's `proto/*`.
        find(&|c| c.eq_ignore_ascii_case(class))
            .or_else(|| find(&|c| c.strip_suffix("/*") == Some(l4)))
            .or_else(|| (!NO_TIMEOUT_KNOWN.contains(&l4)).then_some(Timeout::Generic))
    }

    /// Every short name, for error messages.
    pub fn short_names() -> String {
        Self::ALL.map(Self::short).join(", ")
    }
}

/// Serialised as the short sysctl name (`tcp_timeout_time_wait`), as the
/// JSON outputs have always spelt it.
impl serde::Serialize for Timeout {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.short())
    }
}

/// Seconds for every timeout: the defaults of a kernel version with
/// overrides set by name.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeoutTable {
    values: [f64; 15],
}

impl TimeoutTable {
    pub fn defaults(kernel: Version) -> Self {
        Self {
            values: Timeout::ALL.map(|t| t.default_s(kernel) as f64),
        }
    }

    #[inline]
    pub fn get(&self, t: Timeout) -> f64 {
        self.values[t as usize]
    }

    pub fn set(&mut self, t: Timeout, secs: f64) {
        self.values[t as usize] = secs;
    }

    /// The configured timeout, in whole seconds, of the state the entry
    /// with these grouping fields is in ([`Timeout::for_class`] of its
    /// class): what `idle>`/`idle<` filters subtract the remaining timeout
    /// from. `None` when no timeout is known for the class (tcp/NONE,
    /// sctp, gre, dccp).
    pub fn configured(&self, k: &ctmodel::keys::Keys) -> Option<u32> {
        let t = Timeout::for_class(ctmodel::flows::ClassKey::of_keys(k).as_str())?;
        Some(self.get(t).clamp(0.0, f64::from(u32::MAX)) as u32)
    }

    /// (timeout, seconds), in [`Timeout::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Timeout, f64)> + '_ {
        Timeout::ALL.into_iter().zip(self.values.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_with_and_without_the_prefix() {
        for t in Timeout::ALL {
            assert_eq!(Timeout::from_name(t.sysctl()), Some(t));
            assert_eq!(Timeout::from_name(t.short()), Some(t));
            assert!(t.sysctl().starts_with(PREFIX));
        }
        assert_eq!(
            Timeout::TcpEstablished.sysctl(),
            "nf_conntrack_tcp_timeout_established"
        );
        assert_eq!(Timeout::from_name("tcp_timeout_bogus"), None);
        assert_eq!(Timeout::from_name("nf_conntrack_max"), None);
    }

    #[test]
    fn defaults_follow_the_kernel_version() {
        let old = TimeoutTable::defaults(Version::new(5, 10));
        let new = TimeoutTable::defaults(Version::new(6, 18));
        assert_eq!(old.get(Timeout::UdpStream), 180.0);
        assert_eq!(new.get(Timeout::UdpStream), 120.0);
        assert_eq!(new.get(Timeout::TcpEstablished), 432_000.0);
        assert_eq!(new.get(Timeout::Generic), 600.0);
    }

    #[test]
    fn classes_map_to_the_timeout_that_expires_them() {
        for (class, t) in [
            ("tcp/ESTABLISHED", Some(Timeout::TcpEstablished)),
            ("tcp/established", Some(Timeout::TcpEstablished)),
            ("tcp/SYN_SENT2", Some(Timeout::TcpSynSent)),
            ("udp/UNREPLIED", Some(Timeout::Udp)),
            ("udp/ASSURED", Some(Timeout::UdpStream)),
            ("udplite/ASSURED", Some(Timeout::UdpStream)),
            ("udplite/REPLIED", Some(Timeout::Udp)),
            ("udplite/NONE", Some(Timeout::Udp)),
            ("icmpv6/REPLIED", Some(Timeout::Icmpv6)),
            ("icmp/REPLIED", Some(Timeout::Icmp)),
            ("tcp/NONE", None),
            ("sctp/ESTABLISHED", None),
            ("gre/REPLIED", None),
            ("132/ASSURED", Some(Timeout::Generic)),
            ("noslash", None),
        ] {
            assert_eq!(Timeout::for_class(class), t, "{class}");
        }
        assert_eq!(Timeout::TcpTimeWait.tcp_state(), Some("TIME_WAIT"));
        assert_eq!(Timeout::Udp.tcp_state(), None);
    }

    #[test]
    fn configured_timeouts_by_entry_state() {
        let parse = |line: &str| match ctmodel::text::parse_line(line.as_bytes()) {
            Ok(ctmodel::text::Line::Entry(e)) => e,
            other => panic!("{other:?}"),
        };
        let mut t = TimeoutTable::defaults(Version::new(6, 18));
        t.set(Timeout::Udp, 60.0);
        let udp = parse(
            "udp 17 20 src=10.0.0.1 dst=10.0.0.2 sport=5000 dport=53 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=53 dport=5000 mark=0 use=1",
        );
        let stream = parse(
            "udp 17 20 src=10.0.0.1 dst=10.0.0.2 sport=5000 dport=53 src=10.0.0.2 dst=10.0.0.1 sport=53 dport=5000 [ASSURED] mark=0 use=1",
        );
        let tw = parse(
            "tcp 6 20 TIME_WAIT src=10.0.0.1 dst=10.0.0.2 sport=5000 dport=80 src=10.0.0.2 dst=10.0.0.1 sport=80 dport=5000 [ASSURED] mark=0 use=1",
        );
        let sctp = parse(
            "sctp 132 20 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=5000 dport=80 src=10.0.0.2 dst=10.0.0.1 sport=80 dport=5000 [ASSURED] mark=0 use=1",
        );
        let k = ctmodel::keys::Keys::of;
        assert_eq!(t.configured(&k(&udp)), Some(60));
        assert_eq!(t.configured(&k(&stream)), Some(120));
        assert_eq!(t.configured(&k(&tw)), Some(120));
        assert_eq!(t.configured(&k(&sctp)), None);
    }

    #[test]
    fn floors_by_profile_kind() {
        assert_eq!(Timeout::TcpEstablished.floor(true).map(|f| f.0), Some(7440));
        assert_eq!(Timeout::TcpEstablished.floor(false).map(|f| f.0), Some(600));
        assert_eq!(Timeout::Icmp.floor(true).map(|f| f.0), Some(60));
        assert_eq!(Timeout::Generic.floor(true), None);
    }
}
