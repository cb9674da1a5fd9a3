//! `ctdoctor lab --compare-sim`: the model's run (ctsim, what `ctdoctor
//! simulate` runs) of the scenario a lab run did, compared with the kernel
//! by `ctcore::fidelity`. [`lab_scenario`] builds the model's scenario from
//! the lab run and this host's buckets and port range (read from
//! /proc/sys); [`compare_lab`] runs it and compares; [`render`] and [`svg`]
//! show both curves.

use std::io::{self, Write};

use ctcore::fidelity::{
    self, COUNT_TOLERANCE_PCT, Comparison, DROP_TOLERANCE_PCT, LabSample, SKIP_BEFORE_S, Sample,
};
use cthost::source::Root;
use serde::Serialize;

fn opt_s(v: Option<f64>) -> String {
    v.map_or_else(|| "never".to_string(), |s| format!("{s:.2} s"))
}

/// Both curves, the error at every step, and the verdict.
pub fn render(c: &Comparison, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{:>7} {:>9} {:>11} {:>8}",
        "t", "kernel", "simulated", "error"
    )?;
    for s in &c.steps {
        let e = s
            .error_pct
            .map_or_else(|| "n/a".to_string(), |e| format!("{e:.1}%"));
        writeln!(
            out,
            "{:>6.1}s {:>9} {:>11.0} {:>8}",
            s.t, s.kernel, s.sim, e
        )?;
    }
    let ok = |b: bool| if b { "ok" } else { "MISS" };
    writeln!(
        out,
        "count error after {SKIP_BEFORE_S} s: max {:.1}%, mean {:.1}% (tolerance {COUNT_TOLERANCE_PCT}%): {}",
        c.max_error_pct,
        c.mean_error_pct,
        ok(c.counts_ok)
    )?;
    writeln!(
        out,
        "time to first drop: kernel {}, simulated {}{}",
        opt_s(c.kernel_first_drop_s),
        opt_s(c.sim_first_drop_s),
        c.first_drop_error_pct
            .map_or_else(String::new, |e| format!(" ({e:.1}% off)"))
    )?;
    writeln!(
        out,
        "drops: kernel {}, simulated {} ({:.1}% off; tolerance {DROP_TOLERANCE_PCT}%): {}",
        c.kernel_drops,
        c.sim_drops,
        c.drops_error_pct,
        ok(c.drops_ok)
    )
}

/// Kernel and simulated entries and drops on one chart.
pub fn svg(
    title: &str,
    kernel: &[Sample],
    sim: &[Sample],
    max: u64,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    use crate::chart::{Line, points};
    use plotters::prelude::{BLACK, BLUE, CYAN, MAGENTA, RED, SeriesLabelPosition};
    let t = |p: &Sample| p.t;
    let t_max = kernel.iter().chain(sim).map(|p| p.t).fold(1.0f64, f64::max);
    let lines = [
        Line::new("entries (kernel)", points(kernel, t, |p| p.entries), BLUE),
        Line::new("entries (simulated)", points(sim, t, |p| p.entries), CYAN),
        Line::new("drops (kernel)", points(kernel, t, |p| p.drops), RED),
        Line::new("drops (simulated)", points(sim, t, |p| p.drops), MAGENTA),
        Line::new("max", vec![(0.0, max as f64), (t_max, max as f64)], BLACK),
    ];
    crate::chart::write_svg(path, 500, |root| {
        crate::chart::panel(
            root,
            Some(title),
            "entries",
            &lines,
            SeriesLabelPosition::UpperLeft,
        )
    })
}
/// What `lab --compare-sim` adds to the report.
#[derive(Debug, Clone, Serialize)]
pub struct SimComparison {
    /// How the model was run: `ctsim::run` on `scenario` with this seed
    /// (save the scenario as TOML to rerun it with `ctdoctor simulate`).
    pub command: String,
    /// The scenario given to the model (what the lab did).
    pub scenario: ctsim::Scenario,
    pub comparison: Comparison,
    /// The model's curve (traffic entries, pre-fill excluded), for plots.
    pub sim: Vec<Sample>,
    pub sim_summary: ctsim::Summary,
    /// How the lab run was translated (read before trusting a miss).
    pub notes: Vec<String>,
}

/// Loopback round trip for the model's lifecycles (sub-millisecond here).
const LOOPBACK_RTT_S: f64 = 0.0001;
/// The lab's pre-fill timeout (lab.rs prefill_entries).
const PREFILL_TIMEOUT_S: f64 = 86_400.0;

