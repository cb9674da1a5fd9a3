//! Rule tests on hand-built facts.

use super::*;
use crate::facts::{Counters, Mix};
use crate::kernel_log;
use crate::slab::SlabCache;

/// A healthy host: init namespace on 6.18, 10% full, nothing logged.
fn healthy() -> Facts {
    Facts {
        kernel: Some("6.18.44".into()),
        netns_inode: Some(1000),
        init_netns_inode: Some(1000),
        conntrack_loaded: true,
        count: Some(26_214),
        max: Some(262_144),
        buckets: Some(262_144),
        mix: Some(Mix {
            entries: 26_214,
            assured: 20_000,
            ..Mix::default()
        }),
        slab: Some(SlabCache {
            active_objs: 1,
            num_objs: 1,
            objsize: 256,
        }),
        mem_total: Some(24 << 30),
        counters: Some(Counters {
            source: "test".into(),
            values: [("drop".to_string(), 0)].into(),
        }),
        kernel_log: Some(kernel_log::scan(["[ 1.0] booting"])),
        kernel_log_source: Some("test".into()),
        rule_sources: vec!["nft -j list ruleset".into()],
        rules: crate::ruleset::RuleUse {
            stateful: vec!["inet filter input: ct".into()],
            ..Default::default()
        },
        ..Facts::default()
    }
}

fn ids(r: &Report) -> Vec<(String, Severity)> {
    r.findings
        .iter()
        .map(|f| (f.id.to_string(), f.severity))
        .collect()
}

fn find<'a>(r: &'a Report, id: &str) -> &'a Finding {
    r.findings
        .iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no {id} in {:?}", ids(r)))
}

#[test]
fn not_loaded_is_ok() {
    let r = diagnose(&Facts::default(), &Thresholds::default());
    assert_eq!((r.verdict, r.exit_code), (Verdict::Ok, 0));
    assert_eq!(
        ids(&r),
        vec![("conntrack.unused".to_string(), Severity::Ok)]
    );
}

#[test]
fn healthy_is_ok_with_numbers() {
    let r = diagnose(&healthy(), &Thresholds::default());
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", ids(&r));
    assert_eq!(r.headline, "conntrack table 10.0% full (26214/262144)");
    assert_eq!(
        r.summary.fill_percent.map(|p| (p * 10.0).round()),
        Some(100.0)
    );
    // 26214 x 2 / 262144
    assert_eq!(
        r.summary.average_chain.map(|c| (c * 1000.0).round()),
        Some(200.0)
    );
    assert_eq!(r.summary.memory_now, Some(26_214 * 256 + 262_144 * 8));
    assert_eq!(r.summary.memory_at_max, Some(262_144 * 256 + 262_144 * 8));
    assert_eq!(r.summary.evictable, Some(6_214));
}

#[test]
fn full_of_assured_entries_is_critical() {
    let mut f = healthy();
    f.count = Some(262_144);
    f.mix = Some(Mix {
        entries: 262_144,
        assured: 262_144,
        ..Mix::default()
    });
    let r = diagnose(&f, &Thresholds::default());
    assert_eq!((r.verdict, r.exit_code), (Verdict::Critical, 2));
    let fill = find(&r, "table.fill");
    assert_eq!(fill.severity, Severity::Critical);
    assert!(
        fill.fix[0].contains("nf_conntrack_max=524288"),
        "{:?}",
        fill.fix
    );
}

#[test]
fn full_of_unassured_entries_is_pressure_not_critical() {
    let mut f = healthy();
    f.count = Some(262_000);
    f.mix = Some(Mix {
        entries: 262_000,
        assured: 1_000,
        unreplied: 261_000,
        ..Mix::default()
    });
    f.counters = Some(Counters {
        source: "t".into(),
        values: [("drop".into(), 0), ("early_drop".into(), 57)].into(),
    });
    let r = diagnose(&f, &Thresholds::default());
    assert_eq!(r.verdict, Verdict::Warning, "{:?}", ids(&r));
    assert_eq!(find(&r, "table.fill").severity, Severity::Warning);
    assert_eq!(find(&r, "counters.early_drop").severity, Severity::Warning);
    assert!(!r.findings.iter().any(|x| x.severity == Severity::Critical));
}

#[test]
fn thresholds_are_configurable() {
    let mut f = healthy();
    f.count = Some(200_000); // 76%
    assert_eq!(
        diagnose(&f, &Thresholds::default()).verdict,
        Verdict::Warning
    );
    assert_eq!(
        diagnose(
            &f,
            &Thresholds {
                warn: 80.0,
                crit: 95.0,
                ..Thresholds::default()
            }
        )
        .verdict,
        Verdict::Ok
    );
    assert_eq!(
        diagnose(
            &f,
            &Thresholds {
                warn: 50.0,
                crit: 70.0,
                ..Thresholds::default()
            }
        )
        .verdict,
        Verdict::Critical
    );
}

#[test]
fn past_drops_are_critical_on_an_empty_table() {
    let mut f = healthy();
    f.count = Some(10);
    f.counters = Some(Counters {
        source: "t".into(),
        values: [("drop".into(), 3)].into(),
    });
    let r = diagnose(&f, &Thresholds::default());
    assert_eq!(r.verdict, Verdict::Critical);
    assert!(
        find(&r, "counters.drop")
            .title
            .starts_with("3 packets were dropped")
    );
}

