//! `check --all-netns` names what lives in each namespace (cthost::owners):
//! a namespace the test creates, with `sleep` started in it by
//! `ip netns exec`, is owned by "sleep"; the initial namespace by "host".
//! The test deletes its namespace and kills its process (guards, also on
//! a panic).

use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ctlab::Netns;
use serde_json::Value;

mod common;
use common::{inode_of, json, run, text};

/// A child process killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ip netns exec NS sleep 600`, returned once the process is `sleep`
/// inside the namespace (ip execs it after setns).
fn sleep_in(ns: &Netns) -> Reaped {
    let child = Command::new("ip")
        .args(["netns", "exec", ns.name(), "sleep", "600"])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn ip netns exec");
    let child = Reaped(child);
    let pid = child.0.id();
    let want = inode_of(ns);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let inside =
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == want);
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if inside && comm.trim() == "sleep" {
            return child;
        }
        assert!(
            Instant::now() < deadline,
            "sleep never entered {}",
            ns.name()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn all_netns_names_the_process_inside_as_owner() {
    ctlab::require_root!();
    let ns = Netns::create("owners-sleep").expect("netns");
    let _sleep = sleep_in(&ns);
    let inode = inode_of(&ns);

    let v = json(&run(&["check", "--all-netns", "--json"]));
    let rows = v["namespaces"]
        .as_array()
        .unwrap_or_else(|| panic!("no namespaces in {v:#}"));
    let row = |inode: u64| {
        rows.iter()
            .find(|r| r["inode"] == inode)
            .unwrap_or_else(|| panic!("no namespace {inode} in {rows:#?}"))
    };
    assert_eq!(row(inode)["owner"], "sleep", "{:#}", row(inode));
    assert_eq!(row(inode)["name"], ns.name());
    // PID 1 may be protected here; kthreadd's namespace is the initial one.
    let init = cthost::namespaces::init_inode(&cthost::source::Root::default())
        .expect("initial namespace inode");
    assert_eq!(row(init)["owner"], "host");

    let out = run(&["check", "--all-netns", "--color", "never"]);
    let report = text(&out);
    let want = format!("{}, owner sleep (inode {inode})", ns.name());
    // The text wraps at 80 columns: compare with whitespace collapsed.
    let flat = report.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains(&want), "no {want:?} in:\n{report}");
}

/// Without --all-netns the JSON has no `namespaces` field (unchanged).
#[test]
fn namespaces_field_only_with_all_netns() {
    let v: Value = json(&run(&["check", "--json", "--no-dump"]));
    assert!(v.get("namespaces").is_none(), "{v:#}");
}
