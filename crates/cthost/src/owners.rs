//! Who lives in each network namespace: a Kubernetes `namespace/pod`, a
//! Docker container name, a containerd / CRI-O container id, or else the
//! name of a process inside; the initial namespace is "host". Never fails:
//! what cannot be read or parsed gives the next best answer, or "".
//!
//! Parsing (cgroup lines, pod log directory names, Docker's config.v2.json)
//! is pure; the readers go through [`Root`] so tests use a fake tree.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

use crate::facts::Namespace;
use crate::source::Root;

/// The owner of the initial network namespace.
pub const HOST: &str = "host";

/// What a process's cgroup path says about the container it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Container {
    /// A Kubernetes pod (kubelet's `kubepods` hierarchy), by UID, with the
    /// container id when the path names one.
    Pod { uid: String, id: Option<String> },
    /// A Docker container (not under kubelet).
    Docker { id: String },
    /// Another runtime's container: containerd (`cri-containerd-ID.scope`,
    /// `/NAMESPACE/ID`), CRI-O (`crio-ID.scope`), podman (`libpod-ID.scope`).
    Other { runtime: &'static str, id: String },
}

/// Systemd scope prefixes of container runtimes, as their systemd cgroup
/// drivers name them (`<prefix>-<64 hex id>.scope`).
const SCOPES: &[(&str, &str)] = &[
    ("cri-containerd-", "containerd"),
    ("crio-conmon-", "cri-o"),
    ("crio-", "cri-o"),
    ("docker-", "docker"),
    ("libpod-conmon-", "podman"),
    ("libpod-", "podman"),
    ("nerdctl-", "containerd"),
];

/// A full container id: 64 lowercase hex digits (Docker, containerd,
/// CRI-O and podman all use the sha256-sized id).
fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A pod UID as kubelet writes it in a cgroup name: 36 characters of hex
/// and `-` (cgroupfs driver) or `_` (systemd driver, where `-` separates
/// slice levels); returned with dashes.
fn pod_uid(s: &str) -> Option<String> {
    let ok = s.len() == 36
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_');
    ok.then(|| s.replace('_', "-").to_ascii_lowercase())
}

/// The container id in one path component: `<prefix>-<id>.scope` or a
/// bare 64-hex id.
fn component_id(c: &str) -> Option<(&'static str, String)> {
    if let Some(stem) = c.strip_suffix(".scope") {
        for (prefix, runtime) in SCOPES {
            if let Some(id) = stem.strip_prefix(prefix)
                && is_container_id(id)
            {
                return Some((runtime, id.to_string()));
            }
        }
        return None;
    }
    is_container_id(c).then(|| ("", c.to_string()))
}

/// The pod UID in one path component: `pod<UID>` (cgroupfs) or
/// `kubepods[-<qos>]-pod<UID>.slice` (systemd).
fn component_pod(c: &str) -> Option<String> {
    let c = c.strip_suffix(".slice").unwrap_or(c);
    let at = c.rfind("pod")?;
    let before = &c[..at];
    // `pod` starts the component (cgroupfs) or follows a `-` (systemd).
    if !(before.is_empty() || before.ends_with('-')) {
        return None;
    }
    pod_uid(&c[at + 3..])
}

/// What one cgroup path (the third field of a /proc/PID/cgroup line) says.
pub fn parse_cgroup_path(path: &str) -> Option<Container> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    // `kubepods` starts the hierarchy, or follows a prefix where kubelet
    // has its own cgroup root (kind: /kubelet.slice/kubelet-kubepods.slice).
    let kube = parts.iter().position(|p| p.contains("kubepods"));
    if let Some(k) = kube {
        let uid = parts[k..].iter().find_map(|p| component_pod(p))?;
        let id = parts.last().and_then(|p| component_id(p)).map(|(_, id)| id);
        return Some(Container::Pod { uid, id });
    }
    // Innermost container wins (a container inside a container's cgroup).
    for (i, p) in parts.iter().enumerate().rev() {
        let Some((runtime, id)) = component_id(p) else {
            continue;
        };
        let parent = i.checked_sub(1).map(|j| parts[j]);
        return Some(match (runtime, parent) {
            ("docker", _) | ("", Some("docker")) => Container::Docker { id },
            ("", _) => Container::Other {
                // cgroupfs layout of containerd (`/<namespace>/<id>`, e.g.
                // /default/ID, /k8s.io/ID, /moby/ID) and of CRI-O.
                runtime: match parent {
                    Some("moby") => "docker",
                    Some("crio") => "cri-o",
                    Some("libpod_parent") => "podman",
                    _ => "containerd",
                },
                id,
            },
            (runtime, _) => Container::Other { runtime, id },
        });
    }
    None
}

