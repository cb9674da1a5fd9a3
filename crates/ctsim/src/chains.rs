// The hash chains, flat: one cache-line-aligned slot per bucket holding its
// length and the first nodes inline, the rest of a long chain in a spill
// vector. A node is an entry index and a lower bound of its expiry, so a
// lookup walk skips live entries without touching them (issue 21).
//
// Invariants: a chain is a sequence with the old Vec semantics (push at the
// end, remove moves the last node into the hole), so walks see entries in
// the same order as before; every node's `lo` is <= ticks(entry.exp).

/// A chain node: the entry's slab index and a lower bound of its expiry in
/// 1/256 s ticks ([`ticks`]).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub idx: u32,
    pub lo: u32,
}

/// Expiry `t` (seconds) as a tick count rounded down, saturating at both
/// ends: `lo > ticks(now)` proves `exp > now` for any `lo <= ticks(exp)`
/// (times here are >= 0; a negative expiry gives 0, which proves nothing).
pub(crate) fn ticks(t: f64) -> u32 {
    // `as` truncates toward zero and saturates; 256 is a power of two, so
    // the product is exact.
    (t * 256.0) as u32
}

/// Eight nodes, one cache line. A bucket's slot is 2, 4 or 8 nodes of a
/// line (never across two): node 0 is the header (idx = length, lo = spill
/// index while the length is over the inline count), the others the
/// chain's first nodes.
#[repr(C, align(64))]
#[derive(Clone, Copy, Default)]
struct Line([Node; 8]);

pub(crate) struct Chains {
    lines: Vec<Line>,
    /// log2 of the slot size in nodes (1, 2 or 3).
    shift: u32,
    /// Inline nodes per slot (slot size - 1).
    cap: u32,
    spills: Vec<Vec<Node>>,
    free_spills: Vec<u32>,
}

impl Chains {
    /// `buckets` chains, the slot sized for `load` nodes per bucket when the
    /// table is full (2 x max / buckets): memory is 16, 32 or 64 bytes a
    /// bucket plus the spilled nodes.
    pub fn new(buckets: u32, load: f64) -> Chains {
        let shift = if load >= 1.5 {
            3
        } else if load >= 0.4 {
            2
        } else {
            1
        };
        let nodes = u64::from(buckets) << shift;
        Chains {
            lines: vec![Line::default(); nodes.div_ceil(8) as usize],
            shift,
            cap: (1 << shift) - 1,
            spills: Vec::new(),
            free_spills: Vec::new(),
        }
    }

    #[inline]
    fn slot(&self, b: u32) -> (usize, usize) {
        let base = (b as usize) << self.shift;
        (base >> 3, base & 7)
    }

    #[inline]
    fn header(&self, b: u32) -> Node {
        let (l, o) = self.slot(b);
        self.lines[l].0[o]
    }

    #[inline]
    pub fn len(&self, b: u32) -> u32 {
        self.header(b).idx
    }

    /// Node `i` (< len) of chain `b`.
    #[inline]
    pub fn get(&self, b: u32, i: u32) -> Node {
        let (l, o) = self.slot(b);
        let line = &self.lines[l].0;
        if i < self.cap {
            line[o + 1 + i as usize]
        } else {
            self.spills[line[o].lo as usize][(i - self.cap) as usize]
        }
    }

    #[inline]
    fn get_mut(&mut self, b: u32, i: u32) -> &mut Node {
        let (l, o) = self.slot(b);
        let cap = self.cap;
        let line = &mut self.lines[l].0;
        if i < cap {
            &mut line[o + 1 + i as usize]
        } else {
            &mut self.spills[line[o].lo as usize][(i - cap) as usize]
        }
    }

    /// Sets node `i`'s expiry bound.
    #[inline]
    pub fn set_lo(&mut self, b: u32, i: u32, lo: u32) {
        self.get_mut(b, i).lo = lo;
    }

    /// Appends a node; returns the new length.
    pub fn push(&mut self, b: u32, node: Node) -> u32 {
        let (l, o) = self.slot(b);
        let h = self.lines[l].0[o];
        let len = h.idx;
        if len < self.cap {
            self.lines[l].0[o + 1 + len as usize] = node;
        } else {
            let s = if len == self.cap {
                let s = match self.free_spills.pop() {
                    Some(s) => s,
                    None => {
                        self.spills.push(Vec::new());
                        (self.spills.len() - 1) as u32
                    }
                };
                self.lines[l].0[o].lo = s;
                s
            } else {
                h.lo
            };
            self.spills[s as usize].push(node);
        }
        self.lines[l].0[o].idx = len + 1;
        len + 1
    }

    /// Removes node `i` (< len): the last node takes its place.
    pub fn remove_at(&mut self, b: u32, i: u32) {
        let (l, o) = self.slot(b);
        let h = self.lines[l].0[o];
        let last = h.idx - 1;
        let moved = if last < self.cap {
            self.lines[l].0[o + 1 + last as usize]
        } else {
            let spill = &mut self.spills[h.lo as usize];
            let n = spill.pop().unwrap_or_default();
            if spill.is_empty() {
                self.free_spills.push(h.lo);
            }
            n
        };
        if i < last {
            *self.get_mut(b, i) = moved;
        }
        self.lines[l].0[o].idx = last;
    }

    /// The first position of entry `idx` in chain `b`.
    pub fn position(&self, b: u32, idx: u32) -> Option<u32> {
        (0..self.len(b)).find(|&i| self.get(b, i).idx == idx)
    }

    /// Lowers every node of `idx` in chain `b` to at most `lo`.
    pub fn lower(&mut self, b: u32, idx: u32, lo: u32) {
        for i in 0..self.len(b) {
            let n = self.get_mut(b, i);
            if n.idx == idx && n.lo > lo {
                n.lo = lo;
            }
        }
    }
}

const _: () = assert!(std::mem::size_of::<Line>() == 64);

#[cfg(test)]
mod tests {
    use super::*;

    /// The chains against Vec<Vec<u32>> with swap_remove (the old layout).
    #[test]
    fn same_sequences_as_vectors_of_vectors() {
        for (buckets, load) in [(1u32, 0.0), (3, 1.0), (5, 8.0), (64, 0.1)] {
            let mut c = Chains::new(buckets, load);
            let mut v: Vec<Vec<u32>> = vec![Vec::new(); buckets as usize];
            let mut rng = fastrand::Rng::with_seed(u64::from(buckets));
            for step in 0..20_000u32 {
                let b = rng.u32(..buckets);
                if rng.u8(..3) > 0 || v[b as usize].is_empty() {
                    let len = c.push(
                        b,
                        Node {
                            idx: step,
                            lo: step,
                        },
                    );
                    v[b as usize].push(step);
                    assert_eq!(len as usize, v[b as usize].len());
                } else {
                    let i = rng.usize(..v[b as usize].len());
                    let idx = v[b as usize][i];
                    assert_eq!(c.position(b, idx), Some(i as u32));
                    v[b as usize].swap_remove(i);
                    c.remove_at(b, i as u32);
                }
                let got: Vec<u32> = (0..c.len(b)).map(|i| c.get(b, i).idx).collect();
                assert_eq!(got, v[b as usize]);
            }
        }
    }

    #[test]
    fn ticks_round_down_and_saturate() {
        assert_eq!(ticks(0.0), 0);
        assert_eq!(ticks(-3.0), 0);
        assert_eq!(ticks(1.0), 256);
        assert_eq!(ticks(1.0 - 1e-9), 255);
        assert_eq!(ticks(1e300), u32::MAX);
    }
}
