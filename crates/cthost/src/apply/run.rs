//! The apply and rollback runs. Apply: check every path against the fixed
//! set, take the lock, journal (stacked on an un-rolled-back journal), then
//! write values (each read back) and files, then mark the journal applied.
//! Any failure, ENOSPC or SIGINT/SIGTERM restores this apply's changes in
//! reverse order and puts the journal back as it was; "RESTORE FAILED" is
//! said only for what could not be restored, by name. Rollback restores a
//! pending journal once, then marks it rolled back.

use std::fs;
use std::path::{Path, PathBuf};

use super::diff::hashsize_taken;
use super::journal::{self, APPLIED, Journal, ROLLED_BACK};
use super::lock::{self, LOCK_WAIT};
use super::paths::{self, CONFIG_FILES, HASHSIZE};
use super::signals::Interrupt;
use super::write::{self, Fault, Halt, Steps};
use super::{ApplyError, Diff, FileChange, ValueChange};
use crate::source::Root;

/// A finished apply.
#[derive(Debug)]
pub struct Applied {
    pub journal: Journal,
    /// The journal already held an apply that was not rolled back: this
    /// one was stacked on it, and rollback returns to the values before both.
    pub stacked: bool,
}

/// What rollback did.
#[derive(Debug)]
pub enum RolledBack {
    Done(Journal),
    /// The journal was rolled back before: nothing was changed.
    AlreadyDone(Journal),
    /// There is no journal: nothing was changed (and nothing created).
    NoJournal,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

fn accept_for<'a>(path: &str, value: &'a str) -> impl Fn(&str) -> bool + 'a {
    let hashsize = path == HASHSIZE;
    move |back: &str| {
        if hashsize {
            hashsize_taken(value, back)
        } else {
            back == value
        }
    }
}

/// The full path of each value and file, all checked against the fixed set.
struct Targets {
    values: Vec<PathBuf>,
    files: Vec<PathBuf>,
    dirs: Vec<Vec<PathBuf>>,
}

/// Why [`targets`] refused: a path outside the fixed set, or something
/// else (a value that is not a number, a planted symlink), said as it is
/// (review item 8).
enum Refused {
    NotInSet(String),
    Other(String),
}

impl Refused {
    fn text(self) -> String {
        match self {
            Refused::NotInSet(s) | Refused::Other(s) => s,
        }
    }

    fn journal(self, path: String) -> ApplyError {
        match self {
            Refused::NotInSet(why) => ApplyError::JournalHostile { path, why },
            Refused::Other(why) => ApplyError::JournalRefused { path, why },
        }
    }
}

fn targets(root: &Root, values: &[ValueChange], files: &[FileChange]) -> Result<Targets, Refused> {
    let mut t = Targets {
        values: vec![],
        files: vec![],
        dirs: vec![],
    };
    let other = Refused::Other;
    for v in values {
        paths::check_value_path(&v.path).map_err(Refused::NotInSet)?;
        paths::check_value_text(&v.path, &v.old).map_err(other)?;
        paths::check_value_text(&v.path, &v.new).map_err(other)?;
        t.values.push(paths::resolve(root, &v.path).map_err(other)?);
    }
    for f in files {
        paths::check_file_path(&f.path).map_err(Refused::NotInSet)?;
        t.files.push(paths::resolve(root, &f.path).map_err(other)?);
        let mut dirs = vec![];
        for d in &f.created_dirs {
            paths::check_created_dir(&f.path, d).map_err(Refused::NotInSet)?;
            dirs.push(paths::resolve(root, d).map_err(other)?);
        }
        t.dirs.push(dirs);
    }
    Ok(t)
}

fn halt_text(h: &Halt) -> String {
    match h {
        Halt::Io(why) => why.clone(),
        Halt::Killed => "killed".into(),
        Halt::Interrupted => "interrupted".into(),
    }
}

