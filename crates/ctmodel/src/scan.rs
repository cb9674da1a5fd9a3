//! Streaming parse of a whole dump from any [`Read`]: the input is cut into
//! chunks at line boundaries and parsed by worker threads, each feeding its
//! own accumulator; the partial results are merged at the end. Memory is
//! bounded by the chunk pool plus the accumulators, whatever the input size.
//! Malformed lines are counted with their line number and reason; a line
//! longer than the limit is skipped whole, however long it is, and never
//! split into pieces that would count as lines of their own (issue 7 §6).

use std::io::{self, Read};
use std::sync::mpsc;

use crate::entry::Entry;
use crate::keys::Keys;
use crate::text::{Line, MAX_LINE, ParseError, parse_line};
use crate::textkeys;

/// Something that consumes entries and can be merged with its peers.
pub trait Accumulate: Send {
    /// True when [`add_keys`](Accumulate::add_keys) is all this reads: the
    /// scan then takes the [`textkeys`] fast path for the lines it can read
    /// and parses only the others whole.
    const KEYS_ONLY: bool = false;
    fn add(&mut self, entry: &Entry);
    /// One entry's grouping fields; called only when `KEYS_ONLY`.
    fn add_keys(&mut self, _keys: &Keys) {}
    fn merge(&mut self, other: Self);
}

