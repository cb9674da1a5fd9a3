//! `ctdoctor lab`: reproduce conntrack table exhaustion safely with real
//! traffic in a throwaway network namespace (the runbook's load test),
//! sampling the kernel's own count, states, counters and log lines.
//! The namespace is deleted at the end, also on Ctrl-C, SIGTERM or error.
//!
//! This module owns the arguments, the run (namespace, pre-fill, traffic,
//! sample loop) and the report types; [`scenario`] resolves the catalogue,
//! [`guard`] protects the system, [`sample`] reads the kernel, [`log`] its
//! log, [`render`] prints and plots.

mod fidelity;
mod guard;
mod log;
mod render;
mod sample;
mod scenario;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use ctcore::counters::Counters;
use ctcore::duration;
use ctcore::lab::{count_sent, counter_map};
use cthost::Host;
use ctlab::Netns;
use ctlab::traffic::{self, Limits};
use serde::Serialize;

use guard::{LoweredMax, SignalHooks};
use log::KernelLog;
use render::{render, svg};
use sample::{counters, prefill_entries, sample};
use scenario::{Scenario, resolve};

/// Exit codes of `ctdoctor lab` (also in `--help`).
pub const EXIT_OK: u8 = 0;
pub const EXIT_USAGE: u8 = 2;
/// Not root: namespaces need CAP_SYS_ADMIN, ctnetlink CAP_NET_ADMIN, raw
/// sockets CAP_NET_RAW.
pub const EXIT_NOT_ROOT: u8 = 4;
/// Interrupted: 128 + the signal (130 SIGINT, 143 SIGTERM), namespace removed.
pub const EXIT_SIGNAL_BASE: u8 = 128;

/// Where `ip netns` names its namespaces (the lab's inode is read there).
const NETNS_DIR: &str = "/run/netns";
/// The running kernel's release, for the report.
const OSRELEASE: &str = "/proc/sys/kernel/osrelease";

#[derive(Debug, Args)]
#[command(
    after_help = "Scenarios (scenarios/*.toml, the files `simulate --scenario` runs too): \
short-connections (many sources, TIME_WAIT 600 s), short-connections-one-client, syn-flood, \
idle-attack, keepalive, udp-query, icmp-echo, nginx-short-upstream; or a FILE.toml with one \
traffic class. Scenarios without a traffic generator (several classes, udp-flood, hash-flood) \
are refused (exit 2).\n\n\
Examples:\n  ctdoctor lab short-connections\n  ctdoctor lab short-connections --duration 30s --rate 2000 --json\n  \
ctdoctor lab syn-flood --headroom 5000 --svg flood.svg\n\n\
The global nf_conntrack_max is never changed: the lab fills its own namespace \
over ctnetlink with long-lived ASSURED entries so that only --headroom entries \
are left for the traffic (each namespace's count is compared with the global max).\n\n\
Exit codes: 0 run completed, 1 failure, 2 bad usage, 4 not root, \
130/143 interrupted by SIGINT/SIGTERM (the namespace is removed)."
)]
pub struct LabArgs {
    /// Scenario name or FILE.toml (see below).
    pub scenario: String,
    /// How long to run the traffic.
    #[arg(long, value_parser = duration::flag(Duration::from_millis(100), duration::DAY))]
    pub duration: Option<Duration>,
    /// New flows per second (default: the scenario's).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Sampling interval.
    #[arg(long, default_value = "1s",
          value_parser = duration::flag(Duration::from_millis(100), duration::DAY))]
    pub step: Duration,
    /// Entries left free for the traffic (the effective max); the rest of
    /// the global max is pre-filled. Default: the scenario's.
    #[arg(long)]
    pub headroom: Option<u64>,
    /// Stop starting flows after this many.
    #[arg(long)]
    pub max_flows: Option<u64>,
    /// Plot the entry count, the effective max and drops to an SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
    /// Keep the namespace at the end and print its name (delete it with
    /// `ip netns del NAME`).
    #[arg(long)]
    pub keep: bool,
    /// Lower the GLOBAL nf_conntrack_max to N for this run only (journaled
    /// like `apply`, restored at the end, on Ctrl-C/SIGTERM and on error;
    /// after a SIGKILL `ctdoctor rollback` restores it). Refused when the
    /// host's own namespace holds more than N x 0.5 entries. Without
    /// --headroom the whole of N is left to the traffic (no pre-fill).
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
    /// Also run the model (ctsim, what `ctdoctor simulate` runs) on what
    /// this run did (table, timeouts, pre-fill, rate, lifecycle, sources)
    /// and show both curves, the count error at every step, first drop and
    /// drop totals (see fidelity).
    #[arg(long)]
    pub compare_sim: bool,
}

pub use ctcore::lab::{Point, Summary};

