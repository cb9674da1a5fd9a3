//! Real Docker and Podman (issue 18): dockerd 20.10 with its own
//! containerd and rootful podman with netavark, confined to a network
//! namespace this test creates (tests/common/containers.rs), run
//! containers on Docker's default bridge with a published port, on a
//! user-defined `--internal` network, and on podman's default network,
//! send traffic between them and the bridges' host-side addresses (never
//! beyond the machine), and check what ctdoctor says run in that
//! namespace: `check` names Docker and Podman as the writers of the rules
//! that need conntrack, `check --all-netns --json` carries each
//! container's name, image and CRI pod labels, and the container whose
//! own table is filled is CRITICAL by name.
//!
//! One test, steps in order: dockerd starts once (the slow part).

use std::process::Command;

use ctlab::Netns;
use serde_json::Value;

mod common;
use common::containers::{self, DockerHost, IMAGE, PodmanHost, netns_inode_of, stdout};
use common::{TempDir, evidence, must_find};

/// `ip netns exec NS ctdoctor ARGS`: ctdoctor as an operator runs it on
/// the node (here the namespace standing for the node).
fn ctdoctor_in(ns: &Netns, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns.name(), common::BIN])
        .args(args)
        .output()
        .expect("run ctdoctor in the namespace")
}

/// Insert `n` entries into the table of the namespace of `pid`.
fn fill_netns_of(pid: u32, n: usize) {
    let entries = ctlab::mix::fill(n, true);
    let report = std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<ctnetlink::BatchReport> {
            ctnetlink::netns::enter(&pid.to_string())?;
            let mut ct = ctnetlink::Conntrack::open()?;
            Ok(ct.create(&entries)?)
        })
        .join()
        .expect("insert thread")
    })
    .expect("insert entries");
    assert_eq!(report.failures(), 0, "{:?}", report.failed);
}

/// The "node": a namespace, a state directory, the busybox image tar and
/// a dockerd confined to the namespace with the image imported. (Drop the
/// dockerd first: it lives in the namespace and the directory.)
fn docker_node(name: &str) -> (Netns, TempDir, std::path::PathBuf, DockerHost) {
    let ns = Netns::create(name).expect("netns");
    let dir = TempDir::new(name);
    let tar = containers::busybox_tar(&dir.0);
    let docker = DockerHost::start(&ns, &dir.0);
    docker.import(&tar);
    (ns, dir, tar, docker)
}

/// `check`'s thresholds (percent) in these tests: low enough that a few
/// hundred entries of the shared max cross them, high enough that a
/// container with a handful stays OK.
const WARN: &str = "0.1";
const CRIT: &str = "0.2";

/// Fill the table of `pid`'s namespace past [`CRIT`] (a share of the
/// global max: this kernel has no per-namespace max), then run `check
/// --all-netns --json` in `ns`; the entries inserted and its output.
fn fill_and_check(ns: &Netns, pid: u32) -> (usize, std::process::Output) {
    let n = common::global_max() * 3 / 1000 + 1;
    fill_netns_of(pid, n);
    let out = ctdoctor_in(
        ns,
        &[
            "check",
            "--all-netns",
            "--json",
            "--warn",
            WARN,
            "--crit",
            CRIT,
        ],
    );
    (n, out)
}

fn row(rows: &[Value], inode: u64) -> &Value {
    rows.iter()
        .find(|r| r["inode"] == inode)
        .unwrap_or_else(|| panic!("no namespace {inode} in {rows:#?}"))
}

