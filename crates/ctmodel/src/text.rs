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
#[allow(clippy::large_enum_variant)] // one per line, never stored
pub enum Line {
    Entry(Entry),
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

// Word-at-a-time scanning (SWAR) in safe Rust: finding the end of each
// token eight bytes at a time avoids a data-dependent branch per byte, which
// is where a byte loop spends most of its time on conntrack lines (short
// tokens of varying length). No crate does this for us: memchr is built for
// long haystacks and pays a call per token.
pub(crate) const LO: u64 = 0x0101_0101_0101_0101;
pub(crate) const HI: u64 = 0x8080_8080_8080_8080;

/// Eight bytes from `i`, zero-padded past the end (zero counts as a blank).
#[inline(always)]
pub(crate) fn load8(line: &[u8], i: usize) -> u64 {
    if let Some(b) = line.get(i..i + 8)
        && let Ok(arr) = <[u8; 8]>::try_from(b)
    {
        return u64::from_le_bytes(arr);
    }
    let mut x = 0u64;
    for (k, &b) in line.iter().skip(i).take(8).enumerate() {
        x |= u64::from(b) << (8 * k);
    }
    x
}

/// High bit set in each byte that is not a blank (`> b' '`). Exact per
/// byte: the low seven bits are added without carrying across bytes.
#[inline(always)]
fn solid_mask(x: u64) -> u64 {
    (((x & !HI).wrapping_add(LO * 0x5f)) | x) & HI
}

/// Index of the first blank (any byte `<= b' '`: space, tab, CR, NUL) at
/// or after `start`, or the line's end.
#[inline(always)]
pub(crate) fn token_end(line: &[u8], start: usize) -> usize {
    let mut i = start;
    loop {
        let m = !solid_mask(load8(line, i)) & HI;
        if m != 0 {
            return (i + (m.trailing_zeros() / 8) as usize).min(line.len());
        }
        i += 8;
    }
}

/// Index of the first non-blank at or after `start`, or the line's end.
#[inline(always)]
pub(crate) fn skip_blanks(line: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < line.len() {
        let m = solid_mask(load8(line, i));
        if m != 0 {
            return (i + (m.trailing_zeros() / 8) as usize).min(line.len());
        }
        i += 8;
    }
    line.len()
}

/// The next token from `pos`: `[...]` groups run to their `]` (so
/// `[start=Thu Nov 26 13:04:13 2026]` is one token). Empty at the end.
#[inline(always)]
fn next_token<'a>(line: &'a [u8], pos: &mut usize) -> &'a [u8] {
    let start = skip_blanks(line, *pos);
    let end = if line.get(start) == Some(&b'[') {
        memchr::memchr(b']', &line[start..]).map_or(line.len(), |off| start + off + 1)
    } else {
        token_end(line, start)
    };
    *pos = end;
    &line[start..end]
}

/// The first four bytes of a token (zero-padded), for key dispatch.
#[inline(always)]
pub(crate) fn head4(tok: &[u8]) -> u32 {
    let x = load8(tok, 0) as u32;
    if tok.len() >= 4 {
        x
    } else {
        x & ((1u32 << (8 * tok.len())) - 1)
    }
}

pub(crate) const fn k4(key: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*key)
}

pub(crate) const K_SRC: u32 = k4(b"src=");
pub(crate) const K_DST: u32 = k4(b"dst=");
pub(crate) const K_SPOR: u32 = k4(b"spor");
pub(crate) const K_DPOR: u32 = k4(b"dpor");
pub(crate) const K_PACK: u32 = k4(b"pack");
pub(crate) const K_BYTE: u32 = k4(b"byte");
pub(crate) const K_MARK: u32 = k4(b"mark");
pub(crate) const K_USE: u32 = k4(b"use=");
pub(crate) const K_DELT: u32 = k4(b"delt");
pub(crate) const K_ZONE: u32 = k4(b"zone");
pub(crate) const K_TYPE: u32 = k4(b"type");
pub(crate) const K_CODE: u32 = k4(b"code");
pub(crate) const K_SRCK: u32 = k4(b"srck");
pub(crate) const K_DSTK: u32 = k4(b"dstk");
pub(crate) const K_SECC: u32 = k4(b"secc");
pub(crate) const K_LABE: u32 = k4(b"labe");
pub(crate) const K_BR_UNR: u32 = k4(b"[UNR");
pub(crate) const K_BR_ASS: u32 = k4(b"[ASS");
pub(crate) const K_BR_OFF: u32 = k4(b"[OFF");
pub(crate) const K_BR_HW: u32 = k4(b"[HW_");

