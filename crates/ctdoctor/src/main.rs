//! ctdoctor: the binary. Parses arguments, enters the requested network
//! namespace, runs one command and maps the outcome to an exit code. A
//! closed pipe (`ctdoctor top | head`) is success, not an error; for
//! `check` it keeps the verdict's exit code (`check | true` must still say
//! CRITICAL to the shell, issue 7 §6).

mod chart;
mod cli;
mod commands;
mod exit;
mod feed;
mod output;

use commands::{apply, assets, check, evict, export, forecast, lab, plan, simulate, top, watch};

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use cli::{Cli, Command};
use output::{Format, Style};

/// Run the command; `Ok` carries the process exit code.
fn run(cli: &Cli) -> Result<u8> {
    // The one view of the system every command reads through.
    if cli.netns.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(exit::Usage(
            "--netns needs a value: a name from `ip netns list`, a PID, or a path to a namespace file"
                .into(),
        )
        .into());
    }
    if let Some(dir) = &cli.root {
        // rollback reads only its journal: a missing tree has none, and
        // "nothing to roll back" is its answer.
        if !dir.is_dir() && !matches!(cli.command, Command::Rollback(_)) {
            return Err(exit::Usage(format!(
                "--root {}: not a directory (a tree laid out like /, with proc/, sys/, dev/kmsg)",
                dir.display()
            ))
            .into());
        }
        // The commands that read the system: a tree without proc/ is a typo
        // in --root, not a host where conntrack is unused.
        let reads = !matches!(
            cli.command,
            Command::Apply(_) | Command::Rollback(_) | Command::Completions(_) | Command::Man(_)
        );
        if reads && dir.is_dir() && !dir.join("proc").is_dir() {
            return Err(exit::Usage(format!(
                "--root {}: no proc/ in it: not a tree laid out like /",
                dir.display()
            ))
            .into());
        }
        if cli.netns.is_some() {
            return Err(exit::Usage(
                "--netns enters a namespace of the running kernel; a --root tree has none".into(),
            )
            .into());
        }
    }
    let host = cthost::Host::from_flag(cli.root.as_deref()).with_bpffs(&cli.bpffs);
    let host = &host;
    if let Some(ns) = &cli.netns {
        // Before any thread exists: setns changes only the calling thread,
        // and /proc/net follows the thread group leader.
        host.enter(ns)?;
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let json = if cli.json { Format::Json } else { Format::Text };
    let style = Style {
        color: cli.color.enabled(),
    };
    let code = match &cli.command {
        Command::Check(args) => {
            output::emit(&check::run(args, host)?, json, style, cli.quiet, &mut out)?
        }
        Command::Forecast(args) => output::emit(
            &forecast::run(args, host)?,
            json,
            style,
            cli.quiet,
            &mut out,
        )?,
        Command::Top(args) => {
            let format = match (args.csv, cli.json) {
                (true, true) => {
                    return Err(exit::Usage("--csv and --json exclude each other".into()).into());
                }
                (true, false) => Format::Csv,
                (false, _) => json,
            };
            let mut report = top::run(args, host)?;
            if let Some(ns) = &cli.netns {
                report.source = format!("{} (netns {ns})", report.source);
            }
            output::emit(&report, format, style, cli.quiet, &mut out)?
        }
        Command::Evict(args) => output::emit(
            &evict::run(args, cli.netns.as_deref(), host)?,
            json,
            style,
            cli.quiet,
            &mut out,
        )?,
        Command::Plan(args) => {
            if cli.json && !matches!(args.format, plan::Format::Text | plan::Format::Json) {
                return Err(exit::Usage(
                    "--json and --format other than json exclude each other".into(),
                )
                .into());
            }
            let answer = plan::Answer {
                plan: plan::make_plan(args, host)?,
                format: if cli.json {
                    plan::Format::Json
                } else {
                    args.format
                },
            };
            let format = if answer.format == plan::Format::Json {
                Format::Json
            } else {
                Format::Text
            };
            output::emit(&answer, format, style, cli.quiet, &mut out)?
        }
        // Commands that write as they go.
        Command::Apply(args) => apply::run_apply(args, host, &mut out).map(|()| 0)?,
        Command::Rollback(args) => apply::run_rollback(args, host, &mut out).map(|()| 0)?,
        Command::Export(args) => export::run(args, cli.quiet, host).map(|()| 0)?,
        Command::Completions(args) => assets::completions(args, &mut out).map(|()| 0)?,
        Command::Man(args) => assets::man(args, &mut out).map(|()| 0)?,
        Command::Lab(args) => lab::run(args, cli.json, cli.netns.as_deref(), host, &mut out)?,
        Command::Simulate(args) => {
            let format = match (args.csv, cli.json) {
                (true, true) => {
                    return Err(exit::Usage("--json and --csv exclude each other".into()).into());
                }
                (true, false) => Format::Csv,
                (false, _) => json,
            };
            output::emit(
                &simulate::run(args, host)?,
                format,
                style,
                cli.quiet,
                &mut out,
            )?
        }
        Command::Watch(args) => {
            drop(out);
            return watch::run(args, cli.json, cli.quiet, cli.netns.as_deref(), host);
        }
    };
    match out.flush() {
        // A reader that went away is not an error; the answer's code stands.
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(code),
    }
}

/// The error and its causes, each said once: many errors already include
/// their source in their own message (`cannot read X: {source}`), and
/// anyhow's `{:#}` would print it again.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// The subcommand word: the first argument that is neither a flag nor the
/// value of a global flag that takes one (`--netns X`, `--color X`,
/// `--root X`).
fn subcommand(args: &[std::ffi::OsString]) -> Option<&std::ffi::OsString> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--netns" || s == "--color" || s == "--root" {
            it.next();
        } else if !s.starts_with('-') {
            return Some(a);
        }
    }
    None
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let kind = if subcommand(&args).is_some_and(|a| a == "check" || a == "forecast") {
        exit::Kind::Plugin
    } else {
        exit::Kind::Tool
    };
    let cli = match cli::parse(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(exit::of_parse_error(&e, kind));
        }
    };
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = exit::of_error(&e, kind);
            if code != 0 {
                eprintln!("ctdoctor: {}", error_text(&e));
            }
            ExitCode::from(code)
        }
    }
}
