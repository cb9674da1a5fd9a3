//! ctcore: the pure core of ctdoctor. Every policy the commands share lives
//! here once, as values in and values out; nothing in this crate reads the
//! system (Cargo enforces it: no I/O crate among the dependencies).
//!
//! - parsers of what the host layer reads: [`slab`] (/proc/slabinfo,
//!   /proc/meminfo), [`stat`] (/proc/net/stat/nf_conntrack), [`kernel_log`]
//!   (every table-full text in every log format, dating, scan), [`ruleset`]
//!   (nft JSON, iptables-save)
//! - [`duration`]: the duration syntax and bounds of every flag
//! - [`bpf`]: Cilium and Calico eBPF conntrack maps: names, agent flags, fill
//! - [`counters`]: per-CPU stat counters, their sums and wrap-safe increases
//! - [`facts`]: the plain values readers fill and rules take
//! - [`fidelity`]: a kernel run's curve against the model's, with the
//!   tolerances the simulator is held to
//! - [`diagnose`]: the rules from facts to findings and a verdict
//! - [`drift`]: persisted conntrack settings (sysctl.d, modprobe.d,
//!   modules-load.d), kube-proxy's flags and config, and who undid a fix
//! - [`lab`]: a lab run's samples, summary and kernel-log tally
//! - [`netns_max`]: per-namespace `nf_conntrack_max`: detection, effective limit
//! - [`forecast`]: steady state and time to full from arrivals and
//!   lifetimes, the change that avoids a full table, two-dump arrivals
//! - [`plan`]: sizing and timeout policy, and the files it renders
//! - [`resync`]: when an event-fed live set is re-read with a dump
//! - [`time`]: wall-clock text (RFC 3339 UTC)
//! - [`timeouts`]: the timeout sysctls, their defaults, floors and classes
//! - [`version`]: the kernel version every version-dependent rule takes
//! - [`watch`]: what `watch` shows for one interval (rates, ranks, status)
//! - [`workload`]: address to container/pod, `name (ip)`, per-workload rows
//!   and the exporter's bounded top-N-plus-other ranking

pub mod bpf;
pub mod counters;
pub mod diagnose;
pub mod drift;
pub mod duration;
pub mod facts;
pub mod fidelity;
pub mod forecast;
pub mod kernel_log;
pub mod lab;
pub mod netns_max;
pub mod plan;
pub mod resync;
pub mod ruleset;
pub mod slab;
pub mod stat;
pub mod time;
pub mod timeouts;
pub mod version;
pub mod watch;
pub mod workload;
