//! Property tests: random bytes and mutated real lines never panic the
//! parser, and a scan accounts for every line it reads.

use ctmodel::scan::{Accumulate, Sizes, scan, scan_sized};
use ctmodel::text::ParseError;
use ctmodel::text::{Line, parse_line};
use ctmodel::{Breakdown, Entry, Filter};
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

// The fast path (textkeys) against the full parser: random lines of every
// protocol and form, valid and mutated (issue 21).

use ctmodel::keys::Keys;
use ctmodel::textkeys::KeyReader;

fn v4() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["10.0.0.1", "10.0.0.2", "192.168.1.1", "172.16.0.23", "127.0.0.1"])
            .prop_map(str::to_string),
        1 => any::<[u8; 4]>().prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
        1 => Just("010.1.1.1".to_string()),
        1 => Just("10.0.0.256".to_string()),
    ]
}

fn v6() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "2001:db8::1",
        "2001:db8::2",
        "::1",
        "2001:0db8:0000:0000:0000:0000:0000:0001",
        "0000:0000:0000:0000:0000:0000:0000:0001",
        "fe80::1%x",
    ])
    .prop_map(str::to_string)
}

/// (name, number) as conntrack-tools and /proc print them; sometimes a
/// number that does not match the name.
fn proto() -> impl Strategy<Value = (&'static str, u16)> {
    prop_oneof![
        8 => prop::sample::select(vec![
            ("tcp", 6u16), ("udp", 17), ("udplite", 136), ("icmp", 1), ("icmpv6", 58),
            ("sctp", 132), ("dccp", 33), ("gre", 47), ("unknown", 33), ("unknown", 2),
        ]),
        1 => (0u16..300).prop_map(|n| ("tcp", n)),
    ]
}

fn state() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        6 => prop::sample::select(vec![
            "ESTABLISHED", "TIME_WAIT", "SYN_SENT", "SYN_RECV", "CLOSE", "NONE",
            "COOKIE_WAIT", "SHUTDOWN_ACK_SENT", "OPEN", "REQUEST", "LISTEN", "SYN_SENT2",
        ]).prop_map(|s| Some(s.to_string())),
        1 => "[A-Za-z_]{1,20}".prop_map(Some),
    ]
}

#[derive(Debug, Clone)]
struct Dump {
    proc_form: bool,
    v6: bool,
    proto: (&'static str, u16),
    timeout: Option<u64>,
    state: Option<String>,
    addrs: [String; 4],
    ports: [u32; 4],
    counters: Option<[u64; 4]>,
    unreplied: bool,
    assured: bool,
    offload: bool,
    mark: Option<u64>,
    secctx: bool,
    zone: Option<u32>,
    zone_dirs: bool,
    delta: Option<u64>,
    use_count: Option<u64>,
    id: Option<u64>,
    labels: bool,
    stamp: bool,
    newer_key: bool,
    gre_timeouts: bool,
    event_prefix: bool,
    blanks: &'static str,
}

fn dump_line() -> impl Strategy<Value = Dump> {
    let addrs = |six: bool| {
        if six {
            prop::array::uniform4(v6()).boxed()
        } else {
            prop::array::uniform4(v4()).boxed()
        }
    };
    let port = || prop_oneof![4 => 0u32..70_000, 1 => Just(80u32), 1 => Just(443u32)];
    (
        (
            any::<bool>(),
            any::<bool>(),
            proto(),
            prop::option::of(prop_oneof![0u64..500_000, Just(4_294_967_296u64)]),
            state(),
        ),
        any::<bool>().prop_flat_map(move |v6| (Just(v6), addrs(v6))),
        (
            prop::array::uniform4(port()),
            any::<bool>(),
            prop::option::of(prop::array::uniform4(prop_oneof![
                0u64..1000,
                Just(u64::MAX)
            ])),
        ),
        (
            any::<bool>(),
            any::<bool>(),
            prop::bool::weighted(0.1),
            prop::option::of(prop_oneof![0u64..10, Just(4_294_967_296u64)]),
        ),
        (
            prop::bool::weighted(0.2),
            prop::option::of(prop_oneof![0u32..10, Just(70_000u32)]),
            prop::bool::weighted(0.2),
            prop::option::of(0u64..100),
            prop::option::of(0u64..5),
        ),
        (
            prop::option::of(any::<u32>().prop_map(u64::from)),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.05),
        ),
        prop::sample::select(vec![" ", " ", " ", "  ", "\t", " \r"]),
    )
        .prop_map(
            |(
                (proc_form, mirror, proto, timeout, state),
                (v6, mut addrs),
                (mut ports, mirror_ports, counters),
                (unreplied, assured, offload, mark),
                (secctx, zone, zone_dirs, delta, use_count),
                (id, labels, stamp, newer_key, gre_timeouts, event_prefix),
                blanks,
            )| {
                if mirror {
                    addrs[2] = addrs[1].clone();
                    addrs[3] = addrs[0].clone();
                }
                if mirror_ports {
                    ports[2] = ports[1];
                    ports[3] = ports[0];
                }
                Dump {
                    proc_form,
                    v6,
                    proto,
                    timeout,
                    state,
                    addrs,
                    ports,
                    counters,
                    unreplied,
                    assured,
                    offload,
                    mark,
                    secctx,
                    zone,
                    zone_dirs,
                    delta,
                    use_count,
                    id,
                    labels,
                    stamp,
                    newer_key,
                    gre_timeouts,
                    event_prefix,
                    blanks,
                }
            },
        )
}

