//! `--filter key=value` selection of entries, on the same keys `top` groups
//! by. Clauses are ANDed; comma-separated values within a clause are ORed;
//! `key!=value` negates; `timeout<DURATION` and `timeout>DURATION` compare
//! the remaining timeout (`30`, `30s`, `5m`, `2h`); `idle>DURATION` and
//! `idle<DURATION` compare the time since the entry's timeout was last
//! refreshed: its state's configured timeout minus the remaining one. The
//! configured timeouts are the namespace's sysctls, which this pure crate
//! does not read: the command supplies them ([`Filter::with_configured`],
//! ctcore's timeout table); without them an idle clause matches nothing
//! and the command must refuse it ([`Filter::uses_idle`]). Parsing is
//! strict: an unknown key or a malformed value is an error naming it,
//! never a filter that silently matches nothing.

use std::net::IpAddr;
use std::sync::Arc;

use crate::entry::{Entry, Nat};
use crate::keys::Keys;
use crate::proto::{L3Proto, L4Proto};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("filter {0:?}: expected key=value (keys: {KEYS})")]
    Syntax(String),
    #[error("filter {0:?}: unknown key (keys: {KEYS})")]
    UnknownKey(String),
    #[error("filter {clause:?}: bad value {value:?}: {why}")]
    BadValue {
        clause: String,
        value: String,
        why: &'static str,
    },
    #[error("filter {clause:?}: unknown state {value:?} (states: {})", crate::proto::reported_states().collect::<Vec<_>>().join(", "))]
    UnknownState { clause: String, value: String },
}

const KEYS: &str = "l3, l4, state, flags, zone, mark, nat, src, dst, sport, dport, reply-src, timeout<, timeout>, idle<, idle>";

/// An address or a CIDR prefix. Hand-written (a dozen lines) rather than a
/// crate: only containment of one address is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    fn parse(s: &str) -> Option<Self> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a.parse().ok()?, Some(l.parse::<u8>().ok()?)),
            None => (s.parse().ok()?, None),
        };
        let max = if matches!(addr, IpAddr::V4(_)) {
            32
        } else {
            128
        };
        let len = len.unwrap_or(max);
        (len <= max).then_some(Self { addr, len })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, len: u8, width: u32) -> u128 {
            let shift = width - u32::from(len);
            if shift >= 128 { 0 } else { bits >> shift }
        }
        match (self.addr, ip) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                masked(u32::from(p).into(), self.len, 32)
                    == masked(u32::from(a).into(), self.len, 32)
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                masked(u128::from(p), self.len, 128) == masked(u128::from(a), self.len, 128)
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    L3(L3Proto),
    L4(L4Proto),
    /// State name, upper-case.
    State(String),
    Flag(FlagValue),
    Zone(u16),
    Mark(u32),
    Nat(Nat),
    Src(Prefix),
    Dst(Prefix),
    Sport(Option<L4Proto>, u16),
    Dport(Option<L4Proto>, u16),
    ReplySrc(Prefix),
    /// Remaining timeout strictly below / above, in seconds.
    TimeoutBelow(u32),
    TimeoutAbove(u32),
    /// Idle (configured minus remaining timeout) strictly below / above.
    IdleBelow(u32),
    IdleAbove(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagValue {
    Assured,
    Unreplied,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    negate: bool,
    any_of: Vec<Value>,
}

/// The configured timeout, in seconds, of the state an entry is in (from
/// the namespace's sysctls), `None` when no timeout is known for it.
pub type ConfiguredFn = dyn Fn(&Keys) -> Option<u32> + Send + Sync;

/// The configured timeouts an idle clause reads.
#[derive(Clone)]
pub struct Configured(Arc<ConfiguredFn>);

impl std::fmt::Debug for Configured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Configured(..)")
    }
}

impl PartialEq for Configured {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Configured {}

/// A conjunction of clauses; the empty filter matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    clauses: Vec<Clause>,
    configured: Option<Configured>,
}

