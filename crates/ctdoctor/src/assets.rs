//! Generated assets: shell completion scripts (clap_complete) and man pages
//! (clap_mangen), both from the clap definitions in [`crate::cli`], so they
//! never drift from the real flags. scripts/package ships them in the .deb.

use std::io::Write;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// A subcommand (check, top, plan, ...): its own page, ctdoctor-NAME(1).
    #[arg(value_name = "SUBCOMMAND")]
    pub subcommand: Option<String>,
}

pub fn completions(args: &CompletionsArgs, out: &mut impl Write) -> Result<()> {
    let mut cmd = Cli::command();
    // Into memory first: clap_complete panics when its writer fails (a
    // closed pipe), and main treats a broken pipe as success.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "ctdoctor", &mut script);
    out.write_all(&script)?;
    Ok(())
}

/// Names of the subcommands that get a page of their own.
pub fn subcommands() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect()
}

pub fn man(args: &ManArgs, out: &mut impl Write) -> Result<()> {
    let cmd = Cli::command();
    let page = match &args.subcommand {
        None => cmd,
        Some(name) => {
            let sub = cmd.find_subcommand(name).cloned().with_context(|| {
                format!(
                    "no subcommand {name:?} (one of: {})",
                    subcommands().join(", ")
                )
            })?;
            // The page is named like git's: ctdoctor-check(1).
            let full = format!("ctdoctor-{}", sub.get_name());
            sub.name(full.clone())
                .bin_name(full.replacen('-', " ", 1))
                .version(env!("CARGO_PKG_VERSION"))
                .disable_version_flag(true)
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .context("rendering the man page")?;
    out.write_all(&roff)?;
    Ok(())
}