#[test]
fn drop_rate_says_now() {
    let mut f = healthy();
    f.counters = Some(Counters {
        source: "t".into(),
        values: [("drop".into(), 50)].into(),
    });
    f.rates = Some([("drop".to_string(), 12.5)].into());
    f.interval_secs = Some(2.0);
    let r = diagnose(&f, &Thresholds::default());
    let d = find(&r, "counters.drop");
    assert!(
        d.title.contains("dropped now") && d.title.contains("12.5/s"),
        "{}",
        d.title
    );
}

/// Boot at 1,000,000 (Unix), now 10,000 s later.
const BOOT: i64 = 1_000_000;
const NOW: f64 = 1_010_000.0;

/// /dev/kmsg as the scanner sees it on this boot.
fn kmsg_ctx() -> kernel_log::Context {
    kernel_log::Context {
        now: Some(NOW),
        boot_time: Some(BOOT as f64),
        utc_offset: 0,
        this_boot: true,
        netns_inode: None,
    }
}

/// Raw /dev/kmsg table-full records at these uptimes (seconds).
fn kmsg_full(netns: Option<u64>, uptimes: &[u64]) -> Vec<String> {
    uptimes
        .iter()
        .enumerate()
        .map(|(seq, up)| match netns {
            Some(i) => format!(
                "4,{seq},{},-;nf_conntrack: nf_conntrack: table full in netns {i}, dropping packet",
                up * 1_000_000
            ),
            None => format!(
                "4,{seq},{},-;nf_conntrack: nf_conntrack: table full, dropping packet",
                up * 1_000_000
            ),
        })
        .collect()
}

/// A namespace (inode 7777, not the initial one) on 6.18, dated at
/// NOW, whose /dev/kmsg holds these lines and whose drop counter is `drop`.
fn pod(lines: &[String], drop: u64) -> Facts {
    let mut f = healthy();
    f.netns_inode = Some(7777);
    f.now = Some(NOW);
    f.boot_time = Some(BOOT);
    f.kernel_log = Some(kernel_log::scan_with(
        lines.iter().map(String::as_str),
        kmsg_ctx(),
    ));
    f.kernel_log_source = Some("/dev/kmsg".into());
    f.counters = Some(Counters {
        source: "t".into(),
        values: [("drop".to_string(), drop)].into(),
    });
    f
}

#[test]
fn reused_inode_with_zero_drop_counter_is_info_not_critical() {
    // An earlier namespace with inode 7777 was full 100 s ago; this one
    // is new and has dropped nothing.
    let f = pod(&kmsg_full(Some(7777), &[9_898, 9_899, 9_900]), 0);
    let r = diagnose(&f, &Thresholds::default());
    let log = find(&r, "log.table_full.7777");
    assert_eq!(log.severity, Severity::Info, "{log:?}");
    assert!(
        log.title
            .starts_with("kernel log: an earlier namespace with inode 7777 was full at 1970-01-12 16:31:40 UTC (3 lines)"),
        "{}",
        log.title
    );
    assert!(log.evidence.iter().any(|e| e.contains("drop counter is 0")));
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", ids(&r));
}

#[test]
fn drop_counter_below_the_logged_lines_says_some_are_older() {
    // 5 lines, 40 suppressed: at least 45 drops; the counter says 2.
    let mut lines = kmsg_full(Some(7777), &[9_000, 9_001, 9_002, 9_003, 9_900]);
    lines.insert(
        3,
        "4,9,9002500000,-;net_ratelimit: 40 callbacks suppressed".into(),
    );
    let r = diagnose(&pod(&lines, 2), &Thresholds::default());
    let log = find(&r, "log.table_full.7777");
    assert_eq!(log.severity, Severity::Critical);
    assert!(
        log.evidence.iter().any(|e| e
            == "this namespace's drop counter is 2, but the 5 lines of this boot and 40 suppressed prove at least 45 drops: some lines are older, from an earlier namespace with the same inode; the newest are this one's"),
        "{:?}",
        log.evidence
    );
}

#[test]
fn unnamed_lines_before_6_17_do_not_make_a_clean_namespace_critical() {
    let lines = kmsg_full(None, &[9_990]);
    let mut f = pod(&lines, 0);
    f.kernel = Some("5.15.0".into());
    let r = diagnose(&f, &Thresholds::default());
    let log = find(&r, "log.table_full");
    assert_eq!(log.severity, Severity::Info, "{log:?}");
    assert!(log.title.contains("not this one, whose drop counter is 0"));
    assert_eq!(r.verdict, Verdict::Ok);
    // The same lines with drops counted here are this namespace's.
    let mut f = pod(&lines, 1);
    f.kernel = Some("5.15.0".into());
    let r = diagnose(&f, &Thresholds::default());
    assert_eq!(find(&r, "log.table_full").severity, Severity::Critical);
    // In the initial namespace of 6.18, too, unnamed lines are weighed.
    let mut f = pod(&lines, 0);
    f.netns_inode = f.init_netns_inode;
    let r = diagnose(&f, &Thresholds::default());
    assert_eq!(find(&r, "log.table_full").severity, Severity::Info);
}

