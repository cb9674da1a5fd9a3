// The event-driven table model: entries in two hash chains each, packet-path
// lookup with reaping, allocation with early_drop, chain limit at confirm,
// per-protocol state machines and ASSURED, and the GC worker. Pure and
// deterministic for a seed (fastrand); time is simulated seconds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::chains::{Chains, Node, ticks};
use crate::lanes::Lanes;
use crate::scenario::{Arrival, Lifecycle, Scenario, ScenarioError};
use ctcore::timeouts::{Timeout, TimeoutTable};
use ctcore::version::Version;
use ctmodel::ephemeral::PortWalk;

/// Connection state of an entry ("proto/STATE" keys in the output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    TcpSynSent,
    TcpSynRecv,
    TcpEstablished,
    TcpFinWait,
    TcpCloseWait,
    TcpLastAck,
    TcpTimeWait,
    TcpClose,
    UdpUnreplied,
    UdpReplied,
    UdpAssured,
    IcmpUnreplied,
    IcmpReplied,
}

pub(crate) const N_STATES: usize = 13;

impl State {
    pub const ALL: [State; N_STATES] = [
        State::TcpSynSent,
        State::TcpSynRecv,
        State::TcpEstablished,
        State::TcpFinWait,
        State::TcpCloseWait,
        State::TcpLastAck,
        State::TcpTimeWait,
        State::TcpClose,
        State::UdpUnreplied,
        State::UdpReplied,
        State::UdpAssured,
        State::IcmpUnreplied,
        State::IcmpReplied,
    ];
    pub const ALL_KEYS: [&'static str; N_STATES] = [
        "tcp/SYN_SENT",
        "tcp/SYN_RECV",
        "tcp/ESTABLISHED",
        "tcp/FIN_WAIT",
        "tcp/CLOSE_WAIT",
        "tcp/LAST_ACK",
        "tcp/TIME_WAIT",
        "tcp/CLOSE",
        "udp/UNREPLIED",
        "udp/REPLIED",
        "udp/ASSURED",
        "icmp/UNREPLIED",
        "icmp/REPLIED",
    ];

    pub fn key(self) -> &'static str {
        Self::ALL_KEYS[self as usize]
    }

    pub fn parse(s: &str) -> Option<State> {
        Self::ALL_KEYS
            .iter()
            .position(|k| k.eq_ignore_ascii_case(s))
            .map(|i| Self::ALL[i])
    }

    /// The timeout an entry in this state expires after.
    pub fn timeout(self) -> Timeout {
        match self {
            State::TcpSynSent => Timeout::TcpSynSent,
            State::TcpSynRecv => Timeout::TcpSynRecv,
            State::TcpEstablished => Timeout::TcpEstablished,
            State::TcpFinWait => Timeout::TcpFinWait,
            State::TcpCloseWait => Timeout::TcpCloseWait,
            State::TcpLastAck => Timeout::TcpLastAck,
            State::TcpTimeWait => Timeout::TcpTimeWait,
            State::TcpClose => Timeout::TcpClose,
            State::UdpUnreplied | State::UdpReplied => Timeout::Udp,
            State::UdpAssured => Timeout::UdpStream,
            State::IcmpUnreplied | State::IcmpReplied => Timeout::Icmp,
        }
    }

    /// TCP closing states (gc_worker_can_early_drop evicts them even when ASSURED).
    pub(crate) fn closing(self) -> bool {
        matches!(
            self,
            State::TcpFinWait
                | State::TcpCloseWait
                | State::TcpLastAck
                | State::TcpTimeWait
                | State::TcpClose
        )
    }
}

/// A run could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("run options: {0}")]
    Options(String),
}

/// Run length, sampling step and seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunOptions {
    pub duration_s: f64,
    pub step_s: f64,
    pub seed: u64,
}

impl RunOptions {
    /// The scenario's defaults (else 600 s, step 1 s), seed 1.
    pub fn for_scenario(s: &Scenario) -> Self {
        Self {
            duration_s: s.duration_s.unwrap_or(600.0),
            step_s: s.step_s.unwrap_or(1.0),
            seed: 1,
        }
    }
}

