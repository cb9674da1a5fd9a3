//! apply / rollback on a fake `--root` tree: the review's findings on
//! issue 8 (lock before reading values, plan file limits, timeout bounds,
//! state directory confinement, file modes, rollback without a journal,
//! bad usage, error messages), each a regression test.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

mod common;
use common::{BIN, TempDir, run, text};

const NF: &str = "/proc/sys/net/netfilter";

fn fake_tree() -> TempDir {
    let t = TempDir::new("tree");
    t.put(&format!("{NF}/nf_conntrack_count"), "5000\n");
    t.put(&format!("{NF}/nf_conntrack_max"), "65536\n");
    t.put("/sys/module/nf_conntrack/parameters/hashsize", "65536\n");
    t.put(&format!("{NF}/nf_conntrack_udp_timeout"), "30\n");
    t.put(&format!("{NF}/nf_conntrack_icmp_timeout"), "30\n");
    t
}

fn plan_file(body: &str) -> (TempDir, String) {
    let dir = TempDir::new("planfile");
    dir.put("/plan.json", body);
    let path = format!("{}/plan.json", dir.s());
    (dir, path)
}

fn timeouts_plan(timeouts: &str) -> String {
    format!(
        r#"{{"settings": {{"nf_conntrack_max": 65536, "hashsize": 65536, "timeouts": {{{timeouts}}}}}}}"#
    )
}

/// Whether process `pid` has `path` open.
fn has_open(pid: u32, path: &std::path::Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == path))
}

