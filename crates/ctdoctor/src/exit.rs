//! Exit statuses: the one mapping from a command's outcome to the
//! process's code (each command's page in docs/ lists its codes), and the one
//! error type for bad usage found after clap parsed the arguments.
//!
//! 0 success, 1 a failure, 2 bad usage; `check` and `forecast` are
//! monitoring plugins, so anything that stops them from judging, bad usage
//! included, is UNKNOWN (3), never a misleading 1 or 2 (CRITICAL). A closed
//! pipe (`ctdoctor top | head`) is success.

use std::io;

use ctmodel::filter::FilterError;

pub const FAILED: u8 = 1;
pub const USAGE: u8 = 2;
pub const UNKNOWN: u8 = 3;

/// Bad usage that clap cannot see (flags that exclude each other, a value
/// out of a range another flag sets, a malformed filter): exit 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

impl From<FilterError> for Usage {
    fn from(e: FilterError) -> Self {
        Self(e.to_string())
    }
}

/// Whether the command is a monitoring plugin (`check`, `forecast`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Plugin,
    Tool,
}

/// The exit code of an argument error from clap.
pub fn of_parse_error(e: &clap::Error, kind: Kind) -> u8 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
        _ if kind == Kind::Plugin => UNKNOWN,
        _ => USAGE,
    }
}

/// The exit code of a command that failed with `e`.
pub fn of_error(e: &anyhow::Error, kind: Kind) -> u8 {
    if is_broken_pipe(e) {
        0
    } else if kind == Kind::Plugin {
        UNKNOWN
    } else if e.downcast_ref::<Usage>().is_some() {
        USAGE
    } else {
        FAILED
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mapping_for_every_command() {
        let usage = anyhow::Error::new(Usage("--json and --csv exclude each other".into()));
        let filter = anyhow::Error::new(Usage::from(FilterError::Syntax("x".into())));
        let failed = anyhow::anyhow!("cannot open ctnetlink");
        let pipe = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe)).context("write");
        for (e, tool, plugin) in [
            (&usage, USAGE, UNKNOWN),
            (&filter, USAGE, UNKNOWN),
            (&failed, FAILED, UNKNOWN),
            (&pipe, 0, 0),
        ] {
            assert_eq!(of_error(e, Kind::Tool), tool, "{e:#}");
            assert_eq!(of_error(e, Kind::Plugin), plugin, "{e:#}");
        }
        let usage = usage.context("simulate");
        assert_eq!(of_error(&usage, Kind::Tool), USAGE, "through context");
    }
}