/// What /proc/PID/cgroup says: every line (`ID:CONTROLLERS:PATH`, cgroup v1
/// and v2 alike) is tried; a pod beats any other answer. Malformed lines
/// are skipped.
pub fn parse_cgroup(text: &str) -> Option<Container> {
    let mut best = None;
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(_), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        match parse_cgroup_path(path.trim_end()) {
            Some(c @ Container::Pod { .. }) => return Some(c),
            Some(c) if best.is_none() => best = Some(c),
            _ => {}
        }
    }
    best
}

/// A /var/log/pods directory name, `NAMESPACE_PODNAME_UID` (kubelet's
/// pod log directory; neither a namespace nor a pod name may contain `_`):
/// the UID and `namespace/pod`.
pub fn parse_pod_log_dir(name: &str) -> Option<(String, String)> {
    let mut parts = name.splitn(3, '_');
    let (ns, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if ns.is_empty() || pod.is_empty() {
        return None;
    }
    let uid = pod_uid(uid)?;
    Some((uid, format!("{ns}/{pod}")))
}

/// The container name in Docker's config.v2.json (`"Name": "/web"`),
/// without the leading slash; `None` when absent or not JSON.
pub fn parse_docker_config(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let name = v.get("Name")?.as_str()?.trim_start_matches('/');
    (!name.is_empty()).then(|| name.to_string())
}

/// The 12-character short id that `docker ps` and `crictl ps` show.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// config.v2.json is a few KiB; anything far larger is not one.
const MAX_CONFIG: u64 = 4 << 20;

fn read_capped(root: &Root, path: &str, cap: u64) -> Option<String> {
    let f = std::fs::File::open(root.path(path)).ok()?;
    let mut s = String::new();
    f.take(cap).read_to_string(&mut s).ok()?;
    Some(s)
}

/// Pod UID to `namespace/pod`, from the directory names in /var/log/pods.
pub fn pod_names(root: &Root) -> BTreeMap<String, String> {
    std::fs::read_dir(root.path("/var/log/pods"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| parse_pod_log_dir(e.file_name().to_str()?))
                .collect()
        })
        .unwrap_or_default()
}

/// The owner's name for a container: the pod's `namespace/pod` (or `pod
/// UID` when kubelet's log directory is not there), the Docker container's
/// name (or its short id), the short id of another runtime's container.
pub fn container_name(root: &Root, pods: &BTreeMap<String, String>, c: &Container) -> String {
    match c {
        Container::Pod { uid, .. } => pods
            .get(uid)
            .cloned()
            .unwrap_or_else(|| format!("pod {uid}")),
        Container::Docker { id } => {
            // `id` is 64 hex digits (checked by the parser): no path tricks.
            read_capped(
                root,
                &format!("/var/lib/docker/containers/{id}/config.v2.json"),
                MAX_CONFIG,
            )
            .and_then(|j| parse_docker_config(&j))
            .unwrap_or_else(|| short(id).to_string())
        }
        Container::Other { id, .. } => short(id).to_string(),
    }
}

