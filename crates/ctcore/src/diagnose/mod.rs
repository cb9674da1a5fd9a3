//! The diagnosis: pure rules from [`Facts`] to [`Finding`]s and a verdict
//! with Nagios/Icinga exit codes. Every finding carries a stable id, the
//! numbers behind it and a concrete fix. CRITICAL means packets are dropped
//! now or recently (issue 7 section 3): a table-full line younger than
//! [`Thresholds::recent`] or of unknown age, a positive drop rate, or a drop
//! counter no readable log can date; older drops are WARNING, so a Nagios
//! check recovers. Which table-full lines are this namespace's is decided by
//! its own drop counter, since the kernel reuses namespace inode numbers
//! (issue 7 section 2). The clock comes in with the facts ([`Facts::now`]).

use std::time::Duration;

use crate::facts::Facts;
use crate::facts::Unreadable;
use crate::kernel_log::{self, Stamp};

// One file per rule (drops.rs: the drop counter and the kernel log,
// weighed against each other).
mod bpf;
mod chains;
mod cloud;
mod drift;
mod drops;
mod fill;
mod id;
mod memory;
mod namespaces;
#[cfg(test)]
mod tests;
mod timeouts;
mod who;

use bpf::bpf_maps;
use chains::{chain_limit, chains, chaintoolong};
use cloud::cloud;
use drift::drift;
pub use drops::undated_excess;
use drops::{counters, kernel_log};
use fill::table_fill;
pub use id::FindingId;
use memory::memory;
use namespaces::namespaces;
use timeouts::timeouts;
use who::who;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Info => "INFO",
            Self::Warning => "WARNING",
            Self::Critical => "CRITICAL",
        }
    }
}

/// Overall result; the exit code follows the Nagios plugin convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Warning => 1,
            Self::Critical => 2,
            Self::Unknown => 3,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warning => "WARNING",
            Self::Critical => "CRITICAL",
            Self::Unknown => "UNKNOWN",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Finding {
    pub id: FindingId,
    pub severity: Severity,
    pub title: String,
    pub evidence: Vec<String>,
    pub fix: Vec<String>,
}

/// Fill thresholds in percent of nf_conntrack_max, and how long ago a
/// table-full line still counts as "now".
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub warn: f64,
    pub crit: f64,
    /// Drops logged within this long are CRITICAL; older ones WARNING.
    pub recent: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            warn: 75.0,
            crit: 90.0,
            recent: Duration::from_secs(3600),
        }
    }
}

/// The headline numbers.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub count: Option<u64>,
    pub max: Option<u64>,
    pub buckets: Option<u64>,
    pub fill_percent: Option<f64>,
    /// count x 2 / buckets: every entry is hashed twice (both directions).
    pub average_chain: Option<f64>,
    /// Entries that are not ASSURED: the ones early_drop may evict.
    pub evictable: Option<u64>,
    pub entry_bytes: u64,
    /// Whether `entry_bytes` is an estimate (slabinfo unreadable).
    pub entry_bytes_estimated: bool,
    /// The extension area counted on top of `entry_bytes`, and why.
    pub extension: crate::plan::Extension,
    pub memory_now: Option<u64>,
    pub memory_at_max: Option<u64>,
    pub mem_total: Option<u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub exit_code: u8,
    pub headline: String,
    pub netns: Option<String>,
    pub netns_inode: Option<u64>,
    pub kernel: Option<String>,
    pub summary: Summary,
    pub findings: Vec<Finding>,
    /// With `--all-netns`: every namespace's count, drop counter and owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<crate::facts::NetnsCount>>,
    /// With `--all-netns`: whether the kernel has a per-namespace
    /// `nf_conntrack_max` ("supported", "not supported"; null: unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_netns_max: Option<crate::netns_max::PerNetnsMax>,
    pub unreadable: Vec<Unreadable>,
}

/// `struct nf_conn` is 248 bytes on 6.x, a 256-byte slab object
/// (../shared/KERNEL.md section 7); used only when slabinfo is unreadable.
pub const ESTIMATED_ENTRY_BYTES: u64 = 256;

/// Early-dropping starts in the kernel only when the table is full; above
/// this share of evictable entries a full table is "pressure", not drops.
const EVICTABLE_SHARE: f64 = 0.5;

/// RFC 5382 REQ-5: NAT must not expire established TCP sooner than 2 h 4 min.
const RFC5382_ESTABLISHED: u64 = 7440;

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// A log timestamp for people: wall clock when it is known, else the
/// stamp as printed (an uptime of an unknown boot says so).
pub fn when(stamp: &Option<Stamp>) -> String {
    let Some(s) = stamp else {
        return "unknown time".into();
    };
    match s.at {
        Some(t) => chrono::DateTime::from_timestamp(t as i64, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| s.text.clone()),
        None if s.since_boot.is_some() => format!("{} s after an unknown boot", s.text),
        None => s.text.clone(),
    }
}

/// The new max and buckets: the one sizing policy `plan` uses (issue 7
/// section 7), so check and plan never disagree on the same host.
fn suggested(f: &Facts) -> Option<crate::plan::TableSize> {
    crate::plan::suggest(f)
}

