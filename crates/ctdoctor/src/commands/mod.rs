//! One module per command: its arguments (clap), its run over the
//! [`cthost::Host`] and its report ([`crate::output::Render`] or, for the
//! commands that stream, its own writer). `main` only wires them.

pub mod apply;
pub mod assets;
pub mod check;
pub mod evict;
pub mod export;
pub mod forecast;
pub mod lab;
pub mod plan;
pub mod simulate;
pub mod top;
pub mod watch;
