// Property tests: the count never exceeds max, the flow accounting adds up,
// for random small tables, rates and lifecycles.

use ctsim::{Arrival, Class, Lifecycle, RunOptions, Scenario, Sources, run};
use proptest::prelude::*;

fn lifecycle(k: u8) -> Lifecycle {
    match k % 8 {
        0 => Lifecycle::ShortHttp {
            rtt_s: 0.001,
            duration_s: 0.01,
        },
        1 => Lifecycle::Keepalive {
            rtt_s: 0.001,
            lifetime_s: 3.0,
            request_gap_s: 1.0,
        },
        2 => Lifecycle::Idle { rtt_s: 0.0 },
        3 => Lifecycle::Dns {
            rtt_s: 0.001,
            unreplied: 0.3,
        },
        4 => Lifecycle::UdpStream {
            rtt_s: 0.001,
            lifetime_s: 4.0,
        },
        5 => Lifecycle::Icmp { rtt_s: 0.001 },
        6 => Lifecycle::SynFlood,
        _ => Lifecycle::HashFlood { target_buckets: 2 },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn count_bounded_and_flows_add_up(
        max in 1u64..3000,
        buckets in 1u32..2048,
        rate in 1.0f64..3000.0,
        kinds in proptest::collection::vec(0u8..8, 1..4),
        clients in 0u32..3,
        tw in 1.0f64..50.0,
        kernel in prop_oneof![Just("6.18"), Just("6.1"), Just("5.10"), Just("4.4")],
        seed in any::<u64>(),
    ) {
        let mut sc = Scenario::single(max, buckets, Class {
            name: "a".into(),
            arrival: Arrival::Poisson { rate },
            lifecycle: lifecycle(kinds[0]),
            sources: Sources { clients, ports: [40000, 40999], spoofed: false },
            legit: None,
        });
        for (i, k) in kinds.iter().enumerate().skip(1) {
            sc.classes.push(Class {
                name: format!("c{i}"),
                arrival: Arrival::Poisson { rate: rate / 2.0 },
                lifecycle: lifecycle(*k),
                sources: Sources::default(),
                legit: None,
            });
        }
        sc.table.kernel = kernel.into();
        sc.table.timeouts.insert("tcp_timeout_time_wait".into(), tw);
        let tl = run(&sc, &RunOptions { duration_s: 20.0, step_s: 0.5, seed }, &mut |_| {})
            .expect("run");
        let s = &tl.summary;
        prop_assert_eq!(s.new_flows, s.inserted + s.reopened + s.drops + s.insert_failed);
        prop_assert!(s.peak_entries <= max);
        for p in &tl.series {
            prop_assert!(p.entries <= max);
            prop_assert_eq!(p.by_state.values().sum::<u64>(), p.entries);
        }
    }
}
