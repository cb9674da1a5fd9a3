// Scenario: the table (max, buckets, timeouts, kernel version) and the
// traffic classes, read from TOML or built in code; the built-in scenarios
// are the repository's scenarios/*.toml, embedded. Pure: no I/O.

use std::collections::BTreeMap;

use ctcore::timeouts::{Timeout, TimeoutTable};
use ctcore::version::Version;
use serde::{Deserialize, Serialize};

/// A scenario could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// TOML syntax or a field of the wrong type / unknown field; the message
    /// names the line, column and field.
    #[error("scenario TOML: {0}")]
    Toml(String),
    /// A value is out of range or inconsistent.
    #[error("scenario field `{field}`: {msg}")]
    Invalid { field: String, msg: String },
}

fn invalid(field: impl Into<String>, msg: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        field: field.into(),
        msg: msg.into(),
    }
}

/// A whole scenario.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub table: Table,
    /// Default run length (seconds) when RunOptions does not say.
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// Default sampling step (seconds).
    #[serde(default)]
    pub step_s: Option<f64>,
    #[serde(rename = "class", default)]
    pub classes: Vec<Class>,
    /// Entries present at t = 0 (the lab's pre-fill, --from-live).
    #[serde(rename = "initial", default)]
    pub initial: Vec<Initial>,
    /// An observer dumps the table right after each step's sample (as
    /// `ctdoctor lab` does for its per-state counts): a ctnetlink dump
    /// reaps every expired entry it passes, in every namespace
    /// (net/netfilter/nf_conntrack_netlink.c ctnetlink_dump_table), so
    /// expired entries linger at most one step instead of until the next GC
    /// pass (up to 60 s). Measured here: 300 flows/s, TIME_WAIT 20 s, a dump
    /// every 10 s: the kernel's count settles at 8,950 (6,000 + 10 s x 300)
    /// where the GC alone lets it climb to 17,500 before a pass.
    #[serde(default)]
    pub dump_each_step: bool,
}

/// The largest table the model accepts (live entries are kept in memory,
/// about 100 bytes each with their chain and expiry slots).
pub const MAX_ENTRIES: u64 = 100_000_000;
/// The most traffic classes (their index is 16 bits in an entry).
pub const MAX_CLASSES: usize = 1024;
/// The most hash buckets: the kernel refuses a table of more
/// (nf_ct_alloc_hashtable() in nf_conntrack_core.c: INT_MAX / sizeof(struct
/// hlist_nulls_head)), and the model allocates a chain per bucket, so
/// 4294967295 aborted `run` on allocation instead of failing (issue 21).
/// `simulate` holds its own tables to a tighter bound (2^25).
pub const MAX_BUCKETS: u32 = (i32::MAX as u32) / 8;
/// The most modelled (client, port) slots over all clients of a class
/// (4 bytes each): 4096 clients x the default 28,232 ports fit.
pub const MAX_PORT_SLOTS: u64 = 1 << 27;

/// The table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// nf_conntrack_max.
    pub max: u64,
    /// nf_conntrack_buckets.
    pub buckets: u32,
    /// Overrides of the kernel defaults, e.g. tcp_timeout_time_wait = 600.
    #[serde(default)]
    pub timeouts: BTreeMap<String, f64>,
    /// Kernel version selecting behaviour ("6.18").
    #[serde(default = "default_kernel")]
    pub kernel: String,
    /// Override of the random chain-length limit at confirm: [lo, hi]
    /// inclusive; [0, 0] disables the limit.
    #[serde(default)]
    pub chain_limit: Option<[u32; 2]>,
}

fn default_kernel() -> String {
    "6.18".into()
}

/// One traffic class.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Class {
    pub name: String,
    pub arrival: Arrival,
    pub lifecycle: Lifecycle,
    #[serde(default)]
    pub sources: Sources,
    /// Whether these flows are legitimate (for legit_lost_share); default:
    /// false for the attack lifecycles (syn-flood, udp-flood, hash-flood,
    /// idle), true otherwise.
    #[serde(default)]
    pub legit: Option<bool>,
}

impl Class {
    pub fn is_legit(&self) -> bool {
        self.legit.unwrap_or(!matches!(
            self.lifecycle,
            Lifecycle::SynFlood
                | Lifecycle::UdpFlood
                | Lifecycle::HashFlood { .. }
                | Lifecycle::Idle { .. }
        ))
    }
}

