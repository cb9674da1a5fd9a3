//! ctmodel: the conntrack entry model, the text dump parser and the table
//! breakdown. Pure: no I/O beyond reading from a [`std::io::Read`].
//!
//! - [`entry`]: [`Entry`], [`Tuple`], [`Status`], [`Nat`]
//! - [`proto`]: L3/L4 protocol numbers and state names
//! - [`text`]: one line of `/proc/net/nf_conntrack` or `conntrack -L` output
//! - [`textkeys`]: the fast path: a line's [`keys::Keys`] without a whole parse
//! - [`scan`]: streaming (and parallel) parsing of a whole dump
//! - [`breakdown`]: aggregation by protocol, state, flags, zone, mark, NAT,
//!   top sources/destinations/ports and remaining timeout
//! - [`keys`]: the fields of one entry a breakdown and a filter read
//! - [`filter`]: `key=value` selection on the same keys
//! - [`flows`]: live entries from a dump plus ctnetlink events, what each
//!   interval created, and per-class arrivals and dwell (Little's law inputs)
//! - [`heavy`]: bounded top-N counting (space-saving) for unbounded key streams
//! - [`ephemeral`]: the kernel's ephemeral port walk for one client (for
//!   models of one-client load tests)

pub mod breakdown;
pub mod entry;
pub mod ephemeral;
pub mod filter;
pub mod flows;
pub mod heavy;
pub mod keys;
pub mod proto;
pub mod scan;
pub mod text;
pub mod textkeys;

pub use breakdown::Breakdown;
pub use entry::{Counters, Entry, L4Tuple, Nat, Status, Tuple};
pub use filter::Filter;
pub use proto::{L3Proto, L4Proto, State};
