//! ctlab: what the integration tests and benchmarks need to build real
//! conntrack tables: network namespaces that delete themselves (even when a
//! test panics), a deterministic mix of entries, and bulk insertion over
//! ctnetlink. Never touches the initial namespace's table.

pub mod mix;
pub mod netns;

pub use mix::{Mix, fill, generate};
pub use netns::Netns;
