//! Regression tests for issue 7 §6 (exit codes and input edge cases), each
//! running the real binary. `check` runs in a throwaway network namespace
//! holding a known number of entries, so its verdict does not depend on the
//! host; a closed pipe is made before the child starts (the read end is
//! dropped first), so every write fails with EPIPE, deterministically.
//! Colour on a terminal is observed through a real pty made by util-linux
//! `script`.

mod common;

use std::process::{Command, Output, Stdio};

use common::{BIN, TempFile, json, stderr};
use ctlab::Netns;
use serde_json::Value;

/// A /proc/net/nf_conntrack line (kernel 6.18, nf_conntrack_acct=1).
const LINE: &str = "ipv4     2 tcp      6 95 ESTABLISHED src=10.1.1.1 dst=10.2.2.2 sport=1001 dport=443 packets=3 bytes=180 src=10.2.2.2 dst=10.1.1.1 sport=443 dport=1001 packets=2 bytes=120 [ASSURED] mark=0 zone=0 use=2\n";

/// The same with both directions' counters at u64::MAX.
const MAX_COUNTERS: &str = "ipv4     2 udp      17 29 src=10.1.1.1 dst=10.2.2.2 sport=5000 dport=53 packets=18446744073709551615 bytes=18446744073709551615 src=10.2.2.2 dst=10.1.1.1 sport=53 dport=5000 packets=18446744073709551615 bytes=18446744073709551615 mark=0 zone=0 use=2\n";

/// `common::run` with NO_COLOR removed: these tests pin colour choices,
/// which a NO_COLOR in the caller's environment would change.
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("run ctdoctor")
}

/// Run with stdout a pipe whose read end is already closed.
fn run_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = nix::unistd::pipe().expect("pipe");
    drop(reader);
    Command::new(BIN)
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run ctdoctor")
}

/// Run a shell command line under a pseudo-terminal; returns what the
/// terminal showed and the exit status of `script` (the command's).
fn run_on_tty(cmdline: &str, term: &str) -> (String, Option<i32>) {
    let out = Command::new("script")
        .args(["-qec", cmdline, "/dev/null"])
        .env("TERM", term)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("util-linux script (needed for a pty)");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code(),
    )
}

/// A namespace with `n` entries, and an empty kernel log, so that check's
/// verdict comes from the fill thresholds alone.
fn namespace_with_entries(tag: &str, n: usize) -> Netns {
    let ns = Netns::create(tag).expect("netns");
    ns.insert(&ctlab::fill(n, true)).expect("insert entries");
    ns
}

#[test]
fn check_verdict_exit_code_survives_a_closed_stdout() {
    ctlab::require_root!();
    let ns = namespace_with_entries("pipe", 200);
    let log = TempFile::new("regression-pipe-log", b"");
    // 200 entries are far above 0.0001% of any nf_conntrack_max: WARNING.
    let args = [
        "--netns",
        ns.name(),
        "check",
        "--no-dump",
        "--kernel-log",
        log.path(),
        "--warn",
        "0.0001",
        "--crit",
        "100",
    ];
    let open = run(&args);
    let code = open.status.code();
    assert_eq!(code, Some(1), "{}", String::from_utf8_lossy(&open.stdout));
    // Old code: the write failed with EPIPE and main called that success (0).
    let closed = run_closed_stdout(&args);
    assert_eq!(closed.status.code(), code, "text: {}", stderr(&closed));
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let closed = run_closed_stdout(&json_args);
    assert_eq!(closed.status.code(), code, "json: {}", stderr(&closed));
}

