//! ctdoctor: the binary. Parses arguments, enters the requested network
//! namespace, runs one command and maps the outcome to an exit code. A
//! closed pipe (`ctdoctor top | head`) is success, not an error; for
//! `check` it keeps the verdict's exit code (`check | true` must still say
//! CRITICAL to the shell, issue 7 §6).

mod assets;
mod chart;
mod check;
mod cli;
mod exit;
mod export;
mod fidelity;
mod forecast;
mod lab;
mod plan;
mod render;
mod simulate;
mod top;
mod watch;

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use cli::{Cli, Command};

/// Run the command; `Ok` carries the process exit code.
fn run(cli: &Cli) -> Result<u8> {
    if let Some(ns) = &cli.netns {
        // Before any thread exists: setns changes only the calling thread,
        // and /proc/net follows the thread group leader.
        ctnetlink::netns::enter(ns)?;
    }
    // The one view of the system every command reads through.
    let host = cthost::Host::from_flag(cli.root.as_deref());
    let host = &host;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match &cli.command {
        Command::Check(args) => {
            let report = check::run(args, host)?;
            let written = if cli.json {
                render::json(&report, &mut out)
            } else {
                check::render(&report, check::use_color(cli.color), &mut out)
            }
            .and_then(|()| out.flush());
            match written {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
                // Nobody reads the report: the verdict still counts.
                _ => return Ok(report.exit_code),
            }
        }
        Command::Forecast(args) => {
            let report = forecast::run(args, host)?;
            let written = if cli.json {
                render::json(&report, &mut out)
            } else {
                forecast::render(&report, &mut out)
            }
            .and_then(|()| out.flush());
            match written {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => return Ok(report.exit_code),
            }
        }
        Command::Plan(args) => {
            let p = plan::make_plan(args, host)?;
            let format = if cli.json {
                plan::Format::Json
            } else {
                args.format
            };
            plan::render(&p, format, &mut out)?;
            for w in &p.warnings {
                if !cli.quiet && format != plan::Format::Text {
                    eprintln!("ctdoctor: warning: {w}");
                }
            }
        }
        Command::Apply(args) => plan::run_apply(args, host, &mut out)?,
        Command::Rollback(args) => plan::run_rollback(args, host, &mut out)?,
        Command::Export(args) => export::run(args, cli.quiet, host)?,
        Command::Completions(args) => assets::completions(args, &mut out)?,
        Command::Man(args) => assets::man(args, &mut out)?,
        Command::Lab(args) => {
            let code = lab::run(args, cli.json, cli.netns.as_deref(), host, &mut out)?;
            out.flush()?;
            return Ok(code);
        }
        Command::Simulate(args) => simulate::run(args, cli.json, host, &mut out)?,
        Command::Watch(args) => {
            drop(out);
            return watch::run(args, cli.json, cli.quiet, cli.netns.as_deref(), host);
        }
        Command::Top(args) => {
            if args.csv && cli.json {
                anyhow::bail!("--csv and --json exclude each other");
            }
            let mut report = top::run(args, host)?;
            if let Some(ns) = &cli.netns {
                report.source = format!("{} (netns {ns})", report.source);
            }
            if !cli.quiet {
                for n in &report.notes {
                    eprintln!("ctdoctor: note: {n}");
                }
                for e in &report.errors {
                    if e.line > 0 {
                        eprintln!("ctdoctor: line {}: skipped: {}", e.line, e.reason);
                    } else {
                        eprintln!("ctdoctor: skipped: {}", e.reason);
                    }
                }
                if report.skipped_lines > 0 {
                    eprintln!(
                        "ctdoctor: {} of {} lines skipped as malformed",
                        report.skipped_lines, report.lines
                    );
                }
            }
            if cli.json {
                render::json(&report, &mut out)?;
            } else if args.csv {
                render::csv(&report, &args.by, &mut out)?;
            } else {
                render::table(&report, &args.by, &mut out)?;
            }
        }
    }
    out.flush()?;
    Ok(0)
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
