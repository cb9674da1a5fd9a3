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

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(inode: u64, mode: Option<u32>, max: Option<u64>) -> NetnsCount {
        NetnsCount {
            inode,
            name: format!("ns{inode}"),
            owner: String::new(),
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
}
