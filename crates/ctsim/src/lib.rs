// ctsim: a pure, deterministic, event-driven model of the conntrack table
// (issue 10). Scenarios in, a Timeline (summary + series) out; no I/O, no
// clock. The CLI (`ctdoctor simulate`) and the lab call `run`.

mod chains;
mod lanes;
mod model;
#[cfg(any(test, feature = "reference"))]
pub mod reference;
mod scenario;

pub use ctmodel::ephemeral::{NoPort, PortWalk};
pub use model::{Point, RunOptions, SimError, State, Summary, Timeline, run};
pub use scenario::{
    Arrival, Class, Initial, Lifecycle, MAX_ENTRIES, Scenario, ScenarioError, Sources, Table,
};
