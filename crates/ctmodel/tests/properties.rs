//! Property tests: random bytes and mutated real lines never panic the
//! parser, and a scan accounts for every line it reads.

use ctmodel::scan::{Accumulate, Sizes, scan, scan_sized};
use ctmodel::text::ParseError;
use ctmodel::text::{Line, parse_line};
use ctmodel::{Breakdown, Entry};
use proptest::prelude::*;

fn fixture_lines() -> Vec<Vec<u8>> {
    let path = format!("{}/tests/fixtures/combo.txt", env!("CARGO_MANIFEST_DIR"));
    let mut lines: Vec<Vec<u8>> = std::fs::read(path)
        .expect("fixture")
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"ipv"))
        .map(<[u8]>::to_vec)
        .collect();
    let proc = format!("{}/tests/fixtures/proc.txt", env!("CARGO_MANIFEST_DIR"));
    lines.extend(
        std::fs::read(proc)
            .expect("fixture")
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec),
    );
    lines
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), 1usize..20).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (
            any::<usize>(),
            prop::sample::select(vec![
                &b"="[..],
                b" ",
                b"[",
                b"]",
                b"src=",
                b"::",
                b"99999999999999999999999"
            ])
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v.to_vec())),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(line: &mut Vec<u8>, m: &Mutation) {
    let len = line.len().max(1);
    match m {
        Mutation::Flip(i, b) => {
            if !line.is_empty() {
                let i = i % line.len();
                line[i] = *b;
            }
        }
        Mutation::Delete(i, n) => {
            let i = i % len;
            let end = (i + n).min(line.len());
            if i < end {
                line.drain(i..end);
            }
        }
        Mutation::Insert(i, v) => {
            let i = i % (line.len() + 1);
            line.splice(i..i, v.iter().copied());
        }
        Mutation::Truncate(i) => line.truncate(i % len),
    }
}

/// A reader that hands out the input in pieces of the given sizes, so chunk
/// boundaries fall at random places.
struct Jagged<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    i: usize,
}

impl std::io::Read for Jagged<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = self.sizes[self.i % self.sizes.len()];
        self.i += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// One line of a generated dump.
#[derive(Debug, Clone)]
enum Piece {
    Fixture(prop::sample::Index),
    /// A real line with both counters at u64::MAX.
    MaxCounters,
    Garbage,
    Blank,
    /// A line of this many bytes (often longer than the test's limit).
    Long(usize),
    CrLf(prop::sample::Index),
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        4 => any::<prop::sample::Index>().prop_map(Piece::Fixture),
        1 => Just(Piece::MaxCounters),
        1 => Just(Piece::Garbage),
        1 => Just(Piece::Blank),
        1 => (0usize..2000).prop_map(Piece::Long),
        1 => any::<prop::sample::Index>().prop_map(Piece::CrLf),
    ]
}

const MAX_COUNTERS: &[u8] = b"ipv4     2 tcp      6 95 ESTABLISHED src=10.1.1.1 dst=10.2.2.2 sport=1001 dport=443 packets=18446744073709551615 bytes=18446744073709551615 src=10.2.2.2 dst=10.1.1.1 sport=443 dport=1001 packets=18446744073709551615 bytes=18446744073709551615 [ASSURED] mark=0 zone=0 use=2";

fn bytes_of(p: &Piece, lines: &[Vec<u8>]) -> Vec<u8> {
    match p {
        Piece::Fixture(i) => lines[i.index(lines.len())].clone(),
        Piece::MaxCounters => MAX_COUNTERS.to_vec(),
        Piece::Garbage => b"this is not conntrack output".to_vec(),
        Piece::Blank => Vec::new(),
        Piece::Long(n) => vec![b'x'; *n],
        Piece::CrLf(i) => {
            let mut l = lines[i.index(lines.len())].clone();
            l.push(b'\r');
            l
        }
    }
}

static FIXTURE: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();

#[derive(Default)]
struct Count(u64);
impl Accumulate for Count {
    fn add(&mut self, _: &Entry) {
        self.0 += 1;
    }
    fn merge(&mut self, o: Self) {
        self.0 += o.0;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_line(&bytes);
    }

