//! `ctdoctor plan`, `apply` and `rollback`: turn host facts (or the machine
//! described by flags) into a plan, render it, and apply or roll it back
//! through cthost's journaled writer.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use ctcore::version::Version;
use cthost::Host;
use cthost::apply::{self, Diff, Fault, FaultKind, MODPROBE_FILE, RolledBack, SYSCTL_FILE};
use cthost::gather::{self, Mix};
use cthost::plan::{self, Budget, Inputs, Plan, Port, Profile, Settings};
use cthost::slab;
use ctmodel::Entry;
use ctmodel::scan::{self, Accumulate};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Sysctl,
    Modprobe,
    Nft,
    Iptables,
    Json,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Total RAM of the target machine (bytes, or K/M/G/T, KiB/MiB/GiB;
    /// at least 1 MiB); default: this machine's.
    #[arg(long, value_name = "SIZE", value_parser = plan::parse_memory)]
    pub memory: Option<u64>,

    /// CPUs of the target machine (1 to 65536); default: this machine's.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub cpus: Option<u32>,

    /// Kernel version of the target machine (e.g. 5.10.0); default: this one's.
    #[arg(long, value_name = "VERSION", value_parser = parse_kernel)]
    pub kernel: Option<String>,

    /// Peak number of entries to size for; default: the live count (or the
    /// entries in --file).
    #[arg(long, value_name = "N")]
    pub peak: Option<u64>,

    /// Take the state mix (and the peak, unless --peak) from a saved
    /// `conntrack -L` or /proc/net/nf_conntrack dump.
    #[arg(long, short = 'f', value_name = "PATH")]
    pub file: Option<PathBuf>,

    /// What the host does: web, nat-gateway, k8s-node, router.
    #[arg(long, default_value = "web", value_parser = str::parse::<Profile>)]
    pub profile: Profile,

    /// Multiply the peak by this (a finite number, at least 1).
    #[arg(
        long,
        default_value_t = plan::DEFAULT_HEADROOM,
        value_parser = plan::parse_headroom,
        allow_negative_numbers = true
    )]
    pub headroom: f64,

    /// Memory budget for a full table: a share of RAM (2%) or a size.
    #[arg(long, value_name = "PERCENT%|SIZE", value_parser = plan::parse_budget)]
    pub max_memory: Option<Budget>,

    /// Bytes per entry, extension area included (64 to 65536; default: the
    /// slab object size from /proc/slabinfo, else 256 as on 6.x, plus 128
    /// when NAT, accounting, timestamps, labels, zones or helpers are in use).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(64..=65536))]
    pub entry_bytes: Option<u64>,

    /// Ports to exempt from tracking (NOTRACK rules): 80,443,53/udp.
    #[arg(long, value_delimiter = ',', value_name = "PORT[/udp]", value_parser = Port::parse)]
    pub notrack_port: Vec<Port>,

    /// Exempt loopback traffic from tracking too.
    #[arg(long)]
    pub notrack_loopback: bool,

    /// Output: text explains; sysctl, modprobe, nft and iptables print
    /// loadable files; json is what `apply --plan` reads.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `--kernel`: checked when parsing the command line, so that a bad
/// version is bad usage (exit 2), like any other bad flag.
fn parse_kernel(s: &str) -> Result<String, String> {
    match Version::parse(s).ok() {
        Some(_) => Ok(s.to_string()),
        None => Err(format!(
            "{}: expected a kernel version like 5.10 or 6.1.0-13-amd64 (major and minor up to {})",
            apply::shorten(&format!("{s:?}")),
            u32::MAX
        )),
    }
}

struct MixAcc {
    mix: Mix,
    established: Option<u64>,
}

impl Accumulate for MixAcc {
    fn add(&mut self, e: &Entry) {
        self.mix.add(e, self.established);
    }
    fn merge(&mut self, o: Self) {
        self.mix.merge(o.mix);
    }
}

