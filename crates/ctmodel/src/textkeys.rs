//! The fast path of text scans: the grouping fields ([`Keys`]) of one line
//! of conntrack text, read in one pass without building an [`Entry`]
//! (crate::Entry). Values the grouping does not need (counters, `use=`,
//! `delta-time=`, ids) are only checked, as the full parser checks them.
//!
//! Invariant: whenever [`KeyReader::keys`] returns `Some(k)`, [`parse_line`] gives an
//! entry `e` with `Keys::of(&e) == k`. Anything it cannot vouch for
//! (malformed values, layouts it does not know, event prefixes, noise)
//! is `None`, and the caller runs the full parser, which reports the line
//! with its reason and number. `tests/properties.rs` checks the invariant
//! on random valid and malformed lines of every protocol and form.
//!
//! [`parse_line`]: crate::text::parse_line

use std::net::IpAddr;

use crate::entry::{Nat, Tuple};
use crate::keys::{Keys, StateKey};
use crate::proto::{L3Proto, L4Proto};
use crate::text::{
    HI, K_BYTE, K_CODE, K_DELT, K_DPOR, K_DST, K_DSTK, K_LABE, K_MARK, K_PACK, K_SECC, K_SPOR,
    K_SRC, K_SRCK, K_TYPE, K_USE, K_ZONE, LO, TupleParts, digits, k4, parse_ip, parse_key,
};

/// The line buffer: lines up to [`FAST_MAX`] bytes are copied here, the
/// rest of it is always zero (a blank, as the full parser pads its loads),
/// so every 8-byte load is a plain load.
const PAD: usize = 1024;
/// Longer lines (none in practice) go to the full parser. Reads stop at
/// the first zero byte, so none reaches past `FAST_MAX + 32`, and the
/// index mask below never wraps.
const FAST_MAX: usize = PAD - 64;
/// The buffer's size: 8 bytes more, so a load at any masked index fits.
const BUF: usize = PAD + 8;

#[inline(always)]
fn load(b: &[u8; BUF], i: usize) -> u64 {
    let i = i & (PAD - 1);
    b[i..]
        .first_chunk::<8>()
        .map_or(0, |w| u64::from_le_bytes(*w))
}

#[inline(always)]
fn byte(b: &[u8; BUF], i: usize) -> u8 {
    b[i & (PAD - 1)]
}

/// High bit set in each byte that is not an ASCII digit. Exact per byte:
/// the low seven bits are added without carrying across bytes.
#[inline(always)]
fn non_digit_mask(x: u64) -> u64 {
    let low = x & !HI;
    let ge_0 = low.wrapping_add(LO * (0x80 - u64::from(b'0')));
    let gt_9 = low.wrapping_add(LO * (0x80 - u64::from(b'9') - 1));
    (!ge_0 | gt_9 | x) & HI
}

/// High bit set in each byte that is not a blank (`> b' '`), as text.rs.
#[inline(always)]
fn solid_mask(x: u64) -> u64 {
    (((x & !HI).wrapping_add(LO * 0x5f)) | x) & HI
}

