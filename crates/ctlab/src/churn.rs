//! A steady stream of new conntrack entries, inserted over ctnetlink at a
//! fixed rate with a short timeout, so a benchmark's table turns over
//! (new and destroy events at the same rate) without any traffic. Runs in
//! the calling thread's network namespace: the caller's throwaway one.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::mix::{Mix, generate};
use crate::traffic::pacer::Pacer;

/// What to insert: `rate` entries per second for `duration`, each expiring
/// `timeout` seconds after it is inserted.
#[derive(Debug, Clone)]
pub struct Churn {
    pub rate: f64,
    pub duration: Duration,
    pub timeout: u32,
    pub seed: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ChurnReport {
    pub inserted: u64,
    /// Refused inserts (a tuple the generator repeated: EEXIST), by count.
    pub failed: u64,
    /// Inserts the pacer forgave because the inserter fell behind.
    pub skipped: u64,
    pub seconds: f64,
}

/// Insert at the plan's rate until its deadline.
pub fn run(plan: &Churn) -> Result<ChurnReport> {
    // Batches of up to 50 ms worth, one every 10 ms at most: few syscalls,
    // and room to catch up after a slow insert.
    let burst = ((plan.rate / 20.0).ceil() as u64).max(1);
    let mut pacer = Pacer::new(plan.rate, burst, burst.saturating_mul(20))
        .context("the rate must be a positive number")?;
    let mut ct = ctnetlink::Conntrack::open()?;
    let mix = Mix {
        timeout: plan.timeout,
        sources: 50_000,
        exotic: false,
    };
    let mut out = ChurnReport::default();
    let start = Instant::now();
    let mut batch_no = 0u64;
    while start.elapsed() < plan.duration {
        let due = pacer.due(start.elapsed());
        if due > 0 {
            batch_no += 1;
            let mut entries =
                generate(usize::try_from(due)?, plan.seed.wrapping_add(batch_no), mix);
            for e in &mut entries {
                e.timeout = Some(plan.timeout);
            }
            let r = ct.create(&entries)?;
            out.inserted += r.ok;
            out.failed += r.failures();
        }
        std::thread::sleep(pacer.wait(start.elapsed()).max(Duration::from_millis(10)));
    }
    out.skipped = pacer.skipped();
    out.seconds = start.elapsed().as_secs_f64();
    Ok(out)
}
