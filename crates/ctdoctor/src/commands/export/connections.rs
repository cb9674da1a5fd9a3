//! The exporter's table of open connections (issue 21): at most `max` at
//! once, so memory and descriptors stay bounded whatever clients do. When
//! it is full, a new connection evicts the oldest one that is not serving
//! a request, first among those that never completed a request head (a
//! flood of idle or slowloris sockets), then among idle keep-alive ones.
//! A new connection therefore always gets in and is the last to go, so a
//! flood cannot starve a scrape the way a FIFO of waiting sockets does;
//! only when every connection is mid-request is the newcomer closed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// One open connection, shared by its task (which waits on `close`) and
/// by the request handler (which marks it busy while a request runs).
#[derive(Debug, Default)]
pub struct Slot {
    /// A request head was read once: the client is speaking HTTP.
    served: AtomicBool,
    /// Requests being handled now (0 or 1 on HTTP/1.1).
    busy: AtomicUsize,
    close: tokio::sync::Notify,
}

impl Slot {
    /// A request head arrived: until the guard drops, the connection is
    /// not evicted.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.served.store(true, Ordering::Relaxed);
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(self))
    }

    pub fn served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    /// Resolves once the table evicted this connection.
    pub async fn evicted(&self) {
        self.close.notified().await;
    }

    fn idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }
}

/// Held while a request is handled.
#[derive(Debug)]
pub struct Busy(Arc<Slot>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug)]
pub struct Table {
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    /// By accept order: the first entries are the oldest.
    open: BTreeMap<u64, Arc<Slot>>,
}

impl Table {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The critical sections cannot panic half-way; a poisoned lock
        // still holds a consistent map.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admit a new connection, evicting one if the table is full; `None`
    /// when every open connection is handling a request (close the new
    /// one: the exporter is busy with real work).
    pub fn admit(self: &Arc<Self>) -> Option<Entry> {
        let mut t = self.lock();
        if t.open.len() >= self.max && !t.evict_one() {
            return None;
        }
        let id = t.next;
        t.next += 1;
        let slot = Arc::new(Slot::default());
        t.open.insert(id, Arc::clone(&slot));
        Some(Entry {
            table: Arc::clone(self),
            id,
            slot,
        })
    }

    /// Evict one connection now (the process is out of descriptors);
    /// false when none can go.
    pub fn evict_one(&self) -> bool {
        self.lock().evict_one()
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().open.len()
    }
}

impl Inner {
    fn evict_one(&mut self) -> bool {
        let victim = self
            .open
            .iter()
            .find(|(_, s)| !s.served() && s.idle())
            .or_else(|| self.open.iter().find(|(_, s)| s.idle()))
            .map(|(id, _)| *id);
        let Some(slot) = victim.and_then(|id| self.open.remove(&id)) else {
            return false;
        };
        // notify_one keeps the wake-up if the task is not waiting yet.
        slot.close.notify_one();
        true
    }
}

/// A connection's place in the table; dropping it frees the place.
#[derive(Debug)]
pub struct Entry {
    table: Arc<Table>,
    id: u64,
    slot: Arc<Slot>,
}

impl Entry {
    pub fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.table.lock().open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_evicts_the_oldest_that_never_sent_a_request() {
        let t = Table::new(3);
        let a = t.admit().expect("a");
        let b = t.admit().expect("b");
        let c = t.admit().expect("c");
        // a sent a request (served), b and c never did: b goes first.
        drop(a.slot().begin());
        let d = t.admit().expect("d");
        assert_eq!(t.open(), 3);
        assert!(!t.lock().open.contains_key(&b.id));
        // Then c, then d: the served a outlives every newer fresh one.
        let _e = t.admit().expect("e");
        assert!(!t.lock().open.contains_key(&c.id));
        let _f = t.admit().expect("f");
        assert!(!t.lock().open.contains_key(&d.id));
        assert!(t.lock().open.contains_key(&a.id));
        assert_eq!(t.open(), 3);
    }

    #[test]
    fn busy_connections_are_never_evicted() {
        let t = Table::new(2);
        let a = t.admit().expect("a");
        let b = t.admit().expect("b");
        let _ga = a.slot().begin();
        let _gb = b.slot().begin();
        assert!(t.admit().is_none());
        assert_eq!(t.open(), 2);
        drop(_gb);
        assert!(t.admit().is_some());
        assert!(t.lock().open.contains_key(&a.id));
    }

    #[test]
    fn dropping_an_entry_frees_its_place() {
        let t = Table::new(1);
        let a = t.admit().expect("a");
        drop(a);
        assert_eq!(t.open(), 0);
        let _b = t.admit().expect("b");
        assert_eq!(t.open(), 1);
    }
}
