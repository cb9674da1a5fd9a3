//! cthost: the host layer. It reads the system (paths under a configurable
//! root, commands, ctnetlink) into ctcore's plain facts, and applies plans.
//!
//! - [`host::Host`]: the seam every command reads the system through
//!   (root, ctnetlink, kernel log, clock)
//! - readers: [`source`] (paths under a configurable root, classified
//!   errors), [`services`], [`namespaces`], [`owners`] (who lives in each
//!   namespace), [`cloud`] (`ethtool -S` of ENA NICs), [`bpf`] (Cilium and
//!   Calico eBPF conntrack maps, bpf(2) in `bpf_sys`), [`gather`] (all of it
//!   into [`facts::Facts`]), [`drift`] (persisted settings, kube-proxy,
//!   the apply journal), [`counts`] (each namespace's count and drops), [`table`] (every
//!   entry: a dump, or a tree's /proc file)
//! - [`apply`]: the only code that writes to the system (journal, rollback)
//! - the pure parsers, facts, rules and policy are ctcore's, re-exported.

pub mod addresses;
pub mod apply;
// The pure parsers, facts, rules and policy live in ctcore; re-exported so
// `cthost::plan` and friends keep naming them.
pub use ctcore::{diagnose, facts, kernel_log, plan, ruleset, slab, stat};
pub mod bpf;
mod bpf_sys;
pub mod cloud;
pub mod counts;
pub mod drift;
pub mod gather;
pub mod host;
pub mod kmsg;
pub mod namespaces;
pub mod owners;
pub mod services;
pub mod source;
pub mod table;

pub use host::Host;
