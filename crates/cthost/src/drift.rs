//! Reading what the drift guard compares (issue 20): the live conntrack
//! values, the persisted sysctl.d / sysctl.conf / modprobe.d files in their
//! read order, the modules-load.d entries, ctdoctor's apply journal, every
//! running kube-proxy's command line and config file (through /proc), the
//! online CPUs and whether /sys is mounted read-only. The comparison and
//! the causes are ctcore's ([`ctcore::drift`]); and whether `apply
//! --persist` writes the modules-load.d file ([`boot_load`]).

use std::collections::BTreeMap;

use ctcore::drift::{self, DriftFacts, KubeProxy};

use crate::apply::{journal, paths};
use crate::facts::Facts;
use crate::source::{Root, Unreadable, Why};

/// The `.conf` names in each of `dirs` that exist, in systemd's order.
fn conf_files(root: &Root, dirs: &[&str]) -> Vec<String> {
    let listed: Vec<(&str, Vec<String>)> = dirs
        .iter()
        .map(|d| {
            let names = std::fs::read_dir(root.path(d))
                .map(|it| {
                    it.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            (*d, names)
        })
        .collect();
    drift::conf_order(&listed)
}

/// (path, text) of each readable file; a file that exists but cannot be
/// read is recorded.
fn read_all(root: &Root, files: Vec<String>, un: &mut Vec<Unreadable>) -> Vec<(String, String)> {
    files
        .into_iter()
        .filter_map(|p| match root.read_lossy(&p, "read permission") {
            Ok(t) => Some((p, t)),
            // A link to /dev/null masks a file (systemd): nothing is set.
            Err(Unreadable {
                why: Why::Malformed(_),
                ..
            }) => None,
            Err(e) => {
                un.push(e);
                None
            }
        })
        .collect()
}

/// The sysctl files in read order: systemd's sysctl.d list, then
/// /etc/sysctl.conf unless a sysctl.d entry already links to it.
fn sysctl_files(root: &Root) -> Vec<String> {
    let mut files = conf_files(root, &drift::SYSCTL_DIRS);
    let conf = root.path(drift::SYSCTL_CONF);
    let linked = files
        .iter()
        .any(|f| std::fs::canonicalize(root.path(f)).ok() == std::fs::canonicalize(&conf).ok());
    if conf.is_file() && !linked {
        files.push(drift::SYSCTL_CONF.into());
    }
    files
}

/// Online CPUs, from /sys/devices/system/cpu/online ("0-3,6").
fn online_cpus(root: &Root) -> Option<u64> {
    let text = root.read("/sys/devices/system/cpu/online", "").ok()?;
    let mut n = 0u64;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<u64>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => {
                part.parse::<u64>().ok()?;
                1
            }
        };
    }
    (n > 0).then_some(n)
}

/// Whether /sys is mounted read-only here (/proc/self/mounts).
fn sys_read_only(root: &Root) -> bool {
    root.read("/proc/self/mounts", "").is_ok_and(|t| {
        t.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == "/sys" && f[3].split(',').any(|o| o == "ro")
        })
    })
}

/// Every running kube-proxy, with the settings it started with: its flags,
/// or its `--config` file read through the process's own root.
fn kube_proxies(root: &Root, un: &mut Vec<Unreadable>) -> Vec<KubeProxy> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(root.path("/proc")) else {
        return out;
    };
    let mut pids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let Ok(cmdline) = root.read(&format!("/proc/{pid}/cmdline"), "") else {
            continue;
        };
        let argv: Vec<String> = cmdline
            .split('\0')
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect();
        if !drift::is_kube_proxy(&argv) {
            continue;
        }
        let args = drift::parse_args(&argv);
        let Some(config) = args.config else {
            out.push(KubeProxy {
                pid,
                source: "flags".into(),
                settings: args.flags,
            });
            continue;
        };
        let inside = format!("/proc/{pid}/root/{}", config.trim_start_matches('/'));
        let text = root
            .read(&inside, "root")
            .or_else(|_| root.read(&config, "root"));
        match text.map(|t| drift::parse_config(&t)) {
            Ok(Ok(settings)) => out.push(KubeProxy {
                pid,
                source: format!("config {config}"),
                settings,
            }),
            Ok(Err(why)) => un.push(Unreadable {
                what: format!("kube-proxy (pid {pid}) --config {config}"),
                why: Why::Malformed(why),
            }),
            Err(e) => un.push(e),
        }
    }
    out
}

/// The new values of the last apply not rolled back, by key.
fn journal_values(
    root: &Root,
    un: &mut Vec<Unreadable>,
) -> (BTreeMap<String, u64>, Option<String>) {
    let mut out = BTreeMap::new();
    let Ok(path) = journal::journal_path(root, None) else {
        return (out, None);
    };
    match journal::load(&path) {
        Ok(Some(j)) if j.pending() => {
            for v in &j.values {
                let key = if v.path == paths::HASHSIZE {
                    Some(drift::HASHSIZE)
                } else {
                    v.path
                        .strip_prefix(paths::NF)
                        .and_then(|n| n.strip_prefix('/'))
                };
                if let (Some(k), Ok(n)) = (key, v.new.trim().parse()) {
                    out.insert(k.to_string(), n);
                }
            }
            let shown = format!("{}{}", journal::STATE_DIR, "/journal.json");
            (out, Some(shown))
        }
        Ok(_) => (out, None),
        Err(e) => {
            un.push(Unreadable {
                what: path.display().to_string(),
                why: Why::Failed(e.to_string()),
            });
            (out, None)
        }
    }
}