/// Build the plan inputs from flags and, where they are silent, this host.
/// On this host the facts are the ones `check` reads (gather), turned into
/// inputs by the same function (`plan::host_inputs`), so that check's
/// suggested max and this plan agree (issue 7 section 7).
pub fn inputs(a: &PlanArgs, host: &Host) -> Result<Inputs> {
    let root = host.root();
    let planning_here = a.memory.is_none() && a.kernel.is_none();
    let facts = planning_here.then(|| {
        gather::gather(&gather::Options {
            host: host.clone(),
            ..gather::Options::default()
        })
    });
    let ram = match (a.memory, facts.as_ref().and_then(|f| f.mem_total)) {
        (Some(m), _) | (None, Some(m)) => m,
        (None, None) => root
            .read("/proc/meminfo", "")
            .ok()
            .and_then(|t| slab::parse_memtotal(&t))
            .context("cannot read MemTotal from /proc/meminfo: pass --memory")?,
    };
    let kernel_text = match &a.kernel {
        Some(k) => k.clone(),
        None => root
            .read("/proc/sys/kernel/osrelease", "")
            .map_err(|e| anyhow::anyhow!("{e}: pass --kernel"))?,
    };
    let kernel = Version::parse(&kernel_text)
        .ok()
        .with_context(|| format!("cannot parse kernel version {kernel_text:?}"))?;
    let cpus = a.cpus.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
    });
    let current_timeouts = facts
        .as_ref()
        .map(|f| f.timeouts.clone())
        .unwrap_or_default();
    let established = current_timeouts
        .get("nf_conntrack_tcp_timeout_established")
        .copied();
    let (entry_bytes, estimated) = match &facts {
        Some(f) => plan::object_bytes(f),
        None => (cthost::diagnose::ESTIMATED_ENTRY_BYTES, true),
    };
    let mut mix = facts.as_ref().and_then(|f| f.mix.clone());
    let mut peak = a.peak.map(|p| (p, "--peak".to_string()));
    if let Some(path) = &a.file {
        let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let (acc, report) = scan::scan(f, threads, || MixAcc {
            mix: Mix::default(),
            established,
        })
        .with_context(|| format!("reading {}", path.display()))?;
        if report.skipped > 0 {
            eprintln!(
                "ctdoctor: {} of {} lines of {} skipped as malformed",
                report.skipped,
                report.lines,
                path.display()
            );
        }
        peak.get_or_insert((acc.mix.entries, format!("entries in {}", path.display())));
        mix = Some(acc.mix);
    } else if let Some(f) = &facts {
        peak = peak.or_else(|| plan::observed_peak(f));
    }
    let (peak, peak_source) =
        peak.context("no peak: pass --peak N (or --file DUMP), or run as root on the host")?;
    let extension = match (a.entry_bytes, &facts) {
        (Some(_), _) => plan::Extension {
            bytes: 0,
            reasons: vec!["included in --entry-bytes".into()],
        },
        (None, Some(f)) => plan::extension(mix.as_ref(), &f.extension_sysctls, &f.rules.nat),
        (None, None) if mix.is_some() => plan::extension(mix.as_ref(), &Default::default(), &[]),
        (None, None) => plan::profile_extension(a.profile),
    };
    // A NAT profile NATs every forwarded connection, seen yet or not.
    let extension = if extension.bytes == 0 && a.entry_bytes.is_none() && a.profile != Profile::Web
    {
        plan::profile_extension(a.profile)
    } else {
        extension
    };
    Ok(Inputs {
        ram,
        cpus,
        kernel,
        peak,
        peak_source,
        headroom: a.headroom,
        profile: a.profile,
        budget: a.max_memory,
        entry_bytes: a.entry_bytes.unwrap_or(entry_bytes),
        entry_bytes_estimated: a.entry_bytes.is_none() && estimated,
        extension,
        current_timeouts,
        mix,
        notrack_ports: a.notrack_port.clone(),
        notrack_loopback: a.notrack_loopback,
    })
}

pub fn make_plan(a: &PlanArgs, host: &Host) -> Result<Plan> {
    Ok(plan::plan(inputs(a, host)?)?)
}

/// A plan in the `--format` it was asked in (JSON is the plan itself).
pub struct Answer {
    pub plan: Plan,
    pub format: Format,
}

impl serde::Serialize for Answer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.plan.serialize(s)
    }
}

