//! Property tests (issue 8, section 4): random plans and journals, hostile
//! paths included, never make apply or rollback touch a path outside the
//! fixed set; random interleavings of apply, kill at any step, apply and
//! rollback always end, after rolling back until nothing is left, at the
//! original tree byte for byte.

use std::collections::BTreeMap;
use std::fs;

use proptest::prelude::*;

use super::super::fixture::Tree;
use super::super::*;
use crate::plan::Settings;

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("nf_conntrack_tcp_timeout_established".to_string()),
        Just("nf_conntrack_udp_timeout".to_string()),
        Just("nf_conntrack_icmp_timeout".to_string()),
        Just("nf_conntrack_max".to_string()),
        Just("nf_conntrack_count".to_string()),
        Just("../../../../outside/victim".to_string()),
        Just("/../../outside/victim".to_string()),
        Just("nf_conntrack_udp_timeout/../../../../../outside/victim".to_string()),
        Just("nf_conntrack_udp_timeout\0".to_string()),
        "[a-z_./\\\\]{0,24}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(format!("{NF}/nf_conntrack_max")),
        Just(format!("{NF}/nf_conntrack_udp_timeout")),
        Just(HASHSIZE.to_string()),
        Just(SYSCTL_FILE.to_string()),
        Just(MODPROBE_FILE.to_string()),
        Just(MODULES_LOAD_FILE.to_string()),
        Just("/etc/modules-load.d".to_string()),
        Just("/etc".to_string()),
        Just("/".to_string()),
        Just("/../outside/victim".to_string()),
        Just("/../../outside".to_string()),
        Just(format!("{NF}/../../../../../outside/victim")),
        Just(format!("{NF}/nf_conntrack_count")),
        "/[a-z_./]{0,30}",
    ]
}

fn value_change() -> impl Strategy<Value = ValueChange> {
    (
        path(),
        prop_oneof![Just("7".to_string()), "[0-9a-z\n]{0,8}"],
    )
        .prop_map(|(path, old)| ValueChange {
            path,
            old,
            new: "1".into(),
        })
}

fn file_change() -> impl Strategy<Value = FileChange> {
    (
        path(),
        proptest::option::of("[a-z\n]{0,10}"),
        proptest::collection::vec(path(), 0..3),
    )
        .prop_map(|(path, old, created_dirs)| FileChange {
            path,
            old,
            new: "x\n".into(),
            created_dirs,
            old_perm: None,
        })
}

fn plan_files() -> Vec<(String, String)> {
    vec![
        (SYSCTL_FILE.to_string(), "a\n".to_string()),
        (MODPROBE_FILE.to_string(), "b\n".to_string()),
        // Only when nf_conntrack is a loadable module nothing loads at
        // boot; its directory does not exist in the tree, so apply
        // creates it and rollback must remove it.
        (MODULES_LOAD_FILE.to_string(), "nf_conntrack\n".to_string()),
    ]
}

/// Three plans to interleave: different max, timeouts and files.
fn plan(i: usize) -> (Settings, Vec<(String, String)>) {
    let t = |v| [("nf_conntrack_udp_timeout".to_string(), v)].into();
    match i % 3 {
        0 => (
            Settings {
                nf_conntrack_max: 524_288,
                hashsize: 524_288,
                timeouts: t(60),
            },
            plan_files(),
        ),
        1 => (
            Settings {
                nf_conntrack_max: 1_048_576,
                hashsize: 1_000_000,
                timeouts: t(45),
            },
            vec![
                (MODPROBE_FILE.to_string(), "c\n".to_string()),
                (MODULES_LOAD_FILE.to_string(), "d\n".to_string()),
            ],
        ),
        _ => (
            Settings {
                nf_conntrack_max: 262_144,
                hashsize: 262_144,
                timeouts: [("nf_conntrack_icmp_timeout".to_string(), 10)].into(),
            },
            vec![],
        ),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Apply { plan: usize, kill: Option<usize> },
    Rollback { kill: Option<usize> },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, proptest::option::of(0..12usize))
            .prop_map(|(plan, kill)| Op::Apply { plan, kill }),
        proptest::option::of(0..8usize).prop_map(|kill| Op::Rollback { kill }),
    ]
}

fn fault(kill: Option<usize>) -> Fault {
    kill.map_or_else(Fault::default, |n| Fault::at(n, FaultKind::Kill))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_plans_never_touch_a_path_outside_the_fixed_set(
        timeouts in proptest::collection::btree_map(key(), 0..100_000u64, 0..5),
        max in 0..4_000_000u64,
        persist: bool,
    ) {
        let t = Tree::new("propplan");
        let before = t.snapshot();
        let outside = t.outside_fixed_set();
        let s = Settings { nf_conntrack_max: max, hashsize: max, timeouts };
        let files = if persist { plan_files() } else { vec![] };
        if let Ok(d) = diff(&t.root(), &s, false, &files)
            && apply(&t.root(), &t.journal(), &d, Fault::default()).is_ok()
        {
            prop_assert_eq!(t.outside_fixed_set(), outside.clone());
            rollback(&t.root(), &t.journal(), Fault::default()).expect("rollback");
        }
        prop_assert_eq!(t.outside_fixed_set(), outside);
        prop_assert_eq!(t.snapshot(), before);
    }

    #[test]
    fn random_journals_never_make_rollback_touch_a_path_outside_the_fixed_set(
        values in proptest::collection::vec(value_change(), 0..4),
        files in proptest::collection::vec(file_change(), 0..3),
    ) {
        let t = Tree::new("propjournal");
        let outside = t.outside_fixed_set();
        let j = Journal {
            created: "x".into(),
            values,
            files,
            state: "applied".into(),
            applies: 1,
            rolled_back: None,
        };
        fs::create_dir_all(t.journal().parent().expect("dir")).expect("mkdir");
        fs::write(t.journal(), serde_json::to_string(&j).expect("json")).expect("write");
        let valid = j.validate("journal").is_ok();
        let r = rollback(&t.root(), &t.journal(), Fault::default());
        if !valid {
            prop_assert!(r.is_err(), "a hostile journal was used: {:?}", j);
        }
        prop_assert_eq!(t.outside_fixed_set(), outside);
    }

    #[test]
    fn apply_kill_apply_rollback_always_returns_to_the_original(
        ops in proptest::collection::vec(op(), 1..6),
    ) {
        let t = Tree::new("propkill");
        let before = t.snapshot();
        for o in &ops {
            match *o {
                Op::Apply { plan: i, kill } => {
                    let (s, files) = plan(i);
                    let d = diff(&t.root(), &s, false, &files).expect("diff");
                    let _ = apply(&t.root(), &t.journal(), &d, fault(kill));
                }
                Op::Rollback { kill } => {
                    let _ = rollback(&t.root(), &t.journal(), fault(kill));
                }
            }
        }
        // Roll back until nothing is left.
        let mut rounds = 0;
        while let Ok(RolledBack::Done(_)) = rollback(&t.root(), &t.journal(), Fault::default()) {
            rounds += 1;
            prop_assert!(rounds < 3, "rollback never ends");
        }
        let after: BTreeMap<_, _> = t.snapshot();
        prop_assert_eq!(after, before, "after {:?}", ops);
    }
}
