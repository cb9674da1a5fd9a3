//! Real container runtimes for the end-to-end tests (issue 18): a dockerd
//! with the containerd it spawns itself, and rootful podman (netavark),
//! both confined to a network namespace the test owns, so their bridges,
//! their iptables rules and every container's traffic stay in it; state
//! lives in a temporary directory (`--data-root`, `--exec-root`, `--root`,
//! `--runroot`, network config, sockets, pid files). Nothing is pulled:
//! the only image is a busybox-static rootfs imported from a tar.
//!
//! Guards stop everything on drop, also during a panic's unwinding:
//! containers removed, daemons stopped, mounts under the directory
//! unmounted, podman's /run/netns files removed. Tests using them hold
//! [`lock`] (one dockerd at a time per machine).
//!
//! How each runtime is confined: dockerd runs under `ip netns exec`, whose
//! private mount namespace loses the host's cgroup mounts with /sys, so
//! they are mounted again there first (same hierarchies, same options);
//! every mount dockerd makes stays in that mount namespace and goes with
//! it. podman is a command, not a daemon: a container's namespace file
//! must stay visible to the next podman command, so podman runs under
//! `nsenter --net` (the host's mount namespace) and the guard unmounts
//! what it leaves.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ctlab::Netns;

/// The tag both runtimes give the busybox image.
pub const IMAGE: &str = "ctdoctor-test/busybox:1";

/// Debian's docker.io client (/usr/local/bin may hold a newer client that
/// refuses dockerd 20.10's API).
pub const DOCKER: &str = "/usr/bin/docker";

/// Serializes the tests that run dockerd or podman (a file lock: other
/// test binaries and concurrent `cargo test` runs respect it too).
pub struct Lock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

pub fn lock() -> Lock {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("ctdoctor-containers.lock"))
        .expect("open lock file");
    Lock(
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .expect("flock"),
    )
}

fn check(what: &str, out: std::io::Result<Output>) -> Output {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// stdout, trimmed.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A tar of a rootfs holding busybox-static and its applet links, in `dir`.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir rootfs");
    for d in ["etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir rootfs");
    }
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("copy /bin/busybox (busybox-static)");
    let list = check(
        "busybox --list",
        Command::new("/bin/busybox").arg("--list").output(),
    );
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.contains('/') {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet link");
        }
    }
    let tar = dir.join("busybox.tar");
    check(
        "tar rootfs",
        Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .output(),
    );
    tar
}

/// The host's cgroup mounts, remounted in `ip netns exec`'s mount
/// namespace, then the command: `sh -c SCRIPT sh CMD...`.
const WITH_CGROUPS: &str = r#"set -e
while read -r src dir type opts rest; do
  case "$type:$dir" in cgroup*:/sys/fs/cgroup*|tmpfs:/sys/fs/cgroup) ;; *) continue ;; esac
  mkdir -p "$dir"
  mount -t "$type" -o "$(echo "$opts" | sed 's/^rw,//; s/relatime,\{0,1\}//')" "$src" "$dir"
done < /proc/1/mounts
exec "$@""#;

fn spawn_in(ns: &str, log: &Path, args: &[&str]) -> Child {
    let log = std::fs::File::create(log).expect("daemon log");
    Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", WITH_CGROUPS, "sh"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .spawn()
        .expect("spawn daemon")
}

fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not ready in {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stop a daemon: SIGTERM, up to `secs` to exit, then SIGKILL; reaped.
fn stop(child: &mut Child, secs: u64) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    // `ip netns exec` execs the shell, which execs the daemon: same pid.
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Unmount every mount point under `dir` (deepest first; lazily).
fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").args(["-l", p]).status();
    }
}

/// A dockerd (and its containerd) running in `ns`, all state under `dir`.
pub struct DockerHost {
    ns: String,
    dir: PathBuf,
    containerd: Option<Child>,
    dockerd: Option<Child>,
    /// Whether /run/docker existed before (removed at the end if not).
    run_docker_before: bool,
}

