//! The terminal side of `watch`: raw mode and the alternate screen, keys,
//! SIGINT/SIGTERM, and the loop that interleaves events, keys and
//! intervals. The terminal is restored on every way out: a normal quit, an
//! error (the [`Screen`] guard's Drop), a panic (ratatui's panic hook
//! restores before the message prints) and a signal (the stop flag ends
//! the loop, then the guard restores).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossterm::event::{self, Event, KeyEventKind};
use ctmodel::Filter;
use ratatui::DefaultTerminal;

use super::WatchArgs;
use super::tui::{Action, App, TUI_RANK_ROWS};
use crate::feed::Feed;

/// A flag set by SIGINT or SIGTERM (the handlers only store to it).
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .context("installing the SIGINT/SIGTERM handler")?;
    }
    Ok(flag)
}

/// Raw mode + alternate screen while alive.
struct Screen(DefaultTerminal);

impl Screen {
    fn enter() -> Result<Self> {
        let t = ratatui::try_init().context("setting up the terminal")?;
        Ok(Self(t))
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = self.0.show_cursor();
        ratatui::restore();
    }
}

/// Longest wait for events before looking at the keyboard again.
const KEY_LATENCY: Duration = Duration::from_millis(50);

pub fn run(args: &WatchArgs, mut feed: Feed, netns: Option<&str>, stop: &AtomicBool) -> Result<u8> {
    let mut app = App::new(args.top, netns.map(String::from));
    app.by = args.by;
    let mut screen = Screen::enter()?;
    let mut next = Instant::now() + args.interval;
    let mut done = 0u64;
    let mut dirty = true;
    while !stop.load(Ordering::Relaxed) {
        if dirty {
            screen.0.draw(|f| app.draw(f)).context("drawing")?;
            dirty = false;
        }
        let left = next.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            feed.pump(left.min(KEY_LATENCY))?;
        }
        while event::poll(Duration::ZERO).context("reading the keyboard")? {
            match event::read().context("reading the keyboard")? {
                Event::Key(k) if k.kind != KeyEventKind::Release => {
                    dirty = true;
                    match app.key(k) {
                        Action::None => {}
                        Action::Quit => return Ok(0),
                        Action::Filter(clauses) => apply_filter(&mut app, &mut feed, clauses)?,
                    }
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
        let now = Instant::now();
        if now >= next {
            next += args.interval;
            if next <= now {
                next = now + args.interval;
            }
            app.push(feed.sample(args.top.max(TUI_RANK_ROWS))?);
            dirty = true;
            done += 1;
            if args.count.is_some_and(|n| done >= n) {
                break;
            }
        }
    }
    drop(screen);
    Ok(0)
}

/// Apply a filter typed after `/`; a bad one is shown, never fatal.
fn apply_filter(app: &mut App, feed: &mut Feed, clauses: Vec<String>) -> Result<()> {
    if clauses == feed.clauses() {
        return Ok(());
    }
    match Filter::parse(&clauses) {
        Ok(f) => {
            feed.set_filter(f, clauses.clone())?;
            app.history.clear();
            app.say(if clauses.is_empty() {
                "filter cleared: watching the whole table".into()
            } else {
                format!(
                    "filter: {} (a dump rebuilt the live set)",
                    clauses.join(" ")
                )
            });
        }
        Err(e) => app.say(format!("invalid filter, not applied: {e}")),
    }
    Ok(())
}