/// New flows per second over time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Arrival {
    /// Exactly `rate` per second, evenly spaced.
    Constant { rate: f64 },
    /// Poisson process with mean `rate` per second.
    Poisson { rate: f64 },
    /// Poisson with rate mean * (1 + amplitude * cos(2 pi (t - peak_s) / period_s)).
    Diurnal {
        mean: f64,
        #[serde(default = "half")]
        amplitude: f64,
        #[serde(default = "day")]
        period_s: f64,
        #[serde(default)]
        peak_s: f64,
    },
    /// Poisson at `before` until `at_s`, then `after`.
    Step { before: f64, after: f64, at_s: f64 },
    /// Poisson at `base`, `peak` during [start_s, start_s + len_s).
    Burst {
        base: f64,
        peak: f64,
        start_s: f64,
        len_s: f64,
    },
}

fn half() -> f64 {
    0.5
}
fn day() -> f64 {
    86400.0
}

impl Arrival {
    /// Rate at time t.
    pub fn rate_at(&self, t: f64) -> f64 {
        match *self {
            Arrival::Constant { rate } | Arrival::Poisson { rate } => rate,
            Arrival::Diurnal {
                mean,
                amplitude,
                period_s,
                peak_s,
            } => mean * (1.0 + amplitude * (std::f64::consts::TAU * (t - peak_s) / period_s).cos()),
            Arrival::Step {
                before,
                after,
                at_s,
            } => {
                if t < at_s {
                    before
                } else {
                    after
                }
            }
            Arrival::Burst {
                base,
                peak,
                start_s,
                len_s,
            } => {
                if t >= start_s && t < start_s + len_s {
                    peak
                } else {
                    base
                }
            }
        }
    }

    /// An upper bound of the rate (for thinning).
    pub fn max_rate(&self) -> f64 {
        match *self {
            Arrival::Constant { rate } | Arrival::Poisson { rate } => rate,
            Arrival::Diurnal {
                mean, amplitude, ..
            } => mean * (1.0 + amplitude.abs()),
            Arrival::Step { before, after, .. } => before.max(after),
            Arrival::Burst { base, peak, .. } => base.max(peak),
        }
    }

    /// Mean rate over [0, d].
    pub fn mean_rate(&self, d: f64) -> f64 {
        match *self {
            Arrival::Constant { rate } | Arrival::Poisson { rate } => rate,
            Arrival::Diurnal { .. } => {
                let n = 1000;
                (0..n)
                    .map(|i| self.rate_at(d * (i as f64 + 0.5) / n as f64))
                    .sum::<f64>()
                    / n as f64
            }
            Arrival::Step {
                before,
                after,
                at_s,
            } => {
                let a = at_s.clamp(0.0, d);
                if d <= 0.0 {
                    before
                } else {
                    (before * a + after * (d - a)) / d
                }
            }
            Arrival::Burst {
                base,
                peak,
                start_s,
                len_s,
            } => {
                if d <= 0.0 {
                    return base;
                }
                let on = ((start_s + len_s).min(d) - start_s.max(0.0)).max(0.0);
                (base * (d - on) + peak * on) / d
            }
        }
    }
}

/// What a flow does after its first packet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Lifecycle {
    /// TCP handshake, one request, close: ESTABLISHED (ASSURED) after
    /// `rtt_s`, TIME_WAIT at `duration_s`.
    ShortHttp {
        #[serde(default)]
        rtt_s: f64,
        #[serde(default = "ms")]
        duration_s: f64,
    },
    /// TCP connection kept open `lifetime_s` (requests every
    /// `request_gap_s` refresh the ESTABLISHED timeout), then TIME_WAIT.
    Keepalive {
        #[serde(default)]
        rtt_s: f64,
        #[serde(default = "minute")]
        lifetime_s: f64,
        #[serde(default = "five")]
        request_gap_s: f64,
    },
    /// Handshake then silence (idle-connection attack): ESTABLISHED,
    /// ASSURED, until tcp_timeout_established.
    Idle {
        #[serde(default)]
        rtt_s: f64,
    },
    /// DNS over UDP: query, reply after rtt_s unless unreplied (fraction).
    Dns {
        #[serde(default = "ms")]
        rtt_s: f64,
        #[serde(default)]
        unreplied: f64,
    },
    /// UDP both ways for lifetime_s.
    UdpStream {
        #[serde(default = "ms")]
        rtt_s: f64,
        #[serde(default = "minute")]
        lifetime_s: f64,
    },
    /// ICMP echo request and reply.
    Icmp {
        #[serde(default = "ms")]
        rtt_s: f64,
    },
    /// A SYN never answered (spoofed): SYN_SENT until its timeout.
    SynFlood,
    /// One UDP packet never answered.
    UdpFlood,
    /// SYN flood whose original tuples hash into `target_buckets` buckets
    /// chosen by an attacker who knows the key (worst case).
    HashFlood {
        #[serde(default = "one")]
        target_buckets: u32,
    },
}

