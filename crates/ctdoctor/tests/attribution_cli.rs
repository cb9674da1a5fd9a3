//! `top`'s attribution on a fake tree (no kernel, no root): cthost's owners
//! fixture (crates/cthost/tests/fixtures/owners: Docker `web` with CRI
//! labels owning 172.17.0.2 and fd00::2, podman `pweb` owning 10.88.0.5,
//! a Docker container whose metadata is missing) plus a table in its
//! /proc/net/nf_conntrack. Owned sources print as `name (ip)`, the JSON
//! carries the workload next to the address, `--by container` and `--by
//! pod` fold them, unknown addresses stay addresses, and the missing
//! metadata is one note on stderr.

mod common;
use common::TempDir;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../cthost/tests/fixtures/owners"
);

fn line(src: &str, dst: &str, sport: u16) -> String {
    format!(
        "ipv4     2 udp      17 29 src={src} dst={dst} sport={sport} dport=9 [UNREPLIED] src={dst} dst={src} sport=9 dport={sport} mark=0 zone=0 use=2\n"
    )
}

#[test]
fn top_names_the_containers_behind_addresses() {
    let dir = TempDir::new("attr");
    let root = dir.0.join("root");
    let cp = std::process::Command::new("cp")
        .args(["-a", FIXTURE])
        .arg(&root)
        .status()
        .expect("cp");
    assert!(cp.success());
    let mut table = String::new();
    for p in 0..5 {
        table += &line("172.17.0.2", "172.17.0.1", 40000 + p);
    }
    for p in 0..3 {
        table += &line("10.88.0.5", "10.88.0.1", 41000 + p);
    }
    table += &line("192.0.2.7", "172.17.0.2", 42000);
    std::fs::create_dir_all(root.join("proc/net")).expect("mkdir");
    std::fs::write(root.join("proc/net/nf_conntrack"), table).expect("table");
    let r = root.to_string_lossy().into_owned();

    let out = common::run(&["--root", &r, "top", "--json"]);
    let v = common::json(&out);
    let c = &v["top_container"];
    assert_eq!(c[0]["key"], "web", "{c:#}");
    assert_eq!(c[0]["count"], 5);
    assert_eq!(c[0]["workload"]["image"], "ctdoctor-test/busybox:1");
    assert_eq!(c[1]["key"], "pweb");
    assert_eq!(c[1]["workload"]["runtime"], "podman");
    assert_eq!(c[2]["key"], "192.0.2.7");
    assert!(c[2].get("workload").is_none(), "{c:#}");
    assert_eq!(v["top_pod"][0]["key"], "shop/web-0");
    assert_eq!(v["top_src"][0]["workload"]["name"], "web");
    // The destination side too: 172.17.0.2 is web's.
    let dst = v["top_dst"].as_array().expect("top_dst");
    assert!(
        dst.iter()
            .any(|d| d["key"] == "172.17.0.2" && d["workload"]["name"] == "web"),
        "{dst:#?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let notes: Vec<&str> = stderr.lines().filter(|l| l.contains("metadata")).collect();
    assert_eq!(notes.len(), 1, "{stderr}");

    let out = common::run(&["--root", &r, "top", "--by", "container,src"]);
    let text = common::text(&out);
    assert!(text.contains("TOP CONTAINERS"), "{text}");
    assert!(text.contains("web (172.17.0.2)"), "{text}");
    assert!(text.contains("pweb (10.88.0.5)"), "{text}");
    assert!(text.contains("  192.0.2.7 "), "{text}");

    // A saved dump is not attributed.
    let out = common::run(&[
        "top",
        "--json",
        "--file",
        &root.join("proc/net/nf_conntrack").to_string_lossy(),
    ]);
    let v = common::json(&out);
    assert_eq!(v["top_container"][0]["key"], "172.17.0.2");
    assert!(v["top_src"][0].get("workload").is_none());
}
