//! Where the exporter's numbers come from: the cheap per-scrape read
//! (ctnetlink GET_STATS + GET_STATS_CPU, /proc/sys), and the background
//! threads (count samples for the trend, the rate-limited breakdown dump,
//! per-namespace counts, the /dev/kmsg follower) whose results scrapes read
//! from [`Shared`]. Each source fails on its own. With ctnetlink events
//! the breakdown and the forecast come from the event feed ([`live`]);
//! without them (nf_conntrack_events=0, or the subscription fails)
//! consecutive breakdown dumps give the forecast's arrivals (ids new in the
//! second dump, `ctcore::forecast::dumps`): [`ForecastSource`] says which.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ctcore::workload::AddressBook;
use cthost::Host;
use cthost::source::Root;
use ctmodel::{Breakdown, Filter};

use ctcore::counters::Counters;

use super::live;
use super::metrics::{BreakdownView, Snapshot, Source, Table};
use crate::commands::forecast;
use ctcore::facts::NetnsCount;
use ctcore::forecast::{dumps, estimate};

pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const NF: &str = "/proc/sys/net/netfilter";

#[derive(Debug, Clone)]
pub struct Config {
    pub breakdown_interval: Duration,
    pub breakdown_max_entries: u64,
    pub top: usize,
    pub trend_window: Duration,
    pub all_netns: bool,
    pub kernel_log: bool,
    pub node_exporter_compat: bool,
    /// Per-workload series: the top N (`--workloads`; 0: none).
    pub workloads: usize,
    /// Bytes of one entry's slab object (read once at start).
    pub entry_bytes: u64,
    /// The system the numbers come from (a fake tree in the golden test).
    pub host: Host,
    /// Length of one forecast window on events (see [`live`]).
    pub forecast_window: Duration,
    /// Events when they can be subscribed (auto), never (dumps), or only
    /// (events: no fallback).
    pub source: forecast::SourceArg,
}

/// Where the forecast comes from, chosen at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForecastSource {
    Events,
    Dumps,
}

impl ForecastSource {
    pub fn label(self) -> &'static str {
        match self {
            ForecastSource::Events => "events",
            ForecastSource::Dumps => "dumps",
        }
    }
}

#[derive(Debug, Default)]
struct Cached {
    breakdown: Option<(Instant, BreakdownView)>,
    breakdown_ok: Option<bool>,
    breakdown_seconds: Option<f64>,
    /// The last breakdown dump's ids and when it was taken.
    dump_ids: Option<(Instant, dumps::Ids)>,
    /// Arrivals per class between the last two breakdown dumps, and the
    /// seconds between them.
    arrivals: Option<(f64, BTreeMap<ctmodel::flows::ClassKey, dumps::DumpClass>)>,
    samples: VecDeque<(Instant, f64)>,
    kmsg: Option<BTreeMap<String, u64>>,
    kmsg_ok: Option<bool>,
    netns: Option<Vec<NetnsCount>>,
    netns_seconds: Option<f64>,
    /// The eBPF conntrack maps: when counted, what, why not, and how long
    /// the count took. Refreshed with the breakdown (walking 500,000 keys
    /// takes a fraction of a second: never once per scrape).
    bpf: Option<BpfCache>,
    /// The per-workload series of the last breakdown dump.
    workloads: Option<super::workloads::View>,
    /// What the event feed publishes (with events).
    live: live::Published,
}

#[derive(Debug)]
struct BpfCache {
    at: Instant,
    maps: Vec<ctcore::bpf::BpfMap>,
    errors: usize,
    seconds: f64,
}

/// State the background threads write and scrapes read.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    cached: Mutex<Cached>,
    /// Set once by [`Shared::start`] (None over a tree, or before it).
    source: std::sync::OnceLock<ForecastSource>,
    /// The drift status and when it was read: persisted files change
    /// rarely, and reading them (about 140 opens) on every scrape made 100
    /// concurrent scrapes queue behind each other's file reads.
    drift: Mutex<Option<(Instant, DriftStatus)>>,
}

/// Each drift key and whether its live value differs from the persisted one.
type DriftStatus = Vec<(String, bool)>;

/// How long one read of the drift status serves scrapes.
const DRIFT_TTL: Duration = Duration::from_secs(5);

/// Bytes of one conntrack entry: the slab object (/proc/slabinfo, needs
/// root) or cthost's estimate.
pub fn entry_bytes(root: &Root) -> u64 {
    root.read("/proc/slabinfo", "root")
        .ok()
        .and_then(|t| cthost::slab::parse_slabinfo(&t))
        .map_or(cthost::diagnose::ESTIMATED_ENTRY_BYTES, |s| s.objsize)
}

