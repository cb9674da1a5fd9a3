//! `apply` and `rollback`: the only code that writes to the system. Before
//! any change, a journal of every old value (and every file it will
//! replace) is written and fsync'd; then live values are written one by one
//! and read back; with `persist`, config files are replaced atomically
//! (temp file, fsync, rename). Any failure restores everything already
//! changed, in reverse order. `rollback` restores the last journal, and can
//! run any number of times.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::plan::Settings;
use crate::source::Root;

pub const NF: &str = "/proc/sys/net/netfilter";
pub const HASHSIZE: &str = "/sys/module/nf_conntrack/parameters/hashsize";
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/90-conntrack.conf";
pub const MODPROBE_FILE: &str = "/etc/modprobe.d/nf_conntrack.conf";
/// Default directory of the journal (under the root).
pub const STATE_DIR: &str = "/var/lib/ctdoctor";
/// The journal file name inside the state directory.
pub const JOURNAL_FILE: &str = "journal.json";

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
}

/// The ancestors of `path` that do not exist under `root`, outermost first.
fn missing_dirs(root: &Root, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = Path::new(path).parent();
    while let Some(dir) = p {
        if dir.as_os_str().is_empty()
            || dir == Path::new("/")
            || root.path(&dir.to_string_lossy()).exists()
        {
            break;
        }
        out.push(dir.to_string_lossy().into_owned());
        p = dir.parent();
    }
    out.reverse();
    out
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Journal {
    pub created: String,
    pub values: Vec<ValueChange>,
    pub files: Vec<FileChange>,
    /// `applying` until every change succeeded, then `applied`; `rolled-back`.
    pub state: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("refusing unsafe values (use --force to override):\n  - {}", .0.join("\n  - "))]
    Unsafe(Vec<String>),
    #[error(
        "{0} cannot be changed from inside a network namespace (read-only there since 5.13): run apply in the initial namespace, or pass --timeouts-only"
    )]
    NotInitNamespace(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("journal {path}: {why}")]
    Journal { path: String, why: String },
    #[error("{step} failed: {why}; {restored}")]
    Failed {
        step: String,
        why: String,
        restored: String,
    },
    #[error("no journal at {0}: nothing to roll back")]
    NoJournal(String),
    #[error("rollback incomplete: {0}")]
    Rollback(String),
}

/// The planned changes against the live system.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Diff {
    pub values: Vec<ValueChange>,
    pub files: Vec<FileChange>,
    /// Current count, for the safety check.
    pub count: Option<u64>,
}

fn read_trim(root: &Root, path: &str) -> Result<String, ApplyError> {
    fs::read_to_string(root.path(path))
        .map(|s| s.trim().to_string())
        .map_err(|source| ApplyError::Read {
            path: path.into(),
            source,
        })
}

/// Compare `settings` with the live values under `root`.
pub fn diff(
    root: &Root,
    s: &Settings,
    timeouts_only: bool,
    files: &[(String, String)],
) -> Result<Diff, ApplyError> {
    let mut d = Diff {
        count: read_trim(root, &format!("{NF}/nf_conntrack_count"))
            .ok()
            .and_then(|c| c.parse().ok()),
        ..Diff::default()
    };
    let mut want: Vec<(String, String)> = Vec::new();
    if !timeouts_only {
        want.push((
            format!("{NF}/nf_conntrack_max"),
            s.nf_conntrack_max.to_string(),
        ));
        want.push((HASHSIZE.to_string(), s.hashsize.to_string()));
    }
    for (name, v) in &s.timeouts {
        want.push((format!("{NF}/{name}"), v.to_string()));
    }
    for (path, new) in want {
        let old = read_trim(root, &path)?;
        if old != new {
            d.values.push(ValueChange { path, old, new });
        }
    }
    for (path, new) in files {
        let old = fs::read_to_string(root.path(path)).ok();
        if old.as_deref() != Some(new.as_str()) {
            d.files.push(FileChange {
                path: path.clone(),
                old,
                new: new.clone(),
                created_dirs: missing_dirs(root, path),
            });
        }
    }
    Ok(d)
}

