//! The one test that changes an initial-namespace global: apply a new
//! hashsize from the initial namespace, check it, roll it back. Alone in
//! its test binary (so nothing runs beside it), and the old value is
//! restored by a guard even when an assertion fails.

mod common;

use common::{TempDir, read_u64, run, text};

const HASHSIZE: &str = "/sys/module/nf_conntrack/parameters/hashsize";

/// Restores the hashsize it saw on creation when dropped (also on panic).
struct Restore(u64);

impl Drop for Restore {
    fn drop(&mut self) {
        if read_u64(HASHSIZE) != self.0 {
            let _ = std::fs::write(HASHSIZE, format!("{}\n", self.0));
        }
    }
}

#[test]
fn apply_and_roll_back_hashsize_in_the_initial_namespace() {
    ctlab::require_root!("writes /sys/module/nf_conntrack/parameters/hashsize");
    let old = read_u64(HASHSIZE);
    let max = read_u64("/proc/sys/net/netfilter/nf_conntrack_max");
    let _guard = Restore(old);
    let dir = TempDir::new("hashsize");
    let new = old + 512;
    dir.put(
        "plan.json",
        &format!(
            r#"{{"settings": {{"nf_conntrack_max": {max}, "hashsize": {new}, "timeouts": {{}}}}}}"#
        ),
    );
    let plan = dir.p("plan.json");
    let plan = plan.to_str().expect("utf8 path");

    let o = run(&["apply", "--plan", plan, "--yes", "--state-dir", dir.s()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(read_u64(HASHSIZE), new);
    assert_eq!(
        read_u64("/proc/sys/net/netfilter/nf_conntrack_buckets"),
        new
    );
    assert_eq!(
        read_u64("/proc/sys/net/netfilter/nf_conntrack_max"),
        max,
        "resizing never changes max"
    );

    let o = run(&["rollback", "--state-dir", dir.s()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(read_u64(HASHSIZE), old);
}
