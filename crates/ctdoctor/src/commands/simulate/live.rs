//! `--from-live`: the current table of this namespace (`--netns` enters
//! another one first) as a seed for the model: entries per `proto/STATE`
//! with their remaining timeouts and ASSURED share, and the creation rate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

/// Entries of one `proto/STATE` in the live table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Group {
    pub count: u64,
    pub assured: u64,
    /// Remaining timeouts in seconds, one per entry (the model draws the
    /// seeded entries' expiries from these).
    pub remaining_s: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Seed {
    pub groups: BTreeMap<ctmodel::flows::ClassKey, Group>,
    /// New entries per second, measured.
    pub rate: f64,
    pub rate_source: String,
}

/// Fold one dumped entry into the seed.
pub fn add(seed: &mut Seed, e: &ctmodel::Entry) {
    let g = seed
        .groups
        .entry(ctmodel::flows::ClassKey::of(e))
        .or_default();
    g.count += 1;
    if e.assured() {
        g.assured += 1;
    }
    if let Some(t) = e.timeout {
        g.remaining_s.push(t);
    }
}

/// Dump the table and measure the creation rate over one second.
pub fn measure(host: &cthost::Host) -> Result<(Seed, Vec<String>)> {
    let mut c = host.conntrack().context("--from-live: open ctnetlink")?;
    let mut seed = Seed::default();
    let t0 = Instant::now();
    let cpus0 = c.stats_cpu().ok();
    let n0 = c.stats().ok().map(|s| u64::from(s.entries));
    let summary = c
        .dump(ctnetlink::Family::Any, |e| add(&mut seed, e))
        .context("--from-live: dump the table")?;
    let left = Duration::from_secs(1).saturating_sub(t0.elapsed());
    std::thread::sleep(left);
    let secs = t0.elapsed().as_secs_f64();
    // Per-CPU delta: each CPU's u32 counter may wrap on its own.
    let inserted = match (cpus0, c.stats_cpu().ok()) {
        (Some(a), Some(b)) => ctcore::counters::Counters::delta(&a, &b).insert,
        _ => None,
    };
    let n1 = c.stats().ok().map(|s| u64::from(s.entries));
    let mut notes = vec![format!(
        "live table: {} entries dumped in {} groups{}",
        summary.entries,
        seed.groups.len(),
        if summary.interrupted {
            " (dump interrupted: the table changed during it)"
        } else {
            ""
        }
    )];
    match (inserted, n0, n1) {
        (Some(d), _, _) if d > 0 => {
            seed.rate = d as f64 / secs;
            seed.rate_source = format!("per-CPU insert counter over {secs:.2} s");
        }
        (_, Some(a), Some(b)) => {
            seed.rate = b.saturating_sub(a) as f64 / secs;
            seed.rate_source = format!(
                "count delta over {secs:.2} s (a lower bound: the insert counter is not kept by this kernel, and expiries hide creations)"
            );
        }
        _ => seed.rate_source = "not measured (no stats)".into(),
    }
    notes.push(format!(
        "live creation rate {:.1}/s from the {}",
        seed.rate, seed.rate_source
    ));
    Ok((seed, notes))
}
