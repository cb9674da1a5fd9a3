//! One apply or rollback at a time: an exclusive flock on `lock` in the
//! state directory, held until the run ends (the kernel drops it when the
//! process dies, so a killed run never leaves a stale lock). A second run
//! waits briefly, then refuses (issue 8, section 2).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::ApplyError;

/// The lock file name inside the state directory.
pub const LOCK_FILE: &str = "lock";
/// How long a second apply or rollback waits for the first.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Held for the whole run; dropping it unlocks.
pub struct Lock {
    _held: Flock<File>,
}

pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join(LOCK_FILE)
}

/// The state directory of a journal: the one holding its lock.
pub fn state_dir_of(journal_path: &Path) -> &Path {
    journal_path.parent().unwrap_or(Path::new("/"))
}

pub fn take(state_dir: &Path, wait: Duration) -> Result<Lock, ApplyError> {
    let path = lock_path(state_dir);
    let shown = path.display().to_string();
    let fail = |why: String| ApplyError::Lock {
        path: shown.clone(),
        why,
    };
    fs::create_dir_all(state_dir).map_err(|e| fail(e.to_string()))?;
    let start = Instant::now();
    // Opened once and kept open while waiting: the wait is on this file.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| fail(e.to_string()))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => return Ok(Lock { _held: held }),
            Err((f, Errno::EWOULDBLOCK)) if start.elapsed() < wait => {
                file = f;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(fail(format!(
                    "another ctdoctor apply or rollback holds it (waited {}s): try again when it has finished",
                    wait.as_secs()
                )));
            }
            Err((_, e)) => return Err(fail(e.to_string())),
        }
    }
}