fn parse_l4(s: &str) -> Option<L4Proto> {
    if let Ok(n) = s.parse::<u8>() {
        return Some(L4Proto::from_number(n));
    }
    (0..=255u8)
        .map(L4Proto::from_number)
        .find(|p| p.name() == Some(s))
}

fn parse_port(s: &str) -> Option<(Option<L4Proto>, u16)> {
    match s.split_once('/') {
        Some((proto, port)) => Some((Some(parse_l4(proto)?), port.parse().ok()?)),
        None => Some((None, s.parse().ok()?)),
    }
}

/// Seconds from `30`, `30s`, `5m`, `2h` or `1d`.
fn parse_seconds(s: &str) -> Option<u32> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    digits.parse::<u32>().ok()?.checked_mul(mult)
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

impl Filter {
    /// Parse clauses such as `l4=tcp`, `state=ESTABLISHED,TIME_WAIT`,
    /// `src=10.0.0.0/8`, `dport=tcp/443`, `flags!=assured`.
    pub fn parse<S: AsRef<str>>(clauses: &[S]) -> Result<Self, FilterError> {
        let mut out = Vec::new();
        for raw in clauses {
            let raw = raw.as_ref();
            if let Some(clause) = parse_comparison(raw)? {
                out.push(clause);
                continue;
            }
            let (key, negate, values) = match raw.split_once('=') {
                Some((k, v)) if k.ends_with('!') => (&k[..k.len() - 1], true, v),
                Some((k, v)) => (k, false, v),
                None => return Err(FilterError::Syntax(raw.into())),
            };
            let key = key.trim().to_ascii_lowercase();
            let mut any_of = Vec::new();
            for value in values.split(',') {
                let value = value.trim();
                let err = |why| FilterError::BadValue {
                    clause: raw.into(),
                    value: value.into(),
                    why,
                };
                let lower = value.to_ascii_lowercase();
                let v = match key.as_str() {
                    "l3" => Value::L3(match lower.as_str() {
                        "ipv4" | "4" => L3Proto::Ipv4,
                        "ipv6" | "6" => L3Proto::Ipv6,
                        _ => return Err(err("expected ipv4 or ipv6")),
                    }),
                    "l4" | "proto" => Value::L4(
                        parse_l4(&lower)
                            .ok_or_else(|| err("expected a protocol name or number"))?,
                    ),
                    "state" => {
                        // Validated: a misspelt name would match nothing,
                        // and negated (`state!=TIME_WAT`) everything, which
                        // `evict --yes` would then delete.
                        if !crate::proto::is_reported_state(value) {
                            return Err(FilterError::UnknownState {
                                clause: raw.into(),
                                value: value.into(),
                            });
                        }
                        Value::State(value.to_ascii_uppercase())
                    }
                    "flags" => Value::Flag(match lower.as_str() {
                        "assured" => FlagValue::Assured,
                        "unreplied" => FlagValue::Unreplied,
                        "other" => FlagValue::Other,
                        _ => return Err(err("expected assured, unreplied or other")),
                    }),
                    "zone" => Value::Zone(value.parse().map_err(|_| err("expected 0..65535"))?),
                    "mark" => Value::Mark(
                        parse_u32(value).ok_or_else(|| err("expected a 32-bit number"))?,
                    ),
                    "nat" => Value::Nat(
                        Nat::ALL
                            .into_iter()
                            .find(|n| n.name() == lower || (lower == "both" && *n == Nat::Both))
                            .ok_or_else(|| err("expected none, snat, dnat or snat+dnat"))?,
                    ),
                    "src" => Value::Src(
                        Prefix::parse(value).ok_or_else(|| err("expected an address or CIDR"))?,
                    ),
                    "dst" => Value::Dst(
                        Prefix::parse(value).ok_or_else(|| err("expected an address or CIDR"))?,
                    ),
                    "sport" => {
                        let (p, n) =
                            parse_port(&lower).ok_or_else(|| err("expected PORT or PROTO/PORT"))?;
                        Value::Sport(p, n)
                    }
                    "dport" => {
                        let (p, n) =
                            parse_port(&lower).ok_or_else(|| err("expected PORT or PROTO/PORT"))?;
                        Value::Dport(p, n)
                    }
                    "reply-src" | "reply_src" => Value::ReplySrc(
                        Prefix::parse(value).ok_or_else(|| err("expected an address or CIDR"))?,
                    ),
                    _ => return Err(FilterError::UnknownKey(raw.into())),
                };
                any_of.push(v);
            }
            out.push(Clause { negate, any_of });
        }
        Ok(Self {
            clauses: out,
            configured: None,
        })
    }

