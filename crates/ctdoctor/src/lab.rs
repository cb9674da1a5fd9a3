//! `ctdoctor lab`: reproduce conntrack table exhaustion safely with real
//! traffic in a throwaway network namespace (the runbook's load test),
//! sampling the kernel's own count, states, counters and log lines.
//! The namespace is deleted at the end, also on Ctrl-C, SIGTERM or error.

use ctcore::counters::{Counters, CpuStats};
use ctcore::duration;
use ctcore::timeouts::Timeout;
use std::collections::BTreeMap;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use ctlab::Netns;
use ctlab::traffic::{self, Kind, Limits, Sources};
use ctmodel::{L4Proto, Status};
use ctnetlink::{Conntrack, Family};
use serde::Serialize;

/// Exit codes of `ctdoctor lab` (also in `--help`).
pub const EXIT_OK: u8 = 0;
pub const EXIT_USAGE: u8 = 2;
/// Not root: namespaces need CAP_SYS_ADMIN, ctnetlink CAP_NET_ADMIN, raw
/// sockets CAP_NET_RAW.
pub const EXIT_NOT_ROOT: u8 = 4;
/// Interrupted: 128 + the signal (130 SIGINT, 143 SIGTERM), namespace removed.
pub const EXIT_SIGNAL_BASE: u8 = 128;

#[derive(Debug, Args)]
#[command(
    after_help = "Scenarios: short-connections (many sources, TIME_WAIT 600 s), \
short-connections-one-client, syn-flood, idle-attack, keepalive, udp-query, icmp-echo.\n\n\
Examples:\n  ctdoctor lab short-connections\n  ctdoctor lab short-connections --duration 30s --rate 2000 --json\n  \
ctdoctor lab syn-flood --headroom 5000 --svg flood.svg\n\n\
The global nf_conntrack_max is never changed: the lab fills its own namespace \
over ctnetlink with long-lived ASSURED entries so that only --headroom entries \
are left for the traffic (each namespace's count is compared with the global max).\n\n\
Exit codes: 0 run completed, 1 failure, 2 bad usage, 4 not root, \
130/143 interrupted by SIGINT/SIGTERM (the namespace is removed)."
)]
pub struct LabArgs {
    /// Scenario name (see below).
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
    /// drop totals (see crate::fidelity).
    #[arg(long)]
    pub compare_sim: bool,
}

/// A built-in lab scenario: traffic, its default rate, the headroom left
/// in the table, and the namespace's own timeouts.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub about: String,
    pub kind: Kind,
    pub rate: f64,
    pub headroom: u64,
    pub duration: Duration,
    /// The namespace's timeout overrides, in seconds.
    pub timeouts: Vec<(Timeout, u32)>,
}

pub const SCENARIOS: &[&str] = &[
    "short-connections",
    "short-connections-one-client",
    "syn-flood",
    "idle-attack",
    "keepalive",
    "udp-query",
    "icmp-echo",
];

