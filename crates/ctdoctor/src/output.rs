//! The output layer. A command that answers once returns a value that is
//! [`Render`]: text for people, JSON through serde (the contract's field
//! names), CSV where the command has a table, and the exit status the
//! answer carries. [`emit`] writes it in the format the flags chose, says
//! its notes on stderr unless `--quiet`, and applies the one broken-pipe
//! rule: a reader that went away (`ctdoctor check | head -1`) is not an
//! error, and the answer's own exit status still counts. SVG charts are
//! files a command writes beside its answer (`--svg`, [`crate::chart`]).
//! check, forecast, top, plan and simulate answer through it; the commands
//! that stream or write as they go (`watch`, `export`, `lab`, `apply`)
//! write JSON through the same [`json`] helper.

use std::io::{self, Write};

use anyhow::Result;

/// What `--json` / `--csv` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Csv,
}

/// How text is drawn.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    pub color: bool,
}

/// A command's answer.
pub trait Render: serde::Serialize {
    /// The human form.
    fn text(&self, out: &mut dyn Write, style: Style) -> io::Result<()>;

    /// The CSV form; `None`: this answer has none (`--csv` is refused
    /// before the command runs, so this is not reached).
    fn csv(&self, _out: &mut dyn Write) -> Option<io::Result<()>> {
        None
    }

    /// Lines for stderr (notes, skipped input), not part of any format.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// The exit status of the answer (check's plugin status, ...).
    fn exit_code(&self) -> u8 {
        0
    }
}

/// Pretty JSON and a newline.
pub fn json(value: &impl serde::Serialize, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// Write `answer` in `format`, its notes on stderr unless `quiet`; the
/// answer's exit status, also when stdout's reader went away.
pub fn emit<R: Render>(
    answer: &R,
    format: Format,
    style: Style,
    quiet: bool,
    out: &mut impl Write,
) -> Result<u8> {
    if !quiet {
        for n in answer.notes() {
            eprintln!("ctdoctor: {n}");
        }
    }
    let written = match format {
        Format::Text => answer.text(out, style),
        Format::Json => json(answer, out),
        Format::Csv => answer
            .csv(out)
            .unwrap_or_else(|| Err(io::Error::other("this command has no CSV output"))),
    }
    .and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        // Nobody reads the answer: its status still counts.
        _ => Ok(answer.exit_code()),
    }
}

/// `1234567` as "1,234,567".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Answer {
        n: u8,
    }

    impl Render for Answer {
        fn text(&self, out: &mut dyn Write, _: Style) -> io::Result<()> {
            writeln!(out, "n = {}", self.n)
        }
        fn exit_code(&self) -> u8 {
            self.n
        }
    }

    /// A writer whose reader went away.
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_format_and_the_status() {
        let a = Answer { n: 2 };
        let mut out = Vec::new();
        assert_eq!(
            emit(&a, Format::Text, Style::default(), true, &mut out).ok(),
            Some(2)
        );
        assert_eq!(out, b"n = 2\n");
        out.clear();
        emit(&a, Format::Json, Style::default(), true, &mut out).ok();
        assert_eq!(String::from_utf8_lossy(&out), "{\n  \"n\": 2\n}\n");
        assert!(emit(&a, Format::Csv, Style::default(), true, &mut Vec::new()).is_err());
    }

    #[test]
    fn a_closed_pipe_keeps_the_status() {
        let a = Answer { n: 2 };
        assert_eq!(
            emit(&a, Format::Text, Style::default(), true, &mut Closed).ok(),
            Some(2)
        );
    }
}