fn comm(root: &Root, pid: u32) -> String {
    read_capped(root, &format!("/proc/{pid}/comm"), 64)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The owner of every namespace in `namespaces`, by inode: "host" for the
/// initial one (`init_inode`), else the container of a process inside
/// (pod beats Docker beats other runtimes), else the name of the lowest
/// PID inside, else "" (e.g. an `ip netns` namespace with no process).
pub fn owners(
    root: &Root,
    namespaces: &[Namespace],
    init_inode: Option<u64>,
) -> BTreeMap<u64, String> {
    let pids = crate::namespaces::pids(root);
    let wanted: BTreeMap<u64, ()> = namespaces
        .iter()
        .filter(|n| Some(n.inode) != init_inode)
        .map(|n| (n.inode, ()))
        .collect();
    // Processes of each wanted namespace, lowest PID first.
    let mut inside: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    for pid in pids {
        let Ok(m) = std::fs::metadata(root.path(&format!("/proc/{pid}/ns/net"))) else {
            continue;
        };
        if wanted.contains_key(&m.ino()) {
            inside.entry(m.ino()).or_default().push(pid);
        }
    }
    let pods = pod_names(root);
    let rank = |c: &Container| match c {
        Container::Pod { .. } => 0,
        Container::Docker { .. } => 1,
        Container::Other { .. } => 2,
    };
    let mut out = BTreeMap::new();
    for ns in namespaces {
        if Some(ns.inode) == init_inode {
            out.insert(ns.inode, HOST.to_string());
            continue;
        }
        let procs = inside.get(&ns.inode).map(Vec::as_slice).unwrap_or(&[]);
        // The best container among the processes; a pod cannot be beaten.
        let mut container: Option<Container> = None;
        for pid in procs {
            let Some(c) = read_capped(root, &format!("/proc/{pid}/cgroup"), 64 << 10)
                .and_then(|t| parse_cgroup(&t))
            else {
                continue;
            };
            if container.as_ref().is_none_or(|b| rank(&c) < rank(b)) {
                container = Some(c);
            }
            if container.as_ref().is_some_and(|b| rank(b) == 0) {
                break;
            }
        }
        let owner = match container {
            Some(c) => container_name(root, &pods, &c),
            None => procs.first().map(|&p| comm(root, p)).unwrap_or_default(),
        };
        out.insert(ns.inode, owner);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4c2b3a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b";
    const UID: &str = "8f3e6a1c-2b4d-4e5f-9a7b-1c2d3e4f5a6b";

    fn pod(id: Option<&str>) -> Option<Container> {
        Some(Container::Pod {
            uid: UID.into(),
            id: id.map(str::to_string),
        })
    }

    #[test]
    fn kubepods_systemd_driver_underscored_uid() {
        let p = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            UID.replace('-', "_")
        );
        assert_eq!(parse_cgroup_path(&p), pod(Some(ID)));
        // Guaranteed QoS has no QoS slice level.
        let p = format!(
            "/kubepods.slice/kubepods-pod{}.slice/crio-{ID}.scope",
            UID.replace('-', "_")
        );
        assert_eq!(parse_cgroup_path(&p), pod(Some(ID)));
    }

    #[test]
    fn kubepods_cgroupfs_driver() {
        let p = format!("/kubepods/besteffort/pod{UID}/{ID}");
        assert_eq!(parse_cgroup_path(&p), pod(Some(ID)));
        let p = format!("/kubepods/pod{UID}");
        assert_eq!(parse_cgroup_path(&p), pod(None));
    }

    #[test]
    fn kubepods_under_another_root_or_seen_from_a_cgroup_namespace() {
        // kind / nested kubelets: kubelet's cgroup root prefixes every level.
        let p = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{}.slice/cri-containerd-{ID}.scope",
            UID.replace('-', "_")
        );
        assert_eq!(parse_cgroup_path(&p), pod(Some(ID)));
        // From inside a container's cgroup namespace (the DaemonSet with
        // hostPID), other processes' paths are relative: `/../..`.
        let p = format!("/../../kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(parse_cgroup_path(&p), pod(Some(ID)));
    }

    #[test]
    fn containerd_namespaces() {
        for parent in ["containerd", "k8s.io", "default"] {
            assert_eq!(
                parse_cgroup_path(&format!("/{parent}/{ID}")),
                Some(Container::Other {
                    runtime: "containerd",
                    id: ID.into()
                }),
                "{parent}"
            );
        }
    }

    #[test]
    fn docker_runtimes() {
        assert_eq!(
            parse_cgroup_path(&format!("/system.slice/docker-{ID}.scope")),
            Some(Container::Docker { id: ID.into() })
        );
        assert_eq!(
            parse_cgroup_path(&format!("/docker/{ID}")),
            Some(Container::Docker { id: ID.into() })
        );
        assert_eq!(
            parse_cgroup_path(&format!("/system.slice/crio-{ID}.scope")),
            Some(Container::Other {
                runtime: "cri-o",
                id: ID.into()
            })
        );
        assert_eq!(
            parse_cgroup_path(&format!("/default/{ID}")),
            Some(Container::Other {
                runtime: "containerd",
                id: ID.into()
            })
        );
    }

    #[test]
    fn plain_processes_have_no_container() {
        for p in [
            "/",
            "/user.slice/user-0.slice/session-3.scope",
            "/system.slice/sshd.service",
            "/init.scope",
            "/kubepods.slice", // kubepods without a pod: not a pod
            "/system.slice/docker-abc.scope",
        ] {
            assert_eq!(parse_cgroup_path(p), None, "{p}");
        }
    }

    #[test]
    fn v1_lines_pod_wins() {
        let text = format!(
            "12:pids:/system.slice/docker-{ID}.scope\n4:memory:/kubepods/burstable/pod{UID}/{ID}\nbroken line\n1:name=systemd:/\n"
        );
        assert_eq!(parse_cgroup(&text), pod(Some(ID)));
    }

    #[test]
    fn pod_log_dir() {
        assert_eq!(
            parse_pod_log_dir(&format!("kube-system_coredns-5d78c9869d-x2x7k_{UID}")),
            Some((UID.into(), "kube-system/coredns-5d78c9869d-x2x7k".into()))
        );
        assert_eq!(parse_pod_log_dir("no-underscores"), None);
        assert_eq!(parse_pod_log_dir("a_b_notauid"), None);
        assert_eq!(parse_pod_log_dir(&format!("_b_{UID}")), None);
    }

    #[test]
    fn docker_config() {
        assert_eq!(
            parse_docker_config(r#"{"ID":"x","Name":"/web-1","State":{}}"#),
            Some("web-1".into())
        );
        assert_eq!(parse_docker_config(r#"{"Name":""}"#), None);
        assert_eq!(parse_docker_config(r#"{"Name":7}"#), None);
        assert_eq!(parse_docker_config("{not json"), None);
    }
}