impl DockerHost {
    /// Start containerd and dockerd in `ns`, wait until the API answers.
    pub fn start(ns: &Netns, dir: &Path) -> Self {
        let dir = dir.join("docker");
        for d in ["ctrd/root", "ctrd/state", "data", "exec", "client"] {
            std::fs::create_dir_all(dir.join(d)).expect("mkdir docker state");
        }
        std::fs::write(
            dir.join("containerd.toml"),
            "version = 2\n# no CRI: nothing here serves kubelet\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
        )
        .expect("containerd config");
        // 20.10 writes its trust key to /etc/docker/key.json unless told
        // otherwise (a daemon.json key; no such flag in Debian's build).
        std::fs::write(
            dir.join("daemon.json"),
            format!(
                "{{\"deprecated-key-path\": \"{}\"}}\n",
                dir.join("key.json").display()
            ),
        )
        .expect("daemon.json");
        let mut host = Self {
            ns: ns.name().to_string(),
            dir: dir.clone(),
            containerd: None,
            dockerd: None,
            run_docker_before: Path::new(RUN_DOCKER).exists(),
        };
        let p = |s: &str| dir.join(s).to_string_lossy().into_owned();
        host.containerd = Some(spawn_in(
            &host.ns,
            &dir.join("containerd.log"),
            &[
                "/usr/bin/containerd",
                "-c",
                &p("containerd.toml"),
                "--root",
                &p("ctrd/root"),
                "--state",
                &p("ctrd/state"),
                "--address",
                &p("ctrd/sock"),
            ],
        ));
        let sock = dir.join("ctrd/sock");
        wait_until("containerd", 20, || sock.exists());
        host.dockerd = Some(spawn_in(
            &host.ns,
            &dir.join("dockerd.log"),
            &[
                "/usr/sbin/dockerd",
                "--containerd",
                &p("ctrd/sock"),
                "--data-root",
                &p("data"),
                "--exec-root",
                &p("exec"),
                "--host",
                &format!("unix://{}", p("docker.sock")),
                "--pidfile",
                &p("docker.pid"),
                "--config-file",
                &p("daemon.json"),
                // No mounts per layer, nothing to clean but files.
                "--storage-driver",
                "vfs",
            ],
        ));
        let log = dir.join("dockerd.log");
        wait_until("dockerd", 30, || {
            host.docker_raw(&["version", "--format", "{{.Server.Version}}"])
                .is_ok_and(|o| o.status.success())
                || {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    assert!(!text.contains("level=fatal"), "dockerd died:\n{text}");
                    false
                }
        });
        host
    }

    fn docker_raw(&self, args: &[&str]) -> std::io::Result<Output> {
        Command::new(DOCKER)
            .env("DOCKER_CONFIG", self.dir.join("client"))
            .arg("--host")
            .arg(format!("unix://{}", self.dir.join("docker.sock").display()))
            .args(args)
            .output()
    }

    /// `docker ARGS`; panics with its output unless it succeeds.
    pub fn docker(&self, args: &[&str]) -> Output {
        check(&format!("docker {args:?}"), self.docker_raw(args))
    }

    /// `docker import` of the busybox rootfs as [`IMAGE`].
    pub fn import(&self, tar: &Path) {
        self.docker(&[
            "import",
            "--change",
            "CMD [\"/bin/sh\"]",
            &tar.to_string_lossy(),
            IMAGE,
        ]);
    }

    /// dockerd's API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// The data root (config.v2.json of each container lives under it).
    pub fn data_root(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// PID of a running container's first process.
    pub fn pid(&self, name: &str) -> u32 {
        stdout(&self.docker(&["inspect", "--format", "{{.State.Pid}}", name]))
            .parse()
            .expect("container pid")
    }

    /// Address of a container on a network (`bridge` for the default one).
    pub fn ip(&self, name: &str, network: &str) -> String {
        let f = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
        stdout(&self.docker(&["inspect", "--format", &f, name]))
    }
}

impl Drop for DockerHost {
    fn drop(&mut self) {
        if self.dockerd.is_some()
            && let Ok(o) = self.docker_raw(&["ps", "-aq"])
        {
            let ids: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids.iter().map(String::as_str));
                let _ = self.docker_raw(&args);
            }
        }
        // dockerd removes its bridge, rules and netns mounts on the way out.
        if let Some(c) = self.dockerd.as_mut() {
            stop(c, 15);
        }
        if let Some(c) = self.containerd.as_mut() {
            stop(c, 10);
        }
        unmount_under(&self.dir);
        // containerd's shims put their sockets under /run/containerd/s
        // whatever --state says; it is left empty: remove it if it is.
        let _ = std::fs::remove_dir("/run/containerd/s");
        let _ = std::fs::remove_dir("/run/containerd");
        if !self.run_docker_before {
            let _ = std::fs::remove_dir("/run/docker/plugins");
            let _ = std::fs::remove_dir(RUN_DOCKER);
        }
    }
}

/// Rootful podman (netavark) in `ns`, all state under `dir`.
pub struct PodmanHost {
    ns: String,
    dir: PathBuf,
    /// /run/netns entries before the first podman command (podman adds
    /// `netns-UUID` files there and removes them with the container).
    netns_before: Vec<String>,
    /// Whether /run/containers existed: netavark keeps its IPAM database
    /// in /run/containers/networks whatever the configuration says
    /// (podman 4.3 has no setting for it); removed at the end only if
    /// this test made it.
    run_containers_before: bool,
    /// Whether /run/runc existed: runc's state root for podman (empty once
    /// the containers are gone); removed at the end if this test made it.
    run_runc_before: bool,
}