/// The model's scenario for what a lab run did: the host's table (global
/// max, buckets), the namespace's timeouts, the lab's pre-fill as ASSURED
/// tcp/ESTABLISHED entries (they count against max and the GC's 95% rule,
/// and sit in the buckets), one class at the achieved constant rate with
/// the generator's lifecycle and source population.
pub fn lab_scenario(
    kind: &ctlab::traffic::Kind,
    summary: &super::Summary,
    buckets: u32,
    port_range: [u16; 2],
) -> (ctsim::Scenario, Vec<String>) {
    use ctlab::traffic::{Kind, Sources};
    let mut notes = Vec::new();
    let rtt_s = LOOPBACK_RTT_S;
    let (lifecycle, sources) = match kind {
        Kind::Short { sources } => (
            ctsim::Lifecycle::ShortHttp {
                rtt_s,
                duration_s: 0.001,
            },
            Some(*sources),
        ),
        Kind::KeepAlive { sources, ping } => (
            ctsim::Lifecycle::Keepalive {
                rtt_s,
                // Held through the end of the run.
                lifetime_s: summary.duration_s * 2.0 + 60.0,
                request_gap_s: ping.as_secs_f64().max(0.001),
            },
            Some(*sources),
        ),
        Kind::Idle { sources } => (ctsim::Lifecycle::Idle { rtt_s }, Some(*sources)),
        Kind::Lived { sources, lifetime } => (
            ctsim::Lifecycle::Keepalive {
                rtt_s,
                lifetime_s: lifetime.as_secs_f64(),
                // Silent: no request refreshes the timeout within the lifetime.
                request_gap_s: lifetime.as_secs_f64() * 2.0 + 1.0,
            },
            Some(*sources),
        ),
        Kind::Udp { sources, unreplied } => (
            ctsim::Lifecycle::Dns {
                rtt_s,
                unreplied: *unreplied,
            },
            Some(*sources),
        ),
        Kind::Icmp => (ctsim::Lifecycle::Icmp { rtt_s }, None),
        Kind::SynFlood => (ctsim::Lifecycle::SynFlood, None),
    };
    let sources = match sources {
        Some(Sources::OneClient) => {
            notes.push(format!(
                "one client address, ephemeral ports {}-{} (the kernel's port walk; reused \
                 ports reopen TIME_WAIT entries)",
                port_range[0], port_range[1]
            ));
            ctsim::Sources {
                clients: 1,
                ports: port_range,
                spoofed: false,
            }
        }
        Some(Sources::Many) => ctsim::Sources::default(),
        None => ctsim::Sources {
            spoofed: true,
            ..ctsim::Sources::default()
        },
    };
    let rate = model_rate(summary);
    let class = ctsim::Class {
        name: summary.scenario.clone(),
        arrival: ctsim::Arrival::Constant { rate },
        lifecycle,
        sources,
        legit: None,
    };
    let mut sc = ctsim::Scenario::single(summary.global_max, buckets, class);
    sc.name = format!("lab {}", summary.scenario);
    // The lab dumps the namespace after every sample (per-state counts):
    // that dump reaps expired entries, so the model must do the same.
    sc.dump_each_step = true;
    for (k, v) in &summary.timeouts {
        // An unknown name is kept as it is: the scenario refuses it by name.
        let name = ctcore::timeouts::Timeout::from_name(k).map_or(k.as_str(), |t| t.short());
        sc.table.timeouts.insert(name.to_string(), f64::from(*v));
    }
    if !summary.kernel.is_empty() && ctcore::version::Version::parse(&summary.kernel).is_ok() {
        sc.table.kernel = summary.kernel.clone();
    }
    if summary.prefill > 0 {
        sc.initial.push(ctsim::Initial {
            state: "tcp/ESTABLISHED".to_string(),
            count: summary.prefill,
            remaining_s: [PREFILL_TIMEOUT_S, PREFILL_TIMEOUT_S],
            assured: true,
        });
        notes.push(format!(
            "the lab's {} pre-filled entries are in the model as ASSURED tcp/ESTABLISHED \
             ({} s left); entries below exclude them",
            summary.prefill, PREFILL_TIMEOUT_S
        ));
    }
    (sc, notes)
}

/// The constant rate the model runs at: what the generator achieved.
fn model_rate(summary: &super::Summary) -> f64 {
    if summary.rate_achieved > 0.0 {
        summary.rate_achieved
    } else {
        summary.rate_target
    }
}
/// The lab run's samples, as the comparison takes them.
fn lab_samples(r: &super::LabReport) -> Vec<LabSample> {
    r.series
        .iter()
        .map(|p| LabSample {
            t: p.t,
            sent: p.sent,
            entries: p.entries,
            drops: p.drops,
        })
        .collect()
}

/// The lab run's kernel curve ([`fidelity::kernel_curve`]): samples while
/// the traffic ran, each at the time its input was sent.
pub fn kernel_curve(r: &super::LabReport) -> Vec<Sample> {
    let end = r.summary.duration_s + r.summary.step_s / 2.0;
    fidelity::kernel_curve(&lab_samples(r), model_rate(&r.summary), end)
}

fn host_buckets(root: &Root) -> anyhow::Result<u64> {
    Ok(root.read_u64("/proc/sys/net/netfilter/nf_conntrack_buckets", "")?)
}

fn port_range(root: &Root) -> [u16; 2] {
    let v: Vec<u16> = root
        .read("/proc/sys/net/ipv4/ip_local_port_range", "")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    match v[..] {
        [lo, hi] if lo <= hi => [lo, hi],
        _ => [32768, 60999],
    }
}

