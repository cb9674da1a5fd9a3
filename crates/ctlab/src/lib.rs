//! ctlab: what the integration tests and benchmarks need to build real
//! conntrack tables: network namespaces that delete themselves (even when a
//! test panics), a deterministic mix of entries, and bulk insertion over
//! ctnetlink, and the root check every kernel test starts with
//! ([`require_root!`]). Never touches the initial namespace's table.

pub mod abuse;
pub mod churn;
pub mod host;
pub mod mix;
pub mod netns;
pub mod root;
pub mod traffic;

pub use host::global_max;
pub use mix::{Mix, fill, generate};
pub use netns::Netns;
pub use root::skip_unless_root;

/// Run `program` as `nobody` with no capabilities (setpriv), for tests of
/// what an unprivileged user sees. When this process is not root it runs
/// `program` directly: it is unprivileged already, and setpriv could not
/// change user (so these tests also run in an ordinary user's `cargo test`).
pub fn run_unprivileged(program: &str, args: &[&str]) -> anyhow::Result<std::process::Output> {
    use anyhow::Context;
    if !nix::unistd::geteuid().is_root() {
        return std::process::Command::new(program)
            .args(args)
            .output()
            .with_context(|| format!("running {program}"));
    }
    std::process::Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
            program,
        ])
        .args(args)
        .output()
        .context("running setpriv")
}
