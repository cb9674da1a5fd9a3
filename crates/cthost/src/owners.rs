//! Who lives in each network namespace: a Kubernetes `namespace/pod`, a
//! Docker container name, a containerd / CRI-O container id, or else the
//! name of a process inside; the initial namespace is "host". Never fails:
//! what cannot be read or parsed gives the next best answer, or "".
//!
//! Parsing (cgroup lines, pod log directory names, Docker's config.v2.json)
//! is pure; the readers go through [`Root`] so tests use a fake tree.

use std::collections::BTreeMap;
use std::io::Read;

pub use crate::facts::ContainerOwner;
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
    // podman's cgroupfs driver: `/libpod_parent/libpod-<id>`, no scope.
    if let Some(id) = c.strip_prefix("libpod-")
        && is_container_id(id)
    {
        return Some(("podman", id.to_string()));
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

/// What Docker's config.v2.json says: the container name (`"Name":
/// "/web"`, without the slash), the image as started (`Config.Image`) and
/// the CRI pod labels (`Config.Labels`); `None` when not JSON or nameless.
pub fn parse_docker_config(json: &str) -> Option<ContainerOwner> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let name = v.get("Name")?.as_str()?.trim_start_matches('/');
    if name.is_empty() {
        return None;
    }
    let config = v.get("Config");
    let text = |key: &str| {
        config
            .and_then(|c| c.get(key))
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let label = |key: &str| {
        config
            .and_then(|c| c.get("Labels"))
            .and_then(|l| l.get(key))
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Some(ContainerOwner {
        runtime: "docker".into(),
        id: v.get("ID").and_then(|i| i.as_str()).map(str::to_string),
        name: Some(name.to_string()),
        image: text("Image"),
        pod: label(POD_NAME),
        pod_namespace: label(POD_NAMESPACE),
        metadata_error: None,
    })
}

/// The Kubernetes CRI labels a container may carry (kubelet sets them;
/// `docker run --label` can too).
pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";

/// The container `id` in containers/storage's `containers.json` (podman,
/// buildah, CRI-O): its name and the image it was created from (the
/// `metadata` string holds JSON with `name` and `image-name`).
pub fn parse_storage_containers(json: &str, id: &str) -> Option<(Option<String>, Option<String>)> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let c = v
        .as_array()?
        .iter()
        .find(|c| c.get("id").and_then(|i| i.as_str()) == Some(id))?;
    let meta: Option<serde_json::Value> = c
        .get("metadata")
        .and_then(|m| m.as_str())
        .and_then(|m| serde_json::from_str(m).ok());
    let field = |k: &str| {
        meta.as_ref()
            .and_then(|m| m.get(k))
            .and_then(|x| x.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let name = field("name").or_else(|| {
        c.get("names")
            .and_then(|n| n.get(0))
            .and_then(|n| n.as_str())
            .map(str::to_string)
    });
    Some((name, field("image-name")))
}

/// The value of a command-line option, `--opt VALUE` or `--opt=VALUE`,
/// under any of its spellings; the last one given wins.
fn option<'a>(args: &'a [String], names: &[&str]) -> Option<&'a str> {
    let mut found = None;
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        for n in names {
            if a == n {
                found = it.peek().map(|v| v.as_str());
            } else if let Some(v) = a.strip_prefix(n).and_then(|r| r.strip_prefix('=')) {
                found = Some(v);
            }
        }
    }
    found
}

/// dockerd's data root from its arguments (`--data-root`, or the old
/// `-g`/`--graph`); `None` for the default, /var/lib/docker.
pub fn parse_dockerd_args(args: &[String]) -> Option<String> {
    option(args, &["--data-root", "--graph", "-g"]).map(str::to_string)
}

/// What a conmon (podman's per-container monitor) was started with: the
/// container id (`-c`), its name (`-n`) and its bundle directory (`-b`,
/// `<storage root>/<driver>-containers/<id>/userdata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conmon {
    pub id: String,
    pub name: Option<String>,
    pub bundle: Option<String>,
}

