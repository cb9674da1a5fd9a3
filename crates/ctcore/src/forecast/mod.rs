//! The forecast, pure: when does the table fill, and what change avoids it.
//! [`estimate`] turns per-class arrivals and lifetimes, the count's samples
//! and the timeouts into a [`estimate::Forecast`]; [`dumps`] derives the
//! arrivals from two dumps when no events are available. The observing
//! (events, dumps, the clock) is the caller's.

pub mod dumps;
pub mod estimate;
