//! Plan tests: defaults by kernel, profiles, floors, renderers.

use super::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn k(s: &str) -> Version {
    Version::parse(s).expect("version")
}

#[test]
fn kernel_defaults_by_version_and_ram() {
    // (RAM, kernel, buckets, max): read off nf_conntrack_init_start of
    // each version (64-bit), buckets rounded up to 512.
    let cases = [
        (512 * MIB, "4.19", 4096, 16_384),
        (512 * MIB, "5.10", 4096, 16_384),
        (512 * MIB, "5.15", 4096, 4096),
        (512 * MIB, "6.18", 4096, 4096),
        (2 * GIB, "4.19", 16_384, 65_536),
        (2 * GIB, "5.10", 16_384, 65_536),
        (2 * GIB, "5.15", 65_536, 65_536),
        (2 * GIB, "6.1", 65_536, 65_536),
        (8 * GIB, "4.19", 65_536, 262_144),
        (8 * GIB, "5.10", 65_536, 262_144),
        (8 * GIB, "5.15", 262_144, 262_144),
        (8 * GIB, "6.18", 262_144, 262_144),
        (64 * GIB, "4.19", 65_536, 262_144),
        (64 * GIB, "5.10", 65_536, 262_144),
        (64 * GIB, "5.15", 262_144, 262_144),
        (64 * GIB, "6.18", 262_144, 262_144),
        (512 * GIB, "4.19", 65_536, 262_144),
        (512 * GIB, "5.10", 65_536, 262_144),
        (512 * GIB, "5.15", 262_144, 262_144),
        (512 * GIB, "6.1", 262_144, 262_144),
        (100 * MIB, "6.18", 1024, 1024), // formula 800, minimum 1024
        (100 * MIB, "5.10", 1024, 4096), // formula 800 -> rounded to 1024
        (8 * GIB, "3.10", 16_384, 65_536), // no 4 GiB tier before 4.x
    ];
    for (ram, v, b, m) in cases {
        assert_eq!(
            kernel_default(ram, k(v), None),
            (b, m),
            "{} MiB on {v}",
            ram / MIB
        );
    }
    // An explicit hashsize= makes max 8 x buckets, rounded to 512.
    assert_eq!(
        kernel_default(8 * GIB, k("6.18"), Some(100_000)),
        (100_352, 802_816)
    );
}

fn inputs(ram: u64, kernel: &str, peak: u64) -> Inputs {
    Inputs {
        ram,
        cpus: 4,
        kernel: k(kernel),
        peak,
        peak_source: "--peak".into(),
        headroom: 2.0,
        profile: Profile::Web,
        budget: None,
        entry_bytes: 256,
        entry_bytes_estimated: false,
        extension: Extension::default(),
        current_timeouts: BTreeMap::new(),
        mix: None,
        notrack_ports: vec![],
        notrack_loopback: false,
    }
}

#[test]
fn sizing_follows_peak_and_never_goes_below_the_default() {
    // (RAM, kernel, peak, expected max = buckets)
    let cases = [
        (512 * MIB, "4.19", 1_000, 16_384), // default max 16384 covers 2000
        (512 * MIB, "6.18", 1_000, 4_096),
        (2 * GIB, "5.10", 100_000, 200_192), // 200000 rounded up to 512
        (8 * GIB, "5.15", 100_000, 262_144), // default covers 200000
        (64 * GIB, "6.18", 1_000_000, 2_000_384),
        (512 * GIB, "6.18", 10_000_000, 20_000_256),
    ];
    for (ram, v, peak, want) in cases {
        let p = plan(inputs(ram, v, peak)).expect("plan");
        assert_eq!(
            (p.settings.nf_conntrack_max, p.settings.hashsize),
            (want, want),
            "{v} peak {peak}"
        );
        assert_eq!(p.memory_at_max, want * 256 + want * 8);
    }
}

