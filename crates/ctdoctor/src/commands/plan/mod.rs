//! `ctdoctor plan`: turn host facts (or the machine described by flags)
//! into plan inputs, plan with ctcore's policy, and answer in the format
//! asked (text, sysctl.d, modprobe.d, nft, iptables, JSON). `apply` takes
//! the same flags ([`PlanArgs`]) and [`make_plan`].

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use ctcore::version::Version;
use cthost::Host;
use cthost::gather::{self, Mix};
use cthost::plan::{self, Budget, Inputs, Plan, Port, Profile};
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
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(cthost::slab::ENTRY_BYTES))]
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
            cthost::apply::shorten(&format!("{s:?}")),
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
    let (peak, peak_source) = peak.with_context(|| {
        if planning_here {
            "no peak: pass --peak N (or --file DUMP), or run as root on the host"
        } else {
            "no peak: --memory or --kernel plans for another machine, so this host's count is not used: pass --peak N (or --file DUMP)"
        }
    })?;
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
    let mut p = plan::plan(inputs(a, host)?)?;
    // Whether --persist also writes the modules-load.d file: this host's
    // nf_conntrack (under --root), as apply decides it.
    p.set_boot_load(cthost::drift::boot_load(host.root()));
    // Planned inside a non-init namespace (`--netns`): whether that
    // namespace has its own max, and what the planned one means there.
    // Only for this host's facts: another machine's are not read.
    if a.memory.is_none()
        && a.kernel.is_none()
        && let Some(n) = cthost::counts::here_and_init(host)
    {
        p.set_netns(&n.name, n.support, n.init, n.own);
    }
    Ok(p)
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
