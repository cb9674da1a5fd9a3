//! What `watch` shows for one interval: the [`Snapshot`] both renderers use
//! (the TUI and `--json-lines`), built from the tracker's [`Interval`], the
//! table's count and max, and two readings of the per-CPU stat counters.
//! Pure: no I/O, the wall-clock time is passed in.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::counters::CpuStats;
use crate::workload::{AddressBook, GroupRow, Grouping, Workload, group};
use ctmodel::flows::{ClassKey, Interval};
use serde::Serialize;

/// The per-CPU counters `watch` turns into rates, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub drop: u64,
    pub early_drop: u64,
    pub insert_failed: u64,
    /// Packets dropped for a hash chain over the kernel's limit.
    pub chaintoolong: u64,
    /// Insert clashes the kernel resolved (no drop).
    pub clash_resolve: u64,
}

/// Increase of the counters from `before` to `after` (ctcore's per-CPU,
/// wrap-safe delta); a counter no CPU reported counts 0.
pub fn counter_delta(before: &[CpuStats], after: &[CpuStats]) -> Counters {
    let d = crate::counters::Counters::delta(before, after);
    Counters {
        drop: d.drop.unwrap_or(0),
        early_drop: d.early_drop.unwrap_or(0),
        insert_failed: d.insert_failed.unwrap_or(0),
        chaintoolong: d.chaintoolong.unwrap_or(0),
        clash_resolve: d.clash_resolve.unwrap_or(0),
    }
}

/// One reading of the table, taken at the end of an interval.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// Unix time in seconds (wall clock; shown, never used for rates).
    pub unix_time: f64,
    /// CTA_STATS_GLOBAL_ENTRIES: this namespace's count.
    pub count: u64,
    /// CTA_STATS_GLOBAL_MAX_ENTRIES (absent before kernel 4.18).
    pub max: Option<u64>,
    /// Counter increase over the interval; None when there is no earlier
    /// reading (the first interval) or the per-CPU stats were unreadable.
    pub counters: Option<Counters>,
    /// Entries the tracker holds (matching the filter) and their classes.
    pub live: u64,
    pub states: BTreeMap<ClassKey, u64>,
    /// Table-full kernel log lines since `watch` started; None when
    /// /dev/kmsg is unreadable.
    pub table_full: Option<TableFull>,
}

/// "table full, dropping packet" lines in the kernel log since `watch`
/// started that name this namespace or none (the kernel usually names
/// none, so on a host with several namespaces they may be another's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TableFull {
    pub lines: u64,
    /// Wall-clock time of the last one, RFC 3339.
    #[serde(serialize_with = "last_rfc3339")]
    pub last: Option<u64>,
}

fn last_rfc3339<S: serde::Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(t) => s.serialize_some(&crate::time::rfc3339(*t as f64)),
        None => s.serialize_none(),
    }
}

/// What `watch` knows about its event feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventStatus {
    /// net.netfilter.nf_conntrack_events in the watched namespace: 0 off,
    /// 1 on, 2 on once a listener subscribes (the default on recent
    /// kernels); None when unreadable.
    pub setting: Option<u8>,
    /// Whether the kernel sends events (setting 1 or 2). When false, every
    /// event-derived field (new/s, destroyed/s, top lists) is null.
    pub enabled: bool,
    /// Times the kernel dropped events (ENOBUFS) since the start.
    pub lost: u64,
    /// Dumps that resynchronised the live set since the start (the first
    /// dump not included), and why the last one ran.
    pub resyncs: u64,
    pub last_resync: Option<String>,
    /// Event messages that did not decode (skipped).
    pub malformed: u64,
}

/// One ranked key: new entries per second in the interval and its share of
/// all new entries (0..=1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rank {
    pub key: String,
    pub new_per_s: f64,
    pub share: f64,
    /// The container owning the address `key` (top_src, top_dst) or behind
    /// the workload `key` (top_container, top_pod); absent for an address
    /// no workload owns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
}

impl Rank {
    /// What a person reads: `name (ip)` for an owned address, else the key.
    pub fn label(&self) -> String {
        match &self.workload {
            // An address row; not a workload row whose container happens
            // to be named like an address (`--name 10.0.0.9`).
            Some(w)
                if self.key.parse::<std::net::IpAddr>().is_ok()
                    && self.key != w.name
                    && self.key != w.pod_key() =>
            {
                format!("{} ({})", w.name, self.key)
            }
            _ => self.key.clone(),
        }
    }
}

