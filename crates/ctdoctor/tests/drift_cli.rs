//! The drift guard on fake roots (issue 20): one tree per cause — kube-proxy
//! flags, kube-proxy's config file, a sysctl file read before the module
//! is loaded, a value that differs from the last apply's journal, a
//! read-only /sys — and one without drift. Each runs the real binary's
//! `check --root` and reads the finding from its JSON and its text; drift
//! is WARNING (exit 1).

mod common;

use common::{BIN, TempDir, TempFile, evidence, finding, json, must_find, stderr, text};
use serde_json::Value;
use std::process::{Command, Output};

const TREE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/export/root");

/// The export fixture (max 262144, buckets 65536, 5000 entries) copied,
/// with nf_conntrack built in, 4 CPUs online and no drops counted (so the
/// tree alone is OK and a WARNING is the drift's).
fn tree(tag: &str) -> TempDir {
    let d = TempDir::new(tag);
    let ok = Command::new("cp")
        .args(["-a", &format!("{TREE}/."), d.s()])
        .status()
        .expect("cp");
    assert!(ok.success());
    d.put("/sys/module/nf_conntrack/parameters/hashsize", "65536\n");
    d.put("/sys/devices/system/cpu/online", "0-3\n");
    let zero = "00000000 ".repeat(16);
    d.put(
        "/proc/net/stat/nf_conntrack",
        &format!("entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n00001388 {zero}\n"),
    );
    let o = check(&d, true);
    assert_eq!(o.status.code(), Some(0), "the bare tree: {}", stderr(&o));
    d
}

fn check(d: &TempDir, json_out: bool) -> Output {
    let log = TempFile::new("drift-log", b"");
    let mut args = vec!["--root", d.s()];
    if json_out {
        args.push("--json");
    }
    args.extend(["check", "--kernel-log", log.path()]);
    Command::new(BIN)
        .args(&args)
        .output()
        .expect("run ctdoctor")
}

/// The drift finding for `key`, after checking exit code and text.
fn drifted(d: &TempDir, key: &str) -> Value {
    let o = check(d, true);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["verdict"], "WARNING", "{v}");
    let f = must_find(&v, &format!("drift.{key}")).clone();
    assert_eq!(f["severity"], "warning");
    let t = text(&check(d, false));
    assert!(t.contains(&format!("{key} drifted")), "{t}");
    f
}

fn cause(f: &Value) -> String {
    evidence(f)
        .into_iter()
        .find(|e| e.starts_with("cause: "))
        .unwrap_or_default()
        .to_string()
}

const PERSIST_1M: &str = "net.netfilter.nf_conntrack_max = 1048576\n";

#[test]
fn kube_proxy_flags_reproduce_the_live_max() {
    let d = tree("drift-kp-flags");
    d.put("/etc/sysctl.d/90-conntrack.conf", PERSIST_1M);
    // 65536 x 4 CPUs = 262144, the tree's live max.
    d.put(
        "/proc/4242/cmdline",
        "/usr/local/bin/kube-proxy\0--v=2\0--conntrack-max-per-core=65536\0",
    );
    let f = drifted(&d, "nf_conntrack_max");
    let title = f["title"].as_str().unwrap_or_default();
    assert!(title.contains("live 262144"), "{title}");
    assert!(
        title.contains("1048576 in /etc/sysctl.d/90-conntrack.conf:1"),
        "{title}"
    );
    let c = cause(&f);
    assert!(
        c.contains("kube-proxy (pid 4242, flags: maxPerCore 65536 x 4 CPUs = 262144"),
        "{c}"
    );
    assert!(f["fix"].to_string().contains("maxPerCore to 0"), "{f}");
    let t = text(&check(&d, false));
    assert!(t.contains("kube-proxy (pid 4242"), "{t}");
}

#[test]
fn kube_proxy_config_file_defaults_reproduce_the_live_max() {
    let d = tree("drift-kp-config");
    d.put("/sys/devices/system/cpu/online", "0-7\n");
    d.put("/etc/sysctl.d/90-conntrack.conf", PERSIST_1M);
    d.put(
        "/proc/77/cmdline",
        "kube-proxy\0--conntrack-max-per-core=1\0--config=/var/lib/kube-proxy/config.conf\0",
    );
    // Read through the process's root; the flag above is ignored.
    d.put(
        "/proc/77/root/var/lib/kube-proxy/config.conf",
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nconntrack:\n  maxPerCore: null\n  min: 131072\n",
    );
    let f = drifted(&d, "nf_conntrack_max");
    let c = cause(&f);
    assert!(c.contains("pid 77, config /var/lib/kube-proxy/config.conf: maxPerCore 32768 (default) x 8 CPUs = 262144"), "{c}");
}