pub fn scenario(name: &str) -> Option<Scenario> {
    let s = |about: &str, kind, rate, headroom, timeouts| Scenario {
        name: name.to_string(),
        about: about.to_string(),
        kind,
        rate,
        headroom,
        duration: Duration::from_secs(60),
        timeouts,
    };
    Some(match name {
        "short-connections" => s(
            "the runbook's load test: short TCP connections without keep-alive from many \
             source addresses, closed by the client, TIME_WAIT raised to 600 s",
            Kind::Short {
                sources: Sources::Many,
            },
            1000.0,
            20_000,
            vec![(Timeout::TcpTimeWait, 600)],
        ),
        "short-connections-one-client" => s(
            "the same load from one client address: ephemeral ports get reused and \
             reopen their TIME_WAIT entries, so the table fills more slowly",
            Kind::Short {
                sources: Sources::OneClient,
            },
            1000.0,
            20_000,
            vec![(Timeout::TcpTimeWait, 600)],
        ),
        "syn-flood" => s(
            "spoofed SYNs from many addresses: unreplied SYN_SENT entries, never ASSURED, \
             which early_drop may evict",
            Kind::SynFlood,
            2000.0,
            20_000,
            vec![],
        ),
        "idle-attack" => s(
            "TCP handshakes then silence, held against the 5-day ESTABLISHED timeout",
            Kind::Idle {
                sources: Sources::Many,
            },
            500.0,
            5_000,
            vec![],
        ),
        "keepalive" => s(
            "keep-alive TCP connections held open, one byte a second each way",
            Kind::KeepAlive {
                sources: Sources::Many,
                ping: Duration::from_secs(1),
            },
            200.0,
            5_000,
            vec![],
        ),
        "udp-query" => s(
            "UDP query/answer from many addresses, 20% unreplied (udp timeout 30 s)",
            Kind::Udp {
                sources: Sources::Many,
                unreplied: 0.2,
            },
            1000.0,
            20_000,
            vec![],
        ),
        "icmp-echo" => s(
            "ICMP echo requests, each a new entry (icmp timeout 30 s)",
            Kind::Icmp,
            1000.0,
            20_000,
            vec![],
        ),
        _ => return None,
    })
}

/// A `simulate` scenario (built-in name or TOML file, crates/ctsim) as a
/// lab run: its one traffic class becomes the generator, its table max the
/// headroom, its timeout overrides the namespace's timeouts. Lifecycles
/// and arrivals the generators cannot produce are refused by name.
pub fn from_sim(sim: &ctsim::Scenario) -> Result<Scenario, String> {
    use ctsim::{Arrival, Lifecycle};
    let [class] = sim.classes.as_slice() else {
        return Err(format!(
            "scenario {:?} has {} traffic classes; the lab runs exactly one",
            sim.name,
            sim.classes.len()
        ));
    };
    let sources = if class.sources.clients == 1 && !class.sources.spoofed {
        Sources::OneClient
    } else {
        Sources::Many
    };
    let kind = match &class.lifecycle {
        Lifecycle::ShortHttp { .. } => Kind::Short { sources },
        Lifecycle::Keepalive { .. } => Kind::KeepAlive {
            sources,
            ping: Duration::from_secs(1),
        },
        Lifecycle::Idle { .. } => Kind::Idle { sources },
        Lifecycle::Dns { unreplied, .. } => Kind::Udp {
            sources,
            unreplied: *unreplied,
        },
        Lifecycle::Icmp { .. } => Kind::Icmp,
        Lifecycle::SynFlood => Kind::SynFlood,
        other => {
            return Err(format!(
                "class {:?}: the lab has no real-traffic generator for {other:?}",
                class.name
            ));
        }
    };
    let rate = match class.arrival {
        Arrival::Constant { rate } | Arrival::Poisson { rate } => rate,
        _ => {
            return Err(format!(
                "class {:?}: the lab paces flows at a constant rate; use a constant or \
                 poisson arrival (or --rate with a lab scenario)",
                class.name
            ));
        }
    };
    let mut timeouts = Vec::new();
    for (k, v) in &sim.table.timeouts {
        let name = Timeout::from_name(k)
            .ok_or_else(|| format!("timeout {k:?} is not one the lab sets"))?;
        if !(1.0..=f64::from(u32::MAX)).contains(v) {
            return Err(format!("timeout {k} = {v}: out of range"));
        }
        timeouts.push((name, v.round() as u32));
    }
    let duration = sim
        .duration_s
        .filter(|d| d.is_finite() && *d > 0.0 && *d <= 3600.0)
        .map_or(Duration::from_secs(60), Duration::from_secs_f64);
    Ok(Scenario {
        name: sim.name.clone(),
        about: sim.description.clone(),
        kind,
        rate,
        headroom: sim.table.max.max(1),
        duration,
        timeouts,
    })
}

