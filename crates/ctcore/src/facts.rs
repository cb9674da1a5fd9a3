//! Facts about one host and namespace, as plain values: what [`crate::gather`]
//! reads and what the pure rules ([`crate::diagnose`], [`crate::plan`]) take.
//! No I/O here; readers fill these, tests build them by hand.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ctmodel::{Entry, L4Proto, Nat, Status};

use crate::kernel_log::LogScan;
use crate::ruleset::RuleUse;
use crate::slab::SlabCache;

/// Why something could not be read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Why {
    NotPresent,
    /// Permission denied; the privilege that would allow it.
    Permission(String),
    Malformed(String),
    Failed(String),
}

/// One source that could not be read, for the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unreadable {
    pub what: String,
    pub why: Why,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Namespace {
    pub inode: u64,
    /// `ip netns` name, or `pid N (comm)` of the lowest process inside.
    pub name: String,
    /// A path that enters it (for setns).
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Service {
    pub name: String,
    /// How it was seen: `running (pid N)`, `unit enabled`, `ufw.conf ENABLED=yes`.
    pub seen: String,
    pub uses_conntrack_for: String,
    /// The network namespace its process runs in; `None` for an enabled
    /// unit or a configuration file, which act in the initial namespace.
    pub netns_inode: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Allowance {
    pub interface: String,
    pub exceeded: u64,
    pub available: Option<u64>,
}

/// What the table holds, from one dump.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Mix {
    pub entries: u64,
    pub assured: u64,
    pub unreplied: u64,
    pub tcp: u64,
    pub udp: u64,
    pub tcp_state: BTreeMap<String, u64>,
    /// ESTABLISHED entries idle for more than an hour (remaining timeout at
    /// least 3600 s below tcp_timeout_established).
    pub established_idle_1h: u64,
    /// Entries that show an extension area (issue 7 section 7): NATed,
    /// with counters (acct), timestamps, labels, a zone, or a helper /
    /// sequence adjustment; `with_extension` counts each entry once.
    pub nat: u64,
    pub counters: u64,
    pub timestamps: u64,
    pub labels: u64,
    pub zones: u64,
    pub helpers: u64,
    pub with_extension: u64,
}

impl Mix {
    pub fn add(&mut self, e: &Entry, established_timeout: Option<u64>) {
        self.entries += 1;
        self.assured += u64::from(e.assured());
        self.unreplied += u64::from(e.unreplied());
        match e.l4() {
            L4Proto::Tcp => {
                self.tcp += 1;
                let state = e.state_name().unwrap_or("NONE");
                *self.tcp_state.entry(state.to_string()).or_insert(0) += 1;
                if state == "ESTABLISHED"
                    && let (Some(full), Some(left)) = (established_timeout, e.timeout)
                    && u64::from(left) + 3600 <= full
                {
                    self.established_idle_1h += 1;
                }
            }
            L4Proto::Udp | L4Proto::Udplite => self.udp += 1,
            _ => {}
        }
        // Each of these lives in the entry's extension area
        // (nf_conntrack_extend.h); a zone did before it moved into nf_conn.
        let nat = e.nat() != Nat::None;
        let counters = e.counters_orig.is_some() || e.counters_reply.is_some();
        let timestamps = e.timestamp_start.is_some();
        let labels = e.labels.is_some();
        let zone = e.zone.is_some_and(|z| z != 0)
            || e.orig.zone.is_some_and(|z| z != 0)
            || e.reply.zone.is_some_and(|z| z != 0);
        let helper = e.status.intersects(Status::HELPER | Status::SEQ_ADJUST);
        self.nat += u64::from(nat);
        self.counters += u64::from(counters);
        self.timestamps += u64::from(timestamps);
        self.labels += u64::from(labels);
        self.zones += u64::from(zone);
        self.helpers += u64::from(helper);
        self.with_extension += u64::from(nat || counters || timestamps || labels || zone || helper);
    }

    /// Add another partial mix (from a parallel scan).
    pub fn merge(&mut self, o: Mix) {
        self.entries += o.entries;
        self.assured += o.assured;
        self.unreplied += o.unreplied;
        self.tcp += o.tcp;
        self.udp += o.udp;
        self.established_idle_1h += o.established_idle_1h;
        self.nat += o.nat;
        self.counters += o.counters;
        self.timestamps += o.timestamps;
        self.labels += o.labels;
        self.zones += o.zones;
        self.helpers += o.helpers;
        self.with_extension += o.with_extension;
        for (k, v) in o.tcp_state {
            *self.tcp_state.entry(k).or_insert(0) += v;
        }
    }

    pub fn state(&self, name: &str) -> u64 {
        self.tcp_state.get(name).copied().unwrap_or(0)
    }
}

/// Kernel counters summed over CPUs, and where they came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub source: String,
    pub values: BTreeMap<String, u64>,
}

/// The container that owns a network namespace, as its runtime's metadata
/// describes it (Docker's config.v2.json, podman's conmon arguments and
/// containers/storage containers.json). Fields the metadata lacks, or that
/// could not be read (`metadata_error` says why), are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ContainerOwner {
    /// `docker`, `podman`, `containerd`, `cri-o`, `kubernetes`.
    pub runtime: String,
    /// The full container id (64 hex digits), when the cgroup names it.
    pub id: Option<String>,
    pub name: Option<String>,
    /// The image as the container was started from (`repo:tag`).
    pub image: Option<String>,
    /// The Kubernetes CRI labels `io.kubernetes.pod.name` and
    /// `io.kubernetes.pod.namespace`, when the container carries them.
    pub pod: Option<String>,
    pub pod_namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_error: Option<String>,
}

