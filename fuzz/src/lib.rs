//! The fuzz entry functions: one per target in fuzz_targets/, each feeding
//! arbitrary bytes to one parser or decoder through its public API and
//! checking what must hold whatever the input (no panic, line accounting,
//! agreement between two paths to the same answer). The libFuzzer targets
//! call these, and crates/ctdoctor/tests/fuzz_corpus.rs includes this file
//! (`#[path]`) to run every file of fuzz/corpus and fuzz/regressions
//! through them on the stable toolchain, so CI needs no fuzzer to catch a
//! regression. A panic here is a bug in the parser, never in the input.

use std::io::BufReader;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ctcore::kernel_log::{self, Context};
use ctcore::ruleset::{self, IptablesSave};
use ctmodel::entry::{Entry, L4Tuple, Status, Tuple};
use ctmodel::keys::Keys;
use ctmodel::scan::{Accumulate, Sizes, scan_sized};
use ctmodel::text::{Line, parse_line};
use ctmodel::textkeys::KeyReader;
use ctmodel::{Breakdown, Filter};
use ctnetlink::codec::{Attrs, Messages};
use ctnetlink::decode::{decode_cpu_stats, decode_entry, decode_global_stats};
use ctnetlink::events::{Poll, decode_datagram, event_kind};

/// A target's name (its fuzz_targets/ file and corpus directory) and entry.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, as the corpus test runs them (scripts/fuzz takes the names
/// from Cargo.toml's [[bin]] tables).
pub const TARGETS: &[Target] = &[
    ("text_dump", text_dump),
    ("text_keys", text_keys),
    ("filter", filter),
    ("kernel_log", kernel_log),
    ("nft_json", nft_json),
    ("iptables_save", iptables_save),
    ("plan_json", plan_json),
    ("scenario_toml", scenario_toml),
    ("netlink_dump", netlink_dump),
    ("netlink_events", netlink_events),
    ("proc_stat", proc_stat),
    ("slabinfo", slabinfo),
    ("values", values),
];

/// Counts what a scan hands its accumulator.
#[derive(Default)]
struct Count(u64);

impl Accumulate for Count {
    fn add(&mut self, _: &Entry) {
        self.0 += 1;
    }
    fn merge(&mut self, other: Self) {
        self.0 += other.0;
    }
}

/// `top --file`'s fast path (`ctmodel::textkeys`): whenever it reads a
/// line, the full parser gives an entry with the same grouping keys. One
/// reader for every line of the input, so its buffer is reused across
/// lines of different lengths, as in a scan.
pub fn text_keys(data: &[u8]) {
    let mut reader = KeyReader::default();
    for line in data.split(|&b| b == b'\n') {
        let Some(k) = reader.keys(line) else { continue };
        match parse_line(line) {
            Ok(Line::Entry(e)) => assert_eq!(
                k,
                Keys::of(&e),
                "fast path and full parser disagree on {:?}",
                String::from_utf8_lossy(line)
            ),
            other => panic!(
                "fast path read {:?}, the full parser gave {other:?}",
                String::from_utf8_lossy(line)
            ),
        }
    }
}

/// A dump (`/proc/net/nf_conntrack`, any `conntrack -L` form): every line
/// through `parse_line`, and the whole through the streaming scanner with
/// small chunks, which must account for the same lines the same way.
pub fn text_dump(data: &[u8]) {
    const MAX_LINE: usize = 512;
    let (mut lines, mut entries, mut ignored, mut skipped) = (0u64, 0u64, 0u64, 0u64);
    let mut breakdown = Breakdown::default();
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    if !data.is_empty() {
        for line in body.split(|&b| b == b'\n') {
            lines += 1;
            if line.strip_suffix(b"\r").unwrap_or(line).len() > MAX_LINE {
                skipped += 1;
                continue;
            }
            match parse_line(line) {
                Ok(Line::Entry(e)) => {
                    entries += 1;
                    breakdown.add(&e);
                    same_entry_in_other_forms(line, &e);
                }
                Ok(Line::Ignored) => ignored += 1,
                Err(e) => {
                    // Every error renders (thiserror Display) without panic.
                    let _ = e.to_string();
                    skipped += 1;
                }
            }
        }
    }
    // The chunk size comes from the input so chunk boundaries move.
    let chunk = 16 + usize::from(data.first().copied().unwrap_or(0));
    let sizes = Sizes {
        chunk,
        max_line: MAX_LINE,
    };
    let (count, report) = scan_sized(data, 1, Count::default, sizes).expect("reading a slice");
    assert_eq!(report.lines, lines, "scan and line split disagree on lines");
    assert_eq!(
        report.entries, entries,
        "scan and parse_line disagree on entries"
    );
    assert_eq!(report.ignored, ignored);
    assert_eq!(report.skipped, skipped);
    assert_eq!(count.0, entries);
    assert_eq!(breakdown.entries, entries);
}

