//! What turns conntrack on here: firewall rules, NOTRACK exemptions and
//! services (this namespace's apart from the host's), and whether anything
//! needs conntrack at all.

use super::drops::ns_label;
use super::*;

/// The service acts in the namespace checked: its process runs there, or,
/// for an enabled unit or ufw's configuration (which act in the initial
/// namespace), this is the initial namespace. With `--netns`, /proc still
/// lists the host's processes (issue 7 section 4). Unknown counts as here.
pub(super) fn service_here(f: &Facts, svc: &crate::facts::Service) -> bool {
    match (svc.netns_inode.or(f.init_netns_inode), f.netns_inode) {
        (Some(theirs), Some(ours)) => theirs == ours,
        _ => true,
    }
}

pub(super) fn services_evidence(f: &Facts, list: &[&crate::facts::Service]) -> Vec<String> {
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

fn by_title(by: String, title: String) -> String {
    title + &by
}

pub(super) fn names(list: &[&crate::facts::Service]) -> String {
    list.iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn who(f: &Facts, s: &Summary, t: &Thresholds) -> Vec<Finding> {
    let mut out = Vec::new();
    let r = &f.rules;
    let rules_read = !f.rule_sources.is_empty();
    if r.needs_conntrack() {
        let mut evidence: Vec<String> = r
            .nat
            .iter()
            .chain(&r.stateful)
            .chain(&r.objects)
            .take(8)
            .cloned()
            .collect();
        let more = r.nat.len() + r.stateful.len() + r.objects.len();
        if more > 8 {
            evidence.push(format!("... {} more", more - 8));
        }
        // Who wrote them (Docker, netavark, kube-proxy...): the enabler
        // an operator would remove or tune.
        let by: Vec<String> = crate::ruleset::writers(r)
            .iter()
            .map(|(w, n)| format!("{w} {n}"))
            .collect();
        let by = if by.is_empty() {
            String::new()
        } else {
            format!(" (written by {})", by.join(", "))
        };
        out.push(Finding {
            id: FindingId::WhoRules,
            severity: Severity::Info,
            title: by_title(
                by,
                if r.objects.is_empty() {
                    format!(
                        "firewall rules need conntrack: {} NAT, {} stateful",
                        r.nat.len(),
                        r.stateful.len()
                    )
                } else {
                    format!(
                        "firewall rules need conntrack: {} NAT, {} stateful, {} ct objects",
                        r.nat.len(),
                        r.stateful.len(),
                        r.objects.len()
                    )
                },
            ),
            evidence,
            fix: vec![],
        });
    }
    if !r.notrack.is_empty() {
        out.push(Finding {
            id: FindingId::WhoNotrack,
            severity: Severity::Info,
            title: format!(
                "{} NOTRACK rules already exempt some traffic",
                r.notrack.len()
            ),
            evidence: r.notrack.iter().take(8).cloned().collect(),
            fix: vec![],
        });
    }
    // KERNEL.md section 10: nft runs a notrack at priority >= -200 after
    // conntrack made the entry; it is accepted and silently does nothing.
    if !r.notrack_ineffective.is_empty() {
        out.push(Finding {
            id: FindingId::WhoNotrackIneffective,
            severity: Severity::Warning,
            title: format!(
                "{} notrack rules do nothing: they run after conntrack",
                r.notrack_ineffective.len()
            ),
            evidence: r.notrack_ineffective.iter().take(8).cloned().collect(),
            fix: vec![
                "move each rule to a chain hooked at prerouting or output with priority raw (-300), e.g. nft add chain inet raw pre '{ type filter hook prerouting priority raw; }' and nft add chain inet raw out '{ type filter hook output priority raw; }', then delete the old rule".into(),
            ],
        });
    }
    let (here, elsewhere): (Vec<_>, Vec<_>) =
        f.services.iter().partition(|svc| service_here(f, svc));
    if !here.is_empty() {
        out.push(Finding {
            id: FindingId::WhoServices,
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
            id: FindingId::WhoHostServices,
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
            id: FindingId::WhoUnneeded,
            severity: if full {
                Severity::Warning
            } else {
                Severity::Info
            },
            title,
            evidence: vec![
                format!(
                    "no NAT or stateful rules or ct objects in: {}",
                    f.rule_sources.join(", ")
                ),
                "no known conntrack-dependent service running or enabled in this namespace".into(),
                format!("{how} ({entries})"),
            ],
            fix,
        });
    }
    out
}
