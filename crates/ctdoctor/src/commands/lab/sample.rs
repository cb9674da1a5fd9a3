//! Sampling the lab namespace's kernel table: its count and max, the
//! per-CPU counters and a per-state dump of the traffic's entries (the
//! pre-fill, told apart by its mark, excluded).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use ctcore::counters::{Counters, CpuStats};
use ctnetlink::{Conntrack, Family};

use ctcore::lab::{Point, state_key};

/// The pre-fill entries: long-lived ASSURED ESTABLISHED TCP entries from
/// 10.0.0.0/8 to 172.16.0.1:443 (told apart from traffic in dumps).
/// They carry [`PREFILL_MARK`] so that the per-step dump asks the kernel
/// for traffic entries only (mark 0): copying out 240k pre-fill entries
/// every second cost 0.7 s of CPU.
pub(super) fn prefill_entries(n: usize) -> Vec<ctmodel::Entry> {
    let mut v = ctlab::fill(n, true);
    for e in &mut v {
        e.timeout = Some(86_400);
        e.mark = Some(PREFILL_MARK);
    }
    v
}

/// The conntrack mark of pre-fill entries ("LAB" in ASCII, low bit set).
pub const PREFILL_MARK: u32 = 0x004c_4142;

fn is_prefill(e: &ctmodel::Entry) -> bool {
    e.orig.dst == std::net::IpAddr::V4(std::net::Ipv4Addr::new(172, 16, 0, 1))
        && e.orig.dport() == Some(443)
}

/// The namespace's per-CPU stat counters, read raw: increases are taken
/// CPU by CPU (ctcore), so a counter that wraps mid-run still counts right.
pub(super) fn counters(ct: &mut Conntrack) -> Result<Vec<CpuStats>> {
    ct.stats_cpu().context("reading per-CPU stats")
}

/// Take one sample: count and max, counters, per-state dump.
pub(super) fn sample(
    ct: &mut Conntrack,
    base: &[CpuStats],
    prefill: u64,
) -> Result<(Point, Counters)> {
    let g = ct.stats().context("reading the namespace's count")?;
    let c = Counters::delta(base, &counters(ct)?);
    let mut by_state = BTreeMap::new();
    // The count is read before the dump: the dump reaps every expired entry
    // it passes (ctnetlink_dump_table), so the next sample sees at most one
    // step of expired entries. --compare-sim models that observer
    // (ctsim::Scenario::dump_each_step).
    // Kernel-side filter: mark & PREFILL_MARK == 0, i.e. traffic only; the
    // check below still holds where the kernel ignores the filter.
    ct.dump_marked(Family::Any, 0, PREFILL_MARK, |e| {
        if !is_prefill(e) {
            *by_state.entry(state_key(e)).or_insert(0) += 1;
        }
    })
    .context("dumping the namespace's table")?;
    let count = u64::from(g.entries);
    let global_max = u64::from(g.max_entries.unwrap_or(0));
    Ok((Point::new(count, global_max, prefill, &c, by_state), c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefill_is_recognised() {
        let v = prefill_entries(3);
        assert!(v.iter().all(is_prefill));
        assert!(v.iter().all(|e| e.assured()));
        assert_eq!(state_key(&v[0]), "tcp/ESTABLISHED");
    }
}