fn run_netns_entries() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl PodmanHost {
    pub fn new(ns: &Netns, dir: &Path) -> Self {
        let dir = dir.join("podman");
        for d in ["root", "run", "tmp", "net"] {
            std::fs::create_dir_all(dir.join(d)).expect("mkdir podman state");
        }
        let p = |s: &str| dir.join(s).to_string_lossy().into_owned();
        // The host's nproc/nofile hard limits are below podman's defaults
        // (runc: "error setting rlimit"); no systemd: cgroupfs, file events.
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\ntmp_dir = \"{}\"\n\
                 [network]\nnetwork_backend = \"netavark\"\nnetwork_config_dir = \"{}\"\n",
                p("tmp"),
                p("net")
            ),
        )
        .expect("containers.conf");
        // Commands that copy images (import, build) write containers/image's
        // blob-info cache to /var/lib/containers/cache whatever --root says
        // (podman 4.3): they run in a private mount namespace over an empty
        // /var/lib. Not `run`: a container's netns file must stay visible.
        let script = format!(
            "#!/bin/sh\nexec unshare --mount --propagation private sh -c 'mount -t tmpfs ctdoctor-test /var/lib && exec \"$@\"' sh \
             nsenter --net=/run/netns/{} env CONTAINERS_CONF={} podman --root {} --runroot {} --storage-driver vfs \"$@\"\n",
            ns.name(),
            p("containers.conf"),
            p("root"),
            p("run")
        );
        let wrapper = dir.join("podman-private");
        std::fs::write(&wrapper, script).expect("podman wrapper");
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod wrapper");
        Self {
            ns: ns.name().to_string(),
            dir,
            netns_before: run_netns_entries(),
            run_containers_before: Path::new(RUN_CONTAINERS).exists(),
            run_runc_before: Path::new("/run/runc").exists(),
        }
    }

    fn podman_raw(&self, args: &[&str]) -> std::io::Result<Output> {
        let p = |s: &str| self.dir.join(s);
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg("env")
            .arg(format!(
                "CONTAINERS_CONF={}",
                p("containers.conf").display()
            ))
            .arg("podman")
            .arg("--root")
            .arg(p("root"))
            .arg("--runroot")
            .arg(p("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
    }

    /// The podman command for image copies (`scripts/package image
    /// --tool`): the private-mount wrapper.
    pub fn command_line(&self) -> String {
        self.dir.join("podman-private").display().to_string()
    }

    /// `podman ARGS`; panics with its output unless it succeeds.
    pub fn podman(&self, args: &[&str]) -> Output {
        check(&format!("podman {args:?}"), self.podman_raw(args))
    }

    /// `podman import` of the busybox rootfs as [`IMAGE`].
    pub fn import(&self, tar: &Path) {
        check(
            "podman import",
            Command::new(self.dir.join("podman-private"))
                .args(["import", "--quiet", &tar.to_string_lossy(), IMAGE])
                .output(),
        );
    }

    pub fn pid(&self, name: &str) -> u32 {
        stdout(&self.podman(&["inspect", "--format", "{{.State.Pid}}", name]))
            .parse()
            .expect("container pid")
    }

    pub fn ip(&self, name: &str) -> String {
        stdout(&self.podman(&[
            "inspect",
            "--format",
            "{{.NetworkSettings.IPAddress}}",
            name,
        ]))
    }
}

impl Drop for PodmanHost {
    fn drop(&mut self) {
        // Our containers' namespace files (podman removes them with the
        // container; these are what it might leave): only ours, never
        // another podman's on the same host.
        let ours: Vec<String> = self
            .podman_raw(&["ps", "-aq"])
            .map(|o| stdout(&o))
            .unwrap_or_default()
            .lines()
            .filter_map(|id| {
                let o = self
                    .podman_raw(&["inspect", "--format", "{{.NetworkSettings.SandboxKey}}", id])
                    .ok()?;
                let key = stdout(&o);
                key.strip_prefix("/run/netns/")
                    .filter(|k| k.starts_with("netns-") && !k.contains('/'))
                    .map(str::to_string)
            })
            .collect();
        // -t 0: busybox as PID 1 ignores SIGTERM; no 10 s wait.
        let _ = self.podman_raw(&["rm", "--all", "--force", "--time", "0"]);
        // conmon runs `podman container cleanup` as it exits: let it end
        // before the state goes.
        let prefix = self.dir.to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && conmon_running(&prefix) {
            std::thread::sleep(Duration::from_millis(50));
        }
        unmount_under(&self.dir);
        for e in run_netns_entries() {
            if ours.contains(&e) && !self.netns_before.contains(&e) {
                let p = format!("/run/netns/{e}");
                let _ = Command::new("umount").args(["-l", &p]).status();
                let _ = std::fs::remove_file(&p);
            }
        }
        if !self.run_containers_before {
            let _ = std::fs::remove_dir_all(RUN_CONTAINERS);
        }
        if !self.run_runc_before {
            // Only if empty: a container still known to runc keeps it.
            let _ = std::fs::remove_dir("/run/runc");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const RUN_CONTAINERS: &str = "/run/containers";
/// dockerd makes /run/docker/plugins whatever --exec-root says.
const RUN_DOCKER: &str = "/run/docker";

/// Whether a conmon whose arguments name a path under `prefix` runs.
fn conmon_running(prefix: &str) -> bool {
    let Ok(d) = std::fs::read_dir("/proc") else {
        return false;
    };
    d.flatten().any(|e| {
        std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "conmon")
            && std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(prefix))
    })
}

/// The inode of a process's network namespace.
pub fn netns_inode_of(pid: u32) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .expect("ns/net")
        .ino()
}
