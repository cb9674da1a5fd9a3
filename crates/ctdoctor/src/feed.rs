//! The live feed of `watch`, `forecast` and `export` (one implementation):
//! the ctnetlink event subscription feeding a [`Tracker`], the stats
//! requests, and the resync dumps ([`ctcore::resync`]). Owns the order
//! that keeps nothing between the cracks: subscribe first, then dump, so
//! every entry created during or after the dump arrives as an event; after
//! lost events, the old backlog is drained before the dump. Everything
//! here runs in the calling thread's network namespace (the exporter runs
//! it in a background thread, which inherits the namespace `--netns`
//! entered before any thread existed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use ctcore::resync::{self, Why};
use cthost::Host;
use ctmodel::Filter;
use ctmodel::flows::Tracker;
use ctnetlink::{Conntrack, CpuStats, Events, Family, Groups};

use ctcore::watch::{EventStatus, Reading, Snapshot, TableFull, counter_delta};
use ctcore::workload::AddressBook;

/// Table-full lines in /dev/kmsg from now on: a thread reads records
/// written after the start (it seeks past the ring buffer's old ones) and
/// counts those naming this namespace's inode or none. The thread blocks
/// in `read` and ends with the process.
struct KernelLog {
    lines: Arc<AtomicU64>,
    /// Unix seconds of the last one (0: none yet).
    last: Arc<AtomicU64>,
}

impl KernelLog {
    fn follow(host: &Host) -> Option<Self> {
        let kmsg = host.kmsg(cthost::kmsg::From::End, true).ok()?;
        let ours = cthost::namespaces::current_inode();
        let me = Self {
            lines: Arc::default(),
            last: Arc::default(),
        };
        let (lines, last) = (me.lines.clone(), me.last.clone());
        let clock = host.clone();
        cthost::kmsg::Follower::spawn(kmsg, move |netns, n| {
            if netns.is_none() || netns == ours {
                lines.fetch_add(n, Ordering::Relaxed);
                last.store(clock.unix_now(), Ordering::Relaxed);
            }
        })
        .ok()?;
        Some(me)
    }

    fn read(&self) -> TableFull {
        let last = self.last.load(Ordering::Relaxed);
        TableFull {
            lines: self.lines.load(Ordering::Relaxed),
            last: (last > 0).then_some(last),
        }
    }
}

/// Dump attempts when the kernel flags a dump as interrupted or overrun.
const DUMP_ATTEMPTS: usize = 3;

pub struct Feed {
    host: Host,
    ct: Conntrack,
    events: Events,
    tracker: Tracker,
    clauses: Vec<String>,
    clock: Instant,
    status: EventStatus,
    /// An ENOBUFS since the last dump.
    lost: bool,
    last_dump: f64,
    cpu: Option<Vec<CpuStats>>,
    kernel_log: Option<KernelLog>,
    /// Address to container ([`cthost::addresses`]), re-read every
    /// [`BOOK_EVERY_S`] (containers come and go), and when.
    book: AddressBook,
    book_at: f64,
    /// What the first read of the book could not read (said once).
    pub book_note: Option<String>,
}

/// Seconds between two reads of the address book.
const BOOK_EVERY_S: f64 = 10.0;

impl Feed {
    /// Subscribe to every event group (the first step: before any dump).
    pub fn subscribe(host: &Host) -> Result<Events, ctnetlink::Error> {
        host.events(Groups::ALL)
    }

    /// Subscribe, dump once, and start the first interval; table-full
    /// lines of /dev/kmsg are followed and the address book is read (watch
    /// shows both; forecast and the exporter, which [`Feed::start`] alone,
    /// use neither).
    pub fn open(host: &Host, filter: Filter, clauses: Vec<String>) -> Result<Self> {
        let events = Self::subscribe(host)?;
        let mut feed = Self::start(host, events, filter, clauses, true)?;
        (feed.book, feed.book_note) = cthost::addresses::book(host.root());
        Ok(feed)
    }

