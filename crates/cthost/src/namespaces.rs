//! Network namespaces of the host, from /run/netns (named by `ip netns`) and
//! /proc/PID/ns/net (every process), de-duplicated by inode: the number the
//! kernel prints in `table full in netns N`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

pub use crate::facts::Namespace;
use crate::source::Root;

/// The inode of the calling thread's network namespace.
pub fn current_inode() -> Option<u64> {
    std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| m.ino())
}

/// The initial namespace's inode: PID 1's, or, where PID 1 is protected
/// (containers, sandboxes), that of kthreadd (PID 2), a kernel thread that
/// always lives in the initial namespace.
pub fn init_inode(root: &Root) -> Option<u64> {
    let ino = |pid: u32| {
        std::fs::metadata(root.path(&format!("/proc/{pid}/ns/net")))
            .ok()
            .map(|m| m.ino())
    };
    ino(1).or_else(|| (comm(root, 2) == "kthreadd").then(|| ino(2)).flatten())
}

/// A process's name (/proc/PID/comm: at most 16 bytes in the kernel, 64
/// read), trimmed and [printable](crate::source::printable) (any user can
/// set their own); "" when unreadable. Through [`Root::open`]: a fake
/// tree's FIFO or link to /dev/zero is not read.
pub fn comm(root: &Root, pid: u32) -> String {
    root.read_prefix(&format!("/proc/{pid}/comm"), "root", 64)
        .map(|b| crate::source::printable(String::from_utf8_lossy(&b).trim()))
        .unwrap_or_default()
}

/// Every distinct network namespace, named where possible; the initial
/// one is called `init`.
pub fn list(root: &Root) -> Vec<Namespace> {
    let mut by_inode: BTreeMap<u64, Namespace> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(root.path("/run/netns")) {
        for e in dir.flatten() {
            if let Ok(m) = std::fs::metadata(e.path()) {
                by_inode.entry(m.ino()).or_insert_with(|| Namespace {
                    inode: m.ino(),
                    name: crate::source::printable(&e.file_name().to_string_lossy()),
                    path: e.path(),
                });
            }
        }
    }
    let pids = pids(root);
    if let Some(init) = init_inode(root) {
        by_inode.entry(init).or_insert_with(|| Namespace {
            inode: init,
            name: "init".into(),
            path: root.path("/proc/2/ns/net"),
        });
    }
    for pid in pids {
        let path = root.path(&format!("/proc/{pid}/ns/net"));
        let Ok(m) = std::fs::metadata(&path) else {
            continue;
        };
        by_inode.entry(m.ino()).or_insert_with(|| Namespace {
            inode: m.ino(),
            name: format!("pid {pid} ({})", comm(root, pid)),
            path,
        });
    }
    by_inode.into_values().collect()
}

/// Name of the namespace with `inode`, if it still exists.
pub fn name_of(all: &[Namespace], inode: u64) -> Option<&str> {
    all.iter()
        .find(|n| n.inode == inode)
        .map(|n| n.name.as_str())
}

/// Every process id under the root's /proc, ascending (empty when /proc
/// is unreadable).
pub fn pids(root: &Root) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir(root.path("/proc"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// The processes of each namespace in `wanted` (by inode), lowest PID
/// first, and how many processes' namespace links could not be read for
/// want of permission (another user's processes when not root).
pub fn pids_by_inode(
    root: &Root,
    pids: &[u32],
    wanted: &std::collections::BTreeSet<u64>,
) -> (BTreeMap<u64, Vec<u32>>, usize) {
    let mut inside: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    let mut denied = 0;
    for &pid in pids {
        match std::fs::metadata(root.path(&format!("/proc/{pid}/ns/net"))) {
            Ok(m) if wanted.contains(&m.ino()) => inside.entry(m.ino()).or_default().push(pid),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => denied += 1,
            Err(_) => {}
        }
    }
    (inside, denied)
}
