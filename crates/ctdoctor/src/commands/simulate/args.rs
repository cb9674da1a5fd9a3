//! Parsing and bounds of `simulate`'s arguments: durations, steps,
//! `--timeout NAME=SECONDS`, rates. Pure: no I/O; every error is a usage
//! error (exit 2) with the bound it broke.

use ctcore::timeouts::{self, Timeout};

use crate::exit::Usage;

fn usage(msg: impl Into<String>) -> Usage {
    Usage(msg.into())
}

/// The longest run accepted: 30 days of simulated time. Longer runs add
/// nothing a 30-day run does not show (the longest default timeout is the
/// 5-day TCP established one) and only cost minutes of CPU.
pub const MAX_DURATION_S: f64 = 30.0 * 86_400.0;
/// At most this many series points (duration / step), so the series
/// fits in memory and in a plot.
pub const MAX_POINTS: f64 = 1_000_000.0;
/// New connections per second above this are not a workload but a typo
/// (10x the fastest NIC's small-packet rate).
pub const MAX_RATE: f64 = 1e9;

/// The most connections one run may simulate (rate x duration summed over
/// the classes): 1e10 is about half an hour of one core at the model's
/// 5 million connections/s, 11 times the 24 h at 10,000/s.
pub const MAX_FLOWS: f64 = 1e10;

/// `--duration` or `--step` in seconds: the flags' one duration syntax
/// (ctcore::duration), from 1ms to [`MAX_DURATION_S`].
pub fn parse_seconds(what: &str, s: &str) -> Result<f64, Usage> {
    let max = std::time::Duration::from_secs_f64(MAX_DURATION_S);
    ctcore::duration::parse(s, ctcore::duration::MILLISECOND, max)
        .map(|d| d.as_secs_f64())
        .map_err(|e| usage(format!("{what} {e}")))
}

/// Check duration and step together; returns them in seconds.
pub fn duration_and_step(duration: &str, step: &str) -> Result<(f64, f64), Usage> {
    let d = parse_seconds("--duration", duration)?;
    let st = parse_seconds("--step", step)?;
    if st > d {
        return Err(usage(format!(
            "--step {step} is longer than --duration {duration}"
        )));
    }
    if d / st > MAX_POINTS {
        return Err(usage(format!(
            "--duration {duration} / --step {step} = {:.0} points: at most {MAX_POINTS:.0}; use a longer --step",
            d / st
        )));
    }
    Ok((d, st))
}

/// The longest timeout accepted: the kernel stores timeouts in jiffies in
/// a u32 since 6.x (`nf_conntrack_tcp_timeout_established` max is about
/// 2^31/HZ); 100 days is far above any real setting.
pub const MAX_TIMEOUT_S: u64 = 100 * 86_400;

/// `tcp_timeout_time_wait=600` (the `nf_conntrack_` prefix is accepted too).
pub fn parse_timeout(s: &str) -> Result<(String, u64), Usage> {
    let (name, value) = s.split_once('=').ok_or_else(|| {
        usage(format!(
            "--timeout {s:?}: expected NAME=SECONDS, e.g. tcp_timeout_time_wait=600"
        ))
    })?;
    let name = name.trim();
    let Some(timeout) = Timeout::from_name(name) else {
        let name = name.strip_prefix(timeouts::PREFIX).unwrap_or(name);
        return Err(usage(format!(
            "--timeout {s:?}: unknown timeout {name:?}; known: {}",
            Timeout::short_names()
        )));
    };
    let secs: u64 = value.trim().parse().map_err(|_| {
        usage(format!(
            "--timeout {s:?}: {value:?} is not a whole number of seconds"
        ))
    })?;
    if secs == 0 || secs > MAX_TIMEOUT_S {
        return Err(usage(format!(
            "--timeout {s:?}: between 1 and {MAX_TIMEOUT_S} seconds (100 days)"
        )));
    }
    Ok((timeout.short().to_string(), secs))
}

/// New connections per second for `--rate`.
pub fn check_rate(r: f64) -> Result<f64, Usage> {
    if !r.is_finite() || r <= 0.0 {
        return Err(usage(format!(
            "--rate {r}: must be more than zero new connections/s"
        )));
    }
    if r > MAX_RATE {
        return Err(usage(format!(
            "--rate {r}: at most {MAX_RATE:e} new connections/s"
        )));
    }
    Ok(r)
}

/// The lifecycles `--lifecycle` accepts (a contract: tests use these).
pub const LIFECYCLES: &[&str] = &[
    "short-http",
    "keepalive",
    "idle",
    "dns",
    "udp-stream",
    "icmp",
    "syn-flood",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_seconds("--duration", "1h"), Ok(3600.0));
        assert_eq!(parse_seconds("--duration", "90"), Ok(90.0));
        assert_eq!(parse_seconds("--step", "250ms"), Ok(0.25));
        assert!(parse_seconds("--duration", "0").is_err());
        assert!(parse_seconds("--duration", "-5").is_err());
        assert!(parse_seconds("--duration", "soon").is_err());
        assert!(
            duration_and_step("10s", "20s")
                .expect_err("must fail")
                .0
                .contains("longer than")
        );
        assert!(
            duration_and_step("365d", "1h")
                .expect_err("must fail")
                .0
                .contains("between 1ms and 30days")
        );
        assert!(
            duration_and_step("30d", "1ms")
                .expect_err("must fail")
                .0
                .contains("points")
        );
        assert_eq!(duration_and_step("1h", "1s"), Ok((3600.0, 1.0)));
    }

    #[test]
    fn timeouts() {
        assert_eq!(
            parse_timeout("tcp_timeout_time_wait=600"),
            Ok(("tcp_timeout_time_wait".into(), 600))
        );
        assert_eq!(
            parse_timeout("nf_conntrack_udp_timeout=30"),
            Ok(("udp_timeout".into(), 30))
        );
        assert!(
            parse_timeout("tcp_timeout_bogus=5")
                .expect_err("must fail")
                .0
                .contains("unknown timeout")
        );
        assert!(parse_timeout("udp_timeout").is_err());
        assert!(parse_timeout("udp_timeout=-1").is_err());
        assert!(parse_timeout("udp_timeout=0").is_err());
    }

    #[test]
    fn rates() {
        assert!(check_rate(0.0).is_err());
        assert!(check_rate(-3.0).is_err());
        assert!(check_rate(f64::NAN).is_err());
        assert_eq!(check_rate(1000.0), Ok(1000.0));
    }
}