/// What does not change an entry must not change its parse: a blank
/// after the last word, and the `ipv4 2 ` / `ipv6 10 ` prefix that turns a
/// `conntrack -L` line into the /proc (`-o extended`) form.
fn same_entry_in_other_forms(line: &[u8], e: &Entry) {
    let mut spaced = line.strip_suffix(b"\r").unwrap_or(line).to_vec();
    spaced.push(b' ');
    if spaced.len() <= ctmodel::text::MAX_LINE {
        assert_eq!(
            parse_line(&spaced).ok(),
            Some(Line::Entry(e.clone())),
            "a trailing blank changed the entry"
        );
    }
    let plain =
        e.l3.is_none() && !line.starts_with(b"[") && line.first().is_some_and(|b| *b > b' ');
    if plain && line.len() + 8 <= ctmodel::text::MAX_LINE {
        for (prefix, l3) in [(&b"ipv4 2 "[..], 2u8), (b"ipv6 10 ", 10)] {
            let mut ext = prefix.to_vec();
            ext.extend_from_slice(line);
            let want = Entry {
                l3: Some(ctmodel::L3Proto::from_family(l3)),
                ..e.clone()
            };
            assert_eq!(
                parse_line(&ext).ok(),
                Some(Line::Entry(want)),
                "the extended form of a conntrack -L line parses otherwise"
            );
        }
    }
}

/// The watch/top filter syntax: the lines before the first blank line are
/// clauses, the rest a dump whose entries each clause is matched against.
pub fn filter(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (clauses, dump) = text.split_once("\n\n").unwrap_or((&text, ""));
    let clauses: Vec<&str> = clauses.lines().collect();
    let mut entries: Vec<Entry> = dump
        .lines()
        .filter_map(|l| match parse_line(l.as_bytes()) {
            Ok(Line::Entry(e)) => Some(e),
            _ => None,
        })
        .collect();
    entries.push(sample_entry());
    let f = match Filter::parse(&clauses) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for e in &entries {
        let all = f.matches(e);
        // A conjunction: each clause alone must match whatever the whole does.
        if all {
            for c in &clauses {
                let one = Filter::parse(&[c]).expect("a clause of a valid filter parses alone");
                assert!(
                    one.matches(e),
                    "filter matched but its clause {c:?} does not"
                );
            }
        }
    }
    let mut b = Breakdown::new(f);
    for e in &entries {
        b.add(e);
    }
}

fn sample_entry() -> Entry {
    Entry {
        l4: Some(ctmodel::L4Proto::from_number(6)),
        orig: Tuple {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V6(Ipv6Addr::LOCALHOST),
            l4: L4Tuple::Ports {
                sport: 40000,
                dport: 443,
            },
            zone: Some(7),
        },
        status: Status::from_bits_retain(0x1ce),
        mark: Some(0xffff_ffff),
        ..Entry::default()
    }
}

/// Kernel logs in every format: as a stream with the chunking the input
/// picks, and as lines. Both must agree where they see the same lines.
pub fn kernel_log(data: &[u8]) {
    let ctx = Context {
        now: Some(1_795_701_600.0),
        boot_time: Some(1_795_700_000.0),
        utc_offset: i32::from(data.first().copied().unwrap_or(0)) * 900 - 43_200,
        this_boot: data.get(1).is_some_and(|b| b & 1 == 1),
        netns_inode: Some(4_026_531_840),
    };
    let cap = 1 + usize::from(data.get(2).copied().unwrap_or(0));
    let streamed =
        kernel_log::scan_reader(BufReader::with_capacity(cap, data), ctx).expect("reading a slice");
    assert!(streamed.total_full() <= streamed.lines);
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines() {
            let _ = kernel_log::suppressed_callbacks(line);
        }
        // Same lines when no CR and no over-long line splits them otherwise.
        if !text.contains('\r') && text.lines().all(|l| l.len() <= kernel_log::MAX_LINE) {
            let lined = kernel_log::scan_with(text.lines(), ctx);
            assert_eq!(lined, streamed, "scan_reader and scan_with disagree");
        }
    }
}