/// Totals of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Connection attempts that reached the table (every arrival that got a
    /// source port). new_flows == inserted + reopened + drops + insert_failed.
    pub new_flows: u64,
    /// New entries confirmed (including those admitted through early_drop).
    pub inserted: u64,
    /// New SYNs on a 4-tuple whose entry was in a closing state: the kernel
    /// kills the old entry and creates a new one (the count is unchanged).
    pub reopened: u64,
    /// Kernel `drop`: table full and early_drop found nothing.
    pub drops: u64,
    /// Kernel `early_drop`: entries deleted to make room.
    pub early_drops: u64,
    /// Kernel `insert_failed`.
    pub insert_failed: u64,
    /// Kernel `chaintoolong`.
    pub chaintoolong: u64,
    /// Expired entries reaped by the GC worker.
    pub gc_reaps: u64,
    /// Entries killed by the GC worker's early-drop eviction (no kernel stat).
    pub gc_evictions: u64,
    /// Expired entries reaped outside the GC worker: packet-path lookups,
    /// early_drop walks and (with `dump_each_step`) the observer's dumps.
    pub lookup_reaps: u64,
    /// connect() calls that found no free ephemeral port (EADDRNOTAVAIL).
    pub no_port: u64,
    pub peak_entries: u64,
    pub final_entries: u64,
    /// Longest chain seen at a confirm.
    pub longest_chain: u64,
    /// Time of the first `drop` (null when none).
    pub time_to_first_drop_s: Option<f64>,
    /// Legitimate flows refused (drop, insert_failed) or killed (early_drop,
    /// GC eviction) while a packet was still to come or the TCP connection
    /// open, over legitimate new flows.
    pub legit_lost_share: f64,
    /// Mean entries per "proto/STATE" over the last tenth of the run
    /// (the kernel's view: expired entries count until reaped).
    pub steady_state: BTreeMap<String, f64>,
    /// Arrival rate x time spent in the state, per "proto/STATE".
    pub littles_law: BTreeMap<String, f64>,
}

/// One sample.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Point {
    pub t: f64,
    pub entries: u64,
    pub max: u64,
    pub drops: u64,
    pub early_drops: u64,
    pub insert_failed: u64,
    pub gc_reaps: u64,
    pub by_state: BTreeMap<String, u64>,
}

/// The result of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Timeline {
    pub summary: Summary,
    pub series: Vec<Point>,
}

#[derive(Clone, Copy, Debug)]
struct Phase {
    at: f64,
    state: State,
    assured: bool,
    /// This phase is the client's close (port enters TIME_WAIT).
    close: bool,
}

struct ClassRt {
    arrival: Arrival,
    variants: Vec<(f64, Vec<Phase>)>,
    legit: bool,
    /// Per client address: port walk; empty = distinct tuples.
    walks: Vec<PortWalk>,
    port_lo: u16,
    nports: u32,
    /// (client * nports + port offset) -> entry, for reopen.
    by_port: Vec<u32>,
    hash_target: Option<u32>,
    n: u64,
    max_rate: f64,
    /// Event lanes: arrivals on `lane`, port frees on `lane + 1`, phase p
    /// (>= 1) of variant v on `phase_lane[v] + p - 1`.
    lane: u32,
    phase_lane: Vec<u32>,
}

/// The GC worker's lane (lane 0).
const GC_LANE: u32 = 0;

const NONE: u32 = u32::MAX;

/// How long a client whose SYN was dropped holds its port before giving up
/// (the lab's connect timeout, 0.9 s; real clients retransmit at 1 s).
const CONNECT_GIVE_UP_S: f64 = 0.9;

#[derive(Clone, Copy)]
struct Entry {
    h: [u32; 2],
    exp: f64,
    state: State,
    assured: bool,
    alive: bool,
    class: u16,
    variant: u8,
    phase: u8,
    generation: u32,
    port: u32,
    /// At least the `lo` of both chain nodes (chains.rs): an expiry below
    /// it must lower them.
    hi: u32,
}

#[derive(PartialEq, Clone, Copy)]
enum EvKind {
    Arrival(u16),
    Phase(u32, u32),
    Gc,
    /// A refused connect gives up (connect timeout) and frees its port.
    PortFree(u16, u32),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kill {
    Expired,
    Lookup,
    EarlyDrop,
    Evict,
    Reopen,
}

struct Sim {
    rng: fastrand::Rng,
    seed: u64,
    max: u64,
    buckets: u32,
    timeouts: TimeoutTable,
    kernel: Version,
    chain_limit: Option<(u32, u32)>,
    chains: Chains,
    slab: Vec<Entry>,
    free: Vec<u32>,
    count: u64,
    by_state: [u64; N_STATES],
    events: Lanes<EvKind>,
    /// Calendar of expiries by whole second: (entry, generation). Only
    /// entries whose expiry comes before their next scheduled packet.
    expiry: BTreeMap<u64, Vec<(u32, u32)>>,
    classes: Vec<ClassRt>,
    gc_flag: bool,
    s: Summary,
    legit_new: u64,
    legit_lost: u64,
    /// early_drop's scratch list.
    victims: Vec<u32>,
}

impl Sim {
    fn push(&mut self, lane: u32, t: f64, kind: EvKind) {
        self.events.push(lane, t, kind);
    }

    fn bucket(&mut self) -> u32 {
        self.rng.u32(..self.buckets)
    }

