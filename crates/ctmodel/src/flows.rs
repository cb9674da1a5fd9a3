//! Live flow tracking from a dump followed by ctnetlink events: which
//! entries are live (by [`flow_id`]: the conntrack id plus a hash of the
//! original tuple, so two flows sharing a 32-bit id are never merged) and
//! in which `proto/STATE` class, what was created in each interval (the
//! top sources, destinations and ports of the NEW entries, in fixed-size
//! [`crate::heavy::SpaceSaving`] counters: a spoofed flood over an hour's
//! interval costs the same memory as a quiet second), and per class the
//! new flows, arrivals (new flows plus class changes), exits and the time
//! spent in the class: each exit's time and each survivor's age in
//! [`Lifetimes`] (the censored-lifetime inputs of `ctcore::forecast`).
//! Pure: time is a number of seconds on the caller's monotonic clock, and
//! events arrive as decoded entries.
//!
//! Entries seen only in a dump carry no arrival time: they count as live
//! but never in the arrival and dwell statistics. Entries that vanish
//! between two dumps without a DESTROY event (created before a listener
//! subscribed, so without the kernel's event extension, KERNEL.md
//! section 12) are removed at the next resync.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use rustc_hash::{FxHashMap, FxHasher};

use crate::entry::Entry;
use crate::filter::Filter;
use crate::heavy::SpaceSaving;
use crate::keys::Keys;

/// A flow's identity: the 32-bit conntrack id in the high half, a hash of
/// the original tuple (addresses, ports, zone) in the low half. The kernel
/// reuses ids (they are a hash of the entry's address, so 12 of 262,144
/// collide in a full table): with the tuple folded in, two flows merge only
/// when their ids and their 32-bit tuple hashes both collide. Every event
/// (DESTROY included) and every dump entry carries the original tuple, so
/// the same flow always gets the same identity. None without an id.
pub fn flow_id(e: &Entry) -> Option<u64> {
    let id = e.id?;
    let mut h = FxHasher::default();
    e.orig.hash(&mut h);
    e.l4.map(|p| p.number()).hash(&mut h);
    let tuple = h.finish();
    Some(u64::from(id) << 32 | ((tuple ^ (tuple >> 32)) & 0xffff_ffff))
}

/// Lifetimes (seconds) in log-spaced buckets 2% wide from 10 ms to about
/// 60 days (1,100 buckets; times below 10 ms share the first, above the
/// range the last), stored sparsely: at most 1,100 (bucket, count) pairs
/// per class whatever the number of entries. A bucket stands for its
/// geometric middle, so a mean computed from it is within 1% of the exact one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lifetimes(BTreeMap<u16, u64>);

const LT_MIN: f64 = 0.01;
const LT_STEP: f64 = 1.02;
/// Number of lifetime buckets.
pub const LT_BUCKETS: u16 = 1100;

impl Lifetimes {
    fn bucket(secs: f64) -> u16 {
        if secs.is_nan() || secs <= LT_MIN {
            return 0;
        }
        let i = ((secs / LT_MIN).ln() / LT_STEP.ln()).floor() + 1.0;
        (i as u64).min(u64::from(LT_BUCKETS - 1)) as u16
    }

    /// The time a bucket stands for.
    pub fn value(bucket: u16) -> f64 {
        if bucket == 0 {
            return LT_MIN / 2.0;
        }
        LT_MIN * LT_STEP.powf(f64::from(bucket) - 0.5)
    }

    pub fn add(&mut self, secs: f64) {
        self.add_n(secs, 1);
    }

    pub fn add_n(&mut self, secs: f64, n: u64) {
        if n > 0 {
            *self.0.entry(Self::bucket(secs)).or_insert(0) += n;
        }
    }

    /// (time, count), shortest first.
    pub fn iter(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.0.iter().map(|(b, c)| (Self::value(*b), *c))
    }

    pub fn count(&self) -> u64 {
        self.0.values().sum()
    }

    /// The longest time held (its bucket's value); None when empty.
    pub fn longest(&self) -> Option<f64> {
        self.0.keys().next_back().map(|b| Self::value(*b))
    }
}

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

