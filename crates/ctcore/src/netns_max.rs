//! Per-namespace `nf_conntrack_max` (KERNEL.md section 15): whether this
//! kernel has it, and each namespace's effective limit. A 2025 patch makes
//! the sysctl writable inside non-init namespaces, with effective limit
//! min(init max, namespace max); without it the sysctl is read-only there
//! (mode 0444) and every namespace shares the initial namespace's limit.
//! Which release merged it is not verified, so it is detected from the
//! sysctl's mode in a non-init namespace, never assumed from the version.

use crate::facts::NetnsCount;

/// Whether the kernel has a per-namespace `nf_conntrack_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PerNetnsMax {
    /// Writable in a non-init namespace: each has its own limit.
    #[serde(rename = "supported")]
    Supported,
    /// Read-only in non-init namespaces: the initial one's limit for all.
    #[serde(rename = "not supported")]
    NotSupported,
}

impl PerNetnsMax {
    /// From the sysctl file's permission bits as seen in a non-init
    /// namespace: any write bit means the patch is there.
    pub fn from_mode(mode: u32) -> Self {
        if mode & 0o222 != 0 {
            Self::Supported
        } else {
            Self::NotSupported
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Supported => "supported",
            Self::NotSupported => "not supported",
        }
    }
}

/// The limit a namespace's table is held to: min(init, own) with the patch,
/// the initial namespace's without it. `None` when a needed value is unknown.
pub fn effective(support: PerNetnsMax, init: Option<u64>, own: Option<u64>) -> Option<u64> {
    match support {
        PerNetnsMax::NotSupported => init,
        PerNetnsMax::Supported => match (init, own) {
            (Some(i), Some(o)) => Some(i.min(o)),
            (i, o) => i.or(o),
        },
    }
}

/// What the non-init namespaces' sysctl modes say: `None` when no non-init
/// namespace could be read. One writable namespace is enough: a kernel
/// either has the patch or not.
pub fn detect(counts: &[NetnsCount], init_inode: Option<u64>) -> Option<PerNetnsMax> {
    let modes: Vec<PerNetnsMax> = counts
        .iter()
        .filter(|n| Some(n.inode) != init_inode && n.name != "init")
        .filter_map(|n| n.sysctl_mode.map(PerNetnsMax::from_mode))
        .collect();
    if modes.contains(&PerNetnsMax::Supported) {
        Some(PerNetnsMax::Supported)
    } else {
        modes.first().copied()
    }
}

/// Each namespace's effective `max` filled in from its own sysctl value and
/// the initial namespace's (`init_max`: its row's value, else the caller's).
pub fn fill_effective(
    counts: &mut [NetnsCount],
    support: Option<PerNetnsMax>,
    init_inode: Option<u64>,
    init_max: Option<u64>,
) {
    let init = counts
        .iter()
        .find(|n| Some(n.inode) == init_inode)
        .and_then(|n| n.sysctl_max)
        .or(init_max);
    for n in counts.iter_mut() {
        n.max = if Some(n.inode) == init_inode {
            init
        } else {
            // Unknown support: the shared limit, the pre-patch behaviour.
            effective(
                support.unwrap_or(PerNetnsMax::NotSupported),
                init,
                n.sysctl_max,
            )
        };
    }
}

/// Detect the layout from `counts` and fill in each row's effective max:
/// what check's `--all-netns` rows and the exporter's
/// `ctdoctor_netns_entries_limit` both show.
pub fn judge(
    counts: &mut [NetnsCount],
    init_inode: Option<u64>,
    init_max: Option<u64>,
) -> Option<PerNetnsMax> {
    let support = detect(counts, init_inode);
    fill_effective(counts, support, init_inode, init_max);
    support
}

/// A plan made inside a non-init namespace (`plan --netns NS`): which
/// layout applies, the limits on both sides, and what the planned max
/// means there. Pure: [`plan_for_netns`] computes it from the readings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NetnsPlan {
    /// The namespace's name (or inode) as the plan names it.
    pub netns: String,
    /// `None`: the sysctl's mode could not be read here.
    pub per_netns_max: Option<PerNetnsMax>,
    /// The initial namespace's `nf_conntrack_max`, and this namespace's
    /// own (with the patch; without it the file shows the initial one's).
    pub init_max: Option<u64>,
    pub own_max: Option<u64>,
    /// The limit this namespace's table is held to now, and once the
    /// planned max is applied here (unchanged without the patch: a
    /// namespace cannot raise it).
    pub effective_now: Option<u64>,
    pub effective_planned: Option<u64>,
    /// One line for the plan's text, and a warning when the plan cannot
    /// take effect as sized.
    pub note: String,
    pub warning: Option<String>,
}

