//! `ctdoctor lab` end to end on the real kernel: drops reproduced in a
//! throwaway namespace without touching global settings, the JSON contract,
//! cleanup after SIGINT/SIGTERM, refusal without root, clear usage errors.
//! Each run is a few seconds; namespaces are named ctd-lab-<pid>-N.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, global_max, json, run, text};

/// Lab runs of this file one at a time: the kernel's table-full messages
/// share one global rate limit (net_ratelimit: 10 per 5 s), so parallel
/// runs would hide each other's lines.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn short_connections_reaches_drops_and_leaves_nothing() {
    ctlab::require_root!();
    let _serial = serial();
    let max_before = global_max();
    let o = run(&[
        "lab",
        "short-connections",
        "--duration",
        "9s",
        "--rate",
        "1000",
        "--headroom",
        "2000",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    let s = &v["summary"];
    assert!(s["drops"].as_u64().expect("drops") > 0, "{s:#}");
    assert!(s["log_lines"].as_u64().expect("log_lines") > 0, "{s:#}");
    assert_eq!(s["effective_max"], 2000);
    let inode = s["netns_inode"].as_u64().expect("inode");
    let lines = v["kernel"]["log"].as_array().expect("log");
    assert!(
        lines.iter().any(|l| l
            .as_str()
            .is_some_and(|l| l.contains(&format!("table full in netns {inode}")))),
        "{lines:?}"
    );
    // The count never exceeds the effective max, and TIME_WAIT dominates.
    for p in v["series"].as_array().expect("series") {
        assert!(p["entries"].as_u64() <= p["max"].as_u64(), "{p}");
    }
    let last = v["series"].as_array().and_then(|a| a.last()).expect("last");
    assert!(
        last["by_state"]["tcp/TIME_WAIT"].as_u64().expect("tw") > 1500,
        "{last}"
    );
    let name = s["namespace"].as_str().expect("namespace");
    assert!(!common::netns_list().contains(name), "{name} left behind");
    assert_eq!(global_max(), max_before, "global max changed");
}

#[test]
fn json_contract() {
    ctlab::require_root!();
    let _serial = serial();
    let o = run(&[
        "lab",
        "syn-flood",
        "--duration",
        "2s",
        "--step",
        "500ms",
        "--headroom",
        "1000",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    for k in [
        "scenario",
        "namespace",
        "netns_inode",
        "global_max",
        "prefill",
        "effective_max",
        "new_flows",
        "drops",
        "early_drops",
        "insert_failed",
        "peak_entries",
        "time_to_first_drop_s",
        "log_lines",
        "rate_achieved",
    ] {
        assert!(v["summary"].get(k).is_some(), "summary.{k} missing: {v:#}");
    }
    let series = v["series"].as_array().expect("series");
    assert!(series.len() >= 4, "{} points", series.len());
    for p in series {
        for k in [
            "t",
            "entries",
            "max",
            "drops",
            "early_drops",
            "by_state",
            "count",
        ] {
            assert!(p.get(k).is_some(), "point.{k} missing: {p}");
        }
    }
    assert!(v["kernel"]["counters"]["drop"].is_u64());
    assert!(v["traffic"]["started_per_second"].is_array());
    // Spoofed SYNs are never ASSURED: only SYN_SENT entries.
    let last = series.last().expect("last");
    let states = last["by_state"].as_object().expect("by_state");
    assert_eq!(
        states.keys().collect::<Vec<_>>(),
        ["tcp/SYN_SENT"],
        "{last}"
    );
}

fn interrupted_run(signal: nix::sys::signal::Signal, code: i32) {
    let _serial = serial();
    let child = Command::new(BIN)
        .args([
            "lab",
            "short-connections",
            "--duration",
            "60s",
            "--headroom",
            "5000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let prefix = format!("ctd-lab-{}-", child.id());
    let start = Instant::now();
    while !common::netns_list().contains(&prefix) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "namespace never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Into the traffic phase (after the pre-fill).
    std::thread::sleep(Duration::from_secs(3));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, signal).expect("kill");
    let o = child.wait_with_output().expect("wait");
    assert_eq!(o.status.code(), Some(code), "{}", text(&o));
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(
        !common::netns_list().contains(&prefix),
        "namespace left after {signal}"
    );
}

#[test]
fn sigint_removes_the_namespace_and_exits_130() {
    ctlab::require_root!();
    interrupted_run(nix::sys::signal::Signal::SIGINT, 130);
}

#[test]
fn sigterm_removes_the_namespace_and_exits_143() {
    ctlab::require_root!();
    interrupted_run(nix::sys::signal::Signal::SIGTERM, 143);
}

#[test]
fn non_root_is_refused() {
    let o = ctlab::run_unprivileged(BIN, &["lab", "short-connections", "--duration", "1s"])
        .expect("setpriv");
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("needs root"), "{}", text(&o));
}

#[test]
fn bad_input_gives_clear_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["lab", "no-such-scenario"], "unknown scenario"),
        (&["lab", "short-connections", "--rate", "0"], "rate"),
        (&["lab", "short-connections", "--rate", "NaN"], "rate"),
        (
            &["lab", "short-connections", "--duration", "100y"],
            "between",
        ),
        (
            &["lab", "short-connections", "--duration", "soon"],
            "duration",
        ),
        (&["lab", "short-connections", "--headroom", "0"], "headroom"),
        (
            &[
                "lab",
                "short-connections",
                "--duration",
                "1s",
                "--step",
                "5s",
            ],
            "step",
        ),
    ];
    for (args, needle) in cases {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(needle), "{args:?}: {}", text(&o));
        assert!(!text(&o).contains("panicked"), "{args:?}: {}", text(&o));
    }
}

