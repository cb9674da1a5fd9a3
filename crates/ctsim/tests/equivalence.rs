// The fast model against the frozen one (`ctsim::reference`, commit
// 06c53b8) on random scenarios and on every built-in: the whole Timeline
// (summary and every sample) must be identical, float for float (issue 21).

use ctsim::{
    Arrival, Class, Initial, Lifecycle, RunOptions, Scenario, Sources, Timeline, reference, run,
};
use proptest::prelude::*;

fn both(sc: &Scenario, opt: &RunOptions) -> (Timeline, Timeline) {
    let new = run(sc, opt, &mut |_| {}).expect("run");
    let old = reference::run(sc, opt, &mut |_| {}).expect("reference run");
    (new, old)
}

fn assert_same(sc: &Scenario, opt: &RunOptions) {
    let (new, old) = both(sc, opt);
    assert_eq!(new.summary, old.summary, "{sc:?} {opt:?}");
    assert_eq!(new.series.len(), old.series.len());
    for (n, o) in new.series.iter().zip(&old.series) {
        assert_eq!(n, o, "{sc:?} {opt:?}");
    }
}

fn lifecycle() -> impl Strategy<Value = Lifecycle> {
    let t = || prop_oneof![Just(0.0), 0.0f64..0.01, 0.0f64..3.0];
    prop_oneof![
        (t(), t()).prop_map(|(rtt_s, duration_s)| Lifecycle::ShortHttp { rtt_s, duration_s }),
        (t(), 0.0f64..8.0, 0.1f64..2.0).prop_map(|(rtt_s, lifetime_s, request_gap_s)| {
            Lifecycle::Keepalive {
                rtt_s,
                lifetime_s,
                request_gap_s,
            }
        }),
        t().prop_map(|rtt_s| Lifecycle::Idle { rtt_s }),
        (t(), 0.0f64..=1.0).prop_map(|(rtt_s, unreplied)| Lifecycle::Dns { rtt_s, unreplied }),
        (t(), 0.0f64..8.0)
            .prop_map(|(rtt_s, lifetime_s)| Lifecycle::UdpStream { rtt_s, lifetime_s }),
        t().prop_map(|rtt_s| Lifecycle::Icmp { rtt_s }),
        Just(Lifecycle::SynFlood),
        Just(Lifecycle::UdpFlood),
        (1u32..5).prop_map(|target_buckets| Lifecycle::HashFlood { target_buckets }),
    ]
}

fn arrival() -> impl Strategy<Value = Arrival> {
    let r = || 0.0f64..2000.0;
    prop_oneof![
        r().prop_map(|rate| Arrival::Constant { rate }),
        r().prop_map(|rate| Arrival::Poisson { rate }),
        (r(), 0.0f64..=1.0, 1.0f64..20.0).prop_map(|(mean, amplitude, period_s)| {
            Arrival::Diurnal {
                mean,
                amplitude,
                period_s,
                peak_s: 0.0,
            }
        }),
        (r(), r(), 0.0f64..10.0).prop_map(|(before, after, at_s)| Arrival::Step {
            before,
            after,
            at_s
        }),
        (r(), r(), 0.0f64..10.0, 0.0f64..5.0).prop_map(|(base, peak, start_s, len_s)| {
            Arrival::Burst {
                base,
                peak,
                start_s,
                len_s,
            }
        }),
    ]
}

fn class() -> impl Strategy<Value = Class> {
    (
        arrival(),
        lifecycle(),
        0u32..4,
        0u16..300,
        any::<bool>(),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(arrival, lifecycle, clients, nports, spoofed, legit)| Class {
                name: "c".into(),
                arrival,
                lifecycle,
                sources: Sources {
                    clients,
                    ports: [40000, 40000 + nports],
                    spoofed,
                },
                legit,
            },
        )
}

const TIMEOUTS: [&str; 6] = [
    "tcp_timeout_time_wait",
    "tcp_timeout_syn_sent",
    "tcp_timeout_established",
    "udp_timeout",
    "udp_timeout_stream",
    "icmp_timeout",
];

prop_compose! {
    fn scenario()(
        max in 1u64..3000,
        buckets in 1u32..2048,
        classes in prop::collection::vec(class(), 1..4),
        kernel in prop_oneof![Just("6.18"), Just("6.1"), Just("5.15"), Just("5.14"),
                              Just("5.10"), Just("4.9"), Just("4.4")],
        chain_limit in prop_oneof![Just(None), Just(Some([0, 0])),
                                   (0u32..6, 0u32..6).prop_map(|(a, b)| Some([a, a + b]))],
        timeouts in prop::collection::vec((0usize..6, prop_oneof![0.0f64..1.0, 0.0f64..40.0]), 0..4),
        initial in prop::collection::vec((0usize..ctsim::State::ALL_KEYS.len(), 0u64..400, 0.0f64..30.0, 0.0f64..30.0,
                                          any::<bool>()), 0..3),
        dump_each_step in any::<bool>(),
    ) -> Scenario {
        let mut sc = Scenario::single(max, buckets, classes[0].clone());
        sc.classes = classes;
        sc.table.kernel = kernel.into();
        sc.table.chain_limit = chain_limit;
        for (k, v) in timeouts {
            sc.table.timeouts.insert(TIMEOUTS[k].into(), v);
        }
        let mut left = max;
        for (s, count, a, b, assured) in initial {
            let count = count.min(left);
            left -= count;
            sc.initial.push(Initial {
                state: ctsim::State::ALL_KEYS[s].into(),
                count,
                remaining_s: [a.min(b), a.max(b)],
                assured,
            });
        }
        sc.dump_each_step = dump_each_step;
        sc
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn fast_model_matches_the_frozen_one(
        sc in scenario(),
        duration_s in 1.0f64..40.0,
        step_s in prop_oneof![Just(1.0), 0.05f64..3.0],
        seed in any::<u64>(),
    ) {
        prop_assume!(sc.validate().is_ok());
        let opt = RunOptions { duration_s, step_s, seed };
        let (new, old) = both(&sc, &opt);
        prop_assert_eq!(&new.summary, &old.summary);
        prop_assert_eq!(&new.series, &old.series);
    }
}

#[test]
fn builtins_match_the_frozen_model() {
    // Debug builds run a shortened prefix; release runs the whole scenario.
    let scale = if cfg!(debug_assertions) { 0.1 } else { 1.0 };
    for name in Scenario::builtin_names() {
        let sc = Scenario::builtin(name).expect("builtin");
        for seed in [1, 7] {
            let mut opt = RunOptions::for_scenario(&sc);
            opt.duration_s *= scale;
            opt.seed = seed;
            assert_same(&sc, &opt);
        }
    }
}

#[test]
fn bench_workloads_match_the_frozen_model() {
    // The bench's short-HTTP table, at a length that crosses TIME_WAIT
    // expiry and several GC passes (sampled mean_remaining above 65,536).
    let d = if cfg!(debug_assertions) { 140.0 } else { 400.0 };
    let sc = Scenario::single(
        2_000_000,
        524_288,
        Class {
            name: "short".into(),
            arrival: Arrival::Poisson { rate: 2_000.0 },
            lifecycle: Lifecycle::ShortHttp {
                rtt_s: 0.0002,
                duration_s: 0.005,
            },
            sources: Sources::default(),
            legit: None,
        },
    );
    assert_same(
        &sc,
        &RunOptions {
            duration_s: d,
            step_s: 1.0,
            seed: 3,
        },
    );
}
