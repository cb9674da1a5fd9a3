//! The drop rules: the kernel's `drop` counter and the table-full lines of
//! the kernel log, weighed against each other (whose lines are they?) and
//! dated against `--recent` (is it happening now?).

use super::*;
use crate::facts::{Counters, Why};
use crate::kernel_log::{TableFull, Tally};

/// Whether a line logged at `at` is younger than `--recent`; a line whose
/// time cannot be known counts as recent (issue 7 section 3).
pub(super) fn is_recent(at: Option<f64>, f: &Facts, t: &Thresholds) -> bool {
    match (at, f.now) {
        (Some(at), Some(now)) => now - at <= t.recent.as_secs_f64(),
        _ => true,
    }
}

/// Whether any line of the tally is recent (or undated).
pub(super) fn tally_recent(p: &Tally, f: &Facts, t: &Thresholds) -> bool {
    // Lines dated in the future (clock skew) are neither: not recent.
    p.lines > 0 && (p.undated > 0 || p.newest.as_ref().is_some_and(|s| is_recent(s.at, f, t)))
}

/// Drops of this namespace's `drop` counter that its this-boot table-full
/// lines do not explain (each line and each suppressed callback is one
/// drop): 0 when the counter or the log is unknown. net_ratelimit is global
/// (net/core/utils.c: one state for every namespace and every caller), so
/// drops go unlogged, and `N callbacks suppressed` is printed only when a
/// later message passes the limit: these drops have no date. `gather`
/// samples the counters when this is positive and no --interval was given
/// (issue 7). 0 also when /dev/kmsg's oldest records were overwritten.
pub fn undated_excess(f: &Facts) -> u64 {
    let (Some(drop), Some(log)) = (drop_counter(f), &f.kernel_log) else {
        return 0;
    };
    // Records overwritten in the ring may hold them: not known to be
    // rate-limited, left to "no readable log dates them".
    if f.kernel_log_truncated {
        return 0;
    }
    let logged = log
        .table_full
        .iter()
        .filter(|g| relevant(f, g))
        .map(|g| g.this_boot.implied_drops())
        .fold(0, u64::saturating_add);
    drop.saturating_sub(logged)
}

/// Drops the log cannot date, dated by the counters' rate instead: a
/// positive rate is CRITICAL in `counters`; here the rate is 0 (WARNING,
/// saying exactly what is known) or unknown (CRITICAL: they may be now).
fn undated_by_rate(
    f: &Facts,
    drop: u64,
    excess: u64,
    newest: Option<&Stamp>,
    evidence: &mut Vec<String>,
) -> (Severity, String) {
    let last = newest.map_or_else(
        || "none logged this boot".to_string(),
        |s| format!("the last logged at {}", when(&Some(s.clone()))),
    );
    evidence.push(format!(
        "{excess} of the {drop} drops are not in the log: the kernel logs at most 10 table-full lines per 5 s (net_ratelimit, one limit shared by every namespace and every caller), so they cannot be dated by the log"
    ));
    let rate = f.rates.as_ref().and_then(|r| r.get("drop").copied());
    match (rate, f.interval_secs) {
        (Some(r), Some(secs)) if r <= 0.0 => (
            Severity::Warning,
            format!(
                "{excess} of {drop} drops are not in the log (rate-limited); none in a {secs:.1} s sample; {last}"
            ),
        ),
        _ => (
            Severity::Critical,
            format!(
                "{drop} packets were dropped because the conntrack table was full; {excess} are not in the log (rate-limited) and no sample dates them; {last}"
            ),
        ),
    }
}

/// `--recent` for people: `1h`, `30m`, `1s`.
pub(super) fn window(t: &Thresholds) -> String {
    humantime::format_duration(t.recent).to_string()
}

/// This namespace's `drop` counter, when it could be read.
pub(super) fn drop_counter(f: &Facts) -> Option<u64> {
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
pub(super) enum Owner {
    /// The counter is unknown or explains every line.
    Ours,
    /// The counter (this value) is below the drops the lines prove: the
    /// newest lines are this namespace's, the others older.
    PartlyOlder(u64),
    /// The counter is 0: none of them.
    Earlier,
}

pub(super) fn owner(f: &Facts, g: &TableFull) -> Owner {
    match drop_counter(f) {
        Some(0) => Owner::Earlier,
        Some(d) if d < g.this_boot.implied_drops() => Owner::PartlyOlder(d),
        _ => Owner::Ours,
    }
}

/// The newest of two stamps by wall-clock time.
pub(super) fn newer<'a>(a: Option<&'a Stamp>, b: Option<&'a Stamp>) -> Option<&'a Stamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.at > x.at { y } else { x }),
        (x, y) => x.or(y),
    }
}