#[test]
fn budget_caps_or_refuses() {
    let mut i = inputs(8 * GIB, "6.18", 1_000_000);
    i.budget = Some(Budget::Bytes(400 * MIB));
    let p = plan(i.clone()).expect("capped");
    // 400 MiB / 264 B = 1588751 -> down to a multiple of 512
    assert_eq!(p.settings.nf_conntrack_max, 1_588_736);
    assert_eq!(p.warnings.len(), 1);
    i.budget = Some(Budget::Percent(1.0)); // 85.9 MB: 325,000 entries < peak
    assert!(matches!(plan(i), Err(PlanError::BudgetBelowPeak { .. })));
}

#[test]
fn timeouts_by_profile_respect_floors() {
    let get = |p: &Plan, name: &str| p.settings.timeouts[name];
    let mut i = inputs(8 * GIB, "6.18", 1000);
    let web = plan(i.clone()).expect("plan");
    assert_eq!(get(&web, "nf_conntrack_tcp_timeout_established"), 3600);
    assert_eq!(get(&web, "nf_conntrack_icmp_timeout"), 30);
    i.profile = Profile::NatGateway;
    let nat = plan(i.clone()).expect("plan");
    assert_eq!(get(&nat, "nf_conntrack_tcp_timeout_established"), 7440); // RFC 5382
    assert_eq!(get(&nat, "nf_conntrack_udp_timeout_stream"), 120); // RFC 4787
    assert_eq!(get(&nat, "nf_conntrack_icmp_timeout"), 60); // RFC 5508
    assert!(
        nat.timeouts
            .iter()
            .any(|t| t.sysctl == "nf_conntrack_icmp_timeout" && t.floor == 60)
    );
    i.profile = Profile::K8sNode;
    let k8s = plan(i.clone()).expect("plan");
    assert_eq!(get(&k8s, "nf_conntrack_tcp_timeout_established"), 86_400);
    assert_eq!(get(&k8s, "nf_conntrack_tcp_timeout_close_wait"), 3600);
    for p in [&web, &nat, &k8s] {
        assert!(p.timeouts.iter().all(|t| t.value >= t.floor));
        assert_eq!(get(p, "nf_conntrack_tcp_timeout_time_wait"), 120);
    }
}

#[test]
fn mix_decides_established_and_effect() {
    let mut i = inputs(8 * GIB, "6.18", 100_000);
    i.current_timeouts = [
        ("nf_conntrack_tcp_timeout_established".to_string(), 432_000),
        ("nf_conntrack_tcp_timeout_time_wait".to_string(), 120),
    ]
    .into();
    i.mix = Some(Mix {
        entries: 100_000,
        established_idle_1h: 60_000,
        tcp_state: [
            ("ESTABLISHED".to_string(), 80_000),
            ("TIME_WAIT".to_string(), 12_000),
        ]
        .into(),
        ..Mix::default()
    });
    let p = plan(i.clone()).expect("plan");
    let est = &p.timeouts[0];
    assert_eq!(est.value, 3600);
    assert!(est.reason.starts_with("60% of the table"), "{}", est.reason);
    assert!(
        est.effect
            .as_deref()
            .is_some_and(|e| e.starts_with("ESTABLISHED: 80000 now, 60000 of them idle")),
        "{:?}",
        est.effect
    );
    // Little's law for TIME_WAIT: 12000 / 120 s = 100/s; x 120 s = 12000.
    let tw = &p.timeouts[1];
    assert!(
        tw.effect
            .as_deref()
            .is_some_and(|e| e.ends_with("steady state 100.00/s x 120 s = 12000")),
        "{:?}",
        tw.effect
    );
    // Few idle entries: keep the current value.
    if let Some(m) = i.mix.as_mut() {
        m.established_idle_1h = 1_000;
    }
    assert_eq!(plan(i).expect("plan").timeouts[0].value, 432_000);
}

#[test]
fn parsers() {
    assert_eq!(parse_size("8GiB"), Ok(8 * GIB));
    assert_eq!(parse_size("512M"), Ok(512 * MIB));
    assert_eq!(parse_size("1048576"), Ok(1 << 20));
    assert!(parse_size("8 parsecs").is_err());
    assert_eq!(parse_budget("2%"), Ok(Budget::Percent(2.0)));
    assert!(parse_budget("0%").is_err());
    assert_eq!(
        Port::parse("53/udp"),
        Ok(Port {
            port: 53,
            udp: true
        })
    );
    assert_eq!(
        Port::parse("443"),
        Ok(Port {
            port: 443,
            udp: false
        })
    );
    assert!(Port::parse("70000").is_err() && Port::parse("80/sctp").is_err());
    assert_eq!(
        k("5.15.0-91-generic"),
        Version {
            major: 5,
            minor: 15
        }
    );
}