#[test]
fn table_full_lines_older_than_recent_are_warning_so_the_check_recovers() {
    // Full 8000 s ago (uptime 2000 s), 2 drops counted, nothing since.
    let f = pod(&kmsg_full(Some(7777), &[1_999, 2_000]), 2);
    let r = diagnose(&f, &Thresholds::default());
    let log = find(&r, "log.table_full.7777");
    assert_eq!(log.severity, Severity::Warning);
    assert_eq!(
        log.title,
        "kernel log: table was full in netns 7777 (no longer exists) at 1970-01-12 14:20:00 UTC, 2 lines; none in the last 1h"
    );
    let drop = find(&r, "counters.drop");
    assert_eq!(drop.severity, Severity::Warning);
    assert_eq!(
        drop.title,
        "2 packets were dropped because the conntrack table was full, the last at 1970-01-12 14:20:00 UTC; none in the last 1h"
    );
    assert_eq!((r.verdict, r.exit_code), (Verdict::Warning, 1));
    // With --recent 3h the same lines are recent.
    let t = Thresholds {
        recent: Duration::from_secs(3 * 3600),
        ..Thresholds::default()
    };
    let r = diagnose(&f, &t);
    assert_eq!(find(&r, "log.table_full.7777").severity, Severity::Critical);
    assert_eq!(find(&r, "counters.drop").severity, Severity::Critical);
    // A positive drop rate is now, whatever the log says.
    let mut f = f;
    f.rates = Some([("drop".to_string(), 0.5)].into());
    f.interval_secs = Some(2.0);
    let r = diagnose(&f, &Thresholds::default());
    assert_eq!(find(&r, "counters.drop").severity, Severity::Critical);
}

#[test]
fn drops_beyond_the_logged_lines_are_dated_by_the_rate_not_called_old() {
    // 2 lines 8000 s ago, but 12 drops: 10 went unlogged (net_ratelimit
    // is global) and may be now.
    let mut f = pod(&kmsg_full(Some(7777), &[1_999, 2_000]), 12);
    assert_eq!(undated_excess(&f), 10);
    let r = diagnose(&f, &Thresholds::default());
    let drop = find(&r, "counters.drop");
    assert_eq!(drop.severity, Severity::Critical, "{drop:?}");
    assert_eq!(
        drop.title,
        "12 packets were dropped because the conntrack table was full; 10 are not in the log (rate-limited) and no sample dates them; the last logged at 1970-01-12 14:20:00 UTC"
    );
    // check's own 1 s sample: nothing dropped in it.
    f.rates = Some([("drop".to_string(), 0.0)].into());
    f.interval_secs = Some(1.0);
    let r = diagnose(&f, &Thresholds::default());
    let drop = find(&r, "counters.drop");
    assert_eq!(drop.severity, Severity::Warning, "{drop:?}");
    assert_eq!(
        drop.title,
        "10 of 12 drops are not in the log (rate-limited); none in a 1.0 s sample; the last logged at 1970-01-12 14:20:00 UTC"
    );
    assert!(!drop.title.contains("none in the last"));
    // Dropping in the sample: now.
    f.rates = Some([("drop".to_string(), 3.0)].into());
    let r = diagnose(&f, &Thresholds::default());
    assert_eq!(find(&r, "counters.drop").severity, Severity::Critical);
    // Lines and suppressed callbacks that explain every drop: no excess.
    let mut lines = kmsg_full(Some(7777), &[1_999, 2_000]);
    lines.push("4,9,2000500000,-;net_ratelimit: 10 callbacks suppressed".into());
    assert_eq!(undated_excess(&pod(&lines, 12)), 0);
}

#[test]
fn future_dated_lines_are_not_recent() {
    // Clock skew: a line dated a year after now, and a drop counter the
    // lines explain. Without the skew rule it would be recent forever.
    let mut f = pod(&[], 1);
    f.kernel_log = Some(kernel_log::scan_with(
        ["2030-01-01T00:00:00Z nf_conntrack: table full in netns 7777, dropping packet"],
        kernel_log::Context {
            this_boot: false,
            ..kmsg_ctx()
        },
    ));
    let r = diagnose(&f, &Thresholds::default());
    let log = find(&r, "log.table_full.7777");
    assert_eq!(log.severity, Severity::Warning, "{log:?}");
    assert!(
        log.evidence
            .iter()
            .any(|e| e
                == "1 lines dated more than 5 min after now: clock skew, not counted as recent"),
        "{:?}",
        log.evidence
    );
}

#[test]
fn drop_counter_that_no_log_dates_is_critical() {
    let mut f = pod(&[], 4);
    f.kernel_log_truncated = true;
    let r = diagnose(&f, &Thresholds::default());
    let drop = find(&r, "counters.drop");
    assert_eq!(drop.severity, Severity::Critical);
    assert_eq!(
        drop.title,
        "4 packets were dropped because the conntrack table was full; no readable log dates them"
    );
}

