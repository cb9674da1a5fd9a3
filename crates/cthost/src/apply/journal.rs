//! The journal: the values and files from before the first change that has
//! not been rolled back, in the state directory, written like a config file
//! (temp O_EXCL|O_NOFOLLOW, fsync, rename). Loading tells "no journal" from
//! "unreadable" and "corrupt" (with the parse position), and refuses a
//! journal naming any path outside the fixed set.

use std::io;
use std::path::{Path, PathBuf};

use super::paths;
use super::write::{self, Halt, Steps};
use super::{ApplyError, Diff, FileChange, ValueChange};
use crate::source::Root;

/// Default directory of the journal (under the root).
pub const STATE_DIR: &str = "/var/lib/ctdoctor";
/// The journal file name inside the state directory.
pub const JOURNAL_FILE: &str = "journal.json";

pub const APPLYING: &str = "applying";
pub const APPLIED: &str = "applied";
pub const ROLLED_BACK: &str = "rolled-back";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Journal {
    pub created: String,
    pub values: Vec<ValueChange>,
    pub files: Vec<FileChange>,
    /// `applying` until every change succeeded, then `applied`;
    /// `rolled-back` once restored (a later rollback then does nothing).
    pub state: String,
    /// How many applies this journal covers (more than one when an apply
    /// stacked on one that was not rolled back).
    #[serde(default = "one")]
    pub applies: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<String>,
}

fn one() -> u32 {
    1
}

impl Journal {
    /// Whether rollback has something to restore.
    pub fn pending(&self) -> bool {
        self.state != ROLLED_BACK
    }

    /// Every path in the fixed set and every old value a number: a
    /// journal that names anything else was not written by apply.
    /// Errors name what is wrong: a path outside the set, or a bad value.
    pub fn validate(&self, shown: &str) -> Result<(), ApplyError> {
        let hostile = |why| ApplyError::JournalHostile {
            path: shown.to_string(),
            why,
        };
        for v in &self.values {
            paths::check_value_path(&v.path).map_err(hostile)?;
            paths::check_value_text(&v.path, &v.old).map_err(|why| ApplyError::JournalRefused {
                path: shown.to_string(),
                why: format!("old value of {why}"),
            })?;
        }
        for f in &self.files {
            paths::check_file_path(&f.path).map_err(hostile)?;
            for d in &f.created_dirs {
                paths::check_created_dir(&f.path, d).map_err(hostile)?;
            }
        }
        Ok(())
    }

    /// A journal for `d`, stacked on `prior` when that one is not rolled
    /// back: for a path both touch, the old value stays the prior's (the
    /// one from before the first change), so rollback returns to it.
    pub fn stacked(prior: Option<&Journal>, d: &Diff, now: String) -> Journal {
        let base = prior.filter(|p| p.pending());
        let mut j = match base {
            Some(p) => Journal {
                applies: p.applies.saturating_add(1),
                rolled_back: None,
                state: APPLYING.into(),
                ..p.clone()
            },
            None => Journal {
                created: now,
                values: vec![],
                files: vec![],
                state: APPLYING.into(),
                applies: 1,
                rolled_back: None,
            },
        };
        for v in &d.values {
            match j.values.iter_mut().find(|o| o.path == v.path) {
                Some(o) => o.new.clone_from(&v.new),
                None => j.values.push(v.clone()),
            }
        }
        for f in &d.files {
            match j.files.iter_mut().find(|o| o.path == f.path) {
                Some(o) => o.new.clone_from(&f.new),
                None => j.files.push(f.clone()),
            }
        }
        j
    }
}

/// Where the journal lives: `state_dir` as given, else the default under
/// the root, resolved like the other fixed paths: a symlink at
/// `var/lib/ctdoctor` or one above it leading out of the root is refused,
/// so the journal and lock are never written outside it (review item 4).
/// An explicit `--state-dir` is the operator's choice and may be anywhere;
/// the journal, its temp file and the lock in it are still opened
/// O_NOFOLLOW.
pub fn journal_path(root: &Root, state_dir: Option<&Path>) -> Result<PathBuf, ApplyError> {
    match state_dir {
        Some(d) => Ok(d.join(JOURNAL_FILE)),
        None => paths::resolve(root, &format!("{STATE_DIR}/{JOURNAL_FILE}"))
            .map_err(|why| ApplyError::Path(format!("state directory: {why}"))),
    }
}

/// The journal at `path`; `None` only when there is no file there.
pub fn load(path: &Path) -> Result<Option<Journal>, ApplyError> {
    let shown = path.display().to_string();
    let text = match write::read_nofollow(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ApplyError::JournalUnreadable {
                path: shown,
                source,
            });
        }
    };
    let j: Journal = serde_json::from_str(&text).map_err(|e| ApplyError::JournalCorrupt {
        path: shown.clone(),
        why: e.to_string(),
    })?;
    // A state apply never writes is not a journal of apply's: replaying
    // it would restore values on a guess (review item 7).
    if ![APPLYING, APPLIED, ROLLED_BACK].contains(&j.state.as_str()) {
        return Err(ApplyError::JournalCorrupt {
            path: shown,
            why: format!(
                "state {} is none of {APPLYING}, {APPLIED}, {ROLLED_BACK}",
                super::shorten(&format!("{:?}", j.state))
            ),
        });
    }
    j.validate(&shown)?;
    Ok(Some(j))
}

pub fn save(path: &Path, j: &Journal, steps: &mut Steps) -> Result<(), Halt> {
    let text = serde_json::to_string_pretty(j).map_err(|e| Halt::Io(e.to_string()))?;
    write::write_atomic(path, text.as_bytes(), 0o600, steps)
}