#[test]
fn renderers() {
    let mut i = inputs(8 * GIB, "6.18", 100_000);
    i.notrack_ports = vec![
        Port {
            port: 80,
            udp: false,
        },
        Port {
            port: 53,
            udp: true,
        },
    ];
    i.notrack_loopback = true;
    let p = plan(i).expect("plan");
    let sysctl = render_sysctl(&p);
    assert!(sysctl.contains("net.netfilter.nf_conntrack_max = 262144\n"));
    assert!(sysctl.contains("net.netfilter.nf_conntrack_tcp_timeout_established = 3600\n"));
    assert!(render_modprobe(&p).contains("\noptions nf_conntrack hashsize=262144\n"));
    let nft = render_nft(&p);
    assert!(
        nft.contains("priority raw;")
            && nft.contains("iif \"lo\" notrack")
            && nft.contains("udp dport { 53 } notrack")
    );
    assert!(nft.contains("ct state untracked accept"));
    let ipt = render_iptables(&p);
    assert!(ipt.contains("-A PREROUTING -p tcp -m tcp --dport 80 -j CT --notrack\n"));
    assert!(ipt.contains("-I INPUT 1 -m conntrack --ctstate UNTRACKED -j ACCEPT\n"));
    assert!(render_text(&p).contains("nf_conntrack_max = 262144"));
}

/// A 6.18 host with 24 GiB, 256-byte slab objects and the given table.
fn host(count: u64, max: u64, drops: u64) -> Facts {
    Facts {
        kernel: Some("6.18.44-fc-v657".into()),
        netns_inode: Some(1),
        init_netns_inode: Some(1),
        conntrack_loaded: true,
        count: Some(count),
        max: Some(max),
        buckets: Some(max),
        mix: Some(Mix {
            entries: count,
            assured: count,
            ..Mix::default()
        }),
        slab: Some(crate::slab::SlabCache {
            active_objs: count,
            num_objs: count,
            objsize: 256,
        }),
        mem_total: Some(24 * GIB),
        counters: Some(crate::facts::Counters {
            source: "test".into(),
            values: [("drop".to_string(), drops)].into(),
        }),
        ..Facts::default()
    }
}

fn check_suggests(f: &Facts) -> u64 {
    let r = crate::diagnose::diagnose(f, &crate::diagnose::Thresholds::default());
    let fill = r
        .findings
        .iter()
        .find(|x| x.id == "table.fill")
        .expect("table.fill");
    let cmd = fill
        .fix
        .iter()
        .find_map(|l| l.strip_prefix("sysctl -w net.netfilter.nf_conntrack_max="))
        .expect("a sysctl fix");
    cmd.parse().expect("a number")
}

#[test]
fn check_and_plan_suggest_the_same_max_for_the_same_facts() {
    // (count, max, drops): 88% full without drops; full with drops;
    // a big table whose default is far below the need.
    for (count, max, drops) in [
        (230_000, 262_144, 0),
        (262_144, 262_144, 5_000),
        (1_900_000, 2_000_000, 0),
        (900, 1_000, 3),
    ] {
        let f = host(count, max, drops);
        let p = plan(host_inputs(&f, 4).expect("inputs")).expect("plan");
        assert_eq!(
            check_suggests(&f),
            p.settings.nf_conntrack_max,
            "count {count} max {max} drops {drops}"
        );
    }
    // The figures themselves, written out: 230000 x 2 rounded up to 512;
    // a full table (drops) sizes from max.
    let f = host(230_000, 262_144, 0);
    assert_eq!(check_suggests(&f), 460_288);
    assert_eq!(check_suggests(&host(262_144, 262_144, 1)), 524_288);
    assert_eq!(check_suggests(&host(900, 1_000, 3)), 262_144); // the kernel default
}