#[test]
fn kernel_log_file_of_another_boot_is_judged_by_age_not_counters() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/kernel-log-historical.txt"
    ))
    .expect("fixture");
    // Read on 2026-11-26 14:00 UTC, this host booted at 13:50: every
    // line of the file (Nov 20 to Nov 26 13:41) is from before.
    let now = 1_795_701_600.0;
    let ctx = kernel_log::Context {
        now: Some(now),
        boot_time: Some(now - 600.0),
        utc_offset: 0,
        this_boot: false,
        netns_inode: None,
    };
    let mut f = healthy();
    f.now = Some(now);
    f.kernel_log = Some(kernel_log::scan_with(text.lines(), ctx));
    // In the initial namespace with drop=0: the unnamed lines are not
    // weighed against this boot's counter but judged by their age: the
    // newest (Nov 23 19:20:17) is days old: WARNING, with when.
    let r = diagnose(&f, &Thresholds::default());
    let init = find(&r, "log.table_full");
    assert_eq!(init.severity, Severity::Warning, "{init:?}");
    assert_eq!(
        init.title,
        "kernel log: table was full in the initial namespace (or an older kernel that does not say) at 2026-11-23 19:20:17 UTC, 6 lines; none in the last 1h"
    );
    assert!(
        init.evidence
            .iter()
            .any(|e| e.contains("2418 rate-limited")),
        "{init:?}"
    );
    // With --recent 7d they are recent: CRITICAL.
    let week = Thresholds {
        recent: Duration::from_secs(7 * 86_400),
        ..Thresholds::default()
    };
    assert_eq!(
        find(&diagnose(&f, &week), "log.table_full").severity,
        Severity::Critical
    );
    // Another namespace's lines (13:35, 25 minutes old): WARNING while
    // recent, INFO once older than --recent.
    assert_eq!(
        find(&r, "log.table_full.4026532177").severity,
        Severity::Warning
    );
    assert_eq!(find(&r, "log.vmalloc").severity, Severity::Info);
    let ten_minutes = Thresholds {
        recent: Duration::from_secs(600),
        ..Thresholds::default()
    };
    assert_eq!(
        find(&diagnose(&f, &ten_minutes), "log.table_full.4026532177").severity,
        Severity::Info
    );
    // Inside namespace 4026532177 on 6.18 with drop=0: its own lines
    // are another boot's, 25 minutes old: CRITICAL by age; the unnamed
    // (initial namespace) ones are not ours and old: INFO.
    f.netns_inode = Some(4_026_532_177);
    let r = diagnose(&f, &Thresholds::default());
    assert_eq!(
        find(&r, "log.table_full.4026532177").severity,
        Severity::Critical
    );
    assert_eq!(find(&r, "log.table_full").severity, Severity::Info);
    // Plain dmesg uptime stamps in a file cannot be dated: recent.
    let mut f = healthy();
    f.now = Some(now);
    f.kernel_log = Some(kernel_log::scan_with(
        ["[ 5.0] nf_conntrack: nf_conntrack: table full, dropping packet"],
        ctx,
    ));
    let r = diagnose(&f, &ten_minutes);
    assert_eq!(find(&r, "log.table_full").severity, Severity::Critical);
}

#[test]
fn unreadable_kernel_log_given_by_the_user_is_unknown() {
    let mut f = healthy();
    let e = Unreadable {
        what: "/var/log/kern.log".into(),
        why: crate::facts::Why::NotPresent,
    };
    f.kernel_log = None;
    f.kernel_log_error = Some(e.clone());
    f.unreadable.push(e);
    let r = diagnose(&f, &Thresholds::default());
    assert_eq!((r.verdict, r.exit_code), (Verdict::Unknown, 3));
    assert_eq!(
        r.headline,
        "cannot read the kernel log: /var/log/kern.log: not present"
    );
}

#[test]
fn idle_established_and_time_wait() {
    let mut f = healthy();
    f.count = Some(150_000);
    f.timeouts = [
        ("nf_conntrack_tcp_timeout_established".to_string(), 432_000),
        ("nf_conntrack_tcp_timeout_time_wait".to_string(), 120),
    ]
    .into();
    f.mix = Some(Mix {
        entries: 150_000,
        assured: 150_000,
        established_idle_1h: 60_000,
        tcp_state: [
            ("ESTABLISHED".to_string(), 80_000),
            ("TIME_WAIT".to_string(), 50_000),
        ]
        .into(),
        ..Mix::default()
    });
    let r = diagnose(&f, &Thresholds::default());
    let est = find(&r, "timeouts.tcp_established");
    assert_eq!(est.severity, Severity::Warning);
    assert!(est.fix[0].contains("=7440"));
    assert_eq!(
        find(&r, "timeouts.tcp_time_wait").severity,
        Severity::Warning
    );
    // The same mix in a nearly empty table is not worth a warning.
    f.count = Some(1_000);
    let r = diagnose(&f, &Thresholds::default());
    assert!(!r.findings.iter().any(|x| x.id == "timeouts.tcp_time_wait"));
}

#[test]
fn who_needs_it() {
    let mut f = healthy();
    f.rules = crate::ruleset::RuleUse::default();
    let r = diagnose(&f, &Thresholds::default());
    assert_eq!(find(&r, "who.unneeded").severity, Severity::Info);
    f.count = Some(250_000);
    let r = diagnose(&f, &Thresholds::default());
    assert_eq!(find(&r, "who.unneeded").severity, Severity::Warning);
    // Unread rulesets never claim "nothing needs it".
    f.rule_sources.clear();
    let r = diagnose(&f, &Thresholds::default());
    assert!(!r.findings.iter().any(|x| x.id == "who.unneeded"));
}

