//! The exporter's metric families: a pure mapping from one [`Snapshot`]
//! (values already read) to a prometheus-client registry, and its encoding
//! as Prometheus text 0.0.4 or OpenMetrics. No I/O here.

use ctcore::facts::NetnsCount;
use std::sync::atomic::AtomicU64;

use ctcore::counters::Counters;
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;
type G = Gauge<f64, AtomicU64>;
type C = Counter<u64>;

/// The cheap part, read on every scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub entries: u64,
    pub max: Option<u64>,
    pub buckets: Option<u64>,
    /// Slab object size of one entry (/proc/slabinfo, or the estimate).
    pub entry_bytes: u64,
    pub cpu: Option<Counters>,
}

/// The cached breakdown of the last full dump.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BreakdownView {
    /// (l4, state, count); state is "" for protocols without one.
    pub by_state: Vec<(String, String, u64)>,
    pub by_l4: Vec<(String, u64)>,
    pub assured: u64,
    pub unreplied: u64,
    /// (rank from 1, source, count), at most --top rows.
    pub top_sources: Vec<(usize, Source, u64)>,
}

/// A ranked source address and the workload (container or pod) that owns
/// it, when the address book names one: its series get a `workload` label.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Source {
    pub address: String,
    pub workload: Option<String>,
}

impl Source {
    /// `address` (any text: "other" for the rest), owned by whoever the
    /// book says.
    pub fn new(address: String, book: Option<&ctcore::workload::AddressBook>) -> Self {
        let workload = address
            .parse()
            .ok()
            .and_then(|ip| book?.get(ip))
            .map(|w| w.name.clone());
        Self { address, workload }
    }

    /// The series' labels: `key` = the address, and `workload` when owned.
    fn labels<'a>(&'a self, key: &'a str, mut first: Vec<(&'a str, &'a str)>) -> Labels {
        first.push((key, &self.address));
        if let Some(w) = &self.workload {
            first.push(("workload", w));
        }
        labels(&first)
    }
}

/// Top creators by new flows per second: at most this many sources, the
/// rest summed under `source="other"`.
pub const TOP_CREATORS: usize = 10;

/// What the exporter publishes of one forecast window on events: forecast's
/// own figures (`ctcore::forecast::estimate`, the `forecast` command's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForecastView {
    /// Seconds the window covered.
    pub window_s: f64,
    /// The verdict's time to full; +Inf when the count levels off below
    /// max, max is 0 (unlimited), or no rate fills it.
    pub time_to_full: f64,
    pub steady_state: f64,
    /// (class, steady-state entries, evidence) per `proto/STATE` class.
    pub classes: Vec<(String, f64, &'static str)>,
    /// New flows per second (class changes excluded).
    pub new_per_s: f64,
    /// (source address or "other", new flows/s); None when the window's
    /// events were incomplete (lost, just enabled): no rate is taken then.
    pub creators: Option<Vec<(Source, f64)>>,
}

/// The new flows of one window, for the top creators.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Created {
    /// (source, new flows), most first, as many as [`TOP_CREATORS`].
    pub top: Vec<(Source, u64)>,
    /// All the window's new flows.
    pub total: u64,
    pub seconds: f64,
}

impl ForecastView {
    /// The view of forecast's verdict; `created`: the window's new flows,
    /// or None for a partial window.
    pub fn of(f: &ctcore::forecast::estimate::Forecast, created: Option<Created>) -> Self {
        let creators = created.map(
            |Created {
                 top,
                 total,
                 seconds: secs,
             }| {
                let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
                let shown: u64 = top.iter().map(|(_, n)| n).sum();
                let mut rows: Vec<(Source, f64)> = top
                    .into_iter()
                    .take(TOP_CREATORS)
                    .map(|(a, n)| (a, per_s(n)))
                    .collect();
                rows.push((
                    Source::new("other".into(), None),
                    per_s(total.saturating_sub(shown)),
                ));
                rows
            },
        );
        Self {
            window_s: f.window_s,
            time_to_full: f.time_to_full_s.unwrap_or(f64::INFINITY),
            steady_state: f.steady_state,
            classes: f
                .classes
                .iter()
                .map(|c| (c.class.to_string(), c.steady_state, c.evidence.as_str()))
                .collect(),
            new_per_s: f.arrivals_per_s,
            creators,
        }
    }
}