impl Lifecycle {
    /// The names of `from_name` (the CLI's --lifecycle).
    pub const NAMES: [&'static str; 9] = [
        "short-http",
        "keepalive",
        "idle",
        "dns",
        "udp-stream",
        "icmp",
        "syn-flood",
        "udp-flood",
        "hash-flood",
    ];

    /// A lifecycle with its default parameters, by its TOML `kind` name.
    pub fn from_name(name: &str) -> Option<Lifecycle> {
        Some(match name {
            "short-http" => Lifecycle::ShortHttp {
                rtt_s: 0.0,
                duration_s: ms(),
            },
            "keepalive" => Lifecycle::Keepalive {
                rtt_s: 0.0,
                lifetime_s: minute(),
                request_gap_s: five(),
            },
            "idle" => Lifecycle::Idle { rtt_s: 0.0 },
            "dns" => Lifecycle::Dns {
                rtt_s: ms(),
                unreplied: 0.0,
            },
            "udp-stream" => Lifecycle::UdpStream {
                rtt_s: ms(),
                lifetime_s: minute(),
            },
            "icmp" => Lifecycle::Icmp { rtt_s: ms() },
            "syn-flood" => Lifecycle::SynFlood,
            "udp-flood" => Lifecycle::UdpFlood,
            "hash-flood" => Lifecycle::HashFlood { target_buckets: 1 },
            _ => return None,
        })
    }
}

impl Class {
    /// One class with Poisson arrivals at `rate`/s and distinct sources
    /// (spoofed for the attack lifecycles).
    pub fn poisson(name: &str, rate: f64, lifecycle: Lifecycle) -> Class {
        let spoofed = matches!(
            lifecycle,
            Lifecycle::SynFlood | Lifecycle::UdpFlood | Lifecycle::HashFlood { .. }
        );
        Class {
            name: name.into(),
            arrival: Arrival::Poisson { rate },
            lifecycle,
            sources: Sources {
                spoofed,
                ..Sources::default()
            },
            legit: None,
        }
    }
}

fn ms() -> f64 {
    0.001
}
fn minute() -> f64 {
    60.0
}
fn five() -> f64 {
    5.0
}
fn one() -> u32 {
    1
}

/// Where flows come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    /// Number of client addresses; 0 = every flow has a distinct tuple.
    #[serde(default)]
    pub clients: u32,
    /// Ephemeral port range of each client (inclusive).
    #[serde(default = "default_ports")]
    pub ports: [u16; 2],
    /// Spoofed sources: every flow has a distinct tuple (same as clients = 0).
    #[serde(default)]
    pub spoofed: bool,
}

fn default_ports() -> [u16; 2] {
    [32768, 60999]
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            clients: 0,
            ports: default_ports(),
            spoofed: false,
        }
    }
}

/// Entries present at t = 0.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Initial {
    /// "proto/STATE" as in the summary, e.g. "tcp/ESTABLISHED".
    pub state: String,
    pub count: u64,
    /// Remaining timeout: uniform in [lo, hi] seconds.
    pub remaining_s: [f64; 2],
    #[serde(default)]
    pub assured: bool,
}

