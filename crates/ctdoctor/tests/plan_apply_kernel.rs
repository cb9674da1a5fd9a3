//! plan / apply / rollback end to end: on a fake `--root` tree (success,
//! a crash between writes, byte-for-byte rollback), on the real kernel in a
//! test namespace (per-namespace timeouts), and the generated NOTRACK rules
//! loaded into namespaces: only traffic to other ports is tracked.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ctlab::Netns;

mod common;
use common::{BIN, TempDir, run, text};

/// Every file under `dir` (except the journal) and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(d: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if !p.to_string_lossy().contains("var/lib/ctdoctor") {
                out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

fn fake_tree() -> TempDir {
    let t = TempDir::new("tree");
    let nf = "/proc/sys/net/netfilter";
    t.put(&format!("{nf}/nf_conntrack_count"), "5000\n");
    t.put(&format!("{nf}/nf_conntrack_max"), "65536\n");
    t.put("/sys/module/nf_conntrack/parameters/hashsize", "65536\n");
    t.put(
        &format!("{nf}/nf_conntrack_tcp_timeout_established"),
        "432000\n",
    );
    t.put(&format!("{nf}/nf_conntrack_icmp_timeout"), "30\n");
    t.put(
        "/etc/sysctl.d/90-conntrack.conf",
        "net.netfilter.nf_conntrack_max = 65536\n",
    );
    t
}

const PLAN: &str = r#"{"settings": {"nf_conntrack_max": 262144, "hashsize": 262144,
  "timeouts": {"nf_conntrack_tcp_timeout_established": 7440, "nf_conntrack_icmp_timeout": 60}}}"#;

