//! `plan`: sizing nf_conntrack_max and the hash table, per-state timeouts
//! and NOTRACK rules, for the kernel actually targeted. Pure: inputs in,
//! a [`Plan`] out, every number with its reason; renderers produce the
//! sysctl.d, modprobe.d, nftables and iptables files.

use std::collections::BTreeMap;

use crate::diagnose::{ESTIMATED_ENTRY_BYTES, mib};
use crate::facts::{Facts, Mix};

/// A kernel version, `major.minor`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Kernel {
    pub major: u32,
    pub minor: u32,
}

impl Kernel {
    /// From `5.15.0-91-generic`, `6.18.44-fc-v657`, `4.19`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty());
        Some(Self {
            major: it.next()?.parse().ok()?,
            minor: it.next().and_then(|m| m.parse().ok()).unwrap_or(0),
        })
    }
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

pub mod sizing;

pub use sizing::{
    DEFAULT_HEADROOM, Demand, Extension, Limit, TableSize, extension, kernel_default,
    round_buckets, size,
};

/// What the host does, which sets the timeout policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Serves connections itself: no NAT, clients should keep alive.
    Web,
    /// Translates for others: RFC 5382/4787/5508 minimums apply.
    NatGateway,
    /// Kubernetes node: kube-proxy's own defaults (it sets these itself).
    K8sNode,
    /// Forwards (and often NATs) for others: like a NAT gateway.
    Router,
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "web" => Ok(Self::Web),
            "nat-gateway" => Ok(Self::NatGateway),
            "k8s-node" => Ok(Self::K8sNode),
            "router" => Ok(Self::Router),
            _ => Err(format!(
                "unknown profile {s:?} (web, nat-gateway, k8s-node, router)"
            )),
        }
    }
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::NatGateway => "nat-gateway",
            Self::K8sNode => "k8s-node",
            Self::Router => "router",
        }
    }

    fn nat(self) -> bool {
        matches!(self, Self::NatGateway | Self::Router)
    }
}

/// A memory budget: a share of RAM or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Budget {
    Percent(f64),
    Bytes(u64),
}

impl Budget {
    pub fn bytes(self, ram: u64) -> u64 {
        match self {
            Self::Percent(p) => (ram as f64 * p / 100.0) as u64,
            Self::Bytes(b) => b,
        }
    }
}

/// Parse `8GiB`, `512M`, `1048576`, `2.5G` (K/M/G/T are powers of 1024 too,
/// as sysadmins mean them for RAM).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with an optional unit"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        u => {
            return Err(format!(
                "{s:?}: unknown unit {u:?} (K, M, G, T, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    if !n.is_finite() || n < 0.0 {
        return Err(format!("{s:?}: must be positive"));
    }
    Ok((n * mult as f64) as u64)
}

/// The smallest RAM `--memory` accepts: below this no kernel boots with
/// conntrack, and 0 would make every share of RAM meaningless.
pub const MIN_MEMORY: u64 = 1 << 20;

/// `--memory`: a size of at least 1 MiB.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if n < MIN_MEMORY {
        return Err(format!(
            "{s:?}: RAM must be at least 1 MiB ({MIN_MEMORY} bytes)"
        ));
    }
    Ok(n)
}

/// `--headroom`: a finite number of at least 1 (a peak x headroom that
/// exceeds the kernel's limit is clamped and reported by the plan).
pub fn parse_headroom(s: &str) -> Result<f64, String> {
    let h: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected a number of at least 1 (e.g. 1.5, 2)"))?;
    if !h.is_finite() || h < 1.0 {
        return Err(format!(
            "{s:?}: must be a finite number of at least 1 (1 = exactly the peak)"
        ));
    }
    Ok(h)
}

/// `2%` or a size.
pub fn parse_budget(s: &str) -> Result<Budget, String> {
    match s.trim().strip_suffix('%') {
        Some(p) => {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?}: expected PERCENT%"))?;
            if !(0.0..=100.0).contains(&p) || p == 0.0 {
                return Err(format!("{s:?}: percent must be in (0, 100]"));
            }
            Ok(Budget::Percent(p))
        }
        None => parse_size(s).map(Budget::Bytes),
    }
}

/// A port to exempt from tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Port {
    pub port: u16,
    pub udp: bool,
}

impl Port {
    /// `80`, `443/tcp`, `53/udp`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (num, proto) = s.trim().split_once('/').unwrap_or((s.trim(), "tcp"));
        let port: u16 = num
            .parse()
            .map_err(|_| format!("{s:?}: expected PORT or PORT/tcp|udp"))?;
        if port == 0 {
            return Err(format!("{s:?}: port 0"));
        }
        let udp = match proto {
            "tcp" => false,
            "udp" => true,
            _ => return Err(format!("{s:?}: protocol must be tcp or udp")),
        };
        Ok(Self { port, udp })
    }

    fn proto(self) -> &'static str {
        if self.udp { "udp" } else { "tcp" }
    }
}

/// Everything a plan is computed from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inputs {
    pub ram: u64,
    pub cpus: u32,
    pub kernel: Kernel,
    /// Peak number of entries to size for, and where it came from.
    pub peak: u64,
    pub peak_source: String,
    pub headroom: f64,
    pub profile: Profile,
    pub budget: Option<Budget>,
    /// Bytes per entry (slab object size), and whether it is an estimate.
    pub entry_bytes: u64,
    pub entry_bytes_estimated: bool,
    /// The extension area added to every entry, and why.
    pub extension: Extension,
    /// Current timeouts (sysctl name -> seconds), when planning for this host.
    pub current_timeouts: BTreeMap<String, u64>,
    /// The observed mix, when known.
    pub mix: Option<Mix>,
    pub notrack_ports: Vec<Port>,
    pub notrack_loopback: bool,
}