    fn remove(&mut self, idx: u32, why: Kill) {
        let e = self.slab[idx as usize];
        if !e.alive {
            return;
        }
        for h in e.h {
            if let Some(p) = self.chains.position(h, idx) {
                self.chains.remove_at(h, p);
            }
        }
        self.count -= 1;
        self.by_state[e.state as usize] -= 1;
        let c = e.class as usize;
        if e.port != NONE
            && let Some(cl) = self.classes.get_mut(c)
        {
            if cl.by_port[e.port as usize] == idx {
                cl.by_port[e.port as usize] = NONE;
            }
            // Killed before the client closed: the connection fails, the port is free.
            let closed = cl.variants[e.variant as usize].1[..=e.phase as usize]
                .iter()
                .any(|p| p.close);
            if !closed && why != Kill::Reopen {
                let client = e.port / cl.nports;
                let port = cl.port_lo as u32 + e.port % cl.nports;
                cl.walks[client as usize].abort(port as u16);
            }
        }
        // A legitimate flow is lost when killed before its exchange is over:
        // a packet still to come, or an open TCP connection.
        if matches!(why, Kill::EarlyDrop | Kill::Evict)
            && self.classes.get(c).is_some_and(|cl| {
                cl.legit
                    && (cl.variants[e.variant as usize].1.len() > e.phase as usize + 1
                        || e.state == State::TcpEstablished)
            })
        {
            self.legit_lost += 1;
        }
        match why {
            Kill::Expired => self.s.gc_reaps += 1,
            Kill::Lookup => self.s.lookup_reaps += 1,
            Kill::Evict => self.s.gc_evictions += 1,
            Kill::EarlyDrop | Kill::Reopen => {}
        }
        let slot = &mut self.slab[idx as usize];
        slot.alive = false;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(idx);
    }

    /// The lookup's walk of a chain at `now`: reaps expired entries. A node
    /// whose expiry bound is after `now` is live without reading the entry;
    /// an entry read and found live raises its node's bound to its expiry.
    fn walk_reap(&mut self, b: u32, now: f64) {
        let now_t = ticks(now);
        let mut i = 0;
        while i < self.chains.len(b) {
            let n = self.chains.get(b, i);
            if n.lo > now_t {
                i += 1;
                continue;
            }
            let e = &mut self.slab[n.idx as usize];
            if e.exp <= now {
                self.remove(n.idx, Kill::Lookup);
                continue; // the last node moved to i
            }
            let lo = ticks(e.exp);
            e.hi = e.hi.max(lo);
            self.chains.set_lo(b, i, lo);
            i += 1;
        }
    }

    /// early_drop's walk of a chain: reaps expired entries and collects the
    /// live non-ASSURED ones into `self.victims` (every entry is read).
    fn walk_victims(&mut self, b: u32, now: f64) {
        let mut i = 0;
        while i < self.chains.len(b) {
            let idx = self.chains.get(b, i).idx;
            let e = self.slab[idx as usize];
            if e.exp <= now {
                self.remove(idx, Kill::Lookup);
                continue; // the last node moved to i
            }
            if !e.assured {
                self.victims.push(idx);
            }
            i += 1;
        }
    }

    /// early_drop(): frees room for one allocation; true when something was killed.
    fn early_drop(&mut self, h: u32, now: f64) -> bool {
        if !self.kernel.at_least(4, 8) {
            // Old kernels: look at up to 8 entries from the bucket on, kill one non-ASSURED.
            let mut seen = 0;
            let mut pick = None;
            for i in 0..self.buckets.min(8) {
                let b = (h + i) % self.buckets;
                for i in 0..self.chains.len(b) {
                    let idx = self.chains.get(b, i).idx;
                    let e = self.slab[idx as usize];
                    if !e.assured {
                        pick = Some(idx);
                    }
                    seen += 1;
                    if seen >= 8 {
                        break;
                    }
                }
                if seen >= 8 {
                    break;
                }
            }
            if let Some(idx) = pick {
                self.remove(idx, Kill::EarlyDrop);
                self.s.early_drops += 1;
                return true;
            }
            return false;
        }
        for i in 0..self.buckets.min(8) {
            let b = (h + i) % self.buckets;
            self.victims.clear();
            self.walk_victims(b, now);
            if !self.victims.is_empty() {
                let victims = std::mem::take(&mut self.victims);
                for &v in &victims {
                    self.remove(v, Kill::EarlyDrop);
                }
                self.s.early_drops += victims.len() as u64;
                self.victims = victims;
                return true;
            }
        }
        false
    }

    fn set_state(&mut self, idx: u32, st: State, assured: bool, now: f64) {
        let e = &mut self.slab[idx as usize];
        self.by_state[e.state as usize] -= 1;
        self.by_state[st as usize] += 1;
        e.state = st;
        e.assured = e.assured || assured;
        e.exp = now + self.timeouts.get(st.timeout());
        let lo = ticks(e.exp);
        if lo < e.hi {
            // Rare (a shorter timeout than the state's before): the chain
            // nodes' bounds must stay at or below the expiry.
            e.hi = lo;
            let h = e.h;
            for b in h {
                self.chains.lower(b, idx, lo);
            }
        }
    }