#[test]
fn top_with_a_closed_stdout_is_success() {
    let dump = TempFile::new("regression-pipe-top", LINE.repeat(50).as_bytes());
    let out = run_closed_stdout(&["top", "--file", dump.path()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn top_threads_beyond_the_cpus_are_lowered_with_a_note() {
    let dump = TempFile::new("regression-threads", LINE.repeat(100).as_bytes());
    // Old code: 20000 aborted (thread spawn failed), 2^64-1 panicked.
    for n in ["20000", "18446744073709551615"] {
        let out = run(&["top", "--file", dump.path(), "--threads", n, "--json"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "--threads {n}: {}",
            stderr(&out)
        );
        assert_eq!(json(&out)["entries"], 100);
        assert!(
            stderr(&out).contains(&format!("note: --threads {n} lowered to")),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn top_line_longer_than_a_chunk_is_one_malformed_line() {
    // A 3 MiB line between two entries: old code cut it at every 1 MiB chunk
    // into phantom lines, so the count and line numbers after it were wrong.
    let mut text = LINE.as_bytes().to_vec();
    text.extend(std::iter::repeat_n(b'x', 3 << 20));
    text.push(b'\n');
    text.extend_from_slice(b"garbage\n");
    text.extend_from_slice(LINE.as_bytes());
    let dump = TempFile::new("regression-long", &text);
    let out = run(&["top", "--file", dump.path(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["entries"], 2);
    assert_eq!(v["skipped_lines"], 2);
    let lines: Vec<&Value> = v["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| &e["line"])
        .collect();
    assert_eq!(lines, [2, 3]);
    assert_eq!(v["errors"][0]["reason"], "line longer than 16384 bytes");
    assert!(
        stderr(&out).contains("2 of 4 lines skipped"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn top_counters_up_to_u64_max_are_not_malformed() {
    let dump = TempFile::new("regression-u64", MAX_COUNTERS.repeat(3).as_bytes());
    let out = run(&["top", "--file", dump.path(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!((&v["entries"], &v["skipped_lines"]), (&3.into(), &0.into()));
    assert_eq!(v["l4"]["udp"], 3);
}

#[test]
fn top_file_of_only_malformed_lines_exits_1_with_the_first_reasons() {
    let dump = TempFile::new(
        "regression-garbage",
        b"hello world\n\nnot conntrack output\n",
    );
    let out = run(&["top", "--file", dump.path()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "no table for unreadable input");
    let err = stderr(&out);
    assert!(err.contains("no conntrack entry in file:"), "{err}");
    assert!(err.contains("line 1: expected a protocol number"), "{err}");
    assert!(err.contains("line 3: expected a protocol number"), "{err}");
    // Quiet mode still says why it failed.
    let out = run(&["-q", "top", "--file", dump.path()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 1:"), "{}", stderr(&out));
}

#[test]
fn top_empty_file_is_an_empty_table_not_an_error() {
    let dump = TempFile::new("regression-empty", b"");
    let out = run(&["top", "--file", dump.path(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["entries"], 0);
    // conntrack -L on an empty table prints only its summary line.
    let dump = TempFile::new(
        "summary",
        b"conntrack v1.4.8 (conntrack-tools): 0 flow entries have been shown.\n",
    );
    let out = run(&["top", "--file", dump.path(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn usage_error_under_color_never_has_no_escape_codes() {
    // Old code: clap chose colour from the terminal, ignoring --color.
    let (shown, code) = run_on_tty(
        &format!("{BIN} --color never top --no-such-flag"),
        "xterm-256color",
    );
    assert_eq!(code, Some(2), "{shown}");
    assert!(shown.contains("--no-such-flag"), "{shown}");
    assert!(!shown.contains('\x1b'), "escape codes: {shown:?}");
    // Control: without --color never the same terminal gets colour.
    let (shown, _) = run_on_tty(&format!("{BIN} top --no-such-flag"), "xterm-256color");
    assert!(
        shown.contains('\x1b'),
        "no colour on a colour terminal: {shown:?}"
    );
}

#[test]
fn usage_error_under_color_always_is_coloured_in_a_pipe() {
    let out = run(&["--color", "always", "top", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains('\x1b'), "{:?}", stderr(&out));
    let out = run(&["check", "--color=never", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(3), "check: bad usage is UNKNOWN");
    assert!(!stderr(&out).contains('\x1b'));
}

#[test]
fn check_on_a_dumb_terminal_has_no_colour() {
    ctlab::require_root!();
    let ns = namespace_with_entries("dumb", 10);
    let log = TempFile::new("regression-dumb-log", b"");
    let cmd = format!(
        "{BIN} --netns {} check --no-dump --kernel-log {}",
        ns.name(),
        log.path()
    );
    // Old code: TERM=dumb still got escape codes.
    let (shown, _) = run_on_tty(&cmd, "dumb");
    assert!(shown.contains("OK") || shown.contains("WARNING"), "{shown}");
    assert!(!shown.contains('\x1b'), "escape codes: {shown:?}");
    // Control: the same terminal type as xterm is coloured.
    let (shown, _) = run_on_tty(&cmd, "xterm-256color");
    assert!(shown.contains('\x1b'), "no colour on xterm: {shown:?}");
}

#[test]
fn error_cause_is_printed_once() {
    // An empty root has no /proc/sys: the read error names its cause once.
    let root =
        std::env::temp_dir().join(format!("ctdoctor-regression-root-{}", std::process::id()));
    std::fs::create_dir_all(&root).expect("mkdir");
    let out = run(&[
        "apply",
        "--root",
        root.to_str().expect("utf-8"),
        "--memory",
        "8GiB",
        "--cpus",
        "2",
        "--kernel",
        "6.1.0",
        "--peak",
        "1000",
    ]);
    let _ = std::fs::remove_dir_all(&root);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("/proc/sys/net/netfilter"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn non_utf8_argument_is_bad_usage_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new(BIN)
        .arg(std::ffi::OsStr::from_bytes(b"\xff"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Bad usage of the monitoring plugins is UNKNOWN (3) also when a global
/// flag with a value comes first: `--netns X` must not be taken for the
/// subcommand (it was: `--netns X check --bogus` exited 2).
#[test]
fn plugin_usage_errors_are_unknown_after_global_flags() {
    for args in [
        &["--netns", "nosuch", "check", "--bogus"][..],
        &["--netns", "nosuch", "forecast", "--window", "1s"],
        &[
            "--color", "never", "--netns", "x", "forecast", "--target", "0",
        ],
        &["forecast", "--crit", "3h"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", stderr(&o));
    }
    // Other commands keep 2 for bad usage.
    let o = run(&["--netns", "nosuch", "watch", "--top", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// Issue 17: `--kernel 6` passed simulate's flag check and was then refused
/// by the simulator, which parsed versions its own way. One version type
/// now reads both, and `6` is 6.0 everywhere (as `plan --kernel 6` is).
#[test]
fn simulate_kernel_major_only_is_the_same_version_everywhere() {
    let o = run(&[
        "simulate",
        "--rate",
        "100",
        "--lifecycle",
        "short-http",
        "--max",
        "1000",
        "--kernel",
        "6",
        "--duration",
        "5s",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(&["simulate", "--kernel", "six", "--duration", "5s"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// The export golden test's fake system (a tree laid out like /).
const TREE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/export/root");

#[test]
fn a_root_that_is_not_a_tree_is_bad_usage_not_a_green_check() {
    // A typo in --root once read as "conntrack is not in use": OK, exit 0.
    let o = run(&["--root", "/nonexistent/ctdoctor-root", "check"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));
    let o = run(&["--root", "/nonexistent/ctdoctor-root", "top"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // An existing directory that is no tree (no proc/): the same.
    let empty = std::env::temp_dir().join(format!("ctd-empty-root-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("mkdir");
    let o = run(&["--root", empty.to_str().expect("utf8"), "check"]);
    let _ = std::fs::remove_dir(&empty);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("no proc/"), "{}", stderr(&o));
    // A tree has no kernel to enter a namespace of.
    let o = run(&["--root", TREE, "--netns", "x", "top"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--root"), "{}", stderr(&o));
}

#[test]
fn flags_that_exclude_each_other_are_bad_usage() {
    let o = run(&["top", "--file", "/dev/null", "--csv", "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // --json would silently win over --format sysctl (JSON in sysctl.d).
    let o = run(&[
        "--json", "plan", "--format", "sysctl", "--memory", "8G", "--kernel", "6.1", "--peak", "10",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run(&[
        "--json", "plan", "--format", "json", "--memory", "8G", "--kernel", "6.1", "--peak", "10",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn check_on_a_tree_reads_its_table_from_the_trees_proc_file() {
    let log = TempFile::new("regression-tree-log", b"");
    let o = run(&[
        "--root",
        TREE,
        "--json",
        "check",
        "--kernel-log",
        log.path(),
    ]);
    let v = json(&o);
    // The tree's count, its 12 dumped entries, and no ctnetlink dump error.
    assert_eq!(v["summary"]["count"], 5000, "{v}");
    let unreadable = v["unreadable"].to_string();
    assert!(!unreadable.contains("dump"), "{unreadable}");
    // Evictable entries come from the dump: the 4 of the tree's 12 that
    // are not ASSURED (fixtures/export/README.md).
    assert_eq!(v["summary"]["evictable"], 4, "{v}");
}