/// Issue 7 section 4: an empty table used to hide who.unneeded.
#[test]
fn who_unneeded_is_said_on_an_empty_table() {
    let mut f = healthy();
    f.rules = crate::ruleset::RuleUse::default();
    f.count = Some(0);
    f.mix = None;
    f.conntrack_builtin = Some(true);
    let r = diagnose(&f, &Thresholds::default());
    let w = find(&r, "who.unneeded");
    assert_eq!(w.severity, Severity::Info);
    assert_eq!(
        w.title,
        "nothing found here needs conntrack, yet nf_conntrack is built into the kernel (table empty)"
    );
    assert_eq!(r.verdict, Verdict::Ok);
    assert!(w.fix.is_empty(), "built in and empty: nothing to do");
    f.conntrack_builtin = Some(false);
    let r = diagnose(&f, &Thresholds::default());
    let w = find(&r, "who.unneeded");
    assert!(
        w.title
            .ends_with("yet nf_conntrack is loaded as a module (table empty)")
    );
    assert_eq!(
        w.fix,
        vec![
            "unload it: modprobe -r nf_conntrack (lsmod | grep nf_conntrack lists what still holds it)"
        ]
    );
}

/// Issue 7 section 4: with `--netns`, /proc shows the host's dockerd
/// and enabled units act in the initial namespace: they are the host's.
#[test]
fn host_services_are_not_this_namespaces() {
    let svc = |name: &str, seen: &str, netns_inode| crate::facts::Service {
        name: name.into(),
        seen: seen.into(),
        uses_conntrack_for: "NAT".into(),
        netns_inode,
    };
    let mut f = healthy();
    f.netns_inode = Some(2000);
    f.rules = crate::ruleset::RuleUse::default();
    f.services = vec![
        svc("Docker", "running (pid 10)", Some(1000)),
        svc("kubelet", "unit kubelet.service enabled", None),
    ];
    let r = diagnose(&f, &Thresholds::default());
    assert!(!r.findings.iter().any(|x| x.id == "who.services"), "{r:#?}");
    let h = find(&r, "who.host_services");
    assert_eq!(
        h.title,
        "services that use conntrack in the host's namespace, not in this one: Docker, kubelet"
    );
    assert_eq!(
        h.evidence,
        vec![
            "Docker (running (pid 10), host netns 1000): NAT",
            "kubelet (unit kubelet.service enabled, host netns 1000): NAT"
        ]
    );
    // Nothing in this namespace needs conntrack.
    assert!(r.findings.iter().any(|x| x.id == "who.unneeded"));
    // The same dockerd seen from the host is this namespace's.
    f.netns_inode = Some(1000);
    let r = diagnose(&f, &Thresholds::default());
    let here = find(&r, "who.services");
    assert_eq!(here.title, "services that use conntrack: Docker, kubelet");
    assert_eq!(here.evidence[0], "Docker (running (pid 10)): NAT");
    assert!(!r.findings.iter().any(|x| x.id == "who.host_services"));
    assert!(!r.findings.iter().any(|x| x.id == "who.unneeded"));
}

#[test]
fn unknown_without_count() {
    let mut f = healthy();
    f.count = None;
    f.unreadable.push(Unreadable {
        what: "x".into(),
        why: crate::facts::Why::Permission("CAP_NET_ADMIN".into()),
    });
    let r = diagnose(&f, &Thresholds::default());
    assert_eq!((r.verdict, r.exit_code), (Verdict::Unknown, 3));
    assert_eq!(r.unreadable.len(), 1);
}

#[test]
fn memory_and_estimate() {
    let mut f = healthy();
    f.slab = None;
    f.mem_total = Some(512 << 20);
    f.max = Some(1_048_576);
    let r = diagnose(&f, &Thresholds::default());
    let m = find(&r, "memory");
    assert_eq!(m.severity, Severity::Warning);
    assert!(m.evidence[0].contains("estimate"));
}

#[test]
fn cloud_allowance() {
    let mut f = healthy();
    f.cloud = vec![crate::facts::Allowance {
        interface: "eth0".into(),
        exceeded: 9,
        available: None,
    }];
    let r = diagnose(&f, &Thresholds::default());
    assert_eq!(find(&r, "cloud.ena.eth0").severity, Severity::Critical);
}

#[test]
fn all_netns() {
    let mut f = healthy();
    f.namespaces = vec![crate::facts::Namespace {
        inode: 7,
        name: "pod-a".into(),
        path: "/run/netns/pod-a".into(),
    }];
    f.netns_counts = Some(vec![
        crate::facts::NetnsCount {
            inode: 7,
            name: "pod-a".into(),
            owner: "default/web-0".into(),
            container: None,
            count: Some(262_144),
            drop: Some(3),
            sysctl_max: None,
            sysctl_mode: None,
            max: None,
            error: None,
        },
        crate::facts::NetnsCount {
            inode: 1000,
            name: "init".into(),
            owner: "host".into(),
            container: None,
            count: Some(10),
            drop: None,
            sysctl_max: None,
            sysctl_mode: None,
            max: None,
            error: None,
        },
    ]);
    let r = diagnose(&f, &Thresholds::default());
    let pod = find(&r, "netns.7");
    assert_eq!(pod.severity, Severity::Critical);
    assert_eq!(pod.fix, vec!["ctdoctor --netns /run/netns/pod-a check"]);
    assert_eq!(
        pod.title,
        "netns pod-a, owner default/web-0: 100% full (262144/262144)"
    );
    let all = &find(&r, "netns.all").evidence;
    assert_eq!(
        all[0],
        "pod-a, owner default/web-0 (inode 7): 262144, drop 3"
    );
    assert_eq!(all[1], "init, owner host (inode 1000): 10");
    let rows = r.namespaces.as_ref().map(|n| n.len());
    assert_eq!(rows, Some(2));
    assert_eq!(r.verdict, Verdict::Critical);
}