#[test]
fn sysctl_file_read_before_the_module_is_loaded() {
    let d = tree("drift-before-load");
    // A loadable module: only those have initstate.
    d.put("/sys/module/nf_conntrack/initstate", "live\n");
    d.put(
        "/usr/lib/sysctl.d/90-conntrack.conf",
        "net.netfilter.nf_conntrack_max = 4\n",
    );
    // The same name in /etc hides the one in /usr/lib.
    d.put("/etc/sysctl.d/90-conntrack.conf", PERSIST_1M);
    let f = drifted(&d, "nf_conntrack_max");
    let c = cause(&f);
    assert!(
        c.contains(
            "/etc/sysctl.d/90-conntrack.conf is applied at boot before nf_conntrack is loaded"
        ),
        "{c}"
    );
    assert!(
        f["fix"]
            .to_string()
            .contains("/etc/modules-load.d/ctdoctor-nf_conntrack.conf"),
        "{f}"
    );
    // Loaded at boot: the cause is not the order any more.
    d.put(
        "/etc/modules-load.d/netfilter.conf",
        "# k8s\nbr_netfilter\nnf_conntrack\n",
    );
    let c = cause(&drifted(&d, "nf_conntrack_max"));
    assert!(c.contains("changed at runtime by something else"), "{c}");
}

