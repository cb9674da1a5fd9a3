//! Every write apply and rollback make, one step at a time: a live value
//! (opened without O_CREAT, never through a symlink, read back), or a whole
//! file (temp created O_CREAT|O_EXCL|O_NOFOLLOW, fsync'd with its directory,
//! renamed, directory fsync'd again). Each step first asks [`Steps`], which
//! stops the run on SIGINT/SIGTERM and injects the test faults (a failed
//! write, ENOSPC, a kill) at a chosen step.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::paths::temp_of;
use super::signals::Interrupt;

/// What a test injects at step `at` (counted from 0 over every write of a
/// run: journal, values, temp files, renames).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FaultKind {
    /// The write fails with an I/O error.
    #[default]
    Error,
    /// The write fails with ENOSPC after writing part of its bytes.
    NoSpace,
    /// The process dies before the write (nothing is restored).
    Kill,
    /// SIGTERM arrives before the write.
    Signal,
}

/// Test hook: a fault at one step.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fault {
    pub at: Option<usize>,
    pub kind: FaultKind,
}

impl Fault {
    pub fn at(step: usize, kind: FaultKind) -> Self {
        Self {
            at: Some(step),
            kind,
        }
    }
}

/// Why a write did not happen.
#[derive(Debug)]
pub enum Halt {
    Io(String),
    /// Killed (test model of SIGKILL): stop at once, restore nothing.
    Killed,
    /// SIGINT or SIGTERM: restore, then stop.
    Interrupted,
}

/// The step counter of one run.
pub struct Steps<'a> {
    fault: Fault,
    n: usize,
    interrupt: Option<&'a Interrupt>,
}

impl<'a> Steps<'a> {
    pub fn new(fault: Fault, interrupt: Option<&'a Interrupt>) -> Self {
        Self {
            fault,
            n: 0,
            interrupt,
        }
    }

    /// Before a write: `Err` stops the run, `Ok(Some(e))` makes this write fail.
    fn next(&mut self) -> Result<Option<FaultKind>, Halt> {
        let n = self.n;
        self.n += 1;
        let hit = self.fault.at == Some(n);
        if hit && self.fault.kind == FaultKind::Signal {
            let _ = signal_hook::low_level::raise(signal_hook::consts::SIGTERM);
        }
        if self.interrupt.is_some_and(Interrupt::caught) {
            return Err(Halt::Interrupted);
        }
        match (hit, self.fault.kind) {
            (true, FaultKind::Kill) => Err(Halt::Killed),
            (true, k @ (FaultKind::Error | FaultKind::NoSpace)) => Ok(Some(k)),
            _ => Ok(None),
        }
    }
}

fn injected(k: FaultKind) -> io::Error {
    match k {
        FaultKind::NoSpace => io::Error::from_raw_os_error(libc::ENOSPC),
        _ => io::Error::other("injected fault"),
    }
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        // Some filesystems (and fake trees on them) refuse fsync on a
        // directory: that is no reason to fail a write.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        r => r,
    }
}

/// Create the temp file: O_CREAT|O_EXCL|O_NOFOLLOW, so a symlink or file
/// planted at the name is never written through. A leftover of a killed run
/// (under the lock nobody else writes there) is unlinked (unlink never
/// follows a link) and the exclusive create tried once more.
fn create_temp(tmp: &Path, mode: u32) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(tmp)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(tmp)?;
            open()
        }
        r => r,
    }
}

