//! The eBPF map rule: one finding per Cilium or Calico conntrack map, its
//! entries against max_entries, banded by check's --warn/--crit; a full map
//! drops (or fails to track) new connections whatever nf_conntrack says.

use super::*;
use crate::bpf::{self, Band};

pub(super) fn bpf_maps(f: &Facts, t: &Thresholds) -> Vec<Finding> {
    f.bpf_maps
        .iter()
        .map(|m| {
            let band = bpf::band(m, t.warn, t.crit);
            let fill = m.fill_percent();
            let who = m.datapath.label();
            let (severity, title) = match band {
                Band::Critical => (
                    Severity::Critical,
                    format!(
                        "{who} CT map {} is {fill:.1}% full: new connections fail to be tracked",
                        m.name
                    ),
                ),
                Band::Warning => (
                    Severity::Warning,
                    format!("{who} CT map {} is {fill:.1}% full", m.name),
                ),
                Band::Ok => (
                    Severity::Ok,
                    format!("{who} CT map {}: {fill:.1}% full", m.name),
                ),
            };
            Finding {
                id: FindingId::BpfMap(m.name.clone()),
                severity,
                title,
                evidence: vec![format!(
                    "{}/{}: {} of max_entries {} ({fill:.1}%; warn {}%, crit {}%)",
                    bpf::PIN_DIR,
                    m.name,
                    m.entries,
                    m.max_entries,
                    t.warn,
                    t.crit
                )],
                fix: match band {
                    Band::Ok => vec![],
                    _ => vec![bpf::raise(m)],
                },
            }
        })
        .collect()
}