impl crate::output::Render for Answer {
    fn text(&self, out: &mut dyn Write, _: crate::output::Style) -> std::io::Result<()> {
        let p = &self.plan;
        let text = match self.format {
            Format::Text => plan::render_text(p),
            Format::Sysctl => plan::render_sysctl(p),
            Format::Modprobe => plan::render_modprobe(p),
            Format::Nft => plan::render_nft(p),
            Format::Iptables => plan::render_iptables(p),
            Format::Json => return crate::output::json(p, out),
        };
        out.write_all(text.as_bytes())
    }
    /// The text form shows the warnings; a file format cannot.
    fn notes(&self) -> Vec<String> {
        match self.format {
            Format::Text => Vec::new(),
            _ => self
                .plan
                .warnings
                .iter()
                .map(|w| format!("warning: {w}"))
                .collect(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub plan: PlanArgs,

    /// Apply this plan (`ctdoctor plan --format json` output, or any JSON
    /// with a "settings" object) instead of planning from flags.
    #[arg(long = "plan", value_name = "FILE")]
    pub plan_file: Option<PathBuf>,

    /// Really change the system (without it: show the diff only).
    #[arg(long)]
    pub yes: bool,

    /// Also write /etc/sysctl.d/90-conntrack.conf and
    /// /etc/modprobe.d/nf_conntrack.conf (atomically, old ones journaled).
    #[arg(long)]
    pub persist: bool,

    /// Apply values the safety checks refuse.
    #[arg(long)]
    pub force: bool,

    /// Change only the timeouts (the only part writable inside a network
    /// namespace).
    #[arg(long)]
    pub timeouts_only: bool,

    /// Directory of the journal (default /var/lib/ctdoctor under the root).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Test hook: inject --fault at write N (journal, values, temp files
    /// and renames counted from 0).
    #[arg(long, hide = true)]
    pub fail_after: Option<usize>,

    /// Test hook: what --fail-after injects: error, nospace (ENOSPC),
    /// kill (stop dead, as SIGKILL), signal (SIGTERM to itself).
    #[arg(long, hide = true, default_value = "error", value_parser = parse_fault)]
    pub fault: FaultKind,
}

fn parse_fault(s: &str) -> Result<FaultKind, String> {
    Ok(match s {
        "error" => FaultKind::Error,
        "nospace" => FaultKind::NoSpace,
        "kill" => FaultKind::Kill,
        "signal" => FaultKind::Signal,
        _ => return Err("expected error, nospace, kill or signal".into()),
    })
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Directory of the journal (as given to apply).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

fn print_diff(d: &Diff, out: &mut impl Write) -> std::io::Result<()> {
    if d.values.is_empty() && d.files.is_empty() {
        writeln!(
            out,
            "nothing to change: the live values already match the plan"
        )?;
    }
    for v in &d.values {
        writeln!(out, "  {:<62} {} -> {}", v.path, v.old, v.new)?;
    }
    for f in &d.files {
        let what = if f.old.is_some() { "replace" } else { "create" };
        writeln!(out, "  {:<62} {what}", f.path)?;
    }
    Ok(())
}

/// Run apply; the exit code is 0 when applied (or nothing to do or a dry
/// run), and an error otherwise.
pub fn run_apply(a: &ApplyArgs, host: &Host, out: &mut impl Write) -> Result<()> {
    let root = host.root();
    // (settings, file header, budget, memory of a full table when the plan
    // knows it, RAM when the plan knows it)
    let (settings, header, budget, planned_memory, planned_ram) = match &a.plan_file {
        Some(path) => {
            let text = apply::write::read_plan(path).map_err(anyhow::Error::msg)?;
            let settings = Settings::from_plan_json(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            (
                settings,
                format!("# written by ctdoctor apply --plan {}\n", path.display()),
                None,
                None,
                None,
            )
        }
        None => {
            let p = make_plan(&a.plan, host)?;
            // The plan's warnings matter as much when applying it.
            for w in &p.warnings {
                writeln!(out, "warning: {w}")?;
            }
            let budget = p.inputs.budget.map(|b| b.bytes(p.inputs.ram));
            let memory = Some(p.memory_at_max);
            (
                p.settings.clone(),
                format!(
                    "# written by ctdoctor apply (profile {})\n",
                    p.inputs.profile.name()
                ),
                budget,
                memory,
                Some(p.inputs.ram),
            )
        }
    };
    if !a.timeouts_only
        && host.has_kernel()
        && let (Some(here), Some(init)) = (
            cthost::namespaces::current_inode(),
            cthost::namespaces::init_inode(root),
        )
        && here != init
    {
        return Err(
            apply::ApplyError::NotInitNamespace("nf_conntrack_max or hashsize".into()).into(),
        );
    }
    let files = if a.persist {
        vec![
            (
                SYSCTL_FILE.to_string(),
                plan::sysctl_body(&header, &settings),
            ),
            (
                MODPROBE_FILE.to_string(),
                plan::modprobe_body(&header, &settings),
            ),
        ]
    } else {
        vec![]
    };
    let journal = apply::journal_path(root, a.state_dir.as_deref())?;
    // With --yes, lock before reading the live values: the diff becomes the
    // journal's `old` values, which another apply or rollback must not
    // change in between (a dry run writes nothing and takes no lock).
    let lock = if a.yes {
        Some(apply::lock::take(
            apply::lock::state_dir_of(&journal),
            apply::lock::LOCK_WAIT,
        )?)
    } else {
        None
    };
    let d = apply::diff(root, &settings, a.timeouts_only, &files)?;
    // A plan file carries no entry size: estimate as check does.
    let memory = planned_memory.unwrap_or(plan::sizing::table_memory(
        settings.nf_conntrack_max,
        settings.hashsize,
        cthost::diagnose::ESTIMATED_ENTRY_BYTES,
    ));
    // Without a plan, the target is the machine under the root.
    let ram = planned_ram.or_else(|| {
        root.read("/proc/meminfo", "")
            .ok()
            .and_then(|t| slab::parse_memtotal(&t))
    });
    if ram.is_none() && !a.timeouts_only {
        writeln!(
            out,
            "warning: MemTotal unreadable under the root: the {}%-of-RAM check is skipped",
            apply::SAFE_RAM_PERCENT
        )?;
    }
    let mut refusals = if a.timeouts_only {
        vec![]
    } else {
        apply::safety(&settings, d.count, memory, budget, ram)
    };
    refusals.extend(apply::timeout_refusals(&settings));
    writeln!(out, "changes:")?;
    print_diff(&d, out)?;
    if !refusals.is_empty() && !a.force {
        return Err(apply::ApplyError::Unsafe(refusals).into());
    }
    let Some(lock) = lock else {
        writeln!(out, "dry run: nothing changed; pass --yes to apply")?;
        return Ok(());
    };
    if d.values.is_empty() && d.files.is_empty() {
        return Ok(());
    }
    let fault = Fault {
        at: a.fail_after,
        kind: a.fault,
    };
    let done = apply::apply_locked(root, &journal, &lock, &d, fault)?;
    let j = &done.journal;
    if done.stacked {
        writeln!(
            out,
            "stacked on the journal of {} (not rolled back): rollback returns to the values from before it",
            j.created
        )?;
    }
    writeln!(
        out,
        "applied {} values and {} files; journal {} (ctdoctor rollback restores them)",
        d.values.len(),
        d.files.len(),
        journal.display()
    )?;
    Ok(())
}

pub fn run_rollback(a: &RollbackArgs, host: &Host, out: &mut impl Write) -> Result<()> {
    let root = host.root();
    let path = apply::journal_path(root, a.state_dir.as_deref())?;
    let j = match apply::rollback(root, &path, Fault::default())? {
        RolledBack::Done(j) => j,
        RolledBack::NoJournal => {
            writeln!(
                out,
                "nothing to roll back: no journal at {}; nothing changed",
                path.display()
            )?;
            return Ok(());
        }
        RolledBack::AlreadyDone(j) => {
            writeln!(
                out,
                "nothing to roll back: the journal of {} was rolled back at {}; nothing changed",
                j.created,
                j.rolled_back.as_deref().unwrap_or("an earlier run")
            )?;
            return Ok(());
        }
    };
    for v in &j.values {
        writeln!(out, "  {:<62} {}", v.path, v.old)?;
    }
    for f in &j.files {
        let what = if f.old.is_some() {
            "restored"
        } else {
            "removed"
        };
        writeln!(out, "  {:<62} {what}", f.path)?;
    }
    writeln!(
        out,
        "rolled back the journal of {} ({} values, {} files)",
        j.created,
        j.values.len(),
        j.files.len()
    )?;
    if j.values.is_empty() && j.files.is_empty() {
        bail!("the journal was empty");
    }
    Ok(())
}
