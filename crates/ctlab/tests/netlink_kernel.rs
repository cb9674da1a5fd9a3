//! The ctnetlink client against the real kernel, inside throwaway namespaces:
//! what is created is dumped back exactly, statistics match the kernel's
//! own files and conntrack-tools, delete and flush work.

use ctlab::{Mix, Netns};
use ctmodel::Status;
use ctnetlink::{Conntrack, Family};

fn sorted_by_tuple(mut v: Vec<ctmodel::Entry>) -> Vec<ctmodel::Entry> {
    v.sort_by_key(|e| format!("{:?}{:?}", e.orig, e.zone));
    v
}

#[test]
fn dump_returns_what_was_created() {
    ctlab::require_root!();
    let ns = Netns::create("nl").expect("netns");
    let mix = ctlab::generate(2_000, 3, Mix::default());
    ns.insert(&mix).expect("insert");
    let (dumped, summary, v4, v6) = ns
        .run(|| {
            let mut ct = Conntrack::open().expect("open");
            let (all, summary) = ct.dump_all(Family::Any).expect("dump");
            let (v4, _) = ct.dump_all(Family::Ipv4).expect("dump v4");
            let (v6, _) = ct.dump_all(Family::Ipv6).expect("dump v6");
            (all, summary, v4.len(), v6.len())
        })
        .expect("run");
    assert_eq!(summary.entries, 2_000);
    assert_eq!((summary.malformed, summary.interrupted), (0, false));
    let want_v6 = mix
        .iter()
        .filter(|e| e.l3 == Some(ctmodel::L3Proto::Ipv6))
        .count();
    assert_eq!((v4, v6), (2_000 - want_v6, want_v6));

    let dumped = sorted_by_tuple(dumped);
    let mix = sorted_by_tuple(mix);
    for (got, want) in dumped.iter().zip(&mix) {
        assert_eq!((got.l3, got.l4), (want.l3, want.l4));
        assert_eq!((got.orig, got.reply), (want.orig, want.reply));
        assert_eq!(got.state, want.state);
        assert_eq!((got.mark, got.zone), (want.mark, want.zone));
        // The kernel adds CONFIRMED (and may add other internal bits).
        assert!(
            got.status.contains(want.status | Status::CONFIRMED),
            "{got:?}"
        );
        let t = got.timeout.expect("timeout");
        let w = want.timeout.expect("timeout");
        assert!(t <= w && t + 30 >= w, "timeout {t} vs {w}");
        assert!(got.id.is_some() && got.use_count.is_some());
    }
}

#[test]
fn stats_match_the_kernel_and_conntrack_tools() {
    ctlab::require_root!();
    let ns = Netns::create("stats").expect("netns");
    let mix = ctlab::generate(500, 5, Mix::default());
    ns.insert(&mix).expect("insert");
    let (global, cpus) = ns
        .run(|| {
            let mut ct = Conntrack::open().expect("open");
            (
                ct.stats().expect("stats"),
                ct.stats_cpu().expect("stats_cpu"),
            )
        })
        .expect("run");
    assert_eq!(global.entries, 500);
    let max = ctlab::global_max().expect("nf_conntrack_max");
    assert_eq!(global.max_entries.map(u64::from), Some(max));
    let cpu_count = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(cpus.len() >= cpu_count, "one row per possible CPU");
    // ctnetlink inserts are the only `insert`s in a fresh namespace.
    let inserts: u32 = cpus.iter().filter_map(|c| c.insert).sum();
    assert_eq!(inserts, 500);
    // conntrack -S prints the same per-CPU counters.
    let s = String::from_utf8(ns.exec("conntrack", &["-S"]).expect("conntrack -S").stdout)
        .expect("utf8");
    let tool_inserts: u32 = s
        .split_whitespace()
        .filter_map(|t| t.strip_prefix("insert="))
        .map(|v| v.parse::<u32>().expect("number"))
        .sum();
    assert_eq!(tool_inserts, 500);
}

#[test]
fn delete_and_flush() {
    ctlab::require_root!();
    let ns = Netns::create("del").expect("netns");
    let mix = ctlab::generate(300, 11, Mix::default());
    ns.insert(&mix).expect("insert");
    let (after_delete, dup, after_flush) = ns
        .run(|| {
            let mut ct = Conntrack::open().expect("open");
            let r = ct.delete(&mix[..100]).expect("delete");
            assert_eq!(r.ok, 100);
            let n = ct.stats().expect("stats").entries;
            // Creating an existing entry again fails with EEXIST, counted.
            let dup = ct.create(&mix[100..110]).expect("create");
            ct.flush().expect("flush");
            (n, dup, ct.stats().expect("stats").entries)
        })
        .expect("run");
    assert_eq!(after_delete, 200);
    assert_eq!(dup.failed, vec![(libc_eexist(), 10)]);
    assert_eq!(after_flush, 0);
}

fn libc_eexist() -> i32 {
    17
}

/// `delete_exact` sends tuple and CTA_ID: an entry deleted and re-created
/// with the same tuple since the dump has another id and is left alone
/// (ENOENT, counted as gone); answers are counted exactly across batches
/// of requests that carry no ACK but the last.
#[test]
fn delete_exact_checks_the_id_and_counts_every_answer() {
    ctlab::require_root!();
    let ns = Netns::create("delx").expect("netns");
    let mix = ctlab::fill(3_000, false);
    ns.insert(&mix).expect("insert");
    let (stale, fresh_gone, fresh_deleted, gone_again, left) = ns
        .run(|| {
            let mut ct = Conntrack::open().expect("open");
            let (dumped, _) = ct.dump_all(Family::Any).expect("dump");
            let victim = dumped
                .iter()
                .find(|e| e.orig == mix[0].orig)
                .expect("dumped")
                .clone();
            // Delete by tuple alone and re-create: same tuple, new id.
            assert_eq!(ct.delete([&victim]).expect("delete").ok, 1);
            assert_eq!(ct.create([&mix[0]]).expect("create").ok, 1);
            let stale = ct.delete_exact([&victim]).expect("stale id");
            let (now, _) = ct.dump_all(Family::Any).expect("dump");
            let fresh = now
                .iter()
                .find(|e| e.orig == mix[0].orig)
                .expect("re-created entry survives a stale id")
                .clone();
            assert_ne!(fresh.id, victim.id);
            let fresh_deleted = ct.delete_exact(&now).expect("delete all");
            // Everything is gone now: 3,000 ENOENT answers over 3 batches.
            let gone_again = ct.delete_exact(&now).expect("delete again");
            (
                stale,
                fresh,
                fresh_deleted,
                gone_again,
                ct.stats().expect("stats").entries,
            )
        })
        .expect("run");
    assert_eq!((stale.deleted, stale.gone, stale.failures()), (0, 1, 0));
    assert!(fresh_gone.id.is_some());
    assert_eq!(
        (
            fresh_deleted.deleted,
            fresh_deleted.gone,
            fresh_deleted.failures()
        ),
        (3_000, 0, 0)
    );
    assert_eq!(
        (gone_again.deleted, gone_again.gone, gone_again.failures()),
        (0, 3_000, 0)
    );
    assert_eq!(left, 0);
}
