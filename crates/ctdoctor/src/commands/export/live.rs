//! The exporter on events: one background thread runs the live feed that
//! `watch` and `forecast` use ([`crate::feed`]: subscribe, dump, events
//! into the tracker, resync by `ctcore::resync`) and publishes, into
//! [`Shared`](super::sources::Shared), the breakdown from the tracker
//! (every second: no dump per scrape, whatever the table's size) and
//! forecast's verdict of each window.
//!
//! Window semantics are `forecast --window W`'s (W = `--forecast-window`,
//! 60 s by default): consecutive windows, each one a forecast of its own.
//! At a window's start the tracker's statistics restart (entries already
//! live count as live without an arrival time, as after forecast's first
//! dump); the count is sampled every second; at its end the feed drains and
//! resyncs on drift as forecast does ([`forecast::close_window`]), and
//! [`forecast::verdict`] turns it into the verdict. After lost events the
//! statistics restart after the resync, as in forecast. What scrapes see
//! is the last complete window: at most W old, and absent before the first
//! one ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use ctcore::resync::Why;
use ctmodel::Filter;
use ctmodel::flows::Tracker;
use ctnetlink::Events;

use super::metrics::{BreakdownView, Created, ForecastView, Source, TOP_CREATORS};
use super::sources::Shared;
use crate::commands::forecast;
use crate::feed::Feed;

/// After the feed fails (a dump or the socket), wait this long, then
/// subscribe again.
const RETRY: Duration = Duration::from_secs(10);

/// What the events thread last published.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// The tracker's breakdown and when it was taken (every second).
    pub breakdown: Option<(Instant, BreakdownView)>,
    /// The last complete window.
    pub forecast: Option<ForecastView>,
    /// Whether the feed runs with events on (false after an error, or
    /// while nf_conntrack_events is 0).
    pub up: bool,
}

/// The tracker's live set as the exporter's breakdown: entries by TCP
/// state, by L4 protocol, and by flag (no top sources: those need a dump).
pub fn breakdown(t: &Tracker) -> BreakdownView {
    let mut by_state = Vec::new();
    let mut by_l4: Vec<(String, u64)> = Vec::new();
    for (class, n) in t.states() {
        if class.l4() == "tcp" {
            by_state.push(("tcp".to_string(), class.state().to_string(), n));
        }
        match by_l4.iter_mut().find(|(l4, _)| l4 == class.l4()) {
            Some((_, sum)) => *sum += n,
            None => by_l4.push((class.l4().to_string(), n)),
        }
    }
    by_state.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.1.cmp(&b.1)));
    by_l4.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let (assured, unreplied) = t.flags();
    BreakdownView {
        by_state,
        by_l4,
        assured,
        unreplied,
        top_sources: Vec::new(),
    }
}

/// The thread's body: run the feed; after an error, say so once on
/// stderr, mark it down and subscribe again after [`RETRY`].
pub fn run(shared: Arc<Shared>, events: Events) {
    let mut first = Some(events);
    let mut warned = false;
    loop {
        let r = match first.take() {
            Some(ev) => Ok(ev),
            None => Feed::subscribe(&shared.config.host).map_err(anyhow::Error::from),
        }
        .and_then(|ev| feed(&shared, ev));
        if let Err(e) = r {
            if !warned {
                eprintln!("ctdoctor: warning: the event feed stopped ({e:#}); retrying every 10 s");
                warned = true;
            }
            shared.publish(|p| {
                p.up = false;
                p.forecast = None;
            });
        }
        std::thread::sleep(RETRY);
    }
}

