//! Output of `simulate`: the human summary, `--json`, `--csv` and the
//! `--svg` plot, all from the model's timeline read through serde (the
//! field names are the contract). Pure apart from the writers.

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

/// The model's own types: their serde names are the JSON contract.
pub use ctsim::{Point, Timeline};

/// What was run, printed above the summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunInfo {
    pub scenario: String,
    pub duration_s: f64,
    pub step_s: f64,
    pub seed: u64,
    pub max: Option<u64>,
    pub buckets: Option<u64>,
    /// Where each setting came from (host sysctl, plan, flag, live table).
    pub notes: Vec<String>,
}

/// The answer: the run, and with `--compare` the plan's run beside it.
/// JSON is the timeline, or `{current, planned, drops_avoided}`; CSV is
/// the current run's series.
pub struct Answer {
    pub current: (RunInfo, Timeline),
    pub planned: Option<(RunInfo, Timeline)>,
}

impl Serialize for Answer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let current = &self.current.1;
        match &self.planned {
            None => current.serialize(s),
            Some((_, planned)) => serde_json::json!({
                "current": current,
                "planned": planned,
                "drops_avoided": current.summary.drops as i64 - planned.summary.drops as i64,
            })
            .serialize(s),
        }
    }
}

impl crate::output::Render for Answer {
    fn text(&self, out: &mut dyn Write, _: crate::output::Style) -> io::Result<()> {
        let (info, tl) = &self.current;
        match &self.planned {
            None => summary(info, tl, out),
            Some((pinfo, ptl)) => compare((info, tl), (pinfo, ptl), out),
        }
    }
    fn csv(&self, out: &mut dyn Write) -> Option<io::Result<()>> {
        Some(csv(&self.current.1.series, out))
    }
}

fn secs(s: f64) -> String {
    if s >= 86_400.0 {
        format!("{:.1} d", s / 86_400.0)
    } else if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.2} s")
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// The human summary of one run.
pub fn summary(info: &RunInfo, tl: &Timeline, out: &mut dyn Write) -> io::Result<()> {
    let s = &tl.summary;
    writeln!(
        out,
        "scenario {}: {} simulated, step {}, seed {}",
        info.scenario,
        secs(info.duration_s),
        secs(info.step_s),
        info.seed
    )?;
    let opt = |v: Option<u64>| v.map_or_else(|| "scenario's".to_string(), |v| v.to_string());
    writeln!(
        out,
        "table: max {}, buckets {}",
        opt(info.max),
        opt(info.buckets)
    )?;
    for n in &info.notes {
        writeln!(out, "  {n}")?;
    }
    writeln!(out)?;
    match s.time_to_first_drop_s {
        Some(t) => writeln!(out, "first drop:          after {}", secs(t))?,
        None => writeln!(
            out,
            "first drop:          none (the table never refused a flow)"
        )?,
    }
    writeln!(out, "new flows:           {}", s.new_flows)?;
    writeln!(out, "inserted:            {}", s.inserted)?;
    writeln!(out, "drops (table full):  {}", s.drops)?;
    writeln!(out, "early drops:         {}", s.early_drops)?;
    writeln!(
        out,
        "insert failed:       {} (chain too long)",
        s.insert_failed
    )?;
    writeln!(out, "legitimate lost:     {}", pct(s.legit_lost_share))?;
    let max = tl.series.last().map_or(0, |p| p.max);
    let peak_share = if max > 0 {
        format!(" ({} of max)", pct(s.peak_entries as f64 / max as f64))
    } else {
        String::new()
    };
    writeln!(out, "peak entries:        {}{peak_share}", s.peak_entries)?;
    writeln!(out, "longest chain:       {}", s.longest_chain)?;
    writeln!(out)?;
    writeln!(
        out,
        "steady state (last tenth of the run)  simulated   Little's law (rate x timeout)"
    )?;
    let mut keys: Vec<&String> = s.steady_state.keys().chain(s.littles_law.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let sim = s
            .steady_state
            .get(k)
            .map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
        let ll = s
            .littles_law
            .get(k)
            .map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
        writeln!(out, "  {k:<36}{sim:>10}   {ll:>10}")?;
    }
    Ok(())
}

/// Both summaries and what the plan changes.
pub fn compare(
    current: (&RunInfo, &Timeline),
    planned: (&RunInfo, &Timeline),
    out: &mut dyn Write,
) -> io::Result<()> {
    writeln!(out, "== current configuration")?;
    summary(current.0, current.1, out)?;
    writeln!(out)?;
    writeln!(out, "== with the plan")?;
    summary(planned.0, planned.1, out)?;
    writeln!(out)?;
    let (a, b) = (&current.1.summary, &planned.1.summary);
    let avoided = a.drops as i64 - b.drops as i64;
    writeln!(out, "== difference (plan - current)")?;
    writeln!(
        out,
        "drops avoided:       {avoided} ({} -> {})",
        a.drops, b.drops
    )?;
    writeln!(
        out,
        "early drops:         {} -> {}",
        a.early_drops, b.early_drops
    )?;
    writeln!(
        out,
        "peak entries:        {} -> {}",
        a.peak_entries, b.peak_entries
    )?;
    let ttfd = |t: Option<f64>| t.map_or_else(|| "never".to_string(), secs);
    writeln!(
        out,
        "first drop:          {} -> {}",
        ttfd(a.time_to_first_drop_s),
        ttfd(b.time_to_first_drop_s)
    )?;
    Ok(())
}