/// A decimal u64, up to 18446744073709551615: the kernel prints packet and
/// byte counters as full u64s (`packets=%llu bytes=%llu` in nf_conntrack_standalone.c
/// seq_print_acct(), and conntrack-tools likewise),
/// so every value up to u64::MAX is valid (issue 7 §6).
#[inline(always)]
pub(crate) fn digits(v: &[u8]) -> Option<u64> {
    // Up to 19 digits cannot overflow: the fast path, without checks.
    if v.is_empty() || v.len() > 19 {
        return digits_checked(v);
    }
    let mut n = 0u64;
    for &b in v {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + u64::from(d);
    }
    Some(n)
}

/// Longer numbers (20 digits, or leading zeros), refusing an overflow.
#[cold]
fn digits_checked(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

#[inline(always)]
fn number<T: TryFrom<u64>>(v: &[u8]) -> Option<T> {
    digits(v).and_then(|n| T::try_from(n).ok())
}

/// A dotted quad parsed in one pass; anything else (IPv6, including
/// /proc's zero-padded form, or a malformed quad) through the std parser.
#[inline(always)]
pub(crate) fn parse_ip(v: &[u8]) -> Option<IpAddr> {
    match parse_ipv4(v) {
        Some(a) => Some(IpAddr::V4(a)),
        None => std::str::from_utf8(v).ok()?.parse().ok(),
    }
}

#[inline(always)]
fn parse_ipv4(v: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let (mut idx, mut cur, mut nd) = (0usize, 0u32, 0u32);
    for &b in v {
        if b == b'.' {
            if nd == 0 || idx == 3 {
                return None;
            }
            octets[idx] = cur as u8; // cur <= 255, checked below
            idx += 1;
            (cur, nd) = (0, 0);
        } else {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            cur = cur * 10 + u32::from(d);
            nd += 1;
            if nd > 3 || cur > 255 {
                return None;
            }
        }
    }
    if idx != 3 || nd == 0 {
        return None;
    }
    octets[3] = cur as u8;
    Some(Ipv4Addr::from(octets))
}

fn is_digits(t: &[u8]) -> bool {
    !t.is_empty() && t.iter().all(u8::is_ascii_digit)
}

/// GRE keys print as `0x1`; accept decimal too.
pub(crate) fn parse_key(t: &[u8]) -> Option<u32> {
    match t.strip_prefix(b"0x") {
        Some(hex) if !hex.is_empty() && hex.len() <= 8 => {
            u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
        }
        Some(_) => None,
        None => number(t),
    }
}

/// Tuple under construction: which fields the text gave.
#[derive(Default)]
pub(crate) struct TupleParts {
    pub(crate) src: Option<IpAddr>,
    pub(crate) dst: Option<IpAddr>,
    pub(crate) sport: Option<u16>,
    pub(crate) dport: Option<u16>,
    pub(crate) kind: Option<u8>,
    pub(crate) code: Option<u8>,
    pub(crate) id: Option<u16>,
    pub(crate) skey: Option<u32>,
    pub(crate) dkey: Option<u32>,
    pub(crate) zone: Option<u16>,
    pub(crate) counters: Option<Counters>,
}

impl TupleParts {
    pub(crate) fn build(
        self,
        which: &'static str,
    ) -> Result<(Tuple, Option<Counters>), ParseError> {
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
    let mut pos = 0;
    let mut tok = next_token(line, &mut pos);
    // `conntrack -E` prefixes: `[NEW]`, `[1700000000.123456]`.
    while tok.starts_with(b"[") {
        tok = next_token(line, &mut pos);
    }
    if tok.is_empty() {
        return Ok(Line::Ignored);
    }
    let first = tok;
    let mut entry = Entry::default();
    let num = next_token(line, &mut pos);
    let first_num = number::<u8>(num)
        .ok_or_else(|| header("a protocol number after the protocol name", Some(num)))?;
    let mut tok = next_token(line, &mut pos);
    // `ipv4 2 tcp 6 ...` (/proc, -o extended) or `tcp 6 ...` (conntrack -L):
    // extended when the third token is a name rather than the timeout.
    let extended = first.starts_with(b"ipv")
        || (tok.first().is_some_and(u8::is_ascii_alphabetic) && !tok.contains(&b'='));
    let l4 = if extended {
        entry.l3 = Some(L3Proto::from_family(first_num));
        let num = next_token(line, &mut pos);
        tok = next_token(line, &mut pos);
        L4Proto::from_number(
            number(num).ok_or_else(|| header("the L4 protocol number", Some(num)))?,
        )
    } else {
        L4Proto::from_number(first_num)
    };
    entry.l4 = Some(l4);
    if is_digits(tok) {
        entry.timeout = Some(number(tok).ok_or_else(|| bad(b"timeout", tok))?);
        tok = next_token(line, &mut pos);
    }
    // The token after the header is either the state or the first key=value.
    let mut pending = Some(tok);
    if !tok.is_empty() && !tok.contains(&b'=') && !tok.starts_with(b"[") {
        let name = std::str::from_utf8(tok).map_err(|_| ParseError::NotUtf8)?;
        entry.state = Some(State::from_name(l4, name));
        pending = None;
    }

    let mut parts = [TupleParts::default(), TupleParts::default()];
    let mut dir = 0usize;
    let mut unreplied = false;
    let mut status = Status::empty();
    loop {
        let tok = match pending.take() {
            Some(t) => t,
            None => next_token(line, &mut pos),
        };
        if tok.is_empty() {
            break;
        }
        let cur = &mut parts[dir];
        // Keys by their first four bytes, then the full `key=` is checked.
        // Ordered by frequency in real dumps.
        macro_rules! val {
            ($key:literal) => {
                match tok.strip_prefix($key) {
                    Some(v) => v,
                    None => return Err(ParseError::UnexpectedWord(shown(tok))),
                }
            };
        }
        let bad = |v: &[u8]| {
            let eq = tok.iter().position(|&b| b == b'=').unwrap_or(0);
            bad(&tok[..eq], v)
        };
        match head4(tok) {
            K_SRC => {
                let v = &tok[4..];
                let ip = parse_ip(v).ok_or_else(|| bad(v))?;
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
            K_DST => {
                let v = &tok[4..];
                cur.dst = Some(parse_ip(v).ok_or_else(|| bad(v))?);
            }
            K_SPOR => {
                let v = val!(b"sport=");
                cur.sport = Some(number(v).ok_or_else(|| bad(v))?);
            }
            K_DPOR => {
                let v = val!(b"dport=");
                cur.dport = Some(number(v).ok_or_else(|| bad(v))?);
            }
            K_PACK => {
                let v = val!(b"packets=");
                cur.counters.get_or_insert_default().packets = digits(v).ok_or_else(|| bad(v))?;
            }
            K_BYTE => {
                let v = val!(b"bytes=");
                cur.counters.get_or_insert_default().bytes = digits(v).ok_or_else(|| bad(v))?;
            }
            K_MARK => {
                let v = val!(b"mark=");
                entry.mark = Some(number(v).ok_or_else(|| bad(v))?);
            }
            K_USE => {
                let v = &tok[4..];
                entry.use_count = Some(number(v).ok_or_else(|| bad(v))?);
            }
            K_DELT => {
                let v = val!(b"delta-time=");
                entry.delta_time = Some(digits(v).ok_or_else(|| bad(v))?);
            }
            K_ZONE => {
                if let Some(v) = tok.strip_prefix(b"zone=") {
                    entry.zone = Some(number(v).ok_or_else(|| bad(v))?);
                } else if let Some(v) = tok.strip_prefix(b"zone-orig=") {
                    parts[0].zone = Some(number(v).ok_or_else(|| bad(v))?);
                } else {
                    let v = val!(b"zone-reply=");
                    parts[1].zone = Some(number(v).ok_or_else(|| bad(v))?);
                }
            }
            K_TYPE => {
                let v = val!(b"type=");
                cur.kind = Some(number(v).ok_or_else(|| bad(v))?);
            }
            K_CODE => {
                let v = val!(b"code=");
                cur.code = Some(number(v).ok_or_else(|| bad(v))?);
            }
            h if h & 0x00ff_ffff == k4(b"id=\0") => {
                let v = &tok[3..];
                let n: u32 = number(v).ok_or_else(|| bad(v))?;
                if l4.is_icmp() && cur.kind.is_some() && cur.id.is_none() {
                    cur.id = Some(u16::try_from(n).map_err(|_| bad(v))?);
                } else {
                    entry.id = Some(n);
                }
            }
            K_SRCK => {
                let v = val!(b"srckey=");
                cur.skey = Some(parse_key(v).ok_or_else(|| bad(v))?);
            }
            K_DSTK => {
                let v = val!(b"dstkey=");
                cur.dkey = Some(parse_key(v).ok_or_else(|| bad(v))?);
            }
            K_SECC => {
                let v = val!(b"secctx=");
                let s = std::str::from_utf8(v).map_err(|_| ParseError::NotUtf8)?;
                entry.secctx = Some(s.into());
            }
            K_LABE => entry.labels = Some(val!(b"labels=").into()),
            K_BR_UNR if tok == b"[UNREPLIED]" => unreplied = true,
            K_BR_ASS if tok == b"[ASSURED]" => status |= Status::ASSURED,
            K_BR_OFF if tok == b"[OFFLOAD]" => status |= Status::OFFLOAD,
            K_BR_HW if tok == b"[HW_OFFLOAD]" => status |= Status::HW_OFFLOAD,
            // [start=...], [stop=...]: wall-clock text, not needed.
            _ if tok.starts_with(b"[") => {}
            // gre lines in /proc carry `timeout=0, stream_timeout=0` (with a
            // comma); other keys of newer tools are ignored, not fatal.
            _ if tok.contains(&b'=') => {}
            _ => return Err(ParseError::UnexpectedWord(shown(tok))),
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
    Ok(Line::Entry(entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Nat;

    fn entry(line: &str) -> Entry {
        match parse_line(line.as_bytes()) {
            Ok(Line::Entry(e)) => e,
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
    fn counters_up_to_u64_max_are_valid() {
        // The kernel's counters are u64 (%llu); 20 digits are not malformed.
        let e = entry(
            "ipv4     2 udp      17 29 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=53 packets=18446744073709551615 bytes=10000000000000000000 src=10.0.0.2 dst=10.0.0.1 sport=53 dport=1 packets=00000000000000000000001 bytes=0 mark=0 zone=0 delta-time=18446744073709551615 use=2",
        );
        let orig = e.counters_orig.expect("counters");
        assert_eq!(
            (orig.packets, orig.bytes),
            (u64::MAX, 10_000_000_000_000_000_000)
        );
        assert_eq!(e.counters_reply.expect("counters").packets, 1);
        assert_eq!(e.delta_time, Some(u64::MAX));
        for too_big in [
            "18446744073709551616",
            "99999999999999999999",
            "184467440737095516150",
        ] {
            let line = format!(
                "tcp 6 10 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 packets={too_big} bytes=0 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1"
            );
            assert!(
                matches!(
                    parse_line(line.as_bytes()),
                    Err(ParseError::BadValue { .. })
                ),
                "{too_big}"
            );
        }
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