/// The values `apply` writes: the machine-readable core of a plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    pub nf_conntrack_max: u64,
    pub hashsize: u64,
    /// sysctl file name under /proc/sys/net/netfilter -> seconds.
    pub timeouts: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TimeoutPlan {
    pub sysctl: String,
    pub current: Option<u64>,
    pub value: u64,
    pub floor: u64,
    pub floor_source: &'static str,
    pub reason: String,
    /// Expected steady-state effect, when the mix is known.
    pub effect: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub settings: Settings,
    pub kernel_default_buckets: u64,
    pub kernel_default_max: u64,
    /// Bytes at max: max x entry size + 8 x buckets.
    pub memory_at_max: u64,
    pub memory_share_percent: f64,
    /// The sizing policy's numbers: wanted, limits, whether the peak fits.
    pub table: TableSize,
    pub sizing: Vec<String>,
    pub warnings: Vec<String>,
    pub timeouts: Vec<TimeoutPlan>,
    pub notrack_ports: Vec<Port>,
    pub notrack_loopback: bool,
    pub inputs: Inputs,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "the memory budget ({budget} bytes) holds at most {cap} entries, below the peak of {peak}: raise --max-memory, or lower the peak with NOTRACK rules"
    )]
    BudgetBelowPeak { budget: u64, cap: u64, peak: u64 },
    #[error("--headroom must be at least 1 (got {0})")]
    Headroom(String),
}

/// (sysctl, web, nat-gateway/router, k8s-node, floor for hosts, floor for
/// NAT profiles, floor source, why)
type TimeoutRule = (
    &'static str,
    u64,
    u64,
    u64,
    u64,
    u64,
    &'static str,
    &'static str,
);

const TIMEOUTS: &[TimeoutRule] = &[
    (
        "nf_conntrack_tcp_timeout_established",
        3600,
        7440,
        86_400,
        600,
        7440,
        "NAT: RFC 5382 REQ-5 (2 h 4 min); hosts: above the applications' idle time (TCP keepalive starts at 7200 s by default)",
        "idle flows are the bulk of a full table; 432000 s (5 days) keeps dead peers for days",
    ),
    (
        "nf_conntrack_tcp_timeout_time_wait",
        120,
        120,
        120,
        120,
        120,
        "2 x MSL: the kernel's TIME_WAIT is 2 x 60 s (TCP_TIMEWAIT_LEN)",
        "shorter lets late segments of an old connection hit a new one",
    ),
    (
        "nf_conntrack_tcp_timeout_close_wait",
        60,
        60,
        3600,
        60,
        60,
        "kernel default 60 s; kube-proxy sets 3600 s (--conntrack-tcp-timeout-close-wait)",
        "half-closed connections whose application has not closed yet",
    ),
    (
        "nf_conntrack_tcp_timeout_fin_wait",
        120,
        120,
        120,
        60,
        60,
        "kernel default 120 s",
        "closing connections waiting for the peer's FIN",
    ),
    (
        "nf_conntrack_tcp_timeout_syn_sent",
        60,
        120,
        120,
        60,
        60,
        "covers 5 SYN retransmissions (1+2+4+8+16+32 s); kernel default 120 s",
        "unanswered SYNs (scans, dead backends) hold entries this long",
    ),
    (
        "nf_conntrack_tcp_timeout_syn_recv",
        60,
        60,
        60,
        60,
        60,
        "kernel default 60 s",
        "SYN floods fill the table with these",
    ),
    (
        "nf_conntrack_udp_timeout",
        30,
        30,
        30,
        30,
        30,
        "kernel default 30 s",
        "one-shot UDP (DNS): unreplied or single exchanges",
    ),
    (
        "nf_conntrack_udp_timeout_stream",
        120,
        120,
        120,
        120,
        120,
        "NAT: RFC 4787 REQ-5 (UDP mappings at least 2 min); kernel default 120 s",
        "UDP flows with traffic both ways",
    ),
    (
        "nf_conntrack_icmp_timeout",
        30,
        60,
        30,
        30,
        60,
        "NAT: RFC 5508 REQ-1 (ICMP query mappings at least 60 s); kernel default 30 s",
        "echo requests and replies",
    ),
];

/// Below this many entries the mix says nothing about idle flows.
const MIX_MIN_ENTRIES: u64 = 1000;

/// The TCP state whose count a timeout governs, for the effect estimate.
fn state_of(sysctl: &str) -> Option<&'static str> {
    Some(match sysctl {
        "nf_conntrack_tcp_timeout_established" => "ESTABLISHED",
        "nf_conntrack_tcp_timeout_time_wait" => "TIME_WAIT",
        "nf_conntrack_tcp_timeout_close_wait" => "CLOSE_WAIT",
        "nf_conntrack_tcp_timeout_fin_wait" => "FIN_WAIT",
        "nf_conntrack_tcp_timeout_syn_sent" => "SYN_SENT",
        "nf_conntrack_tcp_timeout_syn_recv" => "SYN_RECV",
        _ => return None,
    })
}