/// Issue 18: a container's runtime and image follow its owner in every
/// namespace label, and metadata that could not be read is said once in
/// netns.all (not per namespace), with the first reason.
#[test]
fn container_labels_and_unreadable_metadata_said_once() {
    let mut f = healthy();
    let row = |inode: u64, owner: &str, c: crate::facts::ContainerOwner| crate::facts::NetnsCount {
        inode,
        name: format!("pid {inode} (sh)"),
        owner: owner.into(),
        container: Some(c),
        count: Some(inode),
        drop: None,
        sysctl_max: None,
        sysctl_mode: None,
        max: None,
        error: None,
    };
    let gone = |id: &str| crate::facts::ContainerOwner {
        runtime: "docker".into(),
        id: Some(id.into()),
        metadata_error: Some(format!(
            "no config.v2.json for container {id} under /var/lib/docker"
        )),
        ..Default::default()
    };
    f.netns_counts = Some(vec![
        row(
            30,
            "web",
            crate::facts::ContainerOwner {
                runtime: "docker".into(),
                name: Some("web".into()),
                image: Some("nginx:1.27".into()),
                ..Default::default()
            },
        ),
        row(20, "aaaaaaaaaaaa", gone("aaaaaaaaaaaa")),
        row(10, "bbbbbbbbbbbb", gone("bbbbbbbbbbbb")),
    ]);
    let r = diagnose(&f, &Thresholds::default());
    let all = &find(&r, "netns.all").evidence;
    assert_eq!(
        all[0],
        "pid 30 (sh), owner web [docker nginx:1.27] (inode 30): 30"
    );
    assert_eq!(
        all[1],
        "pid 20 (sh), owner aaaaaaaaaaaa [docker] (inode 20): 20"
    );
    let said: Vec<&String> = all
        .iter()
        .filter(|e| e.contains("metadata unreadable"))
        .collect();
    assert_eq!(
        said,
        [
            "container metadata unreadable for 2 namespaces, owners shown by id: no config.v2.json for container aaaaaaaaaaaa under /var/lib/docker"
        ]
    );
}

/// --all-netns reads each namespace's own `drop` counter with its count
/// (inodes are reused, so a log line naming an inode cannot say which
/// namespace dropped); the netns.* findings show it, also for a namespace
/// that dropped but is not among the ten fullest now.
#[test]
fn netns_findings_show_each_namespaces_own_drop_counter() {
    let mut f = healthy();
    let ns = |inode: u64, count: u64, drop: Option<u64>| crate::facts::NetnsCount {
        inode,
        name: format!("ns{inode}"),
        owner: String::new(),
        container: None,
        count: Some(count),
        drop,
        sysctl_max: None,
        sysctl_mode: None,
        max: None,
        error: None,
    };
    let mut counts = vec![ns(7, 262_144, Some(3))];
    counts.extend((10..20).map(|i| ns(i, 100 + i, Some(0))));
    counts.push(ns(30, 5, Some(42)));
    counts.push(ns(31, 4, None));
    f.netns_counts = Some(counts);
    let r = diagnose(&f, &Thresholds::default());
    assert!(
        find(&r, "netns.7")
            .evidence
            .contains(&"drop counter of this namespace: 3 packets dropped, table full".to_string()),
        "{r:#?}"
    );
    let all = &find(&r, "netns.all").evidence;
    assert_eq!(all[0], "ns7 (inode 7): 262144, drop 3");
    assert_eq!(all[1], "ns19 (inode 19): 119, drop 0");
    assert_eq!(all.len(), 11, "{all:?}");
    assert_eq!(all[10], "ns30 (inode 30): 5, drop 42");
}

/// The host (inode 1000) looking at this boot's recent lines for inode
/// 7777: the namespace with that inode now (if any) is weighed by its own
/// drop counter, as a namespace is by its own (inodes are reused).
fn host_sees_7777(holder_drop: Option<Option<u64>>) -> Report {
    let mut f = healthy();
    f.now = Some(NOW);
    f.boot_time = Some(BOOT);
    f.kernel_log = Some(kernel_log::scan_with(
        kmsg_full(Some(7777), &[9_990, 9_995])
            .iter()
            .map(String::as_str),
        kmsg_ctx(),
    ));
    f.kernel_log_source = Some("/dev/kmsg".into());
    if let Some(drop) = holder_drop {
        f.namespaces.push(crate::facts::Namespace {
            inode: 7777,
            name: "try1".into(),
            path: "/run/netns/try1".into(),
        });
        f.log_netns = vec![crate::facts::NetnsCount {
            inode: 7777,
            name: "try1".into(),
            owner: String::new(),
            container: None,
            count: Some(0),
            drop,
            sysctl_max: None,
            sysctl_mode: None,
            max: None,
            error: None,
        }];
    }
    diagnose(&f, &Thresholds::default())
}

