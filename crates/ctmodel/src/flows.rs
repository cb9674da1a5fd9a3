//! Live flow tracking from a dump followed by ctnetlink events: which
//! entries are live (by conntrack id) and in which `proto/STATE` class,
//! what was created in each interval (a [`Breakdown`] of the NEW entries,
//! so "top sources by new connections per second" is the same ranking
//! `top` uses), and per class the arrivals, exits and time spent in the
//! class (the inputs of Little's law). Pure: time is a number of seconds
//! on the caller's monotonic clock, and events arrive as decoded entries.
//!
//! Entries seen only in a dump carry no arrival time: they count as live
//! but never in the arrival and dwell statistics. Entries that vanish
//! between two dumps without a DESTROY event (created before a listener
//! subscribed, so without the kernel's event extension, KERNEL.md
//! section 12) are removed at the next resync.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::breakdown::Breakdown;
use crate::entry::Entry;
use crate::filter::Filter;

/// The three ctnetlink event groups (NFNLGRP_CONNTRACK_NEW/UPDATE/DESTROY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    New,
    Update,
    Destroy,
}

/// A connection class: `tcp/ESTABLISHED`, `udp/ASSURED`, `udp/UNREPLIED`,
/// `udp/REPLIED`, `icmp/UNREPLIED`: the protocol, then its state for
/// protocols that have one, else the status flags (the keys of the
/// simulator's states). Built only from an entry ([`ClassKey::of`]) or
/// checked text ([`ClassKey::parse`]), so every key has both parts; shown
/// and serialized as the text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClassKey(String);

impl ClassKey {
    /// The class `e` is in.
    pub fn of(e: &Entry) -> Self {
        Self::of_keys(&crate::keys::Keys::of(e))
    }

    /// The class of the entry these grouping fields are of.
    pub fn of_keys(k: &crate::keys::Keys) -> Self {
        let l4 = k.l4;
        Self(match k.state_name() {
            Some(state) => format!("{l4}/{state}"),
            None if k.assured => format!("{l4}/ASSURED"),
            None if k.unreplied => format!("{l4}/UNREPLIED"),
            None => format!("{l4}/REPLIED"),
        })
    }

    /// `proto/STATE` text: two non-empty parts of printable ASCII without
    /// spaces, at most 64 bytes.
    pub fn parse(text: &str) -> Option<Self> {
        let (l4, state) = text.split_once('/')?;
        let part = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
        (text.len() <= 64 && part(l4) && part(state)).then(|| Self(text.to_string()))
    }

    /// The class all classes past the tracker's bound share.
    pub fn other() -> Self {
        Self("other/OTHER".into())
    }

    /// The protocol part (`tcp`).
    pub fn l4(&self) -> &str {
        self.0.split_once('/').map_or(&self.0, |(l4, _)| l4)
    }