/// One live entry: 8 bytes (24 with its u64 key in the map), so a million
/// entries cost about 32 MB.
#[derive(Debug, Clone, Copy)]
struct Live {
    /// When it entered its class, seconds after `origin`; NaN when unknown.
    entered: f32,
    class: u16,
    /// The resync generation that last saw it.
    generation: u8,
    /// Its ASSURED / UNREPLIED status bits as last seen ([`flags`]; in
    /// the struct's padding: no extra memory).
    flags: u8,
}

const ASSURED: u8 = 1;
const UNREPLIED: u8 = 2;

/// The status bits the tracker keeps per live entry.
fn flags(e: &Entry) -> u8 {
    let k = Keys::of(e);
    (if k.assured { ASSURED } else { 0 }) | (if k.unreplied { UNREPLIED } else { 0 })
}

/// Per class, since observation started (or since [`Tracker::restart`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassStats {
    /// New flows born in this class (NEW events): the table's arrivals.
    pub new: u64,
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
    /// The exits' times in the class and the survivors' ages (right-censored).
    pub exit_times: Lifetimes,
    pub survivor_ages: Lifetimes,
}

/// The top sources, destinations and destination ports of the flows an
/// interval created, each in a [`SpaceSaving`] counter of
/// [`Created::CAPACITY`] keys: exact while fewer distinct keys were seen,
/// never more memory than that.
#[derive(Debug, Clone)]
pub struct Created {
    src: SpaceSaving<IpAddr>,
    dst: SpaceSaving<IpAddr>,
    dport: SpaceSaving<(u8, u16)>,
}

impl Default for Created {
    fn default() -> Self {
        Self {
            src: SpaceSaving::new(Self::CAPACITY),
            dst: SpaceSaving::new(Self::CAPACITY),
            dport: SpaceSaving::new(Self::CAPACITY),
        }
    }
}

impl Created {
    /// Keys held per ranking (about 100 KB per interval for the three).
    pub const CAPACITY: usize = 1024;

    pub fn add(&mut self, e: &Entry) {
        let k = Keys::of(e);
        self.src.add(k.src);
        self.dst.add(k.dst);
        if let Some(port) = k.dport {
            self.dport.add((k.l4.number(), port));
        }
    }

    pub fn top_src(&self, n: usize) -> Vec<(IpAddr, u64)> {
        self.src.top(n)
    }

    pub fn top_dst(&self, n: usize) -> Vec<(IpAddr, u64)> {
        self.dst.top(n)
    }

    /// Destination ports as `proto/port`.
    pub fn top_dport(&self, n: usize) -> Vec<(String, u64)> {
        self.dport
            .top(n)
            .into_iter()
            .map(|((p, port), c)| {
                (
                    format!("{}/{port}", crate::proto::L4Proto::from_number(p)),
                    c,
                )
            })
            .collect()
    }

    /// Keys held over the three rankings (bounded by 3 x CAPACITY).
    pub fn held(&self) -> usize {
        self.src.len() + self.dst.len() + self.dport.len()
    }
}

