//! eBPF conntrack maps on the real kernel: the test mounts a bpffs of its
//! own under a temporary directory, creates BPF hash maps with Cilium's and
//! Calico's pin names and key sizes (aya), fills one past --crit and one to
//! 10%, and runs `check --json`, `top` and `export` with `--bpffs DIR`:
//! the full map is CRITICAL by name with its numbers, the other OK, an
//! unknown map is not reported, the metrics carry both; as an unprivileged
//! user the maps are "not read", said once; a second scrape is served from
//! the exporter's cache (a map unpinned meanwhile still shows). The guard unpins, unmounts and
//! removes the directory, also on a panic. Nothing under /sys/fs/bpf is
//! touched (other tests' `check` must not see these maps).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aya::maps::{HashMap, MapData};
use common::{BIN, TempDir};
use ctlab::Netns;

const PORT: u16 = 19478;
/// Cilium's `struct ipv4_ct_tuple` (14 bytes) keys cilium_ct4_global;
/// Calico's `struct calico_ct_key` (16 bytes) keys cali_v4_ct3.
type CiliumKey = [u8; 14];
type CalicoKey = [u8; 16];
type Value = [u8; 56];

/// A bpffs mounted at `dir/bpf`: pins removed, unmounted, directory gone
/// on drop.
struct Bpffs {
    dir: TempDir,
    pins: Vec<PathBuf>,
}