#[test]
fn apply_reads_the_values_it_journals_after_taking_the_lock() {
    let t = fake_tree();
    t.put(&format!("{NF}/nf_conntrack_udp_timeout"), "77\n");
    let (_p, plan) = plan_file(&timeouts_plan(r#""nf_conntrack_udp_timeout": 60"#));
    let lock = t.p("/var/lib/ctdoctor/lock");
    std::fs::create_dir_all(lock.parent().expect("dir")).expect("mkdir");
    std::fs::write(&lock, "").expect("lock file");
    let lock = std::fs::canonicalize(&lock).expect("canonical");
    // Another run holds the lock and changes the value before releasing it.
    let udp = t.p(&format!("{NF}/nf_conntrack_udp_timeout"));
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args([
            "sh",
            "-c",
            "echo locked; read x; echo 30 > \"$0\"",
            udp.to_str().expect("utf8"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("flock");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line, "locked\n");
    let apply = Command::new(BIN)
        .args(["apply", "--root", t.s(), "--plan", &plan, "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apply");
    // Wait until apply waits on the lock, then let the holder finish.
    while !has_open(apply.id(), &lock) {
        assert!(
            std::fs::metadata(format!("/proc/{}", apply.id())).is_ok(),
            "apply exited without waiting for the lock"
        );
        std::thread::yield_now();
    }
    let mut stdin = holder.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("release");
    drop(stdin);
    assert!(holder.wait().expect("holder").success());
    let o = apply.wait_with_output().expect("apply");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("30 -> 60"), "{}", text(&o));
    let o = run(&["rollback", "--root", t.s()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(t.get(&format!("{NF}/nf_conntrack_udp_timeout")), "30\n");
}

#[test]
fn a_plan_that_is_not_a_small_regular_file_is_refused() {
    let t = fake_tree();
    let dir = TempDir::new("bigplan");
    // A regular file just over the cap (sparse: no disk used).
    let big = dir.p("/big.json");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len((1 << 20) + 1))
        .expect("big file");
    let fifo = dir.p("/fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    // The big file first: old code fails on it at once (then /dev/zero
    // would eat memory and the FIFO would hang).
    for (plan, says) in [
        (big.display().to_string(), "is larger than 1048576 bytes"),
        ("/dev/zero".to_string(), "is not a regular file"),
        (fifo.display().to_string(), "is not a regular file"),
        (dir.s().to_string(), "is not a regular file"),
    ] {
        let o = run(&["apply", "--root", t.s(), "--plan", &plan, "--yes"]);
        assert_eq!(o.status.code(), Some(1), "{plan}: {}", text(&o));
        assert!(text(&o).contains(says), "{plan}: {}", text(&o));
    }
}

#[test]
fn timeouts_above_the_jiffies_bound_are_refused_even_forced_and_zero_unless_forced() {
    let t = fake_tree();
    let before = t.get(&format!("{NF}/nf_conntrack_udp_timeout"));
    for v in ["18446744073709551615", "2147484"] {
        let (_p, plan) = plan_file(&timeouts_plan(&format!(
            r#""nf_conntrack_udp_timeout": {v}"#
        )));
        for extra in [
            &[][..],
            &["--force"][..],
            &["--force", "--timeouts-only"][..],
        ] {
            let mut args = vec!["apply", "--root", t.s(), "--plan", &plan, "--yes"];
            args.extend_from_slice(extra);
            let o = run(&args);
            assert_eq!(o.status.code(), Some(1), "{v} {extra:?}: {}", text(&o));
            assert!(text(&o).contains("above 2147483 s"), "{}", text(&o));
            assert_eq!(t.get(&format!("{NF}/nf_conntrack_udp_timeout")), before);
        }
    }
    // The bound itself is accepted.
    let (_p, plan) = plan_file(&timeouts_plan(r#""nf_conntrack_udp_timeout": 2147483"#));
    let o = run(&["apply", "--root", t.s(), "--plan", &plan, "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        t.get(&format!("{NF}/nf_conntrack_udp_timeout")),
        "2147483\n"
    );
    let (_p, plan) = plan_file(&timeouts_plan(r#""nf_conntrack_icmp_timeout": 0"#));
    for extra in [&[][..], &["--timeouts-only"][..]] {
        let mut args = vec!["apply", "--root", t.s(), "--plan", &plan, "--yes"];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {}", text(&o));
        assert!(
            text(&o).contains("nf_conntrack_icmp_timeout = 0"),
            "{}",
            text(&o)
        );
        assert_eq!(t.get(&format!("{NF}/nf_conntrack_icmp_timeout")), "30\n");
    }
    let o = run(&[
        "apply",
        "--root",
        t.s(),
        "--plan",
        &plan,
        "--yes",
        "--force",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(t.get(&format!("{NF}/nf_conntrack_icmp_timeout")), "0\n");
}

#[test]
fn a_symlinked_state_directory_is_not_followed_out_of_the_root() {
    let (_p, plan) = plan_file(&timeouts_plan(r#""nf_conntrack_udp_timeout": 60"#));
    for link in ["var/lib/ctdoctor", "var/lib"] {
        let t = fake_tree();
        let outside = TempDir::new("outside");
        std::fs::create_dir_all(t.p(link).parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(&outside.0, t.p(link)).expect("symlink");
        let o = run(&["apply", "--root", t.s(), "--plan", &plan, "--yes"]);
        assert_eq!(o.status.code(), Some(1), "{link}: {}", text(&o));
        assert!(text(&o).contains("symlink"), "{link}: {}", text(&o));
        assert_eq!(t.get(&format!("{NF}/nf_conntrack_udp_timeout")), "30\n");
        let o = run(&["rollback", "--root", t.s()]);
        assert_eq!(o.status.code(), Some(1), "{link}: {}", text(&o));
        assert_eq!(
            std::fs::read_dir(&outside.0).expect("outside").count(),
            0,
            "{link}: something was written outside the root"
        );
    }
}

#[test]
fn an_explicit_state_dir_is_used_but_its_journal_is_never_a_followed_symlink() {
    let t = fake_tree();
    let state = TempDir::new("state");
    let victim = TempDir::new("victim");
    victim.put("/x", "precious\n");
    std::os::unix::fs::symlink(victim.p("/x"), state.p("/lock")).expect("symlink");
    let (_p, plan) = plan_file(&timeouts_plan(r#""nf_conntrack_udp_timeout": 60"#));
    let o = run(&[
        "apply",
        "--root",
        t.s(),
        "--plan",
        &plan,
        "--yes",
        "--state-dir",
        state.s(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(victim.get("/x"), "precious\n");
    std::fs::remove_file(state.p("/lock")).expect("rm");
    let o = run(&[
        "apply",
        "--root",
        t.s(),
        "--plan",
        &plan,
        "--yes",
        "--state-dir",
        state.s(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(state.p("/journal.json").is_file());
}

#[test]
fn rollback_without_a_journal_exits_0_and_creates_nothing() {
    let t = fake_tree();
    let missing = t.p("/no/such/root");
    let state = t.p("/no/such/state");
    for args in [
        vec!["rollback", "--root", t.s()],
        vec!["rollback", "--root", missing.to_str().expect("utf8")],
        vec![
            "rollback",
            "--root",
            t.s(),
            "--state-dir",
            state.to_str().expect("utf8"),
        ],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains("nothing to roll back: no journal"),
            "{}",
            text(&o)
        );
    }
    assert!(
        !t.p("/var").exists(),
        "rollback created the state directory"
    );
    assert!(!t.p("/no").exists(), "rollback created the missing root");
}

#[test]
fn rollback_restores_the_mode_and_owner_of_a_replaced_config_file() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    ctlab::require_root!("chown to another owner");
    let t = fake_tree();
    let conf = "/etc/sysctl.d/90-conntrack.conf";
    t.put(conf, "net.netfilter.nf_conntrack_max = 65536\n");
    std::fs::set_permissions(t.p(conf), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::chown(t.p(conf), Some(1234), Some(5678)).expect("chown");
    let (_p, plan) = plan_file(&timeouts_plan(r#""nf_conntrack_udp_timeout": 60"#));
    let o = run(&[
        "apply",
        "--root",
        t.s(),
        "--plan",
        &plan,
        "--persist",
        "--yes",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["rollback", "--root", t.s()]);
    assert!(o.status.success(), "{}", text(&o));
    let m = std::fs::metadata(t.p(conf)).expect("stat");
    assert_eq!(m.mode() & 0o7777, 0o600);
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    assert_eq!(t.get(conf), "net.netfilter.nf_conntrack_max = 65536\n");
    // The file apply created is removed, as before.
    assert!(!t.p("/etc/modprobe.d/nf_conntrack.conf").exists());
}

#[test]
fn a_journal_with_an_unknown_state_is_reported_corrupt_and_not_replayed() {
    let t = fake_tree();
    t.put(
        "/var/lib/ctdoctor/journal.json",
        &format!(
            r#"{{"created": "x", "state": "whatever", "files": [],
              "values": [{{"path": "{NF}/nf_conntrack_udp_timeout", "old": "77", "new": "30"}}]}}"#
        ),
    );
    let o = run(&["rollback", "--root", t.s()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("is corrupt: state \"whatever\" is none of"),
        "{}",
        text(&o)
    );
    assert_eq!(t.get(&format!("{NF}/nf_conntrack_udp_timeout")), "30\n");
}

#[test]
fn a_bad_kernel_version_or_an_overflowing_memory_size_is_bad_usage() {
    for args in [
        &["plan", "--kernel", "", "--memory", "8G", "--peak", "1000"][..],
        &[
            "plan", "--kernel", "a.b.c", "--memory", "8G", "--peak", "1000",
        ][..],
        &[
            "plan",
            "--kernel",
            "4294967296.0.0",
            "--memory",
            "8G",
            "--peak",
            "1000",
        ][..],
        &[
            "plan",
            "--kernel",
            "6.1",
            "--memory",
            "99999999T",
            "--peak",
            "1000",
        ][..],
        &[
            "apply", "--kernel", "a.b.c", "--memory", "8G", "--peak", "1000",
        ][..],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    let o = run(&[
        "plan",
        "--kernel",
        "6.1",
        "--memory",
        "99999999T",
        "--peak",
        "1000",
    ]);
    assert!(text(&o).contains("too large"), "{}", text(&o));
    let o = run(&[
        "plan",
        "--kernel",
        "6.1.0-13-amd64",
        "--memory",
        "8G",
        "--peak",
        "1000",
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

fn journal_with_udp_old(t: &TempDir, old: &str) {
    t.put(
        "/var/lib/ctdoctor/journal.json",
        &format!(
            r#"{{"created": "x", "state": "applied", "files": [],
              "values": [{{"path": "{NF}/nf_conntrack_udp_timeout", "old": "{old}", "new": "60"}}]}}"#
        ),
    );
}

#[test]
fn a_bad_old_value_or_a_planted_symlink_is_named_as_such_and_huge_values_are_cut() {
    let t = fake_tree();
    let huge = "9".repeat(100_000);
    journal_with_udp_old(&t, &huge);
    let o = run(&["rollback", "--root", t.s()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let said = text(&o);
    assert!(said.contains("is not a decimal number"), "{said}");
    assert!(!said.contains("never writes"), "{said}");
    assert!(said.len() < 1000, "{} bytes: {}", said.len(), &said[..200]);

    // A symlink planted at a value the journal restores.
    journal_with_udp_old(&t, "30");
    let udp = t.p(&format!("{NF}/nf_conntrack_udp_timeout"));
    std::fs::remove_file(&udp).expect("rm");
    let victim = TempDir::new("victim");
    victim.put("/x", "precious\n");
    std::os::unix::fs::symlink(victim.p("/x"), &udp).expect("symlink");
    let o = run(&["rollback", "--root", t.s()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("is a symlink"), "{}", text(&o));
    assert!(!text(&o).contains("never writes"), "{}", text(&o));
    assert_eq!(victim.get("/x"), "precious\n");

    // A huge bad timeout key in a plan is cut too.
    let t = fake_tree();
    let (_p, plan) = plan_file(&timeouts_plan(&format!(r#""{}": 5"#, "x".repeat(100_000))));
    let o = run(&["apply", "--root", t.s(), "--plan", &plan, "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("is not a conntrack timeout sysctl"),
        "{}",
        text(&o)
    );
    assert!(text(&o).len() < 1000, "{} bytes", text(&o).len());
}
