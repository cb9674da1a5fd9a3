//! The lab report as text (summary and a table of about 20 samples) and
//! as an SVG plot of entries, effective max and drops.

use std::io::{self, Write};

use anyhow::Result;

use super::{LabReport, Point};

fn opt_s(v: Option<f64>) -> String {
    v.map_or_else(|| "never".to_string(), |s| format!("{s:.1} s"))
}

/// The human summary and a table of the samples.
pub fn render(r: &LabReport, out: &mut dyn Write) -> io::Result<()> {
    let s = &r.summary;
    writeln!(out, "lab {}: {}", s.scenario, s.about)?;
    writeln!(
        out,
        "namespace {} (inode {}), kernel {}{}",
        s.namespace,
        s.netns_inode,
        s.kernel,
        if s.kept { ", kept" } else { ", removed" }
    )?;
    let t: Vec<String> = s.timeouts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !t.is_empty() {
        writeln!(out, "namespace timeouts: {}", t.join(" "))?;
    }
    writeln!(
        out,
        "table: global max {}, pre-filled {} ASSURED entries, effective max {}",
        s.global_max, s.prefill, s.effective_max
    )?;
    writeln!(
        out,
        "traffic: {} flows in {:.1} s ({:.0}/s, target {:.0}/s), {} completed, {} failed",
        s.new_flows, s.duration_s, s.rate_achieved, s.rate_target, s.completed, s.failed
    )?;
    writeln!(
        out,
        "kernel: peak {} entries, drop {}, early_drop {}, insert_failed {}; first drop at {} \
         (first log line at {})",
        s.peak_entries,
        s.drops,
        s.early_drops,
        s.insert_failed,
        opt_s(s.time_to_first_drop_s),
        opt_s(s.time_to_first_log_s)
    )?;
    writeln!(
        out,
        "kernel log: {} table-full lines for this namespace ({} suppressed callbacks nearby)",
        s.log_lines, s.log_suppressed
    )?;
    if s.drops > 0 && s.log_lines == 0 && s.log_ratelimited > 0 {
        writeln!(
            out,
            "  none logged: net_ratelimit (global, 10 per 5 s) suppressed {} messages meanwhile",
            s.log_ratelimited
        )?;
    }
    if let Some(first) = r.kernel.log.first() {
        writeln!(out, "  {first}")?;
    }
    if s.interrupted {
        writeln!(out, "interrupted: the run stopped early")?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:>7} {:>9} {:>9} {:>9} {:>11}  top states",
        "t", "entries", "max", "drops", "early_drops"
    )?;
    let every = (r.series.len() / 20).max(1);
    for (i, p) in r.series.iter().enumerate() {
        if i % every != 0 && i + 1 != r.series.len() {
            continue;
        }
        let mut st: Vec<(&String, &u64)> = p.by_state.iter().collect();
        st.sort_by(|a, b| b.1.cmp(a.1));
        let top: Vec<String> = st.iter().take(2).map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(
            out,
            "{:>6.1}s {:>9} {:>9} {:>9} {:>11}  {}",
            p.t,
            p.entries,
            p.max,
            p.drops,
            p.early_drops,
            top.join(", ")
        )?;
    }
    Ok(())
}

/// Entries, effective max and cumulative drops over time.
pub fn svg(r: &LabReport, path: &std::path::Path) -> Result<()> {
    use crate::chart::{Line, points};
    use plotters::prelude::{BLACK, BLUE, RED, SeriesLabelPosition};
    let t = |p: &Point| p.t;
    let lines = [
        Line::new(
            "entries (kernel)",
            points(&r.series, t, |p| p.entries),
            BLUE,
        ),
        Line::new("effective max", points(&r.series, t, |p| p.max), BLACK),
        Line::new("drops (cumulative)", points(&r.series, t, |p| p.drops), RED),
    ];
    let title = format!(
        "ctdoctor lab {} (kernel {})",
        r.summary.scenario, r.summary.kernel
    );
    crate::chart::write_svg(path, 500, |root| {
        crate::chart::panel(
            root,
            Some(&title),
            "entries",
            &lines,
            SeriesLabelPosition::UpperLeft,
        )
    })
}
