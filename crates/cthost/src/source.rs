//! Reading the host: every path goes through a [`Root`] so tests can point
//! ctdoctor at a fake tree, and every failure is classified ("not present",
//! "permission denied (needs X)", "malformed") so a report can say exactly
//! what could not be read and why, instead of failing as a whole.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use crate::facts::{Unreadable, Why};

/// The most [`Root::read`] takes: /proc/slabinfo and /proc/meminfo are a
/// few KiB, a process's cgroup file a few hundred bytes.
pub const READ_MAX: u64 = 4 << 20;

/// Filesystem roots; `Root::default()` is the real system.
#[derive(Debug, Clone)]
pub struct Root {
    pub prefix: PathBuf,
}

impl Default for Root {
    fn default() -> Self {
        Self {
            prefix: PathBuf::from("/"),
        }
    }
}

impl Root {
    pub fn under(prefix: impl Into<PathBuf>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// `path` (absolute, e.g. "/proc/slabinfo") under this root.
    pub fn path(&self, path: &str) -> PathBuf {
        self.prefix.join(path.trim_start_matches('/'))
    }

    /// Open `path` for reading: only a regular file (what /proc, /sys and
    /// a fake tree hold), never a FIFO, device or directory a tree could
    /// put there (a FIFO would block the open, /dev/zero never ends).
    pub fn open(&self, path: &str, needs: &'static str) -> Result<std::fs::File, Unreadable> {
        match open_regular(&self.path(path)) {
            Ok(Some((f, _))) => Ok(f),
            Ok(None) => Err(Unreadable {
                what: path.to_string(),
                why: Why::Malformed("not a regular file".into()),
            }),
            Err(e) => Err(io_unreadable(path, needs, &e)),
        }
    }

    /// The text of a small file (a sysctl, slabinfo, meminfo, a process's
    /// comm): at most [`READ_MAX`] bytes, refused past that.
    pub fn read(&self, path: &str, needs: &'static str) -> Result<String, Unreadable> {
        String::from_utf8(self.read_bytes(path, needs)?).map_err(|_| {
            let e = io::Error::new(
                io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            );
            io_unreadable(path, needs, &e)
        })
    }

    /// [`Root::read`] for configuration files that other tools read line
    /// by line whatever their bytes (systemd-sysctl, kmod): bytes that are
    /// not UTF-8 become U+FFFD instead of failing the whole file.
    pub fn read_lossy(&self, path: &str, needs: &'static str) -> Result<String, Unreadable> {
        Ok(String::from_utf8_lossy(&self.read_bytes(path, needs)?).into_owned())
    }

    /// The first `cap` bytes of a regular file (the rest is not read): a
    /// process's comm or cmdline, where a fake tree's FIFO must not block
    /// and a link to /dev/zero must not fill memory.
    pub fn read_prefix(
        &self,
        path: &str,
        needs: &'static str,
        cap: u64,
    ) -> Result<Vec<u8>, Unreadable> {
        use std::io::Read;
        let mut bytes = Vec::new();
        self.open(path, needs)?
            .take(cap)
            .read_to_end(&mut bytes)
            .map_err(|e| io_unreadable(path, needs, &e))?;
        Ok(bytes)
    }

    /// The bytes of a small file: at most [`READ_MAX`], refused past that.
    fn read_bytes(&self, path: &str, needs: &'static str) -> Result<Vec<u8>, Unreadable> {
        use std::io::Read;
        let mut bytes = Vec::new();
        self.open(path, needs)?
            .take(READ_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_unreadable(path, needs, &e))?;
        if bytes.len() as u64 > READ_MAX {
            return Err(Unreadable {
                what: path.to_string(),
                why: Why::Malformed(format!("larger than {} MiB", READ_MAX >> 20)),
            });
        }
        Ok(bytes)
    }

    pub fn read_u64(&self, path: &str, needs: &'static str) -> Result<u64, Unreadable> {
        let text = self.read(path, needs)?;
        text.trim().parse().map_err(|_| Unreadable {
            what: path.to_string(),
            why: Why::Malformed(format!("{:?} is not a number", text.trim())),
        })
    }

    pub fn exists(&self, path: &str) -> bool {
        self.path(path).exists()
    }

    /// Whether `path` is there: `false` only when it is absent (ENOENT);
    /// any other failure (a symlink
    /// loop, a directory that cannot be searched) is "not known", never
    /// "absent".
    pub fn present(&self, path: &str) -> io::Result<bool> {
        match std::fs::metadata(self.path(path)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Text read from the system made safe to print on a terminal: control
/// characters (an escape sequence in a container label or a process name
/// any user can set) and the invisible bidirectional and zero-width marks
/// are shown escaped (`\u{1b}`), everything else as it is.
pub fn printable(s: &str) -> String {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(hidden) {
        return s.to_string();
    }
    s.chars()
        .fold(String::with_capacity(s.len() + 8), |mut out, c| {
            if hidden(c) {
                out.extend(c.escape_unicode());
            } else {
                out.push(c);
            }
            out
        })
}

/// Open `path` for reading if it is a regular file, with its metadata;
/// `Ok(None)` when it is something else (a FIFO, a device, a directory).
/// The open does not block (a FIFO's would wait for a writer) and the
/// check is made on the open descriptor, so nothing can be swapped in
/// between.
pub fn open_regular(path: &Path) -> io::Result<Option<(std::fs::File, std::fs::Metadata)>> {
    let f = ctnetlink::netns::open_nonblocking(path)?;
    let meta = f.metadata()?;
    Ok(meta.is_file().then_some((f, meta)))
}

/// An I/O error classified: not present, permission (naming what is needed)
/// or failed.
pub fn io_unreadable(what: impl Into<String>, needs: &'static str, e: &io::Error) -> Unreadable {
    let why = match e.kind() {
        io::ErrorKind::NotFound => Why::NotPresent,
        io::ErrorKind::PermissionDenied => Why::Permission(needs.to_string()),
        _ if e.raw_os_error() == Some(libc::EPERM) => Why::Permission(needs.to_string()),
        _ => Why::Failed(e.to_string()),
    };
    Unreadable {
        what: what.into(),
        why,
    }
}

/// A ctnetlink error classified: permission (CAP_NET_ADMIN) or failed.
pub fn netlink_unreadable(what: impl Into<String>, e: &ctnetlink::Error) -> Unreadable {
    let why = if e.is_permission() {
        Why::Permission("CAP_NET_ADMIN".into())
    } else {
        Why::Failed(e.to_string())
    };
    Unreadable {
        what: what.into(),
        why,
    }
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| is_executable(&d.join(program))))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Run a program and return its stdout; a non-zero exit is an error that
/// carries its stderr.
pub fn run(program: &str, args: &[&str], needs: &'static str) -> Result<String, Unreadable> {
    let what = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| io_unreadable(what.clone(), needs, &e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let why = if err.contains("ermission denied") || err.contains("Operation not permitted") {
            Why::Permission(needs.to_string())
        } else {
            Why::Failed(err.trim().lines().next().unwrap_or("failed").to_string())
        };
        return Err(Unreadable { what, why });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree in a fresh temp dir, removed on drop.
    struct Tree(PathBuf);
    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn printable_escapes_what_a_terminal_would_obey() {
        assert_eq!(printable("web-0"), "web-0");
        assert_eq!(printable("caf\u{e9} \u{4e2d}"), "caf\u{e9} \u{4e2d}");
        assert_eq!(printable("a\u{1b}[2J\nb\u{7}"), "a\\u{1b}[2J\\u{a}b\\u{7}");
        // Right-to-left override: "exe.txt" would read "txt.exe".
        assert_eq!(printable("x\u{202e}txt"), "x\\u{202e}txt");
    }

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = std::env::temp_dir().join(format!("ctd-root-{}", std::process::id()));
        let _t = Tree(dir.clone());
        std::fs::create_dir_all(dir.join("p")).expect("mkdir");
        std::fs::write(dir.join("p/n"), "42\n").expect("write");
        std::os::unix::fs::symlink("/dev/zero", dir.join("p/zero")).expect("symlink");
        nix::unistd::mkfifo(&dir.join("p/fifo"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        std::fs::write(dir.join("p/big"), vec![b'1'; READ_MAX as usize + 1]).expect("write");
        let root = Root::under(&dir);
        assert_eq!(root.read_u64("/p/n", "").ok(), Some(42));
        for (path, why) in [
            ("/p/zero", "not a regular file"),
            ("/p/fifo", "not a regular file"),
            ("/p", "not a regular file"),
            ("/p/big", "larger than 4 MiB"),
        ] {
            let e = root
                .read(path, "")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(why), "{path}: {e}");
        }
        assert_eq!(
            root.read("/p/none", "").err().map(|e| e.why),
            Some(Why::NotPresent)
        );
    }
}
