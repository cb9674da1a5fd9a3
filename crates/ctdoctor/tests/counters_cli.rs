//! Issue 20's counters and logs on fake `--root` trees: the stat file read
//! by its header on a 6.18 and a 4.19 layout (`chainlength` is
//! chaintoolong, old `delete_list` is not), the chain limit at max, and a
//! kernel log whose lines name another host judged as that host's log.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;
use common::{BIN, finding, json};

const TREE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/export/root");

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

/// A copy of the export tree with this kernel, host name and stat file.
struct Tree(PathBuf);

impl Tree {
    fn new(tag: &str, osrelease: &str, stat: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ctd-counters-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy(Path::new(TREE), &dir);
        let t = Self(dir);
        t.put("proc/sys/kernel/osrelease", osrelease);
        t.put("proc/sys/kernel/hostname", "web1\n");
        t.put("proc/net/stat/nf_conntrack", stat);
        t
    }
    /// Write `body` at `rel` in the tree (directories made as needed).
    fn put(&self, rel: &str, body: &str) {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, body).expect("write");
    }
    /// `check` with a saved kernel log holding `lines` (the tree's
    /// `kern.log`, rewritten each call).
    fn check_log(&self, lines: &str) -> (i32, Value) {
        self.put("kern.log", lines);
        let log = self.0.join("kern.log");
        self.check(&["--kernel-log", log.to_str().expect("utf8")])
    }
    fn s(&self) -> &str {
        self.0.to_str().expect("utf8")
    }
    fn check(&self, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["--root", self.s(), "check", "--json", "--no-dump"];
        args.extend_from_slice(extra);
        let o = Command::new(BIN).args(&args).output().expect("run");
        (o.status.code().unwrap_or(-1), json(&o))
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const NEW: &str = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
00001388  00000003 00001a2b 00000000 00000007 00000000 00000000 00000006 00000000 00000006 00000000 00000000 00000001  00000000 00000000 00000000 00000004
";
const OLD: &str = "entries  searched found new invalid ignore delete delete_list insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
00001388  00000003 00001a2b 00000000 00000007 00000000 00000000 00000006 00000000 00000000 00000000 00000000 00000001  00000000 00000000 00000000 00000004
";

fn evidence(v: &Value, id: &str) -> String {
    finding(v, id)
        .map(|f| f["evidence"].to_string())
        .unwrap_or_default()
}

#[test]
fn chainlength_is_chaintoolong_on_6_18_and_delete_list_is_not_on_4_19() {
    let t = Tree::new("new", "6.18.44\n", NEW);
    let (_, v) = t.check(&[]);
    let f = finding(&v, "counters.chaintoolong").expect("counters.chaintoolong");
    assert_eq!(f["severity"], "warning", "{f}");
    assert!(
        f["title"].as_str().unwrap_or("").contains("hash-flood"),
        "{f}"
    );
    assert!(
        evidence(&v, "counters.insert_failed").contains("chaintoolong=6 clash_resolve=3"),
        "{v}"
    );
    let t = Tree::new("old", "4.19.0\n", OLD);
    let (_, v) = t.check(&[]);
    assert!(finding(&v, "counters.chaintoolong").is_none(), "{v}");
    // `searched` (3) is not clash_resolve: this kernel does not report
    // either counter, so both are unknown, not 0.
    assert!(
        evidence(&v, "counters.drop").contains("chaintoolong=unknown clash_resolve=unknown"),
        "{v}"
    );
}

#[test]
fn a_log_of_another_host_is_not_weighed_against_this_drop_counter() {
    let mut stat = NEW.replace(
        "00000006 00000000 00000006 00000000",
        "00000000 00000000 00000000 00000005",
    );
    stat = stat.replace(" 00000003 ", " 00000000 ");
    let t = Tree::new("log", "6.18.44\n", &stat);
    let (code, v) = t.check_log(
        "Dec  5 10:00:00 otherhost kernel: nf_conntrack: table full, dropping packet\n\
         Dec 05 10:00:01 otherhost kernel: nf_conntrack: table full, dropping packet\n",
    );
    let f = finding(&v, "log.other_host").expect("log.other_host");
    let title = f["title"].as_str().unwrap_or("");
    assert!(
        title.contains("otherhost: 2") && title.contains("another host's log, not web1's"),
        "{title}"
    );
    // This host dropped 5 and no line of its own dates them: otherhost's
    // lines do not count as this host's table-full messages.
    assert_ne!(code, 0, "{v}");
    assert!(
        evidence(&v, "counters.drop").contains("cannot be dated"),
        "{v}"
    );
    assert_eq!(
        finding(&v, "log.table_full").map(|f| f["severity"].clone()),
        Some("ok".into()),
        "{v}"
    );
    // A mixed file: web1's own line is weighed, otherhost's reported apart.
    let (_, v) = t.check_log(
        "Dec  5 10:00:00 otherhost kernel: nf_conntrack: table full, dropping packet\n\
         Dec  5 10:00:02 web1 kernel: nf_conntrack: table full, dropping packet\n",
    );
    let title = finding(&v, "log.other_host")
        .map(|f| f["title"].to_string())
        .unwrap_or_default();
    assert!(
        title.contains("otherhost: 1") && title.contains("the rest of the log is web1's"),
        "{title}"
    );
    assert!(finding(&v, "log.table_full").is_some(), "{v}");
}

#[test]
fn chains_at_max_near_the_limit_warn_by_kernel_version() {
    // The tree's max over buckets; 5.15's limit (8..31) is nearer than 6.18's.
    let t = Tree::new("limit", "5.15.0-91-generic\n", NEW);
    t.put("proc/sys/net/netfilter/nf_conntrack_buckets", "1024\n");
    t.put("proc/sys/net/netfilter/nf_conntrack_max", "4096\n");
    let (_, v) = t.check(&[]);
    let f = finding(&v, "table.chain_limit").expect("table.chain_limit");
    assert!(f["title"].as_str().unwrap_or("").contains("8..31"), "{f}");
    t.put("proc/sys/kernel/osrelease", "6.18.44\n");
    let (_, v) = t.check(&[]);
    assert!(finding(&v, "table.chain_limit").is_none(), "{v}");
}

/// Issue 20 W6: a stat file without the drop columns, without CPU rows,
/// or naming a column twice is malformed and the drops unknown, never
/// "no packets dropped (drop counter is 0)".
#[test]
fn a_stat_file_without_its_columns_is_unknown_not_zero_drops() {
    let t = Tree::new("malformed", "6.18.44\n", NEW);
    for (stat, why) in [
        (
            "entries found new\n00000001 00000002 00000003\n",
            "no insert_failed column",
        ),
        ("ENTRIES DROP\n00000001 00000002\n", "no entries column"),
        ("foo\n", "no entries column"),
        ("entries insert_failed drop early_drop\n", "no CPU rows"),
        (
            "entries drop drop\n00000001 00000005 00000001\n",
            "column drop twice",
        ),
    ] {
        t.put("proc/net/stat/nf_conntrack", stat);
        let (_, v) = t.check(&[]);
        let f = finding(&v, "counters.drop").expect("counters.drop");
        assert_eq!(f["severity"], "info", "{stat:?}: {f}");
        assert!(
            f["title"]
                .as_str()
                .unwrap_or("")
                .starts_with("drop counter unknown"),
            "{stat:?}: {f}"
        );
        assert!(f["evidence"].to_string().contains(why), "{stat:?}: {f}");
        let unreadable = v["unreadable"].to_string();
        assert!(
            unreadable.contains("/proc/net/stat/nf_conntrack") && unreadable.contains(why),
            "{stat:?}: {unreadable}"
        );
    }
}

/// Issue 20 W8: what `logger` writes (any local user can, into syslog) is
/// not a kernel table-full line.
#[test]
fn a_user_space_table_full_line_is_not_the_kernels() {
    let t = Tree::new("logger", "6.18.44\n", NEW);
    let (code, v) = t
        .check_log("Dec  7 13:19:45 web1 nobody[123]: nf_conntrack: table full, dropping packet\n");
    assert_eq!(
        finding(&v, "log.table_full").map(|f| f["severity"].clone()),
        Some("ok".into()),
        "{v}"
    );
    assert_ne!(code, 2, "{v}");
    let (_, v) =
        t.check_log("Dec  7 13:19:45 web1 kernel: nf_conntrack: table full, dropping packet\n");
    assert_ne!(
        finding(&v, "log.table_full").map(|f| f["severity"].clone()),
        Some("ok".into()),
        "{v}"
    );
}

/// Issue 20 W7: only an absent nf_conntrack_max means "not loaded"; a
/// symlink loop is unreadable: UNKNOWN with the path in `unreadable[]`.
#[test]
fn a_looping_nf_conntrack_max_is_unknown_not_unused() {
    // No drops and an empty log: nothing else to warn about.
    let zero = NEW.lines().next().unwrap_or("").to_string() + "\n" + &"00000000 ".repeat(17) + "\n";
    let t = Tree::new("loop", "6.18.44\n", &zero);
    let max = t.0.join("proc/sys/net/netfilter/nf_conntrack_max");
    let (code, v) = t.check_log("");
    assert_eq!(code, 0, "the tree without a loop: {v}");
    std::fs::remove_file(&max).expect("rm max");
    std::os::unix::fs::symlink("nf_conntrack_max", &max).expect("symlink");
    let (code, v) = t.check_log("");
    assert_eq!(code, 3, "{v}");
    assert!(finding(&v, "conntrack.unused").is_none(), "{v}");
    assert!(
        v["unreadable"].to_string().contains("nf_conntrack_max"),
        "{v}"
    );
    std::fs::remove_file(&max).expect("rm loop");
    let (code, v) = t.check_log("");
    assert_eq!(code, 0, "{v}");
    assert!(finding(&v, "conntrack.unused").is_some(), "{v}");
}