/// How recent a non-zero drop counter is, from the newest table-full line
/// of this boot that can be this namespace's: while drops go on the kernel
/// logs up to 10 lines every 5 s (net_ratelimit), so the newest line dates
/// the last drop. No such line (log unreadable, overwritten, or another
/// boot's) leaves the drops undated, which is CRITICAL (issue 7 section 3).
pub(super) fn drops_dated(
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
    let excess = undated_excess(f);
    match newest {
        Some(s) if !undated && !is_recent(s.at, f, t) && excess > 0 => {
            undated_by_rate(f, drop, excess, Some(s), evidence)
        }
        None if !undated && excess > 0 => undated_by_rate(f, drop, excess, None, evidence),
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

pub(super) fn counters(f: &Facts, s: &Summary, t: &Thresholds) -> Vec<Finding> {
    let Some(c) = &f.counters else {
        return unknown_counters(f, None);
    };
    let get = |k: &str| c.values.get(k).copied().unwrap_or(0);
    // Evidence: a counter the source did not report is unknown, not 0.
    let show = |k: &str| {
        c.values
            .get(k)
            .map_or_else(|| "unknown".to_string(), u64::to_string)
    };
    let rate = |k: &str| f.rates.as_ref().and_then(|r| r.get(k).copied());
    let mut out = Vec::new();
    let Some(&drop) = c.values.get("drop") else {
        return unknown_counters(f, Some(c));
    };
    let mut evidence = vec![format!(
        "drop={drop} early_drop={} insert_failed={} chaintoolong={} clash_resolve={} (summed over CPUs, from {})",
        show("early_drop"),
        show("insert_failed"),
        show("chaintoolong"),
        show("clash_resolve"),
        c.source
    )];
    if let (Some(r), Some(secs)) = (rate("drop"), f.interval_secs) {
        evidence.push(format!("drop rate over {secs:.1} s: {r:.1}/s"));
    }
    if drop > 0 || rate("drop").is_some_and(|r| r > 0.0) {
        let now = rate("drop").is_some_and(|r| r > 0.0);
        let (severity, title) = drops_dated(f, t, drop, &mut evidence);
        out.push(Finding {
            id: FindingId::CountersDrop,
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
            id: FindingId::CountersEarlyDrop,
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
            id: FindingId::CountersInsertFailed,
            severity: Severity::Warning,
            title: format!("{failed} packets dropped at insert (clashes or hash chains too long)"),
            evidence: vec![format!("insert_failed={failed} chaintoolong={toolong} clash_resolve={}", get("clash_resolve"))],
            fix: if toolong > 0 {
                vec!["chains are too long: see counters.chaintoolong".into()]
            } else {
                vec!["usually UDP races (DNS A/AAAA in parallel from one socket); see insert_failed in the kernel docs".into()]
            },
        });
    }
    if out.is_empty() {
        out.push(Finding {
            id: FindingId::CountersDrop,
            severity: Severity::Ok,
            title: "no packets dropped for a full table (drop counter is 0)".into(),
            evidence,
            fix: vec![],
        });
    }
    out
}

/// Sources of the per-CPU counters, as [`Facts::unreadable`] names them.
const COUNTER_SOURCES: [&str; 2] = ["ctnetlink per-CPU stats", "/proc/net/stat/nf_conntrack"];

/// The drop counter could not be read (no source, or one without a `drop`
/// counter): INFO "unknown", never OK (issue 20 W6). Nothing at all when
/// no counter source was tried (conntrack not in use).
fn unknown_counters(f: &Facts, c: Option<&Counters>) -> Vec<Finding> {
    let mut evidence: Vec<String> = f
        .unreadable
        .iter()
        .filter(|u| COUNTER_SOURCES.contains(&u.what.as_str()))
        .map(|u| format!("{u}"))
        .collect();
    if let Some(c) = c {
        evidence.insert(0, format!("{} reports no drop counter", c.source));
    } else if evidence.is_empty() {
        return vec![];
    }
    let denied = f
        .unreadable
        .iter()
        .any(|u| COUNTER_SOURCES.contains(&u.what.as_str()) && matches!(u.why, Why::Permission(_)));
    vec![Finding {
        id: FindingId::CountersDrop,
        severity: Severity::Info,
        title: "drop counter unknown: whether packets were dropped for a full table cannot be told (see unreadable)".into(),
        evidence,
        fix: if denied {
            vec!["run as root: ctnetlink's per-CPU stats need CAP_NET_ADMIN".into()]
        } else {
            vec![]
        },
    }]
}

pub(super) fn ns_label(f: &Facts, inode: Option<u64>) -> String {
    match inode {
        None => "the initial namespace (or an older kernel that does not say)".into(),
        Some(i) => match f.namespaces.iter().find(|n| n.inode == i) {
            Some(n) => format!("netns {i} ({})", n.name),
            None => format!("netns {i} (no longer exists)"),
        },
    }
}

pub(super) fn relevant(f: &Facts, g: &TableFull) -> bool {
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
pub(super) fn kernel_names_netns(f: &Facts) -> bool {
    f.kernel
        .as_deref()
        .and_then(|s| crate::plan::Version::parse(s).ok())
        .is_some_and(|k| {
            k >= crate::plan::Version {
                major: 6,
                minor: 17,
            }
        })
}

/// Whose another namespace's table-full lines of this boot can be, seen
/// from here: the namespace with that inode now is weighed by its own drop
/// counter, as this one is by its own; one that is gone cannot be acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Theirs {
    /// It exists and its counter is unknown or non-zero (or the lines name
    /// no namespace: the initial one's on 6.17+).
    Live,
    /// It exists with a drop counter of 0: an earlier namespace's lines.
    Earlier,
    /// No namespace has that inode now.
    Gone,
}

pub(super) fn theirs(g: &TableFull, exists: bool, drop: Option<u64>) -> Theirs {
    match (g.netns_inode, exists, drop) {
        (None, ..) => Theirs::Live,
        (Some(_), false, _) => Theirs::Gone,
        (Some(_), true, Some(0)) => Theirs::Earlier,
        _ => Theirs::Live,
    }
}

/// One namespace's table-full lines, judged (issue 7 sections 2 and 3):
/// this boot's lines that name this namespace (or none) are weighed against
/// its drop counter; the others (another boot or host, unknown date) by
/// their age alone. Mine and recent is CRITICAL, mine and older WARNING, an
/// earlier namespace's INFO; another live namespace's WARNING while recent,
/// unless its own drop counter is 0 or it is gone (INFO).
pub(super) fn table_full(f: &Facts, t: &Thresholds, g: &TableFull, reach: &str) -> Finding {
    let mine = relevant(f, g);
    let holder = g
        .netns_inode
        .and_then(|i| f.namespaces.iter().find(|n| n.inode == i));
    let their_drop = g
        .netns_inode
        .and_then(|i| f.log_netns.iter().find(|c| c.inode == i))
        .and_then(|c| c.drop);
    let theirs = theirs(g, holder.is_some(), their_drop);
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
    } else if (tb_recent && theirs == Theirs::Live) || other_recent {
        severity = Severity::Warning;
    }
    let newest = newer(tb.newest.as_ref(), other.newest.as_ref()).cloned();
    let last = if tb.undated + other.undated > 0 {
        &g.last
    } else {
        &newest
    };
    let (n, window) = (g.count, window(t));
    let n_lines = if n == 1 {
        "1 line".to_string()
    } else {
        format!("{n} lines")
    };
    let title = match (mine, severity, g.netns_inode) {
        (false, Severity::Info, Some(i)) if theirs == Theirs::Gone && tb.lines > 0 => format!(
            "kernel log: a namespace that no longer exists (inode {i}) was full at {} ({n_lines})",
            when(last)
        ),
        (false, Severity::Info, Some(i)) if theirs == Theirs::Earlier => format!(
            "kernel log: an earlier namespace with inode {i} was full at {} ({n_lines}); not {}, whose drop counter is 0",
            when(last),
            holder.map_or("the one that has it now", |h| h.name.as_str())
        ),
        (_, Severity::Critical, _) | (false, Severity::Warning, _) => format!(
            "kernel log: table full, packets dropped in {who}, last at {}",
            when(last)
        ),
        (true, Severity::Info, Some(i)) => format!(
            "kernel log: an earlier namespace with inode {i} was full at {} ({n_lines}); not this one, whose drop counter is 0",
            when(last)
        ),
        (true, Severity::Info, None) => format!(
            "kernel log: a table was full at {} ({n_lines}) in a namespace the message does not name; not this one, whose drop counter is 0",
            when(last)
        ),
        _ => format!(
            "kernel log: table was full in {who} at {}, {n_lines}; none in the last {window}",
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
    let future = tb.future + other.future;
    if future > 0 {
        evidence.push(format!(
            "{future} lines dated more than {} min after now: clock skew, not counted as recent",
            kernel_log::FUTURE_SLACK / 60.0
        ));
    }
    if other.lines > 0 {
        evidence.push(format!(
            "{} lines not known to be from this boot ({} of unknown age, counted as recent): judged by their age, not by this host's counters",
            other.lines, other.undated
        ));
    }
    evidence.push(reach.to_string());
    if let (false, Some(h), Some(d)) = (mine, holder, their_drop) {
        evidence.push(format!(
            "drop counter of {} (the namespace with this inode now): {d}{}",
            h.name,
            if d == 0 {
                "; it starts at 0 when a namespace is created, so these lines are an earlier namespace's (inode numbers are reused)"
            } else {
                ""
            }
        ));
    }
    let fix = if !mine && theirs != Theirs::Live {
        vec![]
    } else if !mine {
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
            Some(i) => FindingId::LogTableFullIn(i),
            None => FindingId::LogTableFull,
        },
        severity,
        title,
        evidence,
        fix,
    }
}

pub(super) fn kernel_log(f: &Facts, t: &Thresholds) -> Vec<Finding> {
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
            id: FindingId::LogTableFullMore,
            severity: Severity::Warning,
            title: format!(
                "kernel log: {} more table-full lines in other namespaces (over {}, or not a valid inode)",
                log.ungrouped,
                kernel_log::MAX_GROUPS
            ),
            evidence: vec![
                format!(
                    "{} of them name a namespace that is no inode (too big, or a leading zero)",
                    log.malformed_netns
                ),
                reach.clone(),
            ],
            fix: vec!["ctdoctor check --all-netns".into()],
        });
    }
    if !log.other_hosts.is_empty() {
        let hosts: Vec<String> = log
            .other_hosts
            .iter()
            .map(|(h, n)| {
                let h = if h.is_empty() {
                    "more hosts"
                } else {
                    h.as_str()
                };
                format!("{h}: {n}")
            })
            .collect();
        let this = f.hostname.as_deref().unwrap_or("this host");
        let whose = if log.table_full.is_empty() {
            format!("this is another host's log, not {this}'s")
        } else {
            format!("the rest of the log is {this}'s")
        };
        out.push(Finding {
            id: FindingId::LogOtherHost,
            severity: Severity::Info,
            title: format!(
                "kernel log: {} table-full lines name another host ({}): {whose}; they are not weighed against {this}'s drop counter",
                log.other_hosts.values().sum::<u64>(),
                hosts.join(", ")
            ),
            evidence: vec![
                format!("this host is {this} (/proc/sys/kernel/hostname); the lines' syslog/journal prefix names another"),
                reach.clone(),
            ],
            fix: vec!["run ctdoctor check on that host, or pass this host's own log".into()],
        });
    }
    if log.table_full.is_empty() {
        out.push(Finding {
            id: FindingId::LogTableFull,
            severity: Severity::Ok,
            title: "kernel log: no \"table full, dropping packet\" messages".into(),
            evidence: vec![reach],
            fix: vec![],
        });
    }
    if log.vmalloc_fallbacks > 0 {
        out.push(Finding {
            id: FindingId::LogVmalloc,
            severity: Severity::Info,
            title: "the bucket array was allocated with vmalloc (nf_conntrack: falling back to vmalloc)".into(),
            evidence: vec![format!("{} times, last {}", log.vmalloc_fallbacks, when(&log.last_vmalloc))],
            fix: vec![],
        });
    }
    out
}