/// Remove a temp file left by this or an earlier run (never following a link).
pub fn remove_temp(path: &Path) -> io::Result<()> {
    match fs::remove_file(temp_of(path)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Replace `path` with `content` atomically (two steps: the temp file,
/// then the rename). On any failure the temp file is removed and `path` is
/// as it was; only a kill leaves the temp file, which [`remove_temp`] clears.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32, steps: &mut Steps) -> Result<(), Halt> {
    write_atomic_as(path, content, mode, None, steps)
}

/// [`write_atomic`] with exact permission bits (not masked by the umask)
/// and, when given, an owner (uid, gid), both set on the temp file before
/// the rename: rollback puts a replaced file back as it was, mode and
/// owner included (review item 5).
pub fn write_atomic_as(
    path: &Path,
    content: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
    steps: &mut Steps,
) -> Result<(), Halt> {
    let io_err = |what: &str, e: io::Error| Halt::Io(format!("{what} {}: {e}", path.display()));
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = temp_of(path);
    let fault = steps.next()?;
    fs::create_dir_all(dir).map_err(|e| io_err("creating the directory of", e))?;
    let mut f = create_temp(&tmp, mode).map_err(|e| io_err("creating a temp file for", e))?;
    let perms = || -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        // After fchown, which clears set-id bits.
        f.set_permissions(fs::Permissions::from_mode(mode))
    };
    let written = perms()
        .and_then(|()| match fault {
            Some(k) => f
                .write_all(&content[..content.len() / 2])
                .and_then(|()| Err(injected(k))),
            None => f.write_all(content),
        })
        .and_then(|()| f.sync_all())
        .and_then(|()| fsync_dir(dir));
    drop(f);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("writing", e));
    }
    let fault = match steps.next() {
        Ok(f) => f,
        Err(Halt::Killed) => return Err(Halt::Killed),
        Err(h) => {
            let _ = fs::remove_file(&tmp);
            return Err(h);
        }
    };
    let renamed = match fault {
        Some(k) => Err(injected(k)),
        None => fs::rename(&tmp, path),
    };
    if let Err(e) = renamed {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("renaming the temp file over", e));
    }
    fsync_dir(dir).map_err(|e| io_err("syncing the directory of", e))
}

/// Read a whole file without following a symlink at its name.
pub fn read_nofollow(path: &Path) -> io::Result<String> {
    let mut s = String::new();
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?
        .read_to_string(&mut s)?;
    Ok(s)
}

/// The largest plan file `apply --plan` reads: a plan is a few hundred
/// bytes, so anything near this is not a plan.
pub const PLAN_MAX_BYTES: u64 = 1 << 20;

/// Read a plan file: a regular file of at most [`PLAN_MAX_BYTES`]. Opened
/// O_NONBLOCK so that a FIFO cannot hang the open, and checked on the open
/// descriptor, so /dev/zero, a FIFO or a directory is refused before any
/// read and a file that grows after the check is still read only up to the
/// cap (review item 2).
pub fn read_plan(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let Some((f, meta)) =
        crate::source::open_regular(path).map_err(|e| format!("cannot read {shown}: {e}"))?
    else {
        return Err(format!(
            "{shown} is not a regular file: a plan is read only from a regular file (a device, FIFO or directory is refused)"
        ));
    };
    let too_big = || {
        format!(
            "{shown} is larger than {PLAN_MAX_BYTES} bytes: not a plan (a plan is a few hundred bytes)"
        )
    };
    if meta.len() > PLAN_MAX_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    f.take(PLAN_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > PLAN_MAX_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| format!("{shown} is not UTF-8 text: not a plan"))
}

/// Write one live value (the file must exist: no O_CREAT) and read it back;
/// `accept` says whether the read-back means the kernel took it.
pub fn write_value(
    path: &Path,
    shown: &str,
    value: &str,
    accept: &dyn Fn(&str) -> bool,
    steps: &mut Steps,
) -> Result<(), Halt> {
    let fault = steps.next()?;
    let wrote = OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .and_then(|mut f| match fault {
            Some(k) => Err(injected(k)),
            None => f.write_all(format!("{value}\n").as_bytes()),
        });
    wrote.map_err(|e| Halt::Io(format!("writing {value} to {shown}: {e}")))?;
    let back = read_nofollow(path).map_err(|e| Halt::Io(format!("reading back {shown}: {e}")))?;
    if !accept(back.trim()) {
        return Err(Halt::Io(format!(
            "{shown} reads back {:?} after writing {value}: the kernel did not take it",
            back.trim()
        )));
    }
    Ok(())
}