/// How many ASCII digits start at `i`.
#[inline(always)]
fn digit_run(b: &[u8; BUF], i: usize) -> usize {
    let mut n = 0;
    loop {
        let m = non_digit_mask(load(b, i + n));
        if m != 0 {
            return n + (m.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
}

/// The first blank at or after `i` (the zero tail ends every token).
#[inline(always)]
fn token_end(b: &[u8; BUF], i: usize) -> usize {
    let mut i = i;
    loop {
        let m = !solid_mask(load(b, i)) & HI;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
}

/// The value of the `n` (1..=8) digits at the start of `x` (first digit in
/// the lowest byte), eight bytes at once.
#[inline(always)]
fn swar_value(x: u64, n: usize) -> u64 {
    let mut v = (x << (64 - 8 * n)) & 0x0f0f_0f0f_0f0f_0f0f;
    v = (v.wrapping_mul(10 * 256 + 1) >> 8) & 0x00ff_00ff_00ff_00ff;
    v = (v.wrapping_mul(100 * 65_536 + 1) >> 16) & 0x0000_ffff_0000_ffff;
    v.wrapping_mul(10_000 * (1 << 32) + 1) >> 32
}

#[inline(always)]
fn ends_token(b: &[u8; BUF], i: usize) -> bool {
    byte(b, i) <= b' '
}

/// A whole-token number at `i` with the full parser's `digits` semantics,
/// and where it ends; `None` unless it ends at a blank.
#[inline(always)]
fn number(b: &[u8; BUF], i: usize) -> Option<(u64, usize)> {
    let n = digit_run(b, i);
    if n == 0 || !ends_token(b, i + n) {
        return None;
    }
    let v = if n <= 8 {
        swar_value(load(b, i), n)
    } else {
        digits(b.get(i..i + n)?)?
    };
    Some((v, i + n))
}

#[inline(always)]
fn num<T: TryFrom<u64>>(b: &[u8; BUF], i: usize) -> Option<(T, usize)> {
    let (v, end) = number(b, i)?;
    Some((T::try_from(v).ok()?, end))
}

/// A dotted quad at `i` ending at a blank, read like the full parser's
/// `parse_ipv4` (1 to 3 digits per octet, each at most 255), and its end.
#[inline(always)]
fn ipv4_at(b: &[u8; BUF], i: usize) -> Option<(u32, usize)> {
    let mut addr = 0u32;
    let mut j = i;
    for octet in 0..4 {
        let x = load(b, j);
        let m = non_digit_mask(x);
        let n = (m.trailing_zeros() / 8) as usize;
        if n == 0 || n > 3 {
            return None;
        }
        let v = swar_value(x, n);
        if v > 255 {
            return None;
        }
        addr = addr << 8 | v as u32;
        j += n;
        if octet < 3 {
            if byte(b, j) != b'.' {
                return None;
            }
            j += 1;
        }
    }
    ends_token(b, j).then_some((addr, j))
}

/// An address at `i`: a dotted quad read in place, anything else (IPv6,
/// or a quad the fast reading refuses) by the full parser's [`parse_ip`].
#[inline(always)]
fn ip(b: &[u8; BUF], i: usize) -> Option<(IpAddr, usize)> {
    if let Some((a, end)) = ipv4_at(b, i) {
        return Some((IpAddr::V4(a.into()), end));
    }
    let end = token_end(b, i);
    Some((parse_ip(b.get(i..end)?)?, end))
}

/// Whether the token at `i` is exactly the `len` bytes at `at` (at most
/// 16), i.e. reads to the same value.
#[inline(always)]
fn same_text(b: &[u8; BUF], i: usize, at: usize, len: usize) -> bool {
    if len == 0 || len > 16 || !ends_token(b, i + len) {
        return false;
    }
    let mask = |n: usize| if n >= 8 { !0u64 } else { (1u64 << (8 * n)) - 1 };
    let (m0, m1) = (mask(len), mask(len.saturating_sub(8)));
    (load(b, i) ^ load(b, at)) & m0 == 0 && (load(b, i + 8) ^ load(b, at + 8)) & m1 == 0
}

/// Whether the bytes at `i` start with `key` (at most 16 bytes; a literal,
/// so the words and masks fold to constants).
#[inline(always)]
fn has(b: &[u8; BUF], i: usize, key: &[u8]) -> bool {
    let word = |k: &[u8]| k.iter().rev().fold(0u64, |w, &c| w << 8 | u64::from(c));
    let mask = |n: usize| if n >= 8 { !0u64 } else { (1u64 << (8 * n)) - 1 };
    let (k0, k1) = key.split_at(key.len().min(8));
    load(b, i) & mask(k0.len()) == word(k0)
        && (k1.is_empty() || load(b, i + 8) & mask(k1.len()) == word(k1))
}

/// Where one token of the original tuple was: (start, length).
type Span = (usize, usize);

const K_ID: u32 = k4(b"id=\0");
const K_BR: u8 = b'[';

/// The previous line's header (`ipv4     2 tcp      6 `, up to its
/// timeout): a dump repeats a few headers, and the same bytes read the same.
#[derive(Default, Clone, Copy)]
struct Header {
    /// Bytes, with the blanks after the L4 number (0: none cached).
    len: usize,
    words: [u64; 4],
    l3: Option<L3Proto>,
    l4: Option<L4Proto>,
}

impl Header {
    const MAX: usize = 32;

    fn masked(b: &[u8; BUF], len: usize) -> [u64; 4] {
        let mut w = [0u64; 4];
        for (k, word) in w.iter_mut().enumerate() {
            let n = len.saturating_sub(8 * k).min(8);
            let mask = if n >= 8 { !0u64 } else { (1u64 << (8 * n)) - 1 };
            *word = load(b, 8 * k) & mask;
        }
        w
    }
}

/// Reads the grouping fields of lines, one at a time, through its buffer.
pub struct KeyReader {
    buf: Box<[u8; BUF]>,
    /// Bytes of the previous line (the only non-zero ones).
    len: usize,
    header: Header,
}

impl Default for KeyReader {
    fn default() -> Self {
        Self {
            buf: Box::new([0; BUF]),
            len: 0,
            header: Header::default(),
        }
    }
}

impl KeyReader {
    /// The grouping fields of `line` (without its newline), or `None` when
    /// only the full parser can say what the line is.
    pub fn keys<'l>(&mut self, line: &'l [u8]) -> Option<Keys<'l>> {
        let s = line.strip_suffix(b"\r").unwrap_or(line);
        if s.len() > FAST_MAX {
            return None;
        }
        let old = self.len;
        self.buf[..s.len()].copy_from_slice(s);
        if old > s.len() {
            self.buf[s.len()..old].fill(0);
        }
        self.len = s.len();
        read(&self.buf, s, &mut self.header)
    }
}

/// The cursor to the next token: usually one space.
#[inline(always)]
fn skip(b: &[u8; BUF], i: usize, end: usize) -> usize {
    if byte(b, i) == b' ' && byte(b, i + 1) > b' ' {
        return i + 1;
    }
    let mut i = i;
    while i < end {
        let m = solid_mask(load(b, i));
        if m != 0 {
            return (i + (m.trailing_zeros() / 8) as usize).min(end);
        }
        i += 8;
    }
    end
}

/// The header of a line (`ipv4 2 tcp 6 ` or `tcp 6 `): the family when
/// the line gives it, the L4 protocol, and where the next token starts.
#[inline(always)]
fn header(b: &[u8; BUF], end: usize) -> Option<(Option<L3Proto>, L4Proto, usize)> {
    let mut i = skip(b, 0, end);
    // Event prefixes (`[NEW]`) and noise are the full parser's.
    if i >= end || byte(b, i) == K_BR {
        return None;
    }
    let extended = load(b, i) & 0xff_ffff == u64::from(k4(b"ipv\0"));
    i = skip(b, token_end(b, i), end);
    let (first_num, e) = num::<u8>(b, i)?;
    i = skip(b, e, end);
    if extended {
        // `ipv4 2 tcp 6 ...`: the L4 name is not read, only its number.
        if i >= end || byte(b, i) == K_BR {
            return None;
        }
        i = skip(b, token_end(b, i), end);
        let (n, e) = num::<u8>(b, i)?;
        i = skip(b, e, end);
        Some((
            Some(L3Proto::from_family(first_num)),
            L4Proto::from_number(n),
            i,
        ))
    } else {
        Some((None, L4Proto::from_number(first_num), i))
    }
}

/// `s` is the line, `b` its copy with the zero tail; `cache` the last header read.
#[inline(always)]
fn read<'l>(b: &[u8; BUF], s: &'l [u8], cache: &mut Header) -> Option<Keys<'l>> {
    let end = s.len();
    let (l3, l4, mut i) = match cache.l4 {
        Some(l4) if end > cache.len && Header::masked(b, cache.len) == cache.words => {
            (cache.l3, l4, skip(b, cache.len, end))
        }
        _ => {
            let (l3, l4, i) = header(b, end)?;
            // Only a header that ends in blanks before more text: the same
            // bytes then hold the same tokens.
            if i < end && i <= Header::MAX {
                *cache = Header {
                    len: i,
                    words: Header::masked(b, i),
                    l3,
                    l4: Some(l4),
                };
            }
            (l3, l4, i)
        }
    };
    if l3.is_none() && !byte(b, i).is_ascii_digit() {
        // `tcp 6 95 ...`; a word here would make the full parser read
        // the line as the extended form.
        return None;
    }
    let mut timeout = None;
    if byte(b, i).is_ascii_digit() {
        let (t, e) = num::<u32>(b, i)?;
        timeout = Some(t);
        i = skip(b, e, end);
    }
    let mut state = None;
    if i < end && load(b, i) as u32 != K_SRC && byte(b, i) != K_BR {
        let e = token_end(b, i);
        let tok = &s[i..e.min(end)];
        if !tok.contains(&b'=') {
            state = Some(state_key(l4, tok)?);
            i = skip(b, e, end);
        }
    }

    let mut parts = [TupleParts::default(), TupleParts::default()];
    // The original tuple's src, dst, sport and dport text: a reply token
    // with the same text has the same value, unread.
    let mut spans: [Span; 4] = [(0, 0); 4];
    let mut dir = 0usize;
    let (mut unreplied, mut assured) = (false, false);
    let (mut mark, mut zone) = (None::<u32>, None::<u16>);
    while i < end {
        let head = load(b, i) as u32;
        let key = |k: &[u8]| has(b, i, k);
        let e = match head {
            K_SRC => {
                let v = i + 4;
                // A second src= starts the reply tuple; a third is an error.
                let to_reply = parts[dir].src.is_some();
                if to_reply && dir == 1 {
                    return None;
                }
                let (ip, e) = if to_reply && same_text(b, v, spans[1].0, spans[1].1) {
                    (parts[0].dst?, v + spans[1].1)
                } else {
                    ip(b, v)?
                };
                if to_reply {
                    dir = 1;
                } else {
                    spans[0] = (v, e - v);
                }
                parts[dir].src = Some(ip);
                e
            }
            K_DST => {
                let v = i + 4;
                if dir == 1 && same_text(b, v, spans[0].0, spans[0].1) {
                    parts[1].dst = parts[0].src;
                    v + spans[0].1
                } else {
                    let (ip, e) = ip(b, v)?;
                    parts[dir].dst = Some(ip);
                    if dir == 0 {
                        spans[1] = (v, e - v);
                    }
                    e
                }
            }
            K_SPOR | K_DPOR if byte(b, i + 5) == b'=' && byte(b, i + 4) == b't' => {
                let v = i + 6;
                let sport = head == K_SPOR;
                // A reply port mirrors the original's other port.
                let (mirror, own) = if sport { (3, 2) } else { (2, 3) };
                let (port, e) = if dir == 1 && same_text(b, v, spans[mirror].0, spans[mirror].1) {
                    let p = if sport {
                        parts[0].dport
                    } else {
                        parts[0].sport
                    };
                    (p?, v + spans[mirror].1)
                } else {
                    num::<u16>(b, v)?
                };
                if dir == 0 {
                    spans[own] = (v, e - v);
                }
                let cur = &mut parts[dir];
                if sport {
                    cur.sport = Some(port);
                } else {
                    cur.dport = Some(port);
                }
                e
            }
            K_PACK if key(b"packets=") => number(b, i + 8)?.1,
            K_BYTE if key(b"bytes=") => number(b, i + 6)?.1,
            K_MARK if key(b"mark=") => {
                let (m, e) = num(b, i + 5)?;
                mark = Some(m);
                e
            }
            K_USE => num::<u32>(b, i + 4)?.1,
            K_DELT if key(b"delta-time=") => number(b, i + 11)?.1,
            K_ZONE => {
                if key(b"zone=") {
                    let (z, e) = num(b, i + 5)?;
                    zone = Some(z);
                    e
                } else if key(b"zone-orig=") {
                    num::<u16>(b, i + 10)?.1
                } else if key(b"zone-reply=") {
                    num::<u16>(b, i + 11)?.1
                } else {
                    return None;
                }
            }
            K_TYPE if key(b"type=") => {
                let (v, e) = num(b, i + 5)?;
                parts[dir].kind = Some(v);
                e
            }
            K_CODE if key(b"code=") => {
                let (v, e) = num(b, i + 5)?;
                parts[dir].code = Some(v);
                e
            }
            h if h & 0x00ff_ffff == K_ID => {
                let (n, e) = num::<u32>(b, i + 3)?;
                let cur = &mut parts[dir];
                if l4.is_icmp() && cur.kind.is_some() && cur.id.is_none() {
                    cur.id = Some(u16::try_from(n).ok()?);
                }
                e
            }
            K_SRCK | K_DSTK => {
                let e = token_end(b, i);
                let t = &s[i..e.min(end)];
                let (k, v) = t.split_at(t.len().min(7));
                let v = parse_key(v)?;
                let cur = &mut parts[dir];
                match k {
                    b"srckey=" => cur.skey = Some(v),
                    b"dstkey=" => cur.dkey = Some(v),
                    _ => return None,
                }
                e
            }
            K_SECC if key(b"secctx=") => {
                let e = token_end(b, i);
                std::str::from_utf8(&s[i + 7..e.min(end)]).ok()?;
                e
            }
            K_LABE if key(b"labels=") => token_end(b, i),
            K_SPOR | K_DPOR | K_PACK | K_BYTE | K_MARK | K_DELT | K_TYPE | K_CODE | K_SECC
            | K_LABE => return None,
            _ if byte(b, i) == K_BR => {
                if has(b, i, b"[ASSURED]") && ends_token(b, i + 9) {
                    assured = true;
                    i + 9
                } else if has(b, i, b"[UNREPLIED]") && ends_token(b, i + 11) {
                    unreplied = true;
                    i + 11
                } else {
                    // `[...]` runs to its `]`, blanks included.
                    let e = i + memchr::memchr(b']', &s[i..])? + 1;
                    if !ends_token(b, e) {
                        return None;
                    }
                    e
                }
            }
            _ => {
                // Keys newer tools print, and gre's `timeout=0,` in /proc.
                let e = token_end(b, i);
                if !s[i..e.min(end)].contains(&b'=') {
                    return None;
                }
                e
            }
        };
        i = skip(b, e, end);
    }
    let [orig, reply] = parts;
    let (orig, _) = orig.build("").ok()?;
    let (reply, _) = reply.build("").ok()?;
    Some(Keys {
        l3: l3.or(Some(match orig.src {
            IpAddr::V4(_) => L3Proto::Ipv4,
            IpAddr::V6(_) => L3Proto::Ipv6,
        })),
        l4,
        state,
        assured,
        unreplied,
        zone: zone.unwrap_or(0),
        mark: mark.unwrap_or(0),
        nat: nat(&orig, &reply),
        src: orig.src,
        dst: orig.dst,
        sport: orig.sport(),
        dport: orig.dport(),
        timeout,
        reply_src: reply.src,
    })
}

