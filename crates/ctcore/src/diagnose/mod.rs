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

mod drops;
mod id;
#[cfg(test)]
mod tests;
mod who;

pub use drops::undated_excess;
use drops::{counters, kernel_log};
pub use id::FindingId;
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

fn table_fill(f: &Facts, s: &Summary, t: &Thresholds) -> Option<Finding> {
    let (count, max) = (s.count?, s.max?);
    if max == 0 {
        return Some(Finding {
            id: FindingId::TableFill,
            severity: Severity::Info,
            title: format!("{count} entries; nf_conntrack_max is 0 (no limit)"),
            evidence: vec![format!("count {count}, max 0")],
            fix: vec![],
        });
    }
    let fill = pct(count, max);
    let mut evidence = vec![format!(
        "count {count} / max {max} = {fill:.1}% (warn {:.0}%, crit {:.0}%)",
        t.warn, t.crit
    )];
    if let (Some(b), Some(chain)) = (s.buckets, s.average_chain) {
        evidence.push(format!(
            "buckets {b}, average chain length {chain:.2} (count x 2 / buckets)"
        ));
    }
    let mut evictable_share = None;
    if let (Some(e), Some(mix)) = (s.evictable, &f.mix) {
        let share = pct(e, mix.entries.max(1));
        evictable_share = Some(share / 100.0);
        evidence.push(format!(
            "evictable (not ASSURED, early_drop may remove them): {e} of {} dumped ({share:.1}%)",
            mix.entries
        ));
    }
    let mostly_evictable = evictable_share.is_some_and(|x| x >= EVICTABLE_SHARE);
    let (severity, title) = if fill >= t.crit && !mostly_evictable {
        (
            Severity::Critical,
            format!(
                "conntrack table {fill:.0}% full ({count}/{max}): new flows are dropped when it reaches 100%"
            ),
        )
    } else if fill >= t.crit {
        (
            Severity::Warning,
            format!(
                "conntrack table {fill:.0}% full, mostly unassured entries (scans, SYN floods, unanswered UDP): the kernel early-drops them for new flows"
            ),
        )
    } else if fill >= t.warn {
        (
            Severity::Warning,
            format!("conntrack table {fill:.0}% full ({count}/{max})"),
        )
    } else {
        (
            Severity::Ok,
            format!("conntrack table {fill:.1}% full ({count}/{max})"),
        )
    };
    let fix = if severity > Severity::Ok {
        raise_fix(f, suggested(f), s.entry_total())
    } else {
        vec![]
    };
    Some(Finding {
        id: FindingId::TableFill,
        severity,
        title,
        evidence,
        fix,
    })
}

fn chains(s: &Summary) -> Option<Finding> {
    let (chain, buckets, max) = (s.average_chain?, s.buckets?, s.max?);
    (chain > 8.0).then(|| Finding {
        id: FindingId::TableChains,
        severity: Severity::Warning,
        title: format!("hash chains average {chain:.1} entries: every lookup walks them"),
        evidence: vec![format!("{} entries hashed twice into {buckets} buckets", s.count.unwrap_or(0))],
        fix: vec![format!(
            "echo {} > /sys/module/nf_conntrack/parameters/hashsize   # initial namespace; resizing rehashes live",
            max.max(buckets.saturating_mul(4))
        )],
    })
}

fn memory(s: &Summary) -> Option<Finding> {
    let at_max = s.memory_at_max?;
    let label = if s.entry_bytes_estimated {
        format!(
            "{} B/entry (estimate: /proc/slabinfo unreadable)",
            s.entry_bytes
        )
    } else {
        format!(
            "{} B/entry (slab object size from /proc/slabinfo)",
            s.entry_bytes
        )
    };
    let ext = match s.extension.bytes {
        0 => String::new(),
        b => format!(" + {b} B extension area"),
    };
    let mut evidence = vec![
        format!(
            "now: {} ({label}{ext}, plus 8 B per bucket)",
            mib(s.memory_now.unwrap_or(0))
        ),
        s.extension.describe(),
        format!("at max: {}", mib(at_max)),
    ];
    let share = s.mem_total.map(|m| pct(at_max, m));
    if let (Some(m), Some(p)) = (s.mem_total, share) {
        evidence.push(format!("{p:.2}% of {} RAM", mib(m)));
    }
    let (severity, title) = match share {
        Some(p) if p > 10.0 => (
            Severity::Warning,
            format!("a full table would take {p:.0}% of RAM: max is too high for this machine"),
        ),
        _ => (
            Severity::Info,
            format!(
                "memory: {} now, {} at max",
                mib(s.memory_now.unwrap_or(0)),
                mib(at_max)
            ),
        ),
    };
    Some(Finding {
        id: FindingId::Memory,
        severity,
        title,
        evidence,
        fix: vec![],
    })
}

