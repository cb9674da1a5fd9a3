//! `forecast`'s answer for people: the verdict with the time to full, the
//! steady state against max, the classes table (arrivals, time in state and
//! how it was measured) and the change that avoids a full table.

use std::io::{self, Write};

use super::Report;
use ctcore::forecast::estimate::{Basis, Change, DwellBasis, Status, human};

fn basis_text(b: DwellBasis) -> &'static str {
    match b {
        DwellBasis::KaplanMeier => "exits+ages",
        DwellBasis::KaplanMeierTail => "exits+ages, tail",
        DwellBasis::CappedAtTimeout => "capped at timeout",
        DwellBasis::DumpSurvival => "dump survivors",
        DwellBasis::ShorterThanWindow => "< window",
        DwellBasis::NoExits => "no exits",
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
    let of_max = |x: f64| {
        if f.max == 0 {
            "unlimited max".to_string()
        } else {
            format!("{:.1}% of max", pct(x))
        }
    };
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
    if r.partial {
        writeln!(
            out,
            "partial: events were lost; the first {} of the window are left out of the rates (incomplete)",
            human(r.excluded_s)
        )?;
    }
    if !r.source_note.is_empty() {
        writeln!(out, "note: {}", r.source_note)?;
    }
    writeln!(
        out,
        "count {} of max {} ({}), trend {}",
        f.count,
        f.max,
        of_max(f.count as f64),
        f.trend_per_s
            .map_or("unknown".into(), |s| format!("{s:+.1}/s"))
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<18} {:>7} {:>11} {:>10} {:<9} {:<18} {:<28} {:>9} {:>13}",
        "CLASS",
        "NEW/S",
        "ARRIVALS/S",
        "MEAN TIME",
        "EVIDENCE",
        "FROM",
        "TIMEOUT",
        "LIVE",
        "STEADY STATE"
    )?;
    let mut rest = (0usize, 0.0, 0.0, 0u64, 0.0);
    for (i, c) in f.classes.iter().enumerate() {
        if i >= SHOWN {
            rest = (
                rest.0 + 1,
                rest.1 + c.new_per_s,
                rest.2 + c.rate,
                rest.3 + c.live,
                rest.4 + c.steady_state,
            );
            continue;
        }
        writeln!(
            out,
            "{:<18} {:>7.1} {:>11.1} {:>10} {:<9} {:<18} {:<28} {:>9} {:>13}",
            c.class,
            c.new_per_s,
            c.rate,
            c.dwell_s.map_or("?".into(), |d| format!("{d:.1} s")),
            c.evidence.as_str(),
            basis_text(c.dwell_basis),
            c.timeout
                .as_ref()
                .map_or("-".into(), |t| format!("{}={}", t.sysctl, t.seconds)),
            c.live,
            format!("{}{:.0}", if c.floor { ">=" } else { "" }, c.steady_state)
        )?;
    }
    if rest.0 > 0 {
        writeln!(
            out,
            "{:<18} {:>7.1} {:>11.1} {:>10} {:<9} {:<18} {:<28} {:>9} {:>13.0}",
            format!("({} more)", rest.0),
            rest.1,
            rest.2,
            "",
            "",
            "",
            "",
            rest.3,
            rest.4
        )?;
    }
    writeln!(
        out,
        "{:<18} {:>7.1} {:>11} {:>10} {:<9} {:<18} {:<28} {:>9} {:>13}",
        "total",
        f.arrivals_per_s,
        "",
        "",
        "",
        "",
        "",
        f.classes.iter().map(|c| c.live).sum::<u64>(),
        format!(
            "{}{:.0}",
            if f.steady_state_is_floor { ">=" } else { "" },
            f.steady_state
        )
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "steady state {}{:.0} = {}: {}",
        if f.steady_state_is_floor {
            "at least "
        } else {
            ""
        },
        f.steady_state,
        of_max(f.steady_state),
        if f.max == 0 {
            "no limit"
        } else if f.exceeds_max {
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
        None if f.basis == Basis::Unlimited => {
            writeln!(out, "change: none (nf_conntrack_max is 0: no limit)")?
        }
        None if r.status == Status::Ok => writeln!(
            out,
            "change: none needed (steady state under {}% of max)",
            r.target_pct
        )?,
        None => writeln!(
            out,
            "change: raise nf_conntrack_max or lower the timeout of the class that holds the most (the figures above do not size it)"
        )?,
        Some(Change::Full {
            class,
            live,
            idle,
            sysctl,
            from_s,
            to_s,
            raise_max_to,
            plan,
            apply,
        }) => {
            writeln!(
                out,
                "change: the table is full; {class} holds the most ({live} entries{})",
                if *idle {
                    ", all idle: nothing new arrives"
                } else {
                    ""
                }
            )?;
            if let (Some(sysctl), Some(from), Some(to)) = (sysctl, from_s, to_s) {
                writeln!(
                    out,
                    "  lower nf_conntrack_{sysctl} from {from} s to {to} s (entries take it at their next packet; idle ones keep their expiry):\n  sysctl -w net.netfilter.nf_conntrack_{sysctl}={to}"
                )?;
            }
            writeln!(
                out,
                "  or raise nf_conntrack_max from {} to at least {raise_max_to} (global: set it in the host's initial namespace)\n  {plan}\n  {apply}",
                f.max
            )?
        }
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
