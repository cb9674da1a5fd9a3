//! The namespace rules: each namespace's own count and drops (`--all-netns`,
//! and the namespaces the kernel log names) against each one's effective
//! `nf_conntrack_max` ([`crate::netns_max`]: its own where the kernel has a
//! per-namespace max, else the initial namespace's).

use super::*;
use crate::netns_max::{self, PerNetnsMax};

/// Whether the kernel has a per-namespace max, and the `--all-netns` rows
/// with each one's effective limit filled in.
pub(super) fn with_limits(
    f: &Facts,
    s: &Summary,
) -> (Option<PerNetnsMax>, Option<Vec<crate::facts::NetnsCount>>) {
    let Some(counts) = &f.netns_counts else {
        return (None, None);
    };
    // This namespace's max is the initial one's when checked from there.
    let init_max = (f.netns_inode.is_none() || f.netns_inode == f.init_netns_inode)
        .then_some(s.max)
        .flatten();
    let mut rows = counts.clone();
    let support = netns_max::judge(&mut rows, f.init_netns_inode, init_max);
    (support, Some(rows))
}

/// The info line saying which layout applies.
fn support_finding(support: Option<PerNetnsMax>) -> Finding {
    let (title, evidence) = match support {
        Some(PerNetnsMax::NotSupported) => (
            "per-namespace nf_conntrack_max: not supported by this kernel (read-only in namespaces); every namespace shares the initial namespace's limit",
            "/proc/sys/net/netfilter/nf_conntrack_max is read-only (no write bit) inside non-init namespaces",
        ),
        Some(PerNetnsMax::Supported) => (
            "per-namespace nf_conntrack_max: supported by this kernel; each namespace is judged against min(its own max, the initial namespace's)",
            "/proc/sys/net/netfilter/nf_conntrack_max is writable inside non-init namespaces",
        ),
        None => (
            "per-namespace nf_conntrack_max: unknown (no non-init namespace's sysctl could be read); namespaces are judged against the initial namespace's limit",
            "the sysctl's mode is read inside each namespace with its count",
        ),
    };
    Finding {
        id: FindingId::NetnsMax,
        severity: Severity::Info,
        title: title.into(),
        evidence: vec![evidence.into()],
        fix: vec![],
    }
}

pub(super) fn namespaces(f: &Facts, s: &Summary, t: &Thresholds) -> Vec<Finding> {
    let (support, Some(counts)) = with_limits(f, s) else {
        return vec![];
    };
    let Some(global) = s.max else {
        return vec![];
    };
    let counts = &counts;
    let limit_of = |inode: u64| {
        counts
            .iter()
            .find(|n| n.inode == inode)
            .and_then(|n| n.max)
            .unwrap_or(global)
    };
    // The owner (pod, container, process) goes with the name everywhere
    // a namespace is named: it is what an operator acts on.
    let labels: Vec<(u64, String)> = counts
        .iter()
        .map(|n| {
            // A container's runtime and image say which one it is.
            let what = n
                .container
                .as_ref()
                .map_or_else(String::new, |c| match &c.image {
                    Some(image) => format!(" [{} {image}]", c.runtime),
                    None => format!(" [{}]", c.runtime),
                });
            let label = if n.owner.is_empty() {
                n.name.clone()
            } else {
                format!("{}, owner {}{what}", n.name, n.owner)
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
        let max = limit_of(inode);
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
            evidence: [match support {
                Some(PerNetnsMax::Supported) => format!(
                    "this namespace's count is compared with its effective nf_conntrack_max {max} (min of its own and the initial namespace's)"
                ),
                _ => "each namespace's count is compared with the initial namespace's nf_conntrack_max (shared by all)"
                    .to_string(),
            }]
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
        // Why, for the first few (the report's own list has the rest).
        evidence.extend(
            counts
                .iter()
                .filter(|n| n.count.is_none())
                .take(3)
                .map(|n| {
                    format!(
                        "{} (inode {}): {}",
                        n.name,
                        n.inode,
                        n.error.as_deref().unwrap_or("unreadable")
                    )
                }),
        );
    }
    // Said once, not per namespace: the runtime's metadata could not be
    // read (not root, a data root elsewhere, a runtime gone), so those
    // owners are container ids only.
    let no_meta: Vec<&str> = counts
        .iter()
        .filter_map(|n| n.container.as_ref()?.metadata_error.as_deref())
        .collect();
    if let Some(first) = no_meta.first() {
        evidence.push(format!(
            "container metadata unreadable for {} namespaces, owners shown by id: {first}",
            no_meta.len()
        ));
    }
    let full = out.is_empty();
    out.push(support_finding(support));
    out.push(Finding {
        id: FindingId::NetnsAll,
        severity: if full { Severity::Ok } else { Severity::Info },
        title: match rows.first() {
            Some(r) => format!("{} network namespaces; fullest holds {}", counts.len(), r.0),
            None => format!("{} network namespaces; none could be counted", counts.len()),
        },
        evidence,
        fix: vec![],
    });
    out
}
