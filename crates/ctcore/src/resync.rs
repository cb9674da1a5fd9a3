//! When ctdoctor's `watch` (and, at the end of its window, `forecast`)
//! re-reads the table with a dump instead of trusting its event-fed live
//! set. Pure: the caller passes what it observed and does the dump.
//!
//! The live set drifts when the kernel drops events (ENOBUFS) and, with
//! nf_conntrack_events=2, when entries created before we subscribed leave:
//! without an event extension they send no DESTROY (KERNEL.md §12; on 6.18
//! here this holds for entries created over ctnetlink, while entries
//! created by packets did send DESTROY: tests/events_kernel.rs).
//! A dump walks the whole global hash (240 ms with 1M entries elsewhere,
//! KERNEL.md §11), so drift alone triggers one at most every 30 s.

use std::fmt;

/// Why a resync dump runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The kernel dropped events (ENOBUFS): the live set is wrong.
    Lost,
    /// The table's count and the tracker's live entries differ by more than 1%.
    Drift { count: u64, live: u64 },
    /// With a filter the count cannot be compared: a dump every 5 minutes.
    Periodic,
    /// The filter changed (TUI `/`): the live set must be rebuilt.
    Filter,
    /// nf_conntrack_events was turned on while watching.
    EventsOn,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Lost => f.write_str("events lost (ENOBUFS)"),
            Why::Drift { count, live } => {
                write!(f, "count {count} vs {live} tracked from events")
            }
            Why::Periodic => f.write_str("periodic (filtered view)"),
            Why::Filter => f.write_str("filter changed"),
            Why::EventsOn => f.write_str("nf_conntrack_events turned on"),
        }
    }
}

/// After lost events (ENOBUFS) the socket still holds events queued before
/// the loss: they are drained (read and applied) before the resync dump,
/// or they would be applied on top of the dump's fresher state (a DESTROY
/// of an entry since re-created, a NEW of one long gone) and the live set
/// would drift until the next drift dump, up to [`DRIFT_EVERY`] later.
/// The drain stops when a read returns nothing or after this many seconds
/// (a flood refills the queue as fast as it is read).
pub const DRAIN_BOUND_S: f64 = 1.0;

/// Whether the drain before a resync dump is over: the last read returned
/// `events` events (and `lost` said whether it overflowed again) after
/// `elapsed` seconds of draining.
pub fn drained(events: u64, lost: bool, elapsed: f64) -> bool {
    (events == 0 && !lost) || elapsed >= DRAIN_BOUND_S
}

/// Minimum seconds between two drift-triggered dumps.
pub const DRIFT_EVERY: f64 = 30.0;
/// Seconds between two dumps of a filtered view (its drift is invisible).
pub const FILTERED_EVERY: f64 = 300.0;
/// Differences up to this many entries never count as drift: events in
/// flight between the stats request and the tracker (a few at thousands of
/// new/s) would otherwise force a dump every 30 s on a tiny table.
pub const DRIFT_FLOOR: u64 = 10;

/// Whether to dump now. `lost`: an ENOBUFS since the last dump; `count`:
/// the namespace's count from GET_STATS; `live`: the tracker's;
/// `filtered`: the tracker only holds entries matching a filter;
/// `since`: seconds since the last dump.
pub fn due(lost: bool, count: u64, live: u64, filtered: bool, since: f64) -> Option<Why> {
    if lost {
        return Some(Why::Lost);
    }
    if filtered {
        return (since >= FILTERED_EVERY).then_some(Why::Periodic);
    }
    (drifted(count, live) && since >= DRIFT_EVERY).then_some(Why::Drift { count, live })
}

/// Whether the tracker's live set and the count differ by more than 1%
/// (and more than [`DRIFT_FLOOR`] entries). `forecast` asks it too.
pub fn drifted(count: u64, live: u64) -> bool {
    let diff = count.abs_diff(live);
    // > 1% of count, compared in integers: diff * 100 > count.
    diff > DRIFT_FLOOR && diff.saturating_mul(100) > count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_events_resync_at_once() {
        assert_eq!(due(true, 100, 100, false, 0.0), Some(Why::Lost));
        assert_eq!(due(true, 100, 5, true, 0.0), Some(Why::Lost));
    }

    #[test]
    fn drift_above_one_percent_resyncs_at_most_every_30_s() {
        // 1,000,000 vs 989,999: 1.0001% off.
        let why = Some(Why::Drift {
            count: 1_000_000,
            live: 989_999,
        });
        assert_eq!(due(false, 1_000_000, 989_999, false, 30.0), why);
        assert_eq!(due(false, 1_000_000, 989_999, false, 29.9), None);
        // Exactly 1% is not more than 1%.
        assert_eq!(due(false, 1_000_000, 990_000, false, 60.0), None);
        // The tracker holding more than the table (missed DESTROYs) counts too.
        assert!(due(false, 1000, 1100, false, 31.0).is_some());
    }

    #[test]
    fn small_differences_never_resync() {
        assert_eq!(due(false, 100, 90, false, 100.0), None);
        assert!(due(false, 100, 89, false, 100.0).is_some());
        assert_eq!(due(false, 0, 10, false, 100.0), None);
    }

    #[test]
    fn the_backlog_is_drained_until_empty_within_the_bound() {
        assert!(!drained(500, false, 0.1));
        assert!(!drained(0, true, 0.1));
        assert!(drained(0, false, 0.1));
        assert!(drained(500, true, DRAIN_BOUND_S));
    }

    #[test]
    fn filtered_views_resync_periodically() {
        assert_eq!(due(false, 1_000_000, 5, true, 299.0), None);
        assert_eq!(due(false, 1_000_000, 5, true, 300.0), Some(Why::Periodic));
    }
}