/// A state token as [`State::from_name`](crate::State::from_name) reads it
/// (`None`: not UTF-8, which the full parser refuses).
#[inline(always)]
fn state_key(l4: L4Proto, tok: &[u8]) -> Option<StateKey<'_>> {
    // Names differ in length or in their first eight bytes: compare those
    // before the whole name.
    let head = |t: &[u8]| {
        t.iter()
            .take(8)
            .rev()
            .fold(0u64, |w, &c| w << 8 | u64::from(c))
    };
    let (len, first) = (tok.len(), head(tok));
    let code = l4
        .state_names()
        .and_then(|names| {
            names
                .iter()
                .position(|n| n.len() == len && head(n.as_bytes()) == first && n.as_bytes() == tok)
        })
        .and_then(|c| u8::try_from(c).ok());
    Some(match code {
        Some(c) => StateKey::Code(c),
        None => StateKey::Name(std::str::from_utf8(tok).ok()?),
    })
}

/// As [`crate::Entry::nat`].
fn nat(orig: &Tuple, reply: &Tuple) -> Nat {
    match (
        !orig.source_side_matches(reply),
        !orig.dest_side_matches(reply),
    ) {
        (false, false) => Nat::None,
        (true, false) => Nat::Snat,
        (false, true) => Nat::Dnat,
        (true, true) => Nat::Both,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{Line, parse_line};

    fn padded(v: &str) -> Box<[u8; BUF]> {
        let mut b = Box::new([0; BUF]);
        b[..v.len()].copy_from_slice(v.as_bytes());
        b
    }

    #[test]
    fn swar_numbers_match_the_full_parser() {
        for v in [
            "0",
            "7",
            "42",
            "255",
            "256",
            "65535",
            "65536",
            "00000001",
            "99999999",
            "12345678",
            "4294967295",
            "123456789012345678901",
        ] {
            assert_eq!(
                number(&padded(v), 0).map(|(n, _)| n),
                digits(v.as_bytes()),
                "{v}"
            );
        }
        assert_eq!(digit_run(&padded("123 456"), 0), 3);
        assert_eq!(digit_run(&padded("1234567890123"), 0), 13);
        assert_eq!(digit_run(&padded("/:09"), 0), 0);
    }

    #[test]
    fn quads_match_the_full_parser() {
        for v in [
            "10.0.0.1",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.002.3.4",
            "1..2.3",
            "1.2.3.4x",
            "2001:db8::1",
        ] {
            let got = ip(&padded(v), 0).map(|(a, _)| a);
            assert_eq!(got, parse_ip(v.as_bytes()), "{v}");
        }
    }

    #[test]
    fn common_lines_take_the_fast_path() {
        let mut r = KeyReader::default();
        for line in [
            "ipv4     2 tcp      6 3602 ESTABLISHED src=10.0.17.222 dst=172.16.0.23 sport=24658 dport=80 src=172.16.0.23 dst=10.0.17.222 sport=80 dport=24658 [ASSURED] mark=0 zone=0 use=2",
            "tcp      6 95 SYN_SENT src=10.1.1.1 dst=10.2.2.2 sport=1000 dport=443 packets=0 bytes=0 src=10.2.2.2 dst=10.1.1.1 sport=443 dport=1000 packets=0 bytes=0 mark=42 zone=7 delta-time=5 use=1",
            "ipv4     2 gre      47 95 timeout=0, stream_timeout=0 src=10.1.1.1 dst=10.2.2.2 srckey=0x1 dstkey=0x2 packets=0 bytes=0 [UNREPLIED] src=10.2.2.2 dst=10.1.1.1 srckey=0x2 dstkey=0x1 packets=0 bytes=0 mark=0 zone=0 delta-time=4 use=2",
            "icmpv6   58 95 src=2001:db8::1 dst=2001:db8::2 type=128 code=0 id=77 packets=0 bytes=0 [UNREPLIED] src=2001:db8::2 dst=2001:db8::1 type=129 code=0 id=77 packets=0 bytes=0 mark=0 delta-time=5 use=1 id=1875417895",
            "tcp      6 95 ESTABLISHED src=10.1.1.1 dst=10.2.2.2 sport=1002 dport=80 packets=0 bytes=0 src=10.9.9.9 dst=10.1.1.1 sport=8080 dport=1002 packets=0 bytes=0 [ASSURED] mark=0 delta-time=5 use=1",
            "udp 17 5 src=1.1.1.1 dst=2.2.2.2 sport=5 dport=6",
        ] {
            let want = match parse_line(line.as_bytes()) {
                Ok(Line::Entry(e)) => Some(e),
                _ => None,
            };
            assert_eq!(
                r.keys(line.as_bytes()),
                want.as_ref().map(Keys::of),
                "{line}"
            );
        }
    }
}
