//! Per-namespace counts: the one reader of each network namespace's entry
//! count and `drop` counter, for `check --all-netns` (and the namespaces
//! the kernel log names) and the exporter's per-netns series. It keeps
//! every error with the namespace it belongs to: a caller decides how to
//! say it, none can drop it silently.
//!
//! The `drop` counter (table full, KERNEL.md section 3) is read with the
//! count, on the same socket: it says whether *this* namespace dropped,
//! which a kernel log line naming an inode cannot (inodes are reused).
//!
//! So is the namespace's `nf_conntrack_max` and its sysctl file's mode
//! (/proc/sys/net shows the namespace of the thread that opens it): a
//! writable file in a non-init namespace is the per-namespace max
//! (KERNEL.md section 15), judged in [`ctcore::netns_max`]. Nothing is
//! written to detect it.

use ctcore::counters::Counters;
use ctcore::facts::{Namespace, NetnsCount};
use ctnetlink::Error;

use crate::host::Host;
use crate::owners;
use crate::source::Root;

/// Namespaces counted at once (one thread each: setns moves only the
/// calling thread).
const BATCH: usize = 16;

/// What one namespace's table holds and how often it was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub count: u64,
    /// Summed over CPUs; `None` when GET_STATS_CPU gives no drop counter.
    pub drop: Option<u64>,
    /// `nf_conntrack_max` and its sysctl file's mode, as seen here.
    pub limit: Limit,
}

/// A namespace's `nf_conntrack_max` value and its sysctl file's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limit {
    pub max: Option<u64>,
    pub mode: Option<u32>,
}

const MAX_SYSCTL: &str = "/proc/sys/net/netfilter/nf_conntrack_max";

/// The calling thread's namespace's `nf_conntrack_max` and the mode of its
/// sysctl file, from `root` (a fake tree stands in for the namespace).
pub fn read_limit(root: &Root) -> Limit {
    use std::os::unix::fs::PermissionsExt;
    Limit {
        max: root.read_u64(MAX_SYSCTL, "").ok(),
        mode: std::fs::metadata(root.path(MAX_SYSCTL))
            .ok()
            .map(|m| m.permissions().mode() & 0o7777),
    }
}

/// A non-init namespace's limits beside the initial one's: what
/// `plan --netns` notes ([`ctcore::netns_max::plan_for_netns`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HereAndInit {
    /// The namespace's name (`ip netns` name, `pid N (comm)`, or inode).
    pub name: String,
    pub support: Option<ctcore::netns_max::PerNetnsMax>,
    pub own: Option<u64>,
    pub init: Option<u64>,
}

/// The calling thread's namespace against the initial one, when they
/// differ (`--netns`, or run inside a container); `None` in the initial
/// namespace and over a fake tree (it has no namespaces to enter). The
/// sysctl's mode decides the layout; read-only, the file shows the shared
/// (initial) value; writable, the initial value is read from a thread
/// that enters the initial namespace.
pub fn here_and_init(host: &Host) -> Option<HereAndInit> {
    use ctcore::netns_max::PerNetnsMax;
    let root = host.root();
    let here = crate::namespaces::current_inode()?;
    if !host.has_kernel() || Some(here) == crate::namespaces::init_inode(root) {
        return None;
    }
    let limit = read_limit(root);
    let support = limit.mode.map(PerNetnsMax::from_mode);
    let init = match support {
        Some(PerNetnsMax::Supported) => ["/proc/1/ns/net", "/proc/2/ns/net"]
            .iter()
            .find_map(|spec| host.in_netns(spec, |h| Ok(read_limit(h.root()).max)).ok())
            .flatten(),
        _ => limit.max,
    };
    let all = crate::namespaces::list(root);
    Some(HereAndInit {
        name: crate::namespaces::name_of(&all, here)
            .map_or_else(|| format!("inode {here}"), str::to_string),
        support,
        own: limit.max,
        init,
    })
}

/// Count in the calling thread's namespace.
fn read_here(host: &Host) -> Result<Reading, Error> {
    let mut ct = host.conntrack()?;
    let count = u64::from(ct.stats()?.entries);
    let drop = ct
        .stats_cpu()
        .ok()
        .and_then(|cpus| Counters::sum(&cpus).drop);
    Ok(Reading {
        count,
        drop,
        limit: read_limit(host.root()),
    })
}