/// The cheap read: count and max (GET_STATS), CPU sums (GET_STATS_CPU),
/// buckets (/proc/sys). Over a fake tree (no kernel), the count and the
/// counters come from its /proc files. Errors only when the count cannot
/// be read.
pub fn read_table(host: &Host, entry_bytes: u64) -> Result<Table, String> {
    let root = host.root();
    let sysctl = |name: &str| root.read_u64(&format!("{NF}/{name}"), "").ok();
    let (entries, max, cpu) = if host.has_kernel() {
        let mut ct = host.conntrack().map_err(|e| e.to_string())?;
        let g = ct.stats().map_err(|e| e.to_string())?;
        let cpu = ct.stats_cpu().ok().map(|c| Counters::sum(&c));
        (u64::from(g.entries), g.max_entries.map(u64::from), cpu)
    } else {
        let entries = tree_count(root).map_err(|e| e.to_string())?;
        let cpu = cthost::gather::counters_proc(root)
            .ok()
            .map(|c| Counters::from_named(c.values.iter().map(|(k, v)| (k.as_str(), *v))));
        (entries, None, cpu)
    };
    Ok(Table {
        entries,
        max: max.or_else(|| sysctl("nf_conntrack_max")),
        buckets: sysctl("nf_conntrack_buckets"),
        entry_bytes,
        cpu,
    })
}

/// A tree's count (no kernel to ask): its nf_conntrack_count.
fn tree_count(root: &Root) -> Result<u64, cthost::source::Unreadable> {
    root.read_u64(&format!("{NF}/nf_conntrack_count"), "")
}

/// The count alone, for the trend sampler (GET_STATS, no per-CPU stats).
fn read_count(host: &Host) -> Option<u64> {
    if host.has_kernel() {
        let g = host.conntrack().and_then(|mut c| c.stats()).ok()?;
        Some(u64::from(g.entries))
    } else {
        tree_count(host.root()).ok()
    }
}

fn view(b: &Breakdown, top: usize, book: Option<&AddressBook>) -> BreakdownView {
    BreakdownView {
        by_state: b
            .tcp_state()
            .into_iter()
            .map(|(s, n)| ("tcp".to_string(), s, n))
            .collect(),
        by_l4: b.l4(),
        assured: b.assured,
        unreplied: b.unreplied,
        top_sources: if top == 0 {
            Vec::new()
        } else {
            b.top_src(top)
                .into_iter()
                .enumerate()
                .map(|(i, (a, n))| (i + 1, Source::new(a.to_string(), book), n))
                .collect()
        },
    }
}

/// One full dump folded into a breakdown and into the arrivals since the
/// previous dump's ids (this dump's ids are returned for the next one).
fn breakdown_and_arrivals(
    host: &Host,
    top: usize,
    previous: &dumps::Ids,
    book: Option<&AddressBook>,
) -> Result<(BreakdownView, dumps::Arrivals, super::workloads::Tally), String> {
    let mut b = Breakdown::new(Filter::default());
    let mut a = dumps::Arrivals::default();
    let mut w = super::workloads::Tally::default();
    cthost::table::for_each_entry(host, |e| {
        b.add(e);
        a.add(previous, e);
        if let Some(book) = book {
            w.add(book, previous, e);
        }
    })
    .map_err(|e| e.to_string())?;
    Ok((view(&b, top, book), a, w))
}

/// Every namespace's count (cthost's one reader); a namespace that cannot
/// be read is said on stderr the first time, then only shows no series.
fn netns_rows(host: &Host, warned: &mut BTreeSet<u64>) -> Vec<NetnsCount> {
    let root = host.root();
    let all = cthost::namespaces::list(root);
    let init = cthost::namespaces::init_inode(root);
    let mut rows = cthost::counts::count_all(host, &all, init);
    // Each row's effective limit, as check's --all-netns rows have it.
    ctcore::netns_max::judge(&mut rows, init, None);
    for r in &rows {
        if let Some(e) = &r.error
            && warned.len() < MAX_KMSG_NETNS
            && warned.insert(r.inode)
        {
            eprintln!(
                "ctdoctor: warning: netns {} ({}): no per-netns series: {e}",
                r.inode, r.name
            );
        }
    }
    rows
}