#[test]
fn check_memory_counts_the_extension_area_of_nat_entries() {
    let mut f = host(1_000, 262_144, 0);
    let r = crate::diagnose::diagnose(&f, &crate::diagnose::Thresholds::default());
    assert_eq!(r.summary.extension.bytes, 0);
    assert_eq!(r.summary.memory_at_max, Some(262_144 * 256 + 262_144 * 8));
    if let Some(m) = f.mix.as_mut() {
        m.nat = 40;
        m.with_extension = 40;
    }
    let r = crate::diagnose::diagnose(&f, &crate::diagnose::Thresholds::default());
    assert_eq!(r.summary.extension.bytes, 128);
    assert_eq!(
        r.summary.memory_at_max,
        Some(262_144 * (256 + 128) + 262_144 * 8)
    );
    let mem = r
        .findings
        .iter()
        .find(|x| x.id == "memory")
        .expect("memory");
    assert!(
        mem.evidence.iter().any(|e| e
            == "+ 128 B extension area per entry: 40 of 1000 entries in the table carry one (40 NAT)"),
        "{:?}",
        mem.evidence
    );
    // The sysctl alone is enough, with the table not dumped.
    f.mix = None;
    f.extension_sysctls = [("nf_conntrack_acct".to_string(), 1)].into();
    let r = crate::diagnose::diagnose(&f, &crate::diagnose::Thresholds::default());
    assert_eq!(r.summary.extension.reasons, ["nf_conntrack_acct=1"]);
    // plan explains the same assumption.
    let mut f = host(1_000, 262_144, 0);
    f.extension_sysctls = [("nf_conntrack_timestamp".to_string(), 1)].into();
    let p = plan(host_inputs(&f, 4).expect("inputs")).expect("plan");
    assert_eq!(p.memory_at_max, 262_144 * (256 + 128) + 262_144 * 8);
    assert!(
        p.sizing.iter().any(|l| l.contains(
            "(256 B slab object size, + 128 B extension area per entry: nf_conntrack_timestamp=1)"
        )),
        "{:?}",
        p.sizing
    );
}

#[test]
fn plan_clamps_absurd_peaks_and_says_the_peak_cannot_be_covered() {
    for (peak, headroom) in [
        (u64::MAX, 2.0),
        (9_223_372_036_854_775_808, 2.0),
        (1_000, 1e30),
        (1_000, f64::INFINITY),
    ] {
        let mut i = inputs(8 * GIB, "6.18", peak);
        i.headroom = headroom;
        let p = plan(i).expect("plan");
        assert_eq!(
            p.settings.nf_conntrack_max, 2_147_483_136,
            "{peak} x {headroom}"
        );
        assert_eq!(p.settings.hashsize, 268_434_944);
        assert!(p.memory_at_max > 0);
    }
    let p = plan(inputs(8 * GIB, "6.18", u64::MAX)).expect("plan");
    assert!(
        p.warnings
            .iter()
            .any(|w| w.starts_with("the peak of 18446744073709551615 entries cannot be covered")),
        "{:?}",
        p.warnings
    );
    let mut i = inputs(8 * GIB, "6.18", 1_000);
    i.headroom = f64::NAN;
    assert!(matches!(plan(i), Err(PlanError::Headroom(_))));
}