/// The kernel's own counters (sum over CPUs of IPCTNL_MSG_CT_GET_STATS_CPU,
/// minus the values before the traffic) and its table-full lines.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KernelView {
    pub counters: BTreeMap<&'static str, u64>,
    /// Table-full lines for this namespace's inode, as logged (first 20).
    pub log: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LabReport {
    pub summary: Summary,
    pub series: Vec<Point>,
    pub kernel: KernelView,
    pub traffic: traffic::Report,
    /// With `--compare-sim`: the model's run of the same scenario.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare_sim: Option<fidelity::SimComparison>,
}

/// Outcome of `lab::run`: an exit code; the report when the run happened.
pub fn run(
    args: &LabArgs,
    json: bool,
    netns: Option<&str>,
    host: &Host,
    out: &mut dyn Write,
) -> Result<u8> {
    if netns.is_some() {
        eprintln!("ctdoctor: lab makes its own namespace; --netns does not apply to it");
        return Ok(EXIT_USAGE);
    }
    if !host.has_kernel() {
        eprintln!("ctdoctor: lab loads the real kernel's table; --root does not apply to it");
        return Ok(EXIT_USAGE);
    }
    let sc = match resolve(host, &args.scenario) {
        Ok(sc) => sc,
        Err(e) => {
            eprintln!("ctdoctor: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    let limits = Limits {
        rate: args.rate.unwrap_or(sc.rate),
        duration: args.duration.unwrap_or(sc.duration),
        max_flows: args.max_flows.unwrap_or(u64::MAX),
    };
    if let Err(e) = limits.validate() {
        eprintln!("ctdoctor: --rate/--duration: {e}");
        return Ok(EXIT_USAGE);
    }
    if args.step > limits.duration {
        eprintln!("ctdoctor: --step must not exceed --duration");
        return Ok(EXIT_USAGE);
    }
    if args.headroom == Some(0) {
        eprintln!("ctdoctor: --headroom must be at least 1");
        return Ok(EXIT_USAGE);
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "ctdoctor: lab needs root: it creates a network namespace (CAP_SYS_ADMIN), \
             talks ctnetlink (CAP_NET_ADMIN) and uses raw sockets (CAP_NET_RAW)"
        );
        return Ok(EXIT_NOT_ROOT);
    }
    let signal = Arc::new(AtomicUsize::new(0));
    let _hooks = SignalHooks::install(&signal).context("installing SIGINT/SIGTERM handlers")?;
    let lowered = match args.max {
        Some(n) => match LoweredMax::lower(host, n) {
            Ok(g) => Some(g),
            Err(e) => {
                eprintln!("ctdoctor: --max {n} refused: {e:#}");
                return Ok(EXIT_USAGE);
            }
        },
        None => None,
    };
    let report = experiment(host, &sc, &limits, args, &signal);
    if let Some(g) = lowered {
        g.restore()?;
    }
    let mut report = report?;
    let mut failed = false;
    if args.compare_sim {
        match fidelity::compare_lab(host.root(), &sc.kind, &report) {
            Ok(c) => report.compare_sim = Some(c),
            Err(e) => {
                eprintln!("ctdoctor: --compare-sim: {e:#}");
                failed = true;
            }
        }
    }
    if let Some(path) = &args.svg {
        match &report.compare_sim {
            Some(c) => fidelity::svg(
                &format!("ctdoctor lab {} vs simulate", report.summary.scenario),
                &fidelity::kernel_curve(&report),
                &c.sim,
                report.summary.effective_max,
                path,
            ),
            None => svg(&report, path),
        }
        .with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        crate::output::json(&report, out)?;
    } else {
        render(&report, out)?;
        if let Some(c) = &report.compare_sim {
            writeln!(out, "\ncompared with: {}", c.command)?;
            for n in &c.notes {
                writeln!(out, "note: {n}")?;
            }
            fidelity::render(&c.comparison, out)?;
        }
    }
    let sig = signal.load(Ordering::SeqCst);
    Ok(if sig != 0 {
        EXIT_SIGNAL_BASE.saturating_add(sig as u8)
    } else if failed {
        1
    } else {
        EXIT_OK
    })
}

fn experiment(
    host: &Host,
    sc: &Scenario,
    limits: &Limits,
    args: &LabArgs,
    signal: &AtomicUsize,
) -> Result<LabReport> {
    let ns = Netns::create("lab").context("creating the lab namespace")?;
    let name = ns.name().to_string();
    let result = experiment_in(host, &ns, sc, limits, args, signal);
    if args.keep {
        std::mem::forget(ns);
        eprintln!("ctdoctor: kept namespace {name} (remove it with `ip netns del {name}`)");
    } else {
        drop(ns);
    }
    let mut report = result?;
    report.summary.kept = args.keep;
    Ok(report)
}

fn experiment_in(
    host: &Host,
    ns: &Netns,
    sc: &Scenario,
    limits: &Limits,
    args: &LabArgs,
    signal: &AtomicUsize,
) -> Result<LabReport> {
    let interrupted = || signal.load(Ordering::SeqCst) != 0;
    ns.track_loopback()
        .context("loading the conntrack-enabling nft rule")?;
    if let Some(rules) = sc.kind.nft_rules() {
        ns.nft(&rules)
            .context("loading the generator's nft rules")?;
    }
    let mut timeouts = BTreeMap::new();
    for (k, v) in &sc.timeouts {
        ns.exec(
            "sysctl",
            &["-q", "-w", &format!("net.netfilter.{}={v}", k.sysctl())],
        )
        .with_context(|| format!("setting {} in the lab namespace", k.sysctl()))?;
        timeouts.insert(k.sysctl().to_string(), *v);
    }
    let inode = host
        .root()
        .path(&format!("{NETNS_DIR}/{}", ns.name()))
        .metadata()
        .context("reading the namespace's inode")?
        .ino();
    let mut ct = host
        .in_netns(ns.name(), Host::conntrack)
        .context("opening ctnetlink in the lab namespace")?;
    let global_max = u64::from(ct.stats()?.max_entries.unwrap_or(0));
    if global_max == 0 {
        bail!("nf_conntrack_max is 0 (unlimited): there is no table to fill");
    }
    let default_headroom = if args.max.is_some() {
        global_max
    } else {
        sc.headroom
    };
    let headroom = args.headroom.unwrap_or(default_headroom).min(global_max);
    let prefill = global_max - headroom;
    // In chunks, so that Ctrl-C is seen within a second.
    let mut done = 0usize;
    let all = prefill_entries(prefill as usize);
    for chunk in all.chunks(50_000) {
        if interrupted() {
            break;
        }
        ns.insert(chunk).context("pre-filling the lab namespace")?;
        done += chunk.len();
    }
    drop(all);
    let prefill = done as u64;
    let base = counters(&mut ct)?;
    let mut log = KernelLog::open(host, inode);

    let stop = Arc::new(AtomicBool::new(false));
    let gen_stop = Arc::clone(&stop);
    let kind = sc.kind.clone();
    // The traffic runs until told to stop after the last sample (held
    // connections must still be open when it is taken); its own bound is a
    // backstop.
    let gen_limits = Limits {
        duration: limits.duration * 2 + args.step + Duration::from_secs(30),
        ..*limits
    };
    let ns_name = ns.name().to_string();
    let traffic_host = host.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let generator = std::thread::Builder::new()
        .name("lab-traffic".into())
        .spawn(move || -> Result<traffic::Report> {
            traffic_host.enter(&ns_name)?;
            Ok(traffic::run_notify(&kind, &gen_limits, &gen_stop, || {
                let _ = tx.send(());
            })?)
        })
        .context("starting the traffic thread")?;
    // t = 0 is the generator's first flow, not the thread's start (its
    // servers take tens of ms to come up). A failed setup drops `tx`.
    if rx.recv_timeout(Duration::from_secs(10)).is_err() && generator.is_finished() {
        return match generator.join() {
            Ok(Err(e)) => Err(e.context("starting the traffic")),
            _ => bail!("the traffic thread ended before its first flow"),
        };
    }
    let start = Instant::now();
    let start_us = host.monotonic_us();

    let mut series = Vec::new();
    let mut last = Counters::default();
    let mut k: u32 = 0;
    let sampled = loop {
        if interrupted() {
            break Ok(());
        }
        let due = args.step * k;
        if due > limits.duration {
            break Ok(());
        }
        while start.elapsed() < due {
            if interrupted() {
                break;
            }
            std::thread::sleep((due - start.elapsed()).min(Duration::from_millis(50)));
        }
        if interrupted() {
            break Ok(());
        }
        let t = start.elapsed().as_secs_f64();
        match sample(&mut ct, &base, prefill) {
            Ok((mut p, c)) => {
                log.poll();
                p.t = t;
                p.log_lines = log.tally.lines;
                series.push(p);
                last = c;
            }
            Err(e) => break Err(e),
        }
        k += 1;
    };
    stop.store(true, Ordering::SeqCst);
    let traffic = match generator.join() {
        Ok(r) => r?,
        Err(_) => bail!("the traffic thread panicked"),
    };
    sampled?;
    log.poll();

    count_sent(&mut series, &traffic.started_per_second);
    let mut summary = Summary {
        scenario: sc.name.to_string(),
        about: sc.about.to_string(),
        namespace: ns.name().to_string(),
        netns_inode: inode,
        kernel: host
            .root()
            .read(OSRELEASE, "read access")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        duration_s: traffic.elapsed_secs,
        step_s: args.step.as_secs_f64(),
        rate_target: limits.rate,
        rate_achieved: traffic.rate(),
        timeouts,
        global_max,
        prefill,
        new_flows: traffic.started,
        completed: traffic.completed,
        failed: traffic.failed,
        interrupted: interrupted(),
        kept: false,
        ..Summary::default()
    };
    summary.record(&series, &last, &log.tally, start_us);
    Ok(LabReport {
        summary,
        series,
        kernel: KernelView {
            counters: counter_map(&last),
            log: log.tally.texts,
        },
        traffic,
        compare_sim: None,
    })
}