/// One feed until it fails: a tick every second, a verdict every window.
fn feed(shared: &Shared, events: Events) -> Result<()> {
    let host = &shared.config.host;
    let window = shared.config.forecast_window;
    let mut feed = Feed::start(host, events, Filter::default(), Vec::new(), false)?;
    let mut started = Instant::now();
    let mut samples = vec![(feed.now(), feed.count()? as f64)];
    let mut next = started + Duration::from_secs(1);
    loop {
        let left = next.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            feed.pump(left)?;
            continue;
        }
        next += Duration::from_secs(1);
        let (count, why) = feed.tick()?;
        if why == Some(Why::Lost) {
            // As forecast: what came before the resync is incomplete.
            feed.restart();
        }
        samples.push((feed.now(), count as f64));
        let on = feed.status().enabled;
        let view = breakdown(feed.tracker());
        shared.publish(|p| {
            p.breakdown = Some((Instant::now(), view));
            p.up = on;
        });
        if started.elapsed() < window {
            continue;
        }
        let (classes, observed, last) = forecast::close_window(&mut feed)?;
        samples.push((feed.now(), last as f64));
        let iv = feed.take_interval();
        let max = super::sources::read_table(host, 0).ok().and_then(|t| t.max);
        let view = match max {
            Some(max) if on => {
                let f = forecast::verdict(
                    host.root(),
                    classes,
                    observed,
                    std::mem::take(&mut samples),
                    (last, max),
                    cthost::plan::Profile::Web,
                    ctcore::forecast::estimate::DEFAULT_TARGET_SHARE,
                );
                let created = iv.partial.is_none().then(|| {
                    let book = super::workloads::book(host, shared.config.workloads);
                    let top = iv
                        .created
                        .top_src(TOP_CREATORS)
                        .into_iter()
                        .map(|(a, n)| (Source::new(a.to_string(), book.as_ref()), n))
                        .collect();
                    Created {
                        top,
                        total: iv.new,
                        seconds: iv.seconds,
                    }
                });
                Some(ForecastView::of(&f, created))
            }
            // Events off, or max unreadable: no verdict (absent).
            _ => None,
        };
        shared.publish(|p| p.forecast = view);
        // The next window, as a fresh `forecast` run.
        feed.restart();
        started = Instant::now();
        samples = vec![(feed.now(), last as f64)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctmodel::Entry;
    use ctmodel::entry::{L4Tuple, Status, Tuple};
    use ctmodel::flows::EventKind;
    use ctmodel::proto::{L4Proto, State};
    use std::net::{IpAddr, Ipv4Addr};

    fn entry(id: u32, l4: L4Proto, state: Option<u8>, status: Status) -> Entry {
        let t = |a: u8, b: u8| Tuple {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, a)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, b)),
            l4: L4Tuple::Ports {
                sport: 40000 + id as u16,
                dport: 80,
            },
            zone: None,
        };
        Entry {
            l4: Some(l4),
            state: state.map(State::Code),
            orig: t(2, 1),
            reply: t(1, 2),
            status: Status::CONFIRMED | status,
            id: Some(id),
            ..Entry::default()
        }
    }

    #[test]
    fn breakdown_follows_the_tracker() {
        let mut t = Tracker::new(Filter::default());
        // 3 = ESTABLISHED, 7 = TIME_WAIT.
        let est = |id| {
            entry(
                id,
                L4Proto::Tcp,
                Some(3),
                Status::ASSURED | Status::SEEN_REPLY,
            )
        };
        t.event(
            0.0,
            EventKind::New,
            &entry(1, L4Proto::Tcp, Some(1), Status::empty()),
        );
        t.event(0.1, EventKind::Update, &est(1));
        t.event(0.2, EventKind::New, &est(2));
        t.event(
            0.3,
            EventKind::New,
            &entry(3, L4Proto::Udp, None, Status::empty()),
        );
        t.event(
            0.4,
            EventKind::Update,
            &entry(
                2,
                L4Proto::Tcp,
                Some(7),
                Status::ASSURED | Status::SEEN_REPLY,
            ),
        );
        let b = breakdown(&t);
        assert_eq!(
            b.by_state,
            vec![
                ("tcp".into(), "ESTABLISHED".into(), 1),
                ("tcp".into(), "TIME_WAIT".into(), 1)
            ]
        );
        assert_eq!(b.by_l4, vec![("tcp".into(), 2), ("udp".into(), 1)]);
        assert_eq!((b.assured, b.unreplied), (2, 1));
        t.event(0.5, EventKind::Destroy, &est(1));
        t.event(
            0.6,
            EventKind::Destroy,
            &entry(3, L4Proto::Udp, None, Status::empty()),
        );
        let b = breakdown(&t);
        assert_eq!(b.by_l4, vec![("tcp".into(), 1)]);
        assert_eq!((b.assured, b.unreplied), (1, 0));
    }
}
