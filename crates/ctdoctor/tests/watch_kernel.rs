//! `ctdoctor watch --json-lines` against a real table: a namespace the test
//! owns, loopback tracked through an nft `ct state` rule, and UDP flows
//! created at a known constant rate from two known sources (one dominant,
//! one minor), each datagram from a fresh source port so each is a new
//! conntrack entry. watch must report new/s within 10% of what was sent
//! and name the dominant source first. Also: usage errors exit 2, a
//! non-terminal stdout without --json-lines is refused, and with
//! nf_conntrack_events=0 the event fields are null with a hint.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{BIN, run, text};
use ctlab::Netns;
use ctlab::traffic::Pacer;
use serde_json::Value;

const DOMINANT: &str = "127.0.0.2";
const MINOR: &str = "127.0.0.3";
const DOMINANT_RATE: f64 = 400.0;
const MINOR_RATE: f64 = 50.0;
/// The port the flows go to: a socket is bound there (and never answers),
/// so no ICMP port-unreachable comes back.
const SINK: &str = "127.0.0.1:5353";

/// Paced UDP flows from `src` until `stop`; returns (sent, seconds).
/// Source ports count up from 10000, so no flow reuses a live tuple.
fn flows(src: &str, rate: f64, stop: &AtomicBool) -> (u64, f64) {
    let mut pacer = Pacer::with_rate(rate).expect("rate");
    let t0 = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..pacer.due(t0.elapsed()) {
            let port = 10_000 + (sent % 50_000) as u16;
            let s = UdpSocket::bind((src, port)).expect("bind source");
            s.send_to(b"x", SINK).expect("send");
            sent += 1;
        }
        std::thread::sleep(pacer.wait(t0.elapsed()).min(Duration::from_millis(20)));
    }
    (sent, t0.elapsed().as_secs_f64())
}

/// `ctdoctor --netns NS watch --json-lines ARGS...` started with piped output.
fn spawn_watch(ns: &Netns, args: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .args(["--netns", ns.name(), "watch", "--json-lines"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch")
}

fn lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line ({e}): {l}")))
        .collect()
}

#[test]
fn json_lines_report_the_generated_rate_and_the_dominant_source() {
    ctlab::require_root!();
    let ns = Netns::create("watch").expect("netns");
    ns.track_loopback().expect("nft");
    let stop = AtomicBool::new(false);
    let intervals = 8;
    let (out, dominant, minor) = std::thread::scope(|s| {
        let gen_in_ns = |src: &'static str, rate: f64| {
            let (ns, stop) = (&ns, &stop);
            s.spawn(move || ns.run(|| flows(src, rate, stop)).expect("generator"))
        };
        let sink = ns
            .run(|| UdpSocket::bind(SINK).expect("bind sink"))
            .expect("sink");
        let d = gen_in_ns(DOMINANT, DOMINANT_RATE);
        let m = gen_in_ns(MINOR, MINOR_RATE);
        let out = spawn_watch(
            &ns,
            &[
                "--interval",
                "1s",
                "--count",
                &intervals.to_string(),
                "-n",
                "5",
            ],
        )
        .wait_with_output()
        .expect("run watch");
        stop.store(true, Ordering::Relaxed);
        drop(sink);
        (out, d.join().expect("dominant"), m.join().expect("minor"))
    });
    assert!(out.status.success(), "{}", text(&out));
    let snaps = lines(&out.stdout);
    assert_eq!(snaps.len(), intervals, "{}", text(&out));
    // What was generated, measured by the generators themselves.
    let generated = dominant.0 as f64 / dominant.1 + minor.0 as f64 / minor.1;
    assert!(
        (generated - (DOMINANT_RATE + MINOR_RATE)).abs() < 0.05 * (DOMINANT_RATE + MINOR_RATE),
        "the generators fell behind: {generated:.1}/s ({dominant:?}, {minor:?})"
    );
    // The first interval may hold events queued during the start-up dump.
    let steady = &snaps[1..];
    let (mut new, mut seconds) = (0.0, 0.0);
    for s in steady {
        let dt = s["interval_s"].as_f64().expect("interval_s");
        new += s["new_per_s"].as_f64().expect("new_per_s") * dt;
        seconds += dt;
        assert_eq!(s["top_src"][0]["key"], DOMINANT, "{s}");
        let share = s["top_src"][0]["share"].as_f64().expect("share");
        // 400 of 450 per second: 0.89.
        assert!((0.8..0.95).contains(&share), "dominant share {share}: {s}");
        assert_eq!(s["top_src"][1]["key"], MINOR, "{s}");
        assert_eq!(s["top_dport"][0]["key"], "udp/5353", "{s}");
        assert!(
            s["states"]["udp/UNREPLIED"].as_u64().unwrap_or(0) > 0,
            "{s}"
        );
        assert_eq!(s["events"]["lost"], 0, "{s}");
        assert_eq!(s["events"]["enabled"], true, "{s}");
    }
    let measured = new / seconds;
    eprintln!(
        "watch: {measured:.1} new/s over {seconds:.2} s; generated {generated:.1}/s; {}",
        snaps[intervals - 1]
    );
    assert!(
        (measured - generated).abs() < 0.10 * generated,
        "watch saw {measured:.1} new/s, the generators made {generated:.1}/s"
    );
    // Nothing expires (udp timeout 30 s): the count grows by what was created.
    let (first, last) = (&snaps[0], &snaps[intervals - 1]);
    let grown = last["count"].as_f64().expect("count") - first["count"].as_f64().expect("count");
    assert!(
        (grown - new).abs() < 0.10 * new,
        "count grew {grown}, watch counted {new} new"
    );
    let (count, live) = (last["count"].as_i64(), last["live"].as_i64());
    let (count, live) = (count.expect("count"), live.expect("live"));
    assert!(
        (count - live).abs() <= count / 100 + 10,
        "count {count} live {live}"
    );
    assert!(last["max"].as_u64().expect("max") > 0);
}

