//! The forecast itself, pure: per `proto/STATE` class the arrival rate and
//! mean time in the class (from [`ClassStats`] observed over a window), the
//! steady state by Little's law, the time to full from the least-squares
//! trend of count samples, the combined verdict, and the one change that
//! avoids a full table. Values in, values out: no clock, no /proc, no
//! netlink (ctdoctor's `forecast` command and its exporter gather them).

use std::collections::BTreeMap;

use ctmodel::flows::{ClassKey, ClassStats};
use serde::Serialize;

/// An expired entry still counts until the GC worker reaps it; the worker
/// sleeps at most GC_SCAN_INTERVAL_MAX = 60 s between passes (kernels 5.18+,
/// `gc_worker` in nf_conntrack_core.c, KERNEL.md section 5). A measured time
/// in a class may exceed its timeout by this much without any refresh.
pub const REAP_BOUND_S: f64 = 60.0;

/// Default share of max the suggested change aims the steady state below.
pub const DEFAULT_TARGET_SHARE: f64 = 0.8;

/// The timeout that governs a class: sysctl name without `nf_conntrack_`
/// (a [`crate::timeouts::Timeout::short`] name), its value in this
/// namespace, and the lowest value `ctdoctor plan` would set it to (None:
/// never suggest lower).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeout {
    pub sysctl: String,
    pub seconds: f64,
    pub floor: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClassInput {
    pub stats: ClassStats,
    pub timeout: Option<Timeout>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    /// Seconds the classes were observed.
    pub window: f64,
    pub classes: BTreeMap<ClassKey, ClassInput>,
    /// The namespace's count now, and the (global) max it is compared with.
    pub count: u64,
    pub max: u64,
    /// (seconds, count) samples over the window, oldest first.
    pub samples: Vec<(f64, f64)>,
    /// The suggested change aims the steady state below this share of max.
    pub target_share: f64,
}

/// The sysctl (without `nf_conntrack_`) whose value bounds the time an
/// entry spends in `class` (a `ctmodel::flows::class_key`), if any
/// (ctcore's timeout table, which the simulator uses too).
pub fn timeout_sysctl(class: &str) -> Option<&'static str> {
    crate::timeouts::Timeout::for_class(class).map(|t| t.short())
}

/// Each class with the timeout that governs it: its value from `timeouts`
/// (short sysctl name to seconds, this namespace's; a class whose timeout
/// is missing there gets none) and plan's floor for `profile`.
pub fn class_inputs(
    classes: BTreeMap<ClassKey, ClassStats>,
    timeouts: &BTreeMap<String, f64>,
    profile: crate::plan::Profile,
) -> BTreeMap<ClassKey, ClassInput> {
    classes
        .into_iter()
        .map(|(class, stats)| {
            let timeout = timeout_sysctl(class.as_str()).and_then(|name| {
                Some(Timeout {
                    sysctl: name.to_string(),
                    seconds: *timeouts.get(name)?,
                    floor: crate::timeouts::Timeout::from_name(name)
                        .and_then(|t| crate::plan::timeout_floor(t, profile))
                        .map(|(f, _)| f as f64),
                })
            });
            (class, ClassInput { stats, timeout })
        })
        .collect()
}

/// How the mean time in a class was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DwellBasis {
    /// Bounded lifetimes (what timeout-governed classes have; survivors
    /// younger than the exits were): the mean m that gives the time the
    /// window's arrivals spent in the class, W m - m^2 / 2 per arrival.
    Measured,
    /// From exits, survivors older than the exits on average: a long tail
    /// the window cannot see, so the exponential (memoryless) MLE with
    /// censoring: (time of exits + age of survivors) / exits.
    MeasuredLongTail,
    /// Measured above timeout + [`REAP_BOUND_S`]: capped there.
    CappedAtTimeout,
    /// Nothing left the class in the window: its timeout (a lower bound:
    /// entries count until reaped, see [`REAP_BOUND_S`]).
    Timeout,
    /// Nothing left and no timeout known: the class's current count is used.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassForecast {
    pub class: ClassKey,
    pub entered: u64,
    pub exited: u64,
    /// Live entries in the class now.
    pub live: u64,
    /// Mean time in the class of the entries that left it; None without exits.
    pub exits_mean_s: Option<f64>,
    /// Arrivals seen that are still in the class, and their mean age.
    pub survivors: u64,
    pub survivors_mean_age_s: Option<f64>,
    /// Arrivals per second.
    pub rate: f64,
    /// Mean seconds in the class; None when unknown.
    pub dwell_s: Option<f64>,
    pub dwell_basis: DwellBasis,
    pub timeout: Option<Timeout>,
    /// Entries in the class once arrivals and departures balance.
    pub steady_state: f64,
}

