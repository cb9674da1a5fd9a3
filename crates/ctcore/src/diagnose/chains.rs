//! The hash-chain rules: the average chain length of the table now (count
//! over buckets) and when it is long enough to cost lookups; the average
//! chain the table would have at max against this kernel's insert-time
//! chain limit ([`Version::chain_limit`]); and `chaintoolong`, the packets
//! the kernel dropped because a chain was over that limit.

use super::*;
use crate::version::Version;

pub(super) fn chains(s: &Summary) -> Option<Finding> {
    let (chain, buckets, max) = (s.average_chain?, s.buckets?, s.max?);
    (chain > 8.0).then(|| Finding {
        id: FindingId::TableChains,
        severity: Severity::Warning,
        title: format!("hash chains average {chain:.1} entries: every lookup walks them"),
        evidence: vec![format!(
            "{} entries hashed twice into {buckets} buckets",
            s.count.unwrap_or(0)
        )],
        fix: vec![hashsize_fix(max, buckets)],
    })
}

/// The hashsize that brings the average chain at max to 2 or less (each
/// entry is hashed twice: original and reply).
fn hashsize_fix(max: u64, buckets: u64) -> String {
    format!(
        "echo {} > /sys/module/nf_conntrack/parameters/hashsize   # initial namespace; resizing rehashes live",
        max.max(buckets.saturating_mul(4))
    )
}

/// The average chain at max is "near" the limit from half the lowest limit
/// the kernel may draw: chains spread around their average (Poisson), so a
/// full table then has chains over the limit in ordinary traffic.
pub(super) fn chain_limit(f: &Facts, s: &Summary) -> Option<Finding> {
    let (buckets, max) = (s.buckets?, s.max?);
    let kernel = Version::parse(f.kernel.as_deref()?).ok()?;
    let (lo, hi) = kernel.chain_limit()?;
    if buckets == 0 {
        return None;
    }
    let at_max = max as f64 * 2.0 / buckets as f64;
    (at_max >= f64::from(lo) / 2.0).then(|| Finding {
        id: FindingId::TableChainLimit,
        severity: Severity::Warning,
        title: format!(
            "at max the hash chains would average {at_max:.1} entries, near kernel {kernel}'s chain limit ({lo}..{hi}): inserts would be refused and packets dropped (chaintoolong) before the table is full"
        ),
        evidence: vec![format!(
            "max {max} entries hashed twice into {buckets} buckets; kernel {kernel} drops a packet whose chain is longer than a random {lo}..{hi}"
        )],
        fix: vec![hashsize_fix(max, buckets)],
    })
}

/// `chaintoolong` is a packet dropped at confirm (KERNEL.md section 8), and
/// nothing is logged, so it can never be dated: rising over `--interval`
/// is CRITICAL (dropping now); nonzero since boot without an interval is
/// WARNING (a Nagios check recovers; `--interval` tells whether it goes on).
pub(super) fn chaintoolong(f: &Facts, s: &Summary) -> Option<Finding> {
    let c = f.counters.as_ref()?;
    let total = *c.values.get("chaintoolong")?;
    let rate = f
        .rates
        .as_ref()
        .and_then(|r| r.get("chaintoolong").copied());
    let now = rate.is_some_and(|r| r > 0.0);
    if total == 0 && !now {
        return None;
    }
    let mut evidence = vec![format!(
        "chaintoolong={total} since boot (summed over CPUs, from {}); each is a packet dropped because its hash chain was over the kernel's limit; nothing is logged",
        c.source
    )];
    if let (Some(r), Some(secs)) = (rate, f.interval_secs) {
        evidence.push(format!("chaintoolong rate over {secs:.1} s: {r:.1}/s"));
    } else {
        evidence.push("run with --interval 10 to see whether it still rises".into());
    }
    if let Some(k) = f.kernel.as_deref().and_then(|k| Version::parse(k).ok())
        && let Some((lo, hi)) = k.chain_limit()
    {
        evidence.push(format!("kernel {k}'s chain limit: a random {lo}..{hi}"));
    }
    if let Some(chain) = s.average_chain {
        evidence.push(format!("average chain now: {chain:.1}"));
    }
    let mut fix = match (s.max, s.buckets) {
        (Some(max), Some(buckets)) => vec![hashsize_fix(max, buckets)],
        _ => vec!["raise hashsize: echo N > /sys/module/nf_conntrack/parameters/hashsize".into()],
    };
    fix.push(
        "look for a hash flood (many flows from few sources, spoofed ports): ctdoctor top --by src"
            .into(),
    );
    Some(Finding {
        id: FindingId::CountersChainTooLong,
        severity: if now {
            Severity::Critical
        } else {
            Severity::Warning
        },
        title: if now {
            format!(
                "packets are being dropped now for hash chains over the kernel's limit ({:.1}/s chaintoolong): a hash-flood symptom",
                rate.unwrap_or(0.0)
            )
        } else {
            format!(
                "{total} packets were dropped for hash chains over the kernel's limit (chaintoolong): a hash-flood symptom"
            )
        },
        evidence,
        fix,
    })
}