/// Every namespace in `namespaces`, [`BATCH`] at a time, in their order,
/// each with its owner ([`owners::owners`]) and its error if unreadable.
pub fn count_all(host: &Host, namespaces: &[Namespace], init: Option<u64>) -> Vec<NetnsCount> {
    let owners = owners::owners(host.root(), namespaces, init);
    let mut out = Vec::with_capacity(namespaces.len());
    for batch in namespaces.chunks(BATCH) {
        std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .iter()
                // Each counting thread is its own: it enters the namespace
                // itself, the caller's namespace stays as it is.
                .map(|ns| {
                    s.spawn(move || {
                        host.enter(&ns.path.to_string_lossy())?;
                        read_here(host)
                    })
                })
                .collect();
            for (ns, h) in batch.iter().zip(handles) {
                let r = h.join().unwrap_or_else(|_| {
                    Err(Error::Netns {
                        spec: ns.path.display().to_string(),
                        why: "the counting thread panicked".into(),
                    })
                });
                out.push(NetnsCount {
                    inode: ns.inode,
                    name: ns.name.clone(),
                    owner: owners
                        .get(&ns.inode)
                        .map(|o| o.name.clone())
                        .unwrap_or_default(),
                    container: owners.get(&ns.inode).and_then(|o| o.container.clone()),
                    count: r.as_ref().ok().map(|r| r.count),
                    drop: r.as_ref().ok().and_then(|r| r.drop),
                    sysctl_max: r.as_ref().ok().and_then(|r| r.limit.max),
                    sysctl_mode: r.as_ref().ok().and_then(|r| r.limit.mode),
                    max: None,
                    error: r.err().map(|e| e.to_string()),
                });
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two layouts of KERNEL.md section 15, as a namespace sees them:
    /// with the per-namespace max the sysctl is writable and holds the
    /// namespace's own value; without it, read-only with the initial one's.
    #[test]
    fn limit_of_both_layouts() {
        use std::os::unix::fs::PermissionsExt;
        struct Gone(std::path::PathBuf);
        impl Drop for Gone {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let base = Gone(std::env::temp_dir().join(format!("cthost-limit-{}", std::process::id())));
        let layout = |mode: u32, value: &str| {
            let dir = base.0.join(format!("{mode:o}"));
            let nf = dir.join("proc/sys/net/netfilter");
            std::fs::create_dir_all(&nf).expect("mkdir");
            let file = nf.join("nf_conntrack_max");
            std::fs::write(&file, value).expect("write");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
            read_limit(Host::under(&dir).root())
        };
        let writable = layout(0o644, "1000\n");
        assert_eq!(
            writable,
            Limit {
                max: Some(1000),
                mode: Some(0o644)
            }
        );
        let read_only = layout(0o444, "262144\n");
        assert_eq!(
            read_only,
            Limit {
                max: Some(262_144),
                mode: Some(0o444)
            }
        );
        // Judged the same way the diagnosis judges them.
        use ctcore::netns_max::{PerNetnsMax, effective};
        let support = |l: Limit| l.mode.map(PerNetnsMax::from_mode);
        assert_eq!(support(writable), Some(PerNetnsMax::Supported));
        assert_eq!(support(read_only), Some(PerNetnsMax::NotSupported));
        assert_eq!(
            effective(PerNetnsMax::Supported, Some(262_144), writable.max),
            Some(1000)
        );
        assert_eq!(
            effective(PerNetnsMax::NotSupported, Some(262_144), Some(1000)),
            Some(262_144)
        );
        // No such file (no conntrack): nothing, no error.
        assert_eq!(
            read_limit(Host::under(base.0.join("none")).root()),
            Limit::default()
        );
    }

    #[test]
    fn every_namespace_keeps_its_error() {
        // A fake tree has no kernel: each namespace is reported, with why.
        let dir = std::env::temp_dir();
        let host = Host::under(&dir);
        let ns = |inode| Namespace {
            inode,
            name: format!("ns{inode}"),
            path: dir.join(format!("ns{inode}")),
        };
        let rows = count_all(&host, &[ns(1), ns(2)], None);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].inode, rows[1].inode), (1, 2));
        for r in &rows {
            assert_eq!(r.count, None);
            assert!(
                r.error.as_deref().is_some_and(|e| e.contains("--root")),
                "{r:?}"
            );
        }
    }
}