/// Why the time to full is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The count is at max already.
    Full,
    /// The steady state is at or below max: the count levels off, never full.
    LevelsOff,
    /// The steady state is above max: the least-squares trend of the count.
    Trend,
    /// The steady state is above max but the count is not rising over the
    /// window: the approach to the steady state (exponential, Little's
    /// law's time constant).
    Model,
}

/// The change that keeps the steady state below the target share of max.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    LowerTimeout {
        class: ClassKey,
        sysctl: String,
        from_s: f64,
        to_s: u64,
        /// The total steady state with the new timeout.
        steady_state_after: f64,
    },
    RaiseMax {
        /// The class that holds the most (its timeout cannot go low enough).
        class: ClassKey,
        why_not_timeout: String,
        from: u64,
        to: u64,
        /// `ctdoctor plan` / `apply` flags that size max for this peak.
        plan: String,
        apply: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    pub window_s: f64,
    pub count: u64,
    pub max: u64,
    pub classes: Vec<ClassForecast>,
    pub arrivals_per_s: f64,
    pub steady_state: f64,
    pub exceeds_max: bool,
    /// Least-squares slope of the count over the window, entries/s.
    pub trend_per_s: Option<f64>,
    /// Seconds until full at that trend; None when flat or falling.
    pub trend_time_to_full_s: Option<f64>,
    /// The verdict's time to full; None: never at these rates.
    pub time_to_full_s: Option<f64>,
    pub basis: Basis,
    pub explanation: String,
    pub change: Option<Change>,
}

/// A least-squares line through (time, count): (slope per second, fitted
/// count at the last sample's time). None with fewer than two samples
/// spanning time.
pub fn fit(samples: &[(f64, f64)]) -> Option<(f64, f64)> {
    let &(t_last, _) = samples.last()?;
    if samples.len() < 2 {
        return None;
    }
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let mean_c = samples.iter().map(|s| s.1).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for &(t, c) in samples {
        sxy += (t - mean_t) * (c - mean_c);
        sxx += (t - mean_t) * (t - mean_t);
    }
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    slope
        .is_finite()
        .then_some((slope, mean_c + slope * (t_last - mean_t)))
}

/// Seconds from the last sample until the fitted count reaches `max`.
/// +Inf when the trend is flat or falling, or fewer than two samples span
/// time; 0 when the table is already at or above `max`.
pub fn time_to_full(samples: &[(f64, f64)], max: f64) -> f64 {
    let Some(&(_, c_last)) = samples.last() else {
        return f64::INFINITY;
    };
    if c_last >= max {
        return 0.0;
    }
    match fit(samples) {
        // The fitted line's value now, not the last raw sample: one noisy
        // sample must not move the answer more than the trend does.
        Some((slope, fitted_now)) if slope > 0.0 => ((max - fitted_now) / slope).max(0.0),
        _ => f64::INFINITY,
    }
}

