//! `plan`: sizing nf_conntrack_max and the hash table, per-state timeouts
//! and NOTRACK rules, for the kernel actually targeted. Pure: inputs in,
//! a [`Plan`] out, every number with its reason; renderers produce the
//! sysctl.d, modprobe.d, nftables and iptables files.

use std::collections::BTreeMap;

use crate::diagnose::{ESTIMATED_ENTRY_BYTES, mib};
use crate::facts::{Facts, Mix};
use crate::timeouts::Timeout;
pub use crate::version::Version;

mod render;
pub mod sizing;
#[cfg(test)]
mod tests;

pub use render::{
    modprobe_body, render_iptables, render_modprobe, render_nft, render_sysctl, render_text,
    sysctl_body,
};

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
    let bytes = n * mult as f64;
    // `as u64` saturates: 99999999T would silently become 16 EiB.
    if bytes >= u64::MAX as f64 {
        return Err(format!("{s:?}: too large (at most 16 EiB)"));
    }
    Ok(bytes as u64)
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
    pub kernel: Version,
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

impl Settings {
    /// The settings of a plan file (`ctdoctor plan --format json`), the one
    /// reader `apply --plan` and `simulate --compare` share: the file's
    /// `settings` object, every field required.
    pub fn from_plan_json(text: &str) -> Result<Self, PlanFileError> {
        #[derive(serde::Deserialize)]
        struct PlanFile {
            settings: Settings,
        }
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| PlanFileError::NotJson(e.to_string()))?;
        if v.get("settings").is_none() {
            return Err(PlanFileError::NoSettings);
        }
        serde_json::from_value::<PlanFile>(v)
            .map(|p| p.settings)
            .map_err(|e| PlanFileError::BadSettings(e.to_string()))
    }
}

/// Why a plan file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanFileError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a plan (no \"settings\"): expected the output of `ctdoctor plan --format json`")]
    NoSettings,
    #[error("not a plan: settings: {0}")]
    BadSettings(String),
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

/// The files `apply --persist` writes (the modules-load.d one only when
/// [`Plan::boot_load`] says so).
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/90-conntrack.conf";
pub const MODPROBE_FILE: &str = "/etc/modprobe.d/nf_conntrack.conf";

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
    /// The files `apply --persist` writes, in order.
    pub persist_files: Vec<String>,
    /// Whether the modules-load.d file is among them, and why (`None`:
    /// not known, no host was looked at).
    pub boot_load: Option<crate::drift::BootLoad>,
    /// Planned inside a non-init namespace: which per-namespace max layout
    /// applies and what the planned max means there (`None`: planned in
    /// the initial namespace, or for another machine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<crate::netns_max::NetnsPlan>,
}

impl Plan {
    /// Record what the host says about loading nf_conntrack at boot, and
    /// list the modules-load.d file among the persisted ones when it is
    /// written.
    pub fn set_boot_load(&mut self, b: crate::drift::BootLoad) {
        self.persist_files = persist_files(Some(&b));
        self.boot_load = Some(b);
    }

    /// Record that the plan was made inside a non-init namespace, from the
    /// readings there ([`crate::netns_max::plan_for_netns`]); its warning,
    /// if any, joins the plan's.
    pub fn set_netns(
        &mut self,
        netns: &str,
        support: Option<crate::netns_max::PerNetnsMax>,
        init_max: Option<u64>,
        own_max: Option<u64>,
    ) {
        let n = crate::netns_max::plan_for_netns(
            netns,
            support,
            init_max,
            own_max,
            self.settings.nf_conntrack_max,
        );
        if let Some(w) = &n.warning {
            self.warnings.push(w.clone());
        }
        self.netns = Some(n);
    }
}

/// The files `apply --persist` writes given `boot_load`.
pub fn persist_files(boot_load: Option<&crate::drift::BootLoad>) -> Vec<String> {
    let mut v = vec![SYSCTL_FILE.to_string(), MODPROBE_FILE.to_string()];
    if let Some(crate::drift::BootLoad::Write { file }) = boot_load {
        v.push(file.clone());
    }
    v
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

/// The value each profile sets a timeout to (web, nat-gateway/router,
/// k8s-node) and why; never below the timeout's floor in ctcore's timeout
/// table, which also names the sysctl and the state it governs.
type TimeoutRule = (Timeout, u64, u64, u64, &'static str);

const TIMEOUTS: &[TimeoutRule] = &[
    (
        Timeout::TcpEstablished,
        3600,
        7440,
        86_400,
        "idle flows are the bulk of a full table; 432000 s (5 days) keeps dead peers for days",
    ),
    (
        Timeout::TcpTimeWait,
        120,
        120,
        120,
        "shorter lets late segments of an old connection hit a new one",
    ),
    (
        Timeout::TcpCloseWait,
        60,
        60,
        3600,
        "half-closed connections whose application has not closed yet",
    ),
    (
        Timeout::TcpFinWait,
        120,
        120,
        120,
        "closing connections waiting for the peer's FIN",
    ),
    (
        Timeout::TcpSynSent,
        60,
        120,
        120,
        "unanswered SYNs (scans, dead backends) hold entries this long",
    ),
    (
        Timeout::TcpSynRecv,
        60,
        60,
        60,
        "SYN floods fill the table with these",
    ),
    (
        Timeout::Udp,
        30,
        30,
        30,
        "one-shot UDP (DNS): unreplied or single exchanges",
    ),
    (
        Timeout::UdpStream,
        120,
        120,
        120,
        "UDP flows with traffic both ways",
    ),
    (Timeout::Icmp, 30, 60, 30, "echo requests and replies"),
];

/// Every timeout `plan` has a rule for (and so may persist): the keys
/// the drift guard compares besides nf_conntrack_max and hashsize.
pub fn planned_timeouts() -> impl Iterator<Item = Timeout> {
    TIMEOUTS.iter().map(|r| r.0)
}

/// The lowest value `plan` would set `timeout` to for `profile`, with the
/// reason; `None` for timeouts plan has no rule for. `forecast` suggests
/// no lower value.
pub fn timeout_floor(timeout: Timeout, profile: Profile) -> Option<(u64, &'static str)> {
    TIMEOUTS
        .iter()
        .find(|r| r.0 == timeout)
        .and_then(|_| timeout.floor(profile.nat()))
}

/// Below this many entries the mix says nothing about idle flows.
const MIX_MIN_ENTRIES: u64 = 1000;

fn plan_timeouts(i: &Inputs) -> Vec<TimeoutPlan> {
    TIMEOUTS
        .iter()
        .map(|&(timeout, web, nat, k8s, why)| {
            let sysctl = timeout.sysctl();
            let current = i.current_timeouts.get(sysctl).copied();
            let profile_value = match i.profile {
                Profile::Web => web,
                Profile::NatGateway | Profile::Router => nat,
                Profile::K8sNode => k8s,
            };
            // Every rule's timeout has a floor (tested below).
            let (floor, floor_source) = timeout.floor(i.profile.nat()).unwrap_or((0, "none"));
            let mut value = profile_value.max(floor);
            let mut reason = format!("{} profile: {why}", i.profile.name());
            // Established: lowering pays only where idle entries are many.
            if timeout == Timeout::TcpEstablished
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
            let effect = match (&i.mix, current, timeout.tcp_state()) {
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
const FALLBACK_KERNEL: Version = Version {
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
            .and_then(|s| Version::parse(s).ok())
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
            >= (Version {
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
        persist_files: persist_files(None),
        boot_load: None,
        netns: None,
    })
}
