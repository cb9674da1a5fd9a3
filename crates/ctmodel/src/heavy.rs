//! Bounded "top N by count" for streams with unbounded distinct keys (a
//! spoofed flood gives every new flow its own source): the space-saving
//! heavy-hitters counter (Metwally, Agrawal, El Abbadi 2005). At most
//! `capacity` keys are held; when a new key arrives and the table is full,
//! it replaces the key with the smallest count and inherits that count as
//! its over-estimate (`error`). Any key whose true count exceeds
//! total / capacity is guaranteed to be held, and a held key's count is at
//! most `error` above its true count. Memory: `capacity` x (key + 16 bytes)
//! plus the index, fixed whatever the stream.

use std::collections::BTreeSet;
use std::hash::Hash;

use rustc_hash::FxHashMap;

#[derive(Debug, Clone)]
pub struct SpaceSaving<K: Eq + Hash + Ord + Clone> {
    capacity: usize,
    /// Key -> (count, over-estimate).
    counts: FxHashMap<K, (u64, u64)>,
    /// (count, key), to find the smallest in O(log n).
    order: BTreeSet<(u64, K)>,
    total: u64,
}

impl<K: Eq + Hash + Ord + Clone> SpaceSaving<K> {
    /// A counter holding at most `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            counts: FxHashMap::default(),
            order: BTreeSet::new(),
            total: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keys held now (never more than the capacity).
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Everything added, held or not.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn add(&mut self, key: K) {
        self.total += 1;
        if let Some((c, _)) = self.counts.get_mut(&key) {
            self.order.remove(&(*c, key.clone()));
            *c += 1;
            self.order.insert((*c, key));
            return;
        }
        let (count, error) = if self.counts.len() < self.capacity {
            (1, 0)
        } else {
            let Some((min, evicted)) = self.order.pop_first() else {
                return;
            };
            self.counts.remove(&evicted);
            (min + 1, min)
        };
        self.counts.insert(key.clone(), (count, error));
        self.order.insert((count, key));
    }

    /// Keys by count, largest first, ties by key; at most `n` (all when 0).
    /// Counts are upper bounds (exact while fewer than `capacity` distinct
    /// keys were seen).
    pub fn top(&self, n: usize) -> Vec<(K, u64)> {
        let mut v: Vec<(K, u64)> = self
            .counts
            .iter()
            .map(|(k, (c, _))| (k.clone(), *c))
            .collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        if n > 0 {
            v.truncate(n);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_below_capacity() {
        let mut s = SpaceSaving::new(4);
        for k in [1, 2, 2, 3, 3, 3] {
            s.add(k);
        }
        assert_eq!(s.top(0), vec![(3, 3), (2, 2), (1, 1)]);
        assert_eq!(s.top(1), vec![(3, 3)]);
        assert_eq!(s.total(), 6);
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_bounded_and_keeps_the_heavy_hitter() {
        let mut s = SpaceSaving::new(64);
        for i in 0..100_000u32 {
            // Every third addition is the heavy key, the rest all distinct.
            s.add(if i % 3 == 0 { u32::MAX } else { i });
        }
        assert!(s.len() <= 64);
        let top = s.top(1);
        assert_eq!(top[0].0, u32::MAX);
        // Over-estimated by at most total / capacity.
        let truth = 33_334;
        assert!(
            top[0].1 >= truth && top[0].1 <= truth + 100_000 / 64,
            "{top:?}"
        );
    }
}