/// Mean time in a class and how it was obtained, from `window` seconds of
/// observation.
fn dwell(s: &ClassStats, timeout: Option<&Timeout>, window: f64) -> (Option<f64>, DwellBasis) {
    if s.exited == 0 || s.entered == 0 {
        return match timeout {
            Some(t) => (Some(t.seconds), DwellBasis::Timeout),
            None => (None, DwellBasis::Unknown),
        };
    }
    let exits_mean = s.dwell_sum / s.exited as f64;
    // The integral over the window of the arrivals' count in the class.
    let accumulated = s.dwell_sum + s.still_in_age_sum;
    let (mean, basis) = if s.still_in == 0 || s.still_in_age_sum / s.still_in as f64 <= exits_mean {
        // Arrivals at a constant rate, each staying m seconds (m <= W),
        // accumulate W m - m^2 / 2 seconds each over the window W: solve
        // for m. Exact for a fixed lifetime (TIME_WAIT, UDP), where the
        // memoryless MLE would add m^2 / (2 (W - m)) (+50% for a 30 s
        // timeout in a 60 s window), and it integrates the count over the
        // whole window, so the GC's reaping in passes (every few seconds,
        // a saw tooth in the count) averages out instead of depending on
        // where the last pass fell.
        let per_arrival = (accumulated / s.entered as f64).min(window * window / 2.0);
        (
            window
                - (window * window - 2.0 * window * per_arrival)
                    .max(0.0)
                    .sqrt(),
            DwellBasis::Measured,
        )
    } else {
        (accumulated / s.exited as f64, DwellBasis::MeasuredLongTail)
    };
    match timeout {
        Some(t) if mean > t.seconds + REAP_BOUND_S => {
            (Some(t.seconds + REAP_BOUND_S), DwellBasis::CappedAtTimeout)
        }
        _ => (Some(mean), basis),
    }
}

/// Human duration, rounded to the second.
pub fn human(secs: f64) -> String {
    if !secs.is_finite() {
        return "never".into();
    }
    humantime::format_duration(std::time::Duration::from_secs(secs.round().max(0.0) as u64))
        .to_string()
}

pub fn estimate(i: &Inputs) -> Forecast {
    let window = i.window.max(f64::MIN_POSITIVE);
    let mut classes: Vec<ClassForecast> = i
        .classes
        .iter()
        .map(|(class, c)| {
            let rate = c.stats.entered as f64 / window;
            let (dwell_s, dwell_basis) = dwell(&c.stats, c.timeout.as_ref(), window);
            let steady_state = dwell_s.map_or(c.stats.live as f64, |d| rate * d);
            ClassForecast {
                class: class.clone(),
                entered: c.stats.entered,
                exited: c.stats.exited,
                live: c.stats.live,
                exits_mean_s: (c.stats.exited > 0)
                    .then(|| c.stats.dwell_sum / c.stats.exited as f64),
                survivors: c.stats.still_in,
                survivors_mean_age_s: (c.stats.still_in > 0)
                    .then(|| c.stats.still_in_age_sum / c.stats.still_in as f64),
                rate,
                dwell_s,
                dwell_basis,
                timeout: c.timeout.clone(),
                steady_state,
            }
        })
        .collect();
    classes.sort_by(|a, b| b.steady_state.total_cmp(&a.steady_state));
    // + 0.0: an empty float sum is -0.0.
    let steady_state: f64 = classes.iter().map(|c| c.steady_state).sum::<f64>() + 0.0;
    let arrivals_per_s: f64 = classes.iter().map(|c| c.rate).sum::<f64>() + 0.0;
    let max = i.max as f64;
    let count = i.count as f64;
    let trend = fit(&i.samples).map(|(slope, _)| slope);
    let ttf_trend = time_to_full(&i.samples, max);
    let trend_time_to_full_s = ttf_trend.is_finite().then_some(ttf_trend);
    let pct = |x: f64| 100.0 * x / max.max(1.0);
    let rising = trend.filter(|s| *s > 0.0).map_or(String::new(), |s| {
        format!(" The count is rising now ({s:.1}/s) while it approaches that level.")
    });
    let (time_to_full_s, basis, explanation) = if i.max > 0 && count >= max {
        (
            Some(0.0),
            Basis::Full,
            format!(
                "The count ({}) is at max ({}): new flows are dropped now unless early_drop frees non-assured entries.",
                i.count, i.max
            ),
        )
    } else if steady_state <= max {
        (
            None,
            Basis::LevelsOff,
            format!(
                "Arrivals x time in state give a steady state of {steady_state:.0} entries ({:.0}% of max {}): the table levels off below max, so there is no time to full at these rates.{rising}",
                pct(steady_state),
                i.max
            ),
        )
    } else if let Some(t) = trend_time_to_full_s {
        (
            Some(t),
            Basis::Trend,
            format!(
                "The steady state of {steady_state:.0} entries is above max ({}): at the current trend ({:.1}/s) the table is full in {}.",
                i.max,
                trend.unwrap_or(0.0),
                human(t)
            ),
        )
    } else {
        // dN/dt = arrivals - N / tau with tau = steady / arrivals: N
        // approaches the steady state S as S - (S - N0) e^(-t/tau).
        let tau = steady_state / arrivals_per_s.max(f64::MIN_POSITIVE);
        let t = tau * ((steady_state - count) / (steady_state - max)).ln();
        let t = (t.is_finite() && t >= 0.0).then_some(t);
        (
            t,
            Basis::Model,
            format!(
                "The steady state of {steady_state:.0} entries is above max ({}) although the count is not rising over the window: approaching it (time constant {}), the table is full in {}.",
                i.max,
                human(tau),
                t.map_or("an unknown time".into(), human)
            ),
        )
    };
    let change = change(&classes, steady_state, i.max, i.target_share);
    Forecast {
        window_s: i.window,
        count: i.count,
        max: i.max,
        classes,
        arrivals_per_s,
        steady_state,
        exceeds_max: steady_state > max,
        trend_per_s: trend,
        trend_time_to_full_s,
        time_to_full_s,
        basis,
        explanation,
        change,
    }
}

