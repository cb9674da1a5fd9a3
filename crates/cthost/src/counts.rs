//! Per-namespace counts: the one reader of each network namespace's entry
//! count and `drop` counter, for `check --all-netns` (and the namespaces
//! the kernel log names) and the exporter's per-netns series. It keeps
//! every error with the namespace it belongs to: a caller decides how to
//! say it, none can drop it silently.
//!
//! The `drop` counter (table full, KERNEL.md section 3) is read with the
//! count, on the same socket: it says whether *this* namespace dropped,
//! which a kernel log line naming an inode cannot (inodes are reused).

use ctcore::counters::Counters;
use ctcore::facts::{Namespace, NetnsCount};
use ctnetlink::Error;

use crate::host::Host;
use crate::owners;

/// Namespaces counted at once (one thread each: setns moves only the
/// calling thread).
const BATCH: usize = 16;

/// What one namespace's table holds and how often it was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub count: u64,
    /// Summed over CPUs; `None` when GET_STATS_CPU gives no drop counter.
    pub drop: Option<u64>,
}

/// Count in the calling thread's namespace.
fn read_here(host: &Host) -> Result<Reading, Error> {
    let mut ct = host.conntrack()?;
    let count = u64::from(ct.stats()?.entries);
    let drop = ct
        .stats_cpu()
        .ok()
        .and_then(|cpus| Counters::sum(&cpus).drop);
    Ok(Reading { count, drop })
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
                    owner: owners.get(&ns.inode).cloned().unwrap_or_default(),
                    count: r.as_ref().ok().map(|r| r.count),
                    drop: r.as_ref().ok().and_then(|r| r.drop),
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
