//! ctlab: what the integration tests and benchmarks need to build real
//! conntrack tables: network namespaces that delete themselves (even when a
//! test panics), a deterministic mix of entries, and bulk insertion over
//! ctnetlink. Never touches the initial namespace's table.

pub mod mix;
pub mod netns;
pub mod traffic;

pub use mix::{Mix, fill, generate};
pub use netns::Netns;

/// Run `program` as `nobody` with no capabilities (setpriv), for tests of
/// what an unprivileged user sees.
pub fn run_unprivileged(program: &str, args: &[&str]) -> anyhow::Result<std::process::Output> {
    use anyhow::Context;
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