/// Every state that appears in the series, in a stable order.
fn states(series: &[Point]) -> Vec<String> {
    let mut v: Vec<String> = series
        .iter()
        .flat_map(|p| p.by_state.keys().cloned())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Per-step rates from cumulative counters.
fn rate(prev: Option<&Point>, p: &Point, f: impl Fn(&Point) -> u64) -> f64 {
    match prev {
        Some(q) if p.t > q.t => f(p).saturating_sub(f(q)) as f64 / (p.t - q.t),
        None if p.t > 0.0 => f(p) as f64 / p.t,
        _ => 0.0,
    }
}

pub const CSV_FIXED: &str =
    "t,entries,max,drops_per_s,early_drops_per_s,insert_failed_per_s,gc_reaps,drops,early_drops";

/// The time series as CSV: fixed columns, then one per `proto/STATE`.
pub fn csv(series: &[Point], out: &mut dyn Write) -> io::Result<()> {
    let st = states(series);
    write!(out, "{CSV_FIXED}")?;
    for s in &st {
        write!(out, ",{s}")?;
    }
    writeln!(out)?;
    let mut prev: Option<&Point> = None;
    for p in series {
        write!(
            out,
            "{},{},{},{:.3},{:.3},{:.3},{},{},{}",
            p.t,
            p.entries,
            p.max,
            rate(prev, p, |q| q.drops),
            rate(prev, p, |q| q.early_drops),
            rate(prev, p, |q| q.insert_failed),
            p.gc_reaps,
            p.drops,
            p.early_drops
        )?;
        for s in &st {
            write!(out, ",{}", p.by_state.get(s).copied().unwrap_or(0))?;
        }
        writeln!(out)?;
        prev = Some(p);
    }
    Ok(())
}

/// The plot: entries vs max on top, drops/s and early drops/s below.
pub fn svg(title: &str, series: &[Point], path: &Path) -> anyhow::Result<()> {
    crate::chart::write_svg(path, 600, |root| draw(title, series, root))
}

/// The SVG document as a string (tests read it without a file).
#[cfg(test)]
fn svg_string(title: &str, series: &[Point]) -> anyhow::Result<String> {
    crate::chart::svg_string(600, |root| draw(title, series, root))
}

/// Entries against max above, drop and early-drop rates below.
fn draw(
    title: &str,
    series: &[Point],
    root: &plotters::prelude::DrawingArea<plotters::prelude::SVGBackend, plotters::coord::Shift>,
) -> anyhow::Result<()> {
    use crate::chart::{Line, panel, points};
    use plotters::prelude::{BLUE, MAGENTA, RED, SeriesLabelPosition};
    let (top, bottom) = root.split_vertically(380);
    let t = |p: &Point| p.t;
    let counts = [
        Line::new("entries", points(series, t, |p| p.entries), BLUE),
        Line::new("nf_conntrack_max", points(series, t, |p| p.max), RED),
    ];
    panel(
        &top,
        Some(title),
        "entries",
        &counts,
        SeriesLabelPosition::LowerRight,
    )?;
    let mut prev: Option<&Point> = None;
    let mut drops = Vec::with_capacity(series.len());
    let mut early = Vec::with_capacity(series.len());
    for p in series {
        drops.push((p.t, rate(prev, p, |q| q.drops)));
        early.push((p.t, rate(prev, p, |q| q.early_drops)));
        prev = Some(p);
    }
    let rates = [
        Line::new("drops/s (table full)", drops, RED),
        Line::new("early drops/s", early, MAGENTA),
    ];
    panel(
        &bottom,
        None,
        "per second",
        &rates,
        SeriesLabelPosition::UpperLeft,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline() -> Timeline {
        let j = serde_json::json!({
            "summary": {"new_flows": 300, "inserted": 250, "reopened": 0, "drops": 50,
                "early_drops": 0, "insert_failed": 0, "chaintoolong": 0, "gc_reaps": 0,
                "gc_evictions": 0, "lookup_reaps": 0, "no_port": 0, "peak_entries": 100,
                "final_entries": 100, "longest_chain": 3,
                "time_to_first_drop_s": 1.0, "legit_lost_share": 0.1667,
                "steady_state": {"tcp/TIME_WAIT": 100.0},
                "littles_law": {"tcp/TIME_WAIT": 12000.0}},
            "series": [
                {"t": 1.0, "entries": 100, "max": 100, "drops": 0, "early_drops": 0,
                 "insert_failed": 0, "gc_reaps": 0, "by_state": {"tcp/TIME_WAIT": 100}},
                {"t": 2.0, "entries": 100, "max": 100, "drops": 50, "early_drops": 0,
                 "insert_failed": 0, "gc_reaps": 0, "by_state": {"tcp/TIME_WAIT": 100}}
            ]
        });
        serde_json::from_value(j).expect("contract fixture")
    }

    #[test]
    fn reads_the_contract() {
        let tl = timeline();
        assert_eq!(tl.summary.drops, 50);
        let back = serde_json::to_value(&tl).expect("serialize");
        assert!(back["summary"]["chaintoolong"].is_number());
    }

    #[test]
    fn csv_rates_from_cumulative_counters() {
        let mut v = Vec::new();
        csv(&timeline().series, &mut v).expect("csv");
        let s = String::from_utf8(v).expect("utf8");
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], format!("{CSV_FIXED},tcp/TIME_WAIT"));
        assert!(
            lines[2].starts_with("2,100,100,50.000,0.000,"),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn summary_and_svg() {
        let tl = timeline();
        let mut v = Vec::new();
        summary(&RunInfo::default(), &tl, &mut v).expect("summary");
        let s = String::from_utf8(v).expect("utf8");
        assert!(s.contains("after 1.00 s"), "{s}");
        assert!(s.contains("tcp/TIME_WAIT"), "{s}");
        let svg = svg_string("test", &tl.series).expect("svg");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("nf_conntrack_max") && svg.contains("drops/s"));
    }
}
