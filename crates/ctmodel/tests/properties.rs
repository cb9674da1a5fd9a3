//! Property tests: random bytes and mutated real lines never panic the
//! parser, and a scan accounts for every line it reads.

use ctmodel::scan::{Accumulate, scan};
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