impl Bpffs {
    fn mount() -> Self {
        let dir = TempDir::new("bpffs");
        let fs = dir.p("bpf");
        std::fs::create_dir(&fs).expect("mkdir bpf");
        let st = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&fs)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -t bpf failed");
        std::fs::create_dir_all(fs.join("tc/globals")).expect("mkdir tc/globals");
        Self { dir, pins: vec![] }
    }

    fn root(&self) -> PathBuf {
        self.dir.p("bpf")
    }

    /// A hash map of `max` entries pinned at tc/globals/`name`, holding
    /// `fill` distinct keys.
    fn pin<K: aya::Pod + Default + AsMut<[u8]>>(&mut self, name: &str, max: u32, fill: u32) {
        let mut map = HashMap::<MapData, K, Value>::create(max, 0).expect("create map");
        for i in 0..fill {
            let mut key = K::default();
            key.as_mut()[..4].copy_from_slice(&i.to_be_bytes());
            map.insert(key, [7u8; 56], 0).expect("insert");
        }
        let path = self.root().join("tc/globals").join(name);
        map.pin(&path).expect("pin");
        self.pins.push(path);
    }

    fn unpin(&self, name: &str) {
        std::fs::remove_file(self.root().join("tc/globals").join(name)).expect("unpin");
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        for p in &self.pins {
            let _ = std::fs::remove_file(p);
        }
        let _ = Command::new("umount").arg(self.root()).status();
    }
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run ctdoctor")
}

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn metrics(ns: &Netns) -> std::io::Result<String> {
    ns.run(|| common::scrape(("127.0.0.1", PORT), "text/plain"))
        .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// Start the exporter on `bpffs` (dropped: killed).
fn exporter(ns: &Netns, bpffs: &Path) -> Exporter {
    let listen = format!("127.0.0.1:{PORT}");
    let child = Command::new(BIN)
        .args(["--netns", ns.name(), "--bpffs"])
        .arg(bpffs)
        .args(["export", "--listen", &listen, "--no-kernel-log"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ctdoctor export");
    Exporter(child)
}

/// The first /metrics that carries the maps' counts (the background
/// thread counts them right after start).
fn scrape(ns: &Netns) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match metrics(ns) {
            Ok(body) if body.contains("ctdoctor_bpf_ct_age_seconds") => return body,
            Ok(body) if Instant::now() > deadline => panic!("no map counts within 20 s:\n{body}"),
            Err(e) if Instant::now() > deadline => panic!("no /metrics within 20 s: {e}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn value(body: &str, start: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {start} in\n{body}"))
}

#[test]
fn cilium_and_calico_maps_are_reported_beside_nf_conntrack() {
    ctlab::require_root!("mounting a bpffs and creating BPF maps");
    let mut fs = Bpffs::mount();
    fs.pin::<CiliumKey>("cilium_ct4_global", 1024, 950);
    fs.pin::<CalicoKey>("cali_v4_ct3", 4096, 410);
    fs.pin::<CiliumKey>("cilium_lb4_services_v2", 64, 3);
    let root = fs.root();
    let dir = root.to_str().expect("utf-8 path");

    let out = run(&["--bpffs", dir, "check", "--json"]);
    let v = common::json(&out);
    let full = common::must_find(&v, "bpf.cilium_ct4_global");
    assert_eq!(full["severity"], "critical", "{full:#}");
    let ev = common::evidence(full).join("\n");
    assert!(ev.contains("950 of max_entries 1024"), "{ev}");
    assert!(
        full["fix"][0]
            .as_str()
            .is_some_and(|f| f.contains("--bpf-ct-global-tcp-max")),
        "{full:#}"
    );
    let calico = common::must_find(&v, "bpf.cali_v4_ct3");
    assert_eq!(calico["severity"], "ok", "{calico:#}");
    assert!(
        common::evidence(calico)
            .join("\n")
            .contains("410 of max_entries 4096")
    );
    assert!(common::finding(&v, "bpf.cilium_lb4_services_v2").is_none());
    assert_eq!(out.status.code(), Some(2), "a full CT map is CRITICAL");

    let out = run(&["--bpffs", dir, "top", "-n", "1", "--by", "l4"]);
    let text = common::text(&out);
    assert!(
        text.contains("Cilium CT map cilium_ct4_global: 950 / 1,024 entries"),
        "{text}"
    );
    assert!(
        text.contains("Calico CT map cali_v4_ct3: 410 / 4,096 entries"),
        "{text}"
    );

    // Not root: the maps cannot be opened; said once, no finding.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "--bpffs",
            dir,
            "check",
            "--json",
        ])
        .output()
        .expect("run setpriv");
    let v = common::json(&out);
    assert!(
        common::finding(&v, "bpf.cilium_ct4_global").is_none(),
        "{v:#}"
    );
    let said = v.to_string().matches("eBPF conntrack maps in").count();
    assert_eq!(said, 1, "{v:#}");

    let ns = Netns::create("bpf").expect("netns");
    let _exporter = exporter(&ns, &root);
    let body = scrape(&ns);
    for line in [
        "ctdoctor_bpf_ct_entries{map=\"cilium_ct4_global\",datapath=\"cilium\"} 950",
        "ctdoctor_bpf_ct_max_entries{map=\"cilium_ct4_global\",datapath=\"cilium\"} 1024",
        "ctdoctor_bpf_ct_entries{map=\"cali_v4_ct3\",datapath=\"calico\"} 410",
        "ctdoctor_bpf_ct_max_entries{map=\"cali_v4_ct3\",datapath=\"calico\"} 4096",
    ] {
        assert!(
            body.lines().any(|l| l.starts_with(line)),
            "{line} missing:\n{body}"
        );
    }
    assert!(!body.contains("cilium_lb4_services_v2"));

    // A second scrape right after is served from the cache: the map
    // unpinned meanwhile is still there, from the same count (same
    // duration), one that is not older.
    fs.unpin("cali_v4_ct3");
    let again = scrape(&ns);
    assert!(
        again.lines().any(|l| l
            .starts_with("ctdoctor_bpf_ct_entries{map=\"cali_v4_ct3\",datapath=\"calico\"} 410")),
        "{again}"
    );
    let took = "ctdoctor_scrape_duration_seconds{part=\"bpf\"}";
    assert_eq!(value(&again, took), value(&body, took));
    let age = "ctdoctor_bpf_ct_age_seconds";
    assert!(value(&again, age) >= value(&body, age), "{body}\n{again}");
}

#[test]
fn a_host_without_bpffs_maps_prints_nothing_about_them() {
    ctlab::require_root!("reading bpffs");
    let empty = TempDir::new("no-bpffs");
    let out = run(&["--bpffs", empty.s(), "check", "--json"]);
    let v = common::json(&out);
    let text = v.to_string();
    assert!(!text.contains("\"bpf."), "{v:#}");
    assert!(!text.contains("eBPF"), "{v:#}");
}
