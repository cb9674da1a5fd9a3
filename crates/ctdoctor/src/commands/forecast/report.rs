//! `forecast`'s answer for people: the verdict with the time to full, the
//! steady state against max, the classes table (arrivals, time in state and
//! how it was measured) and the change that avoids a full table.

use std::io::{self, Write};

use super::Report;
use ctcore::forecast::estimate::{Change, DwellBasis, Status, human};

fn basis_text(b: DwellBasis) -> &'static str {
    match b {
        DwellBasis::Measured => "measured",
        DwellBasis::MeasuredLongTail => "measured (long tail)",
        DwellBasis::CappedAtTimeout => "capped",
        DwellBasis::Timeout => "timeout",
        DwellBasis::Unknown => "unknown",
    }
}

fn status_text(s: Status) -> &'static str {
    match s {
        Status::Ok => "OK",
        Status::Warning => "WARNING",
        Status::Critical => "CRITICAL",
    }
}

/// At most this many classes in the table; the rest are summed.
const SHOWN: usize = 12;

impl crate::output::Render for Report {
    fn text(&self, out: &mut dyn Write, _: crate::output::Style) -> io::Result<()> {
        render(self, out)
    }
    fn exit_code(&self) -> u8 {
        self.exit_code
    }
}

pub fn render(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let f = &r.forecast;
    let pct = |x: f64| 100.0 * x / (f.max.max(1) as f64);
    writeln!(
        out,
        "FORECAST {}: {}",
        status_text(r.status),
        match f.time_to_full_s {
            Some(t) => format!("table full in {}", human(t)),
            None => "the table does not fill at these rates".into(),
        }
    )?;
    writeln!(
        out,
        "source: {} over {}{}",
        if r.source == "events" {
            "ctnetlink events"
        } else {
            "two dumps"
        },
        human(f.window_s),
        if r.resyncs > 0 {
            format!(
                " ({} event losses, each resynchronised by a dump)",
                r.resyncs
            )
        } else {
            String::new()
        }
    )?;
    if !r.source_note.is_empty() {
        writeln!(out, "note: {}", r.source_note)?;
    }
    writeln!(
        out,
        "count {} of max {} ({:.1}%), trend {}",
        f.count,
        f.max,
        pct(f.count as f64),
        f.trend_per_s
            .map_or("unknown".into(), |s| format!("{s:+.1}/s"))
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<18} {:>11} {:>10} {:<20} {:<28} {:>9} {:>13}",
        "CLASS", "ARRIVALS/S", "MEAN TIME", "FROM", "TIMEOUT", "LIVE", "STEADY STATE"
    )?;
    let mut rest = (0usize, 0.0, 0u64, 0.0);
    for (i, c) in f.classes.iter().enumerate() {
        if i >= SHOWN {
            rest = (
                rest.0 + 1,
                rest.1 + c.rate,
                rest.2 + c.live,
                rest.3 + c.steady_state,
            );
            continue;
        }
        writeln!(
            out,
            "{:<18} {:>11.1} {:>10} {:<20} {:<28} {:>9} {:>13.0}",
            c.class,
            c.rate,
            c.dwell_s.map_or("?".into(), |d| format!("{d:.1} s")),
            basis_text(c.dwell_basis),
            c.timeout
                .as_ref()
                .map_or("-".into(), |t| format!("{}={}", t.sysctl, t.seconds)),
            c.live,
            c.steady_state
        )?;
    }
    if rest.0 > 0 {
        writeln!(
            out,
            "{:<18} {:>11.1} {:>10} {:<20} {:<28} {:>9} {:>13.0}",
            format!("({} more)", rest.0),
            rest.1,
            "",
            "",
            "",
            rest.2,
            rest.3
        )?;
    }
    writeln!(
        out,
        "{:<18} {:>11.1} {:>10} {:<20} {:<28} {:>9} {:>13.0}",
        "total",
        f.arrivals_per_s,
        "",
        "",
        "",
        f.classes.iter().map(|c| c.live).sum::<u64>(),
        f.steady_state
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "steady state {:.0} = {:.1}% of max: {}",
        f.steady_state,
        pct(f.steady_state),
        if f.exceeds_max {
            "ABOVE max"
        } else {
            "below max"
        }
    )?;
    writeln!(
        out,
        "trend alone: {}",
        match (f.trend_time_to_full_s, f.trend_per_s) {
            (Some(t), Some(s)) => format!("full in {} at {s:+.1}/s", human(t)),
            _ => "not rising".into(),
        }
    )?;
    writeln!(out, "why: {}", f.explanation)?;
    match &f.change {
        None => writeln!(
            out,
            "change: none needed (steady state under {}% of max)",
            r.target_pct
        )?,
        Some(Change::LowerTimeout {
            class,
            sysctl,
            from_s,
            to_s,
            steady_state_after,
        }) => writeln!(
            out,
            "change: {class} holds the most; lower nf_conntrack_{sysctl} from {from_s} s to {to_s} s: steady state {steady_state_after:.0} ({:.0}% of max)\n  sysctl -w net.netfilter.nf_conntrack_{sysctl}={to_s}   (persist it in /etc/sysctl.d; see ctdoctor plan)",
            pct(*steady_state_after)
        )?,
        Some(Change::RaiseMax {
            class,
            why_not_timeout,
            from,
            to,
            plan,
            apply,
        }) => writeln!(
            out,
            "change: {class} holds the most, but {why_not_timeout}; raise nf_conntrack_max from {from} to at least {to} (global: set it in the host's initial namespace)\n  {plan}    explains the size, hash table and memory\n  {apply}"
        )?,
    }
    Ok(())
}