/// For the class holding the most: the timeout that brings the steady
/// state under `target` x max (not below plan's floor), else the max that
/// does, with plan's flags. None when the steady state is already under it.
fn change(classes: &[ClassForecast], steady: f64, max: u64, target: f64) -> Option<Change> {
    let goal = target * max as f64;
    if steady <= goal {
        return None;
    }
    let top = classes.first()?;
    let others = steady - top.steady_state;
    let why_not = match (&top.timeout, top.dwell_s) {
        (None, _) => format!("no timeout governs {}", top.class),
        (Some(t), _) if t.floor.is_none() => format!(
            "ctdoctor plan has no lower bound for nf_conntrack_{}: not lowered blindly",
            t.sysctl
        ),
        (Some(_), None) => format!("the time in {} is unknown", top.class),
        (Some(t), Some(dwell)) => {
            let floor = t.floor.unwrap_or(t.seconds);
            // Time in the class scales with its timeout (the reaping delay
            // included); what the other classes hold stays.
            let want_dwell = (goal - others) / top.rate.max(f64::MIN_POSITIVE);
            let to = (t.seconds * want_dwell / dwell.max(f64::MIN_POSITIVE)).floor();
            if want_dwell > 0.0 && to >= floor && to < t.seconds {
                let after = others + top.rate * dwell * to / t.seconds;
                return Some(Change::LowerTimeout {
                    class: top.class.clone(),
                    sysctl: t.sysctl.clone(),
                    from_s: t.seconds,
                    to_s: to as u64,
                    steady_state_after: after,
                });
            }
            if want_dwell <= 0.0 {
                format!(
                    "the other classes alone hold {others:.0}, above {:.0}% of max",
                    target * 100.0
                )
            } else {
                format!(
                    "nf_conntrack_{} would have to go to {to:.0} s, below {floor:.0} s, the lowest ctdoctor plan sets",
                    t.sysctl
                )
            }
        }
    };
    let to = (steady / target).ceil() as u64;
    let peak = steady.ceil() as u64;
    let headroom = 1.0 / target;
    Some(Change::RaiseMax {
        class: top.class.clone(),
        why_not_timeout: why_not,
        from: max,
        to,
        plan: format!("ctdoctor plan --peak {peak} --headroom {headroom}"),
        apply: format!("ctdoctor apply --peak {peak} --headroom {headroom} --yes"),
    })
}

/// Nagios-style status of a forecast (the exit code is the number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok = 0,
    Warning = 1,
    Critical = 2,
}

