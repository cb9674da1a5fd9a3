//! The namespace rules: each namespace's own count and drops (`--all-netns`,
//! and the namespaces the kernel log names) against the global max.

use super::*;

pub(super) fn namespaces(f: &Facts, s: &Summary, t: &Thresholds) -> Vec<Finding> {
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
    out.push(Finding {
        id: FindingId::NetnsAll,
        severity: if out.is_empty() {
            Severity::Ok
        } else {
            Severity::Info
        },
        title: match rows.first() {
            Some(r) => format!("{} network namespaces; fullest holds {}", counts.len(), r.0),
            None => format!("{} network namespaces; none could be counted", counts.len()),
        },
        evidence,
        fix: vec![],
    });
    out
}