impl Shared {
    pub fn new(config: Config) -> Arc<Self> {
        Arc::new(Self {
            config,
            cached: Mutex::new(Cached::default()),
            source: std::sync::OnceLock::new(),
            drift: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Cached> {
        // A panicking writer leaves plain data behind: keep serving it.
        self.cached.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Let the event feed publish (its thread's only way in).
    pub fn publish(&self, f: impl FnOnce(&mut live::Published)) {
        f(&mut self.lock().live);
    }

    fn events_on(&self) -> bool {
        self.source.get() == Some(&ForecastSource::Events)
    }

    /// Choose the forecast's source: subscribe to events (auto or events)
    /// unless nf_conntrack_events is 0; the reason for dumps is returned.
    fn choose_source(&self) -> Result<Option<ctnetlink::Events>, String> {
        use forecast::SourceArg;
        let host = &self.config.host;
        if !host.has_kernel() {
            return Ok(None);
        }
        let events = match (
            self.config.source,
            cthost::gather::events_setting(host.root()),
        ) {
            (SourceArg::Dumps, _) => Err("--source dumps".to_string()),
            (_, Some(0)) => Err("net.netfilter.nf_conntrack_events is 0".to_string()),
            _ => crate::feed::Feed::subscribe(host)
                .map_err(|e| format!("subscribing to ctnetlink events failed: {e}")),
        };
        match events {
            Ok(ev) => {
                let _ = self.source.set(ForecastSource::Events);
                Ok(Some(ev))
            }
            Err(why) if self.config.source == SourceArg::Events => Err(why),
            Err(why) => {
                let _ = self.source.set(ForecastSource::Dumps);
                eprintln!(
                    "ctdoctor: forecast and breakdown from dumps every --breakdown-interval ({why})"
                );
                Ok(None)
            }
        }
    }

    /// Start the background threads (detached: they end with the process).
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        let events = self
            .choose_source()
            .map_err(|why| std::io::Error::other(format!("--source events: {why}")))?;
        if let Some(ev) = events {
            let me = Arc::clone(self);
            std::thread::Builder::new()
                .name("ctdoctor-events".into())
                .spawn(move || live::run(me, ev))?;
        }
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("ctdoctor-sampler".into())
            .spawn(move || me.sampler())?;
        if self.config.kernel_log {
            let me = Arc::clone(self);
            std::thread::Builder::new()
                .name("ctdoctor-kmsg".into())
                .spawn(move || me.follow_kmsg())?;
        }
        Ok(())
    }

    /// Every 10 s: a count sample; every --breakdown-interval: the
    /// breakdown (unless above --breakdown-max-entries) and namespaces.
    fn sampler(&self) {
        let mut last_breakdown: Option<Instant> = None;
        let mut warned = BTreeSet::new();
        loop {
            let now = Instant::now();
            let count = read_count(&self.config.host);
            if let Some(n) = count {
                let mut c = self.lock();
                c.samples.push_back((now, n as f64));
                while c
                    .samples
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > self.config.trend_window)
                {
                    c.samples.pop_front();
                }
            }
            if last_breakdown
                .is_none_or(|t| now.duration_since(t) >= self.config.breakdown_interval)
            {
                last_breakdown = Some(now);
                // The maps first: a quick count, not behind a long dump.
                self.refresh_bpf();
                // With events the tracker gives the breakdown; a dump
                // only for the top sources by entries (--top) and the
                // per-workload series on a host with containers.
                let book = super::workloads::book(&self.config.host, self.config.workloads);
                let containers = book.as_ref().is_some_and(|b| !b.is_empty());
                if !self.events_on() || self.config.top > 0 || containers {
                    self.refresh_breakdown(count, book);
                } else {
                    // No dump now: a view from an older one (before the
                    // feed was on, or while containers ran) would stay.
                    self.lock().workloads = None;
                }
                if self.config.all_netns {
                    let t = Instant::now();
                    let rows = netns_rows(&self.config.host, &mut warned);
                    let mut c = self.lock();
                    c.netns = Some(rows);
                    c.netns_seconds = Some(t.elapsed().as_secs_f64());
                }
            }
            std::thread::sleep(SAMPLE_EVERY.saturating_sub(now.elapsed()));
        }
    }

    /// Count the eBPF conntrack maps into the cache (the sampler's, so one
    /// count at a time; scrapes serve the cached one with its age).
    pub fn refresh_bpf(&self) {
        let t = Instant::now();
        let (maps, errors) = cthost::bpf::conntrack_maps(&self.config.host);
        let seconds = t.elapsed().as_secs_f64();
        self.lock().bpf = Some(BpfCache {
            at: Instant::now(),
            maps,
            errors: errors.len(),
            seconds,
        });
    }

    /// Refresh the cached breakdown; above the entry cap it is dropped
    /// (its age becomes +Inf) so a scrape never adds a full dump to a
    /// full table.
    pub fn refresh_breakdown(&self, count: Option<u64>, book: Option<AddressBook>) {
        if count.is_none_or(|n| n > self.config.breakdown_max_entries) {
            let mut c = self.lock();
            c.breakdown = None;
            c.breakdown_ok = Some(count.is_some());
            c.dump_ids = None;
            c.arrivals = None;
            c.workloads = None;
            return;
        }
        let previous = self.lock().dump_ids.take();
        let t = Instant::now();
        let empty = dumps::Ids::default();
        let r = breakdown_and_arrivals(
            &self.config.host,
            self.config.top,
            previous.as_ref().map_or(&empty, |(_, ids)| ids),
            book.as_ref(),
        );
        let secs = t.elapsed().as_secs_f64();
        let mut c = self.lock();
        c.breakdown_seconds = Some(secs);
        match r {
            Ok((v, a, w)) => {
                c.breakdown = Some((Instant::now(), v));
                let secs = previous
                    .as_ref()
                    .map(|(at, _)| t.duration_since(*at).as_secs_f64());
                c.workloads = book.map(|b| w.view(&b, secs, self.config.workloads));
                c.breakdown_ok = Some(true);
                let (classes, ids) = a.finish(previous.as_ref().map_or(&empty, |(_, ids)| ids));
                // The dump's start: both ends are measured the same way.
                c.arrivals = previous.map(|(at, _)| (t.duration_since(at).as_secs_f64(), classes));
                c.dump_ids = Some((t, ids));
            }
            Err(_) => {
                c.breakdown = None;
                c.breakdown_ok = Some(false);
                c.arrivals = None;
                c.workloads = None;
            }
        }
    }

    /// Follow /dev/kmsg: the records still in the ring buffer are counted
    /// once at start, then new ones as they come (one record per read).
    fn follow_kmsg(&self) {
        let f = match self.config.host.kmsg(cthost::kmsg::From::Start, true) {
            Ok(f) => f,
            Err(_) => {
                self.lock().kmsg_ok = Some(false);
                return;
            }
        };
        {
            let mut c = self.lock();
            c.kmsg = Some(BTreeMap::new());
            c.kmsg_ok = Some(true);
        }
        let r = f.follow(|netns, n| {
            let netns = netns.map(|i| i.to_string()).unwrap_or_default();
            let mut c = self.lock();
            add_bounded(c.kmsg.get_or_insert_with(BTreeMap::new), netns, n);
        });
        if r.is_err() {
            self.lock().kmsg_ok = Some(false);
        }
    }

    /// The drift status, read at most once per [`DRIFT_TTL`] (files and
    /// /proc only, outside the main lock; concurrent scrapes wait for one
    /// read instead of each reading).
    fn drift(&self) -> DriftStatus {
        let mut d = self.drift.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, v)) = d.as_ref()
            && at.elapsed() < DRIFT_TTL
        {
            return v.clone();
        }
        let v: DriftStatus = cthost::drift::read_here(self.config.host.root())
            .0
            .status()
            .into_iter()
            .map(|(k, d)| (k.to_string(), d))
            .collect();
        *d = Some((Instant::now(), v.clone()));
        v
    }

    /// Everything one scrape shows: the cheap read now, the rest cached.
    pub fn snapshot(&self) -> Snapshot {
        let t = Instant::now();
        let table = read_table(&self.config.host, self.config.entry_bytes);
        let stats_seconds = t.elapsed().as_secs_f64();
        let drift = self.drift();
        let c = self.lock();
        let mut up = vec![("stats".to_string(), table.is_ok())];
        let mut durations = vec![("stats".to_string(), stats_seconds)];
        // Only where Cilium or Calico pins maps: a plain host has no series.
        let bpf = c
            .bpf
            .as_ref()
            .filter(|b| !b.maps.is_empty() || b.errors > 0);
        if let Some(b) = bpf {
            up.push(("bpf".into(), b.errors == 0));
            durations.push(("bpf".into(), b.seconds));
        }
        if let Some(ok) = c.breakdown_ok {
            up.push(("breakdown".into(), ok));
        }
        let events = self.events_on();
        if events {
            up.push(("events".into(), c.live.up));
        }
        if let Some(s) = c.breakdown_seconds {
            durations.push(("breakdown".into(), s));
        }
        if let Some(ok) = c.kmsg_ok {
            up.push(("kernel_log".into(), ok));
        }
        if self.config.all_netns {
            // Up when some namespace could be counted (not when every one failed).
            let counted = c
                .netns
                .as_ref()
                .is_some_and(|rows| rows.iter().any(|r| r.error.is_none()));
            up.push(("netns".into(), counted));
        }
        if let Some(s) = c.netns_seconds {
            durations.push(("netns".into(), s));
        }
        let now = Instant::now();
        let samples: Vec<(f64, f64)> = c
            .samples
            .iter()
            .map(|(at, n)| (-now.duration_since(*at).as_secs_f64(), *n))
            .collect();
        // The dump-based figures are published only without events (with
        // them, the feed publishes forecast's verdict): not computed at all
        // then, since they read the timeouts from /proc under the lock.
        let prediction = table
            .as_ref()
            .ok()
            .and_then(|t| t.max.map(|m| (t.entries, m)))
            .filter(|_| !events);
        // With two breakdown dumps: forecast's estimate (the steady state
        // decides whether the table fills at all, the trend when); before
        // them, or above --breakdown-max-entries: the trend alone.
        let forecast = match (prediction, &c.arrivals) {
            (Some((count, max)), Some((window, classes))) if *window > 0.0 => {
                Some(estimate::estimate(&estimate::Inputs {
                    window: *window,
                    classes: estimate::class_inputs(
                        classes.clone(),
                        &forecast::timeouts(self.config.host.root()),
                        cthost::plan::Profile::Web,
                    ),
                    count,
                    max,
                    samples: samples.clone(),
                    target_share: estimate::DEFAULT_TARGET_SHARE,
                }))
            }
            _ => None,
        };
        // The trend alone: the two-dump steady state charges every new
        // ESTABLISHED id the 5-day timeout, so on a steady web load it reads
        // millions; as the verdict it fired false critical alerts (review
        // of issue 12). It is published for what it is, never as a verdict.
        let time_to_full = prediction.map(|(_, max)| estimate::time_to_full(&samples, max as f64));
        // With events: the tracker's breakdown (the dump's top sources
        // beside it with --top), and forecast's verdict of the last window.
        let breakdown = if events {
            c.live.breakdown.as_ref().map(|(at, v)| {
                let mut v = v.clone();
                if let Some((_, dumped)) = &c.breakdown {
                    v.top_sources.clone_from(&dumped.top_sources);
                }
                (*at, v)
            })
        } else {
            c.breakdown.clone()
        };
        Snapshot {
            table: table.ok(),
            breakdown_age: breakdown
                .as_ref()
                .map_or(f64::INFINITY, |(at, _)| at.elapsed().as_secs_f64()),
            breakdown: breakdown.map(|(_, v)| v),
            kernel_log: c
                .kmsg
                .as_ref()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect()),
            netns: c.netns.clone(),
            forecast_source: self.source.get().map(|s| s.label()),
            forecast: c.live.forecast.clone().filter(|_| events),
            time_to_full,
            steady_state: forecast.map(|f| f.steady_state),
            drift,
            durations,
            up,
            node_exporter_compat: self.config.node_exporter_compat,
            bpf_maps: bpf.map(|b| b.maps.clone()).unwrap_or_default(),
            bpf_age: bpf.map(|b| b.at.elapsed().as_secs_f64()),
            workloads: c.workloads.clone(),
        }
    }
}

/// Distinct `netns` labels of the kernel-log counter: namespaces come and
/// go (pods), so over a long run their inodes are unbounded; past this
/// many, further ones are counted under `netns="other"`.
pub const MAX_KMSG_NETNS: usize = 256;

/// Count `n` lines for `netns`, keeping at most [`MAX_KMSG_NETNS`] labels
/// plus "other".
pub fn add_bounded(map: &mut BTreeMap<String, u64>, netns: String, n: u64) {
    let key = if map.contains_key(&netns) || map.len() < MAX_KMSG_NETNS {
        netns
    } else {
        "other".to_string()
    };
    *map.entry(key).or_insert(0) += n;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_log_labels_are_bounded() {
        let mut m = BTreeMap::new();
        for i in 0..(MAX_KMSG_NETNS as u64 + 50) {
            add_bounded(&mut m, i.to_string(), 1);
        }
        add_bounded(&mut m, "0".to_string(), 1);
        assert_eq!(m.len(), MAX_KMSG_NETNS + 1);
        assert_eq!(m["other"], 50);
        assert_eq!(m["0"], 2);
    }
}