    /// Puts an entry on the expiry calendar.
    fn arm(&mut self, idx: u32) {
        let e = self.slab[idx as usize];
        self.expiry
            .entry(e.exp.max(0.0) as u64)
            .or_default()
            .push((idx, e.generation));
    }

    fn refused(&mut self, c: usize, port: u32, now: f64, drop: bool) {
        if drop {
            self.s.drops += 1;
            if self.s.time_to_first_drop_s.is_none() {
                self.s.time_to_first_drop_s = Some(now);
            }
        }
        let cl = &mut self.classes[c];
        if cl.legit {
            self.legit_lost += 1;
        }
        if port != NONE {
            // The client's SYN is lost; it gives up after CONNECT_GIVE_UP_S
            // and the port is free again (no TIME_WAIT after a failed connect).
            let lane = self.classes[c].lane + 1;
            self.push(
                lane,
                now + CONNECT_GIVE_UP_S,
                EvKind::PortFree(c as u16, port),
            );
        }
    }

    fn port_free(&mut self, c: usize, port: u32) {
        let cl = &mut self.classes[c];
        let client = port / cl.nports;
        cl.walks[client as usize].abort((cl.port_lo as u32 + port % cl.nports) as u16);
    }

    fn arrival(&mut self, c: usize, now: f64) {
        // Tuple: a port of a client (reopen possible) or a distinct tuple.
        let mut port = NONE;
        let h;
        if self.classes[c].walks.is_empty() {
            let h0 = match self.classes[c].hash_target {
                Some(n) => self.rng.u32(..n.min(self.buckets)),
                None => self.bucket(),
            };
            h = [h0, self.bucket()];
        } else {
            let nclients = self.classes[c].walks.len();
            let client = self.rng.usize(..nclients);
            let cl = &mut self.classes[c];
            let Ok(p) = cl.walks[client].connect(now) else {
                self.s.no_port += 1;
                return;
            };
            port = client as u32 * cl.nports + u32::from(p - cl.port_lo);
            h = tuple_hash(self.seed, c as u64, port as u64, self.buckets);
        }
        self.s.new_flows += 1;
        if self.classes[c].legit {
            self.legit_new += 1;
        }
        // Lookup: walk the original-direction chain, reaping expired entries.
        self.walk_reap(h[0], now);
        let mut reopen = false;
        if port != NONE {
            let old = self.classes[c].by_port[port as usize];
            if old != NONE && self.slab[old as usize].alive {
                // A SYN on a tuple in a closing state: kill and look up again.
                self.remove(old, Kill::Reopen);
                reopen = true;
            }
        }
        // Allocation: count incremented, early_drop when over max.
        if !reopen && self.max > 0 && self.count + 1 > self.max && !self.early_drop(h[0], now) {
            self.gc_flag = true;
            self.refused(c, port, now, true);
            return;
        }
        // Confirm: chain-length limit on both chains.
        if let Some((lo, hi)) = self.chain_limit {
            let limit = lo + self.rng.u32(..=(hi - lo));
            let too_long = h
                .iter()
                .any(|&b| u64::from(self.chains.len(b)) > u64::from(limit) + 1);
            if too_long {
                self.s.insert_failed += 1;
                self.s.chaintoolong += 1;
                self.refused(c, port, now, false);
                return;
            }
        }
        let (vi, phases) = {
            let cl = &self.classes[c];
            let vi = if cl.variants.len() == 1 {
                0
            } else {
                let u = self.rng.f64();
                let mut acc = 0.0;
                let mut k = cl.variants.len() - 1;
                for (i, (p, _)) in cl.variants.iter().enumerate() {
                    acc += p;
                    if u < acc {
                        k = i;
                        break;
                    }
                }
                k
            };
            (
                vi,
                (cl.variants[vi].1[0], cl.variants[vi].1.get(1).map(|p| p.at)),
            )
        };
        let (first, next_at) = phases;
        let idx = self.alloc(Entry {
            h,
            exp: now + self.timeouts.get(first.state.timeout()),
            state: first.state,
            assured: first.assured,
            alive: true,
            class: c as u16,
            variant: vi as u8,
            phase: 0,
            generation: 0,
            port,
            hi: 0,
        });
        if reopen {
            self.s.reopened += 1;
        } else {
            self.s.inserted += 1;
        }
        if port != NONE {
            self.classes[c].by_port[port as usize] = idx;
        }
        let exp = self.slab[idx as usize].exp;
        let lane = self.classes[c].phase_lane[vi];
        match next_at {
            Some(at) if now + at < exp => {
                let generation = self.slab[idx as usize].generation;
                self.push(lane, now + at, EvKind::Phase(idx, generation));
            }
            Some(at) => {
                let generation = self.slab[idx as usize].generation;
                self.push(lane, now + at, EvKind::Phase(idx, generation));
                self.arm(idx);
            }
            None => self.arm(idx),
        }
    }

