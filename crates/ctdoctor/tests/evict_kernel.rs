//! `ctdoctor evict` against the real kernel, in throwaway namespaces filled
//! over ctnetlink with a known mix of UNREPLIED, plain and ASSURED entries:
//! what it deletes is cross-checked with `conntrack -L` of the namespace.

mod common;

use common::{StrayNetnsEntry, json, run, run_within, stderr};
use ctlab::Netns;
use ctmodel::Entry;
use ctmodel::text::{Line, parse_line};

fn entry(line: &str) -> Entry {
    match parse_line(line.as_bytes()) {
        Ok(Line::Entry(e)) => e,
        other => panic!("{line}: {other:?}"),
    }
}

/// `n` UDP UNREPLIED entries from 10.1.x.y, `m` TCP SYN_SENT (UNREPLIED)
/// and `k` TCP ESTABLISHED ASSURED.
fn mix(n: u32, m: u32, k: u32) -> Vec<Entry> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(entry(&format!(
            "udp 17 100 src=10.1.{}.{} dst=10.9.0.1 sport={} dport=53 [UNREPLIED] src=10.9.0.1 dst=10.1.{}.{} sport=53 dport={} mark=0 use=1",
            i / 200, i % 200, 1000 + i, i / 200, i % 200, 1000 + i
        )));
    }
    for i in 0..m {
        v.push(entry(&format!(
            "tcp 6 100 SYN_SENT src=10.2.0.{} dst=10.9.0.1 sport={} dport=443 [UNREPLIED] src=10.9.0.1 dst=10.2.0.{} sport=443 dport={} mark=0 use=1",
            i % 250, 2000 + i, i % 250, 2000 + i
        )));
    }
    for i in 0..k {
        v.push(entry(&format!(
            "tcp 6 3000 ESTABLISHED src=10.3.0.{} dst=10.9.0.1 sport={} dport=443 src=10.9.0.1 dst=10.3.0.{} sport=443 dport={} [ASSURED] mark=0 use=1",
            i % 250, 3000 + i, i % 250, 3000 + i
        )));
    }
    v
}

fn listing(ns: &Netns) -> String {
    let o = ns.exec("conntrack", &["-L"]).expect("conntrack -L");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn evict(ns: &Netns, args: &[&str]) -> (serde_json::Value, std::process::Output) {
    let mut all = vec!["--netns", ns.name(), "--json", "evict"];
    all.extend_from_slice(args);
    let o = run(&all);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    (json(&o), o)
}

#[test]
fn deletes_exactly_the_unreplied_and_keeps_assured() {
    ctlab::require_root!();
    let ns = Netns::create("evict").expect("netns");
    ns.insert(&mix(300, 100, 200)).expect("insert");

    // Without --yes: a dry run that counts and deletes nothing.
    let (dry, _) = evict(&ns, &["--filter", "flags=unreplied"]);
    let n = &dry["namespaces"][0];
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        (n["before"].as_u64(), n["selected"].as_u64()),
        (Some(600), Some(400))
    );
    assert_eq!(
        (n["deleted"].as_u64(), n["after"].as_u64()),
        (Some(0), Some(600))
    );
    assert_eq!(n["breakdown"]["l4"]["udp"], 300);
    assert_eq!(listing(&ns).lines().count(), 600);

    // ASSURED entries are protected when the filter does not name them.
    let (tcp, _) = evict(
        &ns,
        &[
            "--filter",
            "l4=tcp",
            "--filter",
            "dport=443",
            "--dry-run",
            "--yes",
        ],
    );
    let t = &tcp["namespaces"][0];
    assert_eq!(
        (t["matched"].as_u64(), t["protected_assured"].as_u64()),
        (Some(300), Some(200))
    );
    assert_eq!(t["selected"], 100);

    let (done, _) = evict(&ns, &["--filter", "flags=unreplied", "--yes"]);
    let d = &done["namespaces"][0];
    assert_eq!(done["dry_run"], false);
    assert_eq!(
        (
            d["deleted"].as_u64(),
            d["gone"].as_u64(),
            d["failed"].as_u64()
        ),
        (Some(400), Some(0), Some(0))
    );
    assert_eq!(
        (d["before"].as_u64(), d["after"].as_u64()),
        (Some(600), Some(200))
    );
    let left = listing(&ns);
    assert_eq!(left.lines().count(), 200);
    assert!(
        left.lines()
            .all(|l| l.contains("[ASSURED]") && !l.contains("UNREPLIED")),
        "{left}"
    );
}