/// Restore `values` and `files` (newest first): old content back, or the
/// file removed if it did not exist, then the directories apply created
/// (only while empty). Returns what could not be restored, by name.
fn restore(
    t: &Targets,
    values: &[ValueChange],
    files: &[FileChange],
    steps: &mut Steps,
) -> Result<Vec<String>, Halt> {
    let mut errors = Vec::new();
    for (i, f) in files.iter().enumerate().rev() {
        let p = &t.files[i];
        if let Err(e) = write::remove_temp(p) {
            errors.push(format!("{} (temp file): {e}", f.path));
        }
        // A file already as it was is left alone: rewriting it would need
        // space, which a full disk (the reason for this restore) lacks.
        let unchanged = f.old.is_some() && write::read_nofollow(p).ok() == f.old;
        let r = match &f.old {
            Some(_) if unchanged => Ok(()),
            Some(old) => {
                let (mode, owner) = f
                    .old_perm
                    .map_or((0o644, None), |o| (o.mode, Some((o.uid, o.gid))));
                write::write_atomic_as(p, old.as_bytes(), mode, owner, steps)
            }
            None => match fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Halt::Io(format!("removing {}: {e}", f.path)))
                }
                _ => Ok(()),
            },
        };
        match r {
            Err(Halt::Killed) => return Err(Halt::Killed),
            Err(h) => errors.push(format!("{}: {}", f.path, halt_text(&h))),
            Ok(()) => {}
        }
        for d in t.dirs[i].iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
    for (i, v) in values.iter().enumerate().rev() {
        match write::write_value(
            &t.values[i],
            &v.path,
            &v.old,
            &accept_for(&v.path, &v.old),
            steps,
        ) {
            Err(Halt::Killed) => return Err(Halt::Killed),
            Err(h) => errors.push(format!("{}: {}", v.path, halt_text(&h))),
            Ok(()) => {}
        }
    }
    Ok(errors)
}

/// Apply `d`, journaled at `journal_path` (its directory holds the lock).
/// `d` must have been read before this call; callers that read the live
/// values should take the lock first and use [`apply_locked`], so that a
/// concurrent run cannot change them between the read and the journal.
pub fn apply(
    root: &Root,
    journal_path: &Path,
    d: &Diff,
    fault: Fault,
) -> Result<Applied, ApplyError> {
    let lock = lock::take(lock::state_dir_of(journal_path), LOCK_WAIT)?;
    apply_locked(root, journal_path, &lock, d, fault)
}

/// [`apply`] under a lock the caller took before reading the values in
/// `d`: the journal's `old` values are then the ones this run replaces, not
/// ones another apply or rollback changed in between (review item 1).
pub fn apply_locked(
    root: &Root,
    journal_path: &Path,
    _held: &lock::Lock,
    d: &Diff,
    fault: Fault,
) -> Result<Applied, ApplyError> {
    let t = targets(root, &d.values, &d.files).map_err(|r| ApplyError::Path(r.text()))?;
    let prior = journal::load(journal_path)?;
    let stacked = prior.as_ref().is_some_and(Journal::pending);
    let mut j = Journal::stacked(prior.as_ref(), d, now());
    // Without the handler a signal kills between two writes; with it, the
    // run restores. Failing to install it is no reason not to apply.
    let interrupt = Interrupt::catch().ok();
    let mut steps = Steps::new(fault, interrupt.as_ref());
    // What the journal file goes back to when this apply is undone.
    let put_back = prior.clone().unwrap_or_else(|| Journal {
        state: ROLLED_BACK.into(),
        rolled_back: Some(now()),
        ..j.clone()
    });

    // Stop with `h` at `step`, restoring the first `nv` values and `nf`
    // files of this apply, and the journal as it was before.
    let stop = |h: Halt, step: String, nv: usize, nf: usize, journal_written: bool| {
        if matches!(h, Halt::Killed) {
            return ApplyError::Killed(step);
        }
        let mut quiet = Steps::new(Fault::default(), None);
        let errors = match restore(&t, &d.values[..nv], &d.files[..nf], &mut quiet) {
            Ok(e) => e,
            Err(h) => vec![halt_text(&h)],
        };
        let mut restored = if !errors.is_empty() {
            format!(
                "RESTORE FAILED for: {} (the journal at {} has the old values: run `ctdoctor rollback`)",
                errors.join("; "),
                journal_path.display()
            )
        } else if nv + nf == 0 {
            "nothing was changed; the system is as before".to_string()
        } else {
            let plural =
                |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
            format!(
                "restored {} and {}; the system is as before",
                plural(nv, "value"),
                plural(nf, "file")
            )
        };
        if errors.is_empty()
            && journal_written
            && let Err(h) = journal::save(journal_path, &put_back, &mut quiet)
        {
            restored.push_str(&format!(
                    " (but the journal {} could not be put back: {}; it still lists these changes, and `ctdoctor rollback` is harmless)",
                    journal_path.display(),
                    halt_text(&h)
                ));
        }
        match h {
            Halt::Interrupted => ApplyError::Interrupted { step, restored },
            h => ApplyError::Failed {
                step,
                why: halt_text(&h),
                restored,
            },
        }
    };

    let jstep = format!("writing the journal {}", journal_path.display());
    if let Err(h) = journal::save(journal_path, &j, &mut steps) {
        return Err(stop(h, jstep, 0, 0, false));
    }
    for (i, v) in d.values.iter().enumerate() {
        let accept = accept_for(&v.path, &v.new);
        if let Err(h) = write::write_value(&t.values[i], &v.path, &v.new, &accept, &mut steps) {
            // A failed write may have landed (a mismatching read-back):
            // restore it too, unless it never started.
            let nv = if matches!(h, Halt::Io(_)) { i + 1 } else { i };
            return Err(stop(h, format!("writing {}", v.path), nv, 0, true));
        }
    }
    for (i, f) in d.files.iter().enumerate() {
        if let Err(h) = write::write_atomic(&t.files[i], f.new.as_bytes(), 0o644, &mut steps) {
            // The file itself is untouched (the rename did not happen), but
            // directories created for it must go: restore it as well.
            let n = d.values.len();
            return Err(stop(h, format!("writing {}", f.path), n, i + 1, true));
        }
    }
    j.state = APPLIED.into();
    if let Err(h) = journal::save(journal_path, &j, &mut steps) {
        let (nv, nf) = (d.values.len(), d.files.len());
        return Err(stop(h, jstep, nv, nf, true));
    }
    Ok(Applied {
        journal: j,
        stacked,
    })
}