#[test]
fn events_off_gives_null_rates_and_says_what_to_enable() {
    ctlab::require_root!();
    let ns = Netns::create("watchoff").expect("netns");
    ns.sysctl("net.netfilter.nf_conntrack_events", "0")
        .expect("sysctl in the test namespace");
    let out = run(&[
        "--netns",
        ns.name(),
        "watch",
        "--json-lines",
        "--interval",
        "200ms",
        "--count",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let snaps = lines(&out.stdout);
    assert_eq!(snaps.len(), 2);
    for s in &snaps {
        assert!(s["new_per_s"].is_null(), "{s}");
        assert_eq!(s["events"]["setting"], 0, "{s}");
        assert_eq!(s["events"]["enabled"], false, "{s}");
        // Count and the stat counters do not need events.
        assert!(s["count"].is_u64(), "{s}");
    }
    assert!(snaps[1]["drop_per_s"].is_f64(), "{}", snaps[1]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sysctl -w net.netfilter.nf_conntrack_events=1"),
        "{err}"
    );
}

#[test]
fn bad_usage_exits_2_with_the_reason() {
    for (args, says) in [
        (vec!["--interval", "0s"], "between 100ms and 1h"),
        (vec!["--interval", "soon"], "--interval"),
        (vec!["--count", "0"], "--count"),
        (vec!["-n", "0"], "--top"),
        (vec!["--filter", "colour=red"], "unknown key"),
        (vec!["--filter", "src=10.0.0.0/99"], "src"),
        (vec!["--bogus"], "--bogus"),
    ] {
        let mut all = vec!["watch", "--json-lines"];
        all.extend(&args);
        let out = run(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn without_a_terminal_the_full_screen_view_is_refused() {
    // `output()` gives the child a pipe for stdout: not a terminal.
    let out = run(&["watch", "--count", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a terminal") && err.contains("--json-lines"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn sigterm_ends_json_lines_cleanly() {
    use std::io::{BufRead, BufReader};
    ctlab::require_root!();
    let ns = Netns::create("watchterm").expect("netns");
    let mut child = spawn_watch(&ns, &["--interval", "200ms"]);
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("first line");
    let v: Value = serde_json::from_str(&first).expect("a JSON line");
    assert!(v["count"].is_u64(), "{v}");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    let status = child.wait().expect("wait");
    // Handled (exit 0), not killed by the signal.
    assert_eq!(status.code(), Some(0), "{status:?}");
    for line in out.lines() {
        let line = line.expect("read");
        serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
}

/// A namespace at the global max: every new flow is dropped, and `watch`
/// shows the drops per second and the table-full kernel log lines that
/// appeared while it ran. The flows keep coming for over 5 s, so at least
/// one line passes net_ratelimit's (global) 10-per-5-s budget even if
/// another test spent it just before.
#[test]
fn a_full_namespace_shows_drops_and_table_full_lines() {
    ctlab::require_root!();
    let ns = Netns::create("watchfull").expect("netns");
    ns.track_loopback().expect("nft");
    let max = common::global_max();
    // ASSURED entries: early_drop cannot evict them, so the table stays full.
    ns.insert(&ctlab::fill(max, true)).expect("fill to max");
    let child = spawn_watch(&ns, &["--interval", "1s", "--count", "9"]);
    let stop = AtomicBool::new(false);
    let out = ns
        .run(|| {
            std::thread::scope(|s| {
                // The sink socket exists so no ICMP error comes back.
                let _sink = UdpSocket::bind(SINK).expect("sink");
                std::thread::sleep(Duration::from_secs(2));
                // Dropped on output: send fails with EPERM, which is the point.
                let traffic = s.spawn(|| {
                    let mut port = 10_000u16;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..20 {
                            port = port.wrapping_add(1).max(10_000);
                            if let Ok(u) = UdpSocket::bind((DOMINANT, port)) {
                                let _ = u.send_to(b"x", SINK);
                            }
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                });
                let out = child.wait_with_output().expect("watch output");
                stop.store(true, Ordering::Relaxed);
                let _ = traffic.join();
                out
            })
        })
        .expect("run in netns");
    assert!(out.status.success(), "{}", text(&out));
    let snaps = lines(&out.stdout);
    assert_eq!(snaps.len(), 9, "{}", text(&out));
    let last = &snaps[8];
    assert_eq!(last["count"].as_u64(), Some(max as u64), "{last}");
    assert!(
        snaps
            .iter()
            .any(|s| s["drop_per_s"].as_f64().is_some_and(|d| d > 100.0)),
        "drops at about the 200/s sent: {}",
        text(&out)
    );
    let lines_seen = last["table_full"]["lines"].as_u64();
    assert!(
        lines_seen.is_some_and(|n| n >= 1),
        "table-full kernel log lines since the start: {last}"
    );
}