/// One catalogue for lab and simulate (issue 17): a scenario the lab has
/// no traffic generator for is refused by name with exit 2, before any
/// namespace is made (so this needs neither root nor kernel traffic).
#[test]
fn a_scenario_without_a_generator_is_refused() {
    let d = common::TempDir::new("lab-unrunnable");
    d.put(
        "flood.toml",
        "name = \"flood\"\n[table]\nmax = 3000\nbuckets = 1024\n[[class]]\nname = \"c\"\n\
         arrival = { kind = \"constant\", rate = 500 }\nlifecycle = { kind = \"udp-flood\" }\n",
    );
    let file = d.p("flood.toml");
    let cases: &[(&str, &str)] = &[
        (
            "syn-flood-web",
            "2 traffic classes; the lab runs exactly one",
        ),
        (
            "idle-attack-web",
            "2 traffic classes; the lab runs exactly one",
        ),
        ("hash-flood", "traffic classes"),
        (
            file.to_str().expect("utf8"),
            "no real-traffic generator for UdpFlood",
        ),
    ];
    for (name, why) in cases {
        let o = run(&["lab", name, "--duration", "1s"]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {t}");
        assert!(t.contains("lab cannot run scenario"), "{name}: {t}");
        assert!(t.contains(why), "{name}: {t}");
        assert!(
            t.contains("short-connections"),
            "{name}: names what it runs: {t}"
        );
        assert!(!t.contains("panicked"), "{name}: {t}");
    }
}

/// The lab's per-step dump asks the kernel for traffic entries only (mark
/// filter); the pre-fill (marked) never leaves the kernel.
#[test]
fn dump_by_mark_is_filtered_in_the_kernel() {
    ctlab::require_root!();
    let ns = ctlab::Netns::create("lab-mark").expect("netns");
    let mut entries = ctlab::fill(200, true);
    for (i, e) in entries.iter_mut().enumerate() {
        e.mark = Some(if i % 2 == 0 { 0x004c_4142 } else { 0 });
    }
    ns.insert(&entries).expect("insert");
    let (all, unmarked) = ns
        .run(|| {
            let mut ct = ctnetlink::Conntrack::open().expect("open");
            let mut all = 0;
            ct.dump(ctnetlink::Family::Any, |_| all += 1).expect("dump");
            let mut marks = Vec::new();
            ct.dump_marked(ctnetlink::Family::Any, 0, 0x004c_4142, |e| {
                marks.push(e.mark)
            })
            .expect("dump_marked");
            (all, marks)
        })
        .expect("run");
    assert_eq!(all, 200);
    assert_eq!(unmarked.len(), 100);
    assert!(unmarked.iter().all(|m| *m == Some(0)), "{unmarked:?}");
}
