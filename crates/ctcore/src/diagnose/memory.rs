//! The memory rule: what a full table costs (slab objects and buckets)
//! against the machine's RAM.

use super::*;

pub(super) fn memory(s: &Summary) -> Option<Finding> {
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
