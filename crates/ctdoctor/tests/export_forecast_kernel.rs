//! The exporter on events against `ctdoctor forecast` on the same
//! namespace over the same period (issue 19): a throwaway namespace (prefix
//! `xf`) with tracked loopback, `ctdoctor export --forecast-window 10s`
//! started, and `ctdoctor forecast --json --window 10s` run at once beside
//! it. On a fill (keep-alive TCP connections opened at a constant rate and
//! held, the table pre-filled close to nf_conntrack_max) both must give the
//! same verdict: times to full within 20% of each other, the same status,
//! the same evidence for tcp/ESTABLISHED; on a flat load (connections held,
//! none opened or closed: arrivals = departures) both say no time to full.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ctlab::Netns;
use serde_json::Value;

mod common;
use common::exporter::{self, HELD, Killed};
use common::{json, run, with_flows};

/// One traffic test at a time: two cores, and each test times its rates.
static SERIAL: Mutex<()> = Mutex::new(());

const PORT: u16 = 19467;
const CRIT_S: f64 = 15.0 * 60.0;
const WARN_S: f64 = 2.0 * 3600.0;

/// The exporter on `source` with 10 s forecast windows, serving.
fn exporter(ns: &Netns, source: &str) -> Killed {
    exporter::start(ns, PORT, &["--forecast-window", "10s", "--source", source])
}

fn scrape(ns: &Netns) -> std::io::Result<String> {
    exporter::scrape(ns, PORT)
}

/// Samples by name with their labels as `k=v,...` (sorted).
fn samples(text: &str) -> BTreeMap<(String, String), f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("prometheus-parse accepts the exposition");
    scrape
        .samples
        .into_iter()
        .filter_map(|s| {
            let v = match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            let mut l: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            l.sort();
            Some(((s.metric, l.join(",")), v))
        })
        .collect()
}

