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

    /// Write every page (ctdoctor.1 and ctdoctor-NAME.1 for each
    /// subcommand) into this directory instead, for packaging.
    #[arg(long, value_name = "DIR", conflicts_with = "subcommand")]
    pub dir: Option<std::path::PathBuf>,
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
    if let Some(dir) = &args.dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut names = vec![None];
        names.extend(subcommands().into_iter().map(Some));
        for name in names {
            let file = dir.join(match &name {
                None => "ctdoctor.1".to_string(),
                Some(n) => format!("ctdoctor-{n}.1"),
            });
            let mut roff = Vec::new();
            page(name.as_deref(), &mut roff)?;
            std::fs::write(&file, roff).with_context(|| format!("writing {}", file.display()))?;
            writeln!(out, "{}", file.display())?;
        }
        return Ok(());
    }
    let mut roff = Vec::new();
    page(args.subcommand.as_deref(), &mut roff)?;
    out.write_all(&roff)?;
    Ok(())
}

/// The roff of ctdoctor(1), or of ctdoctor-NAME(1).
fn page(subcommand: Option<&str>, out: &mut Vec<u8>) -> Result<()> {
    let cmd = Cli::command();
    let page = match subcommand {
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
    clap_mangen::Man::new(page)
        .render(out)
        .context("rendering the man page")
}