/// Model what the lab run did (`ctsim::run`, seed 1) and compare.
pub fn compare_lab(
    root: &Root,
    kind: &ctlab::traffic::Kind,
    r: &super::LabReport,
) -> anyhow::Result<SimComparison> {
    use anyhow::Context;
    let buckets = u32::try_from(host_buckets(root)?).context("nf_conntrack_buckets beyond u32")?;
    let (scenario, notes) = lab_scenario(kind, &r.summary, buckets, port_range(root));
    let opts = ctsim::RunOptions {
        duration_s: r.summary.duration_s.max(r.summary.step_s),
        step_s: r.summary.step_s,
        seed: 1,
    };
    let timeline = ctsim::run(&scenario, &opts, &mut |_| {}).context("running the model")?;
    let pinned = r.summary.prefill;
    let sim: Vec<Sample> = timeline
        .series
        .iter()
        .map(|p| Sample {
            t: p.t,
            entries: p.entries.saturating_sub(pinned),
            drops: p.drops,
        })
        .collect();
    let kernel = kernel_curve(r);
    let mut comparison = fidelity::compare(&kernel, &sim)?;
    // The model knows its first drop exactly; its samples do not.
    comparison.set_sim_first_drop(
        timeline
            .summary
            .time_to_first_drop_s
            .filter(|t| kernel.last().is_some_and(|k| *t <= k.t)),
    );
    if let Some(t) = r
        .summary
        .time_to_first_log_s
        .map(|t| fidelity::input_time(&lab_samples(r), model_rate(&r.summary), t))
        .filter(|t| fidelity::log_time_fits(&kernel, *t))
    {
        comparison.set_kernel_first_drop(t);
    }
    Ok(SimComparison {
        command: format!(
            "ctsim::run(scenario, duration {:.1} s, step {} s, seed 1)",
            opts.duration_s, opts.step_s
        ),
        scenario,
        comparison,
        sim,
        sim_summary: timeline.summary,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: f64, entries: u64, drops: u64) -> Sample {
        Sample { t, entries, drops }
    }

    #[test]
    fn render_and_svg_show_both_runs() {
        let k = vec![s(1.0, 800, 0), s(2.0, 1600, 0), s(3.0, 2000, 400)];
        let m = vec![s(1.0, 800, 0), s(2.0, 1700, 0), s(3.0, 2000, 380)];
        let c = fidelity::compare(&k, &m).expect("comparable");
        let mut out = Vec::new();
        render(&c, &mut out).expect("render");
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.contains("   2.0s      1600        1700     6.2%"),
            "{text}"
        );
        assert!(
            text.contains("max 6.2%, mean 2.1% (tolerance 5%): MISS"),
            "{text}"
        );
        assert!(text.contains("drops: kernel 400, simulated 380 (5.0% off; tolerance 10%): ok"));
        let dir = std::env::temp_dir().join(format!("ctdoctor-fidelity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("both.svg");
        svg("kernel vs model", &k, &m, 2000, &path).expect("svg");
        let body = std::fs::read_to_string(&path).expect("read svg");
        let _ = std::fs::remove_dir_all(&dir);
        for label in [
            "entries (kernel)",
            "entries (simulated)",
            "drops (kernel)",
            "kernel vs model",
        ] {
            assert!(body.contains(label), "{label} missing");
        }
    }

    #[test]
    fn the_lab_run_becomes_a_scenario() {
        let mut sum = crate::commands::lab::Summary {
            scenario: "short-connections-one-client".into(),
            kernel: "6.18.44-fc-v657".into(),
            rate_achieved: 799.5,
            prefill: 242_144,
            global_max: 262_144,
            ..Default::default()
        };
        sum.timeouts
            .insert("nf_conntrack_tcp_timeout_time_wait".into(), 600);
        let one = ctlab::traffic::Kind::Short {
            sources: ctlab::traffic::Sources::OneClient,
        };
        let (sc, notes) = lab_scenario(&one, &sum, 262_144, [32768, 60999]);
        assert_eq!(sc.table.max, 262_144);
        assert_eq!(sc.table.buckets, 262_144);
        assert_eq!(sc.table.kernel, "6.18.44-fc-v657");
        assert_eq!(sc.table.timeouts.get("tcp_timeout_time_wait"), Some(&600.0));
        assert_eq!(sc.initial.len(), 1);
        assert_eq!(sc.initial[0].count, 242_144);
        assert!(sc.initial[0].assured);
        assert_eq!(sc.classes[0].sources.clients, 1);
        assert_eq!(
            sc.classes[0].arrival,
            ctsim::Arrival::Constant { rate: 799.5 }
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
        let (sc, notes) = lab_scenario(
            &ctlab::traffic::Kind::SynFlood,
            &crate::commands::lab::Summary::default(),
            1024,
            [32768, 60999],
        );
        assert!(sc.classes[0].sources.spoofed);
        assert_eq!(sc.classes[0].lifecycle, ctsim::Lifecycle::SynFlood);
        assert!(sc.initial.is_empty() && notes.is_empty());
        assert_eq!(
            sc.table.kernel, "6.18",
            "the model's default without a kernel"
        );
    }
}
