//! The system guard: `--max` lowers the global nf_conntrack_max only
//! journaled and restores it on every exit path; SIGINT/SIGTERM are only
//! recorded so the run can stop and remove its namespace.

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use anyhow::{Context, Result, anyhow, bail};

/// The global max lowered for one run: journaled with apply's journal
/// before the write, restored by `restore` or, on any other exit path
/// (error, panic), by `Drop`.
pub(super) struct LoweredMax {
    root: cthost::source::Root,
    journal: std::path::PathBuf,
    restored: bool,
}

const MAX_PATH: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const COUNT_PATH: &str = "/proc/sys/net/netfilter/nf_conntrack_count";

impl LoweredMax {
    /// Lower the global max to `n` through `host`'s root (the journal,
    /// the lock and the sysctl are all under it).
    pub(super) fn lower(host: &cthost::Host, n: u64) -> Result<Self> {
        use cthost::apply;
        if n == 0 {
            bail!("N must be at least 1 (0 would mean unlimited on this kernel)");
        }
        let root = host.root().clone();
        let read = |p: &str| root.read_u64(p, "root").map_err(|e| anyhow!("{e}"));
        let journal = apply::journal_path(&root, None)?;
        let lock = apply::lock::take(apply::lock::state_dir_of(&journal), apply::lock::LOCK_WAIT)?;
        let old = read(MAX_PATH)?;
        let count = read(COUNT_PATH)?;
        if n >= old {
            bail!("it only lowers the global max, which is {old}");
        }
        if count as f64 > n as f64 * 0.5 {
            bail!(
                "the host's own namespace holds {count} entries, more than half of {n}: \
                 lowering the global max would put the host at risk"
            );
        }
        if apply::journal::load(&journal)?.is_some_and(|j| j.pending()) {
            bail!(
                "an apply journaled at {} is not rolled back; lab would stack on it \
                 (run `ctdoctor rollback` first)",
                journal.display()
            );
        }
        let d = apply::Diff {
            values: vec![apply::ValueChange {
                path: MAX_PATH.to_string(),
                old: old.to_string(),
                new: n.to_string(),
            }],
            files: vec![],
            count: Some(count),
        };
        apply::apply_locked(&root, &journal, &lock, &d, apply::Fault::default())?;
        eprintln!(
            "ctdoctor: global nf_conntrack_max lowered from {old} to {n} for this run \
             (journal {}; restored at the end)",
            journal.display()
        );
        Ok(Self {
            root,
            journal,
            restored: false,
        })
    }

    pub(super) fn restore(mut self) -> Result<()> {
        self.restored = true;
        cthost::apply::rollback(&self.root, &self.journal, cthost::apply::Fault::default())
            .context("restoring nf_conntrack_max (run `ctdoctor rollback`)")?;
        eprintln!("ctdoctor: global nf_conntrack_max restored");
        Ok(())
    }
}

impl Drop for LoweredMax {
    fn drop(&mut self) {
        if !self.restored {
            let r = cthost::apply::rollback(&self.root, &self.journal, Default::default());
            if let Err(e) = r {
                eprintln!(
                    "ctdoctor: restoring nf_conntrack_max failed: {e}; run `ctdoctor rollback`"
                );
            }
        }
    }
}

/// SIGINT and SIGTERM only record the signal number while the lab runs;
/// the sample loop sees it, stops the traffic and removes the namespace.
pub(super) struct SignalHooks(Vec<signal_hook::SigId>);

impl SignalHooks {
    pub(super) fn install(flag: &Arc<AtomicUsize>) -> io::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut ids = Vec::new();
        for sig in [SIGINT, SIGTERM] {
            ids.push(signal_hook::flag::register_usize(
                sig,
                Arc::clone(flag),
                sig as usize,
            )?);
        }
        Ok(Self(ids))
    }
}

impl Drop for SignalHooks {
    fn drop(&mut self) {
        for id in self.0.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
