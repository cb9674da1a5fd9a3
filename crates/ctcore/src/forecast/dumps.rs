//! The two-dump estimate's inputs, pure: per class, the entries of a second
//! dump whose conntrack id the first dump did not hold are the arrivals
//! between them. Nothing is known of their exits (flows that came and went
//! between the dumps are missed), so the estimator falls back to the class
//! timeout for the time in state. Used by ctdoctor's `forecast` without
//! events and by its exporter on consecutive breakdown dumps (they dump).

use std::collections::BTreeMap;

use ctmodel::Entry;
use ctmodel::flows::{ClassKey, ClassStats};

/// The first dump's ids, sorted (4 bytes an entry).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ids(Vec<u32>);

impl Ids {
    pub fn new(mut ids: Vec<u32>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        Self(ids)
    }

    pub fn contains(&self, id: u32) -> bool {
        self.0.binary_search(&id).is_ok()
    }
}

/// The second dump, folded against the first's ids.
#[derive(Debug, Clone, Default)]
pub struct Arrivals {
    classes: BTreeMap<ClassKey, ClassStats>,
    ids: Vec<u32>,
}

impl Arrivals {
    /// Count `e` (of the second dump) in its class; an arrival when its id
    /// is not in `first`. Entries without an id count as live only.
    pub fn add(&mut self, first: &Ids, e: &Entry) {
        let c = self.classes.entry(ClassKey::of(e)).or_default();
        c.live += 1;
        if let Some(id) = e.id {
            self.ids.push(id);
            if !first.contains(id) {
                c.entered += 1;
                c.still_in += 1;
            }
        }
    }

    /// Per class stats (arrivals, live) and the second dump's ids, the
    /// first of the next pair.
    pub fn finish(self) -> (BTreeMap<ClassKey, ClassStats>, Ids) {
        (self.classes, Ids::new(self.ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctmodel::entry::{L4Tuple, Status, Tuple};
    use ctmodel::proto::L4Proto;
    use std::net::{IpAddr, Ipv4Addr};

    fn udp(id: Option<u32>, replied: bool) -> Entry {
        let t = Tuple {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            l4: L4Tuple::Ports {
                sport: 4000,
                dport: 53,
            },
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
    fn new_ids_are_arrivals_per_class() {
        let first = Ids::new(vec![7, 3, 5, 3]);
        assert_eq!(first, Ids(vec![3, 5, 7]));
        let mut a = Arrivals::default();
        for (id, replied) in [(3, false), (8, false), (9, true), (10, true)] {
            a.add(&first, &udp(Some(id), replied));
        }
        a.add(&first, &udp(None, false));
        let (classes, next) = a.finish();
        let un = classes["udp/UNREPLIED"];
        assert_eq!((un.entered, un.still_in, un.live, un.exited), (1, 1, 3, 0));
        let re = classes["udp/REPLIED"];
        assert_eq!((re.entered, re.live), (2, 2));
        assert!(next.contains(8) && next.contains(3) && !next.contains(7));
    }
}