    #[test]
    fn mutated_real_lines_never_panic(
        pick in any::<prop::sample::Index>(),
        muts in prop::collection::vec(mutation(), 1..6),
    ) {
        let lines = fixture_lines();
        let mut line = lines[pick.index(lines.len())].clone();
        for m in &muts {
            apply(&mut line, m);
        }
        // Either an entry, noise, or an error: never a panic.
        let _ = parse_line(&line);
    }

    #[test]
    fn scan_accounts_for_every_line(
        picks in prop::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 0..300),
        threads in 1usize..4,
    ) {
        let lines = fixture_lines();
        let mut text = Vec::new();
        let mut good = 0u64;
        for (pick, garbage) in &picks {
            if *garbage {
                text.extend_from_slice(b"this is not conntrack output\n");
            } else {
                text.extend_from_slice(&lines[pick.index(lines.len())]);
                text.push(b'\n');
                good += 1;
            }
        }
        let (count, r) = scan(&text[..], threads, Count::default).expect("scan");
        prop_assert_eq!(r.lines, picks.len() as u64);
        prop_assert_eq!(r.entries + r.skipped + r.ignored, r.lines);
        prop_assert_eq!(r.entries, good);
        prop_assert_eq!(count.0, good);
        let (b, _) = scan(&text[..], threads, Breakdown::default).expect("scan");
        prop_assert_eq!(b.entries, good);
    }

    #[test]
    fn scan_of_random_bytes_accounts_for_every_line(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
        let (_, r) = scan(&bytes[..], 2, Count::default).expect("scan");
        prop_assert_eq!(r.entries + r.skipped + r.ignored, r.lines);
        let newlines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        let tail = u64::from(bytes.last().is_some_and(|&b| b != b'\n'));
        prop_assert_eq!(r.lines, newlines + tail);
    }
}

#[test]
fn every_fixture_line_parses() {
    for line in fixture_lines() {
        assert!(
            matches!(parse_line(&line), Ok(Line::Entry(_))),
            "{}",
            String::from_utf8_lossy(&line)
        );
    }
}

proptest! {
    // Each case scans up to ~200 KiB with small chunks: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the chunk size, read sizes and line lengths, every line is
    /// counted once with its own number: a line over the limit is one
    /// malformed line (never split into phantom lines), and counters up to
    /// u64::MAX parse.
    #[test]
    fn scan_matches_line_by_line_parse_at_any_chunk_boundary(
        pieces in prop::collection::vec(piece(), 0..120),
        last_newline in any::<bool>(),
        chunk in 32usize..700,
        max_line in 200usize..600,
        reads in prop::collection::vec(1usize..900, 1..8),
        threads in 1usize..4,
    ) {
        let lines = FIXTURE.get_or_init(fixture_lines);
        let mut text = Vec::new();
        let mut expected = Vec::new(); // per line: Ok(is_entry) or Err(error)
        for (i, p) in pieces.iter().enumerate() {
            let line = bytes_of(p, lines);
            text.extend_from_slice(&line);
            if i + 1 < pieces.len() || last_newline {
                text.push(b'\n');
            } else if line.is_empty() {
                // A last empty line without a newline is no line at all.
                break;
            }
            let bare = line.strip_suffix(b"\r").unwrap_or(&line);
            expected.push(if bare.len() > max_line {
                Err(ParseError::TooLong(max_line))
            } else {
                match parse_line(&line) {
                    Ok(Line::Entry(_)) => Ok(true),
                    Ok(Line::Ignored) => Ok(false),
                    Err(e) => Err(e),
                }
            });
        }
        let reader = Jagged { data: &text, sizes: reads, i: 0 };
        let (count, r) = scan_sized(reader, threads, Count::default, Sizes { chunk, max_line })
            .expect("scan");
        let entries = expected.iter().filter(|e| matches!(e, Ok(true))).count() as u64;
        let errors: Vec<(u64, ParseError)> = expected
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.clone().err().map(|e| (i as u64 + 1, e)))
            .collect();
        prop_assert_eq!(r.lines, expected.len() as u64);
        prop_assert_eq!(r.entries, entries);
        prop_assert_eq!(count.0, entries);
        prop_assert_eq!(r.skipped, errors.len() as u64);
        let got: Vec<(u64, ParseError)> =
            r.first_errors.iter().map(|e| (e.line, e.error.clone())).collect();
        prop_assert_eq!(got, errors.into_iter().take(5).collect::<Vec<_>>());
    }
}