/// Everything one scrape shows; each source may be missing on its own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub table: Option<Table>,
    pub breakdown: Option<BreakdownView>,
    /// Seconds since the cached breakdown was taken; +Inf when none exists
    /// (never taken yet, skipped above --breakdown-max-entries, or failed).
    pub breakdown_age: f64,
    /// table-full lines by netns label ("" for lines naming none).
    pub kernel_log: Option<Vec<(String, u64)>>,
    /// Per-namespace counts (`--all-netns`); an unreadable one has no
    /// series (the sampler says why on stderr, once).
    pub netns: Option<Vec<NetnsCount>>,
    /// Where the forecast comes from: "events" (the live feed) or "dumps"
    /// (the fallback when events cannot be subscribed); None over a tree.
    pub forecast_source: Option<&'static str>,
    /// With events: the last complete forecast window (None before the
    /// first one ends, or when events went off: the families are absent).
    pub forecast: Option<ForecastView>,
    /// With dumps: the count's trend (the verdict needs events).
    pub time_to_full: Option<f64>,
    /// With dumps: forecast's steady-state entries from the last two
    /// breakdown dumps.
    pub steady_state: Option<f64>,
    /// (key, live differs from the persisted/applied value) for the keys
    /// of `ctcore::drift::keys` that have one (issue 20).
    pub drift: Vec<(String, bool)>,
    /// (part, seconds) of this scrape and of the background work.
    pub durations: Vec<(String, f64)>,
    /// (source, up) for every source this exporter reads.
    pub up: Vec<(String, bool)>,
    pub node_exporter_compat: bool,
    /// Cilium and Calico eBPF conntrack maps (known pin names only, so the
    /// `map` label is bounded).
    pub bpf_maps: Vec<ctcore::bpf::BpfMap>,
    /// Seconds since the maps were counted (refreshed with the breakdown);
    /// `None` where no map is pinned (no series).
    pub bpf_age: Option<f64>,
    /// Per-workload series (`--workloads N`, `super::workloads`).
    pub workloads: Option<super::workloads::View>,
}

fn gauge(reg: &mut Registry, name: &str, help: &str, v: f64) {
    let g = G::default();
    g.set(v);
    reg.register(name, help, g);
}