/// The lab's own scenarios by name, else a `simulate` scenario: a TOML file
/// (a path ending in .toml or containing '/') or a built-in name.
pub fn resolve(name: &str) -> Result<Scenario, String> {
    if let Some(sc) = scenario(name) {
        return Ok(sc);
    }
    let sim = if name.ends_with(".toml") || name.contains('/') {
        let text = std::fs::read_to_string(name).map_err(|e| format!("{name}: {e}"))?;
        ctsim::Scenario::from_toml(&text).map_err(|e| format!("{name}: {e}"))?
    } else {
        ctsim::Scenario::builtin(name).ok_or_else(|| {
            format!(
                "unknown scenario {name:?}; lab: {}; simulate: {}",
                SCENARIOS.join(", "),
                ctsim::Scenario::builtin_names().join(", ")
            )
        })?
    };
    from_sim(&sim)
}

/// One sample of the namespace: the simulate series point plus the
/// kernel's own raw figures. Counters are cumulative since the start.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Point {
    /// Seconds since the traffic started.
    pub t: f64,
    /// Traffic entries: the namespace's count minus the pre-fill.
    pub entries: u64,
    /// The effective max: global max minus the pre-fill.
    pub max: u64,
    pub drops: u64,
    pub early_drops: u64,
    pub insert_failed: u64,
    /// Traffic entries by "l4/STATE" (TCP) or "l4/UNREPLIED|REPLIED|ASSURED"
    /// (from a dump; pre-fill entries excluded).
    pub by_state: BTreeMap<String, u64>,
    /// The namespace's own count (CTA_STATS_GLOBAL_ENTRIES).
    pub count: u64,
    pub global_max: u64,
    /// Flows the generator has started so far (approximate: read at the
    /// end from its per-second report).
    pub sent: u64,
    /// Table-full log lines naming this namespace, so far.
    pub log_lines: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub about: String,
    pub namespace: String,
    pub netns_inode: u64,
    pub kernel: String,
    pub duration_s: f64,
    pub step_s: f64,
    pub rate_target: f64,
    pub rate_achieved: f64,
    pub timeouts: BTreeMap<String, u32>,
    pub global_max: u64,
    pub prefill: u64,
    /// headroom = global max - prefill: the table size the traffic sees.
    pub effective_max: u64,
    pub new_flows: u64,
    pub completed: u64,
    pub failed: u64,
    pub drops: u64,
    pub early_drops: u64,
    pub insert_failed: u64,
    pub chaintoolong: u64,
    pub peak_entries: u64,
    /// First sample with drops > 0 (step resolution).
    pub time_to_first_drop_s: Option<f64>,
    /// From the first table-full log line's kernel timestamp (sub-second).
    pub time_to_first_log_s: Option<f64>,
    pub log_lines: u64,
    pub log_suppressed: u64,
    /// All `net_ratelimit: N callbacks suppressed` during the run (global:
    /// other namespaces' table-full messages use up the same budget).
    pub log_ratelimited: u64,
    pub interrupted: bool,
    pub kept: bool,
}

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
    pub compare_sim: Option<crate::fidelity::SimComparison>,
}

