//! `ctdoctor forecast`: watch this namespace's table for a window (ctnetlink
//! events into a `ctmodel::flows::Tracker` through the shared
//! [`crate::feed`], or two dumps when events are
//! off or cannot be subscribed), sample the count every second, read the
//! namespace's timeouts, and hand everything to `ctcore::forecast`'s
//! [`estimate`]; render the result as text or JSON with a Nagios status
//! (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN like `check`). The text form
//! is [`report`]'s.

mod report;

use std::collections::BTreeMap;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use ctcore::duration;
use ctcore::forecast::{dumps, estimate};
use ctcore::resync;
use cthost::Host;
use cthost::plan::Profile;
use cthost::source::Root;
use ctmodel::Filter;
use ctnetlink::{Conntrack, Events, Family};
use serde::Serialize;

use crate::feed::Feed;
use estimate::{Forecast, Inputs, Status, human};

const NF: &str = "/proc/sys/net/netfilter";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceArg {
    /// Events when the kernel delivers them, else two dumps.
    Auto,
    /// ctnetlink events only (fail when unavailable).
    Events,
    /// Two dumps, at the start and the end of the window.
    Dumps,
}

#[derive(Debug, Args)]
pub struct ForecastArgs {
    /// How long to observe (5s to 24h).
    #[arg(long, default_value = "60s", value_name = "DURATION",
          value_parser = duration::flag(Duration::from_secs(5), duration::DAY))]
    pub window: Duration,

    /// CRITICAL when the table is full sooner than this.
    #[arg(long, default_value = "15m", value_name = "DURATION",
          value_parser = duration::flag(duration::SECOND, duration::YEAR))]
    pub crit: Duration,

    /// WARNING when the table is full sooner than this.
    #[arg(long, default_value = "2h", value_name = "DURATION",
          value_parser = duration::flag(duration::SECOND, duration::YEAR))]
    pub warn: Duration,

    /// Where arrivals and lifetimes come from.
    #[arg(long, value_enum, default_value_t = SourceArg::Auto)]
    pub source: SourceArg,

    /// The suggested change aims the steady state below this share of
    /// nf_conntrack_max (percent, 1 to 100).
    #[arg(long, default_value_t = 80.0, value_parser = parse_target, value_name = "PERCENT")]
    pub target: f64,

    /// Profile whose timeout floors (`ctdoctor plan`) bound a suggested
    /// lower timeout: web, nat-gateway, k8s-node, router.
    #[arg(long, default_value = "web", value_parser = str::parse::<Profile>)]
    pub profile: Profile,
}

fn parse_target(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(v) if (1.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("{s}: a percentage from 1 to 100")),
    }
}

/// What the command prints (`--json`: this, field for field).
#[derive(Debug, Serialize)]
pub struct Report {
    pub status: Status,
    pub exit_code: u8,
    /// "events" or "dumps".
    pub source: &'static str,
    /// Why dumps were used, what that misses; empty with events.
    pub source_note: String,
    #[serde(flatten)]
    pub forecast: Forecast,
    /// Events the kernel dropped (ENOBUFS) during the window, each followed by a dump.
    pub resyncs: u64,
    /// Whether part of the window was left out of the rates (events lost:
    /// the statistics restart after the resync; `window_s` is what is left).
    pub partial: bool,
    /// Seconds left out at the start of the window.
    pub excluded_s: f64,
    pub crit_s: f64,
    pub warn_s: f64,
    /// The change aims the steady state below this percentage of max.
    pub target_pct: f64,
}

/// The namespace's timeouts by short sysctl name (cthost reads /proc/sys,
/// as `check`, `plan` and `simulate` do), falling back to the kernel's
/// defaults for names it cannot read.
pub fn timeouts(root: &Root) -> BTreeMap<String, f64> {
    cthost::gather::timeout_table(root)
        .iter()
        .map(|(t, v)| (t.short().to_string(), v))
        .collect()
}

