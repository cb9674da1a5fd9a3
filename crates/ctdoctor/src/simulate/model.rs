//! The one place that calls the simulator crate (ctsim): builds its
//! scenario from a `Spec` and returns the timeline in the contract's
//! shape. Nothing else in `simulate` knows ctsim's types.

use anyhow::Result;

use super::Spec;
use super::render::Timeline;

/// Built-in scenario names (ctsim's `builtin_names()` once merged; this
/// list is the names its brief promises).
pub fn builtin_names() -> &'static [&'static str] {
    &[
        "nginx-short-upstream",
        "nat-gateway",
        "k8s-dns-churn",
        "syn-flood",
        "idle-attack",
        "udp-flood",
        "hash-flood",
    ]
}

/// Run the model. `progress` gets the done fraction (0..=1).
pub fn run(spec: &Spec, progress: &mut dyn FnMut(f64)) -> Result<Timeline> {
    let _ = (spec, progress);
    anyhow::bail!(
        "the simulator model (crate ctsim, branch simcore) is not part of this build yet: \
         arguments, host defaults, plan and live readers and the renderers are ready, the model is not"
    )
}