/// Outcome of `lab::run`: an exit code; the report when the run happened.
pub fn run(
    args: &LabArgs,
    json: bool,
    netns: Option<&str>,
    host: &cthost::Host,
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
    let sc = match resolve(&args.scenario) {
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
        Some(n) => match LoweredMax::lower(n) {
            Ok(g) => Some(g),
            Err(e) => {
                eprintln!("ctdoctor: --max {n} refused: {e:#}");
                return Ok(EXIT_USAGE);
            }
        },
        None => None,
    };
    let report = experiment(&sc, &limits, args, &signal);
    if let Some(g) = lowered {
        g.restore()?;
    }
    let mut report = report?;
    let mut failed = false;
    if args.compare_sim {
        match crate::fidelity::compare_lab(&sc.kind, &report) {
            Ok(c) => report.compare_sim = Some(c),
            Err(e) => {
                eprintln!("ctdoctor: --compare-sim: {e:#}");
                failed = true;
            }
        }
    }
    if let Some(path) = &args.svg {
        match &report.compare_sim {
            Some(c) => crate::fidelity::svg(
                &format!("ctdoctor lab {} vs simulate", report.summary.scenario),
                &crate::fidelity::kernel_curve(&report),
                &c.sim,
                report.summary.effective_max,
                path,
            ),
            None => svg(&report, path),
        }
        .with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        render(&report, out)?;
        if let Some(c) = &report.compare_sim {
            writeln!(out, "\ncompared with: {}", c.command)?;
            for n in &c.notes {
                writeln!(out, "note: {n}")?;
            }
            crate::fidelity::render(&c.comparison, out)?;
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

/// The global max lowered for one run: journaled with apply's journal
/// before the write, restored by `restore` or, on any other exit path
/// (error, panic), by `Drop`.
struct LoweredMax {
    root: cthost::source::Root,
    journal: std::path::PathBuf,
    restored: bool,
}

const MAX_PATH: &str = "/proc/sys/net/netfilter/nf_conntrack_max";

impl LoweredMax {
    fn lower(n: u64) -> Result<Self> {
        use cthost::apply;
        if n == 0 {
            bail!("N must be at least 1 (0 would mean unlimited on this kernel)");
        }
        let read = |p: &str| -> Result<u64> {
            std::fs::read_to_string(p)
                .with_context(|| format!("reading {p}"))?
                .trim()
                .parse()
                .with_context(|| format!("parsing {p}"))
        };
        let root = cthost::source::Root::default();
        let journal = apply::journal_path(&root, None)?;
        let lock = apply::lock::take(apply::lock::state_dir_of(&journal), apply::lock::LOCK_WAIT)?;
        let old = read(MAX_PATH)?;
        let count = read("/proc/sys/net/netfilter/nf_conntrack_count")?;
        if n >= old {
            bail!("it only lowers the global max, which is {old}");
        }
        if count as f64 > n as f64 * 0.5 {
            bail!(
                "the host's own namespace holds {count} entries, more than half of {n}: \
                 lowering the global max would put the host at risk"
            );
        }
        if apply::journal::load(&journal)?.is_some_and(|j| j.pending()) {
            bail!(
                "an apply journaled at {} is not rolled back; lab would stack on it \
                 (run `ctdoctor rollback` first)",
                journal.display()
            );
        }
        let d = apply::Diff {
            values: vec![apply::ValueChange {
                path: MAX_PATH.to_string(),
                old: old.to_string(),
                new: n.to_string(),
            }],
            files: vec![],
            count: Some(count),
        };
        apply::apply_locked(&root, &journal, &lock, &d, apply::Fault::default())?;
        eprintln!(
            "ctdoctor: global nf_conntrack_max lowered from {old} to {n} for this run \
             (journal {}; restored at the end)",
            journal.display()
        );
        Ok(Self {
            root,
            journal,
            restored: false,
        })
    }

    fn restore(mut self) -> Result<()> {
        self.restored = true;
        cthost::apply::rollback(&self.root, &self.journal, cthost::apply::Fault::default())
            .context("restoring nf_conntrack_max (run `ctdoctor rollback`)")?;
        eprintln!("ctdoctor: global nf_conntrack_max restored");
        Ok(())
    }
}

impl Drop for LoweredMax {
    fn drop(&mut self) {
        if !self.restored {
            let r = cthost::apply::rollback(&self.root, &self.journal, Default::default());
            if let Err(e) = r {
                eprintln!(
                    "ctdoctor: restoring nf_conntrack_max failed: {e}; run `ctdoctor rollback`"
                );
            }
        }
    }
}

/// SIGINT and SIGTERM only record the signal number while the lab runs;
/// the sample loop sees it, stops the traffic and removes the namespace.
struct SignalHooks(Vec<signal_hook::SigId>);

impl SignalHooks {
    fn install(flag: &Arc<AtomicUsize>) -> io::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut ids = Vec::new();
        for sig in [SIGINT, SIGTERM] {
            ids.push(signal_hook::flag::register_usize(
                sig,
                Arc::clone(flag),
                sig as usize,
            )?);
        }
        Ok(Self(ids))
    }
}

impl Drop for SignalHooks {
    fn drop(&mut self) {
        for id in self.0.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// The pre-fill entries: long-lived ASSURED ESTABLISHED TCP entries from
/// 10.0.0.0/8 to 172.16.0.1:443 (told apart from traffic in dumps).
/// They carry [`PREFILL_MARK`] so that the per-step dump asks the kernel
/// for traffic entries only (mark 0): copying out 240k pre-fill entries
/// every second cost 0.7 s of CPU.
fn prefill_entries(n: usize) -> Vec<ctmodel::Entry> {
    let mut v = ctlab::fill(n, true);
    for e in &mut v {
        e.timeout = Some(86_400);
        e.mark = Some(PREFILL_MARK);
    }
    v
}

/// The conntrack mark of pre-fill entries ("LAB" in ASCII, low bit set).
pub const PREFILL_MARK: u32 = 0x004c_4142;

fn is_prefill(e: &ctmodel::Entry) -> bool {
    e.orig.dst == std::net::IpAddr::V4(std::net::Ipv4Addr::new(172, 16, 0, 1))
        && e.orig.dport() == Some(443)
}

fn state_key(e: &ctmodel::Entry) -> String {
    let l4 = e.l4();
    if let Some(name) = e.state.as_ref().and_then(|s| s.name(l4)) {
        return format!("{l4}/{name}");
    }
    let flag = if e.status.contains(Status::ASSURED) {
        "ASSURED"
    } else if e.unreplied() {
        "UNREPLIED"
    } else {
        "REPLIED"
    };
    let l4 = if l4 == L4Proto::Unknown(0) {
        "?".to_string()
    } else {
        l4.to_string()
    };
    format!("{l4}/{flag}")
}

/// The namespace's per-CPU stat counters, read raw: increases are taken
/// CPU by CPU (ctcore), so a counter that wraps mid-run still counts right.
fn counters(ct: &mut Conntrack) -> Result<Vec<CpuStats>> {
    ct.stats_cpu().context("reading per-CPU stats")
}

/// The counters as the run's JSON names them (every counter, 0 when the
/// kernel does not report it).
fn counter_map(c: &Counters) -> BTreeMap<&'static str, u64> {
    let mut m: BTreeMap<&'static str, u64> =
        ctcore::counters::NAMES.iter().map(|n| (*n, 0)).collect();
    m.extend(c.named());
    m
}

/// New /dev/kmsg records since it was opened (it starts at the end), read
/// without blocking; table-full lines for one namespace inode are kept.
struct KernelLog {
    file: Option<std::fs::File>,
    inode: u64,
    lines: u64,
    suppressed: u64,
    /// Every `net_ratelimit: N callbacks suppressed` during the run, whoever
    /// logged: the limit is global (5 s, burst 10), so other namespaces'
    /// messages can hide this one's.
    ratelimited: u64,
    first_ts_us: Option<u64>,
    texts: Vec<String>,
}

impl KernelLog {
    fn open(inode: u64) -> Self {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_o_nonblock())
            .open("/dev/kmsg")
            .and_then(|mut f| f.seek(io::SeekFrom::End(0)).map(|_| f))
            .ok();
        Self {
            file,
            inode,
            lines: 0,
            suppressed: 0,
            ratelimited: 0,
            first_ts_us: None,
            texts: Vec::new(),
        }
    }

    fn poll(&mut self) {
        let Some(f) = self.file.as_mut() else { return };
        let mut buf = vec![0u8; 8192];
        let mut records = Vec::new();
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => records.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                // EPIPE: records were overwritten before we read them; the
                // next read continues with the oldest still there.
                Err(e) if e.raw_os_error() == Some(32) => continue,
                Err(_) => break,
            }
        }
        let ctx = cthost::kernel_log::Context {
            netns_inode: Some(self.inode),
            this_boot: true,
            ..Default::default()
        };
        let scan = cthost::kernel_log::scan_with(records.iter().map(String::as_str), ctx);
        for g in scan
            .table_full
            .iter()
            .filter(|g| g.netns_inode == Some(self.inode))
        {
            self.lines += g.count;
            self.suppressed += g.suppressed;
        }
        let needle = format!("in netns {},", self.inode);
        for r in &records {
            let Some((head, msg)) = r.split_once(';') else {
                continue;
            };
            if let Some(n) = msg
                .strip_prefix("net_ratelimit: ")
                .and_then(|m| m.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
            {
                self.ratelimited += n;
            }
            if !msg.contains(&needle) {
                continue;
            }
            if self.first_ts_us.is_none() {
                self.first_ts_us = head.split(',').nth(2).and_then(|t| t.parse().ok());
            }
            if self.texts.len() < 20 {
                self.texts.push(msg.trim_end().to_string());
            }
        }
    }
}

const fn libc_o_nonblock() -> i32 {
    0o4000 // O_NONBLOCK on Linux
}

/// Microseconds of CLOCK_MONOTONIC, the clock of /dev/kmsg timestamps.
fn monotonic_us() -> Option<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    Some(t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
}

/// Take one sample: count and max, counters, per-state dump.
fn sample(ct: &mut Conntrack, base: &[CpuStats], prefill: u64) -> Result<(Point, Counters)> {
    let g = ct.stats().context("reading the namespace's count")?;
    let c = Counters::delta(base, &counters(ct)?);
    let mut by_state = BTreeMap::new();
    // The count is read before the dump: the dump reaps every expired entry
    // it passes (ctnetlink_dump_table), so the next sample sees at most one
    // step of expired entries. --compare-sim models that observer
    // (ctsim::Scenario::dump_each_step).
    // Kernel-side filter: mark & PREFILL_MARK == 0, i.e. traffic only; the
    // check below still holds where the kernel ignores the filter.
    ct.dump_marked(Family::Any, 0, PREFILL_MARK, |e| {
        if !is_prefill(e) {
            *by_state.entry(state_key(e)).or_insert(0) += 1;
        }
    })
    .context("dumping the namespace's table")?;
    let count = u64::from(g.entries);
    let global_max = u64::from(g.max_entries.unwrap_or(0));
    Ok((
        Point {
            entries: count.saturating_sub(prefill),
            max: global_max.saturating_sub(prefill),
            drops: c.drop.unwrap_or(0),
            early_drops: c.early_drop.unwrap_or(0),
            insert_failed: c.insert_failed.unwrap_or(0),
            by_state,
            count,
            global_max,
            ..Point::default()
        },
        c,
    ))
}

fn experiment(
    sc: &Scenario,
    limits: &Limits,
    args: &LabArgs,
    signal: &AtomicUsize,
) -> Result<LabReport> {
    let ns = Netns::create("lab").context("creating the lab namespace")?;
    let name = ns.name().to_string();
    let result = experiment_in(&ns, sc, limits, args, signal);
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
    let inode = std::fs::metadata(format!("/run/netns/{}", ns.name()))
        .context("reading the namespace's inode")?
        .ino();
    let mut ct = ns
        .run(Conntrack::open)?
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
    let mut log = KernelLog::open(inode);
    if log.file.is_none() {
        eprintln!("ctdoctor: warning: /dev/kmsg unreadable (CAP_SYSLOG): no table-full log lines");
    }

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
    let (tx, rx) = std::sync::mpsc::channel();
    let generator = std::thread::Builder::new()
        .name("lab-traffic".into())
        .spawn(move || -> Result<traffic::Report> {
            ctnetlink::netns::enter(&ns_name)?;
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
    let start_us = monotonic_us();

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
                p.log_lines = log.lines;
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

    // Flows started by each sample time, from the per-second report.
    for p in &mut series {
        let whole = p.t.floor() as usize;
        let before: u64 = traffic.started_per_second.iter().take(whole).sum();
        let part = traffic
            .started_per_second
            .get(whole)
            .map_or(0.0, |&n| n as f64 * (p.t - p.t.floor()));
        p.sent = before + part.round() as u64;
    }
    let first_drop = series.iter().find(|p| p.drops > 0).map(|p| p.t);
    let summary = Summary {
        scenario: sc.name.to_string(),
        about: sc.about.to_string(),
        namespace: ns.name().to_string(),
        netns_inode: inode,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        duration_s: traffic.elapsed_secs,
        step_s: args.step.as_secs_f64(),
        rate_target: limits.rate,
        rate_achieved: traffic.rate(),
        timeouts,
        global_max,
        prefill,
        effective_max: global_max - prefill,
        new_flows: traffic.started,
        completed: traffic.completed,
        failed: traffic.failed,
        drops: last.drop.unwrap_or(0),
        early_drops: last.early_drop.unwrap_or(0),
        insert_failed: last.insert_failed.unwrap_or(0),
        chaintoolong: last.chaintoolong.unwrap_or(0),
        peak_entries: series.iter().map(|p| p.entries).max().unwrap_or(0),
        time_to_first_drop_s: first_drop,
        time_to_first_log_s: match (log.first_ts_us, start_us) {
            (Some(l), Some(s)) => Some(l.saturating_sub(s) as f64 / 1e6),
            _ => None,
        },
        log_lines: log.lines,
        log_suppressed: log.suppressed,
        log_ratelimited: log.ratelimited,
        interrupted: interrupted(),
        kept: false,
    };
    Ok(LabReport {
        summary,
        series,
        kernel: KernelView {
            counters: counter_map(&last),
            log: log.texts,
        },
        traffic,
        compare_sim: None,
    })
}

fn opt_s(v: Option<f64>) -> String {
    v.map_or_else(|| "never".to_string(), |s| format!("{s:.1} s"))
}

/// The human summary and a table of the samples.
pub fn render(r: &LabReport, out: &mut dyn Write) -> io::Result<()> {
    let s = &r.summary;
    writeln!(out, "lab {}: {}", s.scenario, s.about)?;
    writeln!(
        out,
        "namespace {} (inode {}), kernel {}{}",
        s.namespace,
        s.netns_inode,
        s.kernel,
        if s.kept { ", kept" } else { ", removed" }
    )?;
    let t: Vec<String> = s.timeouts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !t.is_empty() {
        writeln!(out, "namespace timeouts: {}", t.join(" "))?;
    }
    writeln!(
        out,
        "table: global max {}, pre-filled {} ASSURED entries, effective max {}",
        s.global_max, s.prefill, s.effective_max
    )?;
    writeln!(
        out,
        "traffic: {} flows in {:.1} s ({:.0}/s, target {:.0}/s), {} completed, {} failed",
        s.new_flows, s.duration_s, s.rate_achieved, s.rate_target, s.completed, s.failed
    )?;
    writeln!(
        out,
        "kernel: peak {} entries, drop {}, early_drop {}, insert_failed {}; first drop at {} \
         (first log line at {})",
        s.peak_entries,
        s.drops,
        s.early_drops,
        s.insert_failed,
        opt_s(s.time_to_first_drop_s),
        opt_s(s.time_to_first_log_s)
    )?;
    writeln!(
        out,
        "kernel log: {} table-full lines for this namespace ({} suppressed callbacks nearby)",
        s.log_lines, s.log_suppressed
    )?;
    if s.drops > 0 && s.log_lines == 0 && s.log_ratelimited > 0 {
        writeln!(
            out,
            "  none logged: net_ratelimit (global, 10 per 5 s) suppressed {} messages meanwhile",
            s.log_ratelimited
        )?;
    }
    if let Some(first) = r.kernel.log.first() {
        writeln!(out, "  {first}")?;
    }
    if s.interrupted {
        writeln!(out, "interrupted: the run stopped early")?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:>7} {:>9} {:>9} {:>9} {:>11}  top states",
        "t", "entries", "max", "drops", "early_drops"
    )?;
    let every = (r.series.len() / 20).max(1);
    for (i, p) in r.series.iter().enumerate() {
        if i % every != 0 && i + 1 != r.series.len() {
            continue;
        }
        let mut st: Vec<(&String, &u64)> = p.by_state.iter().collect();
        st.sort_by(|a, b| b.1.cmp(a.1));
        let top: Vec<String> = st.iter().take(2).map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(
            out,
            "{:>6.1}s {:>9} {:>9} {:>9} {:>11}  {}",
            p.t,
            p.entries,
            p.max,
            p.drops,
            p.early_drops,
            top.join(", ")
        )?;
    }
    Ok(())
}

/// Entries, effective max and cumulative drops over time.
pub fn svg(r: &LabReport, path: &std::path::Path) -> Result<()> {
    use crate::chart::{Line, points};
    use plotters::prelude::{BLACK, BLUE, RED, SeriesLabelPosition};
    let t = |p: &Point| p.t;
    let lines = [
        Line::new(
            "entries (kernel)",
            points(&r.series, t, |p| p.entries),
            BLUE,
        ),
        Line::new("effective max", points(&r.series, t, |p| p.max), BLACK),
        Line::new("drops (cumulative)", points(&r.series, t, |p| p.drops), RED),
    ];
    let title = format!(
        "ctdoctor lab {} (kernel {})",
        r.summary.scenario, r.summary.kernel
    );
    crate::chart::write_svg(path, 500, |root| {
        crate::chart::panel(
            root,
            Some(&title),
            "entries",
            &lines,
            SeriesLabelPosition::UpperLeft,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_scenario_exists() {
        for n in SCENARIOS {
            let s = scenario(n).expect("built in");
            assert_eq!(s.name, *n);
            assert!(s.rate > 0.0 && s.headroom > 0);
            s.kind.validate().expect("valid kind");
        }
        assert!(scenario("nope").is_none());
    }

    #[test]
    fn simulate_scenarios_become_lab_runs() {
        let sc = resolve("nginx-short-upstream").expect("one short-http class");
        assert!(matches!(
            sc.kind,
            Kind::Short {
                sources: Sources::Many
            }
        ));
        assert_eq!((sc.rate, sc.headroom), (2400.0, 262_144));
        let toml = "name = \"t\"\n[table]\nmax = 3000\nbuckets = 1024\n\
                    timeouts = { tcp_timeout_time_wait = 600 }\n[[class]]\nname = \"c\"\n\
                    arrival = { kind = \"constant\", rate = 500 }\n\
                    lifecycle = { kind = \"short-http\" }\nsources = { clients = 1 }\n";
        let sim = ctsim::Scenario::from_toml(toml).expect("valid");
        let sc = from_sim(&sim).expect("convertible");
        assert!(matches!(
            sc.kind,
            Kind::Short {
                sources: Sources::OneClient
            }
        ));
        assert_eq!(sc.timeouts, vec![(Timeout::TcpTimeWait, 600)]);
        assert_eq!(sc.headroom, 3000);
        // More than one class, or a lifecycle without a generator: refused.
        let e = resolve("nat-gateway").expect_err("several classes");
        assert!(e.contains("traffic classes"), "{e}");
        let flood = toml.replace("{ kind = \"short-http\" }", "{ kind = \"udp-flood\" }");
        let sim = ctsim::Scenario::from_toml(&flood).expect("valid");
        assert!(
            from_sim(&sim)
                .expect_err("no generator")
                .contains("no real-traffic generator")
        );
        let e = resolve("no-such").expect_err("unknown");
        assert!(
            e.contains("unknown scenario") && e.contains("nginx-short-upstream"),
            "{e}"
        );
        assert!(resolve("/nonexistent/x.toml").is_err());
    }

    #[test]
    fn prefill_is_recognised() {
        let v = prefill_entries(3);
        assert!(v.iter().all(is_prefill));
        assert!(v.iter().all(|e| e.assured()));
        assert_eq!(state_key(&v[0]), "tcp/ESTABLISHED");
    }
}