    fn alloc(&mut self, mut e: Entry) -> u32 {
        e.hi = ticks(e.exp);
        let idx = match self.free.pop() {
            Some(i) => {
                e.generation = self.slab[i as usize].generation;
                self.slab[i as usize] = e;
                i
            }
            None => {
                self.slab.push(e);
                (self.slab.len() - 1) as u32
            }
        };
        for b in e.h {
            let len = self.chains.push(b, Node { idx, lo: e.hi });
            self.s.longest_chain = self.s.longest_chain.max(u64::from(len));
        }
        self.count += 1;
        self.s.peak_entries = self.s.peak_entries.max(self.count);
        self.by_state[e.state as usize] += 1;
        idx
    }

    fn phase(&mut self, idx: u32, generation: u32, now: f64) {
        let e = self.slab[idx as usize];
        if !e.alive || e.generation != generation {
            return;
        }
        let c = e.class as usize;
        let pi = e.phase as usize + 1;
        let Some(&ph) = self.classes[c].variants[e.variant as usize].1.get(pi) else {
            return;
        };
        if e.exp <= now {
            // Expired before its next packet: the packet's lookup reaps it
            // (a new entry for the late packet is not modelled).
            self.remove(idx, Kill::Lookup);
            return;
        }
        self.slab[idx as usize].phase = pi as u8;
        self.set_state(idx, ph.state, ph.assured, now);
        if ph.close && e.port != NONE {
            let cl = &mut self.classes[c];
            let client = e.port / cl.nports;
            cl.walks[client as usize].close((cl.port_lo as u32 + e.port % cl.nports) as u16, now);
        }
        let exp = self.slab[idx as usize].exp;
        let next = self.classes[c].variants[e.variant as usize]
            .1
            .get(pi + 1)
            .map(|n| now - ph.at + n.at);
        if next.is_none_or(|t| t >= exp) {
            self.arm(idx);
        }
        if let Some(t) = next {
            let lane = self.classes[c].phase_lane[e.variant as usize] + pi as u32;
            self.push(lane, t, EvKind::Phase(idx, generation));
        }
    }

    /// Remove every entry expired at `now` (a walk over the whole table:
    /// the GC worker's pass or an observer's dump), counted under `why`.
    fn reap_expired(&mut self, now: f64, why: Kill) {
        let nowk = now.max(0.0) as u64;
        let mut keep = Vec::new();
        while let Some(first) = self.expiry.first_entry() {
            let key = *first.key();
            if key > nowk {
                break;
            }
            for (idx, generation) in first.remove() {
                let e = self.slab[idx as usize];
                if !e.alive || e.generation != generation || e.exp.max(0.0) as u64 != key {
                    continue; // stale: killed, reused or re-armed
                }
                if e.exp <= now {
                    self.remove(idx, why);
                } else {
                    keep.push((idx, generation));
                }
            }
        }
        if !keep.is_empty() {
            self.expiry.entry(nowk).or_default().extend(keep);
        }
    }

    fn gc(&mut self, now: f64) {
        // Reap every expired entry (a pass over the whole table).
        let reaped_before = self.s.gc_reaps;
        self.reap_expired(now, Kill::Expired);
        // Early-drop eviction: the pass kills until expired_count > 256
        // (GC_SCAN_EXPIRED_MAX), counting expired reaps too, then requeues
        // with 1 jiffy, which clears the flag: one batch of 257 kills shared
        // with the expired entries in proportion to their density.
        let at95 = self.count + (self.s.gc_reaps - reaped_before) >= self.max / 100 * 95;
        if self.gc_flag && self.max > 0 && at95 {
            let n = self.slab.len();
            let expired = (self.s.gc_reaps - reaped_before) as f64;
            let evictable: u64 = State::ALL
                .iter()
                .filter(|s| {
                    s.closing()
                        || matches!(
                            s,
                            State::TcpSynSent
                                | State::TcpSynRecv
                                | State::UdpUnreplied
                                | State::UdpReplied
                                | State::IcmpUnreplied
                                | State::IcmpReplied
                        )
                })
                .map(|s| self.by_state[*s as usize])
                .sum();
            let budget = if evictable == 0 {
                0
            } else {
                (257.0 * evictable as f64 / (evictable as f64 + expired)).round() as u32
            };
            if n > 0 && budget > 0 {
                let start = self.rng.usize(..n);
                let mut killed = 0;
                for k in 0..n {
                    let idx = ((start + k) % n) as u32;
                    let e = self.slab[idx as usize];
                    if e.alive && (!e.assured || e.state.closing()) {
                        self.remove(idx, Kill::Evict);
                        killed += 1;
                        if killed >= budget {
                            break;
                        }
                    }
                }
            }
        }
        self.gc_flag = false;
        let next = if self.kernel.at_least(5, 15) {
            self.mean_remaining(now).clamp(1.0, 60.0)
        } else if self.kernel.at_least(5, 14) {
            120.0
        } else {
            16.0
        };
        self.push(GC_LANE, now + next, EvKind::Gc);
    }