#[test]
fn live_value_differs_from_the_last_apply_journal() {
    let d = tree("drift-journal");
    d.put(
        "/var/lib/ctdoctor/journal.json",
        r#"{"created":"2026-12-07T09:00:00Z","values":[{"path":"/proc/sys/net/netfilter/nf_conntrack_max","old":"65536","new":"524288"},{"path":"/sys/module/nf_conntrack/parameters/hashsize","old":"16384","new":"65536"}],"files":[],"state":"applied","applies":1}"#,
    );
    let f = drifted(&d, "nf_conntrack_max");
    let title = f["title"].as_str().unwrap_or_default();
    assert!(
        title.contains("524288 from ctdoctor apply (journal)"),
        "{title}"
    );
    let v = json(&check(&d, true));
    assert!(finding(&v, "drift.hashsize").is_none(), "{v}");
    // Rolled back: nothing to compare with.
    let rolled = d
        .get("/var/lib/ctdoctor/journal.json")
        .replace("\"applied\"", "\"rolled-back\"");
    d.put("/var/lib/ctdoctor/journal.json", &rolled);
    let o = check(&d, true);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn read_only_sys_keeps_hashsize_from_being_set() {
    let d = tree("drift-ro-sys");
    d.put(
        "/etc/modprobe.d/nf_conntrack.conf",
        "options nf_conntrack hashsize=262144\n",
    );
    d.put(
        "/proc/self/mounts",
        "sysfs /sys sysfs ro,nosuid,nodev,noexec,relatime 0 0\nproc /proc proc rw 0 0\n",
    );
    let f = drifted(&d, "hashsize");
    let title = f["title"].as_str().unwrap_or_default();
    assert!(
        title.contains("live 65536, but 262144 in /etc/modprobe.d/nf_conntrack.conf:1"),
        "{title}"
    );
    assert!(cause(&f).contains("/sys is mounted read-only"), "{f}");
    // Built in and /sys writable: modprobe.d is never read.
    d.put("/proc/self/mounts", "sysfs /sys sysfs rw 0 0\n");
    let c = cause(&drifted(&d, "hashsize"));
    assert!(
        c.contains("built into the kernel, so /etc/modprobe.d/nf_conntrack.conf is never read"),
        "{c}"
    );
}

#[test]
fn persisted_values_that_hold_are_no_drift() {
    let d = tree("drift-none");
    // sysctl.conf is read last, after sysctl.d, and sets what is live.
    d.put("/etc/sysctl.d/90-conntrack.conf", PERSIST_1M);
    d.put("/etc/sysctl.conf", "net.nf_conntrack_max=262144\n");
    d.put(
        "/etc/modprobe.d/nf_conntrack.conf",
        "options nf_conntrack hashsize=65536\n",
    );
    d.put(
        "/proc/4242/cmdline",
        "kube-proxy\0--conntrack-max-per-core=0\0",
    );
    let o = check(&d, true);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    let ids = v["findings"].to_string();
    assert!(!ids.contains("drift."), "{ids}");
}

#[test]
fn buckets_sysctl_persists_hashsize_after_modprobe() {
    // How `plan --format sysctl` persists the size; it is applied after
    // modprobe.d's hashsize=, so it wins.
    let d = tree("drift-buckets");
    d.put(
        "/etc/modprobe.d/nf_conntrack.conf",
        "options nf_conntrack hashsize=65536\n",
    );
    d.put(
        "/etc/sysctl.d/90-conntrack.conf",
        "net.netfilter.nf_conntrack_buckets = 131072\n",
    );
    let f = drifted(&d, "hashsize");
    let title = f["title"].as_str().unwrap_or_default();
    assert!(
        title.contains("live 65536, but 131072 in /etc/sysctl.d/90-conntrack.conf:1"),
        "{title}"
    );
    // A value the kernel rejects (a leading 0 is octal) is not persisted,
    // and as the last assignment it leaves modprobe.d's, which holds.
    d.put(
        "/etc/sysctl.d/90-conntrack.conf",
        "net.netfilter.nf_conntrack_buckets = 131072\nnet.netfilter.nf_conntrack_buckets = 0196608\nnet.netfilter.nf_conntrack_max = 0x40000 # tuned\n",
    );
    let o = check(&d, true);
    assert_eq!(o.status.code(), Some(0), "{}", json(&o)["findings"]);
    let ids = json(&o)["findings"].to_string();
    assert!(!ids.contains("drift."), "{ids}");
}

fn apply_persist(d: &TempDir) -> Output {
    let plan = TempFile::new(
        "drift-plan",
        br#"{"settings":{"nf_conntrack_max":262144,"hashsize":65536,"timeouts":{}}}"#,
    );
    Command::new(BIN)
        .args([
            "apply",
            "--root",
            d.s(),
            "--plan",
            plan.path(),
            "--yes",
            "--persist",
            "--force",
        ])
        .output()
        .expect("apply")
}

const LOAD_FILE: &str = "/etc/modules-load.d/ctdoctor-nf_conntrack.conf";

#[test]
fn apply_persist_loads_a_loadable_module_at_boot_and_rollback_removes_it() {
    let d = tree("drift-persist-module");
    d.put("/sys/module/nf_conntrack/initstate", "live\n");
    let o = apply_persist(&d);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("{LOAD_FILE:<62} create")), "{out}");
    assert!(
        d.get(LOAD_FILE).ends_with("\nnf_conntrack\n"),
        "{}",
        d.get(LOAD_FILE)
    );
    let j = d.get("/var/lib/ctdoctor/journal.json");
    assert!(j.contains(LOAD_FILE), "{j}");
    // With the file the sysctl file is no longer read before the load.
    d.put("/etc/sysctl.d/90-conntrack.conf", PERSIST_1M);
    let c = cause(&drifted(&d, "nf_conntrack_max"));
    assert!(c.contains("changed at runtime by something else"), "{c}");
    let o = Command::new(BIN)
        .args(["rollback", "--root", d.s()])
        .output()
        .expect("rollback");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!std::path::Path::new(&format!("{}{LOAD_FILE}", d.s())).exists());
    assert!(!std::path::Path::new(&format!("{}/etc/modules-load.d", d.s())).exists());
    // Without it the cause is the order again, and the fix is apply --persist.
    // (rollback removed the sysctl file apply created too)
    d.put("/etc/sysctl.d/90-conntrack.conf", PERSIST_1M);
    let f = drifted(&d, "nf_conntrack_max");
    assert!(
        f["fix"].to_string().contains("ctdoctor apply --persist"),
        "{f}"
    );
}

#[test]
fn apply_persist_skips_the_file_when_built_in_or_already_loaded() {
    let d = tree("drift-persist-builtin");
    let o = apply_persist(&d);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("built into the kernel"));
    assert!(!std::path::Path::new(&format!("{}{LOAD_FILE}", d.s())).exists());
    let d = tree("drift-persist-loaded");
    d.put("/sys/module/nf_conntrack/initstate", "live\n");
    d.put("/etc/modules", "nf_nat\n");
    let o = apply_persist(&d);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("/etc/modules already loads nf_nat"));
    assert!(!std::path::Path::new(&format!("{}{LOAD_FILE}", d.s())).exists());
}
