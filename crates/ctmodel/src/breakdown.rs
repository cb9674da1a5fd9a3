//! Aggregation of a table into counts: by L3, L4, TCP state, flags, zone,
//! mark, NAT, source, destination, destination port and remaining timeout.
//! Memory grows with the number of distinct keys, never with the number of
//! entries; partial breakdowns from parallel workers [`merge`](Breakdown::merge).

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustc_hash::FxHashMap;

use crate::entry::{Entry, Nat};
use crate::filter::Filter;
use crate::keys::{Keys, StateKey};
use crate::proto::{L3Proto, L4Proto, TCP_STATES};

/// Upper bounds (exclusive, seconds) of the timeout histogram buckets; the
/// last bucket is open. 432000 s is the default tcp_timeout_established.
pub const TIMEOUT_BOUNDS: [u32; 6] = [10, 60, 300, 3600, 86_400, 432_000];
pub const TIMEOUT_LABELS: [&str; 7] =
    ["<10s", "10s-1m", "1m-5m", "5m-1h", "1h-1d", "1d-5d", ">=5d"];

/// Counts of one table (or of the entries a [`Filter`] selects).
#[derive(Debug, Clone, Default)]
pub struct Breakdown {
    filter: Filter,
    /// Entries that matched the filter (all entries without one).
    pub entries: u64,
    /// Entries seen but rejected by the filter.
    pub filtered_out: u64,
    /// By family number ([`L3Proto::family`]).
    l3: PerNumber,
    /// By protocol number ([`L4Proto::number`]).
    l4: PerNumber,
    tcp_state: [u64; TCP_STATES.len()],
    tcp_state_other: FxHashMap<String, u64>,
    pub assured: u64,
    pub unreplied: u64,
    /// Neither ASSURED nor UNREPLIED: replied but not (yet) assured.
    pub other_flags: u64,
    zone: Tally<u16>,
    mark: Tally<u32>,
    nat: [u64; 4],
    src: Addrs,
    dst: Addrs,
    /// By `protocol number << 16 | port`.
    dport: FxHashMap<u32, u64>,
    timeout: [u64; TIMEOUT_LABELS.len()],
    /// Entries whose source gave no timeout (event lines).
    pub no_timeout: u64,
}

fn bump<K: Eq + Hash>(map: &mut FxHashMap<K, u64>, key: K) {
    *map.entry(key).or_insert(0) += 1;
}

fn merge_map<K: Eq + Hash>(into: &mut FxHashMap<K, u64>, from: FxHashMap<K, u64>) {
    for (k, v) in from {
        *into.entry(k).or_insert(0) += v;
    }
}

