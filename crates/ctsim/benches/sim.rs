// Simulator throughput: simulated short-HTTP connections per second of
// wall time (divan counts items), and a shortened 10,000 conn/s run whose
// time extrapolates to the 24 h target (864 million connections).
// Run: cargo bench -p ctsim --bench sim

use ctsim::{Arrival, Class, Lifecycle, RunOptions, Scenario, Sources, run};
use divan::counter::ItemsCount;

fn main() {
    divan::main();
}

fn short_http(rate: f64) -> Scenario {
    let class = Class {
        name: "short".into(),
        arrival: Arrival::Poisson { rate },
        lifecycle: Lifecycle::ShortHttp {
            rtt_s: 0.0002,
            duration_s: 0.005,
        },
        sources: Sources::default(),
        legit: None,
    };
    Scenario::single(2_000_000, 524_288, class)
}

/// 1 million connections at 10,000/s (100 s simulated, TIME_WAIT 120 s).
#[divan::bench(sample_count = 5)]
fn short_http_1m_connections(b: divan::Bencher) {
    let sc = short_http(10_000.0);
    let opt = RunOptions {
        duration_s: 100.0,
        step_s: 1.0,
        seed: 1,
    };
    b.counter(ItemsCount::new(1_000_000usize))
        .bench(|| run(&sc, &opt, &mut |_| {}).expect("run"));
}

/// 10 simulated minutes at 10,000/s (6 million connections, steady state
/// reached): x144 = the 24 h run.
#[divan::bench(sample_count = 1)]
fn ten_minutes_at_10k(b: divan::Bencher) {
    let sc = short_http(10_000.0);
    let opt = RunOptions {
        duration_s: 600.0,
        step_s: 1.0,
        seed: 1,
    };
    b.counter(ItemsCount::new(6_000_000usize))
        .bench(|| run(&sc, &opt, &mut |_| {}).expect("run"));
}
