//! The host seam: everything a command reads from the system goes through
//! one [`Host`], built once in `main` from `--root`: files under its
//! [`Root`] (/proc, /sys, /dev/kmsg, /run/netns, /etc), ctnetlink sockets in
//! this or another network namespace, the kernel log, the programs that
//! read the system (nft, iptables-save, ethtool) and the clocks.
//!
//! A host over a fake tree (`Host::under`) reads only files: it opens no
//! kernel socket and runs no program (the kernel behind them is not the
//! tree's), so code falls back to the /proc files the tree holds, and tests
//! and golden files run without root.

use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ctnetlink::events::{Events, Groups};
use ctnetlink::{Conntrack, Error};

use crate::kmsg::{self, Kmsg};
use crate::source::{self, Root, Unreadable};

/// The system ctdoctor reads: the real one, or a file tree standing in.
#[derive(Debug, Clone)]
pub struct Host {
    root: Root,
    kernel: bool,
    /// Where bpffs is mounted (`--bpffs`, /sys/fs/bpf by default).
    bpffs: std::path::PathBuf,
}

/// The usual bpffs mount point.
pub const BPFFS: &str = "/sys/fs/bpf";

impl Host {
    /// This machine: files under `/`, the running kernel's sockets.
    pub fn system() -> Self {
        Self {
            root: Root::default(),
            kernel: true,
            bpffs: BPFFS.into(),
        }
    }

    /// Files under `prefix` only; ctnetlink is off (see the module header).
    pub fn under(prefix: impl Into<std::path::PathBuf>) -> Self {
        Self {
            root: Root::under(prefix),
            kernel: false,
            bpffs: BPFFS.into(),
        }
    }

    /// `Some(dir)`: [`Host::under`], except that `/` itself is this
    /// machine; `None`: [`Host::system`].
    pub fn from_flag(root: Option<&Path>) -> Self {
        match root {
            Some(dir) if dir.canonicalize().ok().as_deref() != Some(Path::new("/")) => {
                Self::under(dir)
            }
            _ => Self::system(),
        }
    }

    /// Read eBPF maps pinned under `dir` instead of /sys/fs/bpf.
    pub fn with_bpffs(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.bpffs = dir.into();
        self
    }

    pub fn bpffs(&self) -> &Path {
        &self.bpffs
    }

    /// The names pinned in `dir` below bpffs (`tc/globals`). Over a fake
    /// tree there is no bpf: `Unsupported` ("not read"), like ctnetlink.
    pub fn bpf_pins(&self, dir: &str) -> io::Result<Vec<String>> {
        self.bpf_on()?;
        let mut names: Vec<String> = std::fs::read_dir(self.bpffs.join(dir))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// A pinned map's max_entries and key count (bpf(2): BPF_OBJ_GET,
    /// BPF_OBJ_GET_INFO_BY_FD, then BPF_MAP_LOOKUP_BATCH, or
    /// BPF_MAP_GET_NEXT_KEY where batches are unsupported). Needs CAP_BPF
    /// (root).
    pub fn bpf_map_fill(&self, pin: &Path) -> io::Result<(u64, u64)> {
        self.bpf_on()?;
        let fd = crate::bpf_sys::open_pin(pin)?;
        let (entries, max, _) = crate::bpf::count_fd(&fd, None)?;
        Ok((entries, max))
    }

    fn bpf_on(&self) -> io::Result<()> {
        if self.kernel {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "eBPF maps not read under --root (a file tree has no kernel behind it)",
            ))
        }
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Whether ctnetlink reaches a kernel (false over a fake tree).
    pub fn has_kernel(&self) -> bool {
        self.kernel
    }

    fn kernel(&self, what: &'static str) -> Result<(), Error> {
        if self.kernel {
            Ok(())
        } else {
            Err(Error::Io {
                what,
                source: io::Error::new(
                    io::ErrorKind::Unsupported,
                    "ctnetlink is off under --root (a file tree has no kernel behind it)",
                ),
            })
        }
    }

