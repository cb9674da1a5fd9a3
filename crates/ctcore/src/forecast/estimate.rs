//! The forecast itself, pure: per `proto/STATE` class the arrival rate and
//! the mean time in the class estimated from what the window shows, the
//! steady state by Little's law, the time to full from the least-squares
//! trend of count samples, the combined verdict, and the one change that
//! avoids a full table. Values in, values out: no clock, no /proc, no
//! netlink (ctdoctor's `forecast` command and its exporter gather them).
//!
//! The time in a class is a censored-lifetime estimate: the exits with
//! their times and the survivors with their ages (right-censored at the
//! end of the window). Kaplan-Meier, not the exponential MLE with
//! censoring: conntrack lifetimes are bounded by a timeout (TIME_WAIT, UDP,
//! idle ESTABLISHED all live "timeout + the GC's delay"), not memoryless,
//! and for a fixed lifetime m seen through a window W the exponential MLE
//! (exit times + survivor ages) / exits is m + m^2 / (2 (W - m)): +50% for
//! a 30 s lifetime in a 60 s window. Kaplan-Meier assumes no shape: its
//! survival curve reaches zero at the longest exit when no survivor is
//! older, and the area under it is then the mean itself. When survivors
//! outlive every exit (a long tail the window cannot see), the area is a
//! lower bound, and the part beyond the last time is extended with the
//! exponential MLE's mean (the memoryless guess is all the data allows);
//! the class timeout plus the GC's reaping bound caps the result.
//!
//! Evidence per class: `measured` (the curve reaches 5% or less, from at
//! least [`MIN_EXITS`] exits), `bounded` (some exits, but fewer, a tail
//! beyond the window, or capped by the timeout), `unknown` (nothing left
//! the class in the window: not enough evidence; the class's live count is
//! its steady state's floor, never its timeout, and a rising count with
//! such a class cannot be said to level off). From two dumps (no events)
//! the survivors' share of the first dump's class gives the steady state
//! directly: N = entered / (1 - stayed / first) (exact for a stationary
//! class whatever its lifetime distribution).

use std::collections::BTreeMap;

use ctmodel::flows::{ClassKey, ClassStats};
use serde::Serialize;

use super::dumps::DumpClass;

/// An expired entry still counts until the GC worker reaps it; the worker
/// sleeps at most GC_SCAN_INTERVAL_MAX = 60 s between passes (kernels 5.18+,
/// `gc_worker` in nf_conntrack_core.c, KERNEL.md section 5). A measured time
/// in a class may exceed its timeout by this much without any refresh.
pub const REAP_BOUND_S: f64 = 60.0;

/// Default share of max the suggested change aims the steady state below.
pub const DEFAULT_TARGET_SHARE: f64 = 0.8;

/// Exits a class needs for its time to count as measured.
pub const MIN_EXITS: u64 = 10;

/// Share of the window's arrivals still in the class after its longest
/// observed time at most which the mean counts as measured.
pub const MEASURED_TAIL: f64 = 0.05;

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

/// What was observed of one class.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// Events: arrivals, exits with times, survivors with ages.
    Events(ClassStats),
    /// Two dumps a window apart.
    Dumps(DumpClass),
}

impl Observed {
    fn live(&self) -> u64 {
        match self {
            Observed::Events(s) => s.live,
            Observed::Dumps(d) => d.live,
        }
    }
}

impl From<ClassStats> for Observed {
    fn from(s: ClassStats) -> Self {
        Observed::Events(s)
    }
}

impl From<DumpClass> for Observed {
    fn from(d: DumpClass) -> Self {
        Observed::Dumps(d)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClassInput {
    pub observed: Observed,
    pub timeout: Option<Timeout>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    /// Seconds the classes were observed.
    pub window: f64,
    pub classes: BTreeMap<ClassKey, ClassInput>,
    /// The namespace's count now, and the (global) max it is compared with
    /// (0: unlimited).
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
pub fn class_inputs<O: Into<Observed>>(
    classes: BTreeMap<ClassKey, O>,
    timeouts: &BTreeMap<String, f64>,
    profile: crate::plan::Profile,
) -> BTreeMap<ClassKey, ClassInput> {
    classes
        .into_iter()
        .map(|(class, observed)| {
            let timeout = timeout_sysctl(class.as_str()).and_then(|name| {
                Some(Timeout {
                    sysctl: name.to_string(),
                    seconds: *timeouts.get(name)?,
                    floor: crate::timeouts::Timeout::from_name(name)
                        .and_then(|t| crate::plan::timeout_floor(t, profile))
                        .map(|(f, _)| f as f64),
                })
            });
            (
                class,
                ClassInput {
                    observed: observed.into(),
                    timeout,
                },
            )
        })
        .collect()
}

/// How much the window says about a class's time in state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// The mean time is measured (see the module header).
    Measured,
    /// Some entries left, but the mean is only bounded: few exits, a tail
    /// beyond the window, or capped by the timeout.
    Bounded,
    /// Nothing left the class in the window: not enough evidence; the
    /// class's steady state is at least its live count.
    Unknown,
}

impl Evidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::Measured => "measured",
            Evidence::Bounded => "bounded",
            Evidence::Unknown => "unknown",
        }
    }
}

