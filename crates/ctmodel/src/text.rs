//! Parser for one line of conntrack text: `/proc/net/nf_conntrack` and every
//! `conntrack -L` form (plain, `-o extended`, `id`, `timestamp`, `ktimestamp`,
//! `labels`, zones, and `-E` event lines). The format is recognised per line,
//! so concatenated or mixed dumps parse too. Never panics: a line either
//! yields an [`Entry`], is recognised as noise ([`Line::Ignored`]), or is a
//! [`ParseError`] saying why.

use std::net::{IpAddr, Ipv4Addr};

use crate::entry::{Counters, Entry, L4Tuple, Status, Tuple};
use crate::proto::{L3Proto, L4Proto, State};

/// What one line of text turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Entry(Box<Entry>),
    /// Blank lines and conntrack-tools' own messages
    /// (`conntrack v1.4.7 (conntrack-tools): 14 flow entries have been shown.`).
    Ignored,
}

/// Why a line is not a conntrack entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line is not valid UTF-8")]
    NotUtf8,
    #[error("line longer than {0} bytes")]
    TooLong(usize),
    #[error("expected {expected}, found {found:?}")]
    Header {
        expected: &'static str,
        found: String,
    },
    #[error("bad value for {key}: {value:?}")]
    BadValue { key: String, value: String },
    #[error("unexpected word {0:?}")]
    UnexpectedWord(String),
    #[error("a third tuple (src= seen three times)")]
    ExtraTuple,
    #[error("missing {0}")]
    Missing(&'static str),
}

/// Longest line accepted; real lines are under 1 KiB even with IPv6,
/// labels and a security context.
pub const MAX_LINE: usize = 16 * 1024;

fn shown(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    s.chars().take(48).collect()
}

/// Split on blanks; a token opening with `[` runs to the matching `]` so that
/// `[start=Thu Nov 26 13:04:13 2026]` is one token.
struct Tokens<'a> {
    line: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let line = self.line;
        let mut i = self.pos;
        while i < line.len() && (line[i] == b' ' || line[i] == b'\t') {
            i += 1;
        }
        if i >= line.len() {
            self.pos = i;
            return None;
        }
        let start = i;
        let end = if line[i] == b'[' {
            match memchr::memchr(b']', &line[i..]) {
                Some(off) => i + off + 1,
                None => line.len(),
            }
        } else {
            while i < line.len() && line[i] != b' ' && line[i] != b'\t' {
                i += 1;
            }
            i
        };
        self.pos = end;
        Some(&line[start..end])
    }
}

fn is_digits(t: &[u8]) -> bool {
    !t.is_empty() && t.iter().all(u8::is_ascii_digit)
}