/// The modules-load.d file (or /etc/modules) and its entry that load
/// nf_conntrack at boot, in systemd-modules-load's order.
pub fn loaded_at_boot(root: &Root) -> Option<(String, String)> {
    let mut loads = conf_files(root, &drift::MODULES_LOAD_DIRS);
    loads.push(drift::ETC_MODULES.into());
    loads.into_iter().find_map(|p| {
        let t = root.read(&p, "").ok()?;
        drift::loads_conntrack(&t).map(|m| (p, m))
    })
}

/// Whether `apply --persist` writes the modules-load.d file here: a
/// loadable nf_conntrack (initstate under /sys/module) nothing loads at boot.
pub fn boot_load(root: &Root) -> drift::BootLoad {
    drift::BootLoad::decide(
        crate::gather::conntrack_builtin(root),
        loaded_at_boot(root).as_ref(),
    )
}

/// [`read`] without a gathered [`Facts`] (the exporter, on each scrape):
/// the few live values it compares, read here.
pub fn read_here(root: &Root) -> (DriftFacts, Vec<Unreadable>) {
    let nf = crate::gather::NF;
    let f = Facts {
        max: root.read_u64(&format!("{nf}/nf_conntrack_max"), "").ok(),
        buckets: root
            .read_u64(&format!("{nf}/nf_conntrack_buckets"), "")
            .ok(),
        timeouts: crate::gather::timeouts(root),
        conntrack_builtin: crate::gather::conntrack_builtin(root),
        netns_inode: crate::namespaces::current_inode(),
        init_netns_inode: crate::namespaces::init_inode(root),
        ..Facts::default()
    };
    read(root, &f)
}

/// What the guard compares, from `f` (already gathered) and the files.
pub fn read(root: &Root, f: &Facts) -> (DriftFacts, Vec<Unreadable>) {
    let mut un = Vec::new();
    let mut live = BTreeMap::new();
    if let Some(m) = f.max {
        live.insert(drift::MAX.to_string(), m);
    }
    let hashsize = root
        .read_u64("/sys/module/nf_conntrack/parameters/hashsize", "")
        .ok()
        .or(f.buckets);
    if let Some(h) = hashsize {
        live.insert(drift::HASHSIZE.to_string(), h);
    }
    for (k, v) in &f.timeouts {
        live.insert(k.clone(), *v);
    }
    let sysctl = read_all(root, sysctl_files(root), &mut un);
    let modprobe = read_all(root, conf_files(root, &drift::MODPROBE_DIRS), &mut un);
    let loaded_at_boot = loaded_at_boot(root);
    let (journal, journal_path) = journal_values(root, &mut un);
    let (persisted, invalid) = drift::persisted_and_invalid(&sysctl, &modprobe);
    let d = DriftFacts {
        live,
        persisted,
        invalid,
        journal,
        journal_path,
        kube_proxy: kube_proxies(root, &mut un),
        cpus: online_cpus(root),
        builtin: f.conntrack_builtin,
        loaded_at_boot,
        sys_read_only: sys_read_only(root),
        init_netns: f.netns_inode.is_none() || f.netns_inode == f.init_netns_inode,
    };
    (d, un)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_and_read_only_sys() {
        struct Gone(std::path::PathBuf);
        impl Drop for Gone {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir = Gone(std::env::temp_dir().join(format!("cthost-drift-{}", std::process::id())));
        let root = Root::under(&dir.0);
        std::fs::create_dir_all(root.path("/sys/devices/system/cpu")).expect("mkdir");
        std::fs::create_dir_all(root.path("/proc/self")).expect("mkdir");
        std::fs::write(root.path("/sys/devices/system/cpu/online"), "0-3,6\n").expect("w");
        assert_eq!(online_cpus(&root), Some(5));
        std::fs::write(
            root.path("/proc/self/mounts"),
            "sysfs /sys sysfs ro,nosuid 0 0\n",
        )
        .expect("w");
        assert!(sys_read_only(&root));
        std::fs::write(
            root.path("/proc/self/mounts"),
            "sysfs /sys sysfs rw,nosuid 0 0\n",
        )
        .expect("w");
        assert!(!sys_read_only(&root));
        // A file that is not UTF-8 is still read line by line.
        std::fs::create_dir_all(root.path("/etc/sysctl.d")).expect("mkdir");
        std::fs::write(
            root.path("/etc/sysctl.d/90-x.conf"),
            b"# caf\xe9\nnet.netfilter.nf_conntrack_max = 1048576\n",
        )
        .expect("w");
        let mut un = Vec::new();
        let files = read_all(&root, sysctl_files(&root), &mut un);
        assert!(un.is_empty(), "{un:?}");
        let p = drift::persisted(&files, &[]);
        assert_eq!(p[drift::MAX].value, 1048576);
    }
}
