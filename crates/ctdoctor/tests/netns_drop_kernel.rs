//! `check --all-netns` reads each namespace's own `drop` counter (ctnetlink
//! GET_STATS_CPU inside it, with its count) and shows it in the netns.*
//! findings. The test creates and deletes its own namespace.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use ctlab::Netns;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ctdoctor");

#[test]
fn all_netns_shows_each_namespaces_own_drop_counter() {
    let ns = Netns::create("nsdrop").expect("netns");
    // Enough entries to rank among the ten fullest namespaces the finding
    // lists, whatever other tests' namespaces hold; far below the max.
    ns.insert(&ctlab::fill(5000, true)).expect("insert");
    let inode = std::fs::metadata(format!("/run/netns/{}", ns.name()))
        .expect("netns file")
        .ino();
    let out = Command::new(BIN)
        .args(["check", "--all-netns", "--json"])
        .output()
        .expect("run ctdoctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"));
    let all = v["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["id"] == "netns.all"))
        .unwrap_or_else(|| panic!("no netns.all: {v:#}"));
    // Inserting over ctnetlink never drops: the counter read there is 0,
    // not the host's or another namespace's.
    let row = format!("{} (inode {inode}): 5000, drop 0", ns.name());
    assert!(
        all["evidence"]
            .as_array()
            .is_some_and(|e| e.iter().any(|r| r == row.as_str())),
        "no {row:?} in {all:#}"
    );
}