fn add_arrays<const N: usize>(into: &mut [u64; N], from: &[u64; N]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// Counts indexed by a protocol or family number (0..=255).
#[derive(Debug, Clone)]
struct PerNumber(Box<[u64; 256]>);

impl Default for PerNumber {
    fn default() -> Self {
        Self(Box::new([0; 256]))
    }
}

impl PerNumber {
    fn map<K: Eq + Hash>(&self, key: impl Fn(u8) -> K) -> FxHashMap<K, u64> {
        (0..=255u8)
            .zip(self.0.iter())
            .filter(|(_, c)| **c > 0)
            .map(|(n, c)| (key(n), *c))
            .collect()
    }
}

/// Counts per key with the current run of one key kept aside: zones and
/// marks come in long runs of one value, so most entries touch no table.
#[derive(Debug, Clone, Default)]
struct Tally<K> {
    map: FxHashMap<K, u64>,
    run: Option<(K, u64)>,
}

impl<K: Copy + Eq + Hash> Tally<K> {
    #[inline]
    fn bump(&mut self, key: K) {
        match &mut self.run {
            Some((k, n)) if *k == key => *n += 1,
            run => {
                if let Some((k, n)) = run.replace((key, 1)) {
                    *self.map.entry(k).or_insert(0) += n;
                }
            }
        }
    }

    fn counts(&self) -> FxHashMap<K, u64> {
        let mut map = self.map.clone();
        if let Some((k, n)) = self.run {
            *map.entry(k).or_insert(0) += n;
        }
        map
    }

    fn merge(&mut self, other: Self) {
        merge_map(&mut self.map, other.map);
        if let Some((k, n)) = other.run {
            *self.map.entry(k).or_insert(0) += n;
        }
    }
}

/// Counts per address, IPv4 and IPv6 apart (one multiply per IPv4 hash).
#[derive(Debug, Clone, Default)]
struct Addrs {
    v4: FxHashMap<u32, u64>,
    v6: FxHashMap<u128, u64>,
}

impl Addrs {
    #[inline]
    fn bump(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => bump(&mut self.v4, u32::from(a)),
            IpAddr::V6(a) => bump(&mut self.v6, u128::from(a)),
        }
    }

    fn merge(&mut self, other: Self) {
        merge_map(&mut self.v4, other.v4);
        merge_map(&mut self.v6, other.v6);
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    fn ranked(&self, n: usize) -> Vec<(IpAddr, u64)> {
        let v4 = self
            .v4
            .iter()
            .map(|(a, c)| (IpAddr::V4(Ipv4Addr::from(*a)), *c));
        let v6 = self
            .v6
            .iter()
            .map(|(a, c)| (IpAddr::V6(Ipv6Addr::from(*a)), *c));
        ranked_vec(v4.chain(v6).collect(), n)
    }
}

/// Keys ordered by count, largest first, ties by key; at most `n` (all when `n` is 0).
fn ranked<K: Ord + Clone>(map: &FxHashMap<K, u64>, n: usize) -> Vec<(K, u64)> {
    ranked_vec(map.iter().map(|(k, c)| (k.clone(), *c)).collect(), n)
}

fn ranked_vec<K: Ord>(mut v: Vec<(K, u64)>, n: usize) -> Vec<(K, u64)> {
    let by = |a: &(K, u64), b: &(K, u64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0));
    if n > 0 && v.len() > n {
        v.select_nth_unstable_by(n - 1, by);
        v.truncate(n);
    }
    v.sort_unstable_by(by);
    v
}

pub fn timeout_bucket(seconds: u32) -> usize {
    TIMEOUT_BOUNDS
        .iter()
        .position(|&b| seconds < b)
        .unwrap_or(TIMEOUT_BOUNDS.len())
}

impl Breakdown {
    pub fn new(filter: Filter) -> Self {
        Self {
            filter,
            ..Self::default()
        }
    }

    pub fn add(&mut self, e: &Entry) {
        self.add_keys(&Keys::of(e));
    }

    /// Count one entry from its grouping fields alone.
    #[inline]
    pub fn add_keys(&mut self, k: &Keys) {
        if !self.filter.is_empty() && !self.filter.matches_keys(k) {
            self.filtered_out += 1;
            return;
        }
        self.entries += 1;
        if let Some(l3) = k.l3 {
            self.l3.0[usize::from(l3.family())] += 1;
        }
        let l4 = k.l4;
        self.l4.0[usize::from(l4.number())] += 1;
        if l4 == L4Proto::Tcp {
            match k.state {
                Some(StateKey::Code(c)) if usize::from(c) < TCP_STATES.len() => {
                    self.tcp_state[usize::from(c)] += 1;
                }
                Some(StateKey::Code(c)) => bump(&mut self.tcp_state_other, c.to_string()),
                Some(StateKey::Name(name)) => bump(&mut self.tcp_state_other, name.to_string()),
                None => {}
            }
        }
        match (k.assured, k.unreplied) {
            (false, false) => self.other_flags += 1,
            (assured, unreplied) => {
                self.assured += u64::from(assured);
                self.unreplied += u64::from(unreplied);
            }
        }
        // conntrack -L omits zone=0; netlink omits CTA_ZONE for the default zone.
        self.zone.bump(k.zone);
        self.mark.bump(k.mark);
        self.nat[k.nat as usize] += 1;
        self.src.bump(k.src);
        self.dst.bump(k.dst);
        if let Some(port) = k.dport {
            bump(
                &mut self.dport,
                u32::from(l4.number()) << 16 | u32::from(port),
            );
        }
        match k.timeout {
            Some(t) => self.timeout[timeout_bucket(t)] += 1,
            None => self.no_timeout += 1,
        }
    }

