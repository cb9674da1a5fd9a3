//! `ctdoctor check`: gather host facts, diagnose, and print a one-screen
//! report whose exit code is a Nagios/Icinga plugin status.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use clap::Args;
use ctcore::duration;
use cthost::diagnose::{self, Finding, Report, Severity, Thresholds, Verdict};
use cthost::gather::{self, LogInput, Options};

use crate::cli::is_stdin;
use crate::output::{Render, Style as Draw};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Sample the kernel counters twice this far apart and report rates
    /// (e.g. 5s, 500ms): a non-zero drop rate means it is happening now.
    /// 100ms..1h: a rate needs a few packets' time, and a monitoring check
    /// must finish.
    #[arg(long, value_name = "DURATION",
          value_parser = duration::flag(Duration::from_millis(100), duration::HOUR))]
    pub interval: Option<Duration>,

    /// Read the kernel log from a file (dmesg, dmesg -T, journalctl -k,
    /// /var/log/kern.log or messages) or `-` for stdin, instead of /dev/kmsg.
    #[arg(long, value_name = "FILE|-")]
    pub kernel_log: Option<PathBuf>,

    /// Table-full lines younger than this (or of unknown age) mean packets
    /// are dropped now: CRITICAL; older drops are WARNING, so a monitoring
    /// check recovers (e.g. 1h, 30m, 2h30m).
    #[arg(long, value_name = "DURATION", default_value = "1h",
          value_parser = duration::flag(duration::SECOND, duration::YEAR))]
    pub recent: Duration,

    /// Fill percentage of nf_conntrack_max for WARNING.
    #[arg(long, default_value_t = 75.0, value_name = "PERCENT")]
    pub warn: f64,

    /// Fill percentage of nf_conntrack_max for CRITICAL.
    #[arg(long, default_value_t = 90.0, value_name = "PERCENT")]
    pub crit: f64,

    /// Also count every network namespace on the host: each one's count
    /// is compared with the global max on its own.
    #[arg(long)]
    pub all_netns: bool,

    /// Do not dump the table (faster on huge tables; no evictable share,
    /// no idle-entry analysis).
    #[arg(long)]
    pub no_dump: bool,
}

pub fn run(args: &CheckArgs, host: &cthost::Host) -> anyhow::Result<Report> {
    if !(0.0..=100.0).contains(&args.warn)
        || !(0.0..=100.0).contains(&args.crit)
        || args.warn > args.crit
    {
        anyhow::bail!(
            "--warn and --crit are percentages with warn <= crit (got {} / {})",
            args.warn,
            args.crit
        );
    }
    let opts = Options {
        host: host.clone(),
        kernel_log: match &args.kernel_log {
            None => LogInput::Kmsg,
            Some(p) if is_stdin(p) => LogInput::Stdin,
            // Read like the default: without blocking at the ring's end.
            Some(p) if p.as_path() == std::path::Path::new("/dev/kmsg") => LogInput::Kmsg,
            Some(p) => LogInput::File(p.clone()),
        },
        interval: args.interval,
        all_netns: args.all_netns,
        no_dump: args.no_dump,
        sample_undated: true,
    };
    let facts = gather::gather(&opts);
    Ok(diagnose::diagnose(
        &facts,
        &Thresholds {
            warn: args.warn,
            crit: args.crit,
            recent: args.recent,
        },
    ))
}

fn style(sev: Severity) -> Style {
    let c = match sev {
        Severity::Critical => AnsiColor::Red,
        Severity::Warning => AnsiColor::Yellow,
        Severity::Ok => AnsiColor::Green,
        Severity::Info => AnsiColor::Blue,
    };
    Style::new().fg_color(Some(c.into())).bold()
}

fn verdict_style(v: Verdict) -> Style {
    match v {
        Verdict::Ok => style(Severity::Ok),
        Verdict::Warning => style(Severity::Warning),
        Verdict::Critical => style(Severity::Critical),
        Verdict::Unknown => Style::new()
            .fg_color(Some(AnsiColor::Magenta.into()))
            .bold(),
    }
}

const WIDTH: usize = 80;

fn wrapped(out: &mut impl Write, first: &str, rest: &str, text: &str) -> io::Result<()> {
    // Break only at spaces, never inside a path or a command word.
    let opts = textwrap::Options::new(WIDTH)
        .initial_indent(first)
        .subsequent_indent(rest)
        .word_separator(textwrap::WordSeparator::AsciiSpace)
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    for line in textwrap::wrap(text, opts) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn finding(out: &mut impl Write, f: &Finding, color: bool) -> io::Result<()> {
    let label = f.severity.label();
    let s = style(f.severity);
    if color {
        writeln!(out, "{}[{label}]{} {}", s.render(), s.render_reset(), f.id)?;
    } else {
        writeln!(out, "[{label}] {}", f.id)?;
    }
    wrapped(out, "  ", "  ", &f.title)?;
    for e in &f.evidence {
        wrapped(out, "  - ", "    ", e)?;
    }
    for fix in &f.fix {
        wrapped(out, "  fix: ", "       ", fix)?;
    }
    Ok(())
}

impl Render for Report {
    fn text(&self, mut out: &mut dyn Write, style: Draw) -> io::Result<()> {
        render(self, style.color, &mut out)
    }
    fn exit_code(&self) -> u8 {
        self.exit_code
    }
}

pub fn render(r: &Report, color: bool, out: &mut impl Write) -> io::Result<()> {
    let v = verdict_style(r.verdict);
    let head = format!("{}: {}", r.verdict.label(), r.headline);
    if color {
        write!(out, "{}", v.render())?;
        wrapped(out, "", "  ", &head)?;
        write!(out, "{}", v.render_reset())?;
    } else {
        wrapped(out, "", "  ", &head)?;
    }
    let s = &r.summary;
    let mut facts = Vec::new();
    match (&r.netns, r.netns_inode) {
        (Some(n), Some(i)) => facts.push(format!("netns {n} ({i})")),
        (None, Some(i)) => facts.push(format!("netns {i}")),
        _ => {}
    }
    if let Some(k) = &r.kernel {
        facts.push(format!("kernel {k}"));
    }
    if let (Some(c), Some(m)) = (s.count, s.max) {
        facts.push(format!(
            "{c}/{m} entries ({:.1}%)",
            s.fill_percent.unwrap_or(0.0)
        ));
    }
    if let Some(b) = s.buckets {
        facts.push(format!("{b} buckets"));
    }
    if let (Some(now), Some(at_max)) = (s.memory_now, s.memory_at_max) {
        facts.push(format!(
            "{} now, {} at max",
            diagnose::mib(now),
            diagnose::mib(at_max)
        ));
    }
    wrapped(out, "", "", &facts.join(" | "))?;
    for f in &r.findings {
        writeln!(out)?;
        finding(out, f, color)?;
    }
    if !r.unreadable.is_empty() {
        writeln!(out)?;
        writeln!(out, "Could not read (the report above is partial):")?;
        for u in &r.unreadable {
            wrapped(out, "  - ", "    ", &u.to_string())?;
        }
    }
    Ok(())
}
