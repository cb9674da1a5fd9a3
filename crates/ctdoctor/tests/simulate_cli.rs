//! `ctdoctor simulate` through the real binary: every built-in scenario
//! runs and prints the JSON contract, CSV header, SVG plot, `--compare`
//! with a real `ctdoctor plan --format json`, bad inputs and their exit
//! codes, and seed determinism. No kernel state is read or changed except
//! this host's sysctls (read only) for the one-class defaults.

mod common;
use common::{TempDir, json, run, text};

const BUILTINS: [&str; 14] = [
    "nginx-short-upstream",
    "nat-gateway",
    "k8s-dns-churn",
    "syn-flood-web",
    "idle-attack-web",
    "udp-flood",
    "hash-flood",
    // lab's scenarios (issue 17: one catalogue for lab and simulate)
    "short-connections",
    "short-connections-one-client",
    "syn-flood",
    "idle-attack",
    "keepalive",
    "udp-query",
    "icmp-echo",
];

fn assert_contract(v: &serde_json::Value, what: &str) {
    let s = &v["summary"];
    for k in [
        "new_flows",
        "inserted",
        "drops",
        "early_drops",
        "insert_failed",
        "peak_entries",
    ] {
        assert!(s[k].is_u64(), "{what}: summary.{k} missing: {s}");
    }
    assert!(
        s["time_to_first_drop_s"].is_null() || s["time_to_first_drop_s"].is_f64(),
        "{what}: {s}"
    );
    assert!(
        s["steady_state"].is_object() && s["littles_law"].is_object(),
        "{what}"
    );
    let series = v["series"].as_array().expect("series");
    assert!(!series.is_empty(), "{what}: empty series");
    for p in series {
        for k in ["t", "entries", "max", "drops", "early_drops"] {
            assert!(p[k].is_number(), "{what}: point.{k} missing: {p}");
        }
        assert!(p["by_state"].is_object(), "{what}");
        assert!(
            p["entries"].as_u64() <= p["max"].as_u64(),
            "{what}: count above max"
        );
    }
}