pub fn parse_conmon_args(args: &[String]) -> Option<Conmon> {
    let id = option(args, &["-c", "--cid"])?;
    is_container_id(id).then(|| Conmon {
        id: id.to_string(),
        name: option(args, &["-n", "--name"]).map(str::to_string),
        bundle: option(args, &["-b", "--bundle"]).map(str::to_string),
    })
}

/// The 12-character short id that `docker ps` and `crictl ps` show.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// config.v2.json is a few KiB; anything far larger is not one.
const MAX_CONFIG: u64 = 4 << 20;

/// At most `cap` bytes of a regular file: a FIFO (which would block the
/// open) or a device (/dev/zero never ends) in a fake tree is an error.
fn read_capped(root: &Root, path: &str, cap: u64) -> std::io::Result<String> {
    let Some((f, _)) = crate::source::open_regular(&root.path(path))? else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    };
    let mut s = String::new();
    f.take(cap).read_to_string(&mut s)?;
    Ok(s)
}

/// A process's arguments (the kernel's ARG_MAX-bounded /proc/PID/cmdline:
/// the first MiB is plenty for dockerd's and conmon's flags).
fn cmdline(root: &Root, pid: u32) -> Vec<String> {
    root.read_prefix(&format!("/proc/{pid}/cmdline"), "root", 1 << 20)
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Where the runtimes on this host keep their metadata, from their
/// processes: every running dockerd's data root (and the default one), and
/// each podman container's conmon arguments, by container id.
#[derive(Debug, Clone, Default)]
pub struct Runtimes {
    pub docker_roots: Vec<String>,
    pub conmon: BTreeMap<String, Conmon>,
}

const DOCKER_ROOT: &str = "/var/lib/docker";
/// containers/storage's default graph root (rootful podman, CRI-O).
const STORAGE_ROOT: &str = "/var/lib/containers/storage";

pub fn runtimes(root: &Root, pids: &[u32]) -> Runtimes {
    let mut r = Runtimes::default();
    for &pid in pids {
        match crate::namespaces::comm(root, pid).as_str() {
            "dockerd" => {
                let dr = parse_dockerd_args(&cmdline(root, pid))
                    .unwrap_or_else(|| DOCKER_ROOT.to_string());
                if !r.docker_roots.contains(&dr) {
                    r.docker_roots.push(dr);
                }
            }
            "conmon" => {
                if let Some(c) = parse_conmon_args(&cmdline(root, pid)) {
                    r.conmon.insert(c.id.clone(), c);
                }
            }
            _ => {}
        }
    }
    if !r.docker_roots.iter().any(|d| d == DOCKER_ROOT) {
        r.docker_roots.push(DOCKER_ROOT.to_string());
    }
    r
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

/// What lives in a namespace: the name shown (a pod's `namespace/pod`, a
/// container's name or short id, a process name, "host", or ""), and the
/// container behind it when there is one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub container: Option<ContainerOwner>,
}

impl Owner {
    fn named(name: String) -> Self {
        Self {
            name,
            container: None,
        }
    }
}

/// A Docker container's metadata from the first data root holding it.
fn docker_owner(root: &Root, rt: &Runtimes, id: &str) -> ContainerOwner {
    let mut errors = Vec::new();
    for dr in &rt.docker_roots {
        // `id` is 64 hex digits (checked by the parser): no path tricks.
        let path = format!("{dr}/containers/{id}/config.v2.json");
        match read_capped(root, &path, MAX_CONFIG) {
            Ok(j) => match parse_docker_config(&j) {
                Some(c) => return c,
                None => errors.push(format!("{path}: not a container config")),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("{path}: {e}")),
        }
    }
    ContainerOwner {
        runtime: "docker".into(),
        id: Some(id.to_string()),
        metadata_error: Some(if errors.is_empty() {
            format!(
                "no config.v2.json for container {} under {}",
                short(id),
                rt.docker_roots.join(", ")
            )
        } else {
            errors.join("; ")
        }),
        ..ContainerOwner::default()
    }
}

/// A podman container's name (conmon's `-n`) and image (containers.json
/// next to its bundle, or in the default storage root).
fn podman_owner(root: &Root, rt: &Runtimes, id: &str) -> ContainerOwner {
    let conmon = rt.conmon.get(id);
    let mut lists: Vec<String> = Vec::new();
    if let Some(b) = conmon.and_then(|c| c.bundle.as_deref()) {
        // <graph root>/<driver>-containers/<id>/userdata
        if let Some(dir) = std::path::Path::new(b).parent().and_then(|p| p.parent()) {
            lists.push(dir.join("containers.json").to_string_lossy().into_owned());
        }
    }
    for driver in ["overlay", "vfs", "btrfs", "zfs"] {
        lists.push(format!(
            "{STORAGE_ROOT}/{driver}-containers/containers.json"
        ));
    }
    let mut out = ContainerOwner {
        runtime: "podman".into(),
        id: Some(id.to_string()),
        name: conmon.and_then(|c| c.name.clone()),
        ..ContainerOwner::default()
    };
    let mut errors = Vec::new();
    for l in &lists {
        match read_capped(root, l, 64 << 20) {
            Ok(j) => {
                if let Some((name, image)) = parse_storage_containers(&j, id) {
                    out.name = out.name.or(name);
                    out.image = image;
                    return out;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("{l}: {e}")),
        }
    }
    out.metadata_error = Some(if errors.is_empty() {
        format!(
            "container {} is in no containers.json ({})",
            short(id),
            lists.join(", ")
        )
    } else {
        errors.join("; ")
    });
    out
}

/// The owner for a container: the pod's `namespace/pod` (from the CRI
/// labels, or kubelet's log directory, or `pod UID`), else the container's
/// name, else its short id.
pub fn container_owner(
    root: &Root,
    rt: &Runtimes,
    pods: &BTreeMap<String, String>,
    c: &Container,
) -> Owner {
    let meta = match c {
        Container::Pod { uid, id } => ContainerOwner {
            runtime: "kubernetes".into(),
            id: id.clone(),
            name: None,
            pod: pods
                .get(uid)
                .and_then(|p| p.split_once('/'))
                .map(|(_, p)| p.to_string()),
            pod_namespace: pods
                .get(uid)
                .and_then(|p| p.split_once('/'))
                .map(|(n, _)| n.to_string()),
            ..ContainerOwner::default()
        },
        Container::Docker { id } => docker_owner(root, rt, id),
        Container::Other {
            runtime: "podman",
            id,
        } => podman_owner(root, rt, id),
        Container::Other { runtime, id } => ContainerOwner {
            runtime: (*runtime).to_string(),
            id: Some(id.clone()),
            ..ContainerOwner::default()
        },
    };
    // Labels and names are whatever their writer chose (a docker user's
    // --label io.kubernetes.pod.name=$'\e[2J'): never raw to a terminal.
    let p = |o: Option<String>| o.map(|s| crate::source::printable(&s));
    let meta = ContainerOwner {
        name: p(meta.name),
        image: p(meta.image),
        pod: p(meta.pod),
        pod_namespace: p(meta.pod_namespace),
        ..meta
    };
    let name = match (&meta.pod_namespace, &meta.pod, c) {
        (Some(ns), Some(pod), _) => format!("{ns}/{pod}"),
        (_, _, Container::Pod { uid, .. }) => format!("pod {uid}"),
        _ => meta.name.clone().unwrap_or_else(|| {
            meta.id
                .as_deref()
                .map(short)
                .unwrap_or_default()
                .to_string()
        }),
    };
    Owner {
        name,
        container: Some(meta),
    }
}

/// The owner of every namespace in `namespaces`, by inode: "host" for the
/// initial one (`init_inode`), else the container of a process inside
/// (pod beats Docker beats other runtimes), else the name of the lowest
/// PID inside, else "" (e.g. an `ip netns` namespace with no process).
pub fn owners(
    root: &Root,
    namespaces: &[Namespace],
    init_inode: Option<u64>,
) -> BTreeMap<u64, Owner> {
    let pids = crate::namespaces::pids(root);
    let wanted: std::collections::BTreeSet<u64> = namespaces
        .iter()
        .filter(|n| Some(n.inode) != init_inode)
        .map(|n| n.inode)
        .collect();
    // Processes of each wanted namespace, lowest PID first.
    let (inside, _) = crate::namespaces::pids_by_inode(root, &pids, &wanted);
    let pods = pod_names(root);
    let rt = runtimes(root, &pids);
    let rank = |c: &Container| match c {
        Container::Pod { .. } => 0,
        Container::Docker { .. } => 1,
        Container::Other { .. } => 2,
    };
    let mut out = BTreeMap::new();
    for ns in namespaces {
        if Some(ns.inode) == init_inode {
            out.insert(ns.inode, Owner::named(HOST.to_string()));
            continue;
        }
        let procs = inside.get(&ns.inode).map(Vec::as_slice).unwrap_or(&[]);
        // The best container among the processes; a pod cannot be beaten.
        let mut container: Option<Container> = None;
        for pid in procs {
            let Some(c) = read_capped(root, &format!("/proc/{pid}/cgroup"), 64 << 10)
                .ok()
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
            Some(c) => container_owner(root, &rt, &pods, &c),
            None => Owner::named(
                procs
                    .first()
                    .map(|&p| crate::namespaces::comm(root, p))
                    .unwrap_or_default(),
            ),
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
            parse_docker_config(r#"{"ID":"x","Name":"/web-1","State":{}}"#).and_then(|c| c.name),
            Some("web-1".into())
        );
        assert_eq!(parse_docker_config(r#"{"Name":""}"#), None);
        assert_eq!(parse_docker_config(r#"{"Name":7}"#), None);
        assert_eq!(parse_docker_config("{not json"), None);
    }

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn podman_cgroupfs_has_no_scope() {
        // Real (podman 4.3 rootful, no systemd): `/libpod_parent/libpod-ID`.
        assert_eq!(
            parse_cgroup_path(&format!("/libpod_parent/libpod-{ID}")),
            Some(Container::Other {
                runtime: "podman",
                id: ID.into()
            })
        );
    }

    #[test]
    fn dockerd_and_conmon_arguments() {
        assert_eq!(
            parse_dockerd_args(&args("/usr/sbin/dockerd --data-root /srv/d -H unix:///x")),
            Some("/srv/d".into())
        );
        assert_eq!(
            parse_dockerd_args(&args("dockerd --data-root=/a -g /b")),
            Some("/b".into())
        );
        assert_eq!(parse_dockerd_args(&args("dockerd -H fd://")), None);
        let c = parse_conmon_args(&args(&format!(
            "/usr/bin/conmon --api-version 1 -c {ID} -u {ID} -b /r/vfs-containers/{ID}/userdata -n web"
        )))
        .expect("conmon");
        assert_eq!(c.name.as_deref(), Some("web"));
        assert_eq!(c.bundle, Some(format!("/r/vfs-containers/{ID}/userdata")));
        // Not a container id: not a podman container's monitor.
        assert_eq!(parse_conmon_args(&args("conmon -c ../../etc -n x")), None);
        assert_eq!(parse_conmon_args(&args("conmon -c")), None);
    }

    #[test]
    fn storage_containers_json() {
        let j = format!(
            r#"[{{"id":"{ID}","names":["pweb"],"metadata":"{{\"image-name\":\"localhost/bb:1\",\"name\":\"pweb\"}}"}}]"#
        );
        assert_eq!(
            parse_storage_containers(&j, ID),
            Some((Some("pweb".into()), Some("localhost/bb:1".into())))
        );
        assert_eq!(parse_storage_containers(&j, "other"), None);
        assert_eq!(parse_storage_containers("{", ID), None);
    }
}