fn render(d: &Dump) -> String {
    let mut w: Vec<String> = Vec::new();
    if d.event_prefix {
        w.push("[NEW]".into());
    }
    if d.proc_form {
        w.push(if d.v6 {
            "ipv6     10".into()
        } else {
            "ipv4     2".into()
        });
    }
    w.push(format!("{}      {}", d.proto.0, d.proto.1));
    if let Some(t) = d.timeout {
        w.push(t.to_string());
    }
    if let Some(s) = &d.state {
        w.push(s.clone());
    }
    if d.gre_timeouts {
        w.push("timeout=0, stream_timeout=0".into());
    }
    let l4 = |w: &mut Vec<String>, dir: usize| {
        let (s, p) = (d.ports[2 * dir], d.ports[2 * dir + 1]);
        match d.proto.0 {
            "icmp" | "icmpv6" => {
                w.push(format!("type={} code=0 id={}", s % 300, p));
            }
            "gre" => w.push(format!("srckey=0x{s:x} dstkey=0x{p:x}")),
            "unknown" => {}
            _ => w.push(format!("sport={s} dport={p}")),
        }
        if let Some(c) = d.counters {
            w.push(format!("packets={} bytes={}", c[2 * dir], c[2 * dir + 1]));
        }
    };
    w.push(format!("src={} dst={}", d.addrs[0], d.addrs[1]));
    l4(&mut w, 0);
    if d.unreplied {
        w.push("[UNREPLIED]".into());
    }
    w.push(format!("src={} dst={}", d.addrs[2], d.addrs[3]));
    l4(&mut w, 1);
    if d.assured {
        w.push("[ASSURED]".into());
    }
    if d.offload {
        w.push("[OFFLOAD]".into());
    }
    if let Some(m) = d.mark {
        w.push(format!("mark={m}"));
    }
    if d.secctx {
        w.push("secctx=system_u:object_r:unlabeled_t:s0".into());
    }
    if let Some(z) = d.zone {
        w.push(format!("zone={z}"));
    }
    if d.zone_dirs {
        w.push("zone-orig=1 zone-reply=2".into());
    }
    if let Some(t) = d.delta {
        w.push(format!("delta-time={t}"));
    }
    if d.stamp {
        w.push("[start=Thu Nov 26 13:04:13 2026]".into());
    }
    if d.labels {
        w.push("labels=0x1".into());
    }
    if d.newer_key {
        w.push("helper=ftp".into());
    }
    if let Some(u) = d.use_count {
        w.push(format!("use={u}"));
    }
    if let Some(id) = d.id {
        w.push(format!("id={id}"));
    }
    w.join(d.blanks)
}

