//! `cthost::owners` on a fake root (tests/fixtures/owners, see the README
//! there for where each cgroup layout comes from), and its parsers on
//! arbitrary input: never a panic.

use std::collections::BTreeMap;

use cthost::namespaces;
use cthost::owners::{self, parse_cgroup, parse_docker_config, parse_pod_log_dir};
use cthost::source::Root;
use proptest::prelude::*;

fn fixture() -> Root {
    Root::under(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/owners"
    ))
}

/// Owner of each fixture PID (each PID is its own namespace there).
fn owners_by_pid() -> BTreeMap<u32, String> {
    let root = fixture();
    let all = namespaces::list(&root);
    let init = namespaces::init_inode(&root);
    let owners = owners::owners(&root, &all, init);
    let mut out = BTreeMap::new();
    for ns in &all {
        // `pid N (comm)` or `init` (PID 1).
        let pid = if ns.name == "init" {
            1
        } else {
            ns.name
                .strip_prefix("pid ")
                .and_then(|r| r.split(' ').next())
                .and_then(|p| p.parse().ok())
                .expect("fixture namespaces are named by pid")
        };
        out.insert(pid, owners[&ns.inode].name.clone());
    }
    out
}

#[test]
fn every_runtime_names_its_owner() {
    let got = owners_by_pid();
    let want: BTreeMap<u32, String> = [
        (1, "host"),
        (210, "kube-system/coredns-5d78c9869d-x2x7k"),
        (220, "default/web-0"),
        (230, "pod f0e1d2c3-b4a5-4968-8776-655443322110"),
        (240, "nginx-proxy"),
        (250, "5d41402abc4b"),
        (260, "aa11bb22cc33"),
        (270, "0123456789ab"),
        (280, "fedcba987654"),
        (290, "sleep"),
        (300, "dnsmasq"),
        // Real layouts (issue 18): Docker 20.10 cgroupfs with labels, its
        // dockerd (data root from its arguments), podman 4.3 cgroupfs and
        // its conmon.
        (310, "shop/web-0"),
        (311, "dockerd"),
        (320, "pweb"),
        (321, "conmon"),
    ]
    .into_iter()
    .map(|(p, o)| (p, o.to_string()))
    .collect();
    assert_eq!(got, want);
}

/// The real runtimes' metadata (captured from dockerd 20.10 and podman
/// 4.3 on this project's test host, paths rewritten to /srv/ctd): name,
/// image and CRI labels from Docker's config.v2.json under the data root
/// dockerd was started with; name from conmon's `-n`, image from
/// containers/storage's containers.json next to conmon's bundle.
#[test]
fn real_docker_and_podman_metadata() {
    let root = fixture();
    let all = namespaces::list(&root);
    let owners = owners::owners(&root, &all, namespaces::init_inode(&root));
    let of = |pid: &str| {
        let ns = all
            .iter()
            .find(|n| n.name.starts_with(&format!("pid {pid} ")))
            .expect("fixture pid");
        owners[&ns.inode].container.clone().expect("a container")
    };
    let d = of("310");
    assert_eq!(d.runtime, "docker");
    assert_eq!(d.name.as_deref(), Some("web"));
    assert_eq!(d.image.as_deref(), Some("ctdoctor-test/busybox:1"));
    assert_eq!(d.pod.as_deref(), Some("web-0"));
    assert_eq!(d.pod_namespace.as_deref(), Some("shop"));
    assert_eq!(d.metadata_error, None);
    let p = of("320");
    assert_eq!(p.runtime, "podman");
    assert_eq!(p.name.as_deref(), Some("pweb"));
    assert_eq!(
        p.image.as_deref(),
        Some("localhost/ctdoctor-test/busybox:1")
    );
    assert_eq!(p.pod, None);
    assert_eq!(p.metadata_error, None);
    // A Docker container whose config.v2.json is in no known data root:
    // its id, and why (said once by the report, not per namespace).
    let gone = of("250");
    assert_eq!(gone.name, None);
    assert!(
        gone.metadata_error
            .as_deref()
            .is_some_and(|e| e.contains("/var/lib/docker") && e.contains("/srv/ctd/data")),
        "{gone:?}"
    );
}

#[test]
fn a_missing_tree_gives_empty_owners_not_an_error() {
    let root = Root::under("/nonexistent/ctdoctor-owners");
    let ns = vec![cthost::facts::Namespace {
        inode: 42,
        name: "x".into(),
        path: "/run/netns/x".into(),
    }];
    let got = owners::owners(&root, &ns, None);
    assert_eq!(got.get(&42).map(|o| o.name.as_str()), Some(""));
}

proptest! {
    #[test]
    fn cgroup_text_never_panics(s in "\\PC*") {
        let _ = parse_cgroup(&s);
    }

    #[test]
    fn cgroup_like_lines_never_panic(
        lines in proptest::collection::vec(
            "[0-9]{0,2}:[a-z=,]{0,12}:(/(kubepods|pod|docker|crio-|cri-containerd-|[0-9a-f_-]{0,70}|\\.scope|\\.slice){0,3}){0,6}",
            0..6,
        )
    ) {
        let _ = parse_cgroup(&lines.join("\n"));
    }

    #[test]
    fn pod_dirs_and_docker_json_never_panic(s in "\\PC*") {
        let _ = parse_pod_log_dir(&s);
        let _ = parse_docker_config(&s);
        let _ = parse_docker_config(&format!("{{\"Name\": {s}}}"));
    }
}