/// The count of one namespace, for `--all-netns`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NetnsCount {
    pub inode: u64,
    pub name: String,
    /// What lives there ([`crate::owners`]): `namespace/pod`, a container
    /// name or id, a process name, "host" for the initial one, or "".
    pub owner: String,
    /// The container behind `owner`, from its runtime's metadata; absent
    /// for a namespace no container owns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerOwner>,
    pub count: Option<u64>,
    /// Packets this namespace dropped because its table was full (the
    /// ctnetlink GET_STATS_CPU `drop` counter summed over CPUs, read in
    /// the namespace with `count`); `None` when it could not be read.
    pub drop: Option<u64>,
    /// `nf_conntrack_max` as read inside the namespace, and the sysctl
    /// file's mode there (writable in a non-init namespace: the kernel has
    /// a per-namespace max, [`crate::netns_max`]).
    #[serde(skip)]
    pub sysctl_max: Option<u64>,
    #[serde(skip)]
    pub sysctl_mode: Option<u32>,
    /// The effective limit of this namespace's table
    /// ([`crate::netns_max::effective`]), filled in by the diagnosis.
    pub max: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Facts {
    pub kernel: Option<String>,
    pub netns_inode: Option<u64>,
    pub netns_name: Option<String>,
    /// The initial namespace's inode (that of PID 1), to tell whether a
    /// table-full message without a namespace is about this one.
    pub init_netns_inode: Option<u64>,
    /// nf_conntrack is loaded (its sysctls exist).
    pub conntrack_loaded: bool,
    pub count: Option<u64>,
    pub max: Option<u64>,
    pub buckets: Option<u64>,
    pub count_source: Option<String>,
    pub mix: Option<Mix>,
    pub slab: Option<SlabCache>,
    pub mem_total: Option<u64>,
    pub counters: Option<Counters>,
    /// Per-second rates over `--interval`.
    pub rates: Option<BTreeMap<String, f64>>,
    pub interval_secs: Option<f64>,
    pub kernel_log: Option<LogScan>,
    pub kernel_log_source: Option<String>,
    /// This host's name (/proc/sys/kernel/hostname): a log line naming
    /// another host is that host's log.
    pub hostname: Option<String>,
    /// /dev/kmsg had already overwritten its oldest records.
    pub kernel_log_truncated: bool,
    /// The kernel log the user named (`--kernel-log FILE|-`) could not be
    /// read: the check cannot judge what was asked (UNKNOWN).
    pub kernel_log_error: Option<Unreadable>,
    pub boot_time: Option<i64>,
    /// Unix time the facts were gathered: the diagnosis's clock.
    pub now: Option<f64>,
    pub timeouts: BTreeMap<String, u64>,
    /// nf_conntrack is built into the kernel (no module to unload); `None`
    /// when /sys/module does not say.
    pub conntrack_builtin: Option<bool>,
    /// nf_conntrack_acct, nf_conntrack_timestamp, nf_conntrack_events:
    /// the sysctls that attach an extension area to new entries.
    pub extension_sysctls: BTreeMap<String, u64>,
    pub rules: RuleUse,
    pub rule_sources: Vec<String>,
    pub services: Vec<Service>,
    pub namespaces: Vec<Namespace>,
    pub netns_counts: Option<Vec<NetnsCount>>,
    /// Count and `drop` counter of each live namespace that this boot's
    /// table-full lines name (other than this one): whether the lines can
    /// be its own, since inode numbers are reused.
    pub log_netns: Vec<NetnsCount>,
    pub cloud: Vec<Allowance>,
    /// Cilium and Calico eBPF conntrack maps found pinned under bpffs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bpf_maps: Vec<crate::bpf::BpfMap>,
    /// Live conntrack settings against the persisted ones and the last
    /// apply (issue 20); `None` where not read (no conntrack).
    pub drift: Option<crate::drift::DriftFacts>,
    pub unreadable: Vec<Unreadable>,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.why {
            Why::NotPresent => write!(f, "{}: not present", self.what),
            Why::Permission(cap) => write!(f, "{}: permission denied (needs {cap})", self.what),
            Why::Malformed(m) => write!(f, "{}: malformed: {m}", self.what),
            Why::Failed(m) => write!(f, "{}: {m}", self.what),
        }
    }
}

impl std::error::Error for Unreadable {}

#[cfg(test)]
mod tests {
    use super::*;
    use ctmodel::text::{Line, parse_line};

    #[test]
    fn mix_counts_entries_that_carry_an_extension_area() {
        // 14 entries captured on 6.18 with nf_conntrack_acct=1: every one
        // shows counters; one SNAT, one DNAT, one in zone 7.
        let text = include_str!("../../ctmodel/tests/fixtures/extended.txt");
        let mut mix = Mix::default();
        for line in text.lines() {
            if let Ok(Line::Entry(e)) = parse_line(line.as_bytes()) {
                mix.add(&e, None);
            }
        }
        assert_eq!(
            (mix.entries, mix.counters, mix.nat, mix.zones, mix.labels),
            (14, 14, 2, 1, 0)
        );
        assert_eq!(mix.with_extension, 14);
        let mut twice = mix.clone();
        twice.merge(mix);
        assert_eq!((twice.nat, twice.with_extension), (4, 28));
    }
}