/// Whether the table is at least `p` percent full (so table.fill has a fix).
fn fill_at_least(s: &Summary, p: f64) -> bool {
    s.fill_percent.is_some_and(|x| x >= p)
}

fn timeouts(f: &Facts, s: &Summary, t: &Thresholds) -> Vec<Finding> {
    let Some(mix) = &f.mix else { return vec![] };
    let fill = match (s.count, s.max) {
        (Some(c), Some(m)) if m > 0 => pct(c, m),
        _ => 0.0,
    };
    let pressure = fill >= t.warn / 2.0;
    let mut out = Vec::new();
    if let Some(&est) = f.timeouts.get("nf_conntrack_tcp_timeout_established") {
        let idle = mix.established_idle_1h;
        let share = pct(idle, mix.entries.max(1));
        if est > RFC5382_ESTABLISHED && share >= 20.0 && pressure {
            out.push(Finding {
                id: FindingId::TimeoutTcpEstablished,
                severity: Severity::Warning,
                title: format!("idle ESTABLISHED entries hold {share:.0}% of the table (timeout {est} s)"),
                evidence: vec![
                    format!("{idle} ESTABLISHED entries idle for over an hour, of {} dumped", mix.entries),
                    format!("nf_conntrack_tcp_timeout_established = {est} s ({:.1} days)", est as f64 / 86_400.0),
                ],
                fix: vec![format!(
                    "sysctl -w net.netfilter.nf_conntrack_tcp_timeout_established={RFC5382_ESTABLISHED}   # 2 h 4 min, the RFC 5382 floor for NAT; applications need TCP keepalives below it"
                )],
            });
        } else if est >= 86_400 && idle > 0 {
            out.push(Finding {
                id: FindingId::TimeoutTcpEstablished,
                severity: Severity::Info,
                title: format!("tcp_timeout_established is {est} s; idle ESTABLISHED entries: {share:.1}% of the table"),
                evidence: vec![format!("{idle} of {} entries idle for over an hour", mix.entries)],
                fix: vec![],
            });
        }
    }
    let tw = mix.state("TIME_WAIT");
    let tw_share = pct(tw, mix.entries.max(1));
    if tw_share >= 30.0 && pressure {
        let tw_timeout = f
            .timeouts
            .get("nf_conntrack_tcp_timeout_time_wait")
            .copied()
            .unwrap_or(120);
        out.push(Finding {
            id: FindingId::TimeoutTcpTimeWait,
            severity: Severity::Warning,
            title: format!("TIME_WAIT entries are {tw_share:.0}% of the table: many short connections"),
            evidence: vec![format!("{tw} TIME_WAIT of {} dumped; nf_conntrack_tcp_timeout_time_wait = {tw_timeout} s", mix.entries)],
            fix: vec![
                "reuse connections (HTTP keep-alive, connection pools) for the busiest peers: ctdoctor top --filter state=TIME_WAIT --by src,dst,dport".into(),
                "for local services that need no NAT or state: exempt them, e.g. nft add table inet raw; nft add chain inet raw pre '{ type filter hook prerouting priority raw; }'; nft add rule inet raw pre tcp dport 80 notrack (and the same for output with sport), then accept ct state untracked before stateful rules".into(),
                format!("lowering tcp_timeout_time_wait below 120 s (2 x MSL) trades protection against late duplicates: sysctl -w net.netfilter.nf_conntrack_tcp_timeout_time_wait=60 only if you accept that"),
            ],
        });
    }
    out
}