/// The address book over the fixture tree: each container's addresses
/// (fib_trie LOCAL leaves, global if_inet6 lines) map to its workload;
/// loopback, link-local and the host's addresses map to nothing; the
/// Docker container whose metadata is missing (250) is said once.
#[test]
fn address_book_of_the_fixture_tree() {
    use std::net::IpAddr;
    let (book, note) = cthost::addresses::book(&fixture());
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    let web = book.get(ip("172.17.0.2")).expect("web's address");
    assert_eq!(web.name, "web");
    assert_eq!(web.runtime, "docker");
    assert_eq!(web.image.as_deref(), Some("ctdoctor-test/busybox:1"));
    assert_eq!(web.pod_key(), "shop/web-0");
    assert_eq!(book.get(ip("fd00::2")), Some(web));
    assert_eq!(book.label(ip("10.88.0.5")), "pweb (10.88.0.5)");
    for other in ["127.0.0.1", "::1", "fe80::fc00:ff:fe00:1", "172.17.0.1"] {
        assert_eq!(book.get(ip(other)), None, "{other}");
    }
    assert_eq!(book.len(), 3);
    let note = note.expect("the missing config.v2.json is said");
    assert_eq!(note.lines().count(), 1, "{note}");
    assert!(
        note.contains("5d41402abc4b") || note.contains("config.v2.json"),
        "{note}"
    );
}

/// What a fake tree (`--root DIR`) can hold where /proc has a plain file:
/// a FIFO (whose open waited forever for a writer: `top --root` hung) and
/// a link to /dev/zero (read to the end: 1 GiB and more of memory), at a
/// process's comm and cmdline and at a container's config.v2.json; and a
/// pod label and a process name carrying terminal escapes. Each is read
/// as unreadable or escaped, and the rest of the tree is still named.
#[test]
fn fifos_endless_files_and_escapes_in_a_fake_tree() {
    use std::path::{Path, PathBuf};
    use std::time::Duration;
    struct Tree(PathBuf);
    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = std::env::temp_dir().join(format!("ctd-owners-abuse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let tree = Tree(dir.clone());
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/owners"
        ))
        .arg(&dir)
        .status()
        .expect("cp");
    assert!(cp.success());
    let fifo = |p: &str| {
        let p = dir.join(p);
        let _ = std::fs::remove_file(&p);
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        p
    };
    let zero = |p: &str| {
        let p = dir.join(p);
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink("/dev/zero", &p).expect("symlink");
    };
    let fifos = [
        fifo("proc/300/comm"),
        fifo(
            "var/lib/docker/containers/fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210/config.v2.json",
        ),
    ];
    zero("proc/250/comm");
    // A second dockerd whose arguments never end.
    std::fs::create_dir_all(dir.join("proc/400/ns")).expect("mkdir");
    std::fs::write(dir.join("proc/400/comm"), "dockerd\n").expect("comm");
    std::fs::write(dir.join("proc/400/ns/net"), "").expect("ns");
    zero("proc/400/cmdline");
    std::fs::write(dir.join("proc/290/comm"), "sl\u{1b}]0;x\u{7}eep\n").expect("comm");
    let web = dir.join(
        "srv/ctd/data/containers/21d3fd565d25a70e2d1236929544b26187f9a8e50ad44fa30fd786749926bcdc/config.v2.json",
    );
    let cfg = std::fs::read_to_string(&web).expect("web config");
    std::fs::write(&web, cfg.replace("\"web-0\"", "\"web-0\\u001b[2J\"")).expect("web config");

    let (tx, rx) = std::sync::mpsc::channel();
    let root = Root::under(&dir);
    std::thread::spawn(move || {
        let all = namespaces::list(&root);
        let init = namespaces::init_inode(&root);
        let owners = owners::owners(&root, &all, init);
        let (book, _) = cthost::addresses::book(&root);
        let _ = cthost::services::detect(&root);
        let _ = tx.send((all, owners, book));
    });
    // A reader blocked on a FIFO is released by a writer: on failure the
    // test says so instead of hanging the suite.
    let Ok((all, owners, book)) = rx.recv_timeout(Duration::from_secs(120)) else {
        for f in &fifos {
            let _ = std::fs::OpenOptions::new().read(true).write(true).open(f);
        }
        panic!("reading the tree blocked on a FIFO");
    };
    let name_of = |pid: u32| {
        let ns = all
            .iter()
            .find(|n| n.name.starts_with(&format!("pid {pid} ")))
            .unwrap_or_else(|| panic!("pid {pid}: {all:?}"));
        (ns.name.clone(), owners[&ns.inode].name.clone())
    };
    assert_eq!(name_of(300), ("pid 300 ()".to_string(), String::new()));
    assert_eq!(name_of(250).0, "pid 250 ()");
    assert_eq!(name_of(290).0, "pid 290 (sl\\u{1b}]0;x\\u{7}eep)");
    assert_eq!(name_of(290).1, "sl\\u{1b}]0;x\\u{7}eep");
    // The FIFO config: the id, and why.
    let node = &owners[&all
        .iter()
        .find(|n| n.name.starts_with("pid 280 "))
        .expect("280")
        .inode];
    assert_eq!(node.name, "fedcba987654");
    let err = node
        .container
        .as_ref()
        .and_then(|c| c.metadata_error.clone());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("not a regular file")),
        "{err:?}"
    );
    // The rest still named, the escape shown, not sent.
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
    let w = book.get(ip("172.17.0.2")).expect("web's address");
    assert_eq!(w.name, "web");
    assert_eq!(w.pod_key(), "shop/web-0\\u{1b}[2J");
    assert_eq!(book.label(ip("10.88.0.5")), "pweb (10.88.0.5)");
    assert!(Path::new(&tree.0).exists());
}