    /// The state part (`ESTABLISHED`).
    pub fn state(&self) -> &str {
        self.0.split_once('/').map_or("", |(_, s)| s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ClassKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for ClassKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ClassKey {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ClassKey {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl serde::Serialize for ClassKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One live entry: 8 bytes, so a million entries cost about 16 MB with the map.
#[derive(Debug, Clone, Copy)]
struct Live {
    /// When it entered its class, seconds after `origin`; NaN when unknown.
    entered: f32,
    class: u16,
    /// The resync generation that last saw it.
    generation: u8,
}

/// Per class, since observation started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClassStats {
    /// Arrivals into the class (a NEW event, or an UPDATE that changed class).
    pub entered: u64,
    /// Departures of entries whose arrival was seen, with their time in the class.
    pub exited: u64,
    pub dwell_sum: f64,
    /// Entries whose arrival was seen and that are still in the class, with their age in it.
    pub still_in: u64,
    pub still_in_age_sum: f64,
    /// All live entries in the class, arrival seen or not.
    pub live: u64,
}

/// What happened since the previous [`Tracker::take_interval`].
#[derive(Debug, Clone, Default)]
pub struct Interval {
    pub seconds: f64,
    pub new: u64,
    pub updates: u64,
    pub destroyed: u64,
    /// The entries created in the interval (as their NEW event showed them).
    pub created: Breakdown,
}

#[derive(Debug, Clone, Copy, Default)]
struct Flow {
    entered: u64,
    exited: u64,
    dwell_sum: f64,
    live: u64,
}

#[derive(Debug, Clone)]
pub struct Tracker {
    filter: Filter,
    live: FxHashMap<u32, Live>,
    names: Vec<ClassKey>,
    ids: FxHashMap<ClassKey, u16>,
    flows: Vec<Flow>,
    /// First time given; times are stored relative to it as f32: steps of
    /// about 1 ms for the first 4.6 h, 7.8 ms after a day, 62 ms after a week.
    origin: Option<f64>,
    generation: u8,
    interval_start: Option<f64>,
    interval: Interval,
}

/// Classes beyond this share one overflow class (hostile or exotic states
/// cannot grow the table of names without bound).
const MAX_CLASSES: usize = 1024;

impl Tracker {
    pub fn new(filter: Filter) -> Self {
        Self {
            filter,
            live: FxHashMap::default(),
            names: Vec::new(),
            ids: FxHashMap::default(),
            flows: Vec::new(),
            origin: None,
            generation: 0,
            interval_start: None,
            interval: Interval::default(),
        }
    }

    fn rel(&mut self, t: f64) -> f32 {
        let origin = *self.origin.get_or_insert(t);
        (t - origin) as f32
    }

    fn class(&mut self, e: &Entry) -> u16 {
        let key = ClassKey::of(e);
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let key = if self.names.len() >= MAX_CLASSES {
            ClassKey::other()
        } else {
            key
        };
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let id = self.names.len() as u16;
        self.names.push(key.clone());
        self.ids.insert(key, id);
        self.flows.push(Flow::default());
        id
    }

    fn wants(&self, e: &Entry) -> bool {
        self.filter.is_empty() || self.filter.matches(e)
    }

    /// An entry leaves its class at `now` (relative): count the exit when its arrival was seen.
    fn leave(&mut self, l: Live, now: f32) {
        let f = &mut self.flows[usize::from(l.class)];
        f.live -= 1;
        if !l.entered.is_nan() {
            f.exited += 1;
            f.dwell_sum += f64::from((now - l.entered).max(0.0));
        }
    }

    fn arrive(&mut self, id: u32, class: u16, entered: f32) {
        let f = &mut self.flows[usize::from(class)];
        f.live += 1;
        if !entered.is_nan() {
            f.entered += 1;
        }
        let generation = self.generation;
        self.live.insert(
            id,
            Live {
                entered,
                class,
                generation,
            },
        );
    }

    /// A dump starts: entries it does not list are gone at [`Self::resync_end`].
    pub fn resync_begin(&mut self, t: f64) {
        self.rel(t);
        self.generation = self.generation.wrapping_add(1);
    }

    pub fn resync_add(&mut self, t: f64, e: &Entry) {
        let Some(id) = e.id else { return };
        let now = self.rel(t);
        let wanted = self.wants(e);
        match self.live.get(&id).copied() {
            Some(l) if wanted => {
                let class = self.class(e);
                if class == l.class {
                    if let Some(l) = self.live.get_mut(&id) {
                        l.generation = self.generation;
                    }
                } else {
                    // Changed class without an event we saw: the change time is unknown.
                    self.leave(l, now);
                    self.arrive(id, class, f32::NAN);
                }
            }
            Some(l) => {
                self.live.remove(&id);
                self.leave(l, now);
            }
            None if wanted => {
                let class = self.class(e);
                self.arrive(id, class, f32::NAN);
            }
            None => {}
        }
    }

    /// The dump ended: entries it did not list expired without a DESTROY event.
    pub fn resync_end(&mut self, t: f64) {
        let now = self.rel(t);
        let generation = self.generation;
        let gone: Vec<(u32, Live)> = self
            .live
            .iter()
            .filter(|(_, l)| l.generation != generation)
            .map(|(id, l)| (*id, *l))
            .collect();
        for (id, l) in gone {
            self.live.remove(&id);
            self.leave(l, now);
        }
    }

    pub fn event(&mut self, t: f64, kind: EventKind, e: &Entry) {
        let now = self.rel(t);
        self.interval_start.get_or_insert(t);
        let known = e.id.and_then(|id| self.live.get(&id).copied());
        match kind {
            EventKind::Destroy => {
                // DESTROY carries no protoinfo, so a state filter cannot judge it: use what we tracked.
                if let (Some(id), Some(l)) = (e.id, known) {
                    self.live.remove(&id);
                    self.leave(l, now);
                    self.interval.destroyed += 1;
                } else if self.wants(e) {
                    self.interval.destroyed += 1;
                }
            }
            EventKind::New | EventKind::Update => {
                if !self.wants(e) {
                    if let (Some(id), Some(l)) = (e.id, known) {
                        self.live.remove(&id);
                        self.leave(l, now);
                    }
                    return;
                }
                if kind == EventKind::New {
                    self.interval.new += 1;
                    self.interval.created.add(e);
                } else {
                    self.interval.updates += 1;
                }
                let Some(id) = e.id else { return };
                let class = self.class(e);
                // A NEW event for an entry a dump already listed (created
                // while the dump ran) is its arrival all the same.
                let arrival = kind == EventKind::New && known.is_some_and(|l| l.entered.is_nan());
                match known {
                    Some(l) if l.class == class && !arrival => {}
                    Some(l) => {
                        self.leave(l, now);
                        self.arrive(id, class, now);
                    }
                    None => self.arrive(id, class, now),
                }
            }
        }
    }

    /// Entries believed live (matching the filter).
    pub fn live(&self) -> u64 {
        self.live.len() as u64
    }

    /// Live entries per class, classes with none left out.
    pub fn states(&self) -> BTreeMap<ClassKey, u64> {
        self.names
            .iter()
            .zip(&self.flows)
            .filter(|(_, f)| f.live > 0)
            .map(|(n, f)| (n.clone(), f.live))
            .collect()
    }

    /// Everything since the previous call (or since the first event).
    pub fn take_interval(&mut self, t: f64) -> Interval {
        let start = self.interval_start.replace(t).unwrap_or(t);
        let mut out = std::mem::take(&mut self.interval);
        out.seconds = (t - start).max(0.0);
        out
    }

    /// Seconds of observation so far (since the first time given).
    pub fn observed(&self, t: f64) -> f64 {
        self.origin.map_or(0.0, |o| (t - o).max(0.0))
    }

    /// Per class: arrivals, exits with dwell, and entries still in it with their age at `t`.
    pub fn classes(&self, t: f64) -> BTreeMap<ClassKey, ClassStats> {
        let now = self.origin.map_or(0.0, |o| (t - o) as f32);
        let mut out: Vec<ClassStats> = self
            .flows
            .iter()
            .map(|f| ClassStats {
                entered: f.entered,
                exited: f.exited,
                dwell_sum: f.dwell_sum,
                live: f.live,
                ..ClassStats::default()
            })
            .collect();
        for l in self.live.values().filter(|l| !l.entered.is_nan()) {
            let c = &mut out[usize::from(l.class)];
            c.still_in += 1;
            c.still_in_age_sum += f64::from((now - l.entered).max(0.0));
        }
        self.names
            .iter()
            .cloned()
            .zip(out)
            .filter(|(_, c)| c.entered > 0 || c.live > 0 || c.exited > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{L4Tuple, Status, Tuple};
    use crate::proto::{L4Proto, State};
    use std::net::{IpAddr, Ipv4Addr};

    fn tcp(id: u32, src: u8, state: u8) -> Entry {
        let t = |a: u8, b: u8| Tuple {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, a)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, b)),
            l4: L4Tuple::Ports {
                sport: 40000 + u16::from(a),
                dport: 80,
            },
            zone: None,
        };
        Entry {
            l4: Some(L4Proto::Tcp),
            state: Some(State::Code(state)),
            orig: t(src, 1),
            reply: t(1, src),
            status: Status::CONFIRMED,
            id: Some(id),
            ..Entry::default()
        }
    }

    const ESTABLISHED: u8 = 3;
    const TIME_WAIT: u8 = 7;

    #[test]
    fn class_keys() {
        let class_key = ClassKey::of;
        assert_eq!(class_key(&tcp(1, 2, ESTABLISHED)), "tcp/ESTABLISHED");
        let mut udp = tcp(1, 2, 0);
        udp.l4 = Some(L4Proto::Udp);
        udp.state = None;
        assert_eq!(class_key(&udp), "udp/UNREPLIED");
        udp.status = Status::SEEN_REPLY;
        assert_eq!(class_key(&udp), "udp/REPLIED");
        udp.status = Status::ASSURED;
        assert_eq!(class_key(&udp), "udp/ASSURED");
        let k = class_key(&udp);
        assert_eq!((k.l4(), k.state()), ("udp", "ASSURED"));
    }

    #[test]
    fn class_text_is_checked() {
        assert_eq!(
            ClassKey::parse("tcp/TIME_WAIT")
                .map(|k| k.to_string())
                .as_deref(),
            Some("tcp/TIME_WAIT")
        );
        for bad in [
            "",
            "tcp",
            "/X",
            "tcp/",
            "a/b/c",
            "tcp/TIME WAIT",
            &"x".repeat(65),
        ] {
            assert_eq!(ClassKey::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn events_move_entries_between_classes_and_measure_dwell() {
        let mut tr = Tracker::new(Filter::default());
        tr.event(0.0, EventKind::New, &tcp(1, 2, ESTABLISHED));
        tr.event(1.0, EventKind::New, &tcp(2, 2, ESTABLISHED));
        tr.event(3.0, EventKind::Update, &tcp(1, 2, TIME_WAIT));
        assert_eq!(tr.live(), 2);
        let c = tr.classes(4.0);
        let est = c["tcp/ESTABLISHED"];
        assert_eq!((est.entered, est.exited, est.dwell_sum), (2, 1, 3.0));
        assert_eq!((est.still_in, est.still_in_age_sum, est.live), (1, 3.0, 1));
        let tw = c["tcp/TIME_WAIT"];
        assert_eq!((tw.entered, tw.still_in, tw.still_in_age_sum), (1, 1, 1.0));
        tr.event(5.0, EventKind::Destroy, &tcp(1, 2, 0));
        let tw = tr.classes(5.0)["tcp/TIME_WAIT"];
        assert_eq!((tw.exited, tw.dwell_sum, tw.live), (1, 2.0, 0));
        let iv = tr.take_interval(5.0);
        assert_eq!((iv.new, iv.updates, iv.destroyed), (2, 1, 1));
        assert_eq!(iv.seconds, 5.0);
        assert_eq!(iv.created.top_src(1)[0].1, 2);
        let iv = tr.take_interval(6.0);
        assert_eq!((iv.new, iv.seconds), (0, 1.0));
    }

    #[test]
    fn resync_adds_unknown_entries_and_drops_silent_expiries() {
        let mut tr = Tracker::new(Filter::default());
        tr.resync_begin(0.0);
        tr.resync_add(0.0, &tcp(1, 2, ESTABLISHED));
        tr.resync_add(0.0, &tcp(2, 3, ESTABLISHED));
        tr.resync_end(0.0);
        assert_eq!(tr.states()["tcp/ESTABLISHED"], 2);
        // Dumped entries have no arrival time: live, but no statistics.
        let est = tr.classes(1.0)["tcp/ESTABLISHED"];
        assert_eq!((est.entered, est.still_in, est.live), (0, 0, 2));
        tr.event(1.0, EventKind::New, &tcp(3, 4, ESTABLISHED));
        // Entry 2 expired without DESTROY (no event extension): the next dump drops it.
        tr.resync_begin(2.0);
        tr.resync_add(2.0, &tcp(1, 2, ESTABLISHED));
        tr.resync_add(2.0, &tcp(3, 4, ESTABLISHED));
        tr.resync_end(2.0);
        assert_eq!(tr.live(), 2);
        let est = tr.classes(2.0)["tcp/ESTABLISHED"];
        assert_eq!(
            (est.entered, est.exited, est.still_in, est.live),
            (1, 0, 1, 2)
        );
    }

    #[test]
    fn new_event_for_an_entry_the_dump_listed_is_an_arrival() {
        let mut tr = Tracker::new(Filter::default());
        tr.resync_begin(0.0);
        tr.resync_add(0.0, &tcp(1, 2, ESTABLISHED));
        tr.resync_end(0.0);
        // The entry was created while the dump ran: its NEW comes after.
        tr.event(0.5, EventKind::New, &tcp(1, 2, ESTABLISHED));
        let est = tr.classes(1.0)["tcp/ESTABLISHED"];
        assert_eq!((est.entered, est.still_in, est.live), (1, 1, 1));
        assert_eq!(est.still_in_age_sum, 0.5);
        // A second NEW for the same id (a duplicate) is not another arrival.
        tr.event(0.7, EventKind::New, &tcp(1, 2, ESTABLISHED));
        assert_eq!(tr.classes(1.0)["tcp/ESTABLISHED"].entered, 1);
    }

    #[test]
    fn filter_applies_to_new_and_destroy_of_tracked_entries() {
        let f = Filter::parse(&["src=10.0.0.2"]).expect("filter");
        let mut tr = Tracker::new(f);
        tr.event(0.0, EventKind::New, &tcp(1, 2, ESTABLISHED));
        tr.event(0.0, EventKind::New, &tcp(2, 3, ESTABLISHED));
        assert_eq!(tr.live(), 1);
        tr.event(1.0, EventKind::Destroy, &tcp(1, 2, 0));
        tr.event(1.0, EventKind::Destroy, &tcp(2, 3, 0));
        let iv = tr.take_interval(1.0);
        assert_eq!((iv.new, iv.destroyed), (1, 1));
        assert_eq!(tr.live(), 0);
    }

    #[test]
    fn unknown_destroy_and_missing_ids_do_not_panic() {
        let mut tr = Tracker::new(Filter::default());
        let mut e = tcp(9, 2, ESTABLISHED);
        tr.event(0.0, EventKind::Destroy, &e);
        e.id = None;
        tr.event(0.0, EventKind::New, &e);
        tr.event(0.0, EventKind::Update, &e);
        tr.resync_add(0.0, &e);
        assert_eq!(tr.live(), 0);
        let iv = tr.take_interval(0.0);
        assert_eq!((iv.new, iv.updates, iv.destroyed), (1, 1, 1));
    }
}