fn plan_timeouts(i: &Inputs) -> Vec<TimeoutPlan> {
    TIMEOUTS
        .iter()
        .map(|&(sysctl, web, nat, k8s, host_floor, nat_floor, floor_source, why)| {
            let current = i.current_timeouts.get(sysctl).copied();
            let profile_value = match i.profile {
                Profile::Web => web,
                Profile::NatGateway | Profile::Router => nat,
                Profile::K8sNode => k8s,
            };
            let floor = if i.profile.nat() { nat_floor } else { host_floor };
            let mut value = profile_value.max(floor);
            let mut reason = format!("{} profile: {why}", i.profile.name());
            // Established: lowering pays only where idle entries are many.
            if sysctl == "nf_conntrack_tcp_timeout_established"
                && let (Some(mix), Some(cur)) = (&i.mix, current)
                && cur > value
                && mix.entries >= MIX_MIN_ENTRIES
            {
                let share = mix.established_idle_1h as f64 * 100.0 / mix.entries.max(1) as f64;
                if share < 5.0 {
                    value = cur;
                    reason = format!(
                        "kept: only {share:.1}% of entries are ESTABLISHED and idle for over an hour, lowering frees little"
                    );
                } else {
                    reason = format!("{share:.0}% of the table is ESTABLISHED and idle for over an hour: {why}");
                }
            }
            let effect = match (&i.mix, current, state_of(sysctl)) {
                (Some(mix), Some(_), Some("ESTABLISHED")) if mix.state("ESTABLISHED") > 0 => Some(format!(
                    "ESTABLISHED: {} now, {} of them idle for over an hour; traffic refreshes the others, so only entries idle longer than {value} s expire sooner",
                    mix.state("ESTABLISHED"),
                    mix.established_idle_1h
                )),
                (Some(mix), Some(cur), Some(state)) if cur > 0 && mix.state(state) > 0 => {
                    // Entries leave these states by timing out, so by Little's
                    // law (N = arrivals x time in state) arrivals = N / T.
                    let n = mix.state(state);
                    let rate = n as f64 / cur as f64;
                    Some(format!(
                        "{state}: {n} now = {rate:.2} arrivals/s x {cur} s; steady state {rate:.2}/s x {value} s = {:.0}",
                        rate * value as f64
                    ))
                }
                _ => None,
            };
            TimeoutPlan { sysctl: sysctl.to_string(), current, value, floor, floor_source, reason, effect }
        })
        .collect()
}

impl Inputs {
    /// Bytes per entry: slab object plus extension area (saturating).
    pub fn entry_total(&self) -> u64 {
        self.entry_bytes.saturating_add(self.extension.bytes)
    }

    /// What the one sizing policy takes from these inputs.
    pub fn demand(&self) -> Demand {
        Demand {
            peak: self.peak,
            headroom: self.headroom,
            ram: self.ram,
            kernel: self.kernel,
            entry_bytes: self.entry_total(),
            budget: self.budget.map(|b| b.bytes(self.ram)),
        }
    }
}

/// The kernel assumed when the host's version is unreadable: the 5.15+
/// sizing rules, current on every supported distribution.
const FALLBACK_KERNEL: Kernel = Kernel {
    major: 5,
    minor: 15,
};

/// The peak a host's facts show: the live count, or max when the drop
/// counter says the table has been full (demand reached at least max).
pub fn observed_peak(f: &Facts) -> Option<(u64, String)> {
    let count = f.count.or(f.mix.as_ref().map(|m| m.entries))?;
    let drops = f
        .counters
        .as_ref()
        .and_then(|c| c.values.get("drop"))
        .copied()
        .unwrap_or(0);
    Some(match f.max {
        Some(max) if drops > 0 && max > count => (
            max,
            format!("nf_conntrack_max: the table has been full ({drops} packets dropped)"),
        ),
        _ => (count, "live count".into()),
    })
}

/// Slab object size from the facts, or the estimate, and whether estimated.
pub fn object_bytes(f: &Facts) -> (u64, bool) {
    match f.slab {
        Some(s) => (s.objsize, false),
        None => (ESTIMATED_ENTRY_BYTES, true),
    }
}

/// Plan inputs for the host the facts describe (web profile, default
/// headroom, no budget, no NOTRACK): what `check` sizes with, and what
/// `plan` starts from before its flags. `None` without a count.
pub fn host_inputs(f: &Facts, cpus: u32) -> Option<Inputs> {
    let (peak, peak_source) = observed_peak(f)?;
    let (entry_bytes, entry_bytes_estimated) = object_bytes(f);
    Some(Inputs {
        ram: f.mem_total.unwrap_or(0),
        cpus,
        kernel: f
            .kernel
            .as_deref()
            .and_then(Kernel::parse)
            .unwrap_or(FALLBACK_KERNEL),
        peak,
        peak_source,
        headroom: DEFAULT_HEADROOM,
        profile: Profile::Web,
        budget: None,
        entry_bytes,
        entry_bytes_estimated,
        extension: extension(f.mix.as_ref(), &f.extension_sysctls, &f.rules.nat),
        current_timeouts: f.timeouts.clone(),
        mix: f.mix.clone(),
        notrack_ports: vec![],
        notrack_loopback: false,
    })
}

/// The new max `check` suggests: the same policy and inputs as `plan` run
/// without flags on this host, so the two never disagree.
pub fn suggest(f: &Facts) -> Option<TableSize> {
    host_inputs(f, 1).map(|i| size(&i.demand()))
}

/// The extension area assumed for a profile when the table cannot be
/// seen (planning for another machine): NAT profiles NAT every forwarded
/// connection, and kube-proxy NATs every service connection.
pub fn profile_extension(profile: Profile) -> Extension {
    match profile {
        Profile::Web => Extension {
            bytes: 0,
            reasons: vec!["web profile: no NAT, accounting or timestamps assumed".into()],
        },
        p => Extension {
            bytes: sizing::EXTENSION_BYTES,
            reasons: vec![format!("{} profile: NAT assumed on every entry", p.name())],
        },
    }
}

