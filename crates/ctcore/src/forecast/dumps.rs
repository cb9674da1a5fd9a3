//! The two-dump estimate's inputs, pure: per class, what the first dump
//! held, how many of those ids are still in the same class in the second
//! dump (the survivors), and the second dump's entries that were not in
//! that class before (the arrivals; new flows when the first dump did not
//! hold the id at all). Identity is [`ctmodel::flows::flow_id`] (id plus
//! tuple). Flows that came and went between the dumps are missed, and no
//! exit has a time: the estimator uses the survivors' share instead (a
//! censored estimate, see `estimate`), never the class timeout. Used by
//! ctdoctor's `forecast` without events and by its exporter on consecutive
//! breakdown dumps.

use std::collections::BTreeMap;

use ctmodel::Entry;
use ctmodel::flows::{ClassKey, flow_id};

/// Per class, between two dumps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpClass {
    /// Entries in the class in the second dump.
    pub live: u64,
    /// Of those, ids the first dump did not hold at all: new flows.
    pub new: u64,
    /// Of those, ids not in this class in the first dump (new or moved).
    pub entered: u64,
    /// Entries (with an id) in the class in the first dump.
    pub first: u64,
    /// Of those, still in the class in the second dump.
    pub stayed: u64,
}

/// The first dump: flow ids with their class, sorted (10 bytes an entry).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ids {
    ids: Vec<(u64, u16)>,
    names: Vec<ClassKey>,
}

impl Ids {
    fn class_of(&self, id: u64) -> Option<u16> {
        self.ids
            .binary_search_by_key(&id, |p| p.0)
            .ok()
            .map(|i| self.ids[i].1)
    }

    pub fn contains(&self, id: u64) -> bool {
        self.class_of(id).is_some()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Entries per class.
    fn per_class(&self) -> BTreeMap<ClassKey, u64> {
        let mut n = vec![0u64; self.names.len()];
        for (_, c) in &self.ids {
            n[usize::from(*c)] += 1;
        }
        self.names.iter().cloned().zip(n).collect()
    }
}

/// The second dump, folded against the first's ids.
#[derive(Debug, Clone, Default)]
pub struct Arrivals {
    classes: BTreeMap<ClassKey, DumpClass>,
    next: Ids,
}

/// Classes beyond this share `ClassKey::other()` (as in the tracker).
const MAX_CLASSES: usize = 1024;

impl Arrivals {
    /// Count `e` (of the second dump) in its class against `first`.
    /// Entries without an id count as live only.
    pub fn add(&mut self, first: &Ids, e: &Entry) {
        let mut key = ClassKey::of(e);
        let idx = match self.next.names.iter().position(|n| *n == key) {
            Some(i) => i,
            None if self.next.names.len() < MAX_CLASSES => {
                self.next.names.push(key.clone());
                self.next.names.len() - 1
            }
            None => {
                key = ClassKey::other();
                match self.next.names.iter().position(|n| *n == key) {
                    Some(i) => i,
                    None => {
                        self.next.names.push(key.clone());
                        self.next.names.len() - 1
                    }
                }
            }
        };
        let c = self.classes.entry(key.clone()).or_default();
        c.live += 1;
        let Some(id) = flow_id(e) else { return };
        self.next.ids.push((id, idx as u16));
        match first.class_of(id) {
            Some(prev) if first.names.get(usize::from(prev)) == Some(&key) => c.stayed += 1,
            Some(_) => c.entered += 1,
            None => {
                c.entered += 1;
                c.new += 1;
            }
        }
    }

    /// Per class figures and the second dump's ids, the first of the next pair.
    pub fn finish(mut self, first: &Ids) -> (BTreeMap<ClassKey, DumpClass>, Ids) {
        for (class, n) in first.per_class() {
            self.classes.entry(class).or_default().first = n;
        }
        self.next.ids.sort_unstable_by_key(|p| p.0);
        self.next.ids.dedup_by_key(|p| p.0);
        (self.classes, self.next)
    }
}

/// The first dump's ids alone (fold a dump with an empty `first`).
pub fn ids_of<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Ids {
    let mut a = Arrivals::default();
    let none = Ids::default();
    for e in entries {
        a.add(&none, e);
    }
    a.finish(&none).1
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctmodel::entry::{L4Tuple, Status, Tuple};
    use ctmodel::proto::L4Proto;
    use std::net::{IpAddr, Ipv4Addr};

    fn udp(id: Option<u32>, sport: u16, replied: bool) -> Entry {
        let t = Tuple {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            l4: L4Tuple::Ports { sport, dport: 53 },
            zone: None,
        };
        Entry {
            l4: Some(L4Proto::Udp),
            orig: t,
            reply: t,
            status: if replied {
                Status::SEEN_REPLY
            } else {
                Status::CONFIRMED
            },
            id,
            ..Entry::default()
        }
    }

    #[test]
    fn survivors_movers_and_new_flows_per_class() {
        let first = ids_of(&[
            udp(Some(3), 3, false),
            udp(Some(5), 5, false),
            udp(Some(7), 7, false),
            udp(Some(9), 9, false),
        ]);
        assert_eq!(first.len(), 4);
        let mut a = Arrivals::default();
        // 3 stays unreplied, 9 got its reply (moved), 8 and 10 are new.
        for (id, replied) in [(3, false), (8, false), (9, true), (10, true)] {
            a.add(&first, &udp(Some(id), id as u16, replied));
        }
        a.add(&first, &udp(None, 1, false));
        let (classes, next) = a.finish(&first);
        let un = classes["udp/UNREPLIED"];
        assert_eq!(
            un,
            DumpClass {
                live: 3,
                new: 1,
                entered: 1,
                first: 4,
                stayed: 1
            }
        );
        let re = classes["udp/REPLIED"];
        assert_eq!((re.live, re.new, re.entered, re.first), (2, 1, 2, 0));
        assert!(next.contains(flow_id(&udp(Some(8), 8, false)).expect("id")));
        assert!(!next.contains(flow_id(&udp(Some(7), 7, false)).expect("id")));
    }

    #[test]
    fn a_reused_id_with_another_tuple_is_a_new_flow() {
        let first = ids_of(&[udp(Some(42), 1000, false)]);
        let mut a = Arrivals::default();
        a.add(&first, &udp(Some(42), 2000, false));
        let (classes, _) = a.finish(&first);
        let un = classes["udp/UNREPLIED"];
        assert_eq!((un.new, un.stayed, un.first), (1, 0, 1));
    }
}