/// How the mean time in a class was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DwellBasis {
    /// Kaplan-Meier: the area under the survival curve of the window's
    /// arrivals, which reaches (almost) zero.
    KaplanMeier,
    /// Kaplan-Meier's area up to the longest time seen, plus the tail
    /// beyond it at the exponential MLE's mean (survivors outlive exits).
    KaplanMeierTail,
    /// Estimated above timeout + [`REAP_BOUND_S`]: capped there.
    CappedAtTimeout,
    /// Two dumps: the first dump's survivors' share (exponential reading
    /// for the time, -window / ln(share)).
    DumpSurvival,
    /// Two dumps, none of the first dump's entries stayed: every lifetime
    /// is shorter than the window; the time is not known.
    ShorterThanWindow,
    /// Nothing left the class: no time is estimated (the live count is the floor).
    NoExits,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassForecast {
    pub class: ClassKey,
    /// New flows born in the class (the table's arrivals).
    pub new: u64,
    /// Arrivals into the class: new flows plus entries changing class.
    pub entered: u64,
    pub exited: u64,
    /// Live entries in the class now.
    pub live: u64,
    /// Mean time in the class of the entries that left it; None without exits.
    pub exits_mean_s: Option<f64>,
    /// Arrivals seen that are still in the class, and their mean age.
    pub survivors: u64,
    pub survivors_mean_age_s: Option<f64>,
    /// Arrivals into the class per second (Little's law's rate for the class).
    pub rate: f64,
    /// New flows per second born in the class.
    pub new_per_s: f64,
    /// Mean seconds in the class; None when unknown.
    pub dwell_s: Option<f64>,
    pub dwell_basis: DwellBasis,
    pub evidence: Evidence,
    pub timeout: Option<Timeout>,
    /// Entries in the class once arrivals and departures balance (the live
    /// count, a floor, when the evidence is unknown).
    pub steady_state: f64,
    /// Whether `steady_state` is only a floor.
    pub floor: bool,
}