/// Compute a plan.
pub fn plan(i: Inputs) -> Result<Plan, PlanError> {
    // Also rejects NaN.
    if i.headroom.partial_cmp(&1.0).is_none_or(|o| o.is_lt()) {
        return Err(PlanError::Headroom(i.headroom.to_string()));
    }
    let t = size(&i.demand());
    let (def_b, def_max) = (t.default_buckets, t.default_max);
    let mut sizing = Vec::new();
    let mut warnings = Vec::new();
    sizing.push(format!(
        "peak {} ({}) x headroom {} = {}",
        i.peak, i.peak_source, i.headroom, t.wanted
    ));
    sizing.push(format!(
        "kernel {} with {} RAM would choose {def_b} buckets and max {def_max} by itself{}",
        i.kernel,
        mib(i.ram),
        if i.kernel
            >= (Kernel {
                major: 5,
                minor: 15
            })
        {
            " (5.15+: max = buckets, average chain 2)"
        } else {
            " (before 5.15: max = 4 x buckets, average chain 8)"
        }
    ));
    if t.wanted < def_max {
        sizing.push(format!(
            "the kernel default {def_max} already covers it: never plan below the default"
        ));
    }
    match t.limit {
        Some(Limit::Budget { cap }) => {
            let b = i.budget.map_or(0, |b| b.bytes(i.ram));
            if cap < i.peak {
                return Err(PlanError::BudgetBelowPeak {
                    budget: b,
                    cap,
                    peak: i.peak,
                });
            }
            warnings.push(format!(
                "capped by the memory budget {}: {} entries would need {}",
                mib(b),
                t.wanted.max(def_max),
                mib(t
                    .wanted
                    .max(def_max)
                    .saturating_mul(i.entry_total().saturating_add(8)))
            ));
        }
        Some(Limit::Kernel) if !t.covers_peak => warnings.push(format!(
            "the peak of {} entries cannot be covered: nf_conntrack_max is an int, at most {} (as a multiple of 512); planned that limit: exempt traffic from tracking (--notrack-port) or spread it over more hosts",
            i.peak,
            sizing::MAX_MAX
        )),
        Some(Limit::Kernel) => warnings.push(format!(
            "peak x headroom = {} is above the kernel's limit (nf_conntrack_max is an int): planned {}, which leaves a headroom of only {:.2} over the peak",
            t.wanted,
            t.max,
            t.max as f64 / i.peak.max(1) as f64
        )),
        None => {}
    }
    let (max, buckets) = (t.max, t.buckets);
    if buckets == max {
        sizing.push(format!(
            "max = buckets = {max}: a multiple of 512 (the kernel rounds buckets up to whole pages), average chain length 2 when full (each entry is hashed twice)"
        ));
    } else {
        sizing.push(format!(
            "max = {max}, buckets = {buckets}: the kernel allocates at most {} buckets (nf_ct_alloc_hashtable), so chains average {:.1} when full",
            sizing::MAX_BUCKETS,
            max as f64 * 2.0 / buckets as f64
        ));
    }
    sizing.push(
        "hashsize set explicitly makes the kernel's own default max 8 x buckets at the next boot; the sysctl.d file sets max itself, so the ratio stays 1"
            .to_string(),
    );
    let memory_at_max = t.memory_at_max;
    let share = sizing::share_of(memory_at_max, i.ram);
    sizing.push(format!(
        "memory at max: {max} x {} B ({} B {}, {}) + {buckets} x 8 B = {} ({share:.2}% of RAM)",
        i.entry_total(),
        i.entry_bytes,
        if i.entry_bytes_estimated {
            "estimate: another machine, or slabinfo unreadable"
        } else {
            "slab object size"
        },
        i.extension.describe(),
        mib(memory_at_max)
    ));
    if i.budget.is_none() && share > 10.0 {
        warnings.push(format!(
            "a full table would take {share:.0}% of RAM: consider --max-memory"
        ));
    }
    let timeouts = plan_timeouts(&i);
    let settings = Settings {
        nf_conntrack_max: max,
        hashsize: buckets,
        timeouts: timeouts
            .iter()
            .map(|t| (t.sysctl.clone(), t.value))
            .collect(),
    };
    Ok(Plan {
        settings,
        kernel_default_buckets: def_b,
        kernel_default_max: def_max,
        memory_at_max,
        memory_share_percent: share,
        table: t,
        sizing,
        warnings,
        timeouts,
        notrack_ports: i.notrack_ports.clone(),
        notrack_loopback: i.notrack_loopback,
        inputs: i,
    })
}

fn header(p: &Plan, file: &str) -> String {
    format!(
        "# {file}: written by ctdoctor plan (profile {}, kernel {}, {} RAM, peak {} x {})\n",
        p.inputs.profile.name(),
        p.inputs.kernel,
        mib(p.inputs.ram),
        p.inputs.peak,
        p.inputs.headroom
    )
}

/// Body of /etc/sysctl.d/90-conntrack.conf.
pub fn render_sysctl(p: &Plan) -> String {
    sysctl_body(&header(p, "/etc/sysctl.d/90-conntrack.conf"), &p.settings)
}

/// The sysctl.d body for `settings`, after a comment `header`.
pub fn sysctl_body(header: &str, settings: &Settings) -> String {
    let mut s = header.to_string();
    s.push_str(&format!(
        "net.netfilter.nf_conntrack_max = {}\n",
        settings.nf_conntrack_max
    ));
    s.push_str("# resizes the hash table at boot (initial namespace; also works when nf_conntrack is built in)\n");
    s.push_str(&format!(
        "net.netfilter.nf_conntrack_buckets = {}\n",
        settings.hashsize
    ));
    for (name, v) in &settings.timeouts {
        s.push_str(&format!("net.netfilter.{name} = {v}\n"));
    }
    s
}