/// `nft -j list ruleset`, alone and with an iptables-nft save beside it.
pub fn nft_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ruleset::read_nft_json(text) {
        Ok(r) => {
            let alone = r.rule_use();
            let _ = alone.needs_conntrack();
            let _ = r.has_xt();
            let save = "*filter\n-A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT\nCOMMIT\n";
            let _ = r.with_iptables(&[IptablesSave {
                family: "ip",
                tool: "iptables-nft-save",
                text: save,
            }]);
            assert_eq!(ruleset::parse_nft_json(text).ok(), Some(alone));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// `iptables-save` / `ip6tables-save` output of any backend.
pub fn iptables_save(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut all = ruleset::parse_iptables_save(&text, "iptables-nft-save");
    let _ = all.needs_conntrack();
    all.extend(ruleset::parse_iptables_save(&text, "ip6tables"));
}

/// The plan file `apply --plan` and `simulate --plan` read.
pub fn plan_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ctcore::plan::Settings::from_plan_json(text) {
        Ok(_) => {}
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// A simulator scenario: parsed and validated; a valid one must survive
/// its own TOML rendering unchanged, and its rate bound must hold.
pub fn scenario_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sc = match ctsim::Scenario::from_toml(text) {
        Ok(sc) => sc,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = sc.kernel().expect("validated");
    let _ = sc.timeouts().expect("validated");
    let d = sc.duration_s.unwrap_or(600.0);
    for c in &sc.classes {
        let max = c.arrival.max_rate();
        assert!(max.is_finite() && max >= 0.0, "max_rate {max}");
        for i in 0..=8 {
            let t = d * f64::from(i) / 8.0;
            let r = c.arrival.rate_at(t);
            assert!(r <= max, "rate_at({t}) = {r} above max_rate {max}");
        }
        let _ = c.arrival.mean_rate(d);
        let _ = c.is_legit();
    }
    run_small(&sc);
    if let Ok(again) = toml::to_string(&sc) {
        let back = ctsim::Scenario::from_toml(&again)
            .unwrap_or_else(|e| panic!("a valid scenario re-renders invalid: {e}\n{again}"));
        assert_eq!(back, sc, "scenario changed through TOML");
    }
}

/// A valid scenario small enough to run in a fuzz iteration runs 3 s of
/// model time without error, and its totals add up (model.rs `Summary`).
fn run_small(sc: &ctsim::Scenario) {
    let rate: f64 = sc.classes.iter().map(|c| c.arrival.max_rate()).sum();
    let initial: u64 = sc.initial.iter().map(|i| i.count).sum();
    let slots = sc.classes.iter().all(|c| {
        let [lo, hi] = c.sources.ports;
        u64::from(c.sources.clients) * (u64::from(hi - lo) + 1) <= 1 << 16
    });
    let small = sc.table.buckets <= 1 << 16 && sc.table.max <= 1 << 16;
    if !(small && slots && rate <= 200.0 && initial <= 1000 && sc.classes.len() <= 8) {
        return;
    }
    let opt = ctsim::RunOptions {
        duration_s: 3.0,
        step_s: 1.0,
        seed: 1,
    };
    let tl = ctsim::run(sc, &opt, &mut |_| {}).expect("a valid scenario runs");
    let s = &tl.summary;
    assert_eq!(
        s.new_flows,
        s.inserted + s.reopened + s.drops + s.insert_failed,
        "new flows do not add up"
    );
    assert!(s.peak_entries <= sc.table.max, "peak above table.max");
    for p in &tl.series {
        assert!(p.entries <= sc.table.max);
        assert_eq!(p.by_state.values().sum::<u64>(), p.entries);
    }
}

/// Replies to a dump, per-CPU stats or stats request: one or more netlink
/// messages, each decoded every way a reply is.
pub fn netlink_dump(data: &[u8]) {
    for msg in Messages::new(data) {
        let Ok(msg) = msg else { break };
        let _ = event_kind(&msg);
        if let Ok(e) = decode_entry(msg.payload) {
            roundtrip(&e);
        }
        let _ = decode_cpu_stats(msg.payload);
        let _ = decode_global_stats(msg.payload);
        if let Some(attrs) = msg.payload.get(4..) {
            for a in Attrs::new(attrs).flatten() {
                for n in a.nested().flatten() {
                    let _ = n.be32("fuzz");
                }
            }
        }
    }
    // A bare payload (no netlink header) too.
    if let Ok(e) = decode_entry(data) {
        roundtrip(&e);
    }
}

/// What the create request carries of a decoded entry decodes back to the
/// same values.
fn roundtrip(e: &Entry) {
    let bytes = ctnetlink::encode::create_request(Vec::new(), 1, e);
    let msg = Messages::new(&bytes)
        .next()
        .expect("one message")
        .expect("a valid message");
    let back = decode_entry(msg.payload).expect("an encoded entry decodes");
    assert_eq!(back.orig, e.orig, "orig tuple changed through encode");
    assert_eq!(back.reply, e.reply, "reply tuple changed through encode");
}

/// One event datagram as the events socket reads it.
pub fn netlink_events(data: &[u8]) {
    let mut poll = Poll::default();
    let mut seen = 0u64;
    decode_datagram(data, &mut poll, &mut |_, e| {
        seen += 1;
        let _ = ctmodel::flows::ClassKey::of(e);
    });
    assert_eq!(seen, poll.events);
    let messages = Messages::new(data).count() as u64;
    assert!(poll.events + poll.malformed <= messages);
    if let Some(e) = &poll.first_malformed {
        let _ = e.to_string();
    }
}

/// /proc/net/stat/nf_conntrack.
pub fn proc_stat(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match ctcore::stat::parse_stat(&text) {
        Ok(t) => {
            let named = t.counters.iter().map(|(k, v)| (k.as_str(), *v));
            let _ = ctcore::counters::Counters::from_named(named);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// /proc/slabinfo and /proc/meminfo.
pub fn slabinfo(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(c) = ctcore::slab::parse_slabinfo(&text) {
        assert!(ctcore::slab::ENTRY_BYTES.contains(&c.objsize));
    }
    if let Some(m) = ctcore::slab::parse_memtotal(&text) {
        assert!(m >= ctcore::plan::MIN_MEMORY);
    }
}

/// The small value syntaxes of flags and files: the first byte picks the
/// parser, the rest is its text.
pub fn values(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 10 {
        0 => {
            if let Ok(v) = ctcore::version::Version::parse(s) {
                assert_eq!(ctcore::version::Version::parse(&v.to_string()), Ok(v));
            }
        }
        1 => {
            let (min, max) = (Duration::from_millis(1), Duration::from_secs(86_400));
            if let Ok(d) = ctcore::duration::parse(s, min, max) {
                assert!(d >= min && d <= max);
            }
        }
        2 => {
            let _ = ctcore::plan::parse_size(s);
        }
        3 => {
            if let Ok(m) = ctcore::plan::parse_memory(s) {
                assert!(m >= ctcore::plan::MIN_MEMORY);
            }
        }
        4 => {
            if let Ok(h) = ctcore::plan::parse_headroom(s) {
                assert!(h.is_finite() && h >= 1.0);
            }
        }
        5 => {
            if let Ok(b) = ctcore::plan::parse_budget(s) {
                let _ = b.bytes(u64::MAX);
            }
        }
        6 => {
            if let Ok(p) = ctcore::plan::Port::parse(s) {
                assert_ne!(p.port, 0);
            }
        }
        7 => {
            if let Some(t) = ctcore::timeouts::Timeout::from_name(s) {
                let _ = t.sysctl();
            }
            let _ = ctcore::timeouts::Timeout::for_class(s);
            let _ = ctcore::counters::canonical(s);
        }
        8 => {
            if let Some(k) = ctmodel::flows::ClassKey::parse(s) {
                let _ = (k.l4(), k.state());
            }
        }
        _ => {
            let _ = s.parse::<ctcore::plan::Profile>();
        }
    }
}
