//! SIGINT and SIGTERM while apply runs: instead of dying between two writes
//! (which would leave a half-applied system), the signal only sets a flag;
//! apply checks it before every write, restores what it changed, and stops
//! (issue 8, section 2). A SIGKILL cannot be caught: the journal, written
//! before the first change, is what makes that case recoverable.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::SigId;
use signal_hook::consts::{SIGINT, SIGTERM};

/// Catches SIGINT and SIGTERM while it lives.
pub struct Interrupt {
    flag: Arc<AtomicBool>,
    ids: Vec<SigId>,
}

impl Interrupt {
    pub fn catch() -> io::Result<Self> {
        let flag = Arc::new(AtomicBool::new(false));
        let mut ids = Vec::new();
        for sig in [SIGINT, SIGTERM] {
            ids.push(signal_hook::flag::register(sig, Arc::clone(&flag))?);
        }
        Ok(Self { flag, ids })
    }

    pub fn caught(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