fn counter(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c = C::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// Kernel stat counters: (metric stem without ctdoctor_stat_ and _total,
/// node_exporter stem, help, value).
fn stat_list(c: &Counters) -> [(&'static str, &'static str, Option<u64>); 9] {
    [
        (
            "drop",
            "packets dropped because no conntrack entry could be allocated (table full) or a helper dropped them",
            c.drop,
        ),
        (
            "early_drop",
            "entries evicted early (not assured) to make room for new ones when the table was full",
            c.early_drop,
        ),
        (
            "insert_failed",
            "entries whose insertion failed (clash with an existing entry)",
            c.insert_failed,
        ),
        ("invalid", "packets that could not be tracked", c.invalid),
        (
            "search_restart",
            "table lookups restarted because of a hash resize or a nulls-list move",
            c.search_restart,
        ),
        (
            "clash_resolve",
            "insert clashes resolved by reusing the existing entry",
            c.clash_resolve,
        ),
        (
            "chaintoolong",
            "inserts refused because the hash chain was too long",
            c.chaintoolong,
        ),
        ("found", "searched entries that were found", c.found),
        ("insert", "entries inserted into the table", c.insert),
    ]
}

/// Build the registry for one scrape.
pub fn registry(s: &Snapshot) -> Registry {
    let mut reg = Registry::default();
    let up = Family::<Labels, G>::default();
    for (source, ok) in &s.up {
        up.get_or_create(&labels(&[("source", source)]))
            .set(if *ok { 1.0 } else { 0.0 });
    }
    reg.register(
        "ctdoctor_up",
        "Whether the last read of each source succeeded (1) or failed (0)",
        up,
    );
    if let Some(t) = &s.table {
        gauge(
            &mut reg,
            "ctdoctor_entries",
            "Conntrack entries in this network namespace (ctnetlink GET_STATS; nf_conntrack_count under --root)",
            t.entries as f64,
        );
        if let Some(max) = t.max {
            gauge(
                &mut reg,
                "ctdoctor_entries_limit",
                "nf_conntrack_max: the most entries the table may hold",
                max as f64,
            );
            let ratio = if max > 0 {
                t.entries as f64 / max as f64
            } else {
                0.0
            };
            gauge(
                &mut reg,
                "ctdoctor_fill_ratio",
                "entries / entries_limit (0..1)",
                ratio,
            );
        }
        if let Some(b) = t.buckets {
            gauge(
                &mut reg,
                "ctdoctor_buckets",
                "Hash table buckets (nf_conntrack_buckets)",
                b as f64,
            );
            let mem = |n: u64| cthost::plan::sizing::table_memory(n, b, t.entry_bytes) as f64;
            gauge(
                &mut reg,
                "ctdoctor_memory_bytes",
                "Table memory now: slab object size x entries + buckets x 8",
                mem(t.entries),
            );
            // nf_conntrack_max 0 is no limit: no memory bound either.
            if let Some(max) = t.max.filter(|&m| m > 0) {
                gauge(
                    &mut reg,
                    "ctdoctor_memory_limit_bytes",
                    "Table memory at entries_limit: slab object size x max + buckets x 8",
                    mem(max),
                );
            }
        }
        if let Some(c) = &t.cpu {
            for (stem, help, v) in stat_list(c) {
                if let Some(v) = v {
                    counter(
                        &mut reg,
                        &format!("ctdoctor_stat_{stem}"),
                        &format!("Kernel conntrack stat, summed over CPUs: {help}"),
                        v,
                    );
                }
            }
        }
        if s.node_exporter_compat {
            node_exporter(&mut reg, t);
        }
    }
    if let Some(b) = &s.breakdown {
        let f = Family::<Labels, G>::default();
        for (l4, state, n) in &b.by_state {
            f.get_or_create(&labels(&[("l4", l4), ("state", state)]))
                .set(*n as f64);
        }
        reg.register(
            "ctdoctor_entries_by_state",
            "Entries by L4 protocol and state (cached breakdown)",
            f,
        );
        let f = Family::<Labels, G>::default();
        f.get_or_create(&labels(&[("flag", "assured")]))
            .set(b.assured as f64);
        f.get_or_create(&labels(&[("flag", "unreplied")]))
            .set(b.unreplied as f64);
        reg.register(
            "ctdoctor_entries_by_flag",
            "Entries with the ASSURED or UNREPLIED status flag (cached breakdown)",
            f,
        );
        let f = Family::<Labels, G>::default();
        for (l4, n) in &b.by_l4 {
            f.get_or_create(&labels(&[("l4", l4)])).set(*n as f64);
        }
        reg.register(
            "ctdoctor_entries_by_l4",
            "Entries by L4 protocol (cached breakdown)",
            f,
        );
        if !b.top_sources.is_empty() {
            let f = Family::<Labels, G>::default();
            for (rank, source, n) in &b.top_sources {
                let rank = rank.to_string();
                f.get_or_create(&source.labels("address", vec![("rank", &rank)]))
                    .set(*n as f64);
            }
            reg.register(
                "ctdoctor_top_source_entries",
                "Entries of the sources with the most entries, rank 1 first (--top N)",
                f,
            );
        }
    }
    if let Some(w) = &s.workloads {
        super::workloads::register(&mut reg, w);
    }
    gauge(
        &mut reg,
        "ctdoctor_breakdown_age_seconds",
        "Age of the cached breakdown; +Inf when there is none (not yet taken, failed, or skipped above --breakdown-max-entries)",
        s.breakdown_age,
    );
    if let Some(lines) = &s.kernel_log {
        let f = Family::<Labels, C>::default();
        for (ns, n) in lines {
            f.get_or_create(&labels(&[("netns", ns)])).inc_by(*n);
        }
        reg.register(
            "ctdoctor_kernel_log_table_full",
            "\"table full, dropping packet\" lines in /dev/kmsg (the ring buffer at start, then followed), by the netns inode the line names (\"\" when none; \"other\" past 256 namespaces)",
            f,
        );
    }
    if let Some(rows) = &s.netns {
        let e = Family::<Labels, G>::default();
        let d = Family::<Labels, C>::default();
        let m = Family::<Labels, G>::default();
        for r in rows {
            // The container's image beside its owner (issue 18): one
            // value per namespace, so no more series than namespaces.
            let image = r
                .container
                .as_ref()
                .and_then(|c| c.image.as_deref())
                .unwrap_or("");
            let l = labels(&[
                ("netns", &r.inode.to_string()),
                ("name", &r.name),
                ("owner", &r.owner),
                ("image", image),
            ]);
            if let Some(n) = r.count {
                e.get_or_create(&l).set(n as f64);
            }
            if let Some(n) = r.drop {
                d.get_or_create(&l).inc_by(n);
            }
            if let Some(n) = r.max {
                m.get_or_create(&l).set(n as f64);
            }
        }
        reg.register(
            "ctdoctor_netns_entries",
            "Conntrack entries per network namespace (--all-netns), with its owner and, for a container, its image",
            e,
        );
        reg.register(
            "ctdoctor_netns_stat_drop",
            "Kernel stat drop per network namespace, summed over CPUs (--all-netns)",
            d,
        );
        reg.register(
            "ctdoctor_netns_entries_limit",
            "Effective nf_conntrack_max of each network namespace (--all-netns): min(its own, the initial namespace's) on kernels with a per-namespace max, else the initial namespace's",
            m,
        );
    }
    if !s.drift.is_empty() {
        let fam = Family::<Labels, G>::default();
        for (key, drifted) in &s.drift {
            fam.get_or_create(&labels(&[("key", key)]))
                .set(if *drifted { 1.0 } else { 0.0 });
        }
        reg.register(
            "ctdoctor_config_drift",
            "1 when the live value of key differs from the persisted one (sysctl.d, modprobe.d) or from the last ctdoctor apply, 0 when it matches; only keys that have one",
            fam,
        );
    }
    forecast_families(&mut reg, s);
    if !s.bpf_maps.is_empty() {
        let entries = Family::<Labels, G>::default();
        let max = Family::<Labels, G>::default();
        for m in &s.bpf_maps {
            let l = labels(&[
                ("map", &m.name),
                ("datapath", &m.datapath.label().to_lowercase()),
            ]);
            entries.get_or_create(&l).set(m.entries as f64);
            max.get_or_create(&l).set(m.max_entries as f64);
        }
        reg.register(
            "ctdoctor_bpf_ct_entries",
            "Keys in a Cilium or Calico eBPF conntrack map pinned under bpffs",
            entries,
        );
        reg.register(
            "ctdoctor_bpf_ct_max_entries",
            "max_entries of a Cilium or Calico eBPF conntrack map pinned under bpffs",
            max,
        );
    }
    if let Some(age) = s.bpf_age {
        gauge(
            &mut reg,
            "ctdoctor_bpf_ct_age_seconds",
            "Age of the cached eBPF conntrack map counts (counted in the background every --breakdown-interval, not per scrape)",
            age,
        );
    }
    let f = Family::<Labels, G>::default();
    for (part, secs) in &s.durations {
        f.get_or_create(&labels(&[("part", part)])).set(*secs);
    }
    reg.register(
        "ctdoctor_scrape_duration_seconds",
        "Time spent reading each source (breakdown: the last background refresh)",
        f,
    );
    reg
}

const TTF_HELP: &str = "Seconds until entries reach entries_limit: with events (ctdoctor_forecast_source{source=\"events\"}) forecast's verdict over the last --forecast-window, +Inf when the count levels off or max is 0; with dumps the least-squares trend of the count over --trend-window, +Inf when flat or falling";
const STEADY_HELP: &str = "Entries once arrivals and departures balance (Little's law per protocol/state): with events forecast's estimate over the last --forecast-window, with dumps from the last two breakdown dumps; a floor when some class's evidence is unknown";

/// The forecast's families: the source in use, then its figures.
fn forecast_families(reg: &mut Registry, s: &Snapshot) {
    if let Some(source) = s.forecast_source {
        let f = Family::<Labels, G>::default();
        f.get_or_create(&labels(&[("source", source)])).set(1.0);
        reg.register(
            "ctdoctor_forecast_source",
            "Where the forecast comes from: events (ctnetlink events into the tracker watch and forecast use) or dumps (two breakdown dumps: events cannot be subscribed)",
            f,
        );
    }
    if let Some(v) = &s.forecast {
        gauge(
            reg,
            "ctdoctor_time_to_full_seconds",
            TTF_HELP,
            v.time_to_full,
        );
        gauge(
            reg,
            "ctdoctor_forecast_steady_state_entries",
            STEADY_HELP,
            v.steady_state,
        );
        gauge(
            reg,
            "ctdoctor_forecast_window_seconds",
            "Seconds of events the published forecast covers (the last complete --forecast-window, less any part before lost events)",
            v.window_s,
        );
        let steady = Family::<Labels, G>::default();
        let evidence = Family::<Labels, G>::default();
        for (class, n, ev) in &v.classes {
            steady.get_or_create(&labels(&[("class", class)])).set(*n);
            evidence
                .get_or_create(&labels(&[("class", class), ("evidence", ev)]))
                .set(1.0);
        }
        reg.register(
            "ctdoctor_forecast_class_steady_state_entries",
            "Steady-state entries of one protocol/state class (forecast's estimate; its live count when the evidence is unknown)",
            steady,
        );
        reg.register(
            "ctdoctor_forecast_evidence",
            "1 for the evidence behind a class's time in state: measured, bounded (few exits, a tail beyond the window, capped by the timeout) or unknown (nothing left the class: its live count is the floor)",
            evidence,
        );
        gauge(
            reg,
            "ctdoctor_new_flows_per_second",
            "New flows per second over the last --forecast-window (NEW events; class changes excluded)",
            v.new_per_s,
        );
        if let Some(rows) = &v.creators {
            let f = Family::<Labels, G>::default();
            for (source, rate) in rows {
                f.get_or_create(&source.labels("source", Vec::new()))
                    .set(*rate);
            }
            reg.register(
                "ctdoctor_top_creator_new_flows_per_second",
                "New flows per second of the 10 sources that created the most over the last --forecast-window; the rest under source=\"other\"",
                f,
            );
        }
        return;
    }
    if let Some(ttf) = s.time_to_full {
        gauge(reg, "ctdoctor_time_to_full_seconds", TTF_HELP, ttf);
    }
    if let Some(n) = s.steady_state {
        gauge(
            reg,
            "ctdoctor_forecast_steady_state_entries",
            STEADY_HELP,
            n,
        );
    }
}

/// node_exporter's conntrack collector: same names, gauges, CPU sums.
fn node_exporter(reg: &mut Registry, t: &Table) {
    gauge(
        reg,
        "node_nf_conntrack_entries",
        "Number of currently allocated flow entries for connection tracking",
        t.entries as f64,
    );
    if let Some(max) = t.max {
        gauge(
            reg,
            "node_nf_conntrack_entries_limit",
            "Maximum size of connection tracking table",
            max as f64,
        );
    }
    let Some(c) = &t.cpu else { return };
    let v = |o: Option<u64>| o.unwrap_or(0) as f64;
    let rows = [
        (
            "found",
            "Number of searched entries which were successful",
            v(c.found),
        ),
        (
            "invalid",
            "Number of packets seen which can not be tracked",
            v(c.invalid),
        ),
        // The kernel stopped counting `ignore` (always 0 in
        // /proc/net/stat/nf_conntrack since 5.x; no ctnetlink attribute).
        (
            "ignore",
            "Number of packets seen which are already connected to a conntrack entry",
            0.0,
        ),
        (
            "insert",
            "Number of entries inserted into the list",
            v(c.insert),
        ),
        (
            "insert_failed",
            "Number of entries for which list insertion was attempted but failed",
            v(c.insert_failed),
        ),
        (
            "drop",
            "Number of packets dropped due to conntrack failure",
            v(c.drop),
        ),
        (
            "early_drop",
            "Number of dropped conntrack entries to make room for new ones, if maximum table size was reached",
            v(c.early_drop),
        ),
        (
            "search_restart",
            "Number of conntrack table lookups which had to be restarted due to hashtable resizes",
            v(c.search_restart),
        ),
    ];
    for (stem, help, value) in rows {
        gauge(reg, &format!("node_nf_conntrack_stat_{stem}"), help, value);
    }
}

/// Exposition format, from the scraper's Accept header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Prometheus,
    OpenMetrics,
}

