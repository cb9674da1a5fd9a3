//! cthost: facts about the host that bear on conntrack exhaustion, and the
//! rules that turn them into findings.
//!
//! - pure parsers: [`slab`] (/proc/slabinfo, /proc/meminfo), [`stat`]
//!   (/proc/net/stat/nf_conntrack), [`kernel_log`] (every table-full text in
//!   every log format), [`ruleset`] (nft JSON, iptables-save), [`cloud`]
//!   (`ethtool -S` of ENA NICs)
//! - readers: [`source`] (paths under a configurable root, classified
//!   errors), [`services`], [`namespaces`], [`owners`] (who lives in each
//!   namespace), [`gather`] (all of it into
//!   [`gather::Facts`])
//! - [`facts`]: the plain values readers fill and rules take
//! - [`diagnose`]: pure rules from facts to findings and a verdict.

pub mod apply;
pub mod cloud;
pub mod diagnose;
pub mod facts;
pub mod gather;
pub mod kernel_log;
pub mod namespaces;
pub mod owners;
pub mod plan;
pub mod ruleset;
pub mod services;
pub mod slab;
pub mod source;
pub mod stat;
