//! `apply` and `rollback`: the only code that writes to the system.
//!
//! Guarantees (issue 8), each in its own module:
//! - [`paths`]: only a fixed set of paths is ever written, resolved under
//!   the root without following a symlink out of it; plan keys and journal
//!   entries naming anything else are refused.
//! - [`journal`]: before the first change, the old values are journaled
//!   (stacked on an earlier apply that was not rolled back, so the original
//!   values are never lost), with the mode and owner of replaced files; a
//!   corrupt or unreadable journal is said so.
//! - [`lock`]: one apply or rollback at a time (flock), taken before the
//!   live values are read ([`apply_locked`]), so the journal's old values
//!   are the ones this run replaces.
//! - [`signals`]: SIGINT/SIGTERM restore before exiting.
//! - [`write`]: temp files O_CREAT|O_EXCL|O_NOFOLLOW, fsync'd with their
//!   directory before the rename; the step counter for injected faults.
//! - [`run`]: any failed write (ENOSPC included) restores what this apply
//!   changed and removes its temp files; rollback restores the journal once.

mod diff;
pub mod journal;
pub mod lock;
pub mod paths;
mod run;
pub mod signals;
pub mod write;

pub use diff::{
    MAX_TIMEOUT_SECS, SAFE_RAM_PERCENT, diff, hashsize_taken, safety, shorten, timeout_errors,
    timeout_refusals,
};
pub use journal::{JOURNAL_FILE, Journal, STATE_DIR, journal_path};
pub use paths::{HASHSIZE, MODPROBE_FILE, MODULES_LOAD_FILE, NF, SYSCTL_FILE};
pub use run::{Applied, RolledBack, apply, apply_locked, rollback};
pub use write::{Fault, FaultKind};

/// One live value: its path (without the root prefix), old and new text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ValueChange {
    pub path: String,
    pub old: String,
    pub new: String,
}

/// One config file: its old content (`None`: it did not exist) and new one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileChange {
    pub path: String,
    pub old: Option<String>,
    pub new: String,
    /// Directories that did not exist and that writing the file creates,
    /// outermost first: rollback removes them again.
    #[serde(default)]
    pub created_dirs: Vec<String>,
    /// Permission bits and owner of the replaced file (`None`: it did not
    /// exist, or a journal from before they were recorded): rollback puts
    /// them back with the content (review item 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_perm: Option<Perm>,
}

/// A file's permission bits (`mode & 0o7777`) and owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Perm {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The planned changes against the live system.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Diff {
    pub values: Vec<ValueChange>,
    pub files: Vec<FileChange>,
    /// Current count, for the safety check.
    pub count: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("refusing unsafe values (use --force to override):\n  - {}", .0.join("\n  - "))]
    Unsafe(Vec<String>),
    #[error(
        "{0} cannot be changed from inside a network namespace (read-only there since 5.13): run apply in the initial namespace, or pass --timeouts-only"
    )]
    NotInitNamespace(String),
    #[error("plan: timeouts key {0}")]
    BadKey(String),
    #[error("plan: refusing {0}")]
    BadValue(String),
    #[error("refusing to touch a path: {0}")]
    Path(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "cannot read the journal {path}: {source} (left as it is: it may hold the only copy of the original values)"
    )]
    JournalUnreadable {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the journal {path} is corrupt: {why} (left as it is: repair or move it away by hand, it may hold the original values)"
    )]
    JournalCorrupt { path: String, why: String },
    #[error("the journal {path} names a path apply never writes: {why}; refusing to use it")]
    JournalHostile { path: String, why: String },
    #[error("the journal {path} cannot be used: {why}; refusing to use it")]
    JournalRefused { path: String, why: String },
    #[error("lock {path}: {why}")]
    Lock { path: String, why: String },
    #[error("{step} failed: {why}; {restored}")]
    Failed {
        step: String,
        why: String,
        restored: String,
    },
    #[error("interrupted by a signal before {step}; {restored}")]
    Interrupted { step: String, restored: String },
    /// Test model of SIGKILL: the run stopped where it was.
    #[error("killed before {0} (test fault): nothing restored")]
    Killed(String),
    #[error(
        "rollback incomplete, RESTORE FAILED for: {0} (the journal is kept: run rollback again)"
    )]
    Rollback(String),
}

#[cfg(test)]
mod fixture;
#[cfg(test)]
mod tests;