#[test]
fn limit_and_rate() {
    ctlab::require_root!();
    let ns = Netns::create("evictlim").expect("netns");
    ns.insert(&mix(300, 0, 0)).expect("insert");
    let t = std::time::Instant::now();
    let (r, _) = evict(
        &ns,
        &[
            "--filter", "l4=udp", "--yes", "--limit", "100", "--rate", "1000/s",
        ],
    );
    let n = &r["namespaces"][0];
    assert_eq!(
        (n["deleted"].as_u64(), n["over_limit"].as_u64()),
        (Some(100), Some(200))
    );
    assert!(
        t.elapsed().as_secs_f64() >= 0.09,
        "100 at 1000/s took {:?}",
        t.elapsed()
    );
    assert_eq!(listing(&ns).lines().count(), 200);
}

/// kube-proxy's stale-service cleanup: UDP entries to the service VIP whose
/// reply (DNAT'ed) source is no longer an endpoint.
#[test]
fn kube_proxy_stale_udp_recipe() {
    ctlab::require_root!();
    let ns = Netns::create("evictkp").expect("netns");
    let dnat = |i: u32, backend: &str, vip: &str, assured: bool| {
        entry(&format!(
            "udp 17 100 src=10.244.0.{i} dst={vip} sport={p} dport=53 src={backend} dst=10.244.0.{i} sport=53 dport={p} {} mark=0 use=1",
            if assured { "[ASSURED]" } else { "" },
            p = 4000 + i
        ))
    };
    let mut v = Vec::new();
    for i in 1..=5 {
        v.push(dnat(i, "10.244.1.5", "10.96.0.10", false)); // live endpoint
    }
    for i in 11..=17 {
        v.push(dnat(i, "10.244.9.9", "10.96.0.10", i % 3 == 0)); // stale
    }
    for i in 21..=23 {
        v.push(dnat(i, "10.244.9.9", "10.96.0.11", false)); // another service
    }
    ns.insert(&v).expect("insert");
    let (r, _) = evict(
        &ns,
        &[
            "--filter",
            "l4=udp",
            "--filter",
            "dst=10.96.0.10",
            "--filter",
            "dport=53",
            "--filter",
            "reply-src!=10.244.1.5,10.244.2.7",
            "--include-assured",
            "--yes",
        ],
    );
    let n = &r["namespaces"][0];
    assert_eq!(
        (n["deleted"].as_u64(), n["failed"].as_u64()),
        (Some(7), Some(0))
    );
    let left = listing(&ns);
    assert_eq!(left.lines().count(), 8, "{left}");
    assert!(
        !left
            .lines()
            .any(|l| l.contains("dst=10.96.0.10") && l.contains("src=10.244.9.9"))
    );
}

/// UDP UNREPLIED entries from 10.5.`net`.x with `remaining` seconds left.
fn udp_left(net: u32, n: u32, remaining: u32) -> Vec<Entry> {
    (0..n)
        .map(|i| {
            entry(&format!(
                "udp 17 {remaining} src=10.5.{net}.{i} dst=10.9.0.1 sport={} dport=53 [UNREPLIED] src=10.9.0.1 dst=10.5.{net}.{i} sport=53 dport={} mark=0 use=1",
                4000 + i, 4000 + i
            ))
        })
        .collect()
}