/// Restore the journal at `journal_path` if it is pending; a journal that
/// was rolled back already changes nothing.
pub fn rollback(root: &Root, journal_path: &Path, fault: Fault) -> Result<RolledBack, ApplyError> {
    // No journal (nor state directory): nothing to roll back, and nothing
    // is created, not even the lock (review item 6). A journal an apply
    // writes after this check is one that started after this rollback.
    if let Err(e) = std::fs::symlink_metadata(journal_path)
        && e.kind() == std::io::ErrorKind::NotFound
    {
        return Ok(RolledBack::NoJournal);
    }
    let _lock = lock::take(lock::state_dir_of(journal_path), LOCK_WAIT)?;
    let shown = journal_path.display().to_string();
    let Some(mut j) = journal::load(journal_path)? else {
        return Ok(RolledBack::NoJournal);
    };
    if !j.pending() {
        return Ok(RolledBack::AlreadyDone(j));
    }
    let t = targets(root, &j.values, &j.files).map_err(|r| r.journal(shown))?;
    let mut steps = Steps::new(fault, None);
    let mut errors = match restore(&t, &j.values, &j.files, &mut steps) {
        Ok(e) => e,
        Err(_) => return Err(ApplyError::Killed("restoring".into())),
    };
    // Temp files a killed apply left beside config files it did not list.
    for f in CONFIG_FILES {
        if let Ok(p) = paths::resolve(root, f)
            && let Err(e) = write::remove_temp(&p)
        {
            errors.push(format!("{f} (temp file): {e}"));
        }
    }
    if !errors.is_empty() {
        return Err(ApplyError::Rollback(errors.join("; ")));
    }
    j.state = ROLLED_BACK.into();
    j.rolled_back = Some(now());
    journal::save(journal_path, &j, &mut steps).map_err(|h| match h {
        Halt::Killed => ApplyError::Killed("marking the journal rolled back".into()),
        h => ApplyError::Failed {
            step: format!("marking the journal {} rolled back", journal_path.display()),
            why: halt_text(&h),
            restored: "every value and file was restored; running rollback again is harmless"
                .into(),
        },
    })?;
    Ok(RolledBack::Done(j))
}
