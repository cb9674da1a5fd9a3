//! Test fixture: a fake tree (`--root`) with the files apply touches, a
//! victim file outside it, and byte-for-byte snapshots of both.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{HASHSIZE, NF, SYSCTL_FILE};
use crate::source::Root;

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Tree {
    /// Holds `root/` (the fake system) and `outside/` (must never change).
    pub dir: PathBuf,
}

/// One entry of a snapshot: a file's bytes, a directory, or a link target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File(Vec<u8>),
    Dir,
    Link(PathBuf),
}

impl Tree {
    pub fn new(tag: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("cthost-apply-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let t = Self { dir };
        t.put(&format!("{NF}/nf_conntrack_count"), "1000\n");
        t.put(&format!("{NF}/nf_conntrack_max"), "262144\n");
        t.put(
            &format!("{NF}/nf_conntrack_tcp_timeout_established"),
            "432000\n",
        );
        t.put(&format!("{NF}/nf_conntrack_udp_timeout"), "30\n");
        t.put(&format!("{NF}/nf_conntrack_icmp_timeout"), "30\n");
        t.put(HASHSIZE, "262144\n");
        t.put(
            SYSCTL_FILE,
            "# an older file\nnet.netfilter.nf_conntrack_max = 131072\n",
        );
        fs::create_dir_all(t.outside()).expect("mkdir outside");
        fs::write(t.victim(), "precious\n").expect("victim");
        t
    }

    pub fn outside(&self) -> PathBuf {
        self.dir.join("outside")
    }

    pub fn victim(&self) -> PathBuf {
        self.outside().join("victim")
    }

    pub fn put(&self, path: &str, body: &str) {
        let p = self.dir.join("root").join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, body).expect("write");
    }

    pub fn path(&self, path: &str) -> PathBuf {
        self.dir.join("root").join(path.trim_start_matches('/'))
    }

    pub fn root(&self) -> Root {
        Root::under(self.dir.join("root"))
    }

    pub fn journal(&self) -> PathBuf {
        super::journal_path(&self.root(), None).expect("journal path")
    }

    /// Everything under the test directory, except ctdoctor's state (/var).
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Node> {
        fn walk(d: &Path, state: &Path, out: &mut BTreeMap<PathBuf, Node>) {
            for e in fs::read_dir(d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.starts_with(state) {
                    continue;
                }
                let Ok(m) = fs::symlink_metadata(&p) else {
                    continue;
                };
                if m.file_type().is_symlink() {
                    out.insert(p.clone(), Node::Link(fs::read_link(&p).unwrap_or_default()));
                } else if m.is_dir() {
                    out.insert(p.clone(), Node::Dir);
                    walk(&p, state, out);
                } else {
                    out.insert(p.clone(), Node::File(fs::read(&p).unwrap_or_default()));
                }
            }
        }
        let mut out = BTreeMap::new();
        // The state directory (journal, lock) and its parents are ctdoctor's.
        walk(&self.dir, &self.dir.join("root/var"), &mut out);
        out
    }

    /// The snapshot without the paths apply may write (and their temp
    /// files and the directories above the config files).
    pub fn outside_fixed_set(&self) -> BTreeMap<PathBuf, Node> {
        let root = self.dir.join("root");
        let fixed = |p: &Path| {
            let Ok(rel) = p.strip_prefix(&root) else {
                return false;
            };
            let rel = rel.to_string_lossy();
            (rel.starts_with("proc/sys/net/netfilter/nf_conntrack_")
                && !rel["proc/sys/net/netfilter/".len()..].contains('/'))
                || rel == HASHSIZE.trim_start_matches('/')
                || rel == "etc"
                || rel.starts_with("etc/sysctl.d")
                || rel.starts_with("etc/modprobe.d")
                || rel.starts_with("etc/modules-load.d")
        };
        self.snapshot()
            .into_iter()
            .filter(|(p, _)| !fixed(p))
            .collect()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}
