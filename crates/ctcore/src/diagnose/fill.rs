//! The fill rule: the count against max, the thresholds, and the raise
//! that `plan` would size (one sizing policy for check and plan).

use super::*;

pub(super) fn table_fill(f: &Facts, s: &Summary, t: &Thresholds) -> Option<Finding> {
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