/// What the planned `nf_conntrack_max` (`planned`) means in namespace
/// `netns`: with a per-namespace max it is this namespace's own limit,
/// held to min(init, own); without one the namespace shares the initial
/// namespace's max, and the plan is for the initial namespace.
pub fn plan_for_netns(
    netns: &str,
    support: Option<PerNetnsMax>,
    init_max: Option<u64>,
    own_max: Option<u64>,
    planned: u64,
) -> NetnsPlan {
    let show = |v: Option<u64>| v.map_or_else(|| "unknown".to_string(), |v| v.to_string());
    let layout = support.unwrap_or(PerNetnsMax::NotSupported);
    let effective_now = effective(layout, init_max, own_max);
    let (effective_planned, note, warning) = match support {
        Some(PerNetnsMax::Supported) => {
            let after = effective(layout, init_max, Some(planned));
            let note = format!(
                "netns {netns}: this kernel has a per-namespace nf_conntrack_max (the sysctl is writable here): planned {planned} is this namespace's own limit (now {}); its table is held to min(the initial namespace's {}, its own) = {} once applied (now {}); hashsize is global, set from the initial namespace",
                show(own_max),
                show(init_max),
                show(after),
                show(effective_now),
            );
            let warning = match init_max {
                Some(i) if i < planned => Some(format!(
                    "netns {netns}: the initial namespace's nf_conntrack_max {i} is below the planned {planned}: this namespace is held to {i} until it is raised there (ctdoctor plan and apply without --netns)"
                )),
                None => Some(format!(
                    "netns {netns}: the initial namespace's nf_conntrack_max could not be read: the effective limit is min(it, {planned})"
                )),
                _ => None,
            };
            (after, note, warning)
        }
        _ => {
            let why = if support.is_some() {
                "this kernel has no per-namespace nf_conntrack_max (the sysctl is read-only here)"
            } else {
                "whether this kernel has a per-namespace nf_conntrack_max is unknown (the sysctl's mode could not be read); assumed not"
            };
            let note = format!(
                "netns {netns}: {why}: the namespace shares the initial namespace's max ({}), so planned {planned} is for the initial namespace (apply it there, without --netns); here only the timeouts can be applied (apply --timeouts-only)",
                show(init_max.or(own_max)),
            );
            let warning = match init_max.or(own_max) {
                Some(shared) if shared < planned => Some(format!(
                    "netns {netns}: held to the shared nf_conntrack_max {shared}, below the planned {planned}, until the initial namespace's is raised"
                )),
                _ => None,
            };
            (effective_now, note, warning)
        }
    };
    NetnsPlan {
        netns: netns.to_string(),
        per_netns_max: support,
        init_max,
        own_max,
        effective_now,
        effective_planned,
        note,
        warning,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(inode: u64, mode: Option<u32>, max: Option<u64>) -> NetnsCount {
        NetnsCount {
            inode,
            name: format!("ns{inode}"),
            owner: String::new(),
            container: None,
            count: Some(1),
            drop: None,
            sysctl_max: max,
            sysctl_mode: mode,
            max: None,
            error: None,
        }
    }

    #[test]
    fn mode_decides_support() {
        assert_eq!(PerNetnsMax::from_mode(0o444), PerNetnsMax::NotSupported);
        assert_eq!(PerNetnsMax::from_mode(0o644), PerNetnsMax::Supported);
        assert_eq!(PerNetnsMax::from_mode(0o100644), PerNetnsMax::Supported);
    }

    #[test]
    fn effective_is_min_with_the_patch_and_init_without() {
        use PerNetnsMax::*;
        assert_eq!(effective(Supported, Some(262_144), Some(1000)), Some(1000));
        assert_eq!(effective(Supported, Some(500), Some(1000)), Some(500));
        assert_eq!(
            effective(NotSupported, Some(262_144), Some(1000)),
            Some(262_144)
        );
        assert_eq!(effective(Supported, None, Some(1000)), Some(1000));
        assert_eq!(effective(NotSupported, None, Some(1000)), None);
    }

    #[test]
    fn detection_reads_only_non_init_namespaces() {
        // The initial namespace's sysctl is always writable: not a signal.
        let rows = [
            ns(1, Some(0o644), Some(262_144)),
            ns(7, Some(0o444), Some(262_144)),
        ];
        assert_eq!(detect(&rows, Some(1)), Some(PerNetnsMax::NotSupported));
        let rows = [
            ns(1, Some(0o644), Some(262_144)),
            ns(7, Some(0o644), Some(1000)),
        ];
        assert_eq!(detect(&rows, Some(1)), Some(PerNetnsMax::Supported));
        let rows = [ns(1, Some(0o644), Some(262_144)), ns(7, None, None)];
        assert_eq!(detect(&rows, Some(1)), None);
    }

    #[test]
    fn effective_max_per_row() {
        let mut rows = vec![
            ns(1, Some(0o644), Some(262_144)),
            ns(7, Some(0o644), Some(1000)),
        ];
        fill_effective(&mut rows, Some(PerNetnsMax::Supported), Some(1), None);
        assert_eq!((rows[0].max, rows[1].max), (Some(262_144), Some(1000)));
        fill_effective(&mut rows, Some(PerNetnsMax::NotSupported), Some(1), None);
        assert_eq!((rows[0].max, rows[1].max), (Some(262_144), Some(262_144)));
        // No init row: the caller's init max.
        let mut rows = vec![ns(7, Some(0o644), Some(1000))];
        fill_effective(&mut rows, Some(PerNetnsMax::Supported), Some(1), Some(500));
        assert_eq!(rows[0].max, Some(500));
    }

    /// The two layouts as a namespace reads them (KERNEL.md section 15):
    /// with the patch a writable file holding the namespace's own 65536,
    /// the initial namespace at 262144; without it a read-only file that
    /// shows the initial namespace's 262144.
    #[test]
    fn a_plan_in_a_namespace_says_which_layout_applies() {
        let with = plan_for_netns(
            "pod",
            Some(PerNetnsMax::from_mode(0o644)),
            Some(262_144),
            Some(65_536),
            131_072,
        );
        assert_eq!(with.per_netns_max, Some(PerNetnsMax::Supported));
        assert_eq!(with.effective_now, Some(65_536));
        assert_eq!(with.effective_planned, Some(131_072));
        assert!(with.note.contains("own limit"), "{}", with.note);
        assert!(
            with.note
                .contains("min(the initial namespace's 262144, its own) = 131072")
        );
        assert_eq!(with.warning, None);
        // Planned above the initial namespace's: held to it, and said.
        let capped = plan_for_netns(
            "pod",
            Some(PerNetnsMax::Supported),
            Some(262_144),
            Some(65_536),
            400_384,
        );
        assert_eq!(capped.effective_planned, Some(262_144));
        assert!(
            capped
                .warning
                .as_deref()
                .is_some_and(|w| w.contains("held to 262144"))
        );

        let without = plan_for_netns(
            "pod",
            Some(PerNetnsMax::from_mode(0o444)),
            Some(262_144),
            Some(262_144),
            131_072,
        );
        assert_eq!(without.per_netns_max, Some(PerNetnsMax::NotSupported));
        assert_eq!(
            (without.effective_now, without.effective_planned),
            (Some(262_144), Some(262_144))
        );
        assert!(
            without
                .note
                .contains("shares the initial namespace's max (262144)"),
            "{}",
            without.note
        );
        assert!(without.note.contains("--timeouts-only"));
        assert_eq!(without.warning, None);
        let above = plan_for_netns(
            "pod",
            Some(PerNetnsMax::NotSupported),
            Some(262_144),
            Some(262_144),
            400_384,
        );
        assert!(
            above
                .warning
                .as_deref()
                .is_some_and(|w| w.contains("shared nf_conntrack_max 262144"))
        );
        // Unknown mode: the pre-patch behaviour, said to be assumed.
        let unknown = plan_for_netns("pod", None, None, Some(262_144), 1000);
        assert_eq!(unknown.effective_planned, None);
        assert!(unknown.note.contains("unknown"));
        assert!(unknown.note.contains("(262144)"));
    }
}