/// One interval of `watch`. Field names are the `--json-lines` contract.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// End of the interval, RFC 3339 (UTC, seconds).
    pub time: String,
    /// Length of the interval in seconds, as measured.
    pub interval_s: f64,
    pub count: u64,
    pub max: Option<u64>,
    /// count / max (0..=1; None without a max or with max 0, unlimited).
    pub fill: Option<f64>,
    /// Entries the event tracker holds: equals count without a filter,
    /// give or take events in flight; with --filter, the matching ones.
    pub live: u64,
    pub new_per_s: Option<f64>,
    pub destroyed_per_s: Option<f64>,
    pub drop_per_s: Option<f64>,
    pub early_drop_per_s: Option<f64>,
    pub insert_failed_per_s: Option<f64>,
    /// Packets dropped for hash chains over the kernel's limit: a hash flood.
    pub chaintoolong_per_s: Option<f64>,
    pub clash_resolve_per_s: Option<f64>,
    /// Live entries per class (`tcp/ESTABLISHED`, `udp/UNREPLIED`, ...).
    pub states: BTreeMap<ClassKey, u64>,
    pub top_src: Vec<Rank>,
    pub top_dst: Vec<Rank>,
    pub top_dport: Vec<Rank>,
    /// New entries per second per container / pod owning the source
    /// address (`ctcore::workload::group`); unowned addresses as themselves.
    pub top_container: Vec<Rank>,
    pub top_pod: Vec<Rank>,
    pub events: EventStatus,
    /// Why this interval's event counts are incomplete ("events lost
    /// (ENOBUFS)", "events just enabled"); null when complete. A partial
    /// interval's event rates (new/s, destroyed/s) and top lists are null
    /// and empty: a partial count is not a rate.
    pub partial: Option<String>,
    /// Table-full kernel log lines since the start (null: /dev/kmsg unreadable).
    pub table_full: Option<TableFull>,
    /// The --filter clauses in force (empty: the whole table).
    pub filter: Vec<String>,
}