#[test]
fn idle_is_the_namespace_configured_timeout_minus_the_remaining() {
    ctlab::require_root!();
    let ns = Netns::create("evidle").expect("netns");
    // This namespace's UDP timeout is 60 s (the kernel's default, 30, would
    // make every entry below idle 30: nothing would match).
    ns.sysctl("net.netfilter.nf_conntrack_udp_timeout", "60")
        .expect("sysctl");
    // 20 idle ~50 s (10 s left), 30 idle ~5 s (55 s left).
    ns.insert(&udp_left(1, 20, 10)).expect("insert");
    ns.insert(&udp_left(2, 30, 55)).expect("insert");

    let (dry, _) = evict(&ns, &["--filter", "l4=udp", "--filter", "idle<20s"]);
    assert_eq!(dry["namespaces"][0]["selected"], 30, "{dry}");
    let (top, _) = {
        let o = run(&["--netns", ns.name(), "--json", "top", "--filter", "idle>30"]);
        assert!(o.status.success(), "{}", stderr(&o));
        (json(&o), o)
    };
    assert_eq!(top["entries"], 20, "{top}");

    let (done, _) = evict(&ns, &["--filter", "idle>30", "--yes"]);
    let n = &done["namespaces"][0];
    assert_eq!(
        (n["deleted"].as_u64(), n["after"].as_u64()),
        (Some(20), Some(30)),
        "{done}"
    );
    let left = listing(&ns);
    assert_eq!(left.lines().count(), 30);
    assert!(!left.contains("src=10.5.1."), "{left}");
}

#[test]
fn bad_input_is_usage() {
    for args in [
        &["evict", "--filter", "colour=red"][..],
        &["evict", "--filter", "l4=udp", "--rate", "0"],
        &["evict", "--filter", "l4=udp", "--rate", "fast"],
        &["evict", "--filter", "l4=udp", "--limit", "lots"],
        &["evict", "--filter", "timeout<soon"],
        &["evict", "--filter", "idle>soon"],
        &["top", "--file", "/dev/null", "--filter", "idle>5"],
        &["evict"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty(), "{args:?}");
    }
}

/// Deleting overlaps the dump (a second socket deletes the batches already
/// dumped): on a table large enough for many dump pages and delete batches,
/// nothing is skipped or repeated. Every match is deleted exactly once (no
/// ENOENT from a repeat), the count falls by exactly what was deleted, and
/// every non-matching entry is still there; both with the kernel's protocol
/// filter (per family) and with the plain dump of both families.
#[test]
fn deleting_while_dumping_skips_and_repeats_nothing() {
    ctlab::require_root!();
    let ns = Netns::create("evictovl").expect("netns");
    let kept = ctlab::fill(10_000, true); // TCP ESTABLISHED ASSURED
    ns.insert(&kept).expect("insert");
    let udp = mix(20_000, 0, 0); // UDP UNREPLIED
    for filter in ["l4=udp", "flags=unreplied"] {
        ns.insert(&udp).expect("insert");
        let (r, _) = evict(&ns, &["--filter", filter, "--yes"]);
        let n = &r["namespaces"][0];
        assert_eq!(
            (
                n["before"].as_u64(),
                n["selected"].as_u64(),
                n["deleted"].as_u64(),
                n["gone"].as_u64(),
                n["failed"].as_u64(),
                n["after"].as_u64(),
            ),
            (
                Some(30_000),
                Some(20_000),
                Some(20_000),
                Some(0),
                Some(0),
                Some(10_000)
            ),
            "{filter}: {r}"
        );
        assert_eq!(n["dump_interrupted"], false);
        let left = listing(&ns);
        assert_eq!(left.lines().count(), 10_000, "{filter}");
        assert!(
            left.lines()
                .all(|l| l.starts_with("tcp") && l.contains("[ASSURED]")),
            "{filter}"
        );
    }
    // --limit across delete batches: exactly N go, in dump order.
    ns.insert(&udp).expect("insert");
    let (r, _) = evict(&ns, &["--filter", "l4=udp", "--yes", "--limit", "1500"]);
    let n = &r["namespaces"][0];
    assert_eq!(
        (
            n["deleted"].as_u64(),
            n["over_limit"].as_u64(),
            n["after"].as_u64()
        ),
        (Some(1_500), Some(18_500), Some(28_500)),
        "{r}"
    );
}

