//! Streaming parse of a whole dump from any [`Read`]: the input is cut into
//! chunks at line boundaries and parsed by worker threads, each feeding its
//! own accumulator; the partial results are merged at the end. Memory is
//! bounded by the chunk pool plus the accumulators, whatever the input size.
//! Malformed lines are counted with their line number and reason.

use std::io::{self, Read};
use std::sync::mpsc;

use crate::entry::Entry;
use crate::text::{Line, ParseError, parse_line};

/// Something that consumes entries and can be merged with its peers.
pub trait Accumulate: Send {
    fn add(&mut self, entry: &Entry);
    fn merge(&mut self, other: Self);
}

impl Accumulate for crate::Breakdown {
    fn add(&mut self, entry: &Entry) {
        crate::Breakdown::add(self, entry);
    }
    fn merge(&mut self, other: Self) {
        crate::Breakdown::merge(self, other);
    }
}

/// A line that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number in the input.
    pub line: u64,
    pub error: ParseError,
}

/// How many errors are kept with their line numbers (all are counted).
pub const KEPT_ERRORS: usize = 5;

/// Line accounting for one scan: `entries + ignored + skipped == lines`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub lines: u64,
    pub entries: u64,
    /// Blank lines and conntrack-tools' summary messages.
    pub ignored: u64,
    /// Malformed lines.
    pub skipped: u64,
    /// The first [`KEPT_ERRORS`] malformed lines.
    pub first_errors: Vec<LineError>,
}

const CHUNK: usize = 1 << 20;

/// Parse every line of one chunk (whole lines only) into `acc`.
fn parse_chunk<A: Accumulate>(chunk: &[u8], acc: &mut A) -> ScanReport {
    let mut r = ScanReport::default();
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', chunk).chain(
        // a last line without its newline
        (chunk.last().is_some_and(|&b| b != b'\n')).then_some(chunk.len()),
    );
    for end in ends.by_ref() {
        let line = &chunk[start..end];
        start = end + 1;
        r.lines += 1;
        match parse_line(line) {
            Ok(Line::Entry(e)) => {
                r.entries += 1;
                acc.add(&e);
            }
            Ok(Line::Ignored) => r.ignored += 1,
            Err(error) => {
                r.skipped += 1;
                if r.first_errors.len() < KEPT_ERRORS {
                    r.first_errors.push(LineError {
                        line: r.lines,
                        error,
                    });
                }
            }
        }
    }
    r
}

/// Read until `buf` holds at least `CHUNK` bytes or the input ends.
fn fill<R: Read>(reader: &mut R, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut eof = false;
    while buf.len() < CHUNK {
        let old = buf.len();
        buf.resize(old + CHUNK, 0);
        match reader.read(&mut buf[old..]) {
            Ok(0) => {
                buf.truncate(old);
                eof = true;
                break;
            }
            Ok(n) => buf.truncate(old + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(old),
            Err(e) => {
                buf.truncate(old);
                return Err(e);
            }
        }
    }
    Ok(eof)
}

/// Scan `reader` with `threads` parser threads (1 parses on the calling
/// thread), each accumulating into a value made by `make`.
pub fn scan<R, A, F>(mut reader: R, threads: usize, make: F) -> io::Result<(A, ScanReport)>
where
    R: Read,
    A: Accumulate,
    F: Fn() -> A + Sync,
{
    let threads = threads.max(1);
    let (work_tx, work_rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(threads * 2);
    let work_rx = std::sync::Mutex::new(work_rx);
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    let mut chunk_reports: Vec<(usize, ScanReport)> = Vec::new();
    let mut acc = make();

    let read_result = std::thread::scope(|s| -> io::Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (rx, free, make) = (&work_rx, free_tx.clone(), &make);
                s.spawn(move || {
                    let mut acc = make();
                    let mut reports = Vec::new();
                    loop {
                        // A poisoned lock means a sibling panicked; stop quietly,
                        // the panic is re-raised by join below.
                        let next = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => break,
                        };
                        let Ok((idx, mut chunk)) = next else { break };
                        reports.push((idx, parse_chunk(&chunk, &mut acc)));
                        chunk.clear();
                        let _ = free.send(chunk);
                    }
                    (acc, reports)
                })
            })
            .collect();

        let mut carry: Vec<u8> = Vec::new();
        let mut idx = 0usize;
        let result = loop {
            let mut buf = free_rx
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(2 * CHUNK));
            buf.extend_from_slice(&carry);
            carry.clear();
            let eof = match fill(&mut reader, &mut buf) {
                Ok(eof) => eof,
                Err(e) => break Err(e),
            };
            if !eof {
                // Cut after the last newline; a chunk without one (a line
                // longer than CHUNK) is passed whole and reported as too long.
                if let Some(nl) = memchr::memrchr(b'\n', &buf) {
                    carry.extend_from_slice(&buf[nl + 1..]);
                    buf.truncate(nl + 1);
                }
            }
            if !buf.is_empty() && work_tx.send((idx, buf)).is_err() {
                break Ok(());
            }
            idx += 1;
            if eof {
                break Ok(());
            }
        };
        drop(work_tx);
        for w in workers {
            match w.join() {
                Ok((part, reports)) => {
                    acc.merge(part);
                    chunk_reports.extend(reports);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        result
    });
    read_result?;

    chunk_reports.sort_by_key(|(idx, _)| *idx);
    let mut total = ScanReport::default();
    for (_, r) in chunk_reports {
        for mut e in r.first_errors {
            if total.first_errors.len() < KEPT_ERRORS {
                e.line += total.lines;
                total.first_errors.push(e);
            }
        }
        total.lines += r.lines;
        total.entries += r.entries;
        total.ignored += r.ignored;
        total.skipped += r.skipped;
    }
    Ok((acc, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Breakdown;

    #[derive(Default)]
    struct Count(u64);
    impl Accumulate for Count {
        fn add(&mut self, _: &Entry) {
            self.0 += 1;
        }
        fn merge(&mut self, o: Self) {
            self.0 += o.0;
        }
    }

    const LINE: &str = "tcp 6 95 ESTABLISHED src=10.1.1.1 dst=10.2.2.2 sport=1001 dport=443 src=10.2.2.2 dst=10.1.1.1 sport=443 dport=1001 [ASSURED] mark=0 use=1\n";

    #[test]
    fn line_numbers_survive_chunking() {
        // ~3 chunks of good lines with a bad line at a known position.
        let n = 3 * CHUNK / LINE.len();
        let mut text = String::new();
        for i in 1..=n {
            text.push_str(if i == n - 7 { "garbage\n" } else { LINE });
        }
        text.push_str("tcp 6 1 src=1.1.1.1"); // last line, no newline, malformed
        for threads in [1, 2, 3] {
            let (c, r) = scan(text.as_bytes(), threads, Count::default).expect("scan");
            assert_eq!(r.lines, n as u64 + 1);
            assert_eq!(r.skipped, 2);
            assert_eq!(c.0, n as u64 - 1);
            assert_eq!(r.entries + r.skipped + r.ignored, r.lines);
            let lines: Vec<u64> = r.first_errors.iter().map(|e| e.line).collect();
            assert_eq!(lines, vec![n as u64 - 7, n as u64 + 1]);
        }
    }

    #[test]
    fn empty_input() {
        let (b, r) = scan(&b""[..], 2, Breakdown::default).expect("scan");
        assert_eq!((b.entries, r.lines), (0, 0));
    }
}