fn per_s(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

fn rank(key: String, c: u64, total: u64, seconds: f64, workload: Option<Workload>) -> Rank {
    Rank {
        key,
        new_per_s: per_s(c, seconds),
        share: if total > 0 {
            c as f64 / total as f64
        } else {
            0.0
        },
        workload,
    }
}

fn ranks<K: ToString>(rows: Vec<(K, u64)>, total: u64, seconds: f64) -> Vec<Rank> {
    rows.into_iter()
        .map(|(k, c)| rank(k.to_string(), c, total, seconds, None))
        .collect()
}

/// Address rows with their owners.
fn owned(rows: Vec<(IpAddr, u64)>, book: &AddressBook, total: u64, seconds: f64) -> Vec<Rank> {
    rows.into_iter()
        .map(|(ip, c)| rank(ip.to_string(), c, total, seconds, book.get(ip).cloned()))
        .collect()
}

fn grouped(rows: Vec<GroupRow>, total: u64, seconds: f64) -> Vec<Rank> {
    rows.into_iter()
        .map(|r| rank(r.key, r.count, total, seconds, r.workload))
        .collect()
}

impl Snapshot {
    /// The snapshot of one interval; `top` rows per ranking. Event-derived
    /// fields are None (null) when events are off: zero would be a lie.
    pub fn new(
        iv: &Interval,
        r: &Reading,
        events: &EventStatus,
        filter: &[String],
        top: usize,
        book: &AddressBook,
    ) -> Self {
        let s = iv.seconds;
        let on = events.enabled && iv.partial.is_none();
        let rate = |n: u64| on.then(|| per_s(n, s));
        let counter = |f: fn(&Counters) -> u64| {
            r.counters
                .as_ref()
                .filter(|_| s > 0.0)
                .map(|c| per_s(f(c), s))
        };
        let created = &iv.created;
        let (top_src, top_dst, top_dport) = if on {
            (
                owned(created.top_src(top), book, iv.new, s),
                owned(created.top_dst(top), book, iv.new, s),
                ranks(created.top_dport(top), iv.new, s),
            )
        } else {
            (Vec::new(), Vec::new(), Vec::new())
        };
        // From every source the interval's counter holds (at most its
        // capacity: exact below it, the heaviest above).
        let (top_container, top_pod) = if on {
            let all = created.top_src(0);
            (
                grouped(
                    group(all.iter().copied(), book, Grouping::Container, top),
                    iv.new,
                    s,
                ),
                grouped(group(all, book, Grouping::Pod, top), iv.new, s),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        Self {
            time: crate::time::rfc3339(r.unix_time),
            interval_s: s,
            count: r.count,
            max: r.max,
            fill: r.max.filter(|&m| m > 0).map(|m| r.count as f64 / m as f64),
            live: r.live,
            new_per_s: rate(iv.new),
            destroyed_per_s: rate(iv.destroyed),
            drop_per_s: counter(|c| c.drop),
            early_drop_per_s: counter(|c| c.early_drop),
            insert_failed_per_s: counter(|c| c.insert_failed),
            chaintoolong_per_s: counter(|c| c.chaintoolong),
            clash_resolve_per_s: counter(|c| c.clash_resolve),
            states: r.states.clone(),
            top_src,
            top_dst,
            top_dport,
            top_container,
            top_pod,
            events: events.clone(),
            partial: iv.partial.clone(),
            table_full: r.table_full,
            filter: filter.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctmodel::Filter;
    use ctmodel::entry::{Entry, L4Tuple, Status, Tuple};
    use ctmodel::flows::{EventKind, Tracker};
    use ctmodel::proto::L4Proto;
    use std::net::{IpAddr, Ipv4Addr};

    fn udp(id: u32, src: u8, dport: u16) -> Entry {
        let t = |a: u8, b: u8, sp: u16, dp: u16| Tuple {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, a)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, b)),
            l4: L4Tuple::Ports {
                sport: sp,
                dport: dp,
            },
            zone: None,
        };
        Entry {
            l4: Some(L4Proto::Udp),
            orig: t(src, 1, 40000 + id as u16, dport),
            reply: t(1, src, dport, 40000 + id as u16),
            status: Status::CONFIRMED,
            id: Some(id),
            ..Entry::default()
        }
    }

    fn cpu(cpu: u16, drop: u32, early: u32, failed: u32) -> CpuStats {
        CpuStats {
            cpu,
            drop: Some(drop),
            early_drop: Some(early),
            insert_failed: Some(failed),
            ..CpuStats::default()
        }
    }

    fn on() -> EventStatus {
        EventStatus {
            setting: Some(2),
            enabled: true,
            ..EventStatus::default()
        }
    }

    /// 2 s interval: 6 new from 10.0.0.2 (to port 53), 2 from 10.0.0.3 (to 123), 1 destroyed.
    fn interval() -> Interval {
        let mut tr = Tracker::new(Filter::default());
        tr.take_interval(0.0);
        for id in 0..6 {
            tr.event(0.5, EventKind::New, &udp(id, 2, 53));
        }
        for id in 6..8 {
            tr.event(1.0, EventKind::New, &udp(id, 3, 123));
        }
        tr.event(1.5, EventKind::Destroy, &udp(0, 2, 53));
        tr.take_interval(2.0)
    }

    #[test]
    fn counters_wrap_per_cpu_and_ignore_missing_cpus() {
        let before = [cpu(0, u32::MAX - 1, 5, 0), cpu(1, 10, 0, 7)];
        let after = [cpu(0, 3, 6, 0), cpu(1, 12, 0, 9), cpu(2, 1000, 1000, 1000)];
        let d = counter_delta(&before, &after);
        // CPU 0 wrapped: MAX-1 -> 3 is 5; CPU 2 appeared and adds nothing.
        assert_eq!(
            d,
            Counters {
                drop: 7,
                early_drop: 1,
                insert_failed: 2,
                chaintoolong: 0,
                clash_resolve: 0,
            }
        );
    }

    #[test]
    fn rates_shares_and_fill() {
        let r = Reading {
            unix_time: 1_700_000_000.0,
            count: 300,
            max: Some(1200),
            counters: Some(Counters {
                drop: 10,
                early_drop: 4,
                insert_failed: 0,
                chaintoolong: 6,
                clash_resolve: 2,
            }),
            live: 299,
            states: BTreeMap::from([(ClassKey::parse("udp/UNREPLIED").expect("class"), 299)]),
            table_full: Some(TableFull {
                lines: 2,
                last: Some(1_700_000_000),
            }),
        };
        let s = Snapshot::new(&interval(), &r, &on(), &[], 10, &AddressBook::default());
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(
            json["table_full"],
            serde_json::json!({"lines": 2, "last": "2023-11-14T22:13:20Z"})
        );
        assert_eq!(s.time, "2023-11-14T22:13:20Z");
        assert_eq!(s.interval_s, 2.0);
        assert_eq!(s.fill, Some(0.25));
        assert_eq!(s.new_per_s, Some(4.0));
        assert_eq!(s.destroyed_per_s, Some(0.5));
        assert_eq!(s.drop_per_s, Some(5.0));
        assert_eq!(s.early_drop_per_s, Some(2.0));
        assert_eq!(s.insert_failed_per_s, Some(0.0));
        assert_eq!(s.chaintoolong_per_s, Some(3.0));
        assert_eq!(s.clash_resolve_per_s, Some(1.0));
        assert_eq!(json["chaintoolong_per_s"], 3.0);
        assert_eq!(
            s.top_src,
            vec![
                Rank {
                    key: "10.0.0.2".into(),
                    new_per_s: 3.0,
                    share: 0.75,
                    workload: None,
                },
                Rank {
                    key: "10.0.0.3".into(),
                    new_per_s: 1.0,
                    share: 0.25,
                    workload: None,
                },
            ]
        );
        assert_eq!(s.top_dport[0].key, "udp/53");
        assert_eq!(s.top_dst[0].share, 1.0);
        let one = Snapshot::new(&interval(), &r, &on(), &[], 1, &AddressBook::default());
        assert_eq!(one.top_src.len(), 1);
        // With an address book: the owner next to the address, and the
        // per-container ranking folds its addresses.
        let mut book = AddressBook::default();
        let w = Workload {
            name: "web".into(),
            runtime: "docker".into(),
            image: None,
            pod: Some("web-0".into()),
            pod_namespace: Some("shop".into()),
        };
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        book.add(w.clone(), [ip("10.0.0.2"), ip("10.0.0.3")]);
        let a = Snapshot::new(&interval(), &r, &on(), &[], 10, &book);
        assert_eq!(a.top_src[0].workload.as_ref(), Some(&w));
        assert_eq!(a.top_src[0].label(), "web (10.0.0.2)");
        assert_eq!(a.top_container.len(), 1);
        assert_eq!(a.top_container[0].key, "web");
        assert_eq!(a.top_container[0].label(), "web");
        assert_eq!(a.top_container[0].new_per_s, 4.0);
        assert_eq!(a.top_container[0].share, 1.0);
        assert_eq!(a.top_pod[0].key, "shop/web-0");
        let v = serde_json::to_value(&a).expect("json");
        assert_eq!(v["top_src"][0]["workload"]["name"], "web");
        assert!(v["top_dport"][0].get("workload").is_none());
    }

    #[test]
    fn a_container_named_like_an_address_is_labelled_by_its_name() {
        let w = Workload {
            name: "10.0.0.9".into(),
            runtime: "docker".into(),
            image: None,
            pod: None,
            pod_namespace: None,
        };
        let row = |key: &str| Rank {
            key: key.into(),
            new_per_s: 1.0,
            share: 1.0,
            workload: Some(w.clone()),
        };
        assert_eq!(row("10.0.0.9").label(), "10.0.0.9");
        assert_eq!(row("10.0.0.2").label(), "10.0.0.9 (10.0.0.2)");
    }

    #[test]
    fn events_off_gives_nulls_not_zeros() {
        let off = EventStatus {
            setting: Some(0),
            ..EventStatus::default()
        };
        let r = Reading {
            count: 5,
            max: Some(0),
            ..Reading::default()
        };
        let s = Snapshot::new(&interval(), &r, &off, &[], 10, &AddressBook::default());
        assert_eq!((s.new_per_s, s.destroyed_per_s), (None, None));
        assert!(s.top_src.is_empty());
        // max 0 means unlimited: no fill; no earlier counters: no rates.
        assert_eq!((s.fill, s.drop_per_s), (None, None));
        let v = serde_json::to_value(&s).expect("json");
        assert!(v["new_per_s"].is_null());
        assert_eq!(v["events"]["setting"], 0);
        assert_eq!(s.time, "1970-01-01T00:00:00Z");
    }

    #[test]
    fn partial_intervals_give_no_rates() {
        let mut tr = Tracker::new(Filter::default());
        tr.take_interval(0.0);
        tr.event(0.5, EventKind::New, &udp(1, 2, 53));
        tr.mark_partial("events lost (ENOBUFS)");
        let iv = tr.take_interval(1.0);
        let s = Snapshot::new(
            &iv,
            &Reading::default(),
            &on(),
            &[],
            10,
            &AddressBook::default(),
        );
        assert_eq!(s.partial.as_deref(), Some("events lost (ENOBUFS)"));
        assert_eq!((s.new_per_s, s.destroyed_per_s), (None, None));
        assert!(s.top_src.is_empty());
        // The next interval is complete again.
        tr.event(1.5, EventKind::New, &udp(2, 2, 53));
        let s = Snapshot::new(
            &tr.take_interval(2.0),
            &Reading::default(),
            &on(),
            &[],
            10,
            &AddressBook::default(),
        );
        assert_eq!((s.partial, s.new_per_s), (None, Some(1.0)));
    }

    #[test]
    fn empty_interval_has_zero_rates() {
        let iv = Interval::default();
        let r = Reading {
            counters: Some(Counters::default()),
            ..Reading::default()
        };
        let s = Snapshot::new(&iv, &r, &on(), &[], 10, &AddressBook::default());
        assert_eq!(s.new_per_s, Some(0.0));
        // A zero-length interval gives no counter rate (no division by zero).
        assert_eq!(s.drop_per_s, None);
    }
}