/// Why the time to full is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// nf_conntrack_max is 0: no limit, the table never fills.
    Unlimited,
    /// The count is at max already.
    Full,
    /// The steady state is at or below max: the count levels off, never full.
    LevelsOff,
    /// The steady state is above max, or only a floor while the count
    /// rises: the least-squares trend of the count.
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
    /// The table is full now: the class that holds the most, its timeout
    /// and the lower value plan allows (None: cannot go lower), and the max
    /// that would make room.
    Full {
        class: ClassKey,
        live: u64,
        /// Whether nothing new arrives: only idle entries hold the table.
        idle: bool,
        sysctl: Option<String>,
        from_s: Option<f64>,
        to_s: Option<u64>,
        raise_max_to: u64,
        plan: String,
        apply: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    pub window_s: f64,
    pub count: u64,
    /// 0: unlimited.
    pub max: u64,
    pub classes: Vec<ClassForecast>,
    /// New flows per second (NEW events / new ids; class changes excluded).
    pub arrivals_per_s: f64,
    pub steady_state: f64,
    /// Whether `steady_state` is only a floor (some class is unknown).
    pub steady_state_is_floor: bool,
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
/// time, or `max` is 0 (nf_conntrack_max 0: no limit, nothing to fill);
/// 0 when the table is already at or above a non-zero `max`.
pub fn time_to_full(samples: &[(f64, f64)], max: f64) -> f64 {
    let Some(&(_, c_last)) = samples.last() else {
        return f64::INFINITY;
    };
    // A NaN max must not read as "full now" either.
    if max.is_nan() || max <= 0.0 {
        return f64::INFINITY;
    }
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

/// Kaplan-Meier over exits (events) and survivors (censored, at the same
/// time counted after the exits): (area under the survival curve up to the
/// longest time, survival left there).
pub fn kaplan_meier(
    exits: &ctmodel::flows::Lifetimes,
    survivors: &ctmodel::flows::Lifetimes,
) -> (f64, f64) {
    let mut times: BTreeMap<u64, (f64, u64, u64)> = BTreeMap::new();
    for (t, n) in exits.iter() {
        times.entry(t.to_bits()).or_insert((t, 0, 0)).1 += n;
    }
    for (t, n) in survivors.iter() {
        times.entry(t.to_bits()).or_insert((t, 0, 0)).2 += n;
    }
    // Positive floats order as their bits.
    let mut at_risk = exits.count() + survivors.count();
    let (mut s, mut area, mut last) = (1.0f64, 0.0f64, 0.0f64);
    for (t, d, c) in times.into_values() {
        area += s * (t - last);
        last = t;
        if at_risk > 0 && d > 0 {
            s *= 1.0 - d as f64 / at_risk as f64;
        }
        at_risk = at_risk.saturating_sub(d + c);
    }
    (area, s)
}

/// Mean time in a class from events, how, and how well it is known.
fn dwell_events(s: &ClassStats, timeout: Option<&Timeout>) -> (Option<f64>, DwellBasis, Evidence) {
    if s.exited == 0 {
        return (None, DwellBasis::NoExits, Evidence::Unknown);
    }
    let (area, tail) = kaplan_meier(&s.exit_times, &s.survivor_ages);
    let (mean, basis, mut evidence) = if tail <= MEASURED_TAIL {
        // What is left past the longest time: at most 5%, charged that time.
        (area, DwellBasis::KaplanMeier, Evidence::Measured)
    } else {
        let mle = (s.dwell_sum + s.still_in_age_sum) / s.exited as f64;
        (
            area + tail * mle,
            DwellBasis::KaplanMeierTail,
            Evidence::Bounded,
        )
    };
    if s.exited < MIN_EXITS {
        evidence = Evidence::Bounded;
    }
    match timeout {
        Some(t) if mean > t.seconds + REAP_BOUND_S => (
            Some(t.seconds + REAP_BOUND_S),
            DwellBasis::CappedAtTimeout,
            Evidence::Bounded,
        ),
        _ => (Some(mean), basis, evidence),
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

fn class_forecast(class: &ClassKey, c: &ClassInput, window: f64) -> ClassForecast {
    let live = c.observed.live();
    let mut f = ClassForecast {
        class: class.clone(),
        new: 0,
        entered: 0,
        exited: 0,
        live,
        exits_mean_s: None,
        survivors: 0,
        survivors_mean_age_s: None,
        rate: 0.0,
        new_per_s: 0.0,
        dwell_s: None,
        dwell_basis: DwellBasis::NoExits,
        evidence: Evidence::Unknown,
        timeout: c.timeout.clone(),
        steady_state: live as f64,
        floor: true,
    };
    match &c.observed {
        Observed::Events(s) => {
            let (dwell_s, basis, evidence) = dwell_events(s, c.timeout.as_ref());
            f.new = s.new;
            f.entered = s.entered;
            f.exited = s.exited;
            f.exits_mean_s = (s.exited > 0).then(|| s.dwell_sum / s.exited as f64);
            f.survivors = s.still_in;
            f.survivors_mean_age_s =
                (s.still_in > 0).then(|| s.still_in_age_sum / s.still_in as f64);
            f.rate = s.entered as f64 / window;
            f.new_per_s = s.new as f64 / window;
            (f.dwell_s, f.dwell_basis, f.evidence) = (dwell_s, basis, evidence);
            if let Some(d) = dwell_s {
                f.steady_state = f.rate * d;
                f.floor = false;
            }
        }
        Observed::Dumps(d) => {
            f.new = d.new;
            f.entered = d.entered;
            f.exited = d.first - d.stayed;
            f.survivors = d.stayed;
            f.rate = d.entered as f64 / window;
            f.new_per_s = d.new as f64 / window;
            if d.first > d.stayed {
                let share = d.stayed as f64 / d.first as f64;
                f.steady_state = d.entered as f64 / (1.0 - share);
                f.floor = false;
                f.evidence = if f.exited >= MIN_EXITS && d.stayed > 0 {
                    Evidence::Measured
                } else {
                    Evidence::Bounded
                };
                if d.stayed > 0 {
                    let dwell = -window / share.ln();
                    f.dwell_s = Some(dwell);
                    f.dwell_basis = DwellBasis::DumpSurvival;
                    f.rate = f.steady_state / dwell;
                } else {
                    f.dwell_basis = DwellBasis::ShorterThanWindow;
                }
            }
        }
    }
    f
}

pub fn estimate(i: &Inputs) -> Forecast {
    let window = i.window.max(f64::MIN_POSITIVE);
    let mut classes: Vec<ClassForecast> = i
        .classes
        .iter()
        .map(|(class, c)| class_forecast(class, c, window))
        .collect();
    classes.sort_by(|a, b| b.steady_state.total_cmp(&a.steady_state));
    // + 0.0: an empty float sum is -0.0.
    let steady_state: f64 = classes.iter().map(|c| c.steady_state).sum::<f64>() + 0.0;
    let arrivals_per_s: f64 = classes.iter().map(|c| c.new_per_s).sum::<f64>() + 0.0;
    // Classes with arrivals and no exit: their count may grow without end.
    let open: Vec<&ClassForecast> = classes
        .iter()
        .filter(|c| c.evidence == Evidence::Unknown && c.entered > 0)
        .collect();
    let steady_state_is_floor = classes.iter().any(|c| c.floor && c.live > 0);
    let max = i.max as f64;
    let count = i.count as f64;
    let trend = fit(&i.samples).map(|(slope, _)| slope);
    let ttf_trend = time_to_full(&i.samples, max);
    let trend_time_to_full_s = ttf_trend.is_finite().then_some(ttf_trend);
    let pct = |x: f64| 100.0 * x / max.max(1.0);
    let rising = trend.filter(|s| *s > 0.0).map_or(String::new(), |s| {
        format!(" The count is rising now ({s:.1}/s) while it approaches that level.")
    });
    let unknown_note = if open.is_empty() {
        String::new()
    } else {
        format!(
            " Nothing left {} in the window: not enough evidence for the time in state, so the live count is taken as the floor.",
            open.iter()
                .map(|c| c.class.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let (time_to_full_s, basis, explanation) = if i.max == 0 {
        (
            None,
            Basis::Unlimited,
            format!(
                "nf_conntrack_max is 0: the table has no limit, so it never fills (steady state {steady_state:.0} entries).{unknown_note}"
            ),
        )
    } else if count >= max {
        (
            Some(0.0),
            Basis::Full,
            format!(
                "The count ({}) is at max ({}): new flows are dropped now unless early_drop frees non-assured entries.",
                i.count, i.max
            ),
        )
    } else if !open.is_empty()
        && steady_state <= max
        && let Some(t) = trend_time_to_full_s
    {
        (
            Some(t),
            Basis::Trend,
            format!(
                "The steady state is at least {steady_state:.0} entries, not known to level off:{unknown_note} At the current trend ({:.1}/s) the table is full in {}.",
                trend.unwrap_or(0.0),
                human(t)
            ),
        )
    } else if steady_state <= max {
        (
            None,
            Basis::LevelsOff,
            format!(
                "Arrivals x time in state give a steady state of {}{steady_state:.0} entries ({:.0}% of max {}): the table levels off below max, so there is no time to full at these rates.{rising}{unknown_note}",
                if steady_state_is_floor {
                    "at least "
                } else {
                    ""
                },
                pct(steady_state),
                i.max
            ),
        )
    } else if let Some(t) = trend_time_to_full_s {
        (
            Some(t),
            Basis::Trend,
            format!(
                "The steady state of {steady_state:.0} entries is above max ({}): at the current trend ({:.1}/s) the table is full in {}.{unknown_note}",
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
    let change = match basis {
        Basis::Unlimited => None,
        Basis::Full => Some(full_change(&classes, i.max, i.target_share)),
        _ => change(&classes, steady_state, i.max, i.target_share),
    };
    Forecast {
        window_s: i.window,
        count: i.count,
        max: i.max,
        classes,
        arrivals_per_s,
        steady_state,
        steady_state_is_floor,
        exceeds_max: i.max > 0 && steady_state > max,
        trend_per_s: trend,
        trend_time_to_full_s,
        time_to_full_s,
        basis,
        explanation,
        change,
    }
}

/// The table is full: for the class holding the most entries, its timeout
/// lowered to plan's floor (when that is lower), and the max that would
/// give the live entries room under `target`.
fn full_change(classes: &[ClassForecast], max: u64, target: f64) -> Change {
    let top = classes.iter().max_by_key(|c| c.live);
    let idle = classes.iter().all(|c| c.new == 0);
    let live: u64 = classes.iter().map(|c| c.live).sum::<u64>().max(max);
    let to = (live as f64 / target).ceil() as u64;
    let headroom = 1.0 / target;
    let t = top.and_then(|c| c.timeout.as_ref());
    Change::Full {
        class: top.map_or_else(ClassKey::other, |c| c.class.clone()),
        live: top.map_or(0, |c| c.live),
        idle,
        sysctl: t.map(|t| t.sysctl.clone()),
        from_s: t.map(|t| t.seconds),
        to_s: t.and_then(|t| t.floor.filter(|f| *f < t.seconds).map(|f| f as u64)),
        raise_max_to: to.max(max + 1),
        plan: format!("ctdoctor plan --peak {live} --headroom {headroom}"),
        apply: format!("ctdoctor apply --peak {live} --headroom {headroom} --yes"),
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
    use ctmodel::flows::Lifetimes;

    fn key(k: &str) -> ClassKey {
        ClassKey::parse(k).expect("class key")
    }

    /// A class's events: `new` of the `entered` arrivals were new flows;
    /// exits and survivors as (seconds, how many).
    fn events(
        entered: u64,
        new: u64,
        exits: &[(f64, u64)],
        survivors: &[(f64, u64)],
    ) -> ClassStats {
        let mut s = ClassStats {
            new,
            entered,
            ..ClassStats::default()
        };
        for &(t, n) in exits {
            s.exited += n;
            s.dwell_sum += t * n as f64;
            s.exit_times.add_n(t, n);
        }
        for &(t, n) in survivors {
            s.still_in += n;
            s.still_in_age_sum += t * n as f64;
            s.survivor_ages.add_n(t, n);
        }
        s.live = s.still_in;
        s
    }

    /// Arrivals at `rate`/s for `window` s (all new flows), each living
    /// exactly `d` s: exits at d, survivors aged uniformly 0..d.
    fn fixed_lifetime(rate: f64, window: f64, d: f64) -> ClassStats {
        let exited = (rate * (window - d)) as u64;
        let per_s = rate as u64;
        let survivors: Vec<(f64, u64)> = (0..d as u64).map(|a| (a as f64 + 0.5, per_s)).collect();
        let still: u64 = survivors.iter().map(|s| s.1).sum();
        events(exited + still, exited + still, &[(d, exited)], &survivors)
    }

    fn timeout(sysctl: &str, seconds: f64, floor: Option<f64>) -> Option<Timeout> {
        Some(Timeout {
            sysctl: sysctl.into(),
            seconds,
            floor,
        })
    }

    fn inputs(classes: Vec<(&str, Observed, Option<Timeout>)>, count: u64, max: u64) -> Inputs {
        Inputs {
            window: 60.0,
            classes: classes
                .into_iter()
                .map(|(k, observed, timeout)| (key(k), ClassInput { observed, timeout }))
                .collect(),
            count,
            max,
            samples: Vec::new(),
            target_share: DEFAULT_TARGET_SHARE,
        }
    }

    fn rising(from: f64, per_s: f64) -> Vec<(f64, f64)> {
        (0..=60)
            .map(|t| (f64::from(t), from + f64::from(t) * per_s))
            .collect()
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
            .map(|k| (key(k), ClassStats::default()))
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
        let (d, basis, evidence) = dwell_events(&s, None);
        assert_eq!(
            (basis, evidence),
            (DwellBasis::KaplanMeier, Evidence::Measured)
        );
        let d = d.expect("dwell");
        assert!((d - 30.0).abs() < 0.3, "{d}");
        // The memoryless MLE would say (90000 + 45000) / 3000 = 45 s.
        assert_eq!((s.dwell_sum + s.still_in_age_sum) / s.exited as f64, 45.0);
        let f = estimate(&inputs(
            vec![(
                "udp/UNREPLIED",
                s.into(),
                timeout("udp_timeout", 30.0, Some(30.0)),
            )],
            3000,
            262_144,
        ));
        assert!((f.steady_state - 3000.0).abs() < 30.0, "{}", f.steady_state);
        assert!((f.classes[0].rate - 100.0).abs() < 1e-9);
        assert!(!f.steady_state_is_floor);
    }

    #[test]
    fn a_class_two_kinds_of_flows_pass_through_is_measured_as_their_mix() {
        // Workload b's tcp/ESTABLISHED over a 30 s window: 300/s for 5 ms
        // (short connections on their way to TIME_WAIT) and 100/s held
        // 20 s; survivors: the last 10 s of held ones, the last 5 ms of
        // short ones. Mean (300 x 0.005 + 100 x 20) / 400 = 5.004 s,
        // steady state 400/s x that = 2,001.5 (what the namespace held:
        // 2,000).
        let mut held: Vec<(f64, u64)> = (0..10).map(|a| (f64::from(a) + 0.5, 100)).collect();
        held.push((0.0025, 1));
        let s = events(12_000, 12_000, &[(0.005, 8_999), (20.0, 2_000)], &held);
        let (d, basis, evidence) =
            dwell_events(&s, timeout("tcp_timeout_established", 40.0, None).as_ref());
        assert_eq!(
            (basis, evidence),
            (DwellBasis::KaplanMeier, Evidence::Measured)
        );
        let d = d.expect("dwell");
        assert!((d - 5.0).abs() < 0.1, "{d}");
        let mut i = inputs(vec![("tcp/ESTABLISHED", s.into(), None)], 2000, 262_144);
        i.window = 30.0;
        let f = estimate(&i);
        assert!((f.steady_state - 2000.0).abs() < 40.0, "{}", f.steady_state);
        assert_eq!(f.basis, Basis::LevelsOff);
    }

    #[test]
    fn kaplan_meier_by_hand() {
        let mut exits = Lifetimes::default();
        let mut survivors = Lifetimes::default();
        // 4 at risk; one exits at 1 s, one censored at 2 s, two exit at 3 s.
        exits.add(1.0);
        survivors.add(2.0);
        exits.add_n(3.0, 2);
        let (area, tail) = kaplan_meier(&exits, &survivors);
        // S = 1 until 1, 3/4 until 3, then 0: area 1 + 0.75 x 2 = 2.5.
        assert!((area - 2.5).abs() < 0.05, "{area}");
        assert_eq!(tail, 0.0);
    }

    #[test]
    fn long_tails_are_bounded_and_extend_with_the_censored_mle() {
        // 10 exits after 2 s each; 90 survivors aged 30 s.
        let s = events(100, 100, &[(2.0, 10)], &[(30.0, 90)]);
        let (d, basis, evidence) = dwell_events(
            &s,
            timeout("tcp_timeout_established", 432_000.0, None).as_ref(),
        );
        assert_eq!(
            (basis, evidence),
            (DwellBasis::KaplanMeierTail, Evidence::Bounded)
        );
        // Area 2 + 0.9 x 28 = 27.2, plus 0.9 x (20 + 2700) / 10 = 244.8.
        let d = d.expect("dwell");
        assert!((d - 272.0).abs() < 3.0, "{d}");
    }

    #[test]
    fn few_exits_are_bounded_not_measured() {
        let s = events(5, 5, &[(3.0, 5)], &[]);
        let (_, _, evidence) = dwell_events(&s, None);
        assert_eq!(evidence, Evidence::Bounded);
    }

    #[test]
    fn dwell_is_capped_at_timeout_plus_the_reaping_bound() {
        let s = events(100, 100, &[(10.0, 1)], &[(500.0, 99)]);
        let (d, basis, evidence) =
            dwell_events(&s, timeout("udp_timeout", 30.0, Some(30.0)).as_ref());
        assert_eq!(
            (basis, evidence),
            (DwellBasis::CappedAtTimeout, Evidence::Bounded)
        );
        assert_eq!(d, Some(90.0));
    }

    /// The hostile review's case: 20 connections/s held 60 s, a 60 s
    /// window: nothing left ESTABLISHED. The 5-day timeout gave 8.6M.
    #[test]
    fn nothing_left_is_unknown_with_the_live_count_as_floor_never_the_timeout() {
        let held: Vec<(f64, u64)> = (0..60).map(|a| (f64::from(a) + 0.5, 20)).collect();
        let est = events(1200, 0, &[], &held);
        let syn = events(1200, 1200, &[(0.001, 1200)], &[]);
        let classes = || {
            vec![
                (
                    "tcp/ESTABLISHED",
                    Observed::from(est.clone()),
                    timeout("tcp_timeout_established", 432_000.0, Some(3600.0)),
                ),
                (
                    "tcp/SYN_SENT",
                    syn.clone().into(),
                    timeout("tcp_timeout_syn_sent", 120.0, None),
                ),
            ]
        };
        let f = estimate(&inputs(classes(), 1200, 262_144));
        let c = &f.classes[0];
        assert_eq!(c.class, "tcp/ESTABLISHED");
        assert_eq!(
            (c.evidence, c.dwell_basis, c.dwell_s),
            (Evidence::Unknown, DwellBasis::NoExits, None)
        );
        assert!(c.floor);
        assert!((f.steady_state - 1200.0).abs() < 2.0, "{}", f.steady_state);
        assert!(f.steady_state_is_floor);
        // New flows: the SYN_SENT births only (the move to ESTABLISHED is not one).
        assert!((f.arrivals_per_s - 20.0).abs() < 1e-9);
        // Flat count: levels off "at least" there.
        assert_eq!(f.basis, Basis::LevelsOff);
        assert!(f.explanation.contains("at least 1200"), "{}", f.explanation);
        assert!(
            f.explanation.contains("not enough evidence"),
            "{}",
            f.explanation
        );
        // Rising: a floor cannot level off; the trend says when.
        let mut i = inputs(classes(), 1200, 262_144);
        i.samples = rising(0.0, 20.0);
        let f = estimate(&i);
        assert_eq!(f.basis, Basis::Trend);
        let t = f.time_to_full_s.expect("ttf");
        assert!((t - (262_144.0 - 1200.0) / 20.0).abs() < 1.0, "{t}");
    }

    #[test]
    fn arrivals_are_new_flows_not_class_changes() {
        // One TCP flow/s through SYN_SENT, ESTABLISHED and TIME_WAIT.
        let mut tw = fixed_lifetime(1.0, 60.0, 30.0);
        tw.new = 0;
        let f = estimate(&inputs(
            vec![
                (
                    "tcp/SYN_SENT",
                    events(60, 60, &[(0.001, 60)], &[]).into(),
                    None,
                ),
                (
                    "tcp/ESTABLISHED",
                    events(60, 0, &[(0.01, 60)], &[]).into(),
                    None,
                ),
                ("tcp/TIME_WAIT", tw.into(), None),
            ],
            30,
            262_144,
        ));
        // 1/s, not 3/s: per class the rate is arrivals into it.
        assert!(
            (f.arrivals_per_s - 1.0).abs() < 1e-9,
            "{}",
            f.arrivals_per_s
        );
        let tw = f
            .classes
            .iter()
            .find(|c| c.class == "tcp/TIME_WAIT")
            .expect("tw");
        assert!((tw.rate - 1.0).abs() < 1e-9);
    }

    #[test]
    fn max_zero_is_unlimited() {
        let mut i = inputs(
            vec![(
                "udp/UNREPLIED",
                fixed_lifetime(100.0, 60.0, 30.0).into(),
                None,
            )],
            50_000,
            0,
        );
        i.samples = rising(0.0, 100.0);
        let f = estimate(&i);
        assert_eq!(
            (f.basis, f.time_to_full_s, f.change.clone()),
            (Basis::Unlimited, None, None)
        );
        assert!(!f.exceeds_max);
        assert_eq!(status(&f, 900.0, 7200.0), Status::Ok);
    }

    #[test]
    fn full_of_idle_entries_is_critical_with_a_change() {
        let idle = ClassStats {
            live: 100,
            ..ClassStats::default()
        };
        let f = estimate(&inputs(
            vec![(
                "tcp/ESTABLISHED",
                idle.into(),
                timeout("tcp_timeout_established", 432_000.0, Some(3600.0)),
            )],
            100,
            100,
        ));
        assert_eq!((f.basis, f.time_to_full_s), (Basis::Full, Some(0.0)));
        assert_eq!(status(&f, 900.0, 7200.0), Status::Critical);
        match f.change {
            Some(Change::Full {
                idle,
                ref sysctl,
                to_s,
                raise_max_to,
                ..
            }) => {
                assert!(idle);
                assert_eq!(sysctl.as_deref(), Some("tcp_timeout_established"));
                assert_eq!(to_s, Some(3600));
                assert_eq!(raise_max_to, 125);
            }
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dumps_use_the_first_dumps_survivors() {
        let d = |live, new, entered, first, stayed| {
            Observed::Dumps(DumpClass {
                live,
                new,
                entered,
                first,
                stayed,
            })
        };
        let f = estimate(&inputs(
            vec![
                // Half of the first dump's 1000 stayed, 500 came: 1000.
                (
                    "udp/UNREPLIED",
                    d(1000, 500, 500, 1000, 500),
                    timeout("udp_timeout", 30.0, Some(30.0)),
                ),
                // Nothing left: unknown, the live count is the floor.
                (
                    "tcp/ESTABLISHED",
                    d(700, 200, 200, 500, 500),
                    timeout("tcp_timeout_established", 432_000.0, None),
                ),
                // Everything left: shorter than the window, bounded.
                (
                    "tcp/TIME_WAIT",
                    d(300, 0, 300, 250, 0),
                    timeout("tcp_timeout_time_wait", 120.0, None),
                ),
            ],
            2000,
            262_144,
        ));
        let by = |k: &str| {
            f.classes
                .iter()
                .find(|c| c.class == k)
                .expect("class")
                .clone()
        };
        let u = by("udp/UNREPLIED");
        assert_eq!(
            (u.evidence, u.dwell_basis, u.floor),
            (Evidence::Measured, DwellBasis::DumpSurvival, false)
        );
        assert!((u.steady_state - 1000.0).abs() < 1e-9);
        // -60 / ln(0.5) = 86.6 s; rate = 1000 / 86.6.
        assert!((u.dwell_s.expect("dwell") - 86.56).abs() < 0.01);
        let e = by("tcp/ESTABLISHED");
        assert_eq!(
            (e.evidence, e.steady_state, e.floor),
            (Evidence::Unknown, 700.0, true)
        );
        let t = by("tcp/TIME_WAIT");
        assert_eq!(
            (t.evidence, t.dwell_basis, t.steady_state),
            (Evidence::Bounded, DwellBasis::ShorterThanWindow, 300.0)
        );
        assert!((f.arrivals_per_s - 700.0 / 60.0).abs() < 1e-9);
    }

    #[test]
    fn levels_off_below_max_even_while_rising() {
        let mut i = inputs(
            vec![(
                "udp/UNREPLIED",
                fixed_lifetime(100.0, 60.0, 30.0).into(),
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
    fn above_max_uses_the_trend_and_lowers_the_timeout() {
        // 1000/s for 50 s each (udp_timeout 60, floor 30): steady 50,000 > 40,000.
        let mut i = inputs(
            vec![(
                "udp/UNREPLIED",
                fixed_lifetime(1000.0, 60.0, 50.0).into(),
                timeout("udp_timeout", 60.0, Some(30.0)),
            )],
            30_000,
            40_000,
        );
        i.samples = rising(0.0, 500.0);
        let f = estimate(&i);
        assert!(f.exceeds_max);
        assert_eq!(f.basis, Basis::Trend);
        let t = f.time_to_full_s.expect("ttf");
        assert!((t - 20.0).abs() < 1e-6, "{t}");
        assert_eq!(status(&f, 900.0, 7200.0), Status::Critical);
        assert_eq!(status(&f, 10.0, 7200.0), Status::Warning);
        // 1000/s x d' <= 32,000 -> d' = 32 s -> timeout 60 x 32 / 50 = 38 s.
        match f.change {
            Some(Change::LowerTimeout {
                ref sysctl,
                to_s,
                steady_state_after,
                ..
            }) => {
                assert_eq!(sysctl, "udp_timeout");
                assert!((37..=38).contains(&to_s), "{to_s}");
                assert!(steady_state_after <= 0.8 * 40_000.0);
            }
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn raise_max_when_the_timeout_is_at_its_floor() {
        let f = estimate(&inputs(
            vec![(
                "udp/UNREPLIED",
                fixed_lifetime(1000.0, 60.0, 30.0).into(),
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
                ref why_not_timeout,
                ..
            }) => {
                assert!((37_000..=38_000).contains(&to), "{to}");
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
                "udp/UNREPLIED",
                fixed_lifetime(100.0, 180.0, 120.0).into(),
                timeout("udp_timeout", 120.0, Some(30.0)),
            )],
            5000,
            10_000,
        );
        i.window = 180.0;
        i.samples = vec![(0.0, 5000.0), (60.0, 5000.0)];
        let f = estimate(&i);
        assert_eq!(f.basis, Basis::Model);
        // tau = 120 s; t = 120 ln(7000 / 2000)
        let t = f.time_to_full_s.expect("ttf");
        assert!((t - 120.0 * 3.5f64.ln()).abs() < 2.0, "{t}");
    }

    #[test]
    fn full_is_zero_and_critical() {
        let f = estimate(&inputs(Vec::new(), 100, 100));
        assert_eq!((f.basis, f.time_to_full_s), (Basis::Full, Some(0.0)));
        assert_eq!(status(&f, 900.0, 7200.0), Status::Critical);
        assert!(matches!(f.change, Some(Change::Full { .. })));
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
    fn trend_unlimited_max_is_infinite() {
        // nf_conntrack_max 0 is no limit: a rising count never fills it
        // (the exporter's dump fallback once published 0, "full now").
        let rising = [(0.0, 10.0), (10.0, 100.0)];
        assert_eq!(time_to_full(&rising, 0.0), f64::INFINITY);
        assert_eq!(time_to_full(&[(0.0, 5000.0)], 0.0), f64::INFINITY);
        assert_eq!(time_to_full(&rising, f64::NAN), f64::INFINITY);
    }

    #[test]
    fn trend_same_time_is_infinite() {
        assert_eq!(
            time_to_full(&[(5.0, 1.0), (5.0, 2.0)], 100.0),
            f64::INFINITY
        );
    }
}
