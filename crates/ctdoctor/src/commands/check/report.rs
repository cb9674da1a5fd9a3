//! `check`'s report for people: the verdict line, the facts line and each
//! finding with its evidence and fix, wrapped at 80 columns, coloured when
//! asked. JSON is the report itself (serde).

use std::io::{self, Write};

use anstyle::{AnsiColor, Style};
use cthost::diagnose::{self, Finding, Report, Severity, Verdict};

use crate::output::{Render, Style as Draw};

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
