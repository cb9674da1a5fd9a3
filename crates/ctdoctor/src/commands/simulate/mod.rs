//! `ctdoctor simulate`: resolves the table configuration (scenario, this
//! host's sysctls, `--compare` plan, flags, `--from-live` table), runs the
//! model (crate ctsim, through `model::run` only) and renders the result.

pub mod args;
pub mod live;
pub mod model;
pub mod report;

use ctcore::plan::Settings;
use ctcore::timeouts::Timeout;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::exit::Usage;
use report::{RunInfo, Timeline};

#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// A built-in scenario name or a scenario FILE.toml.
    #[arg(long, value_name = "NAME|FILE.toml")]
    pub scenario: Option<String>,
    /// Simulated time: 1h, 90s, 2h30m or seconds (at most 30 days);
    /// default: the scenario's, else 1h.
    #[arg(long)]
    pub duration: Option<String>,
    /// Series step: 1s, 250ms (at least 1ms, at most 1,000,000 points);
    /// default: the scenario's, else 1s.
    #[arg(long)]
    pub step: Option<String>,
    /// Random seed: the same seed gives the same output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the time series as CSV instead of the summary.
    #[arg(long)]
    pub csv: bool,
    /// Write a plot (entries vs max, drop rates) to this SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Run twice: current configuration and a plan's (`ctdoctor plan --format json`).
    #[arg(long, value_name = "PLAN.json")]
    pub compare: Option<PathBuf>,
    /// Seed the model with the current table (counts by state, remaining
    /// timeouts) and its creation rate, measured over one second.
    #[arg(long)]
    pub from_live: bool,
    /// One traffic class without a file: new connections/s (Poisson).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Lifecycle of that class.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(args::LIFECYCLES))]
    pub lifecycle: Option<String>,
    /// nf_conntrack_max (default: this host's, else the kernel's).
    #[arg(long)]
    pub max: Option<u64>,
    /// Hash buckets (default: this host's, else the kernel's).
    #[arg(long)]
    pub buckets: Option<u64>,
    /// NAME=SECONDS, sysctl name without `nf_conntrack_` (repeatable).
    #[arg(long = "timeout", value_name = "NAME=SECONDS")]
    pub timeouts: Vec<String>,
    /// Kernel behaviour to model (e.g. 5.15, 6.18); default: this host's.
    #[arg(long, value_name = "VERSION")]
    pub kernel: Option<String>,
}

/// Table settings layered over a scenario's own: `None` keeps the
/// scenario's (or the model's kernel default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub max: Option<u64>,
    pub buckets: Option<u64>,
    /// Without the `nf_conntrack_` prefix.
    pub timeouts: BTreeMap<String, u64>,
    pub kernel: Option<String>,
}

impl Table {
    /// `o` wins where it says something.
    pub fn overlay(&mut self, o: &Table) {
        if o.max.is_some() {
            self.max = o.max;
        }
        if o.buckets.is_some() {
            self.buckets = o.buckets;
        }
        if o.kernel.is_some() {
            self.kernel.clone_from(&o.kernel);
        }
        for (k, v) in &o.timeouts {
            self.timeouts.insert(k.clone(), *v);
        }
    }
}

/// What traffic to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// Built-in name or TOML text with where it came from.
    Named(String),
    File {
        path: PathBuf,
        text: String,
    },
    /// `--rate` and `--lifecycle`.
    OneClass {
        rate: f64,
        lifecycle: String,
    },
    /// `--from-live` alone: one class at the measured rate.
    Live,
}

/// This host's table settings (cthost reads the sysctls); empty where
/// unreadable, so the kernel defaults apply.
fn host_table(root: &cthost::source::Root) -> (Table, Vec<String>) {
    let nf = "/proc/sys/net/netfilter";
    let mut t = Table::default();
    let mut notes = Vec::new();
    t.max = root.read_u64(&format!("{nf}/nf_conntrack_max"), "").ok();
    t.buckets = root
        .read_u64(&format!("{nf}/nf_conntrack_buckets"), "")
        .ok();
    for (k, v) in cthost::gather::timeouts(root) {
        if let Some(timeout) = Timeout::from_name(&k) {
            t.timeouts.insert(timeout.short().to_string(), v);
        }
    }
    t.kernel = root
        .read("/proc/sys/kernel/osrelease", "")
        .ok()
        .and_then(|s| ctcore::version::Version::parse(s.trim()).ok())
        .map(|k| k.to_string());
    if t.max.is_some() || !t.timeouts.is_empty() {
        notes.push(format!(
            "defaults from this host's sysctls (max {}, buckets {}, {} timeouts)",
            t.max.map_or("?".into(), |v| v.to_string()),
            t.buckets.map_or("?".into(), |v| v.to_string()),
            t.timeouts.len()
        ));
    } else {
        notes.push("this host's conntrack sysctls are unreadable: kernel defaults".into());
    }
    (t, notes)
}

