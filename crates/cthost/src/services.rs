//! Services known to depend on conntrack, detected from running processes
//! (/proc/PID/comm) and enabled systemd units (symlinks under
//! /etc/systemd/system/*.wants), with what each uses conntrack for.

use std::collections::BTreeMap;

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
    let mut found: BTreeMap<&str, Service> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(root.path("/proc")) {
        for e in dir.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let Ok(comm) = std::fs::read_to_string(e.path().join("comm")) else {
                continue;
            };
            let comm = comm.trim();
            if let Some((_, _, display, why)) = KNOWN.iter().find(|k| k.0 == comm) {
                found.entry(display).or_insert_with(|| Service {
                    name: (*display).to_string(),
                    seen: format!("running (pid {pid})"),
                    uses_conntrack_for: (*why).to_string(),
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
                    found.entry(display).or_insert_with(|| Service {
                        name: (*display).to_string(),
                        seen: format!("unit {unit} enabled"),
                        uses_conntrack_for: (*why).to_string(),
                    });
                }
            }
        }
    }
    if let Ok(conf) = std::fs::read_to_string(root.path("/etc/ufw/ufw.conf"))
        && conf.lines().any(|l| l.trim() == "ENABLED=yes")
    {
        found.insert(
            "ufw",
            Service {
                name: "ufw".into(),
                seen: "ufw.conf ENABLED=yes".into(),
                uses_conntrack_for: "stateful rules (ctstate RELATED,ESTABLISHED)".into(),
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
}