impl Accumulate for crate::Breakdown {
    const KEYS_ONLY: bool = true;
    fn add(&mut self, entry: &Entry) {
        crate::Breakdown::add(self, entry);
    }
    fn add_keys(&mut self, keys: &Keys) {
        crate::Breakdown::add_keys(self, keys);
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

/// More parser threads than this never helps (each one parses a 1 MiB chunk
/// at a time); the bound keeps a huge request from exhausting the process.
pub const MAX_THREADS: usize = 256;

/// How the input is cut: chunks of about `chunk` bytes, lines of at most
/// `max_line` bytes (without the newline and a `\r` before it). [`scan`]
/// uses 1 MiB and [`MAX_LINE`]; tests use small sizes to cross boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub chunk: usize,
    pub max_line: usize,
}

impl Default for Sizes {
    fn default() -> Self {
        Self {
            chunk: CHUNK,
            max_line: MAX_LINE,
        }
    }
}

/// The report of one line skipped as too long.
fn too_long(max_line: usize) -> ScanReport {
    ScanReport {
        lines: 1,
        skipped: 1,
        first_errors: vec![LineError {
            line: 1,
            error: ParseError::TooLong(max_line),
        }],
        ..ScanReport::default()
    }
}

/// Parse every line of one chunk (whole lines only) into `acc`.
fn parse_chunk<A: Accumulate>(chunk: &[u8], max_line: usize, acc: &mut A) -> ScanReport {
    let mut r = ScanReport::default();
    let mut reader = textkeys::KeyReader::default();
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', chunk).chain(
        // a last line without its newline
        (chunk.last().is_some_and(|&b| b != b'\n')).then_some(chunk.len()),
    );
    for end in ends.by_ref() {
        let line = &chunk[start..end];
        start = end + 1;
        r.lines += 1;
        let long = line.strip_suffix(b"\r").unwrap_or(line).len() > max_line;
        if A::KEYS_ONLY
            && !long
            && let Some(keys) = reader.keys(line)
        {
            r.entries += 1;
            acc.add_keys(&keys);
            continue;
        }
        let parsed = if long {
            Err(ParseError::TooLong(max_line))
        } else {
            parse_line(line)
        };
        match parsed {
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

/// Read until `buf` holds at least `len` bytes or the input ends.
fn fill<R: Read>(reader: &mut R, buf: &mut Vec<u8>, len: usize) -> io::Result<bool> {
    let mut eof = false;
    while buf.len() < len {
        let old = buf.len();
        buf.resize(len, 0);
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

/// Read past the end of the current line; what follows its newline goes to
/// `rest`. True when the input ended first.
fn skip_line<R: Read>(reader: &mut R, rest: &mut Vec<u8>, chunk: usize) -> io::Result<bool> {
    let mut buf = vec![0u8; chunk.clamp(1, 64 * 1024)];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if let Some(nl) = memchr::memchr(b'\n', &buf[..n]) {
            rest.extend_from_slice(&buf[nl + 1..n]);
            return Ok(false);
        }
    }
}

/// Scan `reader` with `threads` parser threads (at most [`MAX_THREADS`]),
/// each accumulating into a value made by `make`.
pub fn scan<R, A, F>(reader: R, threads: usize, make: F) -> io::Result<(A, ScanReport)>
where
    R: Read,
    A: Accumulate,
    F: Fn() -> A + Sync,
{
    scan_sized(reader, threads, make, Sizes::default())
}

/// [`scan`] with explicit chunk and line sizes.
pub fn scan_sized<R, A, F>(
    mut reader: R,
    threads: usize,
    make: F,
    sizes: Sizes,
) -> io::Result<(A, ScanReport)>
where
    R: Read,
    A: Accumulate,
    F: Fn() -> A + Sync,
{
    let threads = threads.clamp(1, MAX_THREADS);
    let Sizes { chunk, max_line } = sizes;
    let chunk = chunk.max(1);
    let (work_tx, work_rx) = mpsc::sync_channel::<(usize, Vec<u8>)>(threads * 2);
    let work_rx = std::sync::Mutex::new(work_rx);
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    let mut chunk_reports: Vec<(usize, ScanReport)> = Vec::new();
    let mut acc = make();

    let read_result = std::thread::scope(|s| -> io::Result<()> {
        let mut workers = Vec::new();
        for _ in 0..threads {
            let (rx, free, make) = (&work_rx, free_tx.clone(), &make);
            let spawned = std::thread::Builder::new().spawn_scoped(s, move || {
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
                    reports.push((idx, parse_chunk(&chunk, max_line, &mut acc)));
                    chunk.clear();
                    let _ = free.send(chunk);
                }
                (acc, reports)
            });
            match spawned {
                Ok(w) => workers.push(w),
                // The system refused another thread: fewer threads still
                // parse everything.
                Err(_) if !workers.is_empty() => break,
                Err(e) => return Err(e),
            }
        }

        let mut carry: Vec<u8> = Vec::new();
        let mut idx = 0usize;
        let result = loop {
            let mut buf = free_rx
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(2 * chunk));
            buf.extend_from_slice(&carry);
            carry.clear();
            // Always read new bytes, even when the carried partial line is
            // longer than a chunk (possible when max_line >= chunk).
            let want = buf.len() + chunk;
            let eof = match fill(&mut reader, &mut buf, want) {
                Ok(eof) => eof,
                Err(e) => break Err(e),
            };
            let mut long = false;
            if !eof {
                // Cut after the last newline and carry the partial line to
                // the next chunk, unless it is already too long to keep (one
                // more byte for a `\r` before its newline).
                let cut = memchr::memrchr(b'\n', &buf).map_or(0, |nl| nl + 1);
                if buf.len() - cut > max_line.saturating_add(1) {
                    long = true;
                } else {
                    carry.extend_from_slice(&buf[cut..]);
                }
                buf.truncate(cut);
            }
            if !buf.is_empty() {
                if work_tx.send((idx, buf)).is_err() {
                    break Ok(());
                }
                idx += 1;
            }
            if long {
                chunk_reports.push((idx, too_long(max_line)));
                idx += 1;
                match skip_line(&mut reader, &mut carry, chunk) {
                    Ok(true) => break Ok(()),
                    Ok(false) => {}
                    Err(e) => break Err(e),
                }
            }
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

    /// Kernel-style line with u64::MAX counters, as a 5.x+ kernel with
    /// nf_conntrack_acct=1 prints after enough traffic.
    const BIG: &str = "ipv4     2 tcp      6 95 ESTABLISHED src=10.1.1.1 dst=10.2.2.2 sport=1001 dport=443 packets=18446744073709551615 bytes=18446744073709551615 src=10.2.2.2 dst=10.1.1.1 sport=443 dport=1001 packets=1 bytes=60 [ASSURED] mark=0 zone=0 use=2\n";

    #[test]
    fn line_longer_than_a_chunk_is_one_malformed_line() {
        // Old code: the 3 MiB line was cut at each 1 MiB chunk boundary into
        // phantom lines, and every later line number was off.
        let long = vec![b'x'; 3 * CHUNK + 17];
        for tail in [&b"\n"[..], b"\r\n"] {
            let mut text = Vec::new();
            text.extend_from_slice(LINE.as_bytes());
            text.extend_from_slice(&long);
            text.extend_from_slice(tail);
            text.extend_from_slice(LINE.as_bytes());
            text.extend_from_slice(b"garbage\n");
            text.extend_from_slice(LINE.as_bytes());
            for threads in [1, 2] {
                let (c, r) = scan(&text[..], threads, Count::default).expect("scan");
                assert_eq!((r.lines, r.entries, r.skipped), (5, 3, 2));
                assert_eq!(c.0, 3);
                let lines: Vec<u64> = r.first_errors.iter().map(|e| e.line).collect();
                assert_eq!(lines, vec![2, 4]);
                assert_eq!(r.first_errors[0].error, ParseError::TooLong(MAX_LINE));
            }
        }
    }

    #[test]
    fn long_last_line_without_newline_is_one_malformed_line() {
        let mut text = LINE.as_bytes().to_vec();
        text.extend(vec![b'y'; 2 * CHUNK + 5]);
        let (c, r) = scan(&text[..], 2, Count::default).expect("scan");
        assert_eq!((r.lines, r.entries, r.skipped, c.0), (2, 1, 1, 1));
        assert_eq!(r.first_errors[0].line, 2);
    }

    #[test]
    fn line_over_the_limit_inside_a_chunk_is_too_long() {
        // 20 KiB: shorter than a chunk, longer than MAX_LINE.
        let mut text = vec![b'z'; 20 * 1024];
        text.push(b'\n');
        text.extend_from_slice(LINE.as_bytes());
        let (_, r) = scan(&text[..], 1, Count::default).expect("scan");
        assert_eq!((r.lines, r.entries, r.skipped), (2, 1, 1));
        assert_eq!(r.first_errors[0].error, ParseError::TooLong(MAX_LINE));
    }

    #[test]
    fn u64_max_counters_are_entries_not_malformed() {
        let text = BIG.repeat(3);
        let (c, r) = scan(text.as_bytes(), 2, Count::default).expect("scan");
        assert_eq!((r.lines, r.entries, r.skipped, c.0), (3, 3, 0, 3));
    }

    #[test]
    fn absurd_thread_counts_are_bounded() {
        // Old code: usize::MAX overflowed `threads * 2`; 20000 threads
        // exhausted the process.
        for threads in [0, 20_000, usize::MAX] {
            let (c, r) = scan(LINE.as_bytes(), threads, Count::default).expect("scan");
            assert_eq!((r.lines, c.0), (1, 1));
        }
    }

    #[test]
    fn empty_input() {
        let (b, r) = scan(&b""[..], 2, Breakdown::default).expect("scan");
        assert_eq!((b.entries, r.lines), (0, 0));
    }
}