/// CRITICAL when full sooner than `crit` seconds, WARNING sooner than `warn`.
pub fn status(f: &Forecast, crit: f64, warn: f64) -> Status {
    match f.time_to_full_s {
        Some(t) if t < crit => Status::Critical,
        Some(t) if t < warn => Status::Warning,
        _ => Status::Ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> ClassKey {
        ClassKey::parse(k).expect("class key")
    }

    fn stats(entered: u64, exited: u64, dwell_sum: f64, still_in: u64, age: f64) -> ClassStats {
        ClassStats {
            entered,
            exited,
            dwell_sum,
            still_in,
            still_in_age_sum: age,
            live: still_in,
        }
    }

    fn timeout(sysctl: &str, seconds: f64, floor: Option<f64>) -> Option<Timeout> {
        Some(Timeout {
            sysctl: sysctl.into(),
            seconds,
            floor,
        })
    }

    fn inputs(classes: Vec<(&str, ClassStats, Option<Timeout>)>, count: u64, max: u64) -> Inputs {
        Inputs {
            window: 60.0,
            classes: classes
                .into_iter()
                .map(|(k, stats, timeout)| (key(k), ClassInput { stats, timeout }))
                .collect(),
            count,
            max,
            samples: Vec::new(),
            target_share: DEFAULT_TARGET_SHARE,
        }
    }

    /// Arrivals at `rate`/s for `window` s, each living exactly `d` s.
    fn fixed_lifetime(rate: f64, window: f64, d: f64) -> ClassStats {
        let exited = (rate * (window - d)) as u64;
        let still = (rate * d) as u64;
        stats(
            exited + still,
            exited,
            exited as f64 * d,
            still,
            still as f64 * d / 2.0,
        )
    }

    #[test]
    fn timeouts_follow_the_simulators_states() {
        assert_eq!(
            timeout_sysctl("tcp/TIME_WAIT"),
            Some("tcp_timeout_time_wait")
        );
        assert_eq!(timeout_sysctl("udp/UNREPLIED"), Some("udp_timeout"));
        assert_eq!(timeout_sysctl("udp/REPLIED"), Some("udp_timeout"));
        assert_eq!(timeout_sysctl("udp/ASSURED"), Some("udp_timeout_stream"));
        assert_eq!(timeout_sysctl("icmp/UNREPLIED"), Some("icmp_timeout"));
        assert_eq!(timeout_sysctl("icmpv6/REPLIED"), Some("icmpv6_timeout"));
        assert_eq!(timeout_sysctl("unknown/REPLIED"), Some("generic_timeout"));
        assert_eq!(timeout_sysctl("sctp/ESTABLISHED"), None);
        assert_eq!(timeout_sysctl("garbage"), None);
    }

    #[test]
    fn classes_get_the_namespaces_timeout_and_plans_floor() {
        let classes = ["udp/UNREPLIED", "tcp/TIME_WAIT", "sctp/ESTABLISHED"]
            .into_iter()
            .map(|k| (key(k), stats(1, 0, 0.0, 1, 0.0)))
            .collect();
        let timeouts = [("udp_timeout".to_string(), 45.0)].into_iter().collect();
        let c = class_inputs(classes, &timeouts, crate::plan::Profile::Web);
        assert_eq!(
            c["udp/UNREPLIED"].timeout,
            timeout("udp_timeout", 45.0, Some(30.0))
        );
        // Not read in this namespace, and no timeout governs sctp.
        assert_eq!(c["tcp/TIME_WAIT"].timeout, None);
        assert_eq!(c["sctp/ESTABLISHED"].timeout, None);
    }

    #[test]
    fn fixed_lifetimes_are_exact_where_the_mle_is_not() {
        // 100/s, 30 s each, 60 s window: 3000 done, 3000 inside.
        let s = fixed_lifetime(100.0, 60.0, 30.0);
        let (d, basis) = dwell(&s, None, 60.0);
        assert_eq!(basis, DwellBasis::Measured);
        assert!((d.expect("dwell") - 30.0).abs() < 1e-9, "{d:?}");
        // The memoryless MLE would say (90000 + 45000) / 3000 = 45 s.
        assert_eq!((s.dwell_sum + s.still_in_age_sum) / s.exited as f64, 45.0);
        let f = estimate(&inputs(
            vec![("udp/UNREPLIED", s, timeout("udp_timeout", 30.0, Some(30.0)))],
            3000,
            262_144,
        ));
        assert!((f.steady_state - 3000.0).abs() < 1e-6, "{}", f.steady_state);
        assert!((f.classes[0].rate - 100.0).abs() < 1e-9);
    }

    #[test]
    fn long_tails_use_the_censored_mle() {
        // 10 exits after 2 s each; 90 survivors aged 30 s on average.
        let s = stats(100, 10, 20.0, 90, 2700.0);
        let (d, basis) = dwell(
            &s,
            timeout("tcp_timeout_established", 432_000.0, None).as_ref(),
            60.0,
        );
        assert_eq!(basis, DwellBasis::MeasuredLongTail);
        assert!((d.expect("dwell") - 272.0).abs() < 1e-9);
    }

    #[test]
    fn dwell_is_capped_at_timeout_plus_the_reaping_bound() {
        let s = stats(100, 1, 10.0, 99, 99.0 * 500.0);
        let (d, basis) = dwell(&s, timeout("udp_timeout", 30.0, Some(30.0)).as_ref(), 60.0);
        assert_eq!(basis, DwellBasis::CappedAtTimeout);
        assert_eq!(d, Some(90.0));
    }

    #[test]
    fn no_exit_means_the_timeout_and_no_timeout_means_the_live_count() {
        let s = stats(600, 0, 0.0, 600, 18_000.0);
        let f = estimate(&inputs(
            vec![
                (
                    "tcp/TIME_WAIT",
                    s,
                    timeout("tcp_timeout_time_wait", 120.0, Some(120.0)),
                ),
                ("sctp/ESTABLISHED", stats(0, 0, 0.0, 7, 0.0), None),
            ],
            607,
            262_144,
        ));
        let tw = &f.classes[0];
        assert_eq!(
            (tw.dwell_basis, tw.dwell_s),
            (DwellBasis::Timeout, Some(120.0))
        );
        assert!((tw.steady_state - 1200.0).abs() < 1e-9);
        let sctp = &f.classes[1];
        assert_eq!(
            (sctp.dwell_basis, sctp.steady_state),
            (DwellBasis::Unknown, 7.0)
        );
        assert!((f.steady_state - 1207.0).abs() < 1e-9);
    }

    #[test]
    fn levels_off_below_max_even_while_rising() {
        let mut i = inputs(
            vec![(
                "udp/UNREPLIED",
                fixed_lifetime(100.0, 60.0, 30.0),
                timeout("udp_timeout", 30.0, Some(30.0)),
            )],
            2000,
            10_000,
        );
        i.samples = (0..=30)
            .map(|t| (f64::from(t), f64::from(t) * 100.0))
            .collect();
        let f = estimate(&i);
        assert_eq!(f.basis, Basis::LevelsOff);
        assert_eq!(f.time_to_full_s, None);
        assert!(f.trend_time_to_full_s.is_some());
        assert!(f.explanation.contains("levels off"), "{}", f.explanation);
        assert!(
            f.explanation.contains("rising now (100.0/s)"),
            "{}",
            f.explanation
        );
        assert_eq!(status(&f, 900.0, 7200.0), Status::Ok);
        assert_eq!(f.change, None);
    }

    #[test]
    fn above_max_uses_the_trend() {
        // 1000/s for a 600 s timeout, nothing exited yet: steady 600,000.
        let mut i = inputs(
            vec![(
                "tcp/TIME_WAIT",
                stats(60_000, 0, 0.0, 60_000, 1.8e6),
                timeout("tcp_timeout_time_wait", 600.0, Some(120.0)),
            )],
            100_000,
            262_144,
        );
        i.samples = (0..=60)
            .map(|t| (f64::from(t), 40_000.0 + f64::from(t) * 1000.0))
            .collect();
        let f = estimate(&i);
        assert!(f.exceeds_max);
        assert_eq!(f.basis, Basis::Trend);
        let t = f.time_to_full_s.expect("ttf");
        assert!((t - 162.144).abs() < 1e-6, "{t}");
        assert_eq!(status(&f, 900.0, 7200.0), Status::Critical);
        assert_eq!(status(&f, 100.0, 7200.0), Status::Warning);
        // 1000/s x T' <= 0.8 x 262144 -> T' = 209 s (>= plan's 120 s floor).
        match f.change {
            Some(Change::LowerTimeout {
                ref sysctl,
                to_s,
                steady_state_after,
                ..
            }) => {
                assert_eq!(sysctl, "tcp_timeout_time_wait");
                assert_eq!(to_s, 209);
                assert!(steady_state_after <= 0.8 * 262_144.0);
            }
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn raise_max_when_the_timeout_is_at_its_floor() {
        let f = estimate(&inputs(
            vec![(
                "udp/UNREPLIED",
                fixed_lifetime(1000.0, 60.0, 30.0),
                timeout("udp_timeout", 30.0, Some(30.0)),
            )],
            20_000,
            32_768,
        ));
        // Steady 30,000 of 32,768: levels off, but above 80%.
        assert_eq!(f.basis, Basis::LevelsOff);
        match f.change {
            Some(Change::RaiseMax {
                to,
                ref plan,
                ref why_not_timeout,
                ..
            }) => {
                assert_eq!(to, 37_500);
                assert_eq!(plan, "ctdoctor plan --peak 30000 --headroom 1.25");
                assert!(why_not_timeout.contains("below 30 s"), "{why_not_timeout}");
            }
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn above_max_but_flat_uses_the_approach_model() {
        // 100/s x 120 s = 12,000 > max 10,000, count 5,000 and flat samples.
        let mut i = inputs(
            vec![(
                "tcp/TIME_WAIT",
                stats(6000, 0, 0.0, 6000, 0.0),
                timeout("tcp_timeout_time_wait", 120.0, Some(120.0)),
            )],
            5000,
            10_000,
        );
        i.samples = vec![(0.0, 5000.0), (60.0, 5000.0)];
        let f = estimate(&i);
        assert_eq!(f.basis, Basis::Model);
        // tau = 120 s; t = 120 ln(7000 / 2000)
        let t = f.time_to_full_s.expect("ttf");
        assert!((t - 120.0 * 3.5f64.ln()).abs() < 1e-6, "{t}");
    }

    #[test]
    fn full_is_zero_and_critical() {
        let f = estimate(&inputs(Vec::new(), 100, 100));
        assert_eq!((f.basis, f.time_to_full_s), (Basis::Full, Some(0.0)));
        assert_eq!(status(&f, 900.0, 7200.0), Status::Critical);
    }

    #[test]
    fn trend_empty_and_single_are_infinite() {
        assert_eq!(time_to_full(&[], 100.0), f64::INFINITY);
        assert_eq!(time_to_full(&[(0.0, 10.0)], 100.0), f64::INFINITY);
    }

    #[test]
    fn trend_flat_and_falling_are_infinite() {
        let flat: Vec<_> = (0..10).map(|i| (f64::from(i) * 10.0, 50.0)).collect();
        assert_eq!(time_to_full(&flat, 100.0), f64::INFINITY);
        let falling: Vec<_> = (0..10)
            .map(|i| (f64::from(i) * 10.0, 90.0 - f64::from(i)))
            .collect();
        assert_eq!(time_to_full(&falling, 100.0), f64::INFINITY);
    }

    #[test]
    fn trend_linear_growth_is_exact() {
        // 1 entry/s from 0 at t=0..90: at t=90 count 90, full (1000) in 910 s.
        let s: Vec<_> = (0..10)
            .map(|i| (f64::from(i) * 10.0, f64::from(i) * 10.0))
            .collect();
        let ttf = time_to_full(&s, 1000.0);
        assert!((ttf - 910.0).abs() < 1e-6, "{ttf}");
    }

    #[test]
    fn trend_noise_is_averaged() {
        let s = [(0.0, 0.0), (10.0, 30.0), (20.0, 10.0), (30.0, 30.0)];
        // slope = 350/500 = 0.7/s by least squares; fitted now = 17.5 + 0.7 x 15 = 28
        let ttf = time_to_full(&s, 100.0);
        assert!((ttf - 72.0 / 0.7).abs() < 1e-6, "{ttf}");
    }

    #[test]
    fn trend_full_is_zero() {
        assert_eq!(time_to_full(&[(0.0, 10.0), (10.0, 100.0)], 100.0), 0.0);
    }

    #[test]
    fn trend_same_time_is_infinite() {
        assert_eq!(
            time_to_full(&[(5.0, 1.0), (5.0, 2.0)], 100.0),
            f64::INFINITY
        );
    }
}
