//! `ctdoctor check` against real conntrack exhaustion. A test namespace is
//! filled to the global nf_conntrack_max over ctnetlink (each namespace has
//! its own count, so the host is untouched and no global sysctl changes),
//! then real loopback TCP connections are opened there:
//! - all entries ASSURED: connections fail, the kernel logs `table full in
//!   netns N`, `drop` rises, and check must say CRITICAL (exit 2);
//! - all entries unassured: connections succeed through early_drop,
//!   `early_drop` rises, and check must say WARNING (exit 1), not drops.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use ctlab::Netns;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ctdoctor");

fn global_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
        .expect("nf_conntrack_max")
        .trim()
        .parse()
        .expect("number")
}

fn check(args: &[&str]) -> (i32, Value, f64) {
    let t = Instant::now();
    let out = Command::new(BIN).args(args).output().expect("run ctdoctor");
    let secs = t.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v, secs)
}

fn finding<'a>(v: &'a Value, id: &str) -> Option<&'a Value> {
    v["findings"].as_array()?.iter().find(|f| f["id"] == id)
}

/// Open a loopback TCP connection inside the namespace; Ok when it connected.
fn connect_in(ns: &Netns, timeout: Duration) -> Result<(), String> {
    ns.run(move || {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        TcpStream::connect_timeout(&addr, timeout)
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .expect("thread in netns")
}

fn filled(tag: &str, assured: bool) -> (Netns, u64) {
    let ns = Netns::create(tag).expect("netns");
    ns.track_loopback().expect("nft ct rule");
    let max = global_max();
    ns.insert(&ctlab::fill(max, assured)).expect("fill to max");
    let inode = std::fs::metadata(format!("/run/netns/{}", ns.name()))
        .expect("netns file")
        .ino();
    (ns, inode)
}

#[test]
fn full_table_of_assured_entries_drops_and_check_says_critical() {
    let (ns, inode) = filled("full", true);
    assert!(
        connect_in(&ns, Duration::from_millis(2500)).is_err(),
        "connect must fail: the table is full"
    );

    let (code, v, secs) = check(&["--netns", ns.name(), "check", "--json"]);
    eprintln!("check took {secs:.2} s on a {}-entry table", global_max());
    assert_eq!(code, 2, "{v:#}");
    assert_eq!(v["verdict"], "CRITICAL");
    assert_eq!(v["netns"], ns.name());
    assert_eq!(v["summary"]["fill_percent"].as_f64(), Some(100.0));
    assert_eq!(v["summary"]["evictable"].as_u64(), Some(0));

    let drop = finding(&v, "counters.drop").expect("drop finding");
    assert_eq!(drop["severity"], "critical");
    let drops: u64 = drop["evidence"][0]
        .as_str()
        .and_then(|e| e.strip_prefix("drop="))
        .and_then(|e| e.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("drop=N in evidence");
    assert!(drops >= 1, "{drop:#}");

    let log = finding(&v, &format!("log.table_full.{inode}"))
        .expect("table-full log finding for this netns");
    assert_eq!(log["severity"], "critical");
    assert!(
        log["title"].as_str().is_some_and(|t| t.contains(ns.name())),
        "{log:#}"
    );
    assert!(
        log["evidence"][0]
            .as_str()
            .is_some_and(|e| e.contains(&format!("table full in netns {inode}")))
    );

    assert_eq!(
        finding(&v, "table.fill").map(|f| f["severity"].clone()),
        Some("critical".into())
    );

    // From the host, --all-netns finds the full namespace although the
    // host's own table is not full: each namespace meets the max alone.
    let (code, v, _) = check(&[
        "check",
        "--all-netns",
        "--json",
        "--kernel-log",
        "/dev/null",
    ]);
    let ns_finding =
        finding(&v, &format!("netns.{inode}")).unwrap_or_else(|| panic!("no netns.{inode}: {v:#}"));
    assert_eq!(ns_finding["severity"], "critical");
    assert!(
        ns_finding["title"]
            .as_str()
            .is_some_and(|t| t.contains(ns.name())),
        "{ns_finding:#}"
    );
    assert_eq!(code, 2);

    // The human report says the same, verdict first.
    let out = Command::new(BIN)
        .args(["--netns", ns.name(), "check"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2));
    assert!(text.starts_with("CRITICAL: "), "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
}

#[test]
fn full_table_of_unassured_entries_early_drops_and_check_warns() {
    let (ns, inode) = filled("press", false);
    connect_in(&ns, Duration::from_millis(2500)).expect("connect succeeds through early_drop");

    // The kernel reuses namespace inode numbers, so /dev/kmsg may hold
    // table-full lines of an earlier namespace that had this inode (earlier
    // runs on the same boot). "No drops" is proven by this namespace's own
    // drop counter; the log is given empty so history cannot interfere.
    let (code, v, _) = check(&[
        "--netns",
        ns.name(),
        "check",
        "--json",
        "--kernel-log",
        "/dev/null",
    ]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["verdict"], "WARNING");
    let early = finding(&v, "counters.early_drop").expect("early_drop finding");
    assert_eq!(early["severity"], "warning");
    assert_eq!(
        finding(&v, "table.fill").map(|f| f["severity"].clone()),
        Some("warning".into())
    );
    // Pressure, not drops: no drop finding above OK, no log lines for it.
    assert!(
        finding(&v, "counters.drop").is_none_or(|f| f["severity"] == "ok"),
        "{v:#}"
    );
    assert!(
        finding(&v, &format!("log.table_full.{inode}")).is_none(),
        "{v:#}"
    );
    assert!(v["summary"]["evictable"].as_u64().is_some_and(|e| e > 0));
}

#[test]
fn check_without_privileges_is_partial_not_a_crash() {
    let out = ctlab::run_unprivileged(BIN, &["check"]).expect("setpriv");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        matches!(out.status.code(), Some(0..=3)),
        "{:?} {text} {err}",
        out.status
    );
    assert!(text.contains("Could not read"), "{text}");
    assert!(text.contains("needs CAP_NET_ADMIN"), "{text}");
}

#[test]
fn check_reads_a_saved_kernel_log_and_usage_errors_are_unknown() {
    let log = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cthost/tests/fixtures/kernel-log-historical.txt"
    );
    let ns = Netns::create("log").expect("netns");
    let (_, v, _) = check(&["--netns", ns.name(), "check", "--json", "--kernel-log", log]);
    let ids: Vec<&str> = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"log.table_full") && ids.contains(&"log.vmalloc"),
        "{ids:?}"
    );
    // Not this namespace's messages (6.17+ names non-init namespaces): warnings.
    assert_eq!(
        finding(&v, "log.table_full").map(|f| f["severity"].clone()),
        Some("warning".into())
    );

    let out = Command::new(BIN)
        .args(["check", "--warn", "95", "--crit", "90"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    let out = Command::new(BIN)
        .args(["check", "--no-such-flag"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
}
