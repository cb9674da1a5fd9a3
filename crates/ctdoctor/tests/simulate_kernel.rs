//! Issue 10 "Validation against the real kernel": the runbook's load test
//! run for real (`ctdoctor lab`: short TCP connections on loopback at a
//! fixed rate, TIME_WAIT raised to 600 s in a throwaway namespace whose
//! table is pre-filled over ctnetlink so only a headroom is left; the global
//! max is never changed) and `ctdoctor simulate` with the same parameters.
//! The model must predict the time to first drop within 10% and the count
//! at every step after the first second within 5%.
//! Needs root; the namespace is removed by lab (checked with `ip netns`).

mod common;

use common::{json, run, text};
use serde_json::Value;

/// (t, entries, cumulative drops) of a `series`, entries minus `pinned`.
fn curve(v: &Value, pinned: u64) -> Vec<(f64, u64, u64)> {
    v["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|p| {
            (
                p["t"].as_f64().expect("t"),
                p["entries"]
                    .as_u64()
                    .expect("entries")
                    .saturating_sub(pinned),
                p["drops"].as_u64().expect("drops"),
            )
        })
        .collect()
}

/// The simulated value at `t`, linear between its samples.
fn at(c: &[(f64, u64, u64)], t: f64, f: fn(&(f64, u64, u64)) -> u64) -> f64 {
    let i = c.partition_point(|p| p.0 <= t);
    if i == 0 {
        return f(&c[0]) as f64;
    }
    if i == c.len() {
        return f(&c[i - 1]) as f64;
    }
    let (a, b) = (&c[i - 1], &c[i]);
    let w = (t - a.0) / (b.0 - a.0);
    f(a) as f64 * (1.0 - w) + f(b) as f64 * w
}

#[test]
fn simulate_predicts_the_short_connection_load_test() {
    ctlab::require_root!();
    // 800 connections/s from distinct sources into a 16,000-entry headroom:
    // full at 20 s, then 10 s of drops. TIME_WAIT 600 s is lab's setting
    // for this scenario (in the namespace only).
    let (rate, headroom, duration) = ("800", 16_000u64, "30s");
    let lab = run(&[
        "lab",
        "short-connections",
        "--duration",
        duration,
        "--rate",
        rate,
        "--headroom",
        &headroom.to_string(),
        "--json",
    ]);
    assert!(lab.status.success(), "lab failed: {}", text(&lab));
    let lab = json(&lab);
    let ns = lab["summary"]["namespace"].as_str().expect("namespace");
    assert!(!common::netns_exists(ns), "lab left {ns} behind");
    assert_eq!(lab["summary"]["effective_max"], headroom);
    let kernel = curve(&lab, 0);

    // The same parameters: the lab paces a constant rate from distinct
    // sources (simulate's `--rate` alone means Poisson, whose first second
    // alone varies by +-3.5% at 800/s), so the scenario says `constant`.
    let dir = common::TempDir::new("simulate-kernel");
    dir.put(
        "lab.toml",
        &format!(
            "name = \"lab short-connections\"\n\
             [table]\nmax = {headroom}\nbuckets = {}\nkernel = \"6.18\"\n\
             timeouts = {{ tcp_timeout_time_wait = 600 }}\n\
             [[class]]\nname = \"short\"\n\
             arrival = {{ kind = \"constant\", rate = {rate} }}\n\
             lifecycle = {{ kind = \"short-http\", rtt_s = 0.0001, duration_s = 0.001 }}\n\
             sources = {{ clients = 0 }}\n",
            common::read_u64("/proc/sys/net/netfilter/nf_conntrack_buckets")
        ),
    );
    let scenario = dir.p("lab.toml");
    // As long as the kernel's traffic really ran (lab keeps it running
    // through its last sample).
    let ran_ms = (lab["summary"]["duration_s"].as_f64().expect("duration_s") * 1000.0).ceil();
    let sim = run(&[
        "simulate",
        "--scenario",
        scenario.to_str().expect("utf8 path"),
        "--duration",
        &format!("{ran_ms}ms"),
        "--step",
        "1s",
        "--seed",
        "1",
        "--json",
    ]);
    assert!(sim.status.success(), "simulate failed: {}", text(&sim));
    let sim = json(&sim);
    let model = curve(&sim, 0);

    // The count at every kernel sample after the first second.
    let mut worst = (0.0f64, 0.0f64);
    for &(t, k, _) in kernel.iter().filter(|p| p.0 >= 1.0) {
        let s = at(&model, t, |p| p.1);
        let err = (s - k as f64).abs() / (k as f64).max(1.0) * 100.0;
        if err > worst.0 {
            worst = (err, t);
        }
    }
    assert!(
        worst.0 <= 5.0,
        "count off by {:.1}% at {:.1} s\nkernel {kernel:?}\nmodel {model:?}",
        worst.0,
        worst.1
    );

    // Time to first drop: the kernel's first table-full log line (a
    // sub-second kernel timestamp) when it falls inside the first sampling
    // step with drops (net_ratelimit is global: another namespace's lines can
    // delay ours), else the end of that step.
    let i = kernel
        .iter()
        .position(|p| p.2 > 0)
        .expect("the kernel dropped");
    let (lo, hi) = (if i == 0 { 0.0 } else { kernel[i - 1].0 }, kernel[i].0);
    let k_first = lab["summary"]["time_to_first_log_s"]
        .as_f64()
        .filter(|t| *t > lo && *t <= hi)
        .unwrap_or(hi);
    let s_first = sim["summary"]["time_to_first_drop_s"]
        .as_f64()
        .expect("the model dropped");
    let err = (s_first - k_first).abs() / k_first * 100.0;
    assert!(
        err <= 10.0,
        "first drop: kernel {k_first:.2} s, model {s_first:.2} s ({err:.1}%)"
    );
    // Sanity of the experiment itself: Little's law says max / rate = 20 s.
    // (Samples can be a second apart on a busy machine, and the log line
    // can be rate-limited by other namespaces: 10%.)
    assert!((k_first - 20.0).abs() <= 2.0, "kernel first drop {k_first}");

    // Drop totals over the span both runs cover.
    let t_end = kernel
        .last()
        .expect("samples")
        .0
        .min(model.last().expect("samples").0);
    let k_drops = at(&kernel, t_end, |p| p.2);
    let s_drops = at(&model, t_end, |p| p.2);
    let err = (s_drops - k_drops).abs() / k_drops.max(1.0) * 100.0;
    assert!(
        err <= 10.0,
        "drops: kernel {k_drops}, model {s_drops:.0} ({err:.1}%)"
    );
}
