// The event queue: FIFO lanes merged by a small heap of their heads.
// Every event the model schedules is `now + c` for a constant c of its
// kind (a phase offset, the connect give-up, the next arrival or GC pass),
// pushed while events are handled in time order, so the events of one kind
// arrive in time order: each kind gets a lane (a VecDeque), and only the
// lanes' heads are in a heap (a handful of entries instead of every event
// in flight). Pops come out in (time, push sequence) order exactly like a
// BinaryHeap of all events; a push that would break its lane's order goes
// to a general heap instead, so the order holds whatever the caller does.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

#[derive(Clone, Copy, Debug)]
struct Key {
    t: f64,
    seq: u64,
}

impl PartialEq for Key {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Key {
    fn cmp(&self, o: &Self) -> Ordering {
        self.t.total_cmp(&o.t).then(self.seq.cmp(&o.seq))
    }
}

/// A lane's head in the heap of heads.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Head {
    key: Key,
    lane: u32,
}

/// An event pushed out of its lane's order, ordered by its key alone.
struct Stray<K> {
    key: Key,
    kind: K,
}
impl<K> PartialEq for Stray<K> {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
    }
}
impl<K> Eq for Stray<K> {}
impl<K> PartialOrd for Stray<K> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<K> Ord for Stray<K> {
    fn cmp(&self, o: &Self) -> Ordering {
        self.key.cmp(&o.key)
    }
}

pub(crate) struct Lanes<K> {
    lanes: Vec<VecDeque<(Key, K)>>,
    heads: BinaryHeap<Reverse<Head>>,
    stray: BinaryHeap<Reverse<Stray<K>>>,
    seq: u64,
}

impl<K: Copy> Lanes<K> {
    pub fn new(lanes: usize) -> Self {
        Lanes {
            lanes: (0..lanes).map(|_| VecDeque::new()).collect(),
            heads: BinaryHeap::new(),
            stray: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Schedules `kind` at `t` on `lane` (< the count given to `new`).
    pub fn push(&mut self, lane: u32, t: f64, kind: K) {
        self.seq += 1;
        let key = Key { t, seq: self.seq };
        let q = &mut self.lanes[lane as usize];
        match q.back() {
            None => {
                q.push_back((key, kind));
                self.heads.push(Reverse(Head { key, lane }));
            }
            Some((last, _)) if last.t.total_cmp(&t).is_le() => q.push_back((key, kind)),
            Some(_) => self.stray.push(Reverse(Stray { key, kind })),
        }
    }

    /// The time of the next event.
    pub fn peek_t(&self) -> Option<f64> {
        match (self.heads.peek(), self.stray.peek()) {
            (Some(Reverse(h)), Some(Reverse(s))) => Some(h.key.min(s.key).t),
            (Some(Reverse(h)), None) => Some(h.key.t),
            (None, Some(Reverse(s))) => Some(s.key.t),
            (None, None) => None,
        }
    }

    /// Takes the next event: (time, kind).
    pub fn pop(&mut self) -> Option<(f64, K)> {
        let lane_first = match (self.heads.peek(), self.stray.peek()) {
            (Some(Reverse(h)), Some(Reverse(s))) => h.key < s.key,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        if !lane_first {
            return self.stray.pop().map(|Reverse(s)| (s.key.t, s.kind));
        }
        let mut top = self.heads.peek_mut()?;
        let lane = top.0.lane as usize;
        let (key, kind) = self.lanes[lane].pop_front()?;
        match self.lanes[lane].front() {
            // The lane's next event replaces it in the heap (one sift).
            Some((next, _)) => top.0.key = *next,
            None => {
                std::collections::binary_heap::PeekMut::pop(top);
            }
        }
        Some((key.t, kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The old queue: every event in one BinaryHeap ordered by (t, seq).
    struct Heap {
        heap: BinaryHeap<Reverse<(Key, u32)>>,
        seq: u64,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Lanes pop the same (time, payload) sequence as one BinaryHeap,
        /// for pushes interleaved with pops, in lane order (now + offset)
        /// or not (a random time), with ties.
        #[test]
        fn same_order_as_one_binary_heap(
            ops in prop::collection::vec((0u8..4, 0u32..6, 0u8..4, 0.0f64..3.0), 1..400),
        ) {
            let mut lanes = Lanes::new(6);
            let mut heap = Heap { heap: BinaryHeap::new(), seq: 0 };
            let offsets = [0.0, 0.0002, 0.005, 0.9, 1.0, 120.0];
            let mut now = 0.0f64;
            let mut payload = 0u32;
            for (op, lane, how, x) in ops {
                if op == 0 {
                    let a = lanes.pop();
                    let b = heap.heap.pop().map(|Reverse((k, p))| (k.t, p));
                    prop_assert_eq!(a, b);
                    if let Some((t, _)) = a {
                        now = t;
                    }
                    continue;
                }
                let t = match how {
                    0 => now + offsets[lane as usize],
                    1 => now,
                    2 => (now * 4.0).round() / 4.0 + 0.25,
                    _ => x,
                };
                payload += 1;
                lanes.push(lane, t, payload);
                heap.seq += 1;
                heap.heap.push(Reverse((Key { t, seq: heap.seq }, payload)));
                prop_assert_eq!(lanes.peek_t(), heap.heap.peek().map(|Reverse((k, _))| k.t));
            }
            loop {
                let a = lanes.pop();
                let b = heap.heap.pop().map(|Reverse((k, p))| (k.t, p));
                prop_assert_eq!(a, b);
                if a.is_none() {
                    break;
                }
            }
        }
    }
}
