//! The one place that calls the simulator crate (ctsim): builds its
//! scenario from the workload, the layered table settings and the live
//! seed, runs it and returns the timeline in the contract's shape.

use anyhow::{Context, Result};
use ctsim::{Class, Initial, Lifecycle, Scenario};

use super::live::Seed;
use super::report::Timeline;
use super::{Table, Workload};
use crate::exit::Usage;

/// Used when neither the host nor a flag says (the kernel's default on
/// a machine with 8 GiB of RAM or more: 262144 buckets, max = buckets).
pub const FALLBACK_MAX: u64 = 262_144;

/// The most hash buckets simulated: the model keeps one chain head (24
/// bytes) per bucket, so 2^25 buckets cost 800 MiB. Far above real tables
/// (the kernel chooses 262144 on 8 GiB+ hosts; 2^25 is 8 GiB of buckets in
/// a 256 GiB host's table).
pub const MAX_BUCKETS: u32 = 1 << 25;

/// nf_conntrack_max's own ceiling (cthost's sizing).
pub const MAX_MAX: u64 = cthost::plan::sizing::MAX_MAX;

pub fn builtin_names() -> &'static [&'static str] {
    Scenario::builtin_names()
}

/// `--lifecycle NAME` with ctsim's defaults for its parameters.
fn lifecycle(name: &str) -> Result<Lifecycle, Usage> {
    Lifecycle::from_name(name).ok_or_else(|| {
        Usage(format!(
            "--lifecycle {name:?}: one of {}",
            super::args::LIFECYCLES.join(", ")
        ))
    })
}

/// The ctsim scenario of a workload with `table` laid over its own table.
/// Live entries in states the model does not have (GRE, SCTP, ...) are
/// left out and said in `notes`.
pub fn build(
    work: &Workload,
    table: &Table,
    live: Option<&Seed>,
    notes: &mut Vec<String>,
) -> Result<Scenario> {
    let mut sc = match work {
        Workload::Named(n) => Scenario::builtin(n).ok_or_else(|| {
            Usage(format!(
                "unknown scenario {n:?}; built-in: {}",
                builtin_names().join(", ")
            ))
        })?,
        Workload::File { path, text } => Scenario::from_toml(text)
            .with_context(|| format!("scenario file {}", path.display()))?,
        Workload::OneClass { rate, lifecycle: l } => {
            let class = Class::poisson(l, *rate, lifecycle(l)?);
            Scenario::single(FALLBACK_MAX, FALLBACK_MAX as u32, class)
        }
        Workload::Live => anyhow::bail!("--from-live: the creation rate was not measured"),
    };
    if let Some(m) = table.max {
        sc.table.max = m;
    }
    if let Some(b) = table.buckets {
        sc.table.buckets =
            u32::try_from(b).map_err(|_| Usage(format!("--buckets {b}: at most {}", u32::MAX)))?;
    }
    if let Some(k) = &table.kernel {
        sc.table.kernel.clone_from(k);
    }
    for (k, v) in &table.timeouts {
        sc.table.timeouts.insert(k.clone(), *v as f64);
    }
    let mut skipped: Vec<String> = Vec::new();
    if let Some(seed) = live {
        for (key, g) in &seed.groups {
            let state = match key.l4() {
                "icmpv6" => format!("icmp/{}", key.state()),
                _ => key.to_string(),
            };
            if ctsim::State::parse(&state).is_none() {
                skipped.push(format!("{key} {}", g.count));
                continue;
            }
            let (lo, hi) = g
                .remaining_s
                .iter()
                .fold((u32::MAX, 0), |(lo, hi), &r| (lo.min(r), hi.max(r)));
            let range = if g.remaining_s.is_empty() {
                [0.0, 0.0]
            } else {
                [f64::from(lo), f64::from(hi)]
            };
            for (count, assured) in [(g.assured, true), (g.count - g.assured, false)] {
                if count > 0 {
                    sc.initial.push(Initial {
                        state: state.clone(),
                        count,
                        remaining_s: range,
                        assured,
                    });
                }
            }
        }
    }
    if !skipped.is_empty() {
        notes.push(format!(
            "live entries the model has no state for, not seeded: {}",
            skipped.join(", ")
        ));
    }
    if sc.table.buckets > MAX_BUCKETS {
        return Err(Usage(format!(
            "{} buckets: the model simulates at most {MAX_BUCKETS} (2^25; one 24-byte chain head each)",
            sc.table.buckets
        ))
        .into());
    }
    if sc.table.max > MAX_MAX {
        return Err(Usage(format!(
            "max {}: the kernel accepts at most {MAX_MAX}",
            sc.table.max
        ))
        .into());
    }
    // Below the kernel's bound: the model keeps every entry in memory
    // (issue 21: a flag never sizes memory without a bound, and a value
    // past it is a usage error, exit 2, not a failure).
    if sc.table.max > ctsim::MAX_ENTRIES {
        return Err(Usage(format!(
            "max {}: the model holds every entry in memory, at most {}",
            sc.table.max,
            ctsim::MAX_ENTRIES
        ))
        .into());
    }
    sc.validate().context("scenario")?;
    Ok(sc)
}

/// Run the model. `progress` gets the done fraction (0..=1).
pub fn run(
    sc: &Scenario,
    duration_s: f64,
    step_s: f64,
    seed: u64,
    progress: &mut dyn FnMut(f64),
) -> Result<Timeline> {
    let opts = ctsim::RunOptions {
        duration_s,
        step_s,
        seed,
    };
    ctsim::run(sc, &opts, progress).context("simulation")
}