/// The repository's scenarios/*.toml, by file name (each file's `name`):
/// the one catalogue `simulate --scenario` and `lab` share (one name, one
/// workload). The first seven were written for simulate; the rest are
/// lab's (one class each, with a real-traffic generator in ctlab), and
/// simulate models them all the same.
const BUILTINS: &[(&str, &str)] = &[
    (
        "nginx-short-upstream",
        include_str!("../../../scenarios/nginx-short-upstream.toml"),
    ),
    (
        "nat-gateway",
        include_str!("../../../scenarios/nat-gateway.toml"),
    ),
    (
        "k8s-dns-churn",
        include_str!("../../../scenarios/k8s-dns-churn.toml"),
    ),
    (
        "syn-flood-web",
        include_str!("../../../scenarios/syn-flood-web.toml"),
    ),
    (
        "idle-attack-web",
        include_str!("../../../scenarios/idle-attack-web.toml"),
    ),
    (
        "udp-flood",
        include_str!("../../../scenarios/udp-flood.toml"),
    ),
    (
        "hash-flood",
        include_str!("../../../scenarios/hash-flood.toml"),
    ),
    (
        "short-connections",
        include_str!("../../../scenarios/short-connections.toml"),
    ),
    (
        "short-connections-one-client",
        include_str!("../../../scenarios/short-connections-one-client.toml"),
    ),
    (
        "syn-flood",
        include_str!("../../../scenarios/syn-flood.toml"),
    ),
    (
        "idle-attack",
        include_str!("../../../scenarios/idle-attack.toml"),
    ),
    (
        "keepalive",
        include_str!("../../../scenarios/keepalive.toml"),
    ),
    (
        "udp-query",
        include_str!("../../../scenarios/udp-query.toml"),
    ),
    (
        "icmp-echo",
        include_str!("../../../scenarios/icmp-echo.toml"),
    ),
];

const BUILTIN_NAMES: &[&str] = &[
    "nginx-short-upstream",
    "nat-gateway",
    "k8s-dns-churn",
    "syn-flood-web",
    "idle-attack-web",
    "udp-flood",
    "hash-flood",
    "short-connections",
    "short-connections-one-client",
    "syn-flood",
    "idle-attack",
    "keepalive",
    "udp-query",
    "icmp-echo",
];