/// Refusals unless `--force`: max below the live count, zero, buckets out
/// of proportion, memory above the budget.
pub fn safety(s: &Settings, count: Option<u64>, memory: u64, budget: Option<u64>) -> Vec<String> {
    let mut v = Vec::new();
    if s.nf_conntrack_max == 0 {
        v.push("nf_conntrack_max = 0 (unlimited before 6.19, a full stop after)".into());
    }
    if let Some(c) = count
        && s.nf_conntrack_max < c
    {
        v.push(format!("nf_conntrack_max {} is below the current count {c}: new flows would be dropped at once", s.nf_conntrack_max));
    }
    if s.hashsize < 1024 {
        v.push(format!("hashsize {} is below 1024", s.hashsize));
    }
    if s.hashsize > s.nf_conntrack_max.saturating_mul(8) {
        v.push(format!(
            "hashsize {} is above 8 x max ({}): memory for empty buckets",
            s.hashsize,
            s.nf_conntrack_max * 8
        ));
    }
    if let Some(b) = budget
        && memory > b
    {
        v.push(format!(
            "a full table needs {memory} bytes, above the budget of {b}"
        ));
    }
    v
}

fn fsync_dir(dir: &Path) {
    // Best effort: some filesystems refuse fsync on directories.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Replace a file atomically: temp file in the same directory, fsync, rename.
fn write_atomic(path: &Path, content: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.ctdoctor-tmp",
        path.file_name()
            .map_or_else(|| "file".into(), |f| f.to_string_lossy().into_owned())
    ));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fsync_dir(dir);
    Ok(())
}

/// Write one live value and read it back.
fn write_value(root: &Root, path: &str, value: &str) -> Result<(), String> {
    let p = root.path(path);
    fs::write(&p, format!("{value}\n")).map_err(|e| format!("writing {value} to {path}: {e}"))?;
    let back = fs::read_to_string(&p).map_err(|e| format!("reading back {path}: {e}"))?;
    if back.trim() != value {
        return Err(format!(
            "{path} reads back {:?} after writing {value}: the kernel did not take it",
            back.trim()
        ));
    }
    Ok(())
}

fn restore_file(root: &Root, f: &FileChange) -> Result<(), String> {
    let p = root.path(&f.path);
    let restored = match &f.old {
        Some(old) => write_atomic(&p, old).map_err(|e| format!("{}: {e}", f.path)),
        None => match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", f.path)),
        },
    };
    // Directories apply created, innermost first; only while empty.
    for dir in f.created_dirs.iter().rev() {
        let _ = fs::remove_dir(root.path(dir));
    }
    restored
}

/// Where the journal lives: `state_dir` as given, else the default under the root.
pub fn journal_path(root: &Root, state_dir: Option<&Path>) -> PathBuf {
    match state_dir {
        Some(d) => d.join(JOURNAL_FILE),
        None => root.path(STATE_DIR).join(JOURNAL_FILE),
    }
}

