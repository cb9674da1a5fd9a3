//! `ctdoctor watch`: the table as it moves, kept current from ctnetlink
//! events rather than dumps (one dump at the start, more only when the
//! event-fed state drifts, `ctcore::resync`). Each interval becomes a
//! [`ctcore::watch::Snapshot`] that goes to the full-screen TUI ([`tui`], [`terminal`]) or,
//! with `--json-lines`, to stdout as one JSON object per line.
//!
//! - [`crate::feed`]: events + stats + dumps (shared with forecast and export)
//! - [`tui`]: drawing a snapshot history (pure, tested on TestBackend)
//! - [`terminal`]: raw mode, keys, signals, restore on every exit

pub mod terminal;
pub mod tui;

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use ctcore::duration;
use ctmodel::Filter;

use crate::exit::Usage;
use crate::feed;

/// Most rows per ranking (`--top`).
pub const MAX_TOP: usize = 1000;

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Length of one interval (rates are per second over it): 100ms to 1h.
    #[arg(long, default_value = "1s", value_name = "DURATION",
          value_parser = duration::flag(Duration::from_millis(100), duration::HOUR))]
    pub interval: Duration,

    /// Rows in the top sources, destinations and ports rankings.
    #[arg(short = 'n', long, default_value_t = 10, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_TOP as u64))]
    pub top: usize,

    /// Only watch entries matching KEY=VALUE (repeatable, ANDed; the syntax of `top --filter`).
    #[arg(long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,

    /// Print one JSON object per interval instead of the full-screen view
    /// (for scripts and pipes; --json means the same).
    #[arg(long)]
    pub json_lines: bool,

    /// What the TUI's sources ranking groups by: `src` (addresses, an
    /// owned one as `name (ip)`), `container` or `pod` (new entries per
    /// workload owning the source; unowned addresses as themselves).
    /// --json-lines carries every ranking.
    #[arg(long, value_enum, default_value_t = By::Src)]
    pub by: By,

    /// Stop after N intervals (default: until q, Ctrl-C or SIGTERM).
    #[arg(long, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..))]
    pub count: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    Src,
    Container,
    Pod,
}

impl By {
    /// The ranking's title and where a snapshot holds it.
    pub fn ranking(
        self,
    ) -> (
        &'static str,
        fn(&ctcore::watch::Snapshot) -> &Vec<ctcore::watch::Rank>,
    ) {
        match self {
            By::Src => ("top sources", |s| &s.top_src),
            By::Container => ("top containers", |s| &s.top_container),
            By::Pod => ("top pods", |s| &s.top_pod),
        }
    }
}

/// What to tell a user whose kernel sends no events.
pub const EVENTS_OFF: &str = "net.netfilter.nf_conntrack_events is 0: the kernel sends no conntrack events, so new/s, destroyed/s and the top rankings are unavailable (null); enable them with `sysctl -w net.netfilter.nf_conntrack_events=1` (in the watched namespace)";

/// Run `watch`; `json`: the global --json flag. Returns the exit code.
pub fn run(
    args: &WatchArgs,
    json: bool,
    quiet: bool,
    netns: Option<&str>,
    host: &cthost::Host,
) -> Result<u8> {
    let filter = Filter::parse(&args.filter).map_err(Usage::from)?;
    let lines = args.json_lines || json;
    if !lines && !std::io::stdout().is_terminal() {
        return Err(Usage(
            "stdout is not a terminal: the full-screen view needs one; use --json-lines \
             for one JSON object per interval (scripts, pipes, files)"
                .into(),
        )
        .into());
    }
    // Before the first dump, which can take seconds on a big table: a
    // SIGTERM then must still end the run cleanly, not kill it mid-way.
    let stop = terminal::stop_flag()?;
    let feed = feed::Feed::open(host, filter, args.filter.clone())?;
    if let Some(note) = &feed.book_note
        && !quiet
    {
        eprintln!("ctdoctor: note: {note}");
    }
    if lines {
        json_lines(args, feed, quiet, &stop)
    } else {
        terminal::run(args, feed, netns, &stop)
    }
}

fn json_lines(
    args: &WatchArgs,
    mut feed: feed::Feed,
    quiet: bool,
    stop: &AtomicBool,
) -> Result<u8> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut warned_off = false;
    let mut next = Instant::now() + args.interval;
    let mut done = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let left = next.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            // Short waits so SIGTERM/SIGINT end the run within 100 ms.
            feed.pump(left.min(Duration::from_millis(100)))?;
            continue;
        }
        let now = Instant::now();
        next += args.interval;
        if next <= now {
            // A slow dump or stats request: start afresh rather than catch up.
            next = now + args.interval;
        }
        let snap = feed.sample(args.top)?;
        if !snap.events.enabled && !warned_off && !quiet {
            eprintln!("ctdoctor: warning: {EVENTS_OFF}");
            warned_off = true;
        }
        serde_json::to_writer(&mut out, &snap)?;
        out.write_all(b"\n")?;
        out.flush()?;
        done += 1;
        if args.count.is_some_and(|n| done >= n) {
            break;
        }
    }
    Ok(0)
}