/// The flags' table settings.
fn flag_table(a: &SimulateArgs) -> Result<Table, Usage> {
    let mut t = Table {
        max: a.max,
        buckets: a.buckets,
        kernel: a.kernel.clone(),
        ..Table::default()
    };
    if a.max == Some(0) {
        return Err(Usage(
            "--max 0: the table must hold at least one entry".into(),
        ));
    }
    if a.buckets == Some(0) {
        return Err(Usage("--buckets 0: at least one bucket".into()));
    }
    if let Some(k) = &a.kernel
        && ctcore::version::Version::parse(k).is_err()
    {
        return Err(Usage(format!(
            "--kernel {k:?}: expected a version such as 6.18 or 5.15.0"
        )));
    }
    for s in &a.timeouts {
        let (k, v) = args::parse_timeout(s)?;
        t.timeouts.insert(k, v);
    }
    Ok(t)
}

/// A plan's settings as a table (timeouts the model does not know are
/// left out; they govern nothing it simulates).
fn plan_table(s: &Settings) -> Table {
    let timeouts = s
        .timeouts
        .iter()
        .filter_map(|(k, v)| Timeout::from_name(k).map(|t| (t.short().to_string(), *v)))
        .collect();
    Table {
        max: Some(s.nf_conntrack_max),
        buckets: Some(s.hashsize),
        timeouts,
        ..Table::default()
    }
}

fn workload(a: &SimulateArgs) -> Result<Workload> {
    match (&a.scenario, a.rate, &a.lifecycle) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(Usage(
            "--scenario and --rate/--lifecycle exclude each other".into(),
        )
        .into()),
        (Some(s), None, None) => {
            let p = PathBuf::from(s);
            if s.ends_with(".toml") || s.contains('/') {
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("cannot read scenario file {}", p.display()))?;
                Ok(Workload::File { path: p, text })
            } else if model::builtin_names().contains(&s.as_str()) {
                Ok(Workload::Named(s.clone()))
            } else {
                Err(Usage(format!(
                    "unknown scenario {s:?}; built-in: {} (or a FILE.toml)",
                    model::builtin_names().join(", ")
                ))
                .into())
            }
        }
        (None, Some(r), l) => Ok(Workload::OneClass {
            rate: args::check_rate(r)?,
            lifecycle: l.clone().unwrap_or_else(|| "short-http".into()),
        }),
        (None, None, _) if a.from_live => Ok(Workload::Live),
        (None, None, Some(_)) => Err(Usage("--lifecycle needs --rate (or --from-live)".into()).into()),
        (None, None, None) => Err(Usage(format!(
            "say what to simulate: --scenario NAME|FILE.toml (built-in: {}) or --rate N [--lifecycle L]",
            model::builtin_names().join(", ")
        ))
        .into()),
    }
}

/// A progress bar on stderr when it is a TTY and the run is long.
fn run_with_progress(sc: &ctsim::Scenario, d: f64, st: f64, seed: u64) -> Result<Timeline> {
    let started = std::time::Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut progress = |done: f64| {
        if !tty {
            return;
        }
        if bar.is_none() && started.elapsed().as_secs_f64() > 1.0 {
            bar = Some(indicatif::ProgressBar::new(1000).with_message("simulating"));
        }
        if let Some(b) = &bar {
            b.set_position((done.clamp(0.0, 1.0) * 1000.0) as u64);
        }
    };
    let tl = model::run(sc, d, st, seed, &mut progress);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    tl
}

fn fmt_s(s: f64) -> String {
    format!("{s}s")
}