fn save_journal(path: &Path, j: &Journal) -> Result<(), ApplyError> {
    let text = serde_json::to_string_pretty(j).map_err(|e| ApplyError::Journal {
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    write_atomic(path, &text).map_err(|e| ApplyError::Journal {
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

pub fn load_journal(path: &Path) -> Result<Journal, ApplyError> {
    let text =
        fs::read_to_string(path).map_err(|_| ApplyError::NoJournal(path.display().to_string()))?;
    serde_json::from_str(&text).map_err(|e| ApplyError::Journal {
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

/// Restore every value and file of `j` (newest first); errors are collected.
fn restore(root: &Root, values: &[ValueChange], files: &[FileChange]) -> Vec<String> {
    let mut errors = Vec::new();
    for f in files.iter().rev() {
        if let Err(e) = restore_file(root, f) {
            errors.push(e);
        }
    }
    for v in values.iter().rev() {
        if let Err(e) = write_value(root, &v.path, &v.old) {
            errors.push(e);
        }
    }
    errors
}

/// Test hook: fail after this many successful writes (values, then files),
/// as a crash between writes would.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fault {
    pub after_writes: Option<usize>,
}

/// Apply `d`: journal first, then values (each read back), then files.
pub fn apply(root: &Root, journal: &Path, d: &Diff, fault: Fault) -> Result<Journal, ApplyError> {
    let mut j = Journal {
        created: chrono::Utc::now().to_rfc3339(),
        values: d.values.clone(),
        files: d.files.clone(),
        state: "applying".into(),
    };
    save_journal(journal, &j)?;
    let mut writes = 0usize;
    let injected = |writes: usize| fault.after_writes.is_some_and(|n| writes >= n);
    let fail =
        |done_values: &[ValueChange], done_files: &[FileChange], step: String, why: String| {
            let errors = restore(root, done_values, done_files);
            let restored = if errors.is_empty() {
                format!(
                    "restored {} values and {} files; the system is as before",
                    done_values.len(),
                    done_files.len()
                )
            } else {
                format!(
                    "RESTORE FAILED for: {} (the journal at {} has the old values)",
                    errors.join("; "),
                    journal.display()
                )
            };
            ApplyError::Failed {
                step,
                why,
                restored,
            }
        };
    for (i, v) in d.values.iter().enumerate() {
        if injected(writes) {
            return Err(fail(
                &d.values[..i],
                &[],
                format!("writing {}", v.path),
                "injected fault".into(),
            ));
        }
        if let Err(why) = write_value(root, &v.path, &v.new) {
            // The failed write may have landed (a mismatching read-back):
            // restore it too.
            return Err(fail(
                &d.values[..=i],
                &[],
                format!("writing {}", v.path),
                why,
            ));
        }
        writes += 1;
    }
    for (i, f) in d.files.iter().enumerate() {
        let step = format!("writing {}", f.path);
        if injected(writes) {
            return Err(fail(
                &d.values,
                &d.files[..i],
                step,
                "injected fault".into(),
            ));
        }
        if let Err(e) = write_atomic(&root.path(&f.path), &f.new) {
            return Err(fail(&d.values, &d.files[..=i], step, e.to_string()));
        }
        writes += 1;
    }
    j.state = "applied".into();
    save_journal(journal, &j)?;
    Ok(j)
}

/// Restore the last journal exactly (values and files). Idempotent.
pub fn rollback(root: &Root, journal: &Path) -> Result<Journal, ApplyError> {
    let mut j = load_journal(journal)?;
    let errors = restore(root, &j.values, &j.files);
    if !errors.is_empty() {
        return Err(ApplyError::Rollback(errors.join("; ")));
    }
    j.state = "rolled-back".into();
    save_journal(journal, &j)?;
    Ok(j)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A fake tree with the files apply touches.
    struct Tree {
        dir: PathBuf,
    }

    impl Tree {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("cthost-apply-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            let t = Self { dir };
            t.put(&format!("{NF}/nf_conntrack_count"), "1000\n");
            t.put(&format!("{NF}/nf_conntrack_max"), "262144\n");
            t.put(
                &format!("{NF}/nf_conntrack_tcp_timeout_established"),
                "432000\n",
            );
            t.put(&format!("{NF}/nf_conntrack_udp_timeout"), "30\n");
            t.put(HASHSIZE, "262144\n");
            t.put(
                SYSCTL_FILE,
                "# an older file\nnet.netfilter.nf_conntrack_max = 131072\n",
            );
            t
        }

        fn put(&self, path: &str, body: &str) {
            let p = self.dir.join(path.trim_start_matches('/'));
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, body).expect("write");
        }

        fn root(&self) -> Root {
            Root::under(&self.dir)
        }

        /// Every file and its bytes, except ctdoctor's own journal.
        fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
            fn walk(d: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
                for e in fs::read_dir(d).into_iter().flatten().flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p, out);
                    } else if !p.to_string_lossy().contains("var/lib/ctdoctor") {
                        out.insert(p.clone(), fs::read(&p).unwrap_or_default());
                    }
                }
            }
            let mut out = BTreeMap::new();
            walk(&self.dir, &mut out);
            out
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    fn settings() -> Settings {
        Settings {
            nf_conntrack_max: 524_288,
            hashsize: 524_288,
            timeouts: [
                ("nf_conntrack_tcp_timeout_established".to_string(), 7440),
                ("nf_conntrack_udp_timeout".to_string(), 30),
            ]
            .into(),
        }
    }

    fn files() -> Vec<(String, String)> {
        vec![
            (
                SYSCTL_FILE.to_string(),
                "net.netfilter.nf_conntrack_max = 524288\n".to_string(),
            ),
            (
                MODPROBE_FILE.to_string(),
                "options nf_conntrack hashsize=524288\n".to_string(),
            ),
        ]
    }

    #[test]
    fn apply_then_rollback_restores_byte_for_byte() {
        let t = Tree::new("ok");
        let before = t.snapshot();
        let d = diff(&t.root(), &settings(), false, &files()).expect("diff");
        // udp_timeout is unchanged: 3 values and 2 files differ.
        assert_eq!(d.values.len(), 3);
        assert_eq!(d.files.len(), 2);
        assert_eq!(d.count, Some(1000));
        let jp = journal_path(&t.root(), None);
        let j = apply(&t.root(), &jp, &d, Fault::default()).expect("apply");
        assert_eq!(j.state, "applied");
        let after = t.snapshot();
        assert_eq!(
            after[&t.dir.join("proc/sys/net/netfilter/nf_conntrack_max")],
            b"524288\n"
        );
        assert_eq!(
            after[&t.dir.join("etc/modprobe.d/nf_conntrack.conf")],
            b"options nf_conntrack hashsize=524288\n"
        );
        assert_eq!(load_journal(&jp).expect("journal").state, "applied");
        let r = rollback(&t.root(), &jp).expect("rollback");
        assert_eq!(r.state, "rolled-back");
        // Values are restored as text with a newline, as the kernel prints them.
        assert_eq!(t.snapshot(), before);
        // The directory apply created for the modprobe file is gone again.
        assert!(!t.dir.join("etc/modprobe.d").exists());
        // Idempotent.
        rollback(&t.root(), &jp).expect("second rollback");
        assert_eq!(t.snapshot(), before);
    }

    #[test]
    fn a_fault_at_every_step_leaves_the_tree_as_before() {
        for n in 0..5 {
            let t = Tree::new(&format!("fault{n}"));
            let before = t.snapshot();
            let d = diff(&t.root(), &settings(), false, &files()).expect("diff");
            let err = apply(
                &t.root(),
                &journal_path(&t.root(), None),
                &d,
                Fault {
                    after_writes: Some(n),
                },
            )
            .expect_err("fault");
            assert!(
                err.to_string().contains("the system is as before"),
                "{n}: {err}"
            );
            assert_eq!(t.snapshot(), before, "after a fault at write {n}");
        }
    }

    #[test]
    fn a_file_that_cannot_be_written_rolls_back() {
        let t = Tree::new("eisdir");
        let before = t.snapshot();
        // The fake kernel refuses the third value: its path is a directory.
        let p = t
            .dir
            .join("proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established");
        fs::remove_file(&p).expect("rm");
        let d = Diff {
            values: vec![
                ValueChange {
                    path: format!("{NF}/nf_conntrack_max"),
                    old: "262144".into(),
                    new: "524288".into(),
                },
                ValueChange {
                    path: HASHSIZE.into(),
                    old: "262144".into(),
                    new: "524288".into(),
                },
                ValueChange {
                    path: format!("{NF}/nf_conntrack_tcp_timeout_established"),
                    old: "432000".into(),
                    new: "7440".into(),
                },
            ],
            files: vec![],
            count: None,
        };
        fs::create_dir(&p).expect("dir");
        let mut before = before;
        before.remove(&p);
        let err = apply(
            &t.root(),
            &journal_path(&t.root(), None),
            &d,
            Fault::default(),
        )
        .expect_err("must fail");
        assert!(
            err.to_string()
                .contains("writing /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established"),
            "{err}"
        );
        assert_eq!(t.snapshot(), before);
    }

    #[test]
    fn a_value_the_kernel_rejects_rolls_back() {
        let t = Tree::new("reject");
        let before = t.snapshot();
        // The fake kernel "rounds" hashsize: the read-back differs.
        let hs = t.dir.join(HASHSIZE.trim_start_matches('/'));
        let d = diff(&t.root(), &settings(), false, &[]).expect("diff");
        // Replace the file by a link to /dev/null: writes vanish, reads are empty.
        fs::remove_file(&hs).expect("rm");
        std::os::unix::fs::symlink("/dev/null", &hs).expect("symlink");
        let err = apply(
            &t.root(),
            &journal_path(&t.root(), None),
            &d,
            Fault::default(),
        )
        .expect_err("rejected");
        assert!(err.to_string().contains("did not take it"), "{err}");
        // Restore the regular file to compare the rest of the tree.
        fs::remove_file(&hs).expect("rm link");
        fs::write(&hs, "262144\n").expect("write");
        assert_eq!(t.snapshot(), before);
    }

    #[test]
    fn safety_refusals() {
        let mut s = settings();
        assert!(safety(&s, Some(1000), 1, None).is_empty());
        s.nf_conntrack_max = 500;
        assert_eq!(safety(&s, Some(1000), 1, None).len(), 2); // below count; hashsize > 8 x max
        s.nf_conntrack_max = 0;
        s.hashsize = 512;
        assert_eq!(safety(&s, None, 1, None).len(), 3);
        assert_eq!(safety(&settings(), None, 10, Some(5)).len(), 1);
    }
}