    /// Whether a clause compares idle time: it needs [`Self::with_configured`].
    pub fn uses_idle(&self) -> bool {
        self.clauses.iter().any(|c| {
            c.any_of
                .iter()
                .any(|v| matches!(v, Value::IdleBelow(_) | Value::IdleAbove(_)))
        })
    }

    /// The configured timeout of each entry's state, for idle clauses.
    pub fn with_configured(
        mut self,
        f: impl Fn(&Keys) -> Option<u32> + Send + Sync + 'static,
    ) -> Self {
        self.configured = Some(Configured(Arc::new(f)));
        self
    }

    /// Whether a clause asks for ASSURED entries by name: `flags=assured`
    /// or any `state=` (a state named explicitly, such as ESTABLISHED or
    /// TIME_WAIT, is mostly ASSURED entries). `evict` protects ASSURED
    /// entries unless this holds.
    pub fn names_assured(&self) -> bool {
        self.clauses.iter().any(|c| {
            !c.negate
                && c.any_of
                    .iter()
                    .any(|v| matches!(v, Value::Flag(FlagValue::Assured) | Value::State(_)))
        })
    }

    /// The one L4 protocol every match has, when a clause such as `l4=udp`
    /// requires it: lets a dump be filtered by the kernel first.
    pub fn only_l4(&self) -> Option<L4Proto> {
        self.clauses.iter().find_map(|c| match c.any_of.as_slice() {
            [Value::L4(p)] if !c.negate => Some(*p),
            _ => None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    pub fn matches(&self, e: &Entry) -> bool {
        self.matches_keys(&Keys::of(e))
    }

    /// The same test on the fields a breakdown reads.
    pub fn matches_keys(&self, k: &Keys) -> bool {
        let idle = || {
            let configured = (self.configured.as_ref()?.0)(k)?;
            Some(configured.saturating_sub(k.timeout?))
        };
        self.clauses
            .iter()
            .all(|c| c.any_of.iter().any(|v| value_matches(v, k, &idle)) != c.negate)
    }
}

fn value_matches(v: &Value, k: &Keys, idle: &dyn Fn() -> Option<u32>) -> bool {
    let port_matches = |want: &Option<L4Proto>, port: u16, got: Option<u16>| {
        want.is_none_or(|p| p == k.l4) && got == Some(port)
    };
    match v {
        Value::L3(p) => k.l3 == Some(*p),
        Value::L4(p) => k.l4 == *p,
        Value::State(s) => k.state_name() == Some(s.as_str()),
        Value::Flag(FlagValue::Assured) => k.assured,
        Value::Flag(FlagValue::Unreplied) => k.unreplied,
        Value::Flag(FlagValue::Other) => !k.assured && !k.unreplied,
        Value::Zone(z) => k.zone == *z,
        Value::Mark(m) => k.mark == *m,
        Value::Nat(n) => k.nat == *n,
        Value::Src(p) => p.contains(k.src),
        Value::Dst(p) => p.contains(k.dst),
        Value::Sport(want, port) => port_matches(want, *port, k.sport),
        Value::Dport(want, port) => port_matches(want, *port, k.dport),
        Value::ReplySrc(p) => p.contains(k.reply_src),
        Value::TimeoutBelow(s) => k.timeout.is_some_and(|t| t < *s),
        Value::TimeoutAbove(s) => k.timeout.is_some_and(|t| t > *s),
        Value::IdleBelow(s) => idle().is_some_and(|t| t < *s),
        Value::IdleAbove(s) => idle().is_some_and(|t| t > *s),
    }
}

/// `timeout<DURATION` / `timeout>DURATION` / `idle<DURATION` /
/// `idle>DURATION` (`Ok(None)`: not a comparison).
fn parse_comparison(raw: &str) -> Result<Option<Clause>, FilterError> {
    let Some(i) = raw.find(['<', '>', '=']) else {
        return Ok(None);
    };
    let op = raw.as_bytes()[i];
    if op == b'=' {
        return Ok(None);
    }
    let (key, value) = (raw[..i].trim().to_ascii_lowercase(), raw[i + 1..].trim());
    if key != "timeout" && key != "idle" {
        return Err(FilterError::BadValue {
            clause: raw.into(),
            value: key,
            why: "only timeout and idle compare with < or >",
        });
    }
    let secs = parse_seconds(value).ok_or_else(|| FilterError::BadValue {
        clause: raw.into(),
        value: value.into(),
        why: "expected a duration such as 30, 30s, 5m or 2h",
    })?;
    let v = match (key.as_str(), op) {
        ("timeout", b'<') => Value::TimeoutBelow(secs),
        ("timeout", _) => Value::TimeoutAbove(secs),
        (_, b'<') => Value::IdleBelow(secs),
        _ => Value::IdleAbove(secs),
    };
    Ok(Some(Clause {
        negate: false,
        any_of: vec![v],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{Line, parse_line};

    fn entry(line: &str) -> Entry {
        match parse_line(line.as_bytes()) {
            Ok(Line::Entry(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    const TCP: &str = "tcp 6 95 ESTABLISHED src=10.1.1.1 dst=10.2.2.2 sport=1001 dport=443 src=10.2.2.2 dst=10.1.1.1 sport=443 dport=1001 [ASSURED] mark=7 use=1";
    const UDP: &str = "udp 17 20 src=192.168.0.9 dst=10.2.2.2 sport=5000 dport=53 [UNREPLIED] src=10.2.2.2 dst=192.168.0.9 sport=53 dport=5000 mark=0 zone=3 use=1";

    #[test]
    fn clauses() {
        let (tcp, udp) = (entry(TCP), entry(UDP));
        let f = |s: &[&str]| Filter::parse(s).expect("valid filter");
        assert!(f(&[]).matches(&tcp));
        assert!(f(&["l4=tcp"]).matches(&tcp) && !f(&["l4=tcp"]).matches(&udp));
        assert!(f(&["l4=tcp,udp", "dport=53"]).matches(&udp));
        assert!(f(&["dport=tcp/443"]).matches(&tcp) && !f(&["dport=udp/443"]).matches(&tcp));
        assert!(f(&["src=10.0.0.0/8"]).matches(&tcp) && !f(&["src=10.0.0.0/8"]).matches(&udp));
        assert!(f(&["src!=10.0.0.0/8"]).matches(&udp));
        assert!(f(&["state=established"]).matches(&tcp));
        assert!(f(&["flags=unreplied"]).matches(&udp) && f(&["flags=assured"]).matches(&tcp));
        assert!(f(&["zone=3"]).matches(&udp) && f(&["zone=0"]).matches(&tcp));
        assert!(f(&["mark=0x7"]).matches(&tcp));
        assert!(f(&["nat=none"]).matches(&tcp));
        assert!(f(&["src=0.0.0.0/0"]).matches(&udp));
        assert!(
            f(&["reply-src=10.2.2.2"]).matches(&udp)
                && !f(&["reply_src!=10.2.0.0/16"]).matches(&udp)
        );
        assert!(f(&["timeout<21"]).matches(&udp) && !f(&["timeout<20s"]).matches(&udp));
        assert!(f(&["timeout>1m"]).matches(&tcp) && !f(&["timeout>2m"]).matches(&tcp));
        assert!(f(&["timeout>5"]).matches(&udp) && !f(&["timeout>20"]).matches(&udp));
    }

    #[test]
    fn idle_is_the_configured_minus_the_remaining_timeout() {
        // UDP (UNREPLIED, remaining 20) configured 30: idle 10; TCP
        // ESTABLISHED (remaining 95) has no configured timeout here.
        let (tcp, udp) = (entry(TCP), entry(UDP));
        let f = |s: &[&str]| {
            Filter::parse(s)
                .expect("valid filter")
                .with_configured(|k: &Keys| (k.l4 == L4Proto::Udp).then_some(30))
        };
        assert!(f(&["idle>9"]).matches(&udp) && !f(&["idle>10"]).matches(&udp));
        assert!(f(&["idle<11s"]).matches(&udp) && !f(&["idle<10"]).matches(&udp));
        assert!(!f(&["idle>0"]).matches(&tcp) && !f(&["idle<1d"]).matches(&tcp));
        assert!(f(&["l4=udp", "idle>5", "timeout<25"]).matches(&udp));
        // A remaining timeout above the configured one (raised by hand,
        // or the sysctl lowered since) is idle 0.
        let long = Filter::parse(&["idle<1"])
            .expect("valid filter")
            .with_configured(|_: &Keys| Some(5));
        assert!(long.matches(&udp));
        // Without configured timeouts an idle clause matches nothing, and
        // says it needs them.
        let bare = Filter::parse(&["idle>1"]).expect("valid filter");
        assert!(bare.uses_idle() && !bare.matches(&udp));
        assert!(!Filter::parse(&["timeout>1"]).expect("valid").uses_idle());
        assert!(Filter::parse(&["idle>"]).is_err() && Filter::parse(&["idle>5q"]).is_err());
    }

    #[test]
    fn assured_is_named_only_explicitly() {
        let f = |s: &[&str]| Filter::parse(s).expect("valid filter").names_assured();
        assert!(!f(&[]) && !f(&["flags=unreplied"]) && !f(&["flags!=assured"]));
        assert!(f(&["flags=assured"]) && f(&["flags=unreplied,assured"]));
        assert!(f(&["state=TIME_WAIT"]) && !f(&["state!=TIME_WAIT"]));
        let l4 = |s: &[&str]| Filter::parse(s).expect("valid filter").only_l4();
        assert_eq!(l4(&["dport=53", "l4=udp"]), Some(L4Proto::Udp));
        assert_eq!(l4(&["l4!=udp"]), None);
        assert_eq!(l4(&["l4=udp,tcp"]), None);
    }

    #[test]
    fn errors_name_the_clause() {
        assert!(matches!(
            Filter::parse(&["colour=red"]),
            Err(FilterError::UnknownKey(_))
        ));
        assert!(matches!(
            Filter::parse(&["l4"]),
            Err(FilterError::Syntax(_))
        ));
        assert!(matches!(
            Filter::parse(&["src=10.0.0.0/33"]),
            Err(FilterError::BadValue { .. })
        ));
        assert!(matches!(
            Filter::parse(&["dport=tcp/70000"]),
            Err(FilterError::BadValue { .. })
        ));
        for bad in [
            "state=ESTABLISHD",
            "state!=TIME_WAT",
            "state=ESTABLISHED,",
            "state=",
            "state=NONE",
        ] {
            let e = Filter::parse(&[bad]);
            assert!(matches!(e, Err(FilterError::UnknownState { .. })), "{bad}");
            let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                msg.contains("SYN_SENT2, CLOSED") && msg.contains("TIME_WAIT"),
                "{msg}"
            );
        }
        for good in [
            "state=time_wait,Established",
            "state!=COOKIE_WAIT",
            "state=OPEN",
        ] {
            assert!(Filter::parse(&[good]).is_ok(), "{good}");
        }
        for bad in [
            "timeout<",
            "timeout<5x",
            "timeout>99999999999",
            "mark<3",
            "reply-src=x",
        ] {
            assert!(
                matches!(Filter::parse(&[bad]), Err(FilterError::BadValue { .. })),
                "{bad}"
            );
        }
    }
}
