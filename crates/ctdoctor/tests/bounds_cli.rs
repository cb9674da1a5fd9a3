//! Every flag that sizes a buffer, a window or a table has an upper bound
//! (issue 21): one past it is a usage error (exit 2) whose message names
//! the flag and the range; the bound itself is accepted. Flags checked by
//! clap are shown accepted without running the command: an unknown flag
//! placed after the value makes clap stop there, and it would have stopped
//! at the value first had the value been refused.

mod common;

use common::{run, stderr};

const STOP: &str = "--zz-stop-here";

/// `cmd above` exits 2 naming `flag` and `bound` (a fragment of the
/// range); `cmd at` parses.
fn bounded(cmd: &[&str], flag: &str, above: &str, at: &str, bound: &str) {
    bounded_exit(cmd, flag, above, at, bound, 2);
}

/// `bounded` for the monitoring checks (check, forecast), whose usage
/// errors are UNKNOWN, exit 3, as Nagios expects.
fn bounded_exit(cmd: &[&str], flag: &str, above: &str, at: &str, bound: &str, code: i32) {
    let mut args = cmd.to_vec();
    args.extend([flag, above]);
    let o = run(&args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert!(err.contains(flag) || err.contains(above), "{args:?}: {err}");
    assert!(err.contains(bound), "{args:?} should name {bound:?}: {err}");

    let mut args = cmd.to_vec();
    args.extend([flag, at, STOP]);
    let o = run(&args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert!(
        err.contains(&format!("unexpected argument '{STOP}'")),
        "{args:?}: the bound was refused: {err}"
    );
}

#[test]
fn export_top_is_at_most_100() {
    bounded(&["export"], "--top", "101", "100", "0..=100");
    bounded(&["export"], "--workloads", "1001", "1000", "0..=1000");
}

#[test]
fn export_trend_window_is_at_most_a_day() {
    bounded(&["export"], "--trend-window", "86401", "1d", "1day");
}

#[test]
fn export_forecast_window_is_at_most_an_hour() {
    bounded(&["export"], "--forecast-window", "3601", "1h", "1h");
}

#[test]
fn export_breakdown_interval_is_at_most_a_day() {
    bounded(&["export"], "--breakdown-interval", "86401", "24h", "1day");
}

#[test]
fn export_max_connections_is_16_to_65536() {
    bounded(
        &["export"],
        "--max-connections",
        "65537",
        "65536",
        "16..=65536",
    );
    bounded(&["export"], "--max-connections", "15", "16", "16..=65536");
}

#[test]
fn check_interval_is_at_most_an_hour() {
    bounded_exit(&["check"], "--interval", "3601", "1h", "1h", 3);
}

#[test]
fn watch_interval_is_at_most_an_hour() {
    bounded(&["watch"], "--interval", "3601", "1h", "1h");
}

#[test]
fn watch_top_is_at_most_1000() {
    bounded(&["watch"], "--top", "1001", "1000", "1..=1000");
}

#[test]
fn forecast_window_is_at_most_a_day() {
    bounded_exit(&["forecast"], "--window", "86401", "24h", "1day", 3);
}

#[test]
fn lab_duration_and_step_are_at_most_a_day() {
    bounded(
        &["lab", "short-connections"],
        "--duration",
        "86401",
        "1d",
        "1day",
    );
    bounded(
        &["lab", "short-connections"],
        "--step",
        "86401",
        "1d",
        "1day",
    );
}

/// Bounds checked after parsing (they depend on other flags or on the
/// scenario) are still usage errors, exit 2.
fn refused(args: &[&str], bound: &str) {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(bound), "{args:?} should name {bound:?}: {err}");
}

const IDLE: [&str; 4] = ["simulate", "--rate", "1", "--lifecycle"];

#[test]
fn simulate_duration_is_at_most_30_days() {
    refused(
        &[&IDLE[..], &["idle", "--duration", "31d"]].concat(),
        "30days",
    );
}

#[test]
fn simulate_points_are_at_most_a_million() {
    refused(
        &[
            &IDLE[..],
            &["idle", "--duration", "1000001ms", "--step", "1ms"],
        ]
        .concat(),
        "at most 1000000",
    );
    let o = run(&[
        &IDLE[..],
        &[
            "idle",
            "--duration",
            "1000s",
            "--step",
            "1ms",
            "--max",
            "1000",
        ],
    ]
    .concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn simulate_max_and_buckets_are_bounded() {
    refused(
        &[
            &IDLE[..],
            &["idle", "--duration", "1s", "--max", "100000001"],
        ]
        .concat(),
        "at most 100000000",
    );
    let o = run(&[
        &IDLE[..],
        &["idle", "--duration", "1s", "--max", "100000000"],
    ]
    .concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    refused(
        &[
            &IDLE[..],
            &["idle", "--duration", "1s", "--buckets", "33554433"],
        ]
        .concat(),
        "at most 33554432",
    );
}

#[test]
fn simulate_and_lab_rates_are_bounded() {
    refused(
        &["simulate", "--lifecycle", "idle", "--rate", "2e9"],
        "at most 1e9",
    );
    refused(
        &["lab", "short-connections", "--rate", "10000001"],
        "at most 10000000",
    );
}