/// What one observation window gave.
struct Observed {
    classes: Classes,
    window: f64,
    samples: Vec<(f64, f64)>,
    resyncs: u64,
    /// Seconds at the start of the window left out of the rates (events
    /// were lost: the statistics restart after the resync).
    excluded_s: f64,
}

fn count(ct: &mut Conntrack) -> Result<u32> {
    Ok(ct
        .stats()
        .context("reading the count (ctnetlink GET_STATS)")?
        .entries)
}

/// Events into a tracker through the shared live feed ([`Feed`]): a dump
/// first (entries already there count as live, without an arrival time),
/// then every event. A loss (ENOBUFS): the feed drains the old backlog and
/// a dump resynchronises the live set, and the per-class statistics
/// restart after it (the time before is partial: its exits and arrivals
/// are incomplete, so it is left out of the rates).
fn observe_events(host: &Host, ev: Events, window: Duration) -> Result<Observed> {
    let t0 = Instant::now();
    let mut feed = Feed::start(host, ev, Filter::default(), Vec::new(), false)?;
    let mut samples = vec![(feed.now(), feed.count()? as f64)];
    let mut resyncs = 0;
    let mut excluded_s = 0.0;
    let mut next_sample = Duration::from_secs(1);
    loop {
        let elapsed = t0.elapsed();
        if elapsed >= window {
            break;
        }
        if elapsed >= next_sample {
            samples.push((feed.now(), feed.count()? as f64));
            next_sample += Duration::from_secs(1);
            continue;
        }
        feed.pump(next_sample.min(window) - elapsed)?;
        if feed.lost() {
            resyncs += 1;
            feed.resync(resync::Why::Lost)?;
            excluded_s = feed.restart();
        }
    }
    let (classes, window, last) = close_window(&mut feed)?;
    samples.push((feed.now(), last as f64));
    Ok(Observed {
        classes,
        window,
        samples,
        resyncs,
        excluded_s,
    })
}

/// End an observation window on the feed: what the kernel queued before
/// it closed belongs to it (drained, bounded); entries that left without a
/// DESTROY event (made while nobody listened: no event extension) still
/// sit in the tracker, so when its live set and the count disagree one
/// more dump brings the classes' live figures back to the truth (arrivals
/// and dwell are not touched; not counted as a loss). Returns the classes,
/// the seconds they cover and the count. `export` closes its windows so too.
pub fn close_window(feed: &mut Feed) -> Result<(Classes, f64, u64)> {
    feed.drain()?;
    let last = feed.count()?;
    if resync::drifted(last, feed.tracker().live()) {
        feed.resync(resync::Why::Drift {
            count: last,
            live: feed.tracker().live(),
        })?;
    }
    let end = feed.now();
    let classes = feed
        .tracker()
        .classes(end)
        .into_iter()
        .map(|(k, s)| (k, s.into()))
        .collect();
    Ok((classes, feed.tracker().observed(end), last))
}

/// Per class, what a window showed (events or dumps).
pub type Classes = BTreeMap<ctmodel::flows::ClassKey, estimate::Observed>;

/// forecast's estimate of one window (the one mapping `forecast` and
/// `export` share): the namespace's timeouts per class, `profile`'s floors.
pub fn verdict(
    root: &Root,
    classes: Classes,
    window: f64,
    samples: Vec<(f64, f64)>,
    (count, max): (u64, u64),
    profile: Profile,
    target_share: f64,
) -> Forecast {
    estimate::estimate(&Inputs {
        window,
        classes: estimate::class_inputs(classes, &timeouts(root), profile),
        count,
        max,
        samples,
        target_share,
    })
}

