//! The exporter's per-workload series (issue 18): entries and new flows per
//! second per container owning the original-direction source address,
//! folded during the breakdown dump, for the top `--workloads N` workloads
//! plus one `workload="other"` series (the rest, and addresses no workload
//! owns), so a node with 300 pods stays at N + 1 series. The ranking is
//! `ctcore::workload::rank`'s; new flows are the dump's ids the previous
//! breakdown dump did not hold (`ctcore::forecast::dumps`), over the
//! seconds between the two dumps.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use ctcore::forecast::dumps::Ids;
use ctcore::workload::{AddressBook, Figures, Workload, rank};
use ctmodel::Entry;
use ctmodel::flows::flow_id;
use ctmodel::keys::Keys;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `--workloads` default.
pub const DEFAULT: usize = 20;
/// Upper bound of `--workloads`: labels stay bounded.
pub const MAX: usize = 1000;

/// The address book for a breakdown dump (None with `--workloads 0`); what
/// could not be read is said on stderr the first time only.
pub fn book(host: &cthost::Host, n: usize) -> Option<AddressBook> {
    static SAID: std::sync::Once = std::sync::Once::new();
    if n == 0 {
        return None;
    }
    let (book, note) = cthost::addresses::book(host.root());
    if let Some(note) = note {
        SAID.call_once(|| eprintln!("ctdoctor: note: {note}"));
    }
    Some(book)
}

/// One dump's entries and new ids per workload (by its index in the
/// book: nothing is cloned per entry).
#[derive(Debug, Default)]
pub struct Tally {
    per: BTreeMap<usize, (u64, u64)>,
    unowned: (u64, u64),
}

impl Tally {
    /// Count `e` for the workload owning its original source; `previous`:
    /// the last dump's ids (empty on the first dump).
    pub fn add(&mut self, book: &AddressBook, previous: &Ids, e: &Entry) {
        let src = Keys::of(e).src;
        let new = u64::from(flow_id(e).is_some_and(|id| !previous.contains(id)));
        let slot = match book.index(src) {
            Some(i) => self.per.entry(i).or_default(),
            None => &mut self.unowned,
        };
        slot.0 += 1;
        slot.1 += new;
    }

    /// The ranked view of the workloads of `book` (the one the entries
    /// were counted with); `seconds` between this dump and the previous
    /// one (None on the first dump: no rate yet).
    pub fn view(self, book: &AddressBook, seconds: Option<f64>, n: usize) -> View {
        let fig = |(entries, new): (u64, u64)| Figures {
            entries,
            new_per_s: seconds.filter(|s| *s > 0.0).map(|s| new as f64 / s),
        };
        let rows: BTreeMap<Workload, Figures> = self
            .per
            .into_iter()
            .filter_map(|(i, c)| Some((book.workloads().get(i)?.clone(), fig(c))))
            .collect();
        let (rows, other) = rank(rows, fig(self.unowned), n);
        View { rows, other }
    }
}

/// What a scrape publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub rows: Vec<(Workload, Figures)>,
    pub other: Figures,
}

type G = Gauge<f64, AtomicU64>;