/// The first scrape that has a complete forecast window (within 30 s).
fn first_window(ns: &Netns) -> BTreeMap<(String, String), f64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(t) = scrape(ns) {
            let s = samples(&t);
            if s.contains_key(&("ctdoctor_forecast_window_seconds".into(), String::new())) {
                return s;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no forecast window published within 30 s");
}

fn get(s: &BTreeMap<(String, String), f64>, name: &str, labels: &str) -> f64 {
    *s.get(&(name.to_string(), labels.to_string()))
        .unwrap_or_else(|| panic!("no {name}{{{labels}}} in {s:#?}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// forecast's status for a time to full (its default --crit and --warn).
fn status(ttf: f64) -> &'static str {
    if ttf < CRIT_S {
        "CRITICAL"
    } else if ttf < WARN_S {
        "WARNING"
    } else {
        "OK"
    }
}

/// The exporter and `forecast --window 10s`, started together; returns
/// the exporter's first complete window and forecast's report.
fn side_by_side(ns: &Netns) -> (BTreeMap<(String, String), f64>, Value, i32) {
    let _exporter = exporter(ns, "events");
    let o = run(&[
        "--netns",
        ns.name(),
        "forecast",
        "--json",
        "--window",
        "10s",
    ]);
    let v = json(&o);
    let code = o.status.code().unwrap_or(-1);
    (first_window(ns), v, code)
}

/// The scrapes themselves are flows: untracked, so both see the same load.
fn namespace(name: &str) -> Netns {
    exporter::events_namespace(name, PORT)
}

#[test]
fn exporter_and_forecast_agree_on_a_fill() {
    ctlab::require_root!();
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = namespace("xf-fill");
    // About 40 s of fill at 300/s after a pre-fill (as forecast_kernel's
    // held-connections test: two descriptors per connection).
    let rate = 300.0;
    let room = 9_000;
    exporter::fds_for(room + 500);
    exporter::prefill_leaving(&ns, room);
    let (report, (m, v, code)) = with_flows(&ns, &HELD, rate, room + 500, || {
        std::thread::sleep(Duration::from_secs(1));
        side_by_side(&ns)
    });
    let ttf_export = get(&m, "ctdoctor_time_to_full_seconds", "");
    let ttf_forecast = f(&v["time_to_full_s"]);
    let evidence = |e: &str| {
        m.get(&(
            "ctdoctor_forecast_evidence".to_string(),
            format!("class=tcp/ESTABLISHED,evidence={e}"),
        ))
        .copied()
    };
    let est = v["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .find(|c| c["class"] == "tcp/ESTABLISHED")
        .unwrap_or_else(|| panic!("no tcp/ESTABLISHED: {v:#}"));
    eprintln!(
        "generated {:.1}/s; export: time to full {ttf_export:.1} s, steady state {:.0}, new {:.1}/s, window {:.1} s; forecast: time to full {ttf_forecast:.1} s ({}), steady state {:.0}, new {:.1}/s",
        report.rate(),
        get(&m, "ctdoctor_forecast_steady_state_entries", ""),
        get(&m, "ctdoctor_new_flows_per_second", ""),
        get(&m, "ctdoctor_forecast_window_seconds", ""),
        v["status"],
        f(&v["steady_state"]),
        f(&v["arrivals_per_s"]),
    );
    assert_eq!(get(&m, "ctdoctor_forecast_source", "source=events"), 1.0);
    assert_eq!(v["source"], "events");
    let err = (ttf_export - ttf_forecast).abs() / ttf_forecast;
    assert!(
        err < 0.20,
        "time to full: export {ttf_export:.1} s vs forecast {ttf_forecast:.1} s ({:.1}%)",
        err * 100.0
    );
    assert_eq!(status(ttf_export), v["status"], "{v:#}");
    assert_eq!(code, 2, "CRITICAL: {v:#}");
    // The same evidence (nothing left ESTABLISHED: unknown, its floor the live count).
    assert_eq!(est["evidence"], "unknown", "{est:#}");
    assert_eq!(evidence("unknown"), Some(1.0), "{m:#?}");
    assert_eq!(evidence("measured"), None);
    let steady = get(
        &m,
        "ctdoctor_forecast_class_steady_state_entries",
        "class=tcp/ESTABLISHED",
    );
    let err = (steady - f(&est["steady_state"])).abs() / f(&est["steady_state"]);
    assert!(err < 0.20, "ESTABLISHED steady state {steady} vs {est:#}");
    // New flows: the generator's rate, in both.
    for (what, rate) in [
        ("export", get(&m, "ctdoctor_new_flows_per_second", "")),
        ("forecast", f(&v["arrivals_per_s"])),
    ] {
        let err = (rate - report.rate()).abs() / report.rate();
        assert!(err < 0.15, "{what} new flows {rate} vs {}", report.rate());
    }
    // Each connection from its own address: no source above 1% of them,
    // nearly all under "other" (a gauge per top source, bounded).
    let creators: Vec<_> = m
        .iter()
        .filter(|((n, _), _)| n == "ctdoctor_top_creator_new_flows_per_second")
        .collect();
    assert!(creators.len() <= 11, "{creators:#?}");
    let other = get(
        &m,
        "ctdoctor_top_creator_new_flows_per_second",
        "source=other",
    );
    assert!(other > 0.9 * report.rate(), "other {other}");
    // The breakdown is the tracker's: ESTABLISHED holds the connections.
    let by_state = get(&m, "ctdoctor_entries_by_state", "l4=tcp,state=ESTABLISHED");
    assert!(by_state >= f(&est["live"]) * 0.9, "{by_state} vs {est:#}");
}

#[test]
fn exporter_and_forecast_agree_on_a_flat_load() {
    ctlab::require_root!();
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = namespace("xf-flat");
    let flows = 2_000;
    exporter::fds_for(flows);
    let (report, (m, v, code)) = with_flows(&ns, &HELD, 1000.0, flows, || {
        // All open (2 s at 1,000/s), then held: nothing arrives or leaves.
        std::thread::sleep(Duration::from_secs(3));
        side_by_side(&ns)
    });
    assert_eq!(report.started, flows, "connections opened");
    eprintln!(
        "export: time to full {}, steady state {}; forecast: {} {}, steady state {}",
        get(&m, "ctdoctor_time_to_full_seconds", ""),
        get(&m, "ctdoctor_forecast_steady_state_entries", ""),
        v["status"],
        v["basis"],
        v["steady_state"]
    );
    assert_eq!(
        get(&m, "ctdoctor_time_to_full_seconds", ""),
        f64::INFINITY,
        "{m:#?}"
    );
    assert!(v["time_to_full_s"].is_null(), "{v:#}");
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(status(f64::INFINITY), v["status"]);
    assert_eq!(get(&m, "ctdoctor_new_flows_per_second", ""), 0.0);
    assert_eq!(f(&v["arrivals_per_s"]), 0.0);
    let steady = get(&m, "ctdoctor_forecast_steady_state_entries", "");
    let err = (steady - f(&v["steady_state"])).abs() / f(&v["steady_state"]);
    assert!(err < 0.05, "steady state {steady} vs {}", v["steady_state"]);
}

/// Events off: the exporter falls back to the dumps and says so; the
/// verdict's families (per class, evidence, new flows) are absent, and
/// `--source events` refuses to start.
#[test]
fn without_events_the_exporter_says_dumps() {
    ctlab::require_root!();
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = namespace("xf-dumps");
    ns.sysctl("net.netfilter.nf_conntrack_events", "0")
        .expect("sysctl in the test namespace");
    ns.insert(&ctlab::fill(500, true)).expect("insert");
    {
        let _exporter = exporter(&ns, "auto");
        // The first breakdown dump runs right after start.
        let deadline = Instant::now() + Duration::from_secs(10);
        let (t, m) = loop {
            let t = scrape(&ns).expect("scrape");
            let m = samples(&t);
            if m.keys().any(|(n, _)| n == "ctdoctor_entries_by_l4") || Instant::now() > deadline {
                break (t, m);
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(
            get(&m, "ctdoctor_forecast_source", "source=dumps"),
            1.0,
            "{t}"
        );
        assert!(
            !m.contains_key(&("ctdoctor_forecast_source".into(), "source=events".into())),
            "{t}"
        );
        for absent in [
            "ctdoctor_forecast_evidence",
            "ctdoctor_forecast_class_steady_state_entries",
            "ctdoctor_new_flows_per_second",
        ] {
            assert!(!m.keys().any(|(n, _)| n == absent), "{absent} in {t}");
        }
        // The breakdown is the dump's.
        assert_eq!(get(&m, "ctdoctor_entries_by_l4", "l4=tcp"), 500.0, "{t}");
    }
    let o = run(&[
        "--netns",
        ns.name(),
        "export",
        "--listen",
        "127.0.0.1:19468",
        "--source",
        "events",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    assert!(common::stderr(&o).contains("nf_conntrack_events is 0"));
}