#[test]
fn host_does_not_blame_a_new_namespace_that_reuses_a_full_ones_inode() {
    let r = host_sees_7777(Some(Some(0)));
    let log = find(&r, "log.table_full.7777");
    assert_eq!(log.severity, Severity::Info, "{log:?}");
    assert!(
        log.title
            .starts_with("kernel log: an earlier namespace with inode 7777 was full at")
            && log.title.ends_with("not try1, whose drop counter is 0"),
        "{}",
        log.title
    );
    assert!(log.fix.is_empty(), "{:?}", log.fix);
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", ids(&r));
}

#[test]
fn host_notes_a_deleted_namespaces_drops_as_info() {
    let r = host_sees_7777(None);
    let log = find(&r, "log.table_full.7777");
    assert_eq!(log.severity, Severity::Info, "{log:?}");
    assert!(
        log.title
            .starts_with("kernel log: a namespace that no longer exists (inode 7777) was full at"),
        "{}",
        log.title
    );
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", ids(&r));
}

#[test]
fn host_warns_about_a_live_namespace_that_dropped() {
    for drop in [Some(2), None] {
        let r = host_sees_7777(Some(drop));
        let log = find(&r, "log.table_full.7777");
        assert_eq!(log.severity, Severity::Warning, "{drop:?}: {log:?}");
        assert!(
            log.title
                .starts_with("kernel log: table full, packets dropped in netns 7777 (try1)"),
            "{}",
            log.title
        );
        assert_eq!(r.verdict, Verdict::Warning, "{:?}", ids(&r));
    }
}

#[test]
fn bpf_maps_are_judged_beside_nf_conntrack() {
    use crate::bpf::{BpfMap, Datapath};
    let mut f = healthy();
    f.bpf_maps = vec![
        BpfMap {
            name: "cilium_ct4_global".into(),
            datapath: Datapath::Cilium,
            entries: 1000,
            max_entries: 1024,
        },
        BpfMap {
            name: "cilium_ct_any4_global".into(),
            datapath: Datapath::Cilium,
            entries: 800,
            max_entries: 1024,
        },
        BpfMap {
            name: "cali_v4_ct3".into(),
            datapath: Datapath::Calico,
            entries: 100,
            max_entries: 4096,
        },
    ];
    let r = diagnose(&f, &Thresholds::default());
    let full = find(&r, "bpf.cilium_ct4_global");
    assert_eq!(full.severity, Severity::Critical);
    assert!(
        full.evidence[0].contains("1000 of max_entries 1024"),
        "{:?}",
        full.evidence
    );
    assert!(full.fix[0].contains("--bpf-ct-global-tcp-max"));
    let any = find(&r, "bpf.cilium_ct_any4_global");
    assert_eq!(any.severity, Severity::Warning);
    assert!(any.fix[0].contains("--bpf-ct-global-any-max"));
    let calico = find(&r, "bpf.cali_v4_ct3");
    assert_eq!(calico.severity, Severity::Ok);
    assert!(calico.fix.is_empty());
    assert_eq!(r.verdict, Verdict::Critical);

    // A Cilium node without nf_conntrack: the maps are still judged.
    f.conntrack_loaded = false;
    let r = diagnose(&f, &Thresholds::default());
    assert_eq!(
        find(&r, "bpf.cilium_ct4_global").severity,
        Severity::Critical
    );
}

#[test]
fn average_chain_at_max_against_the_kernel_chain_limit() {
    // 6.18: limit 50..79; max 16 x buckets gives chains of 32 at max (>= 25).
    let mut f = healthy();
    f.max = Some(262_144 * 16);
    let r = diagnose(&f, &Thresholds::default());
    let x = find(&r, "table.chain_limit");
    assert_eq!(x.severity, Severity::Warning);
    assert!(
        x.title.contains("32.0") && x.title.contains("50..79"),
        "{}",
        x.title
    );
    assert!(x.fix[0].contains("hashsize"));
    // 8 x buckets (chains of 16 at max) is far from 50 on 6.18 ...
    f.max = Some(262_144 * 8);
    let r = diagnose(&f, &Thresholds::default());
    assert!(!ids(&r).iter().any(|(i, _)| i == "table.chain_limit"));
    // ... and over the 8..31 limit of 5.15-6.2; no limit before 5.15.
    f.kernel = Some("5.15.0-91-generic".into());
    let r = diagnose(&f, &Thresholds::default());
    assert!(find(&r, "table.chain_limit").title.contains("8..31"));
    f.kernel = Some("5.10".into());
    let r = diagnose(&f, &Thresholds::default());
    assert!(!ids(&r).iter().any(|(i, _)| i == "table.chain_limit"));
    // The default sizing (max = buckets, chains of 2) never warns.
    let r = diagnose(&healthy(), &Thresholds::default());
    assert!(!ids(&r).iter().any(|(i, _)| i.starts_with("table.chain")));
}

