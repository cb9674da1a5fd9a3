//! `check --all-netns` reads each namespace's own `drop` counter (ctnetlink
//! GET_STATS_CPU inside it, with its count) and shows it in the netns.*
//! findings: it says which namespace dropped, which a kernel log line
//! naming a (reusable) inode cannot. The test creates and deletes its own
//! namespaces.

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use ctlab::Netns;
use serde_json::Value;

mod common;
use common::{BIN, evidence, global_max, inode_of, must_find};

/// One namespace filled to the max with ASSURED entries drops a loopback
/// connect (its drop counter goes up); a second, with a few entries, drops
/// nothing. --all-netns shows each its own counter.
#[test]
fn all_netns_shows_each_namespaces_own_drop_counter() {
    ctlab::require_root!();
    let full = Netns::create("nsdropfull").expect("netns");
    full.track_loopback().expect("nft ct rule");
    full.insert(&ctlab::fill(global_max(), true))
        .expect("fill to max");
    let refused = full
        .run(|| {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            TcpStream::connect_timeout(&addr, Duration::from_millis(1500)).is_err()
        })
        .expect("in netns");
    assert!(refused, "connect must fail: the table is full");
    let calm = Netns::create("nsdropcalm").expect("netns");
    // Enough entries to rank among the ten fullest namespaces the finding
    // lists, whatever other tests' namespaces hold; far below the max.
    calm.insert(&ctlab::fill(5000, true)).expect("insert");

    let out = Command::new(BIN)
        .args(["check", "--all-netns", "--json"])
        .output()
        .expect("run ctdoctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"));

    let (fi, ci) = (inode_of(&full), inode_of(&calm));
    let all = evidence(must_find(&v, "netns.all"));
    let row = |ns: &Netns, inode: u64| {
        let head = format!("{} (inode {inode}): ", ns.name());
        all.iter()
            .find_map(|r| r.strip_prefix(head.as_str()))
            .unwrap_or_else(|| panic!("no {head:?} in {all:?}"))
            .to_string()
    };
    assert_eq!(row(&calm, ci), "5000, drop 0");
    let drops: u64 = row(&full, fi)
        .rsplit_once(", drop ")
        .and_then(|(_, d)| d.parse().ok())
        .unwrap_or_else(|| panic!("no drop counter in {all:?}"));
    assert!(drops >= 1, "{all:?}");
    let full_finding = must_find(&v, &format!("netns.{fi}"));
    assert_eq!(full_finding["severity"], "critical");
    assert!(
        evidence(full_finding).contains(
            &format!("drop counter of this namespace: {drops} packets dropped, table full")
                .as_str()
        ),
        "{full_finding:#}"
    );
}