    /// A ctnetlink request socket in the calling thread's namespace.
    pub fn conntrack(&self) -> Result<Conntrack, Error> {
        self.kernel("opening NETLINK_NETFILTER socket")?;
        Conntrack::open()
    }

    /// A ctnetlink event subscription in the calling thread's namespace.
    pub fn events(&self, groups: Groups) -> Result<Events, Error> {
        self.kernel("subscribing to conntrack events")?;
        Events::subscribe(groups)
    }

    /// Move the calling thread into network namespace `spec` (a name, PID
    /// or path, as `--netns`). From `main` before any thread exists, that
    /// is the whole process (and /proc/net follows it); elsewhere only
    /// from a thread of its own ([`Host::in_netns`]).
    pub fn enter(&self, spec: &str) -> Result<(), Error> {
        self.kernel("entering a network namespace")?;
        ctnetlink::netns::enter(spec)
    }

    /// Run `f` in a thread that entered network namespace `spec` (a name,
    /// PID or path, as `--netns`), so the caller's namespace is untouched.
    pub fn in_netns<T: Send>(
        &self,
        spec: &str,
        f: impl FnOnce(&Self) -> Result<T, Error> + Send,
    ) -> Result<T, Error> {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter(spec)?;
                f(self)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(Error::Netns {
                    spec: spec.to_string(),
                    why: "the reading thread panicked".into(),
                })
            })
        })
    }

    /// /dev/kmsg under the root (see [`Kmsg::open`]).
    pub fn kmsg(&self, from: kmsg::From, blocking: bool) -> Result<Kmsg, Unreadable> {
        Kmsg::open(&self.root, from, blocking)
    }

    /// Whether `program` is on PATH to be run. Over a fake tree no program
    /// is: `nft`, `iptables-save` and `ethtool` would read this machine,
    /// not the tree.
    pub fn on_path(&self, program: &str) -> bool {
        self.kernel && source::on_path(program)
    }

    /// Run a program that reads the system and return its stdout (see
    /// [`source::run`]); over a fake tree it is not present.
    pub fn run(
        &self,
        program: &str,
        args: &[&str],
        needs: &'static str,
    ) -> Result<String, Unreadable> {
        if !self.kernel {
            return Err(Unreadable {
                what: format!("{program} {}", args.join(" ")),
                why: source::Why::NotPresent,
            });
        }
        source::run(program, args, needs)
    }

    /// The wall clock.
    pub fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    /// Microseconds of CLOCK_MONOTONIC, the clock /dev/kmsg records are
    /// stamped with (to date a record against a run's start).
    pub fn monotonic_us(&self) -> Option<u64> {
        let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
        Some(t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
    }

    /// The wall clock in whole seconds since the Unix epoch.
    pub fn unix_now(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fake_tree_opens_no_kernel_socket() {
        let h = Host::under("/nonexistent");
        assert!(!h.has_kernel());
        let e = h
            .conntrack()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("ctnetlink is off under --root"), "{e}");
        assert!(h.in_netns("1", |_| Ok(())).is_err());
        assert!(!h.on_path("sh"));
        assert!(h.run("sh", &["-c", "true"], "").is_err());
        assert_eq!(h.root().path("/proc/x"), Path::new("/nonexistent/proc/x"));
        let e = h.bpf_pins("tc/globals").err().map(|e| e.kind());
        assert_eq!(e, Some(io::ErrorKind::Unsupported));
    }

    #[test]
    fn the_flag_picks_the_host() {
        assert!(Host::from_flag(None).has_kernel());
        assert!(!Host::from_flag(Some(Path::new("/tmp"))).has_kernel());
        assert!(Host::from_flag(Some(Path::new("/"))).has_kernel());
        assert!(Host::from_flag(Some(Path::new("/tmp/.."))).has_kernel());
    }
}