    /// Dump once over an existing subscription and start the first
    /// interval; `kernel_log`: follow /dev/kmsg's table-full lines.
    pub fn start(
        host: &Host,
        events: Events,
        filter: Filter,
        clauses: Vec<String>,
        kernel_log: bool,
    ) -> Result<Self> {
        let ct = host.conntrack()?;
        let setting = cthost::gather::events_setting(host.root());
        let mut feed = Self {
            host: host.clone(),
            ct,
            events,
            tracker: Tracker::new(filter),
            clauses,
            clock: Instant::now(),
            status: EventStatus {
                setting,
                enabled: setting != Some(0),
                ..EventStatus::default()
            },
            lost: false,
            last_dump: 0.0,
            cpu: None,
            kernel_log: kernel_log.then(|| KernelLog::follow(host)).flatten(),
            book: AddressBook::default(),
            book_at: 0.0,
            book_note: None,
        };
        feed.dump()?;
        feed.status.resyncs = 0;
        feed.status.last_resync = None;
        // Events queued during the dump update the live set, but the
        // first interval starts now: its rates cover a known span.
        feed.pump(Duration::ZERO)?;
        feed.cpu = feed.ct.stats_cpu().ok();
        let t = feed.now();
        feed.tracker.take_interval(t);
        Ok(feed)
    }

    /// Seconds on the feed's clock (the tracker's times).
    pub fn now(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub fn status(&self) -> &EventStatus {
        &self.status
    }

    /// Whether events were lost (ENOBUFS) since the last dump.
    pub fn lost(&self) -> bool {
        self.lost
    }

    /// The table's count (ctnetlink GET_STATS).
    pub fn count(&mut self) -> Result<u64> {
        Ok(u64::from(
            self.ct
                .stats()
                .context("reading the count (ctnetlink GET_STATS)")?
                .entries,
        ))
    }

    /// Read what the socket holds, until empty or [`resync::DRAIN_BOUND_S`]
    /// (a large dump leaves a backlog; bounded so a flood cannot hold it).
    pub fn drain(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            let p = self.poll_events(Duration::ZERO)?;
            if p.lost {
                self.note_lost();
            }
            if resync::drained(p.events, p.lost, start.elapsed().as_secs_f64()) {
                return Ok(());
            }
        }
    }

    /// Forget the per-class statistics and start them again now, keeping
    /// the live set (`Tracker::restart`); returns the time.
    pub fn restart(&mut self) -> f64 {
        let t = self.now();
        self.tracker.restart(t);
        t
    }

    /// Close the current interval (what the tracker saw since the last).
    pub fn take_interval(&mut self) -> ctmodel::flows::Interval {
        let t = self.now();
        self.tracker.take_interval(t)
    }

    /// Replace the live set with a dump (retried when interrupted). After
    /// lost events, the old backlog is drained first (see
    /// [`resync::DRAIN_BOUND_S`]) and entries the dump no longer lists left
    /// at an unknown time (no exit is counted).
    fn dump(&mut self) -> Result<()> {
        let after_loss = self.lost;
        if after_loss {
            self.drain()?;
        }
        let Self {
            ct, tracker, clock, ..
        } = self;
        for attempt in 1..=DUMP_ATTEMPTS {
            tracker.resync_begin(clock.elapsed().as_secs_f64());
            let t = clock.elapsed().as_secs_f64();
            match ct.dump(Family::Any, |e| tracker.resync_add(t, e)) {
                Ok(s) if !s.interrupted || attempt == DUMP_ATTEMPTS => break,
                Ok(_) => {}
                Err(ctnetlink::Error::Overrun { .. }) if attempt < DUMP_ATTEMPTS => {}
                Err(e) => return Err(e).context("dumping the table to resynchronise"),
            }
        }
        let t = self.now();
        if after_loss {
            self.tracker.resync_end_after_loss(t);
        } else {
            self.tracker.resync_end(t);
        }
        self.last_dump = t;
        self.lost = false;
        Ok(())
    }

    /// Dump now for `why` (counted in the status's resyncs).
    pub fn resync(&mut self, why: Why) -> Result<()> {
        self.dump()?;
        self.status.resyncs += 1;
        self.status.last_resync = Some(why.to_string());
        Ok(())
    }