#[test]
fn chaintoolong_since_boot_warns_and_rising_is_critical() {
    let mut f = healthy();
    let r = diagnose(&f, &Thresholds::default());
    assert!(!ids(&r).iter().any(|(i, _)| i == "counters.chaintoolong"));
    f.counters = Some(Counters {
        source: "test".into(),
        values: [
            ("drop".to_string(), 0),
            ("chaintoolong".to_string(), 7),
            ("clash_resolve".to_string(), 3),
        ]
        .into(),
    });
    let r = diagnose(&f, &Thresholds::default());
    let x = find(&r, "counters.chaintoolong");
    assert_eq!(x.severity, Severity::Warning);
    assert!(x.title.contains("hash-flood"), "{}", x.title);
    assert!(x.evidence.iter().any(|e| e.contains("--interval")));
    assert!(x.fix.iter().any(|e| e.contains("hashsize")));
    assert!(find(&r, "counters.drop").evidence[0].contains("chaintoolong=7 clash_resolve=3"));
    // Rising over an interval: dropping now.
    f.rates = Some([("chaintoolong".to_string(), 2.5)].into());
    f.interval_secs = Some(2.0);
    let r = diagnose(&f, &Thresholds::default());
    let x = find(&r, "counters.chaintoolong");
    assert_eq!(x.severity, Severity::Critical);
    assert!(x.title.contains("2.5/s"), "{}", x.title);
    assert_eq!(r.verdict, Verdict::Critical);
    // Nonzero since boot, flat over the interval: still a warning.
    f.rates = Some([("chaintoolong".to_string(), 0.0)].into());
    let r = diagnose(&f, &Thresholds::default());
    assert_eq!(
        find(&r, "counters.chaintoolong").severity,
        Severity::Warning
    );
}

/// Both layouts of KERNEL.md section 15: a namespace whose sysctl is
/// writable with a lower max is judged against it (full: CRITICAL); a
/// read-only one shares the initial namespace's limit.
#[test]
fn per_netns_max_both_layouts() {
    let row = |inode: u64, count: u64, mode: u32, max: u64| crate::facts::NetnsCount {
        inode,
        name: format!("ns{inode}"),
        owner: String::new(),
        container: None,
        count: Some(count),
        drop: None,
        sysctl_max: Some(max),
        sysctl_mode: Some(mode),
        max: None,
        error: None,
    };
    let mut f = healthy();
    f.netns_counts = Some(vec![
        row(1000, 10, 0o644, 262_144),
        row(7, 1000, 0o644, 1000),
    ]);
    let r = diagnose(&f, &Thresholds::default());
    assert_eq!(find(&r, "netns.7").severity, Severity::Critical);
    assert_eq!(
        find(&r, "netns.7").title,
        "netns ns7: 100% full (1000/1000)"
    );
    assert_eq!(
        r.per_netns_max,
        Some(crate::netns_max::PerNetnsMax::Supported)
    );
    let rows = r
        .namespaces
        .as_ref()
        .map(|n| n.iter().map(|n| n.max).collect::<Vec<_>>());
    assert_eq!(rows, Some(vec![Some(262_144), Some(1000)]));

    f.netns_counts = Some(vec![
        row(1000, 10, 0o644, 262_144),
        row(7, 1000, 0o444, 262_144),
    ]);
    let r = diagnose(&f, &Thresholds::default());
    assert!(
        r.findings.iter().all(|x| x.id != "netns.7"),
        "{:?}",
        ids(&r)
    );
    assert_eq!(
        r.per_netns_max,
        Some(crate::netns_max::PerNetnsMax::NotSupported)
    );
    assert!(
        find(&r, "netns.max")
            .title
            .contains("not supported by this kernel")
    );
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["per_netns_max"], "not supported");
    assert_eq!(json["namespaces"][1]["max"], 262_144);
}

/// Issue 20 W6: a counter source without `drop`, or none readable, is
/// "unknown", never "no packets dropped".
#[test]
fn unreadable_or_dropless_counters_are_unknown_not_ok() {
    let mut f = healthy();
    f.counters = Some(Counters {
        source: "/proc/net/stat/nf_conntrack".into(),
        values: [("found".into(), 1)].into(),
    });
    let r1 = diagnose(&f, &Thresholds::default());
    let d = find(&r1, "counters.drop");
    assert_eq!(d.severity, Severity::Info, "{d:?}");
    assert!(d.title.starts_with("drop counter unknown"), "{}", d.title);
    f.counters = None;
    f.unreadable.push(Unreadable {
        what: "/proc/net/stat/nf_conntrack".into(),
        why: crate::facts::Why::Malformed("header names column drop twice".into()),
    });
    let r2 = diagnose(&f, &Thresholds::default());
    let d = find(&r2, "counters.drop");
    assert_eq!(d.severity, Severity::Info);
    assert!(d.evidence[0].contains("twice"), "{:?}", d.evidence);
    // A missing counter beside a known drop is shown as unknown.
    f.counters = Some(Counters {
        source: "t".into(),
        values: [("drop".into(), 0)].into(),
    });
    let r3 = diagnose(&f, &Thresholds::default());
    let d = find(&r3, "counters.drop");
    assert_eq!(d.severity, Severity::Ok);
    assert!(
        d.evidence[0].starts_with("drop=0 early_drop=unknown insert_failed=unknown"),
        "{:?}",
        d.evidence
    );
}