    /// gc_worker's average: remaining timeouts clamped to 1..300 s, with 100
    /// dummy entries at 60 s; sampled when the table is large.
    fn mean_remaining(&mut self, now: f64) -> f64 {
        let n = self.slab.len();
        let (mut sum, mut k) = (100.0 * 60.0, 100.0);
        let sample = n > 65536;
        let iters = if sample { 65536 } else { n };
        let mut live = 0.0;
        for i in 0..iters {
            let idx = if sample { self.rng.usize(..n) } else { i };
            let e = self.slab[idx];
            if e.alive {
                // Each entry is visited twice per pass (original and reply node).
                sum += 2.0 * (e.exp - now).clamp(1.0, 300.0);
                k += 2.0;
                live += 1.0;
            }
        }
        if sample && live > 0.0 {
            // Scale the sample to the live population.
            let scale = self.count as f64 / live;
            let s_entries = (sum - 6000.0) * scale;
            return (6000.0 + s_entries) / (100.0 + 2.0 * live * scale);
        }
        sum / k
    }

    fn next_arrival(&mut self, c: usize, now: f64) -> Option<f64> {
        let cl = &mut self.classes[c];
        match cl.arrival {
            Arrival::Constant { rate } => {
                if rate <= 0.0 {
                    return None;
                }
                cl.n += 1;
                Some(cl.n as f64 / rate)
            }
            _ => {
                let m = cl.max_rate;
                if m <= 0.0 {
                    return None;
                }
                let mut t = now;
                for _ in 0..1_000_000 {
                    t += -(1.0 - self.rng.f64()).ln() / m;
                    if self.rng.f64() * m <= cl.arrival.rate_at(t) {
                        return Some(t);
                    }
                }
                None
            }
        }
    }