fn namespaces(f: &Facts, s: &Summary, t: &Thresholds) -> Vec<Finding> {
    let (Some(counts), Some(max)) = (&f.netns_counts, s.max) else {
        return vec![];
    };
    // The owner (pod, container, process) goes with the name everywhere
    // a namespace is named: it is what an operator acts on.
    let labels: Vec<(u64, String)> = counts
        .iter()
        .map(|n| {
            let label = if n.owner.is_empty() {
                n.name.clone()
            } else {
                format!("{}, owner {}", n.name, n.owner)
            };
            (n.inode, label)
        })
        .collect();
    let label_of = |inode: u64| {
        labels
            .iter()
            .find(|l| l.0 == inode)
            .map_or("", |l| l.1.as_str())
    };
    let mut rows: Vec<(u64, &str, u64)> = counts
        .iter()
        .filter_map(|n| Some((n.count?, label_of(n.inode), n.inode)))
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    // Each namespace's own `drop` counter, read in it with its count: it
    // belongs to the namespace that has the inode now, unlike a kernel log
    // line naming the inode (inodes are reused).
    let drop_of = |inode: u64| {
        counts
            .iter()
            .find(|n| n.inode == inode)
            .and_then(|n| n.drop)
    };
    let with_drop = |inode: u64| drop_of(inode).map_or_else(String::new, |d| format!(", drop {d}"));
    let mut out = Vec::new();
    for &(count, name, inode) in &rows {
        let path = f
            .namespaces
            .iter()
            .find(|n| n.inode == inode)
            .map_or_else(String::new, |n| n.path.display().to_string());
        let fill = pct(count, max.max(1));
        let severity = if fill >= t.crit {
            Severity::Critical
        } else if fill >= t.warn {
            Severity::Warning
        } else {
            continue;
        };
        out.push(Finding {
            id: FindingId::Netns(inode),
            severity,
            title: format!("netns {name}: {fill:.0}% full ({count}/{max})"),
            evidence: [
                "each namespace's count is compared with the global nf_conntrack_max on its own"
                    .to_string(),
            ]
            .into_iter()
            .chain(drop_of(inode).map(|d| {
                format!("drop counter of this namespace: {d} packets dropped, table full")
            }))
            .collect(),
            fix: vec![format!("ctdoctor --netns {path} check")],
        });
    }
    let unreadable = counts.iter().filter(|n| n.count.is_none()).count();
    let mut evidence: Vec<String> = rows
        .iter()
        .take(10)
        .map(|&(c, n, i)| format!("{n} (inode {i}): {c}{}", with_drop(i)))
        .collect();
    // Namespaces that dropped, even if not among the fullest now.
    let dropped: Vec<String> = rows
        .iter()
        .skip(10)
        .filter(|r| drop_of(r.2).is_some_and(|d| d > 0))
        .map(|&(c, n, i)| format!("{n} (inode {i}): {c}{}", with_drop(i)))
        .collect();
    evidence.extend(dropped);
    if unreadable > 0 {
        evidence.push(format!("{unreadable} namespaces could not be read"));
    }
    out.push(Finding {
        id: FindingId::NetnsAll,
        severity: if out.is_empty() {
            Severity::Ok
        } else {
            Severity::Info
        },
        title: format!(
            "{} network namespaces; fullest holds {}",
            counts.len(),
            rows.first().map_or(0, |r| r.0)
        ),
        evidence,
        fix: vec![],
    });
    out
}

fn cloud(f: &Facts) -> Vec<Finding> {
    f.cloud
        .iter()
        .map(|a| Finding {
            id: FindingId::CloudEna(a.interface.clone()),
            severity: if a.exceeded > 0 { Severity::Critical } else { Severity::Ok },
            title: if a.exceeded > 0 {
                format!("{}: the cloud NIC dropped {} packets for its own connection-tracking allowance", a.interface, a.exceeded)
            } else {
                format!("{}: cloud NIC conntrack allowance not exceeded", a.interface)
            },
            evidence: vec![format!(
                "ethtool -S {}: conntrack_allowance_exceeded={}{}",
                a.interface,
                a.exceeded,
                a.available.map(|v| format!(" conntrack_allowance_available={v}")).unwrap_or_default()
            )],
            fix: if a.exceeded > 0 {
                vec!["the hypervisor's table (AWS ENA), not the kernel's, is full: use a larger instance type or track fewer flows (security-group rules that need no tracking)".into()]
            } else {
                vec![]
            },
        })
        .collect()
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
        findings.extend(memory(&summary));
        findings.extend(timeouts(f, &summary, t));
        findings.extend(who(f, &summary, t));
    }
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
    Report {
        verdict,
        exit_code: verdict.exit_code(),
        headline,
        netns: f.netns_name.clone(),
        netns_inode: f.netns_inode,
        kernel: f.kernel.clone(),
        summary,
        findings,
        namespaces: f.netns_counts.clone(),
        unreadable: f.unreadable.clone(),
    }
}
