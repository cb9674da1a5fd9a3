//! Read-only facts of the host that kernel tests compare with: the global
//! nf_conntrack_max, which every namespace's count is measured against
//! (the sysctl is read-only inside a namespace other than the initial one).

use anyhow::{Context, Result};

const NF_CONNTRACK_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";

/// The global nf_conntrack_max.
pub fn global_max() -> Result<u64> {
    let text = std::fs::read_to_string(NF_CONNTRACK_MAX)
        .with_context(|| format!("reading {NF_CONNTRACK_MAX}"))?;
    text.trim()
        .parse()
        .with_context(|| format!("{NF_CONNTRACK_MAX}: not a number: {text:?}"))
}
