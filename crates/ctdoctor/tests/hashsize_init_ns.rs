//! The one test that changes an initial-namespace global: apply a new
//! hashsize from the initial namespace, check it, roll it back. Alone in
//! its test binary (so nothing runs beside it), and the old value is
//! restored by a guard even when an assertion fails.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ctdoctor");
const HASHSIZE: &str = "/sys/module/nf_conntrack/parameters/hashsize";

fn read(p: &str) -> u64 {
    std::fs::read_to_string(p)
        .expect("read")
        .trim()
        .parse()
        .expect("number")
}

/// Restores the hashsize it saw on creation when dropped (also on panic).
struct Restore(u64);

impl Drop for Restore {
    fn drop(&mut self) {
        if read(HASHSIZE) != self.0 {
            let _ = std::fs::write(HASHSIZE, format!("{}\n", self.0));
        }
    }
}

#[test]
fn apply_and_roll_back_hashsize_in_the_initial_namespace() {
    ctlab::require_root!("writes /sys/module/nf_conntrack/parameters/hashsize");
    let old = read(HASHSIZE);
    let max = read("/proc/sys/net/netfilter/nf_conntrack_max");
    let _guard = Restore(old);
    let dir = std::env::temp_dir().join(format!("ctdoctor-hashsize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let plan = dir.join("plan.json");
    let new = old + 512;
    std::fs::write(
        &plan,
        format!(
            r#"{{"settings": {{"nf_conntrack_max": {max}, "hashsize": {new}, "timeouts": {{}}}}}}"#
        ),
    )
    .expect("plan");
    let state = dir.to_string_lossy().to_string();
    let plan_arg = plan.to_string_lossy().to_string();

    let o = Command::new(BIN)
        .args(["apply", "--plan", &plan_arg, "--yes", "--state-dir", &state])
        .output()
        .expect("apply");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read(HASHSIZE), new);
    assert_eq!(read("/proc/sys/net/netfilter/nf_conntrack_buckets"), new);
    assert_eq!(
        read("/proc/sys/net/netfilter/nf_conntrack_max"),
        max,
        "resizing never changes max"
    );

    let o = Command::new(BIN)
        .args(["rollback", "--state-dir", &state])
        .output()
        .expect("rollback");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read(HASHSIZE), old);
    let _ = std::fs::remove_dir_all(&dir);
}