    /// Feed events into the tracker for up to `timeout`.
    pub fn pump(&mut self, timeout: Duration) -> Result<()> {
        let p = self.poll_events(timeout)?;
        if p.lost {
            self.note_lost();
        }
        Ok(())
    }

    fn note_lost(&mut self) {
        self.lost = true;
        self.status.lost += 1;
        self.tracker.mark_partial("events lost (ENOBUFS)");
    }

    /// Re-read nf_conntrack_events; true when it was just turned on (the
    /// interval is then partial and a resync is due).
    fn refresh_setting(&mut self) -> bool {
        let setting = cthost::gather::events_setting(self.host.root());
        let was_on = self.status.enabled;
        self.status.setting = setting;
        self.status.enabled = setting != Some(0);
        let turned_on = self.status.enabled && !was_on;
        if turned_on {
            // Events were off for part of the interval.
            self.tracker.mark_partial("events just enabled");
        }
        turned_on
    }

    /// Resync when the live set cannot be trusted (events just turned on,
    /// lost, or drifted from `count`); returns why it did.
    fn resync_when_due(&mut self, turned_on: bool, count: u64) -> Result<Option<Why>> {
        let why = if turned_on {
            Some(Why::EventsOn)
        } else {
            resync::due(
                self.lost,
                count,
                self.tracker.live(),
                !self.clauses.is_empty(),
                self.now() - self.last_dump,
            )
        };
        if let Some(why) = &why {
            self.resync(*why)?;
        }
        Ok(why)
    }

    /// The exporter's once-a-second step: read the count, notice events
    /// turned on, resync when due (as [`Self::sample`] does, without
    /// closing the interval). Returns the count and why it resynced.
    pub fn tick(&mut self) -> Result<(u64, Option<Why>)> {
        let count = self.count()?;
        let turned_on = self.refresh_setting();
        let why = self.resync_when_due(turned_on, count)?;
        Ok((count, why))
    }

    /// One poll of the event socket into the tracker (malformed counted).
    fn poll_events(&mut self, timeout: Duration) -> Result<ctnetlink::Poll> {
        let Self {
            events,
            tracker,
            clock,
            ..
        } = self;
        let p = events
            .poll(timeout, |kind, e| {
                tracker.event(clock.elapsed().as_secs_f64(), kind, e);
            })
            .context("reading ctnetlink events")?;
        self.status.malformed += p.malformed;
        Ok(p)
    }

    /// Close the interval: read the stats, build its snapshot with `top`
    /// rows per ranking, then resync when the live set cannot be trusted.
    pub fn sample(&mut self, top: usize) -> Result<Snapshot> {
        let stats = self.ct.stats().context("reading the conntrack count")?;
        let cpu = self.ct.stats_cpu().ok();
        let turned_on = self.refresh_setting();
        let t = self.now();
        let iv = self.tracker.take_interval(t);
        let counters = match (&self.cpu, &cpu) {
            (Some(before), Some(after)) => Some(counter_delta(before, after)),
            _ => None,
        };
        self.cpu = cpu;
        let reading = Reading {
            unix_time: self
                .host
                .now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            count: u64::from(stats.entries),
            max: stats.max_entries.map(u64::from),
            counters,
            live: self.tracker.live(),
            states: self.tracker.states(),
            table_full: self.kernel_log.as_ref().map(KernelLog::read),
        };
        if t - self.book_at >= BOOK_EVERY_S {
            self.book = cthost::addresses::book(self.host.root()).0;
            self.book_at = t;
        }
        let snap = Snapshot::new(&iv, &reading, &self.status, &self.clauses, top, &self.book);
        self.resync_when_due(turned_on, reading.count)?;
        Ok(snap)
    }

    /// Watch other entries from now on (TUI `/`): a new tracker and a dump.
    pub fn set_filter(&mut self, filter: Filter, clauses: Vec<String>) -> Result<()> {
        let t = self.now();
        self.tracker = Tracker::new(filter);
        self.clauses = clauses;
        self.resync(Why::Filter)?;
        self.tracker.take_interval(t);
        Ok(())
    }

    pub fn clauses(&self) -> &[String] {
        &self.clauses
    }
}