fn raise_fix(f: &Facts, size: Option<crate::plan::TableSize>, entry_bytes: u64) -> Vec<String> {
    let Some(size) = size else {
        return vec!["size a new limit with: ctdoctor plan".into()];
    };
    let (new_max, buckets) = (size.max, size.buckets);
    let mut fix = vec![
        format!("sysctl -w net.netfilter.nf_conntrack_max={new_max}"),
        format!("echo {buckets} > /sys/module/nf_conntrack/parameters/hashsize"),
        format!(
            "that is up to {} at {entry_bytes} B per entry plus 8 B per bucket, with an average chain of 2 (the 5.15+ default ratio); the same figures as ctdoctor plan (peak x {}, never below the kernel default)",
            mib(size.memory_at_max),
            crate::plan::DEFAULT_HEADROOM
        ),
        format!(
            "persist in /etc/sysctl.d/90-conntrack.conf: net.netfilter.nf_conntrack_max = {new_max}"
        ),
        format!(
            "persist in /etc/modprobe.d/nf_conntrack.conf: options nf_conntrack hashsize={buckets}"
        ),
    ];
    if f.netns_inode.is_some() && f.netns_inode != f.init_netns_inode {
        fix.push(
            "nf_conntrack_max and hashsize are global and read-only inside a namespace (5.13+): run these in the initial namespace".into(),
        );
    }
    fix
}

/// Whether the table is at least `p` percent full (so table.fill has a fix).
fn fill_at_least(s: &Summary, p: f64) -> bool {
    s.fill_percent.is_some_and(|x| x >= p)
}

impl Summary {
    /// Bytes per entry: slab object plus extension area.
    pub fn entry_total(&self) -> u64 {
        self.entry_bytes.saturating_add(self.extension.bytes)
    }
}

/// Summarise the facts into headline numbers.
pub fn summarize(f: &Facts) -> Summary {
    let (entry_bytes, estimated) = crate::plan::object_bytes(f);
    let extension = crate::plan::extension(f.mix.as_ref(), &f.extension_sysctls, &f.rules.nat);
    let per_entry = entry_bytes.saturating_add(extension.bytes);
    let buckets = f.buckets.unwrap_or(0);
    let table = |entries: u64| crate::plan::sizing::table_memory(entries, buckets, per_entry);
    Summary {
        count: f.count,
        max: f.max,
        buckets: f.buckets,
        fill_percent: match (f.count, f.max) {
            (Some(c), Some(m)) if m > 0 => Some(pct(c, m)),
            _ => None,
        },
        average_chain: match (f.count, f.buckets) {
            (Some(c), Some(b)) if b > 0 => Some(c as f64 * 2.0 / b as f64),
            _ => None,
        },
        evictable: f.mix.as_ref().map(|m| m.entries - m.assured.min(m.entries)),
        entry_bytes,
        entry_bytes_estimated: estimated,
        extension,
        memory_now: f.count.map(table),
        memory_at_max: f.max.map(table),
        mem_total: f.mem_total,
    }
}

pub fn diagnose(f: &Facts, t: &Thresholds) -> Report {
    let summary = summarize(f);
    let mut findings = Vec::new();
    if !f.conntrack_loaded {
        findings.push(Finding {
            id: FindingId::ConntrackUnused,
            severity: Severity::Ok,
            title: "conntrack is not in use (nf_conntrack is not loaded)".into(),
            evidence: vec!["/proc/sys/net/netfilter/nf_conntrack_max does not exist".into()],
            fix: vec![],
        });
    } else {
        findings.extend(table_fill(f, &summary, t));
        findings.extend(counters(f, &summary, t));
        findings.extend(kernel_log(f, t));
        findings.extend(namespaces(f, &summary, t));
        findings.extend(cloud(f));
        findings.extend(chains(&summary));
        findings.extend(chain_limit(f, &summary));
        findings.extend(chaintoolong(f, &summary));
        findings.extend(memory(&summary));
        findings.extend(timeouts(f, &summary, t));
        findings.extend(who(f, &summary, t));
        findings.extend(drift(f));
    }
    // Beside nf_conntrack, loaded or not: an eBPF datapath may use none.
    findings.extend(bpf_maps(f, t));
    // Stable sort: most severe first, rule order within a severity.
    findings.sort_by_key(|x| std::cmp::Reverse(x.severity));
    let worst = findings.first().map_or(Severity::Ok, |x| x.severity);
    let verdict = match worst {
        Severity::Critical => Verdict::Critical,
        Severity::Warning => Verdict::Warning,
        _ if f.conntrack_loaded && (f.count.is_none() || f.max.is_none()) => Verdict::Unknown,
        _ => Verdict::Ok,
    };
    // The log the user asked about could not be read: whatever else was
    // found, the question was not answered (issue 7 section 5).
    let verdict = if f.kernel_log_error.is_some() {
        Verdict::Unknown
    } else {
        verdict
    };
    let headline = match verdict {
        Verdict::Unknown if f.kernel_log_error.is_some() => f
            .kernel_log_error
            .as_ref()
            .map_or_else(String::new, |u| format!("cannot read the kernel log: {u}")),
        Verdict::Unknown => "cannot read the conntrack count or max (see below)".to_string(),
        // Nothing wrong: the headline is the fill, not the first note.
        Verdict::Ok => findings
            .iter()
            .find(|x| x.id == "table.fill" || x.id == "conntrack.unused")
            .or(findings.first())
            .map_or_else(String::new, |x| x.title.clone()),
        _ => findings
            .first()
            .map_or_else(String::new, |x| x.title.clone()),
    };
    let (per_netns_max, namespaces) = namespaces::with_limits(f, &summary);
    Report {
        verdict,
        exit_code: verdict.exit_code(),
        headline,
        netns: f.netns_name.clone(),
        netns_inode: f.netns_inode,
        kernel: f.kernel.clone(),
        summary,
        findings,
        namespaces,
        per_netns_max,
        unreadable: f.unreadable.clone(),
    }
}
