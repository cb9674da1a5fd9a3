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
use crate::kernel_log::{self, Stamp, TableFull, Tally};

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
    pub id: String,
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

/// Whether a line logged at `at` is younger than `--recent`; a line whose
/// time cannot be known counts as recent (issue 7 section 3).
fn is_recent(at: Option<f64>, f: &Facts, t: &Thresholds) -> bool {
    match (at, f.now) {
        (Some(at), Some(now)) => now - at <= t.recent.as_secs_f64(),
        _ => true,
    }
}

/// Whether any line of the tally is recent (or undated).
fn tally_recent(p: &Tally, f: &Facts, t: &Thresholds) -> bool {
    p.lines > 0 && (p.undated > 0 || is_recent(p.newest.as_ref().and_then(|s| s.at), f, t))
}

/// `--recent` for people: `1h`, `30m`, `1s`.
fn window(t: &Thresholds) -> String {
    humantime::format_duration(t.recent).to_string()
}

/// This namespace's `drop` counter, when it could be read.
fn drop_counter(f: &Facts) -> Option<u64> {
    f.counters.as_ref()?.values.get("drop").copied()
}

/// Whose this boot's table-full lines (of a group that names this
/// namespace, or names none) are. Every logged table-full drop increments
/// the `drop` counter of the namespace it happened in, and that counter
/// starts at 0 when the namespace is created (__nf_conntrack_alloc fails,
/// nf_conntrack_in counts `drop`; ../shared/KERNEL.md section 3). The kernel
/// reuses inode numbers, so a namespace's inode may carry lines of an
/// earlier namespace; and before 6.17 no line names its namespace at all.
/// The namespace's creation time is not used to sort lines: the kernel does
/// not expose it (the nsfs inode's times are set when the inode is first
/// instantiated, fs/nsfs.c, possibly long after; a process may be older
/// than its namespace after unshare/setns), and the counter is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The counter is unknown or explains every line.
    Ours,
    /// The counter (this value) is below the drops the lines prove: the
    /// newest lines are this namespace's, the others older.
    PartlyOlder(u64),
    /// The counter is 0: none of them.
    Earlier,
}

fn owner(f: &Facts, g: &TableFull) -> Owner {
    match drop_counter(f) {
        Some(0) => Owner::Earlier,
        Some(d) if d < g.this_boot.implied_drops() => Owner::PartlyOlder(d),
        _ => Owner::Ours,
    }
}

/// The newest of two stamps by wall-clock time.
fn newer<'a>(a: Option<&'a Stamp>, b: Option<&'a Stamp>) -> Option<&'a Stamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.at > x.at { y } else { x }),
        (x, y) => x.or(y),
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
            id: "table.fill".into(),
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
        id: "table.fill".into(),
        severity,
        title,
        evidence,
        fix,
    })
}