/// `ctdoctor_workload_entries` and `ctdoctor_workload_new_flows_per_second`.
pub fn register(reg: &mut Registry, v: &View) {
    let entries = Family::<Vec<(String, String)>, G>::default();
    let new = Family::<Vec<(String, String)>, G>::default();
    let labels = |w: Option<&Workload>| -> Vec<(String, String)> {
        let s = |o: Option<&String>| o.cloned().unwrap_or_default();
        vec![
            (
                "workload".into(),
                w.map_or_else(|| "other".to_string(), |w| w.name.clone()),
            ),
            ("runtime".into(), s(w.map(|w| &w.runtime))),
            ("pod".into(), s(w.and_then(|w| w.pod.as_ref()))),
            (
                "namespace".into(),
                s(w.and_then(|w| w.pod_namespace.as_ref())),
            ),
        ]
    };
    let rows = v
        .rows
        .iter()
        .map(|(w, f)| (Some(w), f))
        .chain(std::iter::once((None, &v.other)));
    // Added, not set: two workloads with the same labels (a `web` under
    // each of two dockerds, a container named "other") share one series,
    // and the series still add up to the table.
    for (w, f) in rows {
        let l = labels(w);
        entries.get_or_create(&l).inc_by(f.entries as f64);
        if let Some(r) = f.new_per_s {
            new.get_or_create(&l).inc_by(r);
        }
    }
    reg.register(
        "ctdoctor_workload_entries",
        "Entries per workload owning the original source address (the cached breakdown), the top --workloads N plus workload=\"other\" (the rest, and addresses no container owns)",
        entries,
    );
    reg.register(
        "ctdoctor_workload_new_flows_per_second",
        "New flows per second per workload between the last two breakdown dumps (ids the earlier one did not hold), top --workloads N plus \"other\"",
        new,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctmodel::entry::{L4Tuple, Status, Tuple};
    use ctmodel::proto::L4Proto;
    use std::net::{IpAddr, Ipv4Addr};

    fn udp(id: u32, src: u8) -> Entry {
        let t = |a: u8, b: u8| Tuple {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, a)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, b)),
            l4: L4Tuple::Ports {
                sport: 1000 + id as u16,
                dport: 53,
            },
            zone: None,
        };
        Entry {
            l4: Some(L4Proto::Udp),
            orig: t(src, 1),
            reply: t(1, src),
            status: Status::CONFIRMED,
            id: Some(id),
            ..Entry::default()
        }
    }

    #[test]
    fn entries_and_new_flows_per_workload_plus_other() {
        let mut book = AddressBook::default();
        let w = Workload {
            name: "b".into(),
            runtime: "docker".into(),
            image: None,
            pod: None,
            pod_namespace: None,
        };
        book.add(w.clone(), [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))]);
        let first: Vec<Entry> = (0..3).map(|i| udp(i, 2)).collect();
        let previous = ctcore::forecast::dumps::ids_of(&first);
        let mut t = Tally::default();
        for i in 0..5 {
            t.add(&book, &previous, &udp(i, 2));
        }
        t.add(&book, &previous, &udp(9, 7));
        let v = t.view(&book, Some(2.0), 20);
        assert_eq!(v.rows.len(), 1);
        assert_eq!(v.rows[0].0, w);
        assert_eq!(v.rows[0].1.entries, 5);
        assert_eq!(v.rows[0].1.new_per_s, Some(1.0));
        assert_eq!(v.other.entries, 1);
        let mut reg = Registry::default();
        register(&mut reg, &v);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).expect("encode");
        assert!(
            text.contains(
                "ctdoctor_workload_entries{workload=\"b\",runtime=\"docker\",pod=\"\",namespace=\"\"} 5"
            ),
            "{text}"
        );
        assert!(
            text.contains("ctdoctor_workload_entries{workload=\"other\""),
            "{text}"
        );
        // --workloads 0: everything in other.
        let mut t = Tally::default();
        t.add(&book, &previous, &udp(1, 2));
        let v = t.view(&book, None, 0);
        assert!(v.rows.is_empty());
        assert_eq!((v.other.entries, v.other.new_per_s), (1, None));
    }

    /// Two workloads with the same labels (a `web` under each of two
    /// dockerds) and a container named "other": one series each, summed.
    #[test]
    fn same_labels_share_one_summed_series() {
        let web = Workload {
            name: "web".into(),
            runtime: "docker".into(),
            image: Some("a".into()),
            pod: None,
            pod_namespace: None,
        };
        let other = Workload {
            name: "other".into(),
            runtime: String::new(),
            image: None,
            pod: None,
            pod_namespace: None,
        };
        let fig = |entries| Figures {
            entries,
            new_per_s: Some(1.0),
        };
        let v = View {
            rows: vec![
                (web.clone(), fig(3)),
                (
                    Workload {
                        image: Some("b".into()),
                        ..web
                    },
                    fig(4),
                ),
                (other, fig(5)),
            ],
            other: fig(6),
        };
        let mut reg = Registry::default();
        register(&mut reg, &v);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).expect("encode");
        let series = |w: &str| {
            text.lines()
                .filter(|l| l.starts_with(&format!("ctdoctor_workload_entries{{workload=\"{w}\"")))
                .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(series("web"), ["7.0"], "{text}");
        assert_eq!(series("other"), ["11.0"], "{text}");
    }
}