impl Format {
    /// OpenMetrics only when the client lists application/openmetrics-text
    /// (Prometheus 2.42 sends it first, with text/plain as a fallback).
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a)
                if a.split(',').any(|part| {
                    let mut it = part.split(';');
                    let media = it.next().unwrap_or("").trim();
                    let q_zero = it.any(|p| {
                        p.trim()
                            .strip_prefix("q=")
                            .and_then(|q| q.parse::<f64>().ok())
                            .is_some_and(|q| q <= 0.0)
                    });
                    media.eq_ignore_ascii_case("application/openmetrics-text") && !q_zero
                }) =>
            {
                Format::OpenMetrics
            }
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// prometheus-client 0.26's OpenMetrics encoder writes infinities as
/// dtoa's `inf`; the OpenMetrics spec (and strict parsers) want `+Inf` /
/// `-Inf` (its Prometheus-text encoder already does this). Only a sample
/// line's last field is touched.
fn openmetrics_infinities(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        if line.starts_with('#') {
            out.push_str(line);
        } else if let Some(head) = line.strip_suffix(" inf") {
            out.push_str(head);
            out.push_str(" +Inf");
        } else if let Some(head) = line.strip_suffix(" -inf") {
            out.push_str(head);
            out.push_str(" -Inf");
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Encode a snapshot.
pub fn encode(s: &Snapshot, format: Format) -> Result<String, std::fmt::Error> {
    let reg = registry(s);
    let mut out = String::with_capacity(8192);
    match format {
        Format::Prometheus => prometheus_text::encode(&mut out, &reg)?,
        Format::OpenMetrics => {
            text::encode(&mut out, &reg)?;
            out = openmetrics_infinities(&out);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(drop: u32, early: u32) -> ctnetlink::CpuStats {
        ctnetlink::CpuStats {
            drop: Some(drop),
            early_drop: Some(early),
            found: Some(1),
            insert: Some(u32::MAX),
            ..Default::default()
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            table: Some(Table {
                entries: 1000,
                max: Some(4000),
                buckets: Some(1024),
                entry_bytes: 320,
                cpu: Some(Counters::sum(&[cpu(3, 5), cpu(4, 0)])),
            }),
            breakdown: Some(BreakdownView {
                by_state: vec![("tcp".into(), "ESTABLISHED".into(), 600)],
                by_l4: vec![("tcp".into(), 700), ("udp".into(), 300)],
                assured: 650,
                unreplied: 100,
                top_sources: vec![(1, Source::new("10.0.0.1".into(), None), 500)],
            }),
            breakdown_age: 3.0,
            kernel_log: Some(vec![(String::new(), 2), ("4026531840".into(), 1)]),
            netns: Some(vec![NetnsCount {
                inode: 7,
                name: "pod".into(),
                owner: "default/web-0".into(),
                container: Some(ctcore::facts::ContainerOwner {
                    runtime: "docker".into(),
                    name: Some("web".into()),
                    image: Some("nginx:1.27".into()),
                    pod: Some("web-0".into()),
                    pod_namespace: Some("default".into()),
                    ..Default::default()
                }),
                count: Some(12),
                drop: Some(9),
                sysctl_max: None,
                sysctl_mode: None,
                max: Some(4000),
                error: None,
            }]),
            forecast_source: Some("dumps"),
            forecast: None,
            time_to_full: Some(f64::INFINITY),
            steady_state: Some(1234.5),
            drift: vec![
                ("nf_conntrack_max".into(), true),
                ("hashsize".into(), false),
            ],
            durations: vec![("stats".into(), 0.001)],
            up: vec![("stats".into(), true), ("breakdown".into(), false)],
            node_exporter_compat: true,
            bpf_maps: vec![ctcore::bpf::BpfMap {
                name: "cilium_ct4_global".into(),
                datapath: ctcore::bpf::Datapath::Cilium,
                entries: 1234,
                max_entries: 524288,
            }],
            bpf_age: Some(4.0),
            workloads: None,
        }
    }

    #[test]
    fn bpf_maps_are_gauges_by_map() {
        let t = encode(&snapshot(), Format::Prometheus).expect("encodes");
        assert_eq!(
            line(&t, "ctdoctor_bpf_ct_entries{"),
            "ctdoctor_bpf_ct_entries{map=\"cilium_ct4_global\",datapath=\"cilium\"} 1234.0"
        );
        assert_eq!(
            line(&t, "ctdoctor_bpf_ct_max_entries{"),
            "ctdoctor_bpf_ct_max_entries{map=\"cilium_ct4_global\",datapath=\"cilium\"} 524288.0"
        );
        assert_eq!(
            line(&t, "ctdoctor_bpf_ct_age_seconds"),
            "ctdoctor_bpf_ct_age_seconds 4.0"
        );
        let none = encode(&Snapshot::default(), Format::Prometheus).expect("encodes");
        assert!(!none.contains("ctdoctor_bpf_ct"));
    }

    fn line<'a>(text: &'a str, start: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?} in\n{text}"))
    }

    #[test]
    fn values_map_from_stats() {
        let t = encode(&snapshot(), Format::Prometheus).expect("encodes");
        assert_eq!(line(&t, "ctdoctor_entries "), "ctdoctor_entries 1000.0");
        assert_eq!(line(&t, "ctdoctor_fill_ratio "), "ctdoctor_fill_ratio 0.25");
        // CPU sums in u64: no wrap of the kernel's per-CPU u32.
        assert_eq!(
            line(&t, "ctdoctor_stat_drop_total "),
            "ctdoctor_stat_drop_total 7"
        );
        assert_eq!(
            line(&t, "ctdoctor_stat_insert_total "),
            format!("ctdoctor_stat_insert_total {}", 2 * u64::from(u32::MAX))
        );
        assert_eq!(
            line(&t, "ctdoctor_memory_bytes "),
            format!("ctdoctor_memory_bytes {}.0", 1000 * 320 + 1024 * 8)
        );
        assert_eq!(
            line(&t, "ctdoctor_memory_limit_bytes "),
            format!("ctdoctor_memory_limit_bytes {}.0", 4000 * 320 + 1024 * 8)
        );
        assert_eq!(
            line(&t, "node_nf_conntrack_stat_early_drop "),
            "node_nf_conntrack_stat_early_drop 5.0"
        );
        assert_eq!(
            line(&t, "node_nf_conntrack_entries_limit "),
            "node_nf_conntrack_entries_limit 4000.0"
        );
        assert!(t.contains(
            "ctdoctor_netns_entries{netns=\"7\",name=\"pod\",owner=\"default/web-0\",image=\"nginx:1.27\"} 12"
        ));
        assert!(t.contains(
            "ctdoctor_netns_entries_limit{netns=\"7\",name=\"pod\",owner=\"default/web-0\",image=\"nginx:1.27\"} 4000"
        ));
        assert!(t.contains("ctdoctor_top_source_entries{rank=\"1\",address=\"10.0.0.1\"} 500"));
        assert!(t.contains("ctdoctor_up{source=\"breakdown\"} 0"));
        // Absent counters stay absent (never a false 0).
        assert!(!t.contains("ctdoctor_stat_chaintoolong_total"));
    }

    #[test]
    fn every_family_has_help_and_type() {
        let t = encode(&snapshot(), Format::Prometheus).expect("encodes");
        let types: Vec<&str> = t.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let helps = t.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types.len(), helps);
        for ty in &types {
            let name = ty.split_whitespace().nth(2).expect("name");
            let kind = ty.split_whitespace().nth(3).expect("kind");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{ty}");
        }
        // The parser Prometheus' own format follows accepts it.
        let parsed =
            prometheus_parse::Scrape::parse(t.lines().map(|l| Ok(l.to_string()))).expect("parses");
        assert!(parsed.samples.len() > 20);
    }

    #[test]
    fn help_text_ends_in_one_period() {
        // prometheus-client appends the period: a help string that has one
        // already shows "..", as the node_exporter names once did.
        let t = encode(&snapshot(), Format::Prometheus).expect("encodes");
        assert!(t.contains("# HELP node_nf_conntrack_entries "), "{t}");
        for help in t.lines().filter(|l| l.starts_with("# HELP ")) {
            assert!(help.ends_with('.') && !help.ends_with(".."), "{help}");
        }
    }

    #[test]
    fn openmetrics_has_eof_and_family_names() {
        let t = encode(&snapshot(), Format::OpenMetrics).expect("encodes");
        assert!(t.ends_with("# EOF\n"));
        assert!(t.contains("# TYPE ctdoctor_stat_drop counter"));
        assert!(t.contains("ctdoctor_stat_drop_total 7"));
        assert!(
            t.contains("ctdoctor_config_drift{key=\"nf_conntrack_max\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("ctdoctor_config_drift{key=\"hashsize\"} 0"),
            "{t}"
        );
        assert!(t.contains("ctdoctor_time_to_full_seconds +Inf\n"), "{t}");
        assert!(
            t.contains("ctdoctor_forecast_steady_state_entries 1234.5\n"),
            "{t}"
        );
        assert!(!t.contains(" inf\n"));
    }

    #[test]
    fn missing_sources_leave_their_families_out() {
        let s = Snapshot {
            breakdown_age: f64::INFINITY,
            up: vec![("stats".into(), false)],
            ..Default::default()
        };
        let t = encode(&s, Format::Prometheus).expect("encodes");
        assert!(t.contains("ctdoctor_up{source=\"stats\"} 0"));
        assert!(!t.contains("ctdoctor_entries "));
        assert!(line(&t, "ctdoctor_breakdown_age_seconds").ends_with("+Inf"));
    }

    fn view() -> ForecastView {
        ForecastView {
            window_s: 60.0,
            time_to_full: 1800.0,
            steady_state: 5200.0,
            classes: vec![
                ("tcp/ESTABLISHED".into(), 4000.0, "unknown"),
                ("udp/UNREPLIED".into(), 1200.0, "measured"),
            ],
            new_per_s: 120.0,
            creators: Some(vec![
                (Source::new("10.0.0.1".into(), None), 100.0),
                (Source::new("other".into(), None), 20.0),
            ]),
        }
    }

    /// The forecast's samples of one scrape, sorted (a family's series
    /// come in hash order), HELP and TYPE left out.
    fn forecast_lines(s: &Snapshot) -> String {
        let t = encode(s, Format::Prometheus).expect("encodes");
        let mut lines: Vec<&str> = t
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                [
                    "ctdoctor_forecast",
                    "ctdoctor_time_to_full",
                    "ctdoctor_new_flows",
                    "ctdoctor_top_creator",
                ]
                .iter()
                .any(|p| l.starts_with(p))
            })
            .collect();
        lines.sort_unstable();
        lines.join("\n")
    }

    #[test]
    fn forecast_on_events_maps_the_verdict() {
        let s = Snapshot {
            forecast_source: Some("events"),
            forecast: Some(view()),
            // Ignored with a verdict: the trend is the dumps' fallback only.
            time_to_full: Some(5.0),
            steady_state: Some(7.0),
            ..Default::default()
        };
        assert_eq!(
            forecast_lines(&s),
            "ctdoctor_forecast_class_steady_state_entries{class=\"tcp/ESTABLISHED\"} 4000.0
ctdoctor_forecast_class_steady_state_entries{class=\"udp/UNREPLIED\"} 1200.0
ctdoctor_forecast_evidence{class=\"tcp/ESTABLISHED\",evidence=\"unknown\"} 1.0
ctdoctor_forecast_evidence{class=\"udp/UNREPLIED\",evidence=\"measured\"} 1.0
ctdoctor_forecast_source{source=\"events\"} 1.0
ctdoctor_forecast_steady_state_entries 5200.0
ctdoctor_forecast_window_seconds 60.0
ctdoctor_new_flows_per_second 120.0
ctdoctor_time_to_full_seconds 1800.0
ctdoctor_top_creator_new_flows_per_second{source=\"10.0.0.1\"} 100.0
ctdoctor_top_creator_new_flows_per_second{source=\"other\"} 20.0"
        );
        // Levels off: +Inf, in both formats; a partial window: no creators.
        let mut v = view();
        v.time_to_full = f64::INFINITY;
        v.creators = None;
        let s = Snapshot {
            forecast_source: Some("events"),
            forecast: Some(v),
            ..Default::default()
        };
        let t = encode(&s, Format::OpenMetrics).expect("encodes");
        assert!(t.contains("ctdoctor_time_to_full_seconds +Inf\n"), "{t}");
        assert!(!t.contains("ctdoctor_top_creator"), "{t}");
        // Before the first window ends: the source, no verdict (unknown).
        let s = Snapshot {
            forecast_source: Some("events"),
            ..Default::default()
        };
        assert_eq!(
            forecast_lines(&s),
            "ctdoctor_forecast_source{source=\"events\"} 1.0"
        );
    }

    #[test]
    fn forecast_on_dumps_is_labelled_and_keeps_the_trend() {
        let s = Snapshot {
            forecast_source: Some("dumps"),
            time_to_full: Some(f64::INFINITY),
            steady_state: Some(1234.5),
            ..Default::default()
        };
        assert_eq!(
            forecast_lines(&s),
            "ctdoctor_forecast_source{source=\"dumps\"} 1.0
ctdoctor_forecast_steady_state_entries 1234.5
ctdoctor_time_to_full_seconds +Inf"
        );
    }

    #[test]
    fn the_view_of_a_verdict() {
        use ctcore::forecast::estimate::{self, Inputs};
        use ctmodel::flows::{ClassKey, ClassStats};
        // udp/UNREPLIED: 100 new/s over 60 s, each gone after 10 s
        // (measured); tcp/ESTABLISHED: 5 new/s, none left (unknown).
        let mut udp = ClassStats {
            new: 6000,
            entered: 6000,
            exited: 5000,
            dwell_sum: 50_000.0,
            still_in: 1000,
            still_in_age_sum: 5000.0,
            live: 1000,
            ..ClassStats::default()
        };
        udp.exit_times.add_n(10.0, 5000);
        udp.survivor_ages.add_n(5.0, 1000);
        let mut tcp = ClassStats {
            new: 300,
            entered: 300,
            still_in: 300,
            still_in_age_sum: 9000.0,
            live: 300,
            ..ClassStats::default()
        };
        tcp.survivor_ages.add_n(30.0, 300);
        let classes: std::collections::BTreeMap<ClassKey, estimate::Observed> =
            [("udp/UNREPLIED", udp), ("tcp/ESTABLISHED", tcp)]
                .into_iter()
                .map(|(k, c)| (ClassKey::parse(k).expect("key"), c.into()))
                .collect();
        let timeouts = std::collections::BTreeMap::new();
        let f = estimate::estimate(&Inputs {
            window: 60.0,
            classes: estimate::class_inputs(classes, &timeouts, cthost::plan::Profile::Web),
            count: 1300,
            max: 262_144,
            samples: (0..=60)
                .map(|t| (f64::from(t), 1000.0 + 5.0 * f64::from(t)))
                .collect(),
            target_share: estimate::DEFAULT_TARGET_SHARE,
        });
        let mut book = ctcore::workload::AddressBook::default();
        book.add(filler(), ["10.0.0.1".parse().expect("ip")]);
        let top = vec![
            (Source::new("10.0.0.1".into(), Some(&book)), 4000),
            (Source::new("10.0.0.2".into(), Some(&book)), 1000),
        ];
        let v = ForecastView::of(
            &f,
            Some(Created {
                top,
                total: 6300,
                seconds: 60.0,
            }),
        );
        assert_eq!(v.steady_state, f.steady_state);
        assert_eq!(v.new_per_s, f.arrivals_per_s);
        assert_eq!(v.time_to_full, f.time_to_full_s.unwrap_or(f64::INFINITY));
        let mut evidence: Vec<(&str, f64, &str)> = v
            .classes
            .iter()
            .map(|(c, n, e)| (c.as_str(), *n, *e))
            .collect();
        evidence.sort_by(|a, b| a.0.cmp(b.0));
        // The unknown class: its live count, never its timeout.
        assert_eq!(evidence[0], ("tcp/ESTABLISHED", 300.0, "unknown"));
        assert_eq!(
            (evidence[1].0, evidence[1].2),
            ("udp/UNREPLIED", "measured")
        );
        assert_eq!(
            v.creators,
            Some(vec![
                (
                    Source {
                        address: "10.0.0.1".into(),
                        workload: Some("filler".into())
                    },
                    4000.0 / 60.0
                ),
                (Source::new("10.0.0.2".into(), None), 1000.0 / 60.0),
                (Source::new("other".into(), None), 1300.0 / 60.0),
            ])
        );
        // A rising count with an unknown class: the trend gives the time to full.
        assert!(v.time_to_full.is_finite(), "{f:#?}");
    }

    #[test]
    fn accept_negotiation() {
        let prom242 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom242)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Prometheus);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Prometheus
        );
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
    }

    fn filler() -> ctcore::workload::Workload {
        ctcore::workload::Workload {
            name: "filler".into(),
            runtime: "docker".into(),
            image: None,
            pod: None,
            pod_namespace: None,
        }
    }

    /// An owned source gets a `workload` label; others (and "other") none.
    #[test]
    fn owned_sources_are_labelled_with_their_workload() {
        let mut book = ctcore::workload::AddressBook::default();
        book.add(filler(), ["172.18.0.2".parse().expect("ip")]);
        let owned = Source::new("172.18.0.2".into(), Some(&book));
        let plain = Source::new("10.9.9.9".into(), Some(&book));
        assert_eq!(owned.workload.as_deref(), Some("filler"));
        assert_eq!(plain.workload, None);
        assert_eq!(Source::new("other".into(), Some(&book)).workload, None);
        let l = |s: &Source| format!("{:?}", s.labels("source", vec![("rank", "1")]));
        assert!(l(&owned).contains("filler"), "{}", l(&owned));
        assert!(!l(&plain).contains("workload"), "{}", l(&plain));
    }
}
