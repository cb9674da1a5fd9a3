//! Entering a network namespace. setns(2) changes only the calling thread,
//! and a netlink socket stays bound to the namespace it was created in, so
//! callers enter first, then open sockets and read /proc. For the whole
//! process, call [`enter`] from `main` before spawning any thread.
//! The one place a namespace file is opened: without blocking (a FIFO or a
//! device left in /run/netns must not hang a command or the exporter) and
//! only if it is a regular file, as nsfs files and their bind mounts are.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

use crate::error::Error;

/// Where `--netns SPEC` points: a PID (`/proc/PID/ns/net`), a path (anything
/// with a `/`), or a name made by `ip netns add` (`/run/netns/NAME`).
pub fn path(spec: &str) -> PathBuf {
    if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
        PathBuf::from(format!("/proc/{spec}/ns/net"))
    } else if spec.contains('/') {
        PathBuf::from(spec)
    } else {
        PathBuf::from("/run/netns").join(spec)
    }
}

/// Open `path` for reading without blocking: O_NONBLOCK (opening a FIFO
/// for reading would wait for a writer forever), O_NOCTTY (a terminal
/// device never becomes ours); std adds O_CLOEXEC. The one way a file that
/// someone else could have replaced is opened (namespace files here,
/// cthost's /proc, /sys and configuration reads); callers check its type.
pub fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// Move the calling thread into the network namespace `spec`.
pub fn enter(spec: &str) -> Result<(), Error> {
    let p = path(spec);
    let err = |why: String| Error::Netns {
        spec: spec.to_string(),
        why,
    };
    if spec.is_empty() {
        return Err(err(
            "empty namespace (a name from `ip netns list`, a PID, or a path)".into(),
        ));
    }
    let file = open_nonblocking(&p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => err(format!(
            "{} does not exist (name from `ip netns list`, a PID, or a path to a namespace file)",
            p.display()
        )),
        std::io::ErrorKind::PermissionDenied => {
            err(format!("cannot open {}: permission denied", p.display()))
        }
        _ => err(format!("cannot open {}: {e}", p.display())),
    })?;
    let kind = file
        .metadata()
        .map_err(|e| err(format!("cannot stat {}: {e}", p.display())))?
        .file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(err(format!(
            "{} is not a network namespace ({what})",
            p.display()
        )));
    }
    setns(file, CloneFlags::CLONE_NEWNET).map_err(|e| match e {
        nix::errno::Errno::EPERM => err("setns: permission denied (needs CAP_SYS_ADMIN)".into()),
        nix::errno::Errno::EINVAL => err(format!("{} is not a network namespace", p.display())),
        e => err(format!("setns: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(path("1234"), PathBuf::from("/proc/1234/ns/net"));
        assert_eq!(path("ctbench"), PathBuf::from("/run/netns/ctbench"));
        assert_eq!(
            path("/var/run/docker/netns/abc"),
            PathBuf::from("/var/run/docker/netns/abc")
        );
    }
}