fn chains(s: &Summary) -> Option<Finding> {
    let (chain, buckets, max) = (s.average_chain?, s.buckets?, s.max?);
    (chain > 8.0).then(|| Finding {
        id: "table.chains".into(),
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
        id: "memory".into(),
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

/// How recent a non-zero drop counter is, from the newest table-full line
/// of this boot that can be this namespace's: while drops go on the kernel
/// logs up to 10 lines every 5 s (net_ratelimit), so the newest line dates
/// the last drop. No such line (log unreadable, overwritten, or another
/// boot's) leaves the drops undated, which is CRITICAL (issue 7 section 3).
fn drops_dated(
    f: &Facts,
    t: &Thresholds,
    drop: u64,
    evidence: &mut Vec<String>,
) -> (Severity, String) {
    let dropped = format!("{drop} packets were dropped because the conntrack table was full");
    let mut newest: Option<&Stamp> = None;
    let mut undated = false;
    if let Some(log) = &f.kernel_log {
        for g in log.table_full.iter().filter(|g| relevant(f, g)) {
            undated |= g.this_boot.undated > 0;
            newest = newer(newest, g.this_boot.newest.as_ref());
        }
    }
    match newest {
        Some(s) if !undated && !is_recent(s.at, f, t) => {
            evidence.push(format!(
                "the newest table-full line of this boot for this namespace is from {}, older than --recent {}",
                when(&Some(s.clone())),
                window(t)
            ));
            (
                Severity::Warning,
                format!(
                    "{dropped}, the last at {}; none in the last {}",
                    when(&Some(s.clone())),
                    window(t)
                ),
            )
        }
        Some(s) if !undated => (
            Severity::Critical,
            format!("{dropped}, the last at {}", when(&Some(s.clone()))),
        ),
        _ if undated => (Severity::Critical, dropped),
        _ => {
            evidence.push(format!(
                "no table-full line of this boot for this namespace in {}: the drops cannot be dated, so they may be recent",
                f.kernel_log_source.as_deref().unwrap_or("any readable kernel log")
            ));
            (
                Severity::Critical,
                format!("{dropped}; no readable log dates them"),
            )
        }
    }
}

fn counters(f: &Facts, s: &Summary, t: &Thresholds) -> Vec<Finding> {
    let Some(c) = &f.counters else { return vec![] };
    let get = |k: &str| c.values.get(k).copied().unwrap_or(0);
    let rate = |k: &str| f.rates.as_ref().and_then(|r| r.get(k).copied());
    let mut out = Vec::new();
    let drop = get("drop");
    let mut evidence = vec![format!(
        "drop={drop} early_drop={} insert_failed={} (summed over CPUs, from {})",
        get("early_drop"),
        get("insert_failed"),
        c.source
    )];
    if let (Some(r), Some(secs)) = (rate("drop"), f.interval_secs) {
        evidence.push(format!("drop rate over {secs:.1} s: {r:.1}/s"));
    }
    if drop > 0 || rate("drop").is_some_and(|r| r > 0.0) {
        let now = rate("drop").is_some_and(|r| r > 0.0);
        let (severity, title) = drops_dated(f, t, drop, &mut evidence);
        out.push(Finding {
            id: "counters.drop".into(),
            severity: if now { Severity::Critical } else { severity },
            title: if now {
                format!(
                    "packets are being dropped now: the table is full ({:.1}/s)",
                    rate("drop").unwrap_or(0.0)
                )
            } else {
                title
            },
            evidence: evidence.clone(),
            fix: if fill_at_least(s, t.warn) {
                vec!["raise the limit with the commands under table.fill, then find what fills the table: ctdoctor top".into()]
            } else {
                raise_fix(f, suggested(f), s.entry_total())
            },
        });
    }
    let early = get("early_drop");
    if early > 0 {
        out.push(Finding {
            id: "counters.early_drop".into(),
            severity: Severity::Warning,
            title: format!("{early} unassured entries were evicted to make room (early_drop): the table has been full"),
            evidence: vec![format!("early_drop={early}{}", rate("early_drop").map(|r| format!(" ({r:.1}/s now)")).unwrap_or_default())],
            fix: vec!["look for scans / SYN floods / unanswered UDP with: ctdoctor top --filter flags=unreplied --by src,dport".into()],
        });
    }
    let failed = get("insert_failed");
    let toolong = get("chaintoolong");
    if failed > 0 {
        out.push(Finding {
            id: "counters.insert_failed".into(),
            severity: Severity::Warning,
            title: format!("{failed} packets dropped at insert (clashes or hash chains too long)"),
            evidence: vec![format!("insert_failed={failed} chaintoolong={toolong} clash_resolve={}", get("clash_resolve"))],
            fix: if toolong > 0 {
                vec!["chains are too long: raise hashsize (echo N > /sys/module/nf_conntrack/parameters/hashsize) or look for a hash-chain flood".into()]
            } else {
                vec!["usually UDP races (DNS A/AAAA in parallel from one socket); see insert_failed in the kernel docs".into()]
            },
        });
    }
    if out.is_empty() {
        out.push(Finding {
            id: "counters.drop".into(),
            severity: Severity::Ok,
            title: "no packets dropped for a full table (drop counter is 0)".into(),
            evidence,
            fix: vec![],
        });
    }
    out
}

fn ns_label(f: &Facts, inode: Option<u64>) -> String {
    match inode {
        None => "the initial namespace (or an older kernel that does not say)".into(),
        Some(i) => match f.namespaces.iter().find(|n| n.inode == i) {
            Some(n) => format!("netns {i} ({})", n.name),
            None => format!("netns {i} (no longer exists)"),
        },
    }
}

fn relevant(f: &Facts, g: &TableFull) -> bool {
    match g.netns_inode {
        Some(i) => Some(i) == f.netns_inode,
        // Without a namespace in the text: the initial namespace on 6.17+,
        // any namespace before. Only a non-init namespace can rule it out.
        None => {
            f.netns_inode.is_none() || f.netns_inode == f.init_netns_inode || !kernel_names_netns(f)
        }
    }
}

/// 6.17 added `in netns N` to the message for non-initial namespaces.
fn kernel_names_netns(f: &Facts) -> bool {
    let Some(k) = &f.kernel else { return false };
    let mut it = k
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let (major, minor) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (major, minor) >= (6, 17)
}

/// One namespace's table-full lines, judged (issue 7 sections 2 and 3):
/// this boot's lines that name this namespace (or none) are weighed against
/// its drop counter; the others (another boot or host, unknown date) by
/// their age alone. Mine and recent is CRITICAL, mine and older WARNING, an
/// earlier namespace's INFO; another namespace's WARNING while recent.
fn table_full(f: &Facts, t: &Thresholds, g: &TableFull, reach: &str) -> Finding {
    let mine = relevant(f, g);
    let who = ns_label(f, g.netns_inode);
    let (tb, other) = (&g.this_boot, &g.other);
    let owner = (mine && tb.lines > 0).then(|| owner(f, g));
    let tb_recent = tally_recent(tb, f, t);
    let other_recent = tally_recent(other, f, t);
    let mut severity = Severity::Info;
    if mine {
        if tb.lines > 0 && owner != Some(Owner::Earlier) {
            severity = severity.max(if tb_recent {
                Severity::Critical
            } else {
                Severity::Warning
            });
        }
        if other.lines > 0 {
            severity = severity.max(if other_recent {
                Severity::Critical
            } else {
                Severity::Warning
            });
        }
    } else if tb_recent || other_recent {
        severity = Severity::Warning;
    }
    let newest = newer(tb.newest.as_ref(), other.newest.as_ref()).cloned();
    let last = if tb.undated + other.undated > 0 {
        &g.last
    } else {
        &newest
    };
    let (n, window) = (g.count, window(t));
    let title = match (mine, severity, g.netns_inode) {
        (_, Severity::Critical, _) | (false, Severity::Warning, _) => format!(
            "kernel log: table full, packets dropped in {who}, last at {}",
            when(last)
        ),
        (true, Severity::Info, Some(i)) => format!(
            "kernel log: an earlier namespace with inode {i} was full at {} ({n} lines); not this one, whose drop counter is 0",
            when(last)
        ),
        (true, Severity::Info, None) => format!(
            "kernel log: a table was full at {} ({n} lines) in a namespace the message does not name; not this one, whose drop counter is 0",
            when(last)
        ),
        _ => format!(
            "kernel log: table was full in {who} at {}, {n} lines; none in the last {window}",
            when(last)
        ),
    };
    let mut evidence = vec![
        format!("{} x \"{}\"", g.count, g.text),
        format!("first {}, last {}", when(&g.first), when(&g.last)),
    ];
    if g.suppressed > 0 {
        evidence.push(format!(
            "plus {} rate-limited (net_ratelimit: callbacks suppressed)",
            g.suppressed
        ));
    }
    match owner {
        Some(Owner::Earlier) => evidence.push(format!(
            "this namespace's drop counter is 0, and every logged table-full drop increments the counter of its own namespace, which starts at 0 when the namespace is created: these {} lines of this boot are another or an earlier namespace's (the kernel reuses inode numbers{})",
            tb.lines,
            if g.netns_inode.is_none() {
                "; before 6.17 the message does not name the namespace"
            } else {
                ""
            }
        )),
        Some(Owner::PartlyOlder(d)) => evidence.push(format!(
            "this namespace's drop counter is {d}, but the {} lines of this boot{} prove at least {} drops: some lines are older, from an earlier namespace with the same inode; the newest are this one's",
            tb.lines,
            if tb.suppressed > 0 {
                format!(" and {} suppressed", tb.suppressed)
            } else {
                String::new()
            },
            tb.implied_drops()
        )),
        _ => {}
    }
    if other.lines > 0 {
        evidence.push(format!(
            "{} lines not known to be from this boot ({} of unknown age, counted as recent): judged by their age, not by this host's counters",
            other.lines, other.undated
        ));
    }
    evidence.push(reach.to_string());
    let fix = if !mine {
        let target = f
            .namespaces
            .iter()
            .find(|ns| Some(ns.inode) == g.netns_inode)
            .map_or_else(
                || "NAME|PID".to_string(),
                |ns| ns.path.display().to_string(),
            );
        vec![format!(
            "ctdoctor --netns {target} check   # or: ctdoctor check --all-netns"
        )]
    } else if severity >= Severity::Warning {
        vec!["raise nf_conntrack_max (see table.fill) and find what fills it: ctdoctor top".into()]
    } else {
        vec![]
    };
    Finding {
        id: match g.netns_inode {
            Some(i) => format!("log.table_full.{i}"),
            None => "log.table_full".into(),
        },
        severity,
        title,
        evidence,
        fix,
    }
}

fn kernel_log(f: &Facts, t: &Thresholds) -> Vec<Finding> {
    let Some(log) = &f.kernel_log else {
        return vec![];
    };
    let source = f.kernel_log_source.clone().unwrap_or_default();
    let mut reach = format!(
        "{source}: {} lines from {}{}",
        log.lines,
        when(&log.first),
        if f.kernel_log_truncated {
            " (older records already overwritten)"
        } else {
            ""
        }
    );
    if log.skipped_long > 0 {
        reach.push_str(&format!(
            "; {} lines over {} KiB skipped (the first is line {})",
            log.skipped_long,
            kernel_log::MAX_LINE / 1024,
            log.first_skipped.unwrap_or(0)
        ));
    }
    let mut out = Vec::new();
    for g in &log.table_full {
        out.push(table_full(f, t, g, &reach));
    }
    if log.ungrouped > 0 {
        out.push(Finding {
            id: "log.table_full.more".into(),
            severity: Severity::Warning,
            title: format!(
                "kernel log: {} more table-full lines in over {} other namespaces",
                log.ungrouped,
                kernel_log::MAX_GROUPS
            ),
            evidence: vec![reach.clone()],
            fix: vec!["ctdoctor check --all-netns".into()],
        });
    }
    if log.table_full.is_empty() {
        out.push(Finding {
            id: "log.table_full".into(),
            severity: Severity::Ok,
            title: "kernel log: no \"table full, dropping packet\" messages".into(),
            evidence: vec![reach],
            fix: vec![],
        });
    }
    if log.vmalloc_fallbacks > 0 {
        out.push(Finding {
            id: "log.vmalloc".into(),
            severity: Severity::Info,
            title: "the bucket array was allocated with vmalloc (nf_conntrack: falling back to vmalloc)".into(),
            evidence: vec![format!("{} times, last {}", log.vmalloc_fallbacks, when(&log.last_vmalloc))],
            fix: vec![],
        });
    }
    out
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
                id: "timeouts.tcp_established".into(),
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
                id: "timeouts.tcp_established".into(),
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
            id: "timeouts.tcp_time_wait".into(),
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

/// The service acts in the namespace checked: its process runs there, or,
/// for an enabled unit or ufw's configuration (which act in the initial
/// namespace), this is the initial namespace. With `--netns`, /proc still
/// lists the host's processes (issue 7 section 4). Unknown counts as here.
fn service_here(f: &Facts, svc: &crate::facts::Service) -> bool {
    match (svc.netns_inode.or(f.init_netns_inode), f.netns_inode) {
        (Some(theirs), Some(ours)) => theirs == ours,
        _ => true,
    }
}

fn services_evidence(f: &Facts, list: &[&crate::facts::Service]) -> Vec<String> {
    list.iter()
        .map(|s| {
            let ns = s.netns_inode.or(f.init_netns_inode);
            // Where it runs matters only when checking another namespace.
            let place = match ns {
                _ if f.netns_inode == f.init_netns_inode => String::new(),
                Some(i) if Some(i) == f.init_netns_inode => format!(", host netns {i}"),
                Some(i) => format!(", {}", ns_label(f, Some(i))),
                None => String::new(),
            };
            format!("{} ({}{place}): {}", s.name, s.seen, s.uses_conntrack_for)
        })
        .collect()
}

fn names(list: &[&crate::facts::Service]) -> String {
    list.iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn who(f: &Facts, s: &Summary, t: &Thresholds) -> Vec<Finding> {
    let mut out = Vec::new();
    let r = &f.rules;
    let rules_read = !f.rule_sources.is_empty();
    if r.needs_conntrack() {
        let mut evidence: Vec<String> = r.nat.iter().chain(&r.stateful).take(8).cloned().collect();
        let more = r.nat.len() + r.stateful.len();
        if more > 8 {
            evidence.push(format!("... {} more", more - 8));
        }
        out.push(Finding {
            id: "who.rules".into(),
            severity: Severity::Info,
            title: format!(
                "firewall rules need conntrack: {} NAT, {} stateful",
                r.nat.len(),
                r.stateful.len()
            ),
            evidence,
            fix: vec![],
        });
    }
    if !r.notrack.is_empty() {
        out.push(Finding {
            id: "who.notrack".into(),
            severity: Severity::Info,
            title: format!(
                "{} NOTRACK rules already exempt some traffic",
                r.notrack.len()
            ),
            evidence: r.notrack.iter().take(8).cloned().collect(),
            fix: vec![],
        });
    }
    let (here, elsewhere): (Vec<_>, Vec<_>) =
        f.services.iter().partition(|svc| service_here(f, svc));
    if !here.is_empty() {
        out.push(Finding {
            id: "who.services".into(),
            severity: Severity::Info,
            title: format!("services that use conntrack: {}", names(&here)),
            evidence: services_evidence(f, &here),
            fix: vec![],
        });
    }
    if !elsewhere.is_empty() {
        let on_host = elsewhere
            .iter()
            .all(|svc| svc.netns_inode.or(f.init_netns_inode) == f.init_netns_inode);
        out.push(Finding {
            id: "who.host_services".into(),
            severity: Severity::Info,
            title: format!(
                "services that use conntrack in {}, not in this one: {}",
                if on_host {
                    "the host's namespace"
                } else {
                    "other namespaces"
                },
                names(&elsewhere)
            ),
            evidence: services_evidence(f, &elsewhere),
            fix: vec![],
        });
    }
    if rules_read && !r.needs_conntrack() && here.is_empty() {
        let full = match (s.count, s.max) {
            (Some(c), Some(m)) if m > 0 => pct(c, m) >= t.warn,
            _ => false,
        };
        // Said on an empty table too: nf_conntrack is loaded or built in
        // (its sysctls exist), and nothing here explains why.
        let how = match f.conntrack_builtin {
            Some(true) => "nf_conntrack is built into the kernel",
            Some(false) => "nf_conntrack is loaded as a module",
            None => "nf_conntrack is loaded or built in",
        };
        let (title, entries) = match s.count {
            Some(c) if c > 0 => (
                format!("nothing found here needs conntrack, yet it tracks {c} flows"),
                format!("{c} entries here"),
            ),
            Some(_) => (
                format!("nothing found here needs conntrack, yet {how} (table empty)"),
                "0 entries here".to_string(),
            ),
            None => (
                format!("nothing found here needs conntrack, yet {how}"),
                "count unknown".to_string(),
            ),
        };
        let unload = "unload it: modprobe -r nf_conntrack (lsmod | grep nf_conntrack lists what still holds it)";
        let fix = match (s.count, f.conntrack_builtin) {
            // Empty and built in: nothing here to remove or unload.
            (Some(0), Some(true)) => vec![],
            (Some(0), Some(false)) => vec![unload.to_string()],
            (_, builtin) => {
                let mut fix = vec![
                    "runbook fix A: remove what loads conntrack (a leftover rule, an unused Docker/firewalld) or, if it is built in, NOTRACK the busy traffic in the raw table".to_string(),
                ];
                if builtin == Some(false) {
                    fix.push(format!("then {unload}"));
                }
                fix.push("check again after removing: ctdoctor check".into());
                fix
            }
        };
        out.push(Finding {
            id: "who.unneeded".into(),
            severity: if full {
                Severity::Warning
            } else {
                Severity::Info
            },
            title,
            evidence: vec![
                format!("no NAT or stateful rules in: {}", f.rule_sources.join(", ")),
                "no known conntrack-dependent service running or enabled in this namespace".into(),
                format!("{how} ({entries})"),
            ],
            fix,
        });
    }
    out
}

fn namespaces(f: &Facts, s: &Summary, t: &Thresholds) -> Vec<Finding> {
    let (Some(counts), Some(max)) = (&f.netns_counts, s.max) else {
        return vec![];
    };
    let mut rows: Vec<(u64, &str, u64)> = counts
        .iter()
        .filter_map(|n| Some((n.count?, n.name.as_str(), n.inode)))
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
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
            id: format!("netns.{inode}"),
            severity,
            title: format!("netns {name}: {fill:.0}% full ({count}/{max})"),
            evidence: vec![
                "each namespace's count is compared with the global nf_conntrack_max on its own"
                    .into(),
            ],
            fix: vec![format!("ctdoctor --netns {path} check")],
        });
    }
    let unreadable = counts.iter().filter(|n| n.count.is_none()).count();
    let mut evidence: Vec<String> = rows
        .iter()
        .take(10)
        .map(|(c, n, i)| format!("{n} (inode {i}): {c}"))
        .collect();
    if unreadable > 0 {
        evidence.push(format!("{unreadable} namespaces could not be read"));
    }
    out.push(Finding {
        id: "netns.all".into(),
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
            id: format!("cloud.ena.{}", a.interface),
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
    let buckets_bytes = f.buckets.map(|b| b.saturating_mul(8));
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
        memory_now: f.count.map(|c| {
            c.saturating_mul(per_entry)
                .saturating_add(buckets_bytes.unwrap_or(0))
        }),
        memory_at_max: f.max.map(|m| {
            m.saturating_mul(per_entry)
                .saturating_add(buckets_bytes.unwrap_or(0))
        }),
        mem_total: f.mem_total,
    }
}

pub fn diagnose(f: &Facts, t: &Thresholds) -> Report {
    let summary = summarize(f);
    let mut findings = Vec::new();
    if !f.conntrack_loaded {
        findings.push(Finding {
            id: "conntrack.unused".into(),
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
        unreadable: f.unreadable.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{Counters, Mix};
    use crate::kernel_log;
    use crate::slab::SlabCache;

    /// A healthy host: init namespace on 6.18, 10% full, nothing logged.
    fn healthy() -> Facts {
        Facts {
            kernel: Some("6.18.44".into()),
            netns_inode: Some(1000),
            init_netns_inode: Some(1000),
            conntrack_loaded: true,
            count: Some(26_214),
            max: Some(262_144),
            buckets: Some(262_144),
            mix: Some(Mix {
                entries: 26_214,
                assured: 20_000,
                ..Mix::default()
            }),
            slab: Some(SlabCache {
                active_objs: 1,
                num_objs: 1,
                objsize: 256,
            }),
            mem_total: Some(24 << 30),
            counters: Some(Counters {
                source: "test".into(),
                values: [("drop".to_string(), 0)].into(),
            }),
            kernel_log: Some(kernel_log::scan(["[ 1.0] booting"])),
            kernel_log_source: Some("test".into()),
            rule_sources: vec!["nft -j list ruleset".into()],
            rules: crate::ruleset::RuleUse {
                stateful: vec!["inet filter input: ct".into()],
                ..Default::default()
            },
            ..Facts::default()
        }
    }

    fn ids(r: &Report) -> Vec<(&str, Severity)> {
        r.findings
            .iter()
            .map(|f| (f.id.as_str(), f.severity))
            .collect()
    }

    fn find<'a>(r: &'a Report, id: &str) -> &'a Finding {
        r.findings
            .iter()
            .find(|f| f.id == id)
            .unwrap_or_else(|| panic!("no {id} in {:?}", ids(r)))
    }

    #[test]
    fn not_loaded_is_ok() {
        let r = diagnose(&Facts::default(), &Thresholds::default());
        assert_eq!((r.verdict, r.exit_code), (Verdict::Ok, 0));
        assert_eq!(ids(&r), vec![("conntrack.unused", Severity::Ok)]);
    }

    #[test]
    fn healthy_is_ok_with_numbers() {
        let r = diagnose(&healthy(), &Thresholds::default());
        assert_eq!(r.verdict, Verdict::Ok, "{:?}", ids(&r));
        assert_eq!(r.headline, "conntrack table 10.0% full (26214/262144)");
        assert_eq!(
            r.summary.fill_percent.map(|p| (p * 10.0).round()),
            Some(100.0)
        );
        // 26214 x 2 / 262144
        assert_eq!(
            r.summary.average_chain.map(|c| (c * 1000.0).round()),
            Some(200.0)
        );
        assert_eq!(r.summary.memory_now, Some(26_214 * 256 + 262_144 * 8));
        assert_eq!(r.summary.memory_at_max, Some(262_144 * 256 + 262_144 * 8));
        assert_eq!(r.summary.evictable, Some(6_214));
    }

    #[test]
    fn full_of_assured_entries_is_critical() {
        let mut f = healthy();
        f.count = Some(262_144);
        f.mix = Some(Mix {
            entries: 262_144,
            assured: 262_144,
            ..Mix::default()
        });
        let r = diagnose(&f, &Thresholds::default());
        assert_eq!((r.verdict, r.exit_code), (Verdict::Critical, 2));
        let fill = find(&r, "table.fill");
        assert_eq!(fill.severity, Severity::Critical);
        assert!(
            fill.fix[0].contains("nf_conntrack_max=524288"),
            "{:?}",
            fill.fix
        );
    }

    #[test]
    fn full_of_unassured_entries_is_pressure_not_critical() {
        let mut f = healthy();
        f.count = Some(262_000);
        f.mix = Some(Mix {
            entries: 262_000,
            assured: 1_000,
            unreplied: 261_000,
            ..Mix::default()
        });
        f.counters = Some(Counters {
            source: "t".into(),
            values: [("drop".into(), 0), ("early_drop".into(), 57)].into(),
        });
        let r = diagnose(&f, &Thresholds::default());
        assert_eq!(r.verdict, Verdict::Warning, "{:?}", ids(&r));
        assert_eq!(find(&r, "table.fill").severity, Severity::Warning);
        assert_eq!(find(&r, "counters.early_drop").severity, Severity::Warning);
        assert!(!r.findings.iter().any(|x| x.severity == Severity::Critical));
    }

    #[test]
    fn thresholds_are_configurable() {
        let mut f = healthy();
        f.count = Some(200_000); // 76%
        assert_eq!(
            diagnose(&f, &Thresholds::default()).verdict,
            Verdict::Warning
        );
        assert_eq!(
            diagnose(
                &f,
                &Thresholds {
                    warn: 80.0,
                    crit: 95.0,
                    ..Thresholds::default()
                }
            )
            .verdict,
            Verdict::Ok
        );
        assert_eq!(
            diagnose(
                &f,
                &Thresholds {
                    warn: 50.0,
                    crit: 70.0,
                    ..Thresholds::default()
                }
            )
            .verdict,
            Verdict::Critical
        );
    }

    #[test]
    fn past_drops_are_critical_on_an_empty_table() {
        let mut f = healthy();
        f.count = Some(10);
        f.counters = Some(Counters {
            source: "t".into(),
            values: [("drop".into(), 3)].into(),
        });
        let r = diagnose(&f, &Thresholds::default());
        assert_eq!(r.verdict, Verdict::Critical);
        assert!(
            find(&r, "counters.drop")
                .title
                .starts_with("3 packets were dropped")
        );
    }

    #[test]
    fn drop_rate_says_now() {
        let mut f = healthy();
        f.counters = Some(Counters {
            source: "t".into(),
            values: [("drop".into(), 50)].into(),
        });
        f.rates = Some([("drop".to_string(), 12.5)].into());
        f.interval_secs = Some(2.0);
        let r = diagnose(&f, &Thresholds::default());
        let d = find(&r, "counters.drop");
        assert!(
            d.title.contains("dropped now") && d.title.contains("12.5/s"),
            "{}",
            d.title
        );
    }

    /// Boot at 1,000,000 (Unix), now 10,000 s later.
    const BOOT: i64 = 1_000_000;
    const NOW: f64 = 1_010_000.0;

    /// /dev/kmsg as the scanner sees it on this boot.
    fn kmsg_ctx() -> kernel_log::Context {
        kernel_log::Context {
            now: Some(NOW),
            boot_time: Some(BOOT as f64),
            utc_offset: 0,
            this_boot: true,
        }
    }

    /// Raw /dev/kmsg table-full records at these uptimes (seconds).
    fn kmsg_full(netns: Option<u64>, uptimes: &[u64]) -> Vec<String> {
        uptimes
            .iter()
            .enumerate()
            .map(|(seq, up)| match netns {
                Some(i) => format!(
                    "4,{seq},{},-;nf_conntrack: nf_conntrack: table full in netns {i}, dropping packet",
                    up * 1_000_000
                ),
                None => format!(
                    "4,{seq},{},-;nf_conntrack: nf_conntrack: table full, dropping packet",
                    up * 1_000_000
                ),
            })
            .collect()
    }

    /// A namespace (inode 7777, not the initial one) on 6.18, dated at
    /// NOW, whose /dev/kmsg holds these lines and whose drop counter is `drop`.
    fn pod(lines: &[String], drop: u64) -> Facts {
        let mut f = healthy();
        f.netns_inode = Some(7777);
        f.now = Some(NOW);
        f.boot_time = Some(BOOT);
        f.kernel_log = Some(kernel_log::scan_with(
            lines.iter().map(String::as_str),
            kmsg_ctx(),
        ));
        f.kernel_log_source = Some("/dev/kmsg".into());
        f.counters = Some(Counters {
            source: "t".into(),
            values: [("drop".to_string(), drop)].into(),
        });
        f
    }

    #[test]
    fn reused_inode_with_zero_drop_counter_is_info_not_critical() {
        // An earlier namespace with inode 7777 was full 100 s ago; this one
        // is new and has dropped nothing.
        let f = pod(&kmsg_full(Some(7777), &[9_898, 9_899, 9_900]), 0);
        let r = diagnose(&f, &Thresholds::default());
        let log = find(&r, "log.table_full.7777");
        assert_eq!(log.severity, Severity::Info, "{log:?}");
        assert!(
            log.title
                .starts_with("kernel log: an earlier namespace with inode 7777 was full at 1970-01-12 16:31:40 UTC (3 lines)"),
            "{}",
            log.title
        );
        assert!(log.evidence.iter().any(|e| e.contains("drop counter is 0")));
        assert_eq!(r.verdict, Verdict::Ok, "{:?}", ids(&r));
    }

    #[test]
    fn drop_counter_below_the_logged_lines_says_some_are_older() {
        // 5 lines, 40 suppressed: at least 45 drops; the counter says 2.
        let mut lines = kmsg_full(Some(7777), &[9_000, 9_001, 9_002, 9_003, 9_900]);
        lines.insert(
            3,
            "4,9,9002500000,-;net_ratelimit: 40 callbacks suppressed".into(),
        );
        let r = diagnose(&pod(&lines, 2), &Thresholds::default());
        let log = find(&r, "log.table_full.7777");
        assert_eq!(log.severity, Severity::Critical);
        assert!(
            log.evidence.iter().any(|e| e
                == "this namespace's drop counter is 2, but the 5 lines of this boot and 40 suppressed prove at least 45 drops: some lines are older, from an earlier namespace with the same inode; the newest are this one's"),
            "{:?}",
            log.evidence
        );
    }

    #[test]
    fn unnamed_lines_before_6_17_do_not_make_a_clean_namespace_critical() {
        let lines = kmsg_full(None, &[9_990]);
        let mut f = pod(&lines, 0);
        f.kernel = Some("5.15.0".into());
        let r = diagnose(&f, &Thresholds::default());
        let log = find(&r, "log.table_full");
        assert_eq!(log.severity, Severity::Info, "{log:?}");
        assert!(log.title.contains("not this one, whose drop counter is 0"));
        assert_eq!(r.verdict, Verdict::Ok);
        // The same lines with drops counted here are this namespace's.
        let mut f = pod(&lines, 1);
        f.kernel = Some("5.15.0".into());
        let r = diagnose(&f, &Thresholds::default());
        assert_eq!(find(&r, "log.table_full").severity, Severity::Critical);
        // In the initial namespace of 6.18, too, unnamed lines are weighed.
        let mut f = pod(&lines, 0);
        f.netns_inode = f.init_netns_inode;
        let r = diagnose(&f, &Thresholds::default());
        assert_eq!(find(&r, "log.table_full").severity, Severity::Info);
    }

    #[test]
    fn table_full_lines_older_than_recent_are_warning_so_the_check_recovers() {
        // Full 8000 s ago (uptime 2000 s), 12 drops counted, nothing since.
        let f = pod(&kmsg_full(Some(7777), &[1_999, 2_000]), 12);
        let r = diagnose(&f, &Thresholds::default());
        let log = find(&r, "log.table_full.7777");
        assert_eq!(log.severity, Severity::Warning);
        assert_eq!(
            log.title,
            "kernel log: table was full in netns 7777 (no longer exists) at 1970-01-12 14:20:00 UTC, 2 lines; none in the last 1h"
        );
        let drop = find(&r, "counters.drop");
        assert_eq!(drop.severity, Severity::Warning);
        assert_eq!(
            drop.title,
            "12 packets were dropped because the conntrack table was full, the last at 1970-01-12 14:20:00 UTC; none in the last 1h"
        );
        assert_eq!((r.verdict, r.exit_code), (Verdict::Warning, 1));
        // With --recent 3h the same lines are recent.
        let t = Thresholds {
            recent: Duration::from_secs(3 * 3600),
            ..Thresholds::default()
        };
        let r = diagnose(&f, &t);
        assert_eq!(find(&r, "log.table_full.7777").severity, Severity::Critical);
        assert_eq!(find(&r, "counters.drop").severity, Severity::Critical);
        // A positive drop rate is now, whatever the log says.
        let mut f = f;
        f.rates = Some([("drop".to_string(), 0.5)].into());
        f.interval_secs = Some(2.0);
        let r = diagnose(&f, &Thresholds::default());
        assert_eq!(find(&r, "counters.drop").severity, Severity::Critical);
    }

    #[test]
    fn drop_counter_that_no_log_dates_is_critical() {
        let mut f = pod(&[], 4);
        f.kernel_log_truncated = true;
        let r = diagnose(&f, &Thresholds::default());
        let drop = find(&r, "counters.drop");
        assert_eq!(drop.severity, Severity::Critical);
        assert_eq!(
            drop.title,
            "4 packets were dropped because the conntrack table was full; no readable log dates them"
        );
    }

    #[test]
    fn kernel_log_file_of_another_boot_is_judged_by_age_not_counters() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kernel-log-historical.txt"
        ))
        .expect("fixture");
        // Read on 2026-11-26 14:00 UTC, this host booted at 13:50: every
        // line of the file (Nov 20 to Nov 26 13:41) is from before.
        let now = 1_795_701_600.0;
        let ctx = kernel_log::Context {
            now: Some(now),
            boot_time: Some(now - 600.0),
            utc_offset: 0,
            this_boot: false,
        };
        let mut f = healthy();
        f.now = Some(now);
        f.kernel_log = Some(kernel_log::scan_with(text.lines(), ctx));
        // In the initial namespace with drop=0: the unnamed lines are not
        // weighed against this boot's counter but judged by their age: the
        // newest (Nov 23 19:20:17) is days old: WARNING, with when.
        let r = diagnose(&f, &Thresholds::default());
        let init = find(&r, "log.table_full");
        assert_eq!(init.severity, Severity::Warning, "{init:?}");
        assert_eq!(
            init.title,
            "kernel log: table was full in the initial namespace (or an older kernel that does not say) at 2026-11-23 19:20:17 UTC, 6 lines; none in the last 1h"
        );
        assert!(
            init.evidence
                .iter()
                .any(|e| e.contains("2418 rate-limited")),
            "{init:?}"
        );
        // With --recent 7d they are recent: CRITICAL.
        let week = Thresholds {
            recent: Duration::from_secs(7 * 86_400),
            ..Thresholds::default()
        };
        assert_eq!(
            find(&diagnose(&f, &week), "log.table_full").severity,
            Severity::Critical
        );
        // Another namespace's lines (13:35, 25 minutes old): WARNING while
        // recent, INFO once older than --recent.
        assert_eq!(
            find(&r, "log.table_full.4026532177").severity,
            Severity::Warning
        );
        assert_eq!(find(&r, "log.vmalloc").severity, Severity::Info);
        let ten_minutes = Thresholds {
            recent: Duration::from_secs(600),
            ..Thresholds::default()
        };
        assert_eq!(
            find(&diagnose(&f, &ten_minutes), "log.table_full.4026532177").severity,
            Severity::Info
        );
        // Inside namespace 4026532177 on 6.18 with drop=0: its own lines
        // are another boot's, 25 minutes old: CRITICAL by age; the unnamed
        // (initial namespace) ones are not ours and old: INFO.
        f.netns_inode = Some(4_026_532_177);
        let r = diagnose(&f, &Thresholds::default());
        assert_eq!(
            find(&r, "log.table_full.4026532177").severity,
            Severity::Critical
        );
        assert_eq!(find(&r, "log.table_full").severity, Severity::Info);
        // Plain dmesg uptime stamps in a file cannot be dated: recent.
        let mut f = healthy();
        f.now = Some(now);
        f.kernel_log = Some(kernel_log::scan_with(
            ["[ 5.0] nf_conntrack: nf_conntrack: table full, dropping packet"],
            ctx,
        ));
        let r = diagnose(&f, &ten_minutes);
        assert_eq!(find(&r, "log.table_full").severity, Severity::Critical);
    }

    #[test]
    fn unreadable_kernel_log_given_by_the_user_is_unknown() {
        let mut f = healthy();
        let e = Unreadable {
            what: "/var/log/kern.log".into(),
            why: crate::source::Why::NotPresent,
        };
        f.kernel_log = None;
        f.kernel_log_error = Some(e.clone());
        f.unreadable.push(e);
        let r = diagnose(&f, &Thresholds::default());
        assert_eq!((r.verdict, r.exit_code), (Verdict::Unknown, 3));
        assert_eq!(
            r.headline,
            "cannot read the kernel log: /var/log/kern.log: not present"
        );
    }

    #[test]
    fn idle_established_and_time_wait() {
        let mut f = healthy();
        f.count = Some(150_000);
        f.timeouts = [
            ("nf_conntrack_tcp_timeout_established".to_string(), 432_000),
            ("nf_conntrack_tcp_timeout_time_wait".to_string(), 120),
        ]
        .into();
        f.mix = Some(Mix {
            entries: 150_000,
            assured: 150_000,
            established_idle_1h: 60_000,
            tcp_state: [
                ("ESTABLISHED".to_string(), 80_000),
                ("TIME_WAIT".to_string(), 50_000),
            ]
            .into(),
            ..Mix::default()
        });
        let r = diagnose(&f, &Thresholds::default());
        let est = find(&r, "timeouts.tcp_established");
        assert_eq!(est.severity, Severity::Warning);
        assert!(est.fix[0].contains("=7440"));
        assert_eq!(
            find(&r, "timeouts.tcp_time_wait").severity,
            Severity::Warning
        );
        // The same mix in a nearly empty table is not worth a warning.
        f.count = Some(1_000);
        let r = diagnose(&f, &Thresholds::default());
        assert!(!r.findings.iter().any(|x| x.id == "timeouts.tcp_time_wait"));
    }

    #[test]
    fn who_needs_it() {
        let mut f = healthy();
        f.rules = crate::ruleset::RuleUse::default();
        let r = diagnose(&f, &Thresholds::default());
        assert_eq!(find(&r, "who.unneeded").severity, Severity::Info);
        f.count = Some(250_000);
        let r = diagnose(&f, &Thresholds::default());
        assert_eq!(find(&r, "who.unneeded").severity, Severity::Warning);
        // Unread rulesets never claim "nothing needs it".
        f.rule_sources.clear();
        let r = diagnose(&f, &Thresholds::default());
        assert!(!r.findings.iter().any(|x| x.id == "who.unneeded"));
    }

    /// Issue 7 section 4: an empty table used to hide who.unneeded.
    #[test]
    fn who_unneeded_is_said_on_an_empty_table() {
        let mut f = healthy();
        f.rules = crate::ruleset::RuleUse::default();
        f.count = Some(0);
        f.mix = None;
        f.conntrack_builtin = Some(true);
        let r = diagnose(&f, &Thresholds::default());
        let w = find(&r, "who.unneeded");
        assert_eq!(w.severity, Severity::Info);
        assert_eq!(
            w.title,
            "nothing found here needs conntrack, yet nf_conntrack is built into the kernel (table empty)"
        );
        assert_eq!(r.verdict, Verdict::Ok);
        assert!(w.fix.is_empty(), "built in and empty: nothing to do");
        f.conntrack_builtin = Some(false);
        let r = diagnose(&f, &Thresholds::default());
        let w = find(&r, "who.unneeded");
        assert!(
            w.title
                .ends_with("yet nf_conntrack is loaded as a module (table empty)")
        );
        assert_eq!(
            w.fix,
            vec![
                "unload it: modprobe -r nf_conntrack (lsmod | grep nf_conntrack lists what still holds it)"
            ]
        );
    }

    /// Issue 7 section 4: with `--netns`, /proc shows the host's dockerd
    /// and enabled units act in the initial namespace: they are the host's.
    #[test]
    fn host_services_are_not_this_namespaces() {
        let svc = |name: &str, seen: &str, netns_inode| crate::facts::Service {
            name: name.into(),
            seen: seen.into(),
            uses_conntrack_for: "NAT".into(),
            netns_inode,
        };
        let mut f = healthy();
        f.netns_inode = Some(2000);
        f.rules = crate::ruleset::RuleUse::default();
        f.services = vec![
            svc("Docker", "running (pid 10)", Some(1000)),
            svc("kubelet", "unit kubelet.service enabled", None),
        ];
        let r = diagnose(&f, &Thresholds::default());
        assert!(!r.findings.iter().any(|x| x.id == "who.services"), "{r:#?}");
        let h = find(&r, "who.host_services");
        assert_eq!(
            h.title,
            "services that use conntrack in the host's namespace, not in this one: Docker, kubelet"
        );
        assert_eq!(
            h.evidence,
            vec![
                "Docker (running (pid 10), host netns 1000): NAT",
                "kubelet (unit kubelet.service enabled, host netns 1000): NAT"
            ]
        );
        // Nothing in this namespace needs conntrack.
        assert!(r.findings.iter().any(|x| x.id == "who.unneeded"));
        // The same dockerd seen from the host is this namespace's.
        f.netns_inode = Some(1000);
        let r = diagnose(&f, &Thresholds::default());
        let here = find(&r, "who.services");
        assert_eq!(here.title, "services that use conntrack: Docker, kubelet");
        assert_eq!(here.evidence[0], "Docker (running (pid 10)): NAT");
        assert!(!r.findings.iter().any(|x| x.id == "who.host_services"));
        assert!(!r.findings.iter().any(|x| x.id == "who.unneeded"));
    }

    #[test]
    fn unknown_without_count() {
        let mut f = healthy();
        f.count = None;
        f.unreadable.push(Unreadable {
            what: "x".into(),
            why: crate::source::Why::Permission("CAP_NET_ADMIN".into()),
        });
        let r = diagnose(&f, &Thresholds::default());
        assert_eq!((r.verdict, r.exit_code), (Verdict::Unknown, 3));
        assert_eq!(r.unreadable.len(), 1);
    }

    #[test]
    fn memory_and_estimate() {
        let mut f = healthy();
        f.slab = None;
        f.mem_total = Some(512 << 20);
        f.max = Some(1_048_576);
        let r = diagnose(&f, &Thresholds::default());
        let m = find(&r, "memory");
        assert_eq!(m.severity, Severity::Warning);
        assert!(m.evidence[0].contains("estimate"));
    }

    #[test]
    fn cloud_allowance() {
        let mut f = healthy();
        f.cloud = vec![crate::facts::Allowance {
            interface: "eth0".into(),
            exceeded: 9,
            available: None,
        }];
        let r = diagnose(&f, &Thresholds::default());
        assert_eq!(find(&r, "cloud.ena.eth0").severity, Severity::Critical);
    }

    #[test]
    fn all_netns() {
        let mut f = healthy();
        f.namespaces = vec![crate::facts::Namespace {
            inode: 7,
            name: "pod-a".into(),
            path: "/run/netns/pod-a".into(),
        }];
        f.netns_counts = Some(vec![
            crate::facts::NetnsCount {
                inode: 7,
                name: "pod-a".into(),
                count: Some(262_144),
                error: None,
            },
            crate::facts::NetnsCount {
                inode: 1000,
                name: "init".into(),
                count: Some(10),
                error: None,
            },
        ]);
        let r = diagnose(&f, &Thresholds::default());
        let pod = find(&r, "netns.7");
        assert_eq!(pod.severity, Severity::Critical);
        assert_eq!(pod.fix, vec!["ctdoctor --netns /run/netns/pod-a check"]);
        assert_eq!(r.verdict, Verdict::Critical);
    }
}