impl Scenario {
    /// Parses and validates a TOML scenario.
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Toml(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// A built-in scenario by name.
    pub fn builtin(name: &str) -> Option<Scenario> {
        BUILTINS
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, text)| Scenario::from_toml(text).ok())
    }

    /// The names `builtin` accepts.
    pub fn builtin_names() -> &'static [&'static str] {
        BUILTIN_NAMES
    }

    /// A scenario with one class, for code callers (CLI, lab).
    pub fn single(max: u64, buckets: u32, class: Class) -> Scenario {
        Scenario {
            name: class.name.clone(),
            description: String::new(),
            table: Table {
                max,
                buckets,
                timeouts: BTreeMap::new(),
                kernel: default_kernel(),
                chain_limit: None,
            },
            duration_s: None,
            step_s: None,
            classes: vec![class],
            initial: Vec::new(),
            dump_each_step: false,
        }
    }

    pub fn kernel(&self) -> Result<Version, ScenarioError> {
        Version::parse(&self.table.kernel).map_err(|e| invalid("table.kernel", e.to_string()))
    }

    /// The timeouts in effect: kernel defaults plus the overrides.
    pub fn timeouts(&self) -> Result<TimeoutTable, ScenarioError> {
        let mut t = TimeoutTable::defaults(self.kernel()?);
        for (name, &secs) in &self.table.timeouts {
            let field = || format!("table.timeouts.{name}");
            let timeout = Timeout::from_name(name).ok_or_else(|| {
                invalid(
                    field(),
                    format!("unknown timeout; known: {}", Timeout::short_names()),
                )
            })?;
            if !secs.is_finite() || secs < 0.0 {
                return Err(invalid(field(), "must be >= 0 seconds"));
            }
            t.set(timeout, secs);
        }
        Ok(t)
    }

    /// Checks ranges; `run` calls it too.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        self.timeouts()?;
        if !(1..=MAX_BUCKETS).contains(&self.table.buckets) {
            return Err(invalid(
                "table.buckets",
                format!("must be within 1..={MAX_BUCKETS} (the kernel's largest hash table)"),
            ));
        }
        // The model keeps every live entry in memory and indexes them with
        // 32 bits: bound the table (max = 0, the kernel's "unlimited" before
        // 6.19, would let a hostile scenario grow without limit).
        if !(1..=MAX_ENTRIES).contains(&self.table.max) {
            return Err(invalid(
                "table.max",
                format!("must be within 1..={MAX_ENTRIES} (the model holds every entry in memory)"),
            ));
        }
        if self.classes.len() > MAX_CLASSES {
            return Err(invalid(
                "class",
                format!("at most {MAX_CLASSES} traffic classes"),
            ));
        }
        if let Some([lo, hi]) = self.table.chain_limit
            && lo > hi
        {
            return Err(invalid("table.chain_limit", "lo > hi"));
        }
        for (k, v) in [("duration_s", self.duration_s), ("step_s", self.step_s)] {
            if let Some(v) = v
                && (!v.is_finite() || v <= 0.0)
            {
                return Err(invalid(k, "must be > 0"));
            }
        }
        for (i, c) in self.classes.iter().enumerate() {
            let f = |x: &str| format!("class[{i}] ({}).{x}", c.name);
            let rates: Vec<f64> = match c.arrival {
                Arrival::Constant { rate } | Arrival::Poisson { rate } => vec![rate],
                Arrival::Diurnal {
                    mean,
                    amplitude,
                    period_s,
                    peak_s,
                } => {
                    if !(0.0..=1.0).contains(&amplitude) {
                        return Err(invalid(f("arrival.amplitude"), "must be within 0..1"));
                    }
                    if !(period_s.is_finite() && period_s > 0.0 && peak_s.is_finite()) {
                        return Err(invalid(f("arrival.period_s"), "must be > 0"));
                    }
                    vec![mean]
                }
                Arrival::Step {
                    before,
                    after,
                    at_s,
                } => vec![before, after, at_s],
                Arrival::Burst {
                    base,
                    peak,
                    start_s,
                    len_s,
                } => vec![base, peak, start_s, len_s],
            };
            if rates.iter().any(|r| !r.is_finite() || *r < 0.0) {
                return Err(invalid(
                    f("arrival"),
                    "rates and times must be finite and >= 0",
                ));
            }
            let times: Vec<f64> = match c.lifecycle {
                Lifecycle::ShortHttp { rtt_s, duration_s } => vec![rtt_s, duration_s],
                Lifecycle::Keepalive {
                    rtt_s,
                    lifetime_s,
                    request_gap_s,
                } => {
                    vec![rtt_s, lifetime_s, request_gap_s]
                }
                Lifecycle::Idle { rtt_s } | Lifecycle::Icmp { rtt_s } => vec![rtt_s],
                Lifecycle::Dns { rtt_s, unreplied } => {
                    if !(0.0..=1.0).contains(&unreplied) {
                        return Err(invalid(f("lifecycle.unreplied"), "must be within 0..1"));
                    }
                    vec![rtt_s]
                }
                Lifecycle::UdpStream { rtt_s, lifetime_s } => vec![rtt_s, lifetime_s],
                Lifecycle::HashFlood { target_buckets } => {
                    if target_buckets == 0 {
                        return Err(invalid(f("lifecycle.target_buckets"), "must be >= 1"));
                    }
                    vec![]
                }
                Lifecycle::SynFlood | Lifecycle::UdpFlood => vec![],
            };
            if times.iter().any(|r| !r.is_finite() || *r < 0.0) {
                return Err(invalid(f("lifecycle"), "times must be finite and >= 0"));
            }
            if c.sources.clients > 4096 {
                return Err(invalid(
                    f("sources.clients"),
                    "at most 4096 modelled client addresses (use 0 for distinct tuples)",
                ));
            }
            let [lo, hi] = c.sources.ports;
            if lo > hi {
                return Err(invalid(
                    f("sources.ports"),
                    "need [low, high] with low <= high",
                ));
            }
            let slots = u64::from(c.sources.clients) * (u64::from(hi - lo) + 1);
            if slots > MAX_PORT_SLOTS {
                return Err(invalid(
                    f("sources"),
                    format!(
                        "clients x ports = {slots}: at most {MAX_PORT_SLOTS} modelled source ports"
                    ),
                ));
            }
        }
        let initial = self
            .initial
            .iter()
            .try_fold(0u64, |sum, i| sum.checked_add(i.count))
            .filter(|n| *n <= self.table.max);
        if initial.is_none() {
            return Err(invalid(
                "initial",
                "the initial entries add up to more than table.max",
            ));
        }
        for (i, init) in self.initial.iter().enumerate() {
            if crate::model::State::parse(&init.state).is_none() {
                return Err(invalid(
                    format!("initial[{i}].state"),
                    format!(
                        "unknown state `{}`; known: {}",
                        init.state,
                        crate::model::State::ALL_KEYS.join(", ")
                    ),
                ));
            }
            let [lo, hi] = init.remaining_s;
            if !(lo.is_finite() && hi.is_finite() && lo >= 0.0 && lo <= hi) {
                return Err(invalid(
                    format!("initial[{i}].remaining_s"),
                    "need 0 <= lo <= hi",
                ));
            }
        }
        Ok(())
    }
}
