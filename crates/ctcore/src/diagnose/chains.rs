//! The hash-chain rule: the average chain length of the table (count over
//! buckets) and when it is long enough to cost lookups.

use super::*;

pub(super) fn chains(s: &Summary) -> Option<Finding> {
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