/// Body of /etc/modprobe.d/nf_conntrack.conf.
pub fn render_modprobe(p: &Plan) -> String {
    modprobe_body(&header(p, "/etc/modprobe.d/nf_conntrack.conf"), &p.settings)
}

pub fn modprobe_body(header: &str, settings: &Settings) -> String {
    let mut s = header.to_string();
    s.push_str(
        "# Buckets set at runtime are lost at reboot, and the buckets sysctl is read-only\n",
    );
    s.push_str("# outside the initial namespace. When nf_conntrack is built into the kernel,\n");
    s.push_str(&format!(
        "# use the boot parameter nf_conntrack.hashsize={} instead.\n",
        settings.hashsize
    ));
    s.push_str(&format!(
        "options nf_conntrack hashsize={}\n",
        settings.hashsize
    ));
    s
}

const NOTRACK_CAVEATS: &str = "# Caveats: untracked packets cannot be NATed, bypass conntrack helpers, and no\n\
# longer match \"ct state established\" (they are \"untracked\"): accept them\n\
# before any stateful rule, in every filter chain that drops by state.\n";

fn ports_of(p: &Plan, udp: bool) -> Vec<u16> {
    p.notrack_ports
        .iter()
        .filter(|x| x.udp == udp)
        .map(|x| x.port)
        .collect()
}

/// A loadable nftables file (`nft -c -f` then `nft -f`).
pub fn render_nft(p: &Plan) -> String {
    let mut s = header(p, "NOTRACK rules (nftables)");
    s.push_str(NOTRACK_CAVEATS);
    s.push_str(
        "# notrack must run before conntrack (priority -200): these chains use raw (-300).\n",
    );
    s.push_str(
        "# In an existing stateful chain, also add first: ct state untracked accept, e.g.\n",
    );
    s.push_str("#   nft insert rule inet filter input ct state untracked accept\n");
    s.push_str("table inet ctdoctor_notrack {\n");
    for (chain, hook) in [("prerouting", "prerouting"), ("output", "output")] {
        s.push_str(&format!(
            "\tchain {chain} {{\n\t\ttype filter hook {hook} priority raw; policy accept;\n"
        ));
        if p.notrack_loopback {
            let dev = if hook == "output" { "oif" } else { "iif" };
            s.push_str(&format!("\t\t{dev} \"lo\" notrack\n"));
        }
        for (proto, udp) in [("tcp", false), ("udp", true)] {
            let ports = ports_of(p, udp);
            if ports.is_empty() {
                continue;
            }
            let set = ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            // Both directions and both roles: requests to the port and its replies.
            s.push_str(&format!("\t\t{proto} dport {{ {set} }} notrack\n"));
            s.push_str(&format!("\t\t{proto} sport {{ {set} }} notrack\n"));
        }
        s.push_str("\t}\n");
    }
    s.push_str("\tchain input {\n\t\ttype filter hook input priority filter - 10; policy accept;\n\t\tct state untracked accept\n\t}\n");
    s.push_str("}\n");
    s
}

/// An iptables-restore file. Load with --noflush: a plain iptables-restore
/// would flush the tables it names.
pub fn render_iptables(p: &Plan) -> String {
    let mut s = header(p, "NOTRACK rules (iptables-restore --noflush)");
    s.push_str(NOTRACK_CAVEATS);
    s.push_str(
        "# Load with: iptables-restore --test --noflush FILE && iptables-restore --noflush FILE\n",
    );
    s.push_str("*raw\n");
    for (chain, dev) in [("PREROUTING", "-i"), ("OUTPUT", "-o")] {
        if p.notrack_loopback {
            s.push_str(&format!("-A {chain} {dev} lo -j CT --notrack\n"));
        }
        for port in &p.notrack_ports {
            let proto = port.proto();
            for dir in ["--dport", "--sport"] {
                s.push_str(&format!(
                    "-A {chain} -p {proto} -m {proto} {dir} {} -j CT --notrack\n",
                    port.port
                ));
            }
        }
    }
    s.push_str("COMMIT\n*filter\n");
    for chain in ["INPUT", "FORWARD", "OUTPUT"] {
        s.push_str(&format!(
            "-I {chain} 1 -m conntrack --ctstate UNTRACKED -j ACCEPT\n"
        ));
    }
    s.push_str("COMMIT\n");
    s
}