#[test]
fn usage_parsers_reject_zero_and_non_finite() {
    assert!(parse_memory("0").is_err());
    assert!(parse_memory("1M").is_ok());
    for bad in ["0", "-1", "0.5", "inf", "nan", "NaN", "x"] {
        assert!(parse_headroom(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_headroom("1e30"), Ok(1e30));
    assert_eq!(slab_memtotal_saturates(), Some(u64::MAX));
}

fn slab_memtotal_saturates() -> Option<u64> {
    crate::slab::parse_memtotal("MemTotal: 18446744073709551615 kB\n")
}

#[test]
fn every_timeout_plan_sets_has_a_floor_in_the_timeout_table() {
    for profile in [
        Profile::Web,
        Profile::NatGateway,
        Profile::K8sNode,
        Profile::Router,
    ] {
        for &(timeout, ..) in super::TIMEOUTS {
            assert!(timeout_floor(timeout, profile).is_some(), "{timeout:?}");
        }
    }
}

#[test]
fn a_plan_file_is_read_once_for_apply_and_simulate() {
    let j = r#"{"settings": {"nf_conntrack_max": 524288, "hashsize": 131072,
            "timeouts": {"nf_conntrack_tcp_timeout_time_wait": 120}}, "warnings": []}"#;
    let s = Settings::from_plan_json(j).expect("plan");
    assert_eq!((s.nf_conntrack_max, s.hashsize), (524288, 131072));
    assert_eq!(
        s.timeouts.get("nf_conntrack_tcp_timeout_time_wait"),
        Some(&120)
    );
    for (text, why) in [
        ("nope", "not JSON"),
        ("{}", "no \"settings\""),
        ("[1]", "no \"settings\""),
        (
            r#"{"settings": {"hashsize": 1, "timeouts": {}}}"#,
            "nf_conntrack_max",
        ),
        (
            r#"{"settings": {"nf_conntrack_max": -1, "hashsize": 1, "timeouts": {}}}"#,
            "settings",
        ),
        (
            r#"{"settings": {"nf_conntrack_max": 1, "hashsize": 1, "timeouts": {"x": "1"}}}"#,
            "settings",
        ),
    ] {
        let e = Settings::from_plan_json(text).expect_err(text).to_string();
        assert!(e.contains(why), "{text}: {e}");
    }
}

/// `plan --netns`: both per-namespace max layouts end up in the text,
/// the JSON and the warnings (fixture readings as a namespace sees them).
#[test]
fn a_plan_in_a_namespace_notes_which_max_applies() {
    use crate::netns_max::PerNetnsMax;
    // 8 GiB 6.18, peak 200000 x 2: planned 400384.
    let fresh = || plan(inputs(8 * GIB, "6.18", 200_000)).expect("plan");
    assert_eq!(fresh().settings.nf_conntrack_max, 400_384);
    assert!(fresh().netns.is_none());
    assert!(
        serde_json::to_value(fresh())
            .expect("json")
            .get("netns")
            .is_none()
    );

    // With the patch: read-write, own 65536, initial 1048576.
    let mut p = fresh();
    p.set_netns(
        "pod",
        Some(PerNetnsMax::from_mode(0o644)),
        Some(1_048_576),
        Some(65_536),
    );
    let text = render_text(&p);
    assert!(
        text.contains("  - netns pod: this kernel has a per-namespace nf_conntrack_max"),
        "{text}"
    );
    assert!(text.contains("= 400384 once applied (now 65536)"), "{text}");
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let v = serde_json::to_value(&p).expect("json");
    assert_eq!(v["netns"]["per_netns_max"], "supported");
    assert_eq!(v["netns"]["effective_planned"], 400_384);
    // The initial namespace below the plan: held to it, warned.
    let mut p = fresh();
    p.set_netns(
        "pod",
        Some(PerNetnsMax::Supported),
        Some(262_144),
        Some(65_536),
    );
    assert_eq!(
        p.netns.as_ref().and_then(|n| n.effective_planned),
        Some(262_144)
    );
    assert!(render_text(&p).contains(
        "  ! netns pod: the initial namespace's nf_conntrack_max 262144 is below the planned 400384"
    ));

    // Without it (this 6.18 kernel): read-only, the initial namespace's value.
    let mut p = fresh();
    p.set_netns(
        "pod",
        Some(PerNetnsMax::from_mode(0o444)),
        Some(262_144),
        Some(262_144),
    );
    let text = render_text(&p);
    assert!(
        text.contains("shares the initial namespace's max (262144)"),
        "{text}"
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("held to the shared nf_conntrack_max 262144"))
    );
    let v = serde_json::to_value(&p).expect("json");
    assert_eq!(v["netns"]["per_netns_max"], "not supported");
    assert_eq!(v["netns"]["effective_planned"], 262_144);
}