/// Run the command; writes to `out`.
pub fn run(a: &SimulateArgs, host: &cthost::Host) -> Result<report::Answer> {
    // Cheap checks first: a bad flag fails before the host is read.
    if let Some(d) = &a.duration {
        args::parse_seconds("--duration", d)?;
    }
    if let Some(st) = &a.step {
        args::parse_seconds("--step", st)?;
    }
    let flags = flag_table(a)?;
    let mut work = workload(a)?;
    if let Some(p) = &a.svg {
        check_writable(p)?;
    }
    let plan = match &a.compare {
        Some(p) => {
            let text = cthost::apply::write::read_plan(p).map_err(anyhow::Error::msg)?;
            let settings = Settings::from_plan_json(&text)
                .map_err(|e| anyhow::anyhow!("plan {}: {e}", p.display()))?;
            Some(plan_table(&settings))
        }
        None => None,
    };
    // Host defaults under a one-class run; a scenario keeps its own table
    // unless a flag says otherwise.
    let mut table = Table::default();
    let mut notes = Vec::new();
    let one_class = matches!(work, Workload::OneClass { .. } | Workload::Live);
    if one_class {
        let (h, n) = host_table(host.root());
        table.overlay(&h);
        notes.extend(n);
    }
    table.overlay(&flags);
    if !flags.timeouts.is_empty()
        || flags.max.is_some()
        || flags.buckets.is_some()
        || flags.kernel.is_some()
    {
        notes.push("flags override: --max/--buckets/--timeout/--kernel as given".into());
    }
    let live = if a.from_live {
        let (seed, n) = live::measure(host)?;
        notes.extend(n);
        if a.rate.is_some() {
            notes.push("--rate given: the model runs at that rate, not the measured one".into());
        }
        if matches!(work, Workload::Live) {
            work = Workload::OneClass {
                rate: seed.rate.max(f64::MIN_POSITIVE),
                lifecycle: a.lifecycle.clone().unwrap_or_else(|| "short-http".into()),
            };
        }
        Some(seed)
    } else {
        None
    };
    let name = match &work {
        Workload::Named(n) => n.clone(),
        Workload::File { path, .. } => path.display().to_string(),
        Workload::OneClass { rate, lifecycle } => format!("{lifecycle} at {rate:.1}/s"),
        Workload::Live => "live".into(),
    };
    let sc = model::build(&work, &table, live.as_ref(), &mut notes)?;
    let duration = a
        .duration
        .clone()
        .unwrap_or_else(|| sc.duration_s.map_or("1h".into(), fmt_s));
    let step = a
        .step
        .clone()
        .unwrap_or_else(|| sc.step_s.map_or("1s".into(), fmt_s));
    let (duration_s, step_s) = args::duration_and_step(&duration, &step)?;
    let flows: f64 = sc
        .classes
        .iter()
        .map(|c| c.arrival.mean_rate(duration_s) * duration_s)
        .sum();
    if flows > args::MAX_FLOWS {
        return Err(Usage(format!(
            "{flows:.3e} connections in {duration}: at most {:.0e} per run (about half an hour of CPU at 5 million/s); shorten --duration or lower the rate",
            args::MAX_FLOWS
        ))
        .into());
    }
    let info = |sc: &ctsim::Scenario, notes: Vec<String>| RunInfo {
        scenario: name.clone(),
        duration_s,
        step_s,
        seed: a.seed,
        max: Some(sc.table.max),
        buckets: Some(u64::from(sc.table.buckets)),
        notes,
    };
    let current = run_with_progress(&sc, duration_s, step_s, a.seed)?;
    let cur_info = info(&sc, notes.clone());
    if let Some(p) = &a.svg {
        report::svg(&format!("ctdoctor simulate: {name}"), &current.series, p)?;
    }
    let planned = match plan {
        None => None,
        Some(pt) => {
            let mut t2 = table.clone();
            t2.overlay(&pt);
            let planned_sc = model::build(&work, &t2, live.as_ref(), &mut Vec::new())?;
            let planned = run_with_progress(&planned_sc, duration_s, step_s, a.seed)?;
            let mut pn = notes;
            pn.push("max, buckets and timeouts from the plan".into());
            Some((info(&planned_sc, pn), planned))
        }
    };
    Ok(report::Answer {
        current: (cur_info, current),
        planned,
    })
}

/// Fail before a long run, not after it.
fn check_writable(p: &std::path::Path) -> Result<()> {
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        anyhow::bail!(
            "--svg {}: directory {} does not exist",
            p.display(),
            dir.display()
        );
    }
    if p.is_dir() {
        anyhow::bail!("--svg {}: is a directory", p.display());
    }
    let existed = p.exists();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .with_context(|| format!("--svg {}: cannot write", p.display()))?;
    if !existed {
        // Only a probe: a run that fails later must not leave an empty plot.
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_svg_probe_leaves_no_file() {
        let p = std::env::temp_dir().join(format!("ctdoctor-probe-{}.svg", std::process::id()));
        check_writable(&p).expect("writable");
        assert!(!p.exists());
        assert!(check_writable(std::path::Path::new("/nonexistent-dir/x.svg")).is_err());
    }

    #[test]
    fn plan_settings_as_a_table() {
        let s = Settings {
            nf_conntrack_max: 524288,
            hashsize: 131072,
            timeouts: [
                ("nf_conntrack_tcp_timeout_time_wait".to_string(), 120),
                ("nf_conntrack_frag6_timeout".to_string(), 60),
            ]
            .into(),
        };
        let t = plan_table(&s);
        assert_eq!(t.max, Some(524288));
        assert_eq!(t.buckets, Some(131072));
        assert_eq!(t.timeouts.get("tcp_timeout_time_wait"), Some(&120));
        assert_eq!(t.timeouts.len(), 1);
    }

    #[test]
    fn overlay_flags_win() {
        let mut a = Table {
            max: Some(10),
            timeouts: [("udp_timeout".to_string(), 30)].into(),
            ..Table::default()
        };
        a.overlay(&Table {
            max: Some(20),
            timeouts: [("udp_timeout".to_string(), 60)].into(),
            ..Table::default()
        });
        assert_eq!(a.max, Some(20));
        assert_eq!(a.timeouts["udp_timeout"], 60);
    }
}
