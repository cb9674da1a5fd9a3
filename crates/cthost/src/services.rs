//! Services known to depend on conntrack, detected from running processes
//! (/proc/PID/comm) and enabled systemd units (symlinks under
//! /etc/systemd/system/*.wants), with what each uses conntrack for and, for
//! a process, the network namespace it runs in: /proc shows the host's
//! processes whatever namespace ctdoctor entered with `--netns`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

pub use crate::facts::Service;
use crate::source::Root;

/// (process name, unit name, display name, why it needs conntrack)
const KNOWN: &[(&str, &str, &str, &str)] = &[
    (
        "dockerd",
        "docker.service",
        "Docker",
        "NAT for published ports and container masquerade",
    ),
    (
        "containerd",
        "containerd.service",
        "containerd",
        "CNI plugins use NAT (portmap, masquerade)",
    ),
    (
        "kube-proxy",
        "kube-proxy.service",
        "kube-proxy",
        "Service VIPs are DNAT (iptables/ipvs modes)",
    ),
    (
        "kubelet",
        "kubelet.service",
        "kubelet",
        "pods behind CNI NAT and kube-proxy",
    ),
    (
        "firewalld",
        "firewalld.service",
        "firewalld",
        "stateful zones (ct state established,related)",
    ),
    (
        "libvirtd",
        "libvirtd.service",
        "libvirt",
        "NAT for the default virtual network",
    ),
    (
        "cilium-agent",
        "cilium.service",
        "Cilium",
        "only without eBPF host routing / with iptables masquerade",
    ),
    (
        "calico-node",
        "calico-node.service",
        "Calico",
        "iptables dataplane (not the eBPF dataplane)",
    ),
    (
        "ovs-vswitchd",
        "openvswitch-switch.service",
        "Open vSwitch",
        "only flows with ct() actions",
    ),
];

/// Scan processes, enabled units and ufw's configuration.
pub fn detect(root: &Root) -> Vec<Service> {
    // Keyed by namespace too: the same service may run on the host and in
    // a container, and only one of them is in the namespace checked.
    let mut found: BTreeMap<(&str, Option<u64>), Service> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(root.path("/proc")) {
        for e in dir.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let Ok(pid) = pid.parse::<u32>() else {
                continue;
            };
            let comm = crate::namespaces::comm(root, pid);
            let comm = comm.as_str();
            if let Some((_, _, display, why)) = KNOWN.iter().find(|k| k.0 == comm) {
                let netns_inode = std::fs::metadata(e.path().join("ns/net"))
                    .ok()
                    .map(|m| m.ino());
                found
                    .entry((display, netns_inode))
                    .or_insert_with(|| Service {
                        name: (*display).to_string(),
                        seen: format!("running (pid {pid})"),
                        uses_conntrack_for: (*why).to_string(),
                        netns_inode,
                    });
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir(root.path("/etc/systemd/system")) {
        for wants in dir
            .flatten()
            .filter(|d| d.file_name().to_string_lossy().ends_with(".wants"))
        {
            let Ok(units) = std::fs::read_dir(wants.path()) else {
                continue;
            };
            for unit in units.flatten() {
                let unit = unit.file_name().to_string_lossy().into_owned();
                if let Some((_, _, display, why)) = KNOWN.iter().find(|k| k.1 == unit) {
                    found.entry((display, None)).or_insert_with(|| Service {
                        name: (*display).to_string(),
                        seen: format!("unit {unit} enabled"),
                        uses_conntrack_for: (*why).to_string(),
                        netns_inode: None,
                    });
                }
            }
        }
    }
    if let Ok(conf) = root.read_lossy("/etc/ufw/ufw.conf", "root")
        && conf.lines().any(|l| l.trim() == "ENABLED=yes")
    {
        found.insert(
            ("ufw", None),
            Service {
                name: "ufw".into(),
                seen: "ufw.conf ENABLED=yes".into(),
                uses_conntrack_for: "stateful rules (ctstate RELATED,ESTABLISHED)".into(),
                netns_inode: None,
            },
        );
    }
    found.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_tree() {
        let dir = std::env::temp_dir().join(format!("cthost-svc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mk = |p: &str, body: &str| {
            let p = dir.join(p);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, body).expect("write");
        };
        mk("proc/123/comm", "dockerd\n");
        mk("proc/456/comm", "bash\n");
        mk("proc/self/comm", "kube-proxy\n"); // not a pid: ignored
        mk(
            "etc/systemd/system/multi-user.target.wants/firewalld.service",
            "",
        );
        mk("etc/ufw/ufw.conf", "# ufw\nENABLED=yes\n");
        let s = detect(&Root::under(&dir));
        let names: Vec<(&str, &str)> = s
            .iter()
            .map(|s| (s.name.as_str(), s.seen.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("Docker", "running (pid 123)"),
                ("firewalld", "unit firewalld.service enabled"),
                ("ufw", "ufw.conf ENABLED=yes")
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue 7 section 4: /proc shows every process of the host, so each
    /// carries the namespace it runs in (here a fake tree: the inode of
    /// the file standing for /proc/PID/ns/net), once per namespace.
    #[test]
    fn a_service_is_reported_per_network_namespace() {
        let dir = std::env::temp_dir().join(format!("cthost-svc-ns-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mk = |p: &str, body: &str| {
            let p = dir.join(p);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, body).expect("write");
            std::fs::metadata(&p).expect("stat").ino()
        };
        mk("proc/10/comm", "dockerd\n");
        let host = mk("proc/10/ns/net", "");
        mk("proc/20/comm", "dockerd\n");
        let container = mk("proc/20/ns/net", "");
        mk(
            "etc/systemd/system/multi-user.target.wants/kubelet.service",
            "",
        );
        let mut s: Vec<(String, String, Option<u64>)> = detect(&Root::under(&dir))
            .into_iter()
            .map(|s| (s.name, s.seen, s.netns_inode))
            .collect();
        s.sort();
        let mut want = vec![
            (
                "Docker".to_string(),
                "running (pid 10)".to_string(),
                Some(host),
            ),
            ("Docker".into(), "running (pid 20)".into(), Some(container)),
            (
                "kubelet".into(),
                "unit kubelet.service enabled".into(),
                None,
            ),
        ];
        want.sort();
        assert_eq!(s, want);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
