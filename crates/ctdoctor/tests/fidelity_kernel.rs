//! Issue 11 "Fidelity", reduced for CI (seconds, not minutes): the three
//! reference scenarios run for real with `ctdoctor lab SCENARIO
//! --compare-sim` and the model must stay within 5% of the kernel's count
//! at every step after the first second, and within 10% on time to first
//! drop and drop totals. The full versions are `scripts/fidelity`.
//! Run one after the other (not in parallel): the rates must hold.
//! Needs root; lab removes its namespace (checked with `ip netns`).

mod common;

use common::{json, run, text};

/// name, lab arguments (rate, headroom, duration): each fills its headroom
/// within a few seconds.
const QUICK: &[(&str, &[&str])] = &[
    (
        "short, many sources",
        &[
            "short-connections",
            "--rate",
            "2000",
            "--headroom",
            "4000",
            "--duration",
            "4s",
        ],
    ),
    (
        "short, one client (reused ports reopen TIME_WAIT entries)",
        &[
            "short-connections-one-client",
            "--rate",
            "2000",
            "--headroom",
            "20000",
            "--duration",
            "6s",
        ],
    ),
    (
        "SYN flood, non-ASSURED table (early_drop admits)",
        &[
            "syn-flood",
            "--rate",
            "4000",
            "--headroom",
            "4000",
            "--duration",
            "4s",
        ],
    ),
    (
        // Full after 1.5 s, not within the first second (where a
        // rate-limited log line cannot be told from the first drop).
        "SYN flood, ASSURED table (drops)",
        &[
            "syn-flood",
            "--rate",
            "2000",
            "--headroom",
            "3000",
            "--duration",
            "4s",
        ],
    ),
    (
        "idle-connection attack",
        &[
            "idle-attack",
            "--rate",
            "1000",
            "--headroom",
            "2000",
            "--duration",
            "4s",
        ],
    ),
];

#[test]
fn reference_scenarios_reduced() {
    ctlab::require_root!();
    let mut table = Vec::new();
    let mut misses = Vec::new();
    for (name, args) in QUICK {
        // The generator is real time on a small VM: a preempted second
        // (seen once in CI: the kernel filled 130 ms late) is not a model
        // error. A model error repeats, so a miss is run once more and
        // counts only if it misses again; both runs are printed.
        let (line, ok) = attempt(name, args);
        table.push(line.clone());
        if !ok {
            let (again, ok) = attempt(name, args);
            table.push(format!("{again} (second run)"));
            if !ok {
                misses.push(format!("{line}\n{again} (second run)"));
            }
        }
    }
    eprintln!("{}", table.join("\n"));
    assert!(misses.is_empty(), "model misses:\n{}", misses.join("\n"));
}

/// One lab run compared with the model: its summary line and whether the
/// model held (5% on the count at every step, drops within the verdict's
/// bound).
fn attempt(name: &str, args: &[&str]) -> (String, bool) {
    let mut a: Vec<&str> = vec!["lab"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--compare-sim", "--json"]);
    let out = run(&a);
    assert!(out.status.success(), "{name}: lab failed: {}", text(&out));
    let v = json(&out);
    let ns = v["summary"]["namespace"].as_str().expect("namespace");
    assert!(!common::netns_exists(ns), "{name}: lab left {ns} behind");
    let c = &v["compare_sim"]["comparison"];
    assert!(c.is_object(), "{name}: no comparison in {v:#}");
    let f = |k: &str| c[k].as_f64().unwrap_or(f64::NAN);
    let line = format!(
        "{name}: count err max {:.1}% mean {:.1}%, first drop kernel {} model {}, \
         drops kernel {} model {} ({:.1}%)",
        f("max_error_pct"),
        f("mean_error_pct"),
        c["kernel_first_drop_s"],
        c["sim_first_drop_s"],
        c["kernel_drops"],
        c["sim_drops"],
        f("drops_error_pct"),
    );
    // Recomputed here from the steps, not taken from the verdict.
    let worst = c["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            let k = s["kernel"].as_f64().expect("kernel");
            let m = s["sim"].as_f64().expect("sim");
            (m - k).abs() / k.max(1.0) * 100.0
        })
        .fold(0.0f64, f64::max);
    (line, worst <= 5.0 && c["drops_ok"] == true)
}