fn parse_u64(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in t {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(v)
}

fn parse_num<T: TryFrom<u64>>(t: &[u8]) -> Option<T> {
    parse_u64(t).and_then(|v| T::try_from(v).ok())
}

/// GRE keys print as `0x1`; accept decimal too.
fn parse_key(t: &[u8]) -> Option<u32> {
    match t.strip_prefix(b"0x") {
        Some(hex) if !hex.is_empty() && hex.len() <= 8 => {
            u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
        }
        Some(_) => None,
        None => parse_num(t),
    }
}

/// Dotted-quad fast path (most of a dump's bytes), std parser for IPv6,
/// including /proc's fully padded `2001:0db8:0000:...` form.
fn parse_ip(t: &[u8]) -> Option<IpAddr> {
    if t.contains(&b':') {
        return std::str::from_utf8(t).ok()?.parse().ok();
    }
    let mut octets = [0u8; 4];
    let mut parts = t.split(|&b| b == b'.');
    for o in &mut octets {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 {
            return None;
        }
        *o = parse_num(p)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(IpAddr::V4(Ipv4Addr::from(octets)))
}

/// Tuple under construction: which fields the text gave.
#[derive(Default)]
struct TupleParts {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    sport: Option<u16>,
    dport: Option<u16>,
    kind: Option<u8>,
    code: Option<u8>,
    id: Option<u16>,
    skey: Option<u32>,
    dkey: Option<u32>,
    zone: Option<u16>,
    counters: Option<Counters>,
}

impl TupleParts {
    fn build(self, which: &'static str) -> Result<(Tuple, Option<Counters>), ParseError> {
        let (Some(src), Some(dst)) = (self.src, self.dst) else {
            return Err(ParseError::Missing(which));
        };
        let l4 = if self.sport.is_some() || self.dport.is_some() {
            L4Tuple::Ports {
                sport: self.sport.unwrap_or(0),
                dport: self.dport.unwrap_or(0),
            }
        } else if self.kind.is_some() || self.code.is_some() || self.id.is_some() {
            L4Tuple::Icmp {
                kind: self.kind.unwrap_or(0),
                code: self.code.unwrap_or(0),
                id: self.id.unwrap_or(0),
            }
        } else if self.skey.is_some() || self.dkey.is_some() {
            L4Tuple::Gre {
                skey: self.skey.unwrap_or(0),
                dkey: self.dkey.unwrap_or(0),
            }
        } else {
            L4Tuple::None
        };
        let tuple = Tuple {
            src,
            dst,
            l4,
            zone: self.zone,
        };
        Ok((tuple, self.counters))
    }
}

fn bad(key: &[u8], value: &[u8]) -> ParseError {
    ParseError::BadValue {
        key: shown(key),
        value: shown(value),
    }
}

fn header(expected: &'static str, found: Option<&[u8]>) -> ParseError {
    ParseError::Header {
        expected,
        found: found.map(shown).unwrap_or_default(),
    }
}

/// Parse one line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<Line, ParseError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_LINE {
        return Err(ParseError::TooLong(MAX_LINE));
    }
    if line.starts_with(b"conntrack v")
        && memchr::memmem::find(line, b"(conntrack-tools)").is_some()
    {
        return Ok(Line::Ignored);
    }
    let mut toks = Tokens { line, pos: 0 }.peekable();
    // `conntrack -E` prefixes: `[NEW]`, `[1700000000.123456]`.
    while toks.peek().is_some_and(|t| t.starts_with(b"[")) {
        toks.next();
    }
    let Some(first) = toks.next() else {
        return Ok(Line::Ignored);
    };
    let mut entry = Entry::default();
    let num = toks.next();
    let number = num
        .and_then(parse_num::<u8>)
        .ok_or_else(|| header("a protocol number after the protocol name", num))?;
    // `ipv4 2 tcp 6 ...` (/proc, -o extended) or `tcp 6 ...` (conntrack -L).
    let extended = first.starts_with(b"ipv")
        || toks
            .peek()
            .is_some_and(|t| t.first().is_some_and(u8::is_ascii_alphabetic) && !t.contains(&b'='));
    let extended = extended && !matches!(toks.peek(), Some(t) if is_digits(t));
    let l4 = if extended {
        entry.l3 = Some(L3Proto::from_family(number));
        let _name = toks.next();
        let num = toks.next();
        L4Proto::from_number(
            num.and_then(parse_num::<u8>)
                .ok_or_else(|| header("the L4 protocol number", num))?,
        )
    } else {
        L4Proto::from_number(number)
    };
    entry.l4 = Some(l4);
    if let Some(t) = toks.peek()
        && is_digits(t)
    {
        entry.timeout = Some(parse_num(t).ok_or_else(|| bad(b"timeout", t))?);
        toks.next();
    }
    if let Some(t) = toks.peek()
        && !t.contains(&b'=')
        && !t.starts_with(b"[")
    {
        let name = std::str::from_utf8(t).map_err(|_| ParseError::NotUtf8)?;
        entry.state = Some(State::from_name(l4, name));
        toks.next();
    }

    let mut parts = [TupleParts::default(), TupleParts::default()];
    let mut dir = 0usize;
    let mut unreplied = false;
    let mut status = Status::empty();
    for tok in toks {
        if tok.starts_with(b"[") {
            match tok {
                b"[UNREPLIED]" => unreplied = true,
                b"[ASSURED]" => status |= Status::ASSURED,
                b"[OFFLOAD]" => status |= Status::OFFLOAD,
                b"[HW_OFFLOAD]" => status |= Status::HW_OFFLOAD,
                _ => {} // [start=...], [stop=...]: wall-clock text, not needed
            }
            continue;
        }
        let Some(eq) = memchr::memchr(b'=', tok) else {
            return Err(ParseError::UnexpectedWord(shown(tok)));
        };
        let (key, value) = (&tok[..eq], &tok[eq + 1..]);
        let cur = &mut parts[dir];
        match key {
            b"src" => {
                let ip = parse_ip(value).ok_or_else(|| bad(key, value))?;
                if cur.src.is_some() {
                    if dir == 1 {
                        return Err(ParseError::ExtraTuple);
                    }
                    dir = 1;
                    parts[1].src = Some(ip);
                } else {
                    cur.src = Some(ip);
                }
            }
            b"dst" => cur.dst = Some(parse_ip(value).ok_or_else(|| bad(key, value))?),
            b"sport" => cur.sport = Some(parse_num(value).ok_or_else(|| bad(key, value))?),
            b"dport" => cur.dport = Some(parse_num(value).ok_or_else(|| bad(key, value))?),
            b"type" => cur.kind = Some(parse_num(value).ok_or_else(|| bad(key, value))?),
            b"code" => cur.code = Some(parse_num(value).ok_or_else(|| bad(key, value))?),
            b"id" if l4.is_icmp() && cur.kind.is_some() && cur.id.is_none() => {
                cur.id = Some(parse_num(value).ok_or_else(|| bad(key, value))?);
            }
            b"id" => entry.id = Some(parse_num(value).ok_or_else(|| bad(key, value))?),
            b"srckey" => cur.skey = Some(parse_key(value).ok_or_else(|| bad(key, value))?),
            b"dstkey" => cur.dkey = Some(parse_key(value).ok_or_else(|| bad(key, value))?),
            b"packets" => {
                let v = parse_u64(value).ok_or_else(|| bad(key, value))?;
                cur.counters.get_or_insert_default().packets = v;
            }
            b"bytes" => {
                let v = parse_u64(value).ok_or_else(|| bad(key, value))?;
                cur.counters.get_or_insert_default().bytes = v;
            }
            b"zone-orig" => parts[0].zone = Some(parse_num(value).ok_or_else(|| bad(key, value))?),
            b"zone-reply" => {
                parts[1].zone = Some(parse_num(value).ok_or_else(|| bad(key, value))?);
            }
            b"zone" => entry.zone = Some(parse_num(value).ok_or_else(|| bad(key, value))?),
            b"mark" => entry.mark = Some(parse_num(value).ok_or_else(|| bad(key, value))?),
            b"use" => entry.use_count = Some(parse_num(value).ok_or_else(|| bad(key, value))?),
            b"delta-time" => {
                entry.delta_time = Some(parse_u64(value).ok_or_else(|| bad(key, value))?);
            }
            b"secctx" => {
                let s = std::str::from_utf8(value).map_err(|_| ParseError::NotUtf8)?;
                entry.secctx = Some(s.into());
            }
            b"labels" => entry.labels = Some(value.into()),
            // gre lines in /proc: `timeout=0, stream_timeout=0` (per-entry gre
            // timeouts, printed with a comma); newer keys: ignored, not fatal.
            _ => {}
        }
    }
    let [orig, reply] = parts;
    let (orig, counters_orig) = orig.build("original tuple (src=, dst=)")?;
    let (reply, counters_reply) = reply.build("reply tuple (second src=, dst=)")?;
    if entry.l3.is_none() {
        entry.l3 = Some(match orig.src {
            IpAddr::V4(_) => L3Proto::Ipv4,
            IpAddr::V6(_) => L3Proto::Ipv6,
        });
    }
    if !unreplied {
        status |= Status::SEEN_REPLY;
    }
    entry.status = status;
    entry.orig = orig;
    entry.reply = reply;
    entry.counters_orig = counters_orig;
    entry.counters_reply = counters_reply;
    Ok(Line::Entry(Box::new(entry)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Nat;

    fn entry(line: &str) -> Entry {
        match parse_line(line.as_bytes()) {
            Ok(Line::Entry(e)) => *e,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn proc_tcp_line() {
        let e = entry(
            "ipv4     2 tcp      6 119 TIME_WAIT src=127.0.0.1 dst=127.0.0.1 sport=33598 dport=8080 packets=4 bytes=216 src=127.0.0.1 dst=127.0.0.1 sport=8080 dport=33598 packets=2 bytes=112 [ASSURED] mark=0 zone=0 delta-time=0 use=2",
        );
        assert_eq!(e.l3, Some(L3Proto::Ipv4));
        assert_eq!(e.l4, Some(L4Proto::Tcp));
        assert_eq!(e.timeout, Some(119));
        assert_eq!(e.state_name(), Some("TIME_WAIT"));
        assert_eq!(
            e.orig.l4,
            L4Tuple::Ports {
                sport: 33598,
                dport: 8080
            }
        );
        assert_eq!(
            e.reply.l4,
            L4Tuple::Ports {
                sport: 8080,
                dport: 33598
            }
        );
        assert_eq!(
            e.counters_orig,
            Some(Counters {
                packets: 4,
                bytes: 216
            })
        );
        assert_eq!(
            e.counters_reply,
            Some(Counters {
                packets: 2,
                bytes: 112
            })
        );
        assert!(e.assured() && !e.unreplied());
        assert_eq!(
            (e.mark, e.zone, e.use_count, e.delta_time),
            (Some(0), Some(0), Some(2), Some(0))
        );
        assert_eq!(e.nat(), Nat::None);
    }

    #[test]
    fn proc_gre_line_with_comma_timeouts() {
        let e = entry(
            "ipv4     2 gre      47 95 timeout=0, stream_timeout=0 src=10.1.1.1 dst=10.2.2.2 srckey=0x1 dstkey=0x2 packets=0 bytes=0 [UNREPLIED] src=10.2.2.2 dst=10.1.1.1 srckey=0x2 dstkey=0x1 packets=0 bytes=0 mark=0 zone=0 delta-time=4 use=2",
        );
        assert_eq!(e.l4, Some(L4Proto::Gre));
        assert_eq!(e.timeout, Some(95));
        assert_eq!(e.state, None);
        assert_eq!(e.orig.l4, L4Tuple::Gre { skey: 1, dkey: 2 });
        assert!(e.unreplied());
        assert_eq!(e.nat(), Nat::None);
    }

    #[test]
    fn conntrack_plain_with_zone_mark_and_both_flags() {
        let e = entry(
            "tcp      6 95 SYN_SENT src=10.1.1.1 dst=10.2.2.2 sport=1000 dport=443 packets=0 bytes=0 src=10.2.2.2 dst=10.1.1.1 sport=443 dport=1000 packets=0 bytes=0 mark=42 zone=7 delta-time=5 use=1",
        );
        assert_eq!((e.mark, e.zone), (Some(42), Some(7)));
        assert_eq!(e.l3, Some(L3Proto::Ipv4));
        let e = entry(
            "sctp     132 99 ESTABLISHED src=10.1.1.1 dst=10.2.2.2 sport=1000 dport=3868 packets=0 bytes=0 [UNREPLIED] src=10.2.2.2 dst=10.1.1.1 sport=3868 dport=1000 packets=0 bytes=0 [ASSURED] mark=0 delta-time=0 use=1 id=2984547252",
        );
        assert!(e.assured() && e.unreplied());
        assert_eq!(e.state_name(), Some("ESTABLISHED"));
        assert_eq!(e.id, Some(2_984_547_252));
    }

    #[test]
    fn icmp_id_is_not_the_entry_id() {
        let e = entry(
            "icmpv6   58 95 src=2001:db8::1 dst=2001:db8::2 type=128 code=0 id=77 packets=0 bytes=0 [UNREPLIED] src=2001:db8::2 dst=2001:db8::1 type=129 code=0 id=77 packets=0 bytes=0 mark=0 delta-time=5 use=1 id=1875417895",
        );
        assert_eq!(e.l3, Some(L3Proto::Ipv6));
        assert_eq!(
            e.orig.l4,
            L4Tuple::Icmp {
                kind: 128,
                code: 0,
                id: 77
            }
        );
        assert_eq!(
            e.reply.l4,
            L4Tuple::Icmp {
                kind: 129,
                code: 0,
                id: 77
            }
        );
        assert_eq!(e.id, Some(1_875_417_895));
    }

    #[test]
    fn ktimestamp_bracket_with_spaces() {
        let e = entry(
            "udp      17 29 src=::1 dst=::1 sport=57772 dport=5353 packets=1 bytes=49 [UNREPLIED] src=::1 dst=::1 sport=5353 dport=57772 packets=0 bytes=0 mark=0 delta-time=1 [start=Thu Nov 26 13:04:13 2026] use=1",
        );
        assert_eq!(e.use_count, Some(1));
        assert_eq!(e.orig.dport(), Some(5353));
    }

    #[test]
    fn nat_is_derived_from_tuples() {
        let snat = entry(
            "tcp      6 95 ESTABLISHED src=10.1.1.1 dst=10.2.2.2 sport=1001 dport=80 src=10.2.2.2 dst=192.168.1.1 sport=80 dport=61000 [ASSURED] mark=0 use=1",
        );
        assert_eq!(snat.nat(), Nat::Snat);
        let dnat = entry(
            "tcp      6 95 ESTABLISHED src=10.1.1.1 dst=10.2.2.2 sport=1002 dport=80 src=10.9.9.9 dst=10.1.1.1 sport=8080 dport=1002 [ASSURED] mark=0 use=1",
        );
        assert_eq!(dnat.nat(), Nat::Dnat);
    }

    #[test]
    fn noise_and_errors() {
        assert_eq!(
            parse_line(b"conntrack v1.4.7 (conntrack-tools): 14 flow entries have been shown."),
            Ok(Line::Ignored)
        );
        assert_eq!(parse_line(b"   "), Ok(Line::Ignored));
        assert!(matches!(
            parse_line(b"nfct_labelmap_new: No such file or directory"),
            Err(ParseError::Header { .. })
        ));
        assert!(matches!(
            parse_line(b"tcp 6 10 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2"),
            Err(ParseError::Missing(_))
        ));
        assert!(matches!(
            parse_line(b"tcp 6 10 ESTABLISHED src=10.0.0.256 dst=10.0.0.2"),
            Err(ParseError::BadValue { .. })
        ));
        assert!(matches!(
            parse_line(
                b"tcp 6 10 ESTABLISHED src=1.1.1.1 dst=1.1.1.2 src=1.1.1.2 dst=1.1.1.1 use=1 oops"
            ),
            Err(ParseError::UnexpectedWord(_))
        ));
    }
}