    pub fn merge(&mut self, other: Breakdown) {
        self.entries += other.entries;
        self.filtered_out += other.filtered_out;
        add_arrays(&mut self.l3.0, &other.l3.0);
        add_arrays(&mut self.l4.0, &other.l4.0);
        add_arrays(&mut self.tcp_state, &other.tcp_state);
        merge_map(&mut self.tcp_state_other, other.tcp_state_other);
        self.assured += other.assured;
        self.unreplied += other.unreplied;
        self.other_flags += other.other_flags;
        self.zone.merge(other.zone);
        self.mark.merge(other.mark);
        add_arrays(&mut self.nat, &other.nat);
        self.src.merge(other.src);
        self.dst.merge(other.dst);
        merge_map(&mut self.dport, other.dport);
        add_arrays(&mut self.timeout, &other.timeout);
        self.no_timeout += other.no_timeout;
    }

    pub fn l3(&self) -> Vec<(String, u64)> {
        ranked(&self.l3.map(L3Proto::from_family), 0)
            .into_iter()
            .map(|(k, c)| (k.to_string(), c))
            .collect()
    }

    pub fn l4(&self) -> Vec<(String, u64)> {
        ranked(&self.l4.map(L4Proto::from_number), 0)
            .into_iter()
            .map(|(k, c)| (k.to_string(), c))
            .collect()
    }

    pub fn tcp_state(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = TCP_STATES
            .iter()
            .zip(self.tcp_state)
            .filter(|(_, c)| *c > 0)
            .map(|(n, c)| ((*n).to_string(), c))
            .collect();
        v.extend(ranked(&self.tcp_state_other, 0));
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    pub fn zone(&self) -> Vec<(u16, u64)> {
        ranked(&self.zone.counts(), 0)
    }

    pub fn mark(&self, n: usize) -> Vec<(u32, u64)> {
        ranked(&self.mark.counts(), n)
    }

    pub fn nat(&self) -> Vec<(&'static str, u64)> {
        Nat::ALL
            .iter()
            .map(|n| (n.name(), self.nat[*n as usize]))
            .filter(|(_, c)| *c > 0)
            .collect()
    }

    pub fn top_src(&self, n: usize) -> Vec<(IpAddr, u64)> {
        self.src.ranked(n)
    }

    pub fn top_dst(&self, n: usize) -> Vec<(IpAddr, u64)> {
        self.dst.ranked(n)
    }

    /// Destination ports as `proto/port`.
    pub fn top_dport(&self, n: usize) -> Vec<(String, u64)> {
        let by_proto: FxHashMap<(L4Proto, u16), u64> = self
            .dport
            .iter()
            .map(|(k, c)| ((L4Proto::from_number((k >> 16) as u8), *k as u16), *c))
            .collect();
        ranked(&by_proto, n)
            .into_iter()
            .map(|((p, port), c)| (format!("{p}/{port}"), c))
            .collect()
    }

    pub fn timeout_histogram(&self) -> Vec<(&'static str, u64)> {
        TIMEOUT_LABELS.iter().copied().zip(self.timeout).collect()
    }

    /// Distinct sources and destinations: the key space the exact counts cover.
    pub fn distinct(&self) -> (usize, usize) {
        (self.src.len(), self.dst.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        assert_eq!(timeout_bucket(0), 0);
        assert_eq!(timeout_bucket(9), 0);
        assert_eq!(timeout_bucket(10), 1);
        assert_eq!(timeout_bucket(431_999), 5);
        assert_eq!(timeout_bucket(432_000), 6);
    }

    #[test]
    fn ranked_orders_by_count_then_key() {
        let mut m = FxHashMap::default();
        for (k, c) in [(3u16, 5u64), (1, 5), (2, 9), (4, 1)] {
            m.insert(k, c);
        }
        assert_eq!(ranked(&m, 2), vec![(2, 9), (1, 5)]);
        assert_eq!(ranked(&m, 0).len(), 4);
    }
}