#[test]
fn apply_and_rollback_on_a_fake_tree() {
    let t = fake_tree();
    let plan = TempDir::new("planfile");
    plan.put("/plan.json", PLAN);
    let plan_file = format!("{}/plan.json", plan.s());
    let before = snapshot(&t.0);

    // Without --yes: the diff, nothing changed.
    let o = run(&["apply", "--root", t.s(), "--plan", &plan_file, "--persist"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("nf_conntrack_max") && text(&o).contains("65536 -> 262144"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("dry run"));
    assert_eq!(snapshot(&t.0), before);

    // A crash after each number of writes leaves the tree as it was.
    for n in 0..6 {
        let o = run(&[
            "apply",
            "--root",
            t.s(),
            "--plan",
            &plan_file,
            "--persist",
            "--yes",
            "--fail-after",
            &n.to_string(),
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains("the system is as before"), "{}", text(&o));
        assert_eq!(snapshot(&t.0), before, "fault after {n} writes");
    }

    let o = run(&[
        "apply",
        "--root",
        t.s(),
        "--plan",
        &plan_file,
        "--persist",
        "--yes",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let read = |p: &str| std::fs::read_to_string(t.0.join(p)).expect("read");
    assert_eq!(read("proc/sys/net/netfilter/nf_conntrack_max"), "262144\n");
    assert_eq!(
        read("sys/module/nf_conntrack/parameters/hashsize"),
        "262144\n"
    );
    assert_eq!(
        read("proc/sys/net/netfilter/nf_conntrack_icmp_timeout"),
        "60\n"
    );
    assert!(
        read("etc/sysctl.d/90-conntrack.conf")
            .contains("net.netfilter.nf_conntrack_max = 262144\n")
    );
    assert!(
        read("etc/modprobe.d/nf_conntrack.conf").contains("options nf_conntrack hashsize=262144\n")
    );

    for _ in 0..2 {
        let o = run(&["rollback", "--root", t.s()]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(
            snapshot(&t.0),
            before,
            "rollback restores byte for byte, every time"
        );
    }
}

#[test]
fn apply_refuses_unsafe_values_unless_forced() {
    let t = fake_tree();
    let plan = TempDir::new("unsafe");
    plan.put(
        "/plan.json",
        r#"{"settings": {"nf_conntrack_max": 1000, "hashsize": 1024, "timeouts": {}}}"#,
    );
    let plan_file = format!("{}/plan.json", plan.s());
    let before = snapshot(&t.0);
    let o = run(&["apply", "--root", t.s(), "--plan", &plan_file, "--yes"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("below the current count 5000"),
        "{}",
        text(&o)
    );
    assert_eq!(snapshot(&t.0), before);
    let o = run(&[
        "apply",
        "--root",
        t.s(),
        "--plan",
        &plan_file,
        "--yes",
        "--force",
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

fn plan_file(body: &str) -> (TempDir, String) {
    let dir = TempDir::new("planfile");
    dir.put("/plan.json", body);
    let path = format!("{}/plan.json", dir.s());
    (dir, path)
}

fn apply_plan(t: &TempDir, plan: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "apply",
        "--root",
        t.s(),
        "--plan",
        plan,
        "--persist",
        "--yes",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn a_plan_whose_timeouts_name_other_paths_changes_nothing() {
    let t = fake_tree();
    let victim = TempDir::new("victim");
    victim.put("/x", "precious\n");
    let before = snapshot(&t.0);
    // The issue's example, aimed at a file outside the root.
    let (_p, plan) = plan_file(&format!(
        r#"{{"settings": {{"nf_conntrack_max": 262144, "hashsize": 262144,
          "timeouts": {{"../../../../../../../..{}/x": 7, "nf_conntrack_max": 5}}}}}}"#,
        victim.s()
    ));
    let o = apply_plan(&t, &plan, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("is not a conntrack timeout sysctl"),
        "{}",
        text(&o)
    );
    assert_eq!(snapshot(&t.0), before);
    assert_eq!(
        std::fs::read_to_string(victim.0.join("x")).expect("victim"),
        "precious\n"
    );
}

#[test]
fn a_journal_naming_other_paths_is_refused_by_rollback() {
    let t = fake_tree();
    let victim = TempDir::new("victim");
    victim.put("/x", "precious\n");
    let escape = format!("/../../../../../../..{}/x", victim.s());
    t.put(
        "/var/lib/ctdoctor/journal.json",
        &format!(
            r#"{{"created": "x", "state": "applied", "values": [],
              "files": [{{"path": "{escape}", "old": null, "new": ""}}]}}"#
        ),
    );
    let o = run(&["rollback", "--root", t.s()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("names a path apply never writes"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(victim.0.join("x")).expect("victim"),
        "precious\n"
    );
}

/// Inject `fault` before each write of an apply in turn (2 journal writes,
/// 4 values, 2 files x 2, 2 journal writes): every run must fail with
/// `says`, restore, and leave the tree exactly as it was.
fn fault_at_every_write_leaves_the_tree_as_it_was(fault: &str, says: &str) {
    let t = fake_tree();
    let (_p, plan) = plan_file(PLAN);
    let before = snapshot(&t.0);
    for n in 0..12 {
        let o = apply_plan(
            &t,
            &plan,
            &["--fail-after", &n.to_string(), "--fault", fault],
        );
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let out = text(&o);
        assert!(out.contains(says), "{fault} at {n}: {out}");
        assert!(
            out.contains("the system is as before"),
            "{fault} at {n}: {out}"
        );
        assert!(!out.contains("RESTORE FAILED"), "{fault} at {n}: {out}");
        assert_eq!(snapshot(&t.0), before, "{fault} before write {n}");
    }
}

#[test]
fn sigterm_during_apply_restores_before_exiting() {
    fault_at_every_write_leaves_the_tree_as_it_was("signal", "interrupted by a signal");
}

#[test]
fn enospc_at_every_write_leaves_the_tree_as_it_was() {
    fault_at_every_write_leaves_the_tree_as_it_was("nospace", "No space left on device");
}

#[test]
fn an_apply_after_a_killed_apply_keeps_the_original_values() {
    let (_p, plan) = plan_file(PLAN);
    let (_p2, plan2) = plan_file(
        r#"{"settings": {"nf_conntrack_max": 524288, "hashsize": 524288,
          "timeouts": {"nf_conntrack_icmp_timeout": 10}}}"#,
    );
    for n in [3, 5, 8] {
        let t = fake_tree();
        let before = snapshot(&t.0);
        let o = apply_plan(
            &t,
            &plan,
            &["--fail-after", &n.to_string(), "--fault", "kill"],
        );
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let o = apply_plan(&t, &plan2, &[]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("stacked on the journal"), "{}", text(&o));
        let o = run(&["rollback", "--root", t.s()]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(snapshot(&t.0), before, "killed before write {n}");
    }
}

#[test]
fn a_second_apply_or_rollback_refuses_while_one_holds_the_lock() {
    let t = fake_tree();
    let (_p, plan) = plan_file(PLAN);
    let before = snapshot(&t.0);
    let lock = t.0.join("var/lib/ctdoctor/lock");
    // A journal, so that rollback has something to wait for the lock for.
    t.put(
        "/var/lib/ctdoctor/journal.json",
        r#"{"created": "x", "state": "applied", "values": [], "files": []}"#,
    );
    // flock(1) holds the lock while the second ctdoctor runs.
    for cmd in [
        vec!["apply", "--root", t.s(), "--plan", &plan, "--yes"],
        vec!["rollback", "--root", t.s()],
    ] {
        let o = Command::new("flock")
            .arg(&lock)
            .arg(BIN)
            .args(&cmd)
            .output()
            .expect("flock");
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            text(&o).contains("another ctdoctor apply or rollback holds it"),
            "{}",
            text(&o)
        );
    }
    assert_eq!(snapshot(&t.0), before);
}

#[test]
fn a_second_rollback_says_nothing_to_roll_back_and_changes_nothing() {
    let t = fake_tree();
    let (_p, plan) = plan_file(PLAN);
    let o = apply_plan(&t, &plan, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["rollback", "--root", t.s()]);
    assert!(o.status.success(), "{}", text(&o));
    // The admin writes the modprobe file by hand since.
    t.put(
        "/etc/modprobe.d/nf_conntrack.conf",
        "options nf_conntrack hashsize=4096\n",
    );
    let before = snapshot(&t.0);
    let o = run(&["rollback", "--root", t.s()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("nothing to roll back"), "{}", text(&o));
    assert_eq!(snapshot(&t.0), before);
}

#[test]
fn a_corrupt_journal_is_reported_with_its_position() {
    let t = fake_tree();
    t.put(
        "/var/lib/ctdoctor/journal.json",
        "{\"created\": \"x\",\n  \"values\": [1",
    );
    let o = run(&["rollback", "--root", t.s()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("is corrupt") && text(&o).contains("line 2 column"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("no journal"), "{}", text(&o));
}

#[test]
fn apply_refuses_a_table_above_a_quarter_of_ram_and_prints_plan_warnings() {
    let t = fake_tree();
    for name in [
        "icmp_timeout",
        "tcp_timeout_close_wait",
        "tcp_timeout_established",
        "tcp_timeout_fin_wait",
        "tcp_timeout_syn_recv",
        "tcp_timeout_syn_sent",
        "tcp_timeout_time_wait",
        "udp_timeout",
        "udp_timeout_stream",
    ] {
        t.put(
            &format!("/proc/sys/net/netfilter/nf_conntrack_{name}"),
            "60\n",
        );
    }
    let before = snapshot(&t.0);
    // 2M peak x 2 on 1 GiB: a full table needs about 1 GiB.
    let args = [
        "apply",
        "--root",
        t.s(),
        "--memory",
        "1GiB",
        "--kernel",
        "6.18",
        "--peak",
        "2000000",
        "--yes",
    ];
    let o = run(&args);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("above 25% of RAM"), "{}", text(&o));
    assert!(
        text(&o).contains("warning: a full table would take"),
        "{}",
        text(&o)
    );
    assert_eq!(snapshot(&t.0), before);
    // A plan file is checked against the MemTotal under the root.
    t.put("/proc/meminfo", "MemTotal:        1048576 kB\n");
    let (_p, plan) = plan_file(
        r#"{"settings": {"nf_conntrack_max": 4194304, "hashsize": 4194304, "timeouts": {}}}"#,
    );
    let o = run(&["apply", "--root", t.s(), "--plan", &plan, "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("above 25% of RAM"), "{}", text(&o));
}

#[test]
fn a_hashsize_the_kernel_rounds_up_is_no_change() {
    let t = fake_tree();
    t.put("/sys/module/nf_conntrack/parameters/hashsize", "263168\n");
    let (_p, plan) = plan_file(
        r#"{"settings": {"nf_conntrack_max": 262144, "hashsize": 262657, "timeouts": {}}}"#,
    );
    let o = run(&["apply", "--root", t.s(), "--plan", &plan]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("hashsize"), "{}", text(&o));
}

/// Run apply with `full` (a directory under the tree) on a 64 KiB tmpfs
/// filled to the last byte, in a private mount namespace (gone, with the
/// tmpfs, when the script ends). Returns apply's output and the listing of
/// the full directory before and after.
fn apply_on_a_full_disk(t: &TempDir, full: &str, extra: &str) -> (String, String, String) {
    let (_p, plan) = plan_file(PLAN);
    let report = TempDir::new("enospc-report");
    let script = r#"
d="$1/$5"
mkdir -p "$d"
mount -t tmpfs -o size=64k tmpfs "$d" || exit 90
[ "$5" = etc/sysctl.d ] && printf 'net.netfilter.nf_conntrack_max = 65536\n' > "$d/90-conntrack.conf"
dd if=/dev/zero of="$d/filler" bs=1k 2>/dev/null
(ls -A "$d"; cat "$d"/*.conf; wc -c < "$d/filler") > "$4/before" 2>&1
"$2" apply --root "$1" --plan "$3" --persist --yes $6 > "$4/out" 2>&1
echo $? >> "$4/out"
(ls -A "$d"; cat "$d"/*.conf; wc -c < "$d/filler") > "$4/after" 2>&1
"#;
    let o = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .args([t.s(), BIN, &plan, report.s(), full, extra])
        .output()
        .expect("unshare");
    assert!(o.status.success(), "{}", text(&o));
    let read = |f: &str| std::fs::read_to_string(report.0.join(f)).expect(f);
    (read("out"), read("before"), read("after"))
}

#[test]
fn a_really_full_disk_leaves_the_tree_as_it_was() {
    ctlab::require_root!("a mount namespace with a small tmpfs");
    // The config directory is full: the temp file cannot be written.
    let t = fake_tree();
    let before = snapshot(&t.0);
    let (out, full_before, full_after) = apply_on_a_full_disk(&t, "etc/sysctl.d", "");
    assert!(out.contains("No space left on device"), "{out}");
    assert!(out.contains("the system is as before"), "{out}");
    assert!(!out.contains("RESTORE FAILED"), "{out}");
    assert!(out.ends_with("1\n"), "{out}");
    assert_eq!(full_after, full_before, "the full directory");
    assert_eq!(snapshot(&t.0), before, "the rest of the tree");

    // The state directory is full: the journal cannot be written.
    let t = fake_tree();
    let before = snapshot(&t.0);
    let state = format!("{}/state", t.s());
    let (out, full_before, full_after) =
        apply_on_a_full_disk(&t, "state", &format!("--state-dir={state}"));
    assert!(out.contains("No space left on device"), "{out}");
    assert!(out.contains("nothing was changed"), "{out}");
    assert!(out.ends_with("1\n"), "{out}");
    // The (empty) lock file stays by design: removing a lock file races
    // with a second run that opened it. No journal and no temp file.
    assert_eq!(
        full_after.replace("lock\n", ""),
        full_before,
        "the full state directory"
    );
    let mut after = snapshot(&t.0);
    after.retain(|p, _| !p.starts_with(&state));
    assert_eq!(after, before, "the rest of the tree");
}

fn ns_sysctl(ns: &Netns, key: &str) -> String {
    let o = ns.exec("sysctl", &["-n", key]).expect("sysctl");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// `plan --netns`: the plan says which per-namespace max layout this
/// kernel has, judged from the sysctl's mode inside the namespace (read
/// here with stat, independently), and the initial namespace's shared max.
#[test]
fn plan_in_a_namespace_says_which_max_applies() {
    let ns = Netns::create("planns").expect("netns");
    let o = run(&["--netns", ns.name(), "plan", "--peak", "1000", "--json"]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let v = common::json(&o);
    let n = &v["netns"];
    assert_eq!(n["netns"], ns.name(), "{n:#}");
    let mode = ns
        .exec(
            "stat",
            &["-c", "%a", "/proc/sys/net/netfilter/nf_conntrack_max"],
        )
        .expect("stat");
    let mode = u32::from_str_radix(String::from_utf8_lossy(&mode.stdout).trim(), 8).expect("mode");
    let init = common::global_max() as u64;
    assert_eq!(n["init_max"], init, "{n:#}");
    if mode & 0o222 == 0 {
        assert_eq!(n["per_netns_max"], "not supported", "{n:#}");
        assert_eq!(n["effective_planned"], init, "{n:#}");
        assert!(
            n["note"]
                .as_str()
                .is_some_and(|t| t.contains("shares the initial namespace's max")),
            "{n:#}"
        );
    } else {
        assert_eq!(n["per_netns_max"], "supported", "{n:#}");
        let planned = v["settings"]["nf_conntrack_max"].as_u64().expect("max");
        assert_eq!(n["effective_planned"], init.min(planned), "{n:#}");
    }
    // The text names it too; the initial namespace's plan has no such note.
    let o = run(&["--netns", ns.name(), "plan", "--peak", "1000"]);
    assert!(
        text(&o).contains(&format!("  - netns {}: this kernel", ns.name())),
        "{}",
        text(&o)
    );
    let o = run(&["plan", "--peak", "1000", "--json"]);
    assert!(common::json(&o).get("netns").is_none());
}

#[test]
fn apply_timeouts_in_a_namespace_then_roll_back() {
    ctlab::require_root!();
    let ns = Netns::create("apply").expect("netns");
    let state = TempDir::new("state");
    let keys = [
        "net.netfilter.nf_conntrack_tcp_timeout_established",
        "net.netfilter.nf_conntrack_icmp_timeout",
        "net.netfilter.nf_conntrack_udp_timeout_stream",
    ];
    let originals: Vec<String> = keys.iter().map(|k| ns_sysctl(&ns, k)).collect();
    let host_before =
        std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_icmp_timeout").expect("host");

    // max and hashsize are read-only in a namespace: refused clearly.
    let o = run(&[
        "--netns",
        ns.name(),
        "apply",
        "--peak",
        "10000000",
        "--yes",
        "--state-dir",
        state.s(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("cannot be changed from inside a network namespace"),
        "{}",
        text(&o)
    );

    let o = run(&[
        "--netns",
        ns.name(),
        "apply",
        "--timeouts-only",
        "--profile",
        "nat-gateway",
        "--peak",
        "1000",
        "--yes",
        "--state-dir",
        state.s(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(ns_sysctl(&ns, keys[0]), "7440");
    assert_eq!(ns_sysctl(&ns, keys[1]), "60");
    assert_eq!(ns_sysctl(&ns, keys[2]), "120");
    // The host's own values are untouched (timeouts are per namespace).
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_icmp_timeout").expect("host"),
        host_before
    );

    let o = run(&["--netns", ns.name(), "rollback", "--state-dir", state.s()]);
    assert!(o.status.success(), "{}", text(&o));
    let after: Vec<String> = keys.iter().map(|k| ns_sysctl(&ns, k)).collect();
    assert_eq!(after, originals);
}

/// Load NOTRACK rules into a namespace with a stateful rule, send loopback
/// traffic to the exempted port and to another, and look at the table.
fn notrack_case(tag: &str, format: &str, load: &[&[&str]]) {
    let ns = Netns::create(tag).expect("netns");
    ns.track_loopback().expect("stateful rule");
    let dir = TempDir::new(tag);
    let file = format!("{}/rules", dir.s());
    let o = run(&[
        "plan",
        "--peak",
        "1000",
        "--memory",
        "8GiB",
        "--kernel",
        "6.18",
        "--notrack-port",
        "18080",
        "--format",
        format,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(&file, &o.stdout).expect("write rules");
    for cmd in load {
        let mut args: Vec<&str> = cmd.to_vec();
        args.push(&file);
        let (prog, rest) = args.split_first().expect("program");
        ns.exec(prog, rest)
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    }
    let _conns = ns
        .run(|| {
            let mut keep = Vec::new();
            for port in [18080, 18081] {
                let l = TcpListener::bind(("127.0.0.1", port)).expect("bind");
                let c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                let (s, _) = l.accept().expect("accept");
                keep.push((l, c, s));
            }
            keep
        })
        .expect("traffic");
    let out = ns.exec("conntrack", &["-L"]).expect("conntrack -L");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("dport=18081"),
        "the other port is tracked:\n{table}"
    );
    assert!(
        !table.contains("18080"),
        "the exempted port is not:\n{table}"
    );
}

#[test]
fn nft_notrack_rules_stop_tracking() {
    ctlab::require_root!();
    notrack_case("nft", "nft", &[&["nft", "-c", "-f"], &["nft", "-f"]]);
}

#[test]
fn iptables_notrack_rules_stop_tracking() {
    ctlab::require_root!();
    notrack_case(
        "ipt",
        "iptables",
        &[
            &["iptables-restore", "--test", "--noflush"],
            &["iptables-restore", "--noflush"],
        ],
    );
}