/// Two dumps, the count sampled every second in between.
fn observe_dumps(ct: &mut Conntrack, window: Duration) -> Result<Observed> {
    let t0 = Instant::now();
    let now = || t0.elapsed().as_secs_f64();
    let none = dumps::Ids::default();
    let mut a = dumps::Arrivals::default();
    ct.dump(Family::Any, |e| a.add(&none, e))
        .context("dumping the table (ctnetlink)")?;
    let (_, first) = a.finish(&none);
    let t_first = now();
    let mut samples = vec![(t_first, f64::from(count(ct)?))];
    let mut next = Duration::from_secs(1);
    while t0.elapsed() < window {
        std::thread::sleep(next.min(window).saturating_sub(t0.elapsed()));
        if t0.elapsed() >= next {
            samples.push((now(), f64::from(count(ct)?)));
            next += Duration::from_secs(1);
        }
    }
    let mut arrivals = dumps::Arrivals::default();
    let t_second = now();
    ct.dump(Family::Any, |e| arrivals.add(&first, e))
        .context("dumping the table (ctnetlink)")?;
    samples.push((now(), f64::from(count(ct)?)));
    let (classes, _) = arrivals.finish(&first);
    Ok(Observed {
        classes: classes.into_iter().map(|(k, d)| (k, d.into())).collect(),
        window: t_second - t_first,
        samples,
        resyncs: 0,
        excluded_s: 0.0,
    })
}

pub fn run(args: &ForecastArgs, host: &Host) -> Result<Report> {
    let crit = args.crit.as_secs_f64();
    let warn = args.warn.as_secs_f64();
    if crit > warn {
        return Err(crate::exit::Usage(format!(
            "--crit ({}) must not be longer than --warn ({})",
            human(crit),
            human(warn)
        ))
        .into());
    }
    let mut ct = host.conntrack().context("opening ctnetlink")?;
    let g = ct.stats().map_err(|e| {
        if e.is_permission() {
            anyhow::anyhow!("{e}: forecast needs CAP_NET_ADMIN in the namespace (run as root)")
        } else {
            anyhow::anyhow!("cannot read conntrack stats over ctnetlink: {e}")
        }
    })?;
    let max = g
        .max_entries
        .map(u64::from)
        .or_else(|| {
            host.root()
                .read_u64(&format!("{NF}/nf_conntrack_max"), "")
                .ok()
        })
        .context("nf_conntrack_max is unreadable (neither ctnetlink nor /proc/sys gives it)")?;
    // Events need nf_conntrack_events on; subscribing can still fail (no
    // CAP_NET_ADMIN for the multicast groups, a kernel without them).
    let events = match (args.source, cthost::gather::events_setting(host.root())) {
        (SourceArg::Dumps, _) => Err("--source dumps".to_string()),
        (_, Some(0)) => Err(
            "net.netfilter.nf_conntrack_events is 0 in this namespace, so the kernel sends no events (enable: sysctl -w net.netfilter.nf_conntrack_events=1)".to_string(),
        ),
        _ => Feed::subscribe(host)
            .map_err(|e| format!("subscribing to ctnetlink events failed: {e}")),
    };
    let (source, source_note, observed) = match events {
        Ok(ev) => (
            "events",
            String::new(),
            observe_events(host, ev, args.window)?,
        ),
        Err(why) if args.source == SourceArg::Events => anyhow::bail!("{why}"),
        Err(why) => (
            "dumps",
            format!(
                "{why}: estimated from two dumps {} apart (per class, the share of the first dump's entries still there gives the steady state, entries new to the class / (1 - that share); flows that came and went in between are missed; a class none of whose entries left is unknown, its live count the floor)",
                human(args.window.as_secs_f64())
            ),
            observe_dumps(&mut ct, args.window)?,
        ),
    };
    let count = observed
        .samples
        .last()
        .map_or(u64::from(g.entries), |s| s.1 as u64);
    let forecast = verdict(
        host.root(),
        observed.classes,
        observed.window,
        observed.samples,
        (count, max),
        args.profile,
        args.target / 100.0,
    );
    let status = estimate::status(&forecast, crit, warn);
    Ok(Report {
        status,
        exit_code: status as u8,
        source,
        source_note,
        forecast,
        resyncs: observed.resyncs,
        partial: observed.excluded_s > 0.0,
        excluded_s: observed.excluded_s,
        crit_s: crit,
        warn_s: warn,
        target_pct: args.target,
    })
}