#[test]
fn every_builtin_scenario_runs_and_prints_the_json_contract() {
    for name in BUILTINS {
        let o = run(&[
            "--json",
            "simulate",
            "--scenario",
            name,
            "--duration",
            "20s",
            "--step",
            "1s",
        ]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        let v = json(&o);
        assert_contract(&v, name);
        assert_eq!(
            v["series"].as_array().map(Vec::len),
            Some(21),
            "{name}: t = 0 and every step"
        );
    }
}

#[test]
fn human_summary_names_its_parts() {
    let o = run(&[
        "simulate",
        "--scenario",
        "syn-flood-web",
        "--duration",
        "30s",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    for part in [
        "first drop:",
        "early drops:",
        "legitimate lost:",
        "peak entries:",
        "longest chain:",
        "Little's law",
    ] {
        assert!(t.contains(part), "{part} missing:\n{t}");
    }
}

#[test]
fn one_class_with_flags_and_csv_header() {
    let o = run(&[
        "simulate",
        "--rate",
        "500",
        "--lifecycle",
        "short-http",
        "--max",
        "20000",
        "--buckets",
        "8192",
        "--timeout",
        "tcp_timeout_time_wait=60",
        "--kernel",
        "6.18",
        "--duration",
        "10s",
        "--csv",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let mut lines = out.lines();
    let header = lines.next().expect("header");
    assert!(
        header.starts_with("t,entries,max,drops_per_s,early_drops_per_s,insert_failed_per_s,gc_reaps,drops,early_drops"),
        "{header}"
    );
    assert!(header.contains("tcp/TIME_WAIT"), "{header}");
    assert_eq!(lines.clone().count(), 11, "t = 0 and every step");
    let first: Vec<&str> = lines.next().expect("row").split(',').collect();
    assert_eq!(first[2], "20000", "the --max flag is the series' max");
}

#[test]
fn svg_is_written_with_its_labels() {
    let d = TempDir::new("simcli-svg");
    let path = d.p("plot.svg");
    let p = path.to_str().expect("utf8");
    let o = run(&[
        "simulate",
        "--scenario",
        "syn-flood-web",
        "--duration",
        "30s",
        "--svg",
        p,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let svg = std::fs::read_to_string(&path).expect("svg written");
    assert!(
        svg.trim_start().starts_with("<svg"),
        "{}",
        &svg[..80.min(svg.len())]
    );
    assert!(svg.trim_end().ends_with("</svg>"));
    for label in [
        "entries",
        "nf_conntrack_max",
        "drops/s",
        "early drops/s",
        "time (s)",
    ] {
        assert!(svg.contains(label), "label {label} missing");
    }
}

#[test]
fn compare_with_a_real_plan() {
    let d = TempDir::new("simcli-plan");
    let plan = run(&[
        "plan", "--format", "json", "--memory", "8GiB", "--kernel", "6.18", "--peak", "400000",
    ]);
    assert!(plan.status.success(), "{}", text(&plan));
    d.put("plan.json", &String::from_utf8_lossy(&plan.stdout));
    let p = d.p("plan.json");
    let p = p.to_str().expect("utf8");
    // A table of 30000 against a SYN flood drops; the plan's table does not.
    let o = run(&[
        "simulate",
        "--scenario",
        "syn-flood-web",
        "--max",
        "30000",
        "--duration",
        "30s",
        "--compare",
        p,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("== current configuration") && t.contains("== with the plan"),
        "{t}"
    );
    assert!(t.contains("drops avoided:"), "{t}");
    let o = run(&[
        "--json",
        "simulate",
        "--scenario",
        "syn-flood-web",
        "--max",
        "30000",
        "--duration",
        "30s",
        "--compare",
        p,
    ]);
    let v = json(&o);
    assert_contract(&v["current"], "current");
    assert_contract(&v["planned"], "planned");
    let planned_max = v["planned"]["series"][0]["max"].as_u64().expect("max");
    assert!(planned_max > 30000, "the plan's max is used: {planned_max}");
    assert_eq!(
        v["drops_avoided"].as_i64(),
        Some(
            v["current"]["summary"]["drops"].as_i64().unwrap_or(0)
                - v["planned"]["summary"]["drops"].as_i64().unwrap_or(0)
        )
    );
}

#[test]
fn same_seed_same_output_other_seed_differs() {
    let args = |seed: &'static str| {
        run(&[
            "--json",
            "simulate",
            "--scenario",
            "k8s-dns-churn",
            "--duration",
            "20s",
            "--seed",
            seed,
        ])
    };
    let (a, b, c) = (args("7"), args("7"), args("8"));
    assert!(a.status.success(), "{}", text(&a));
    assert_eq!(a.stdout, b.stdout);
    assert_ne!(a.stdout, c.stdout);
}

#[test]
fn bad_inputs_have_clear_messages_and_exit_codes() {
    let d = TempDir::new("simcli-bad");
    d.put(
        "bad.toml",
        "name = \"x\"\n[table]\nmax = 10\nbuckets = oops\n",
    );
    let bad = d.p("bad.toml");
    let bad = bad.to_str().expect("utf8");
    let missing = d.p("missing.toml");
    let missing = missing.to_str().expect("utf8");
    let unwritable = d.p("no/such/dir/plot.svg");
    let unwritable = unwritable.to_str().expect("utf8");
    let cases: Vec<(Vec<&str>, u8, &str)> = vec![
        (
            vec!["simulate", "--scenario", "nope"],
            2,
            "built-in: nginx-short-upstream",
        ),
        (vec!["simulate"], 2, "--scenario"),
        (vec!["simulate", "--scenario", bad], 1, "line 4"),
        (
            vec!["simulate", "--scenario", missing],
            1,
            "cannot read scenario file",
        ),
        (
            vec![
                "simulate",
                "--rate",
                "10",
                "--timeout",
                "tcp_timeout_bogus=5",
            ],
            2,
            "unknown timeout",
        ),
        (
            vec!["simulate", "--rate", "10", "--timeout", "udp_timeout"],
            2,
            "NAME=SECONDS",
        ),
        (vec!["simulate", "--rate", "0"], 2, "more than zero"),
        (vec!["simulate", "--rate=-5"], 2, "more than zero"),
        (
            vec![
                "simulate",
                "--rate",
                "10",
                "--duration",
                "10s",
                "--step",
                "20s",
            ],
            2,
            "longer than",
        ),
        (
            vec!["simulate", "--rate", "10", "--duration", "400d"],
            2,
            "between 1ms and 30days",
        ),
        (
            vec!["simulate", "--rate", "10", "--duration", "0"],
            2,
            "between 1ms and 30days",
        ),
        (
            vec!["simulate", "--rate", "10", "--svg", unwritable],
            1,
            "does not exist",
        ),
        (
            vec!["--json", "simulate", "--rate", "10", "--csv"],
            2,
            "exclude each other",
        ),
        (
            vec!["simulate", "--rate", "10", "--lifecycle", "warp"],
            2,
            "possible values",
        ),
        (
            vec![
                "simulate",
                "--rate",
                "100000000",
                "--duration",
                "30d",
                "--step",
                "1h",
            ],
            2,
            "per run",
        ),
        (
            vec!["simulate", "--rate", "10", "--buckets", "4000000000"],
            2,
            "at most 33554432",
        ),
        (
            vec!["simulate", "--rate", "10", "--max", "99999999999999"],
            2,
            "at most 2147483136",
        ),
        (
            vec!["simulate", "--scenario", "syn-flood-web", "--rate", "10"],
            2,
            "exclude each other",
        ),
    ];
    for (args, code, msg) in cases {
        let o = run(&args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(i32::from(code)), "{args:?}: {t}");
        assert!(t.contains(msg), "{args:?}: {msg:?} not in {t}");
        assert!(!t.contains("panicked"), "{args:?}: {t}");
    }
}