#[test]
fn docker_and_podman_containers_are_named_and_judged() {
    ctlab::require_root!();
    let _lock = containers::lock();
    let (ns, dir, tar, docker) = docker_node("ctr");
    // Default bridge, a published port (DNAT), CRI labels.
    docker.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "--label",
        "io.kubernetes.pod.name=web-0",
        "--label",
        "io.kubernetes.pod.namespace=shop",
        "-p",
        "8080:80",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
    ]);
    // A user-defined network with no way out.
    docker.docker(&["network", "create", "--internal", "ctd-internal"]);
    for (name, cmd) in [
        ("internal-a", ["httpd", "-f", "-p", "80"].as_slice()),
        ("internal-b", ["sleep", "600"].as_slice()),
    ] {
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "ctd-internal",
            IMAGE,
        ];
        args.extend(cmd);
        docker.docker(&args);
    }
    let podman = PodmanHost::new(&ns, &dir.0);
    podman.import(&tar);
    podman.podman(&[
        "run", "-d", "--name", "pweb", IMAGE, "httpd", "-f", "-p", "80",
    ]);

    // Traffic, all inside the namespace: the published port on the
    // bridge's host-side address (DNAT in OUTPUT), container to container
    // on the internal network, the namespace to the podman container.
    let bridge_ip = "172.17.0.1";
    // busybox's nc inside the containers and in the namespace alike.
    let get = |host: &str, port: &str| {
        format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 2 {host} {port}")
    };
    let o = ns
        .exec("sh", &["-c", &get(bridge_ip, "8080")])
        .expect("published port");
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("HTTP/1.1 404"),
        "busybox httpd answers 404 on the published port: {o:?}"
    );
    let a_ip = docker.ip("internal-a", "ctd-internal");
    let o = docker.docker(&["exec", "internal-b", "sh", "-c", &get(&a_ip, "80")]);
    assert!(stdout(&o).starts_with("HTTP/1.1 404"), "{o:?}");
    let p_ip = podman.ip("pweb");
    let o = ns
        .exec("sh", &["-c", &get(&p_ip, "80")])
        .expect("podman container");
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("HTTP/1.1 404"));
    // Attribution of a podman container: 500 UDP flows from pweb to its
    // network's gateway (the host side of podman's bridge, .1) rank pweb
    // first by container in the namespace's table, with its image.
    let p_gw = match p_ip.rsplit_once('.') {
        Some((net, _)) => format!("{net}.1:9"),
        None => panic!("podman address {p_ip}"),
    };
    let idle = std::sync::atomic::AtomicBool::new(false);
    assert_eq!(udp_flows_from(podman.pid("pweb"), &p_gw, 500, &idle), 500);
    let out = ctdoctor_in(&ns, &["top", "--by", "container", "--json"]);
    let top = common::json(&out);
    let ranked = &top["top_container"];
    assert_eq!(ranked[0]["key"], "pweb", "{ranked:#}");
    assert_eq!(ranked[0]["workload"]["runtime"], "podman");
    assert_eq!(ranked[0]["workload"]["image"], format!("localhost/{IMAGE}"));
    assert!(
        ranked[0]["count"].as_u64().is_some_and(|c| c >= 450),
        "{ranked:#}"
    );
    // The DNAT of the published port is in the namespace's table.
    let list = ns.exec("conntrack", &["-L", "-p", "tcp", "--dport", "8080"]);
    let list = String::from_utf8_lossy(&list.expect("conntrack -L").stdout).into_owned();
    let web_ip = docker.ip("web", "bridge");
    assert!(
        list.contains(&format!("src={web_ip} dst={bridge_ip} sport=80")),
        "no DNAT to {web_ip}:80 in:\n{list}"
    );

    // Fill internal-b's own table past --crit: a share of the global max
    // (the kernel here has no per-namespace max), thresholds low enough
    // that a few thousand entries cross them, high enough that the other
    // containers (a handful of entries each) stay OK.
    let (warn, crit) = (WARN, CRIT);
    let b_pid = docker.pid("internal-b");
    let (n, out) = fill_and_check(&ns, b_pid);
    let v = common::json(&out);
    assert_eq!(out.status.code(), Some(2), "CRITICAL: {v:#}");
    // Enablers from their real rules, in the namespace they act in.
    let rules = must_find(&v, "who.rules");
    let title = rules["title"].as_str().expect("title");
    assert!(
        title.contains("written by")
            && title.contains("Docker")
            && title.contains("Podman (netavark)"),
        "{title}"
    );
    let svc = must_find(&v, "who.services");
    assert!(
        svc["title"].as_str().expect("title").contains("Docker"),
        "{svc:#}"
    );

    let rows = v["namespaces"].as_array().expect("namespaces");
    let web = row(rows, netns_inode_of(docker.pid("web")));
    assert_eq!(web["owner"], "shop/web-0", "{web:#}");
    assert_eq!(web["container"]["runtime"], "docker");
    assert_eq!(web["container"]["name"], "web");
    assert_eq!(web["container"]["image"], IMAGE);
    assert_eq!(web["container"]["pod"], "web-0");
    assert_eq!(web["container"]["pod_namespace"], "shop");
    let a = row(rows, netns_inode_of(docker.pid("internal-a")));
    assert_eq!(a["owner"], "internal-a");
    assert_eq!(a["container"]["pod"], Value::Null);
    let p = row(rows, netns_inode_of(podman.pid("pweb")));
    assert_eq!(p["owner"], "pweb", "{p:#}");
    assert_eq!(p["container"]["runtime"], "podman");
    assert_eq!(p["container"]["image"], format!("localhost/{IMAGE}"));
    let b_inode = netns_inode_of(b_pid);
    let b = row(rows, b_inode);
    assert_eq!(b["owner"], "internal-b");
    assert!(b["count"].as_u64().is_some_and(|c| c >= n as u64), "{b:#}");

    // CRITICAL by name: the finding of internal-b's namespace.
    let f = must_find(&v, &format!("netns.{b_inode}"));
    assert_eq!(f["severity"], "critical", "{f:#}");
    let t = f["title"].as_str().expect("title");
    assert!(
        t.contains(&format!("owner internal-b [docker {IMAGE}]")),
        "{t}"
    );
    // The other containers stay below --warn.
    for (name, inode) in [
        ("web", netns_inode_of(docker.pid("web"))),
        ("pweb", netns_inode_of(podman.pid("pweb"))),
    ] {
        assert!(
            common::finding(&v, &format!("netns.{inode}")).is_none(),
            "{name} judged full: {v:#}"
        );
    }
    // No metadata was unreadable: nothing said about it.
    let all = must_find(&v, "netns.all");
    assert!(
        !evidence(all)
            .iter()
            .any(|e| e.contains("metadata unreadable")),
        "{all:#}"
    );
    // The exporter's per-netns series carry the owner and image too.
    let mut export = Command::new("ip")
        .args(["netns", "exec", ns.name(), common::BIN])
        .args(["export", "--all-netns", "--listen", "127.0.0.1:19466"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ctdoctor export");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let metrics = loop {
        let o = ns.exec(
            "/bin/busybox",
            &["wget", "-qO-", "http://127.0.0.1:19466/metrics"],
        );
        // The per-netns source is read in the background: until its first
        // round ends, the page has no netns series.
        let page = o.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        if let Ok(p) = &page
            && p.contains(&format!("netns=\"{b_inode}\""))
        {
            break page.unwrap_or_default();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no series for {b_inode} in 20 s: {page:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = export.kill();
    let _ = export.wait();
    let series = metrics
        .lines()
        .find(|l| {
            l.starts_with("ctdoctor_netns_entries{") && l.contains(&format!("netns=\"{b_inode}\""))
        })
        .unwrap_or_else(|| panic!("no series for {b_inode}:\n{metrics}"));
    assert!(
        series.contains("owner=\"internal-b\"") && series.contains(&format!("image=\"{IMAGE}\"")),
        "{series}"
    );
    let count: f64 = series
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("value");
    assert!(count >= n as f64, "{series}");

    // The text report, as the docs show it (docs/src/containers.md).
    let text = ctdoctor_in(
        &ns,
        &[
            "check",
            "--all-netns",
            "--color",
            "never",
            "--warn",
            warn,
            "--crit",
            crit,
        ],
    );
    eprintln!("{}", common::text(&text));
    drop(podman);
    drop(docker);
}

/// The DaemonSet's exporter container, parsed from the manifest.
fn daemonset_container() -> yaml_rust2::Yaml {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/kubernetes/daemonset.yaml"
    );
    let text = std::fs::read_to_string(path).expect("daemonset.yaml");
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("YAML");
    let ds = docs
        .into_iter()
        .find(|d| d["kind"].as_str() == Some("DaemonSet"))
        .expect("a DaemonSet");
    assert_eq!(
        ds["spec"]["template"]["spec"]["hostNetwork"].as_bool(),
        Some(true)
    );
    ds["spec"]["template"]["spec"]["containers"][0].clone()
}

fn strings(y: &yaml_rust2::Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `podman run` arguments that run the image as the DaemonSet's container
/// spec says: host network (here the test's namespace), the
/// capabilities it drops and adds, its user, no privilege escalation, a
/// read-only root, its volume mounts (read-only host paths), its command
/// and args with `$(POD_IP)` set to `pod_ip`.
fn run_args_from_spec(c: &yaml_rust2::Yaml, pod_ip: &str) -> Vec<String> {
    let sc = &c["securityContext"];
    let mut a: Vec<String> = vec!["run".into(), "-d".into(), "--network".into(), "host".into()];
    for cap in strings(&sc["capabilities"]["drop"]) {
        a.extend(["--cap-drop".into(), cap]);
    }
    for cap in strings(&sc["capabilities"]["add"]) {
        a.extend(["--cap-add".into(), cap]);
    }
    if let Some(uid) = sc["runAsUser"].as_i64() {
        a.extend(["--user".into(), uid.to_string()]);
    }
    if sc["allowPrivilegeEscalation"].as_bool() == Some(false) {
        a.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    if sc["readOnlyRootFilesystem"].as_bool() == Some(true) {
        a.push("--read-only".into());
    }
    assert_eq!(sc["privileged"].as_bool(), Some(false));
    for m in c["volumeMounts"].as_vec().map(Vec::as_slice).unwrap_or(&[]) {
        let p = m["mountPath"].as_str().expect("mountPath");
        a.extend(["--volume".into(), format!("{p}:{p}:ro")]);
    }
    let command = strings(&c["command"]);
    assert_eq!(command.len(), 1, "one entrypoint: {command:?}");
    a.extend(["--entrypoint".into(), command[0].clone()]);
    a.push(c["image"].as_str().expect("image").to_string());
    a.extend(
        strings(&c["args"])
            .into_iter()
            .map(|s| s.replace("$(POD_IP)", pod_ip)),
    );
    a
}

/// Issue 18, the image: `scripts/package image` builds it with podman
/// (FROM scratch: no pull), it runs as the DaemonSet runs it, and its
/// /metrics agree with `conntrack -C` in the namespace it shares. podman,
/// not docker, runs it: a dockerd confined by `ip netns exec` cannot start
/// a `--network host` container (runc's init dies: "can't get final
/// child's PID from pipe"); podman under `nsenter --net` can. (The build
/// itself works with either; `scripts/package image` picks docker first.)
#[test]
fn the_image_runs_as_the_daemonset_and_serves_the_namespaces_metrics() {
    ctlab::require_root!();
    let _lock = containers::lock();
    let ns = Netns::create("img").expect("netns");
    // The "node" address the pod IP stands for.
    let pod_ip = "10.254.0.1";
    // (on loopback: no dummy or veth module needed for one address)
    ns.exec("ip", &["addr", "add", &format!("{pod_ip}/32"), "dev", "lo"])
        .expect("address");
    let dir = TempDir::new("img");
    let podman = PodmanHost::new(&ns, &dir.0);

    let spec = daemonset_container();
    let image = spec["image"].as_str().expect("image").to_string();
    assert_eq!(
        image,
        format!("ghcr.io/ctdoctor/ctdoctor:{}", env!("CARGO_PKG_VERSION"))
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/package");
    let out = Command::new(script)
        .args([
            "image",
            "--binary",
            common::BIN,
            "--tool",
            &podman.command_line(),
        ])
        .output()
        .expect("scripts/package image");
    assert!(out.status.success(), "{}", common::text(&out));
    let said = stdout(&out);
    let (tag, size) = said.rsplit_once(' ').expect("TAG SIZE");
    assert_eq!(tag, image, "the DaemonSet names the image built");
    let size: u64 = size.parse().expect("size");
    eprintln!("image {tag}: {size} bytes");
    assert!(
        size < 32 << 20,
        "{size} bytes: more than the binary and libc"
    );
    let cfg = stdout(&podman.podman(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Entrypoint}} {{.Config.User}}",
        &image,
    ]));
    assert_eq!(cfg, r#"["/usr/bin/ctdoctor","export"] 0:0"#);

    // The node's table: a known number of entries in the namespace.
    ns.insert(&ctlab::fill(700, true)).expect("insert");
    let args = run_args_from_spec(&spec, pod_ip);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = stdout(&podman.podman(&args));
    let port = spec["ports"][0]["containerPort"].as_i64().expect("port");
    let url = format!("http://{pod_ip}:{port}/metrics");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let body = loop {
        let o = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "/bin/busybox",
                "wget",
                "-qO-",
                &url,
            ])
            .output()
            .expect("wget");
        if o.status.success() {
            break String::from_utf8_lossy(&o.stdout).into_owned();
        }
        let logs = podman.podman(&["logs", &id]);
        assert!(
            std::time::Instant::now() < deadline,
            "no /metrics at {url}: {}\n{}",
            common::text(&o),
            common::text(&logs)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let after: u64 = stdout(&ns.exec("conntrack", &["-C"]).expect("conntrack -C"))
        .parse()
        .expect("count");
    let entries: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("ctdoctor_entries "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no ctdoctor_entries in:\n{body}"));
    // The scrape's own HTTP connection may be tracked too.
    assert!(
        entries >= 700 && entries.abs_diff(after) <= 2,
        "exported {entries}, conntrack -C {after}\n{body}"
    );
    assert!(body.contains("ctdoctor_up"), "{body}");
    drop(podman);
}

/// Send `flows` UDP datagrams, each from a new socket (a new source port:
/// a new conntrack entry), from the network namespace of `pid` to `to`,
/// until `stop` is set when `flows` is 0. Returns how many were sent.
fn udp_flows_from(pid: u32, to: &str, flows: usize, stop: &std::sync::atomic::AtomicBool) -> usize {
    std::thread::scope(|s| {
        s.spawn(|| {
            ctnetlink::netns::enter(&pid.to_string()).expect("enter the container's netns");
            let to: std::net::SocketAddr = to.parse().expect("address");
            let mut sent = 0;
            while (flows > 0 && sent < flows)
                || (flows == 0 && !stop.load(std::sync::atomic::Ordering::Relaxed))
            {
                let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
                s.send_to(b"x", to).expect("send");
                sent += 1;
                if flows == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
            sent
        })
        .join()
        .expect("sender thread")
    })
}

/// The workload rows' keys of a ranking, largest first.
fn keys(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["key"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Issue 18's "Done when": one container fills the table (many UDP flows
/// from inside it to its bridge's host-side address, on an --internal
/// network) and `top --by container`, `watch --json-lines` and the
/// exporter's per-workload series name it first; with its own table
/// filled, `check --all-netns` names it CRITICAL.
#[test]
fn the_container_filling_the_table_is_named_everywhere() {
    ctlab::require_root!();
    let _lock = containers::lock();
    let (ns, _dir, _tar, docker) = docker_node("att");
    docker.docker(&["network", "create", "--internal", "ctd-att"]);
    for name in ["filler", "quiet"] {
        docker.docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "ctd-att",
            IMAGE,
            "sleep",
            "600",
        ]);
    }
    let gw = stdout(&docker.docker(&[
        "network",
        "inspect",
        "--format",
        "{{(index .IPAM.Config 0).Gateway}}",
        "ctd-att",
    ]));
    let to = format!("{gw}:9");
    let filler = docker.pid("filler");
    let filler_ip = docker.ip("filler", "ctd-att");
    let idle = std::sync::atomic::AtomicBool::new(false);
    assert_eq!(udp_flows_from(filler, &to, 2000, &idle), 2000);
    assert_eq!(udp_flows_from(docker.pid("quiet"), &to, 20, &idle), 20);

    // top --by container: the filler's row first, with its image.
    let out = ctdoctor_in(&ns, &["top", "--by", "container", "--json"]);
    let v = common::json(&out);
    let rows = &v["top_container"];
    assert_eq!(rows[0]["key"], "filler", "{rows:#}");
    assert_eq!(rows[0]["workload"]["runtime"], "docker");
    assert_eq!(rows[0]["workload"]["image"], IMAGE);
    let first = rows[0]["count"].as_u64().expect("count");
    assert!(first >= 1500, "{rows:#}");
    assert!(keys(rows).contains(&"quiet".to_string()), "{rows:#}");
    // The address next to its owner in the sources ranking.
    assert_eq!(v["top_src"][0]["key"], filler_ip.as_str(), "{v:#}");
    assert_eq!(v["top_src"][0]["workload"]["name"], "filler");
    let text = ctdoctor_in(&ns, &["top", "--by", "container,src", "-n", "5"]);
    let text = common::text(&text);
    assert!(text.contains(&format!("filler ({filler_ip})")), "{text}");
    eprintln!("top --by container,src -n 5:\n{text}");

    // watch --json-lines and the exporter while the filler keeps sending.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut export = Command::new("ip")
        .args(["netns", "exec", ns.name(), common::BIN])
        .args([
            "export",
            "--listen",
            "127.0.0.1:19467",
            "--breakdown-interval",
            "1s",
            "--top",
            "5",
            "--forecast-window",
            "5s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ctdoctor export");
    let (watch, metrics) = std::thread::scope(|s| {
        let sender = s.spawn(|| udp_flows_from(filler, &to, 0, &stop));
        let watch = ctdoctor_in(
            &ns,
            &["watch", "--json-lines", "--interval", "1s", "--count", "3"],
        );
        // Two breakdown dumps: entries and new flows per workload.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let metrics = loop {
            let o = ns
                .exec(
                    "/bin/busybox",
                    &["wget", "-qO-", "http://127.0.0.1:19467/metrics"],
                )
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            // The top-N series name the owner too: by entries (the dump)
            // and by new flows (the first complete events window).
            let top_source = format!(
                "ctdoctor_top_source_entries{{rank=\"1\",address=\"{filler_ip}\",workload=\"filler\"}}"
            );
            let creator = format!(
                "ctdoctor_top_creator_new_flows_per_second{{source=\"{filler_ip}\",workload=\"filler\"}}"
            );
            if o.contains("ctdoctor_workload_new_flows_per_second{workload=\"filler\"")
                && o.contains(&top_source)
                && o.contains(&creator)
            {
                break o;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no workload, top source and top creator series naming the filler in 20 s:\n{o}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(sender.join().expect("sender") > 0);
        (watch, metrics)
    });
    let _ = export.kill();
    let _ = export.wait();
    assert!(watch.status.success(), "{}", common::text(&watch));
    let lines: Vec<Value> = String::from_utf8_lossy(&watch.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 3);
    // Every complete interval with new flows ranks the filler first.
    let ranked: Vec<&Value> = lines
        .iter()
        .filter(|l| l["partial"].is_null() && !keys(&l["top_container"]).is_empty())
        .collect();
    assert!(!ranked.is_empty(), "{lines:#?}");
    for l in ranked {
        assert_eq!(l["top_container"][0]["key"], "filler", "{l:#}");
        assert_eq!(l["top_container"][0]["workload"]["image"], IMAGE);
        assert_eq!(l["top_src"][0]["workload"]["name"], "filler", "{l:#}");
    }
    // The exporter: the filler's series is the largest workload's.
    let series = |name: &str| -> Vec<(String, f64)> {
        metrics
            .lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix("{workload=\""))
            .filter_map(|rest| {
                let (w, tail) = rest.split_once('"')?;
                Some((w.to_string(), tail.rsplit(' ').next()?.parse().ok()?))
            })
            .collect()
    };
    for name in [
        "ctdoctor_workload_entries",
        "ctdoctor_workload_new_flows_per_second",
    ] {
        let s = series(name);
        let top = s
            .iter()
            .filter(|(w, _)| w != "other")
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or_else(|| panic!("no {name}:\n{metrics}"));
        assert_eq!(top.0, "filler", "{name}: {s:?}");
        assert!(top.1 > 0.0, "{name}: {s:?}");
        assert!(s.iter().any(|(w, _)| w == "other"), "{name}: {s:?}");
    }
    assert!(
        metrics.contains("ctdoctor_workload_entries{workload=\"filler\",runtime=\"docker\",pod=\"\",namespace=\"\"}"),
        "{metrics}"
    );

    // check --all-netns: the filler's own table past --crit (a share of
    // the global max: no per-namespace max on this kernel, as above).
    let (_, out) = fill_and_check(&ns, filler);
    let v = common::json(&out);
    assert_eq!(out.status.code(), Some(2), "CRITICAL: {v:#}");
    let inode = netns_inode_of(filler);
    let f = must_find(&v, &format!("netns.{inode}"));
    assert_eq!(f["severity"], "critical", "{f:#}");
    let t = f["title"].as_str().expect("title");
    assert!(t.contains(&format!("owner filler [docker {IMAGE}]")), "{t}");
    drop(docker);
}