/// A FIFO and a plain file in /run/netns (`ip netns add`/`del` churn, or
/// a hostile user) neither hang a command nor stop `--all-netns`: each is
/// reported as not a namespace, the real namespaces are still processed,
/// and the exit code says something failed.
#[test]
fn stray_run_netns_entries_neither_hang_nor_stop_all_netns() {
    ctlab::require_root!();
    let limit = std::time::Duration::from_secs(30);
    let ns = Netns::create("evstray").expect("netns");
    // TEST-NET-2 sources and a port of their own: nothing of another
    // test's namespaces matches.
    let mine: Vec<Entry> = (0..50)
        .map(|i| {
            entry(&format!(
                "udp 17 100 src=198.51.100.{i} dst=10.9.0.1 sport=4{i:03} dport=7391 [UNREPLIED] src=10.9.0.1 dst=198.51.100.{i} sport=7391 dport=4{i:03} mark=0 use=1"
            ))
        })
        .collect();
    ns.insert(&mine).expect("insert");
    let fifo = StrayNetnsEntry::fifo("fifo");
    let file = StrayNetnsEntry::file("file");

    let o = run_within(
        &[
            "--json",
            "evict",
            "--all-netns",
            "--filter",
            "src=198.51.100.0/24",
            "--filter",
            "dport=7391",
            "--yes",
        ],
        limit,
    )
    .expect("evict --all-netns hung on a FIFO in /run/netns");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json(&o);
    let by_name = |n: &str| {
        v["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .find(|x| x["netns"] == n)
            .unwrap_or_else(|| panic!("{n} not in {v}"))
            .clone()
    };
    for (stray, what) in [(&fifo, "(a FIFO)"), (&file, "")] {
        let e = by_name(stray.name());
        let err = e["error"].as_str().unwrap_or_default();
        assert!(
            err.contains("is not a network namespace") && err.contains(what),
            "{e}"
        );
        assert_eq!(e["deleted"], 0);
    }
    let good = by_name(ns.name());
    assert_eq!(good["error"], serde_json::Value::Null, "{good}");
    assert_eq!(
        (good["selected"].as_u64(), good["deleted"].as_u64()),
        (Some(50), Some(50))
    );
    assert_eq!(listing(&ns).lines().count(), 0);
    assert!(v["netns_errors"].as_u64() >= Some(2), "{v}");

    // Text output names the bad entry and goes on.
    let o = run_within(
        &[
            "evict",
            "--all-netns",
            "--filter",
            "src=198.51.100.0/24",
            "--filter",
            "dport=7391",
        ],
        limit,
    )
    .expect("evict --all-netns (text) hung");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("== netns {} ==\nerror: ", fifo.name()))
            && out.contains(&format!("== netns {} ==\n0 entries", ns.name())),
        "{out}"
    );

    // --netns naming the FIFO fails at once, with the reason.
    let o = run_within(&["--netns", fifo.name(), "plan"], limit).expect("--netns FIFO plan hung");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is not a network namespace (a FIFO)"),
        "{}",
        stderr(&o)
    );

    // check --all-netns reads on past both.
    let o = run_within(&["--json", "check", "--all-netns"], limit)
        .expect("check --all-netns hung on a FIFO in /run/netns");
    let _ = json(&o);

    // An empty --netns is bad usage, not a lookup of /run/netns/.
    let o = run(&["--netns", "", "evict", "--filter", "l4=udp"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--netns needs a value"),
        "{}",
        stderr(&o)
    );
}