    fn point(&self, t: f64) -> Point {
        Point {
            t,
            entries: self.count,
            max: self.max,
            drops: self.s.drops,
            early_drops: self.s.early_drops,
            insert_failed: self.s.insert_failed,
            gc_reaps: self.s.gc_reaps,
            by_state: State::ALL
                .iter()
                .filter(|s| self.by_state[**s as usize] > 0)
                .map(|s| (s.key().to_string(), self.by_state[*s as usize]))
                .collect(),
        }
    }
}

fn tuple_hash(seed: u64, class: u64, port: u64, buckets: u32) -> [u32; 2] {
    let mut z =
        seed ^ class.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ port.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let mut next = || {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = z;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    };
    let a = ((next() >> 32) * u64::from(buckets)) >> 32;
    let b = ((next() >> 32) * u64::from(buckets)) >> 32;
    [a as u32, b as u32]
}

fn ph(at: f64, state: State, assured: bool) -> Phase {
    Phase {
        at,
        state,
        assured,
        close: false,
    }
}

/// The phases of a lifecycle, with probabilities.
fn phases(l: &Lifecycle, k: Version) -> Vec<(f64, Vec<Phase>)> {
    use State::*;
    let tcp = |rtt: f64, close: Option<f64>| {
        let mut v = vec![ph(0.0, TcpSynSent, false), ph(rtt, TcpEstablished, true)];
        if let Some(c) = close {
            v.push(Phase {
                at: c.max(rtt),
                state: TcpTimeWait,
                assured: true,
                close: true,
            });
        }
        v
    };
    let udp_new = k.at_least(5, 15);
    let mut out = match *l {
        Lifecycle::ShortHttp { rtt_s, duration_s } => vec![(1.0, tcp(rtt_s, Some(duration_s)))],
        Lifecycle::Keepalive {
            rtt_s, lifetime_s, ..
        } => vec![(1.0, tcp(rtt_s, Some(lifetime_s)))],
        Lifecycle::Idle { rtt_s } => vec![(1.0, tcp(rtt_s, None))],
        Lifecycle::SynFlood | Lifecycle::HashFlood { .. } => {
            vec![(1.0, vec![ph(0.0, TcpSynSent, false)])]
        }
        Lifecycle::UdpFlood => vec![(1.0, vec![ph(0.0, UdpUnreplied, false)])],
        Lifecycle::Icmp { rtt_s } => {
            vec![(
                1.0,
                vec![ph(0.0, IcmpUnreplied, false), ph(rtt_s, IcmpReplied, false)],
            )]
        }
        Lifecycle::Dns { rtt_s, unreplied } => {
            let replied = if udp_new {
                ph(rtt_s, UdpReplied, false)
            } else {
                ph(rtt_s, UdpAssured, true)
            };
            vec![
                (1.0 - unreplied, vec![ph(0.0, UdpUnreplied, false), replied]),
                (unreplied, vec![ph(0.0, UdpUnreplied, false)]),
            ]
        }
        Lifecycle::UdpStream { rtt_s, lifetime_s } => {
            let mut v = vec![ph(0.0, UdpUnreplied, false)];
            if udp_new {
                v.push(ph(rtt_s, UdpReplied, false));
                let a = (2.0f64).max(rtt_s) + 1e-3;
                if lifetime_s > a {
                    v.push(ph(a, UdpAssured, true));
                    // The last packet refreshes the stream timeout.
                    v.push(ph(lifetime_s, UdpAssured, true));
                } else if lifetime_s > rtt_s {
                    v.push(ph(lifetime_s, UdpReplied, false));
                }
            } else {
                v.push(ph(rtt_s, UdpAssured, true));
                if lifetime_s > rtt_s {
                    v.push(ph(lifetime_s, UdpAssured, true));
                }
            }
            vec![(1.0, v)]
        }
    };
    out.retain(|(p, _)| *p > 0.0);
    for (_, v) in &mut out {
        // Phases at the same offset collapse into the later one.
        let mut merged: Vec<Phase> = Vec::new();
        for p in v.iter() {
            match merged.last_mut() {
                Some(last) if p.at <= last.at => {
                    let at = last.at;
                    *last = Phase {
                        at,
                        assured: last.assured || p.assured,
                        ..*p
                    };
                }
                _ => merged.push(*p),
            }
        }
        *v = merged;
    }
    out
}

/// Runs a scenario. `progress` gets the fraction of simulated time done
/// (0..=1), at most about 100 times.
pub fn run(
    sc: &Scenario,
    opt: &RunOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<Timeline, SimError> {
    sc.validate()?;
    if !(opt.duration_s.is_finite() && opt.duration_s > 0.0) {
        return Err(SimError::Options("duration must be > 0".into()));
    }
    if !(opt.step_s.is_finite() && opt.step_s > 0.0) {
        return Err(SimError::Options("step must be > 0".into()));
    }
    if opt.duration_s / opt.step_s > 10_000_000.0 {
        return Err(SimError::Options(
            "more than 10 million samples: raise the step".into(),
        ));
    }
    let kernel = sc.kernel()?;
    let timeouts = sc.timeouts()?;
    let chain_limit = match sc.table.chain_limit {
        Some([0, 0]) => None,
        Some([lo, hi]) => Some((lo, hi)),
        None => kernel.chain_limit(),
    };
    let mut rng = fastrand::Rng::with_seed(opt.seed);
    let mut classes = Vec::new();
    let mut lanes = GC_LANE + 1;
    for (i, c) in sc.classes.iter().enumerate() {
        let distinct = c.sources.clients == 0 || c.sources.spoofed;
        let [a, b] = c.sources.ports;
        let (lo, hi) = (a.min(b), a.max(b));
        let walks: Vec<PortWalk> = if distinct {
            Vec::new()
        } else {
            (0..c.sources.clients)
                .map(|k| PortWalk::new(lo, hi, opt.seed ^ ((i as u64) << 32) ^ u64::from(k)))
                .collect()
        };
        let nports = u32::from(hi) - u32::from(lo) + 1;
        let variants = phases(&c.lifecycle, kernel);
        let lane = lanes;
        lanes += 2;
        let phase_lane = variants
            .iter()
            .map(|(_, v)| {
                let first = lanes;
                lanes += v.len().saturating_sub(1) as u32;
                first
            })
            .collect();
        classes.push(ClassRt {
            arrival: c.arrival.clone(),
            variants,
            legit: c.is_legit(),
            by_port: if distinct {
                Vec::new()
            } else {
                vec![NONE; walks.len() * nports as usize]
            },
            walks,
            port_lo: lo,
            nports,
            hash_target: match c.lifecycle {
                Lifecycle::HashFlood { target_buckets } => Some(target_buckets),
                _ => None,
            },
            n: 0,
            max_rate: c.arrival.max_rate(),
            lane,
            phase_lane,
        });
    }
    let mut sim = Sim {
        seed: rng.u64(..),
        rng,
        max: sc.table.max,
        buckets: sc.table.buckets,
        timeouts,
        kernel,
        chain_limit,
        chains: Chains::new(
            sc.table.buckets,
            2.0 * sc.table.max as f64 / f64::from(sc.table.buckets),
        ),
        slab: Vec::new(),
        free: Vec::new(),
        count: 0,
        by_state: [0; N_STATES],
        events: Lanes::new(lanes as usize),
        expiry: BTreeMap::new(),
        classes,
        gc_flag: false,
        s: Summary::default(),
        legit_new: 0,
        legit_lost: 0,
        victims: Vec::new(),
    };
    // Initial population (counts against max; no phases after).
    let total_init: u64 = sc.initial.iter().map(|i| i.count).sum();
    if sc.table.max > 0 && total_init > sc.table.max {
        return Err(SimError::Options(format!(
            "initial population {total_init} exceeds max {}",
            sc.table.max
        )));
    }
    for init in &sc.initial {
        let st = State::parse(&init.state)
            .ok_or_else(|| SimError::Options(format!("unknown state {}", init.state)))?;
        let [lo, hi] = init.remaining_s;
        for _ in 0..init.count {
            let h = [sim.bucket(), sim.bucket()];
            let exp = lo + (hi - lo) * sim.rng.f64();
            let idx = sim.alloc(Entry {
                h,
                exp,
                state: st,
                assured: init.assured,
                alive: true,
                class: u16::MAX,
                variant: 0,
                phase: 0,
                generation: 0,
                port: NONE,
                hi: 0,
            });
            sim.arm(idx);
        }
    }
    sim.s.peak_entries = sim.count;
    for c in 0..sim.classes.len() {
        if let Some(t) = if matches!(sim.classes[c].arrival, Arrival::Constant { .. }) {
            Some(0.0)
        } else {
            sim.next_arrival(c, 0.0)
        } {
            let lane = sim.classes[c].lane;
            sim.push(lane, t, EvKind::Arrival(c as u16));
        }
    }
    // The GC's first pass: gc_worker starts with a full interval.
    sim.push(
        GC_LANE,
        if kernel.at_least(5, 15) { 1.0 } else { 16.0 },
        EvKind::Gc,
    );

    let nsteps = (opt.duration_s / opt.step_s).floor() as u64;
    let mut series = Vec::with_capacity(nsteps as usize + 1);
    let tail_from = opt.duration_s * 0.9;
    let mut tail: BTreeMap<String, f64> = BTreeMap::new();
    let mut tail_n = 0u64;
    let mut last_progress = 0.0;
    for k in 0..=nsteps {
        let ts = k as f64 * opt.step_s;
        while let Some(t) = sim.events.peek_t() {
            if t >= ts {
                break;
            }
            let Some((t, kind)) = sim.events.pop() else {
                break;
            };
            match kind {
                EvKind::Arrival(c) => {
                    sim.arrival(c as usize, t);
                    if let Some(next) = sim.next_arrival(c as usize, t)
                        && next <= opt.duration_s
                    {
                        let lane = sim.classes[c as usize].lane;
                        sim.push(lane, next, EvKind::Arrival(c));
                    }
                }
                EvKind::Phase(idx, generation) => sim.phase(idx, generation, t),
                EvKind::Gc => sim.gc(t),
                EvKind::PortFree(c, port) => sim.port_free(c as usize, port),
            }
        }
        let p = sim.point(ts);
        if sc.dump_each_step {
            sim.reap_expired(ts, Kill::Lookup);
        }
        if ts >= tail_from {
            tail_n += 1;
            for s in State::ALL {
                *tail.entry(s.key().to_string()).or_default() += sim.by_state[s as usize] as f64;
            }
        }
        series.push(p);
        let f = ts / opt.duration_s;
        if f - last_progress >= 0.01 {
            last_progress = f;
            progress(f.min(1.0));
        }
    }
    progress(1.0);
    let mut s = std::mem::take(&mut sim.s);
    s.final_entries = sim.count;
    s.steady_state = tail
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(k, v)| (k, v / tail_n.max(1) as f64))
        .collect();
    s.legit_lost_share = if sim.legit_new == 0 {
        0.0
    } else {
        sim.legit_lost as f64 / sim.legit_new as f64
    };
    // Little's law per state: rate x dwell.
    let mut ll: BTreeMap<String, f64> = BTreeMap::new();
    for (c, cl) in sc.classes.iter().zip(&sim.classes) {
        let rate = c.arrival.mean_rate(opt.duration_s);
        for (p, v) in &cl.variants {
            for (i, phz) in v.iter().enumerate() {
                let dwell = match v.get(i + 1) {
                    Some(n) if n.state == phz.state => continue,
                    Some(n) => n.at - phz.at,
                    None => {
                        // Same state across refresh phases: count from its first phase.
                        let first = v[..i]
                            .iter()
                            .rposition(|q| q.state != phz.state)
                            .map_or(0, |j| j + 1);
                        v[i].at - v[first].at + sim.timeouts.get(phz.state.timeout())
                    }
                };
                *ll.entry(phz.state.key().to_string()).or_default() += rate * p * dwell;
            }
        }
    }
    s.littles_law = ll.into_iter().filter(|(_, v)| *v > 0.0).collect();
    Ok(Timeline { summary: s, series })
}