/// The plan explained, for people.
pub fn render_text(p: &Plan) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Plan for a {} host: kernel {}, {} RAM, {} CPUs\n\n",
        p.inputs.profile.name(),
        p.inputs.kernel,
        mib(p.inputs.ram),
        p.inputs.cpus
    ));
    s.push_str(&format!(
        "nf_conntrack_max = {}   hashsize (buckets) = {}   memory at max = {}\n",
        p.settings.nf_conntrack_max,
        p.settings.hashsize,
        mib(p.memory_at_max)
    ));
    for line in &p.sizing {
        s.push_str(&format!("  - {line}\n"));
    }
    for w in &p.warnings {
        s.push_str(&format!("  ! {w}\n"));
    }
    s.push_str("\nTimeouts (seconds):\n");
    for t in &p.timeouts {
        let cur = t.current.map_or_else(|| "?".to_string(), |c| c.to_string());
        s.push_str(&format!("  {:<40} {cur:>7} -> {:<7}\n", t.sysctl, t.value));
        s.push_str(&format!("      why: {}\n", t.reason));
        s.push_str(&format!("      floor {} s: {}\n", t.floor, t.floor_source));
        if let Some(e) = &t.effect {
            s.push_str(&format!("      effect: {e}\n"));
        }
    }
    if p.notrack_loopback || !p.notrack_ports.is_empty() {
        s.push_str("\nNOTRACK: ");
        let mut what: Vec<String> = p
            .notrack_ports
            .iter()
            .map(|x| format!("{}/{}", x.port, x.proto()))
            .collect();
        if p.notrack_loopback {
            what.insert(0, "loopback".into());
        }
        s.push_str(&what.join(", "));
        s.push_str(" (ctdoctor plan --format nft | iptables for the rules)\n");
    }
    s.push_str("\nFiles: ctdoctor plan --format sysctl | modprobe | nft | iptables | json\n");
    s.push_str(
        "Apply live, with a journal and rollback: ctdoctor apply (same flags) --yes [--persist]\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn k(s: &str) -> Kernel {
        Kernel::parse(s).expect("version")
    }

    #[test]
    fn kernel_defaults_by_version_and_ram() {
        // (RAM, kernel, buckets, max): read off nf_conntrack_init_start of
        // each version (64-bit), buckets rounded up to 512.
        let cases = [
            (512 * MIB, "4.19", 4096, 16_384),
            (512 * MIB, "5.10", 4096, 16_384),
            (512 * MIB, "5.15", 4096, 4096),
            (512 * MIB, "6.18", 4096, 4096),
            (2 * GIB, "4.19", 16_384, 65_536),
            (2 * GIB, "5.10", 16_384, 65_536),
            (2 * GIB, "5.15", 65_536, 65_536),
            (2 * GIB, "6.1", 65_536, 65_536),
            (8 * GIB, "4.19", 65_536, 262_144),
            (8 * GIB, "5.10", 65_536, 262_144),
            (8 * GIB, "5.15", 262_144, 262_144),
            (8 * GIB, "6.18", 262_144, 262_144),
            (64 * GIB, "4.19", 65_536, 262_144),
            (64 * GIB, "5.10", 65_536, 262_144),
            (64 * GIB, "5.15", 262_144, 262_144),
            (64 * GIB, "6.18", 262_144, 262_144),
            (512 * GIB, "4.19", 65_536, 262_144),
            (512 * GIB, "5.10", 65_536, 262_144),
            (512 * GIB, "5.15", 262_144, 262_144),
            (512 * GIB, "6.1", 262_144, 262_144),
            (100 * MIB, "6.18", 1024, 1024), // formula 800, minimum 1024
            (100 * MIB, "5.10", 1024, 4096), // formula 800 -> rounded to 1024
            (8 * GIB, "3.10", 16_384, 65_536), // no 4 GiB tier before 4.x
        ];
        for (ram, v, b, m) in cases {
            assert_eq!(
                kernel_default(ram, k(v), None),
                (b, m),
                "{} MiB on {v}",
                ram / MIB
            );
        }
        // An explicit hashsize= makes max 8 x buckets, rounded to 512.
        assert_eq!(
            kernel_default(8 * GIB, k("6.18"), Some(100_000)),
            (100_352, 802_816)
        );
    }

    fn inputs(ram: u64, kernel: &str, peak: u64) -> Inputs {
        Inputs {
            ram,
            cpus: 4,
            kernel: k(kernel),
            peak,
            peak_source: "--peak".into(),
            headroom: 2.0,
            profile: Profile::Web,
            budget: None,
            entry_bytes: 256,
            entry_bytes_estimated: false,
            extension: Extension::default(),
            current_timeouts: BTreeMap::new(),
            mix: None,
            notrack_ports: vec![],
            notrack_loopback: false,
        }
    }

    #[test]
    fn sizing_follows_peak_and_never_goes_below_the_default() {
        // (RAM, kernel, peak, expected max = buckets)
        let cases = [
            (512 * MIB, "4.19", 1_000, 16_384), // default max 16384 covers 2000
            (512 * MIB, "6.18", 1_000, 4_096),
            (2 * GIB, "5.10", 100_000, 200_192), // 200000 rounded up to 512
            (8 * GIB, "5.15", 100_000, 262_144), // default covers 200000
            (64 * GIB, "6.18", 1_000_000, 2_000_384),
            (512 * GIB, "6.18", 10_000_000, 20_000_256),
        ];
        for (ram, v, peak, want) in cases {
            let p = plan(inputs(ram, v, peak)).expect("plan");
            assert_eq!(
                (p.settings.nf_conntrack_max, p.settings.hashsize),
                (want, want),
                "{v} peak {peak}"
            );
            assert_eq!(p.memory_at_max, want * 256 + want * 8);
        }
    }

    #[test]
    fn budget_caps_or_refuses() {
        let mut i = inputs(8 * GIB, "6.18", 1_000_000);
        i.budget = Some(Budget::Bytes(400 * MIB));
        let p = plan(i.clone()).expect("capped");
        // 400 MiB / 264 B = 1588751 -> down to a multiple of 512
        assert_eq!(p.settings.nf_conntrack_max, 1_588_736);
        assert_eq!(p.warnings.len(), 1);
        i.budget = Some(Budget::Percent(1.0)); // 85.9 MB: 325,000 entries < peak
        assert!(matches!(plan(i), Err(PlanError::BudgetBelowPeak { .. })));
    }

    #[test]
    fn timeouts_by_profile_respect_floors() {
        let get = |p: &Plan, name: &str| p.settings.timeouts[name];
        let mut i = inputs(8 * GIB, "6.18", 1000);
        let web = plan(i.clone()).expect("plan");
        assert_eq!(get(&web, "nf_conntrack_tcp_timeout_established"), 3600);
        assert_eq!(get(&web, "nf_conntrack_icmp_timeout"), 30);
        i.profile = Profile::NatGateway;
        let nat = plan(i.clone()).expect("plan");
        assert_eq!(get(&nat, "nf_conntrack_tcp_timeout_established"), 7440); // RFC 5382
        assert_eq!(get(&nat, "nf_conntrack_udp_timeout_stream"), 120); // RFC 4787
        assert_eq!(get(&nat, "nf_conntrack_icmp_timeout"), 60); // RFC 5508
        assert!(
            nat.timeouts
                .iter()
                .any(|t| t.sysctl == "nf_conntrack_icmp_timeout" && t.floor == 60)
        );
        i.profile = Profile::K8sNode;
        let k8s = plan(i.clone()).expect("plan");
        assert_eq!(get(&k8s, "nf_conntrack_tcp_timeout_established"), 86_400);
        assert_eq!(get(&k8s, "nf_conntrack_tcp_timeout_close_wait"), 3600);
        for p in [&web, &nat, &k8s] {
            assert!(p.timeouts.iter().all(|t| t.value >= t.floor));
            assert_eq!(get(p, "nf_conntrack_tcp_timeout_time_wait"), 120);
        }
    }

    #[test]
    fn mix_decides_established_and_effect() {
        let mut i = inputs(8 * GIB, "6.18", 100_000);
        i.current_timeouts = [
            ("nf_conntrack_tcp_timeout_established".to_string(), 432_000),
            ("nf_conntrack_tcp_timeout_time_wait".to_string(), 120),
        ]
        .into();
        i.mix = Some(Mix {
            entries: 100_000,
            established_idle_1h: 60_000,
            tcp_state: [
                ("ESTABLISHED".to_string(), 80_000),
                ("TIME_WAIT".to_string(), 12_000),
            ]
            .into(),
            ..Mix::default()
        });
        let p = plan(i.clone()).expect("plan");
        let est = &p.timeouts[0];
        assert_eq!(est.value, 3600);
        assert!(est.reason.starts_with("60% of the table"), "{}", est.reason);
        assert!(
            est.effect
                .as_deref()
                .is_some_and(|e| e.starts_with("ESTABLISHED: 80000 now, 60000 of them idle")),
            "{:?}",
            est.effect
        );
        // Little's law for TIME_WAIT: 12000 / 120 s = 100/s; x 120 s = 12000.
        let tw = &p.timeouts[1];
        assert!(
            tw.effect
                .as_deref()
                .is_some_and(|e| e.ends_with("steady state 100.00/s x 120 s = 12000")),
            "{:?}",
            tw.effect
        );
        // Few idle entries: keep the current value.
        if let Some(m) = i.mix.as_mut() {
            m.established_idle_1h = 1_000;
        }
        assert_eq!(plan(i).expect("plan").timeouts[0].value, 432_000);
    }

    #[test]
    fn parsers() {
        assert_eq!(parse_size("8GiB"), Ok(8 * GIB));
        assert_eq!(parse_size("512M"), Ok(512 * MIB));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("8 parsecs").is_err());
        assert_eq!(parse_budget("2%"), Ok(Budget::Percent(2.0)));
        assert!(parse_budget("0%").is_err());
        assert_eq!(
            Port::parse("53/udp"),
            Ok(Port {
                port: 53,
                udp: true
            })
        );
        assert_eq!(
            Port::parse("443"),
            Ok(Port {
                port: 443,
                udp: false
            })
        );
        assert!(Port::parse("70000").is_err() && Port::parse("80/sctp").is_err());
        assert_eq!(
            k("5.15.0-91-generic"),
            Kernel {
                major: 5,
                minor: 15
            }
        );
    }

    #[test]
    fn renderers() {
        let mut i = inputs(8 * GIB, "6.18", 100_000);
        i.notrack_ports = vec![
            Port {
                port: 80,
                udp: false,
            },
            Port {
                port: 53,
                udp: true,
            },
        ];
        i.notrack_loopback = true;
        let p = plan(i).expect("plan");
        let sysctl = render_sysctl(&p);
        assert!(sysctl.contains("net.netfilter.nf_conntrack_max = 262144\n"));
        assert!(sysctl.contains("net.netfilter.nf_conntrack_tcp_timeout_established = 3600\n"));
        assert!(render_modprobe(&p).contains("\noptions nf_conntrack hashsize=262144\n"));
        let nft = render_nft(&p);
        assert!(
            nft.contains("priority raw;")
                && nft.contains("iif \"lo\" notrack")
                && nft.contains("udp dport { 53 } notrack")
        );
        assert!(nft.contains("ct state untracked accept"));
        let ipt = render_iptables(&p);
        assert!(ipt.contains("-A PREROUTING -p tcp -m tcp --dport 80 -j CT --notrack\n"));
        assert!(ipt.contains("-I INPUT 1 -m conntrack --ctstate UNTRACKED -j ACCEPT\n"));
        assert!(render_text(&p).contains("nf_conntrack_max = 262144"));
    }

    /// A 6.18 host with 24 GiB, 256-byte slab objects and the given table.
    fn host(count: u64, max: u64, drops: u64) -> Facts {
        Facts {
            kernel: Some("6.18.44-fc-v657".into()),
            netns_inode: Some(1),
            init_netns_inode: Some(1),
            conntrack_loaded: true,
            count: Some(count),
            max: Some(max),
            buckets: Some(max),
            mix: Some(Mix {
                entries: count,
                assured: count,
                ..Mix::default()
            }),
            slab: Some(crate::slab::SlabCache {
                active_objs: count,
                num_objs: count,
                objsize: 256,
            }),
            mem_total: Some(24 * GIB),
            counters: Some(crate::facts::Counters {
                source: "test".into(),
                values: [("drop".to_string(), drops)].into(),
            }),
            ..Facts::default()
        }
    }

    fn check_suggests(f: &Facts) -> u64 {
        let r = crate::diagnose::diagnose(f, &crate::diagnose::Thresholds::default());
        let fill = r
            .findings
            .iter()
            .find(|x| x.id == "table.fill")
            .expect("table.fill");
        let cmd = fill
            .fix
            .iter()
            .find_map(|l| l.strip_prefix("sysctl -w net.netfilter.nf_conntrack_max="))
            .expect("a sysctl fix");
        cmd.parse().expect("a number")
    }

    #[test]
    fn check_and_plan_suggest_the_same_max_for_the_same_facts() {
        // (count, max, drops): 88% full without drops; full with drops;
        // a big table whose default is far below the need.
        for (count, max, drops) in [
            (230_000, 262_144, 0),
            (262_144, 262_144, 5_000),
            (1_900_000, 2_000_000, 0),
            (900, 1_000, 3),
        ] {
            let f = host(count, max, drops);
            let p = plan(host_inputs(&f, 4).expect("inputs")).expect("plan");
            assert_eq!(
                check_suggests(&f),
                p.settings.nf_conntrack_max,
                "count {count} max {max} drops {drops}"
            );
        }
        // The figures themselves, written out: 230000 x 2 rounded up to 512;
        // a full table (drops) sizes from max.
        let f = host(230_000, 262_144, 0);
        assert_eq!(check_suggests(&f), 460_288);
        assert_eq!(check_suggests(&host(262_144, 262_144, 1)), 524_288);
        assert_eq!(check_suggests(&host(900, 1_000, 3)), 262_144); // the kernel default
    }

    #[test]
    fn check_memory_counts_the_extension_area_of_nat_entries() {
        let mut f = host(1_000, 262_144, 0);
        let r = crate::diagnose::diagnose(&f, &crate::diagnose::Thresholds::default());
        assert_eq!(r.summary.extension.bytes, 0);
        assert_eq!(r.summary.memory_at_max, Some(262_144 * 256 + 262_144 * 8));
        if let Some(m) = f.mix.as_mut() {
            m.nat = 40;
            m.with_extension = 40;
        }
        let r = crate::diagnose::diagnose(&f, &crate::diagnose::Thresholds::default());
        assert_eq!(r.summary.extension.bytes, 128);
        assert_eq!(
            r.summary.memory_at_max,
            Some(262_144 * (256 + 128) + 262_144 * 8)
        );
        let mem = r
            .findings
            .iter()
            .find(|x| x.id == "memory")
            .expect("memory");
        assert!(
            mem.evidence.iter().any(|e| e
                == "+ 128 B extension area per entry: 40 of 1000 entries in the table carry one (40 NAT)"),
            "{:?}",
            mem.evidence
        );
        // The sysctl alone is enough, with the table not dumped.
        f.mix = None;
        f.extension_sysctls = [("nf_conntrack_acct".to_string(), 1)].into();
        let r = crate::diagnose::diagnose(&f, &crate::diagnose::Thresholds::default());
        assert_eq!(r.summary.extension.reasons, ["nf_conntrack_acct=1"]);
        // plan explains the same assumption.
        let mut f = host(1_000, 262_144, 0);
        f.extension_sysctls = [("nf_conntrack_timestamp".to_string(), 1)].into();
        let p = plan(host_inputs(&f, 4).expect("inputs")).expect("plan");
        assert_eq!(p.memory_at_max, 262_144 * (256 + 128) + 262_144 * 8);
        assert!(
            p.sizing.iter().any(|l| l.contains(
                "(256 B slab object size, + 128 B extension area per entry: nf_conntrack_timestamp=1)"
            )),
            "{:?}",
            p.sizing
        );
    }

    #[test]
    fn plan_clamps_absurd_peaks_and_says_the_peak_cannot_be_covered() {
        for (peak, headroom) in [
            (u64::MAX, 2.0),
            (9_223_372_036_854_775_808, 2.0),
            (1_000, 1e30),
            (1_000, f64::INFINITY),
        ] {
            let mut i = inputs(8 * GIB, "6.18", peak);
            i.headroom = headroom;
            let p = plan(i).expect("plan");
            assert_eq!(
                p.settings.nf_conntrack_max, 2_147_483_136,
                "{peak} x {headroom}"
            );
            assert_eq!(p.settings.hashsize, 268_434_944);
            assert!(p.memory_at_max > 0);
        }
        let p = plan(inputs(8 * GIB, "6.18", u64::MAX)).expect("plan");
        assert!(
            p.warnings.iter().any(
                |w| w.starts_with("the peak of 18446744073709551615 entries cannot be covered")
            ),
            "{:?}",
            p.warnings
        );
        let mut i = inputs(8 * GIB, "6.18", 1_000);
        i.headroom = f64::NAN;
        assert!(matches!(plan(i), Err(PlanError::Headroom(_))));
    }

    #[test]
    fn usage_parsers_reject_zero_and_non_finite() {
        assert!(parse_memory("0").is_err());
        assert!(parse_memory("1M").is_ok());
        for bad in ["0", "-1", "0.5", "inf", "nan", "NaN", "x"] {
            assert!(parse_headroom(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_headroom("1e30"), Ok(1e30));
        assert_eq!(slab_memtotal_saturates(), Some(u64::MAX));
    }

    fn slab_memtotal_saturates() -> Option<u64> {
        crate::slab::parse_memtotal("MemTotal: 18446744073709551615 kB\n")
    }
}