/// Breakdown with the full parser only (no fast path).
struct Full(Breakdown);
impl Accumulate for Full {
    fn add(&mut self, e: &Entry) {
        self.0.add(e);
    }
    fn merge(&mut self, o: Self) {
        self.0.merge(o.0);
    }
}

/// Every figure `top` shows, for comparing two breakdowns.
type Figures = (
    (u64, u64, u64, u64, u64, u64),
    Vec<(String, u64)>,
    Vec<(String, u64)>,
    Vec<(String, u64)>,
    Vec<(u16, u64)>,
    Vec<(u32, u64)>,
    Vec<(&'static str, u64)>,
    Vec<(std::net::IpAddr, u64)>,
    Vec<(std::net::IpAddr, u64)>,
    Vec<(String, u64)>,
    Vec<(&'static str, u64)>,
);

fn figures(b: &Breakdown) -> Figures {
    (
        (
            b.entries,
            b.filtered_out,
            b.assured,
            b.unreplied,
            b.other_flags,
            b.no_timeout,
        ),
        b.l3(),
        b.l4(),
        b.tcp_state(),
        b.zone(),
        b.mark(0),
        b.nat(),
        b.top_src(0),
        b.top_dst(0),
        b.top_dport(0),
        b.timeout_histogram(),
    )
}

fn fast_agrees(line: &[u8], reader: &mut KeyReader) -> Result<(), TestCaseError> {
    if let Some(k) = reader.keys(line) {
        match parse_line(line) {
            Ok(Line::Entry(e)) => {
                prop_assert_eq!(k, Keys::of(&e), "{}", String::from_utf8_lossy(line))
            }
            other => prop_assert!(
                false,
                "fast path took {:?}, full parser: {:?}",
                String::from_utf8_lossy(line),
                other
            ),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Whenever the fast path reads a line, the full parser gives an entry
    /// with the same grouping fields.
    #[test]
    fn fast_path_agrees_with_the_full_parser(
        d in dump_line(),
        muts in prop::collection::vec(mutation(), 0..3),
    ) {
        let mut line = render(&d).into_bytes();
        let mut reader = KeyReader::default();
        fast_agrees(&line, &mut reader)?;
        for m in &muts {
            apply(&mut line, m);
            // The same reader, after a longer line: its buffer is reused.
            fast_agrees(&line, &mut reader)?;
        }
    }

    /// A whole dump: fast path plus fallback give exactly the full parser's
    /// breakdown and line accounting, with and without a filter.
    #[test]
    fn fast_path_and_fallback_give_the_full_breakdown(
        lines in prop::collection::vec((dump_line(), prop::collection::vec(mutation(), 0..2)), 0..60),
        threads in 1usize..3,
        filter in prop::sample::select(vec![
            vec![], vec!["l4=tcp"], vec!["state=ESTABLISHED"], vec!["flags=other", "src=10.0.0.0/8"],
            vec!["nat=snat", "dport=tcp/80"], vec!["zone=0", "mark!=1"], vec!["l3=ipv6"],
        ]),
    ) {
        let mut text = Vec::new();
        for (d, muts) in &lines {
            let mut line = render(d).into_bytes();
            for m in muts {
                apply(&mut line, m);
            }
            text.extend_from_slice(&line);
            text.push(b'\n');
        }
        let filter = Filter::parse(&filter).expect("filter");
        let sizes = Sizes { chunk: 700, max_line: ctmodel::text::MAX_LINE };
        let (fast, rf) = scan_sized(&text[..], threads, || Breakdown::new(filter.clone()), sizes).expect("scan");
        let (full, rs) = scan_sized(&text[..], threads, || Full(Breakdown::new(filter.clone())), sizes).expect("scan");
        prop_assert_eq!(rf, rs);
        prop_assert_eq!(figures(&fast), figures(&full.0));
    }
}

#[test]
fn fast_path_reads_every_fixture_line() {
    let mut reader = KeyReader::default();
    for line in fixture_lines() {
        let Ok(Line::Entry(e)) = parse_line(&line) else {
            panic!("{}", String::from_utf8_lossy(&line));
        };
        assert_eq!(
            reader.keys(&line),
            Some(Keys::of(&e)),
            "{}",
            String::from_utf8_lossy(&line)
        );
    }
}