/// What happened since the previous [`Tracker::take_interval`].
#[derive(Debug, Clone, Default)]
pub struct Interval {
    pub seconds: f64,
    pub new: u64,
    pub updates: u64,
    pub destroyed: u64,
    /// The entries created in the interval (as their NEW event showed them).
    pub created: Created,
    /// Why the interval's event counts are incomplete (events lost, events
    /// just turned on); None when complete. Rates must not be taken from a
    /// partial interval.
    pub partial: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct Flow {
    new: u64,
    entered: u64,
    exited: u64,
    dwell_sum: f64,
    live: u64,
    exit_times: Lifetimes,
}

#[derive(Debug, Clone)]
pub struct Tracker {
    filter: Filter,
    live: FxHashMap<u64, Live>,
    names: Vec<ClassKey>,
    ids: FxHashMap<ClassKey, u16>,
    flows: Vec<Flow>,
    /// First time given; times are stored relative to it as f32: steps of
    /// about 1 ms for the first 4.6 h, 7.8 ms after a day, 62 ms after a week.
    origin: Option<f64>,
    generation: u8,
    interval_start: Option<f64>,
    interval: Interval,
    /// When the per-class statistics started (the first time given, or
    /// the last [`Tracker::restart`]).
    stats_since: Option<f64>,
    /// Live entries with the ASSURED, and with the UNREPLIED, status bit.
    assured: u64,
    unreplied: u64,
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
            stats_since: None,
            assured: 0,
            unreplied: 0,
        }
    }

    fn rel(&mut self, t: f64) -> f32 {
        self.stats_since.get_or_insert(t);
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
        self.unflag(l.flags);
        let f = &mut self.flows[usize::from(l.class)];
        f.live -= 1;
        if !l.entered.is_nan() {
            let d = f64::from((now - l.entered).max(0.0));
            f.exited += 1;
            f.dwell_sum += d;
            f.exit_times.add(d);
        }
    }

    /// An entry leaves without a time we can trust (it went while events
    /// were lost): live drops, no exit is counted.
    fn vanish(&mut self, l: Live) {
        self.unflag(l.flags);
        self.flows[usize::from(l.class)].live -= 1;
    }

    fn unflag(&mut self, flags: u8) {
        self.assured -= u64::from(flags & ASSURED != 0);
        self.unreplied -= u64::from(flags & UNREPLIED != 0);
    }

    fn flag(&mut self, flags: u8) {
        self.assured += u64::from(flags & ASSURED != 0);
        self.unreplied += u64::from(flags & UNREPLIED != 0);
    }

    /// A live entry stays in its class; its status bits may have changed.
    fn reflag(&mut self, id: u64, flags: u8) {
        let Some(old) = self.live.get(&id).map(|l| l.flags) else {
            return;
        };
        if old != flags {
            self.unflag(old);
            self.flag(flags);
            if let Some(l) = self.live.get_mut(&id) {
                l.flags = flags;
            }
        }
    }

    fn arrive(&mut self, id: u64, class: u16, entered: f32, new: bool, flags: u8) {
        self.flag(flags);
        let f = &mut self.flows[usize::from(class)];
        f.live += 1;
        if !entered.is_nan() {
            f.entered += 1;
            f.new += u64::from(new);
        }
        let generation = self.generation;
        self.live.insert(
            id,
            Live {
                entered,
                class,
                generation,
                flags,
            },
        );
    }

    /// A dump starts: entries it does not list are gone at [`Self::resync_end`].
    pub fn resync_begin(&mut self, t: f64) {
        self.rel(t);
        self.generation = self.generation.wrapping_add(1);
    }

    pub fn resync_add(&mut self, t: f64, e: &Entry) {
        let Some(id) = flow_id(e) else { return };
        let now = self.rel(t);
        let wanted = self.wants(e);
        match self.live.get(&id).copied() {
            Some(l) if wanted => {
                let class = self.class(e);
                if class == l.class {
                    if let Some(l) = self.live.get_mut(&id) {
                        l.generation = self.generation;
                    }
                    self.reflag(id, flags(e));
                } else {
                    // Changed class without an event we saw: the change time is unknown.
                    self.leave(l, now);
                    self.arrive(id, class, f32::NAN, false, flags(e));
                }
            }
            Some(l) => {
                self.live.remove(&id);
                self.leave(l, now);
            }
            None if wanted => {
                let class = self.class(e);
                self.arrive(id, class, f32::NAN, false, flags(e));
            }
            None => {}
        }
    }

    /// The dump ended: entries it did not list expired without a DESTROY
    /// event (made while nobody listened), at about this time.
    pub fn resync_end(&mut self, t: f64) {
        self.resync_finish(t, true);
    }

    /// The dump that follows lost events ended: entries it did not list
    /// left at an unknown time while events were lost, so no exit (and no
    /// time in the class) is counted for them.
    pub fn resync_end_after_loss(&mut self, t: f64) {
        self.resync_finish(t, false);
    }

    fn resync_finish(&mut self, t: f64, timed: bool) {
        let now = self.rel(t);
        let generation = self.generation;
        let gone: Vec<(u64, Live)> = self
            .live
            .iter()
            .filter(|(_, l)| l.generation != generation)
            .map(|(id, l)| (*id, *l))
            .collect();
        for (id, l) in gone {
            self.live.remove(&id);
            if timed {
                self.leave(l, now);
            } else {
                self.vanish(l);
            }
        }
    }

    /// The current interval's event counts are incomplete (`why`).
    pub fn mark_partial(&mut self, why: &str) {
        if self.interval.partial.is_none() {
            self.interval.partial = Some(why.to_string());
        }
    }

    /// Forget the per-class statistics (new flows, arrivals, exits, ages)
    /// and start them again at `t`, keeping the live set: what came before
    /// is incomplete (events were lost). Live entries count from now on as
    /// dumped ones do: live, without an arrival time.
    pub fn restart(&mut self, t: f64) {
        self.rel(t);
        for f in &mut self.flows {
            *f = Flow {
                live: f.live,
                ..Flow::default()
            };
        }
        for l in self.live.values_mut() {
            l.entered = f32::NAN;
        }
        self.stats_since = Some(t);
    }

    pub fn event(&mut self, t: f64, kind: EventKind, e: &Entry) {
        let now = self.rel(t);
        self.interval_start.get_or_insert(t);
        let fid = flow_id(e);
        let known = fid.and_then(|id| self.live.get(&id).copied());
        match kind {
            EventKind::Destroy => {
                // DESTROY carries no protoinfo, so a state filter cannot judge it: use what we tracked.
                if let (Some(id), Some(l)) = (fid, known) {
                    self.live.remove(&id);
                    self.leave(l, now);
                    self.interval.destroyed += 1;
                } else if self.wants(e) {
                    self.interval.destroyed += 1;
                }
            }
            EventKind::New | EventKind::Update => {
                if !self.wants(e) {
                    if let (Some(id), Some(l)) = (fid, known) {
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
                let Some(id) = fid else { return };
                let class = self.class(e);
                // A NEW event for an entry a dump already listed (created
                // while the dump ran) is its arrival all the same.
                let arrival = kind == EventKind::New && known.is_some_and(|l| l.entered.is_nan());
                // A new flow: a NEW event for an entry not already seen
                // arriving (an UPDATE of an unknown entry, or a class
                // change, is an arrival into its class, not a new flow).
                let new = kind == EventKind::New && known.is_none_or(|l| l.entered.is_nan());
                let bits = flags(e);
                match known {
                    Some(l) if l.class == class && !arrival => self.reflag(id, bits),
                    Some(l) if arrival => {
                        // Listed by the dump, NEW now: not an exit of the class.
                        self.vanish(l);
                        self.arrive(id, class, now, new, bits);
                    }
                    Some(l) => {
                        self.leave(l, now);
                        self.arrive(id, class, now, false, bits);
                    }
                    None => self.arrive(id, class, now, new, bits),
                }
            }
        }
    }

    /// Entries believed live (matching the filter).
    pub fn live(&self) -> u64 {
        self.live.len() as u64
    }

    /// Live entries with the ASSURED status bit, and with UNREPLIED (no
    /// reply seen), as the last event or dump showed them.
    pub fn flags(&self) -> (u64, u64) {
        (self.assured, self.unreplied)
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

    /// Seconds the per-class statistics cover at `t` (since the first time
    /// given, or the last [`Self::restart`]).
    pub fn observed(&self, t: f64) -> f64 {
        self.stats_since.map_or(0.0, |o| (t - o).max(0.0))
    }

    /// Per class: arrivals, exits with dwell, and entries still in it with their age at `t`.
    pub fn classes(&self, t: f64) -> BTreeMap<ClassKey, ClassStats> {
        let now = self.origin.map_or(0.0, |o| (t - o) as f32);
        let mut out: Vec<ClassStats> = self
            .flows
            .iter()
            .map(|f| ClassStats {
                new: f.new,
                entered: f.entered,
                exited: f.exited,
                dwell_sum: f.dwell_sum,
                live: f.live,
                exit_times: f.exit_times.clone(),
                ..ClassStats::default()
            })
            .collect();
        for l in self.live.values().filter(|l| !l.entered.is_nan()) {
            let c = &mut out[usize::from(l.class)];
            let age = f64::from((now - l.entered).max(0.0));
            c.still_in += 1;
            c.still_in_age_sum += age;
            c.survivor_ages.add(age);
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
    fn flags_follow_events_and_dumps() {
        let mut tr = Tracker::new(Filter::default());
        let mut syn = tcp(1, 2, 1);
        syn.status = Status::CONFIRMED;
        tr.event(0.0, EventKind::New, &syn);
        assert_eq!(tr.flags(), (0, 1), "no reply yet");
        let mut est = tcp(1, 2, ESTABLISHED);
        est.status = Status::CONFIRMED | Status::SEEN_REPLY | Status::ASSURED;
        tr.event(0.1, EventKind::Update, &est);
        assert_eq!(tr.flags(), (1, 0));
        // Same class, bits changed: a dump sees the entry again.
        tr.resync_begin(0.2);
        let mut replied = est.clone();
        replied.status = Status::CONFIRMED | Status::SEEN_REPLY;
        tr.resync_add(0.2, &replied);
        tr.resync_add(0.2, &est_of(2));
        tr.resync_end(0.3);
        assert_eq!(tr.flags(), (1, 0));
        tr.event(0.4, EventKind::Destroy, &est_of(2));
        tr.event(0.5, EventKind::Destroy, &replied);
        assert_eq!(tr.flags(), (0, 0));
        assert_eq!(tr.live(), 0);
    }

    fn est_of(id: u32) -> Entry {
        let mut e = tcp(id, 3, ESTABLISHED);
        e.status = Status::CONFIRMED | Status::SEEN_REPLY | Status::ASSURED;
        e
    }

    #[test]
    fn events_move_entries_between_classes_and_measure_dwell() {
        let mut tr = Tracker::new(Filter::default());
        tr.event(0.0, EventKind::New, &tcp(1, 2, ESTABLISHED));
        tr.event(1.0, EventKind::New, &tcp(2, 2, ESTABLISHED));
        tr.event(3.0, EventKind::Update, &tcp(1, 2, TIME_WAIT));
        assert_eq!(tr.live(), 2);
        let c = tr.classes(4.0);
        let est = c["tcp/ESTABLISHED"].clone();
        assert_eq!((est.entered, est.exited, est.dwell_sum), (2, 1, 3.0));
        assert_eq!((est.still_in, est.still_in_age_sum, est.live), (1, 3.0, 1));
        let tw = c["tcp/TIME_WAIT"].clone();
        assert_eq!((tw.entered, tw.still_in, tw.still_in_age_sum), (1, 1, 1.0));
        tr.event(5.0, EventKind::Destroy, &tcp(1, 2, 0));
        let tw = tr.classes(5.0)["tcp/TIME_WAIT"].clone();
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
        let est = tr.classes(1.0)["tcp/ESTABLISHED"].clone();
        assert_eq!((est.entered, est.still_in, est.live), (0, 0, 2));
        tr.event(1.0, EventKind::New, &tcp(3, 4, ESTABLISHED));
        // Entry 2 expired without DESTROY (no event extension): the next dump drops it.
        tr.resync_begin(2.0);
        tr.resync_add(2.0, &tcp(1, 2, ESTABLISHED));
        tr.resync_add(2.0, &tcp(3, 4, ESTABLISHED));
        tr.resync_end(2.0);
        assert_eq!(tr.live(), 2);
        let est = tr.classes(2.0)["tcp/ESTABLISHED"].clone();
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
        let est = tr.classes(1.0)["tcp/ESTABLISHED"].clone();
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

    #[test]
    fn colliding_32_bit_ids_are_two_flows() {
        let mut tr = Tracker::new(Filter::default());
        // The same conntrack id for two different flows (the kernel reuses ids).
        let a = tcp(77, 2, ESTABLISHED);
        let b = tcp(77, 3, ESTABLISHED);
        assert_ne!(flow_id(&a), flow_id(&b));
        assert_eq!(flow_id(&a).map(|f| f >> 32), Some(77));
        tr.event(0.0, EventKind::New, &a);
        tr.event(1.0, EventKind::New, &b);
        assert_eq!(tr.live(), 2);
        // a's DESTROY removes a only, with a's time.
        tr.event(4.0, EventKind::Destroy, &tcp(77, 2, 0));
        let est = tr.classes(4.0)["tcp/ESTABLISHED"].clone();
        assert_eq!(
            (est.new, est.exited, est.dwell_sum, est.live),
            (2, 1, 4.0, 1)
        );
        assert_eq!(tr.live(), 1);
    }

    #[test]
    fn new_flows_are_counted_apart_from_class_changes() {
        let mut tr = Tracker::new(Filter::default());
        tr.event(0.0, EventKind::New, &tcp(1, 2, 1));
        tr.event(0.1, EventKind::Update, &tcp(1, 2, ESTABLISHED));
        tr.event(2.0, EventKind::Update, &tcp(1, 2, TIME_WAIT));
        // An UPDATE for an entry we never saw: an arrival into its class, not a new flow.
        tr.event(2.0, EventKind::Update, &tcp(2, 3, ESTABLISHED));
        let c = tr.classes(3.0);
        let new: u64 = c.values().map(|s| s.new).sum();
        let entered: u64 = c.values().map(|s| s.entered).sum();
        assert_eq!((new, entered), (1, 4));
        assert_eq!(c["tcp/SYN_SENT"].exit_times.count(), 1);
        assert_eq!(c["tcp/ESTABLISHED"].survivor_ages.count(), 1);
    }

    #[test]
    fn after_a_loss_vanished_entries_are_not_exits_and_statistics_restart() {
        let mut tr = Tracker::new(Filter::default());
        tr.event(0.0, EventKind::New, &tcp(1, 2, ESTABLISHED));
        tr.event(0.0, EventKind::New, &tcp(2, 3, ESTABLISHED));
        tr.mark_partial("events lost (ENOBUFS)");
        // Entry 2 went while events were lost: the dump no longer lists it.
        tr.resync_begin(10.0);
        tr.resync_add(10.0, &tcp(1, 2, ESTABLISHED));
        tr.resync_end_after_loss(10.0);
        let est = tr.classes(10.0)["tcp/ESTABLISHED"].clone();
        assert_eq!((est.exited, est.live), (0, 1));
        tr.restart(10.0);
        assert_eq!(tr.observed(15.0), 5.0);
        let est = tr.classes(15.0)["tcp/ESTABLISHED"].clone();
        assert_eq!((est.entered, est.new, est.still_in, est.live), (0, 0, 0, 1));
        let iv = tr.take_interval(15.0);
        assert_eq!(iv.partial.as_deref(), Some("events lost (ENOBUFS)"));
        assert_eq!(tr.take_interval(16.0).partial, None);
    }

    #[test]
    fn lifetimes_buckets_are_within_two_percent() {
        for t in [0.02, 0.5, 1.0, 29.0, 120.0, 432_000.0] {
            let mut l = Lifetimes::default();
            l.add(t);
            let (v, n) = l.iter().next().expect("bucket");
            assert_eq!(n, 1);
            assert!((v - t).abs() / t < 0.02, "{t} -> {v}");
        }
        let mut l = Lifetimes::default();
        l.add(-1.0);
        l.add(f64::NAN);
        l.add(1e12);
        assert_eq!(l.count(), 3);
        assert!(l.0.keys().all(|b| *b < LT_BUCKETS));
    }

    #[test]
    fn created_top_lists_are_bounded_under_a_spoofed_flood() {
        let mut tr = Tracker::new(Filter::default());
        for i in 0..20_000u32 {
            let mut e = tcp(i, 2, 1);
            e.orig.src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            tr.event(0.0, EventKind::New, &e);
        }
        let iv = tr.take_interval(1.0);
        assert_eq!(iv.new, 20_000);
        assert!(iv.created.held() <= 3 * Created::CAPACITY);
        assert_eq!(
            iv.created.top_dport(1),
            vec![("tcp/80".to_string(), 20_000)]
        );
    }
}
