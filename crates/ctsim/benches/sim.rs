// Simulator throughput in simulated connections per second of wall time
// (divan counts items): short-HTTP at 10,000/s (1 M connections, and one
// simulated hour = 36 M, TIME_WAIT expiring and reaped), and the built-in
// hash-flood and syn-flood scenarios, each for `run` (new) and the frozen
// pre-issue-21 model (`ctsim::reference`, old) in the same run.
// Run: cargo bench -p ctsim --bench sim   (scripts/bench-sim: Markdown table)

use ctsim::{Arrival, Class, Lifecycle, RunOptions, Scenario, SimError, Sources, Timeline};
use divan::counter::ItemsCount;

fn main() {
    divan::main();
}

type Run = fn(&Scenario, &RunOptions, &mut dyn FnMut(f64)) -> Result<Timeline, SimError>;

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

fn opt(duration_s: f64) -> RunOptions {
    RunOptions {
        duration_s,
        step_s: 1.0,
        seed: 1,
    }
}

/// Times `f` on a scenario; the counter is the connections it simulated
/// (new_flows, from one untimed run).
fn bench(b: divan::Bencher, f: Run, sc: &Scenario, o: &RunOptions) {
    let n = f(sc, o, &mut |_| {}).expect("run").summary.new_flows;
    b.counter(ItemsCount::new(n as usize))
        .bench(|| f(sc, o, &mut |_| {}).expect("run"));
}

fn builtin(name: &str) -> (Scenario, RunOptions) {
    let sc = Scenario::builtin(name).expect("builtin scenario");
    let o = RunOptions::for_scenario(&sc);
    (sc, o)
}

const NEW: Run = ctsim::run;
const OLD: Run = ctsim::reference::run;

#[divan::bench(args = ["new", "old"], sample_count = 5)]
fn short_http_1m(b: divan::Bencher, which: &str) {
    let f = if which == "new" { NEW } else { OLD };
    bench(b, f, &short_http(10_000.0), &opt(100.0));
}

#[divan::bench(args = ["new", "old"], sample_count = 1)]
fn short_http_hour(b: divan::Bencher, which: &str) {
    let f = if which == "new" { NEW } else { OLD };
    bench(b, f, &short_http(10_000.0), &opt(3600.0));
}

#[divan::bench(args = ["new", "old"], sample_count = 10)]
fn hash_flood(b: divan::Bencher, which: &str) {
    let f = if which == "new" { NEW } else { OLD };
    let (sc, o) = builtin("hash-flood");
    bench(b, f, &sc, &o);
}

#[divan::bench(args = ["new", "old"], sample_count = 10)]
fn syn_flood(b: divan::Bencher, which: &str) {
    let f = if which == "new" { NEW } else { OLD };
    let (sc, o) = builtin("syn-flood");
    bench(b, f, &sc, &o);
}
