//! Every entry of a table: a ctnetlink dump when a kernel is behind the
//! host, else the tree's /proc/net/nf_conntrack read a line at a time. The
//! one reader `check`'s entry mix and the exporter's breakdown share.

use std::io::{BufRead, Read};

use ctmodel::Entry;
use ctnetlink::Family;

use crate::host::Host;
use crate::source::{Unreadable, netlink_unreadable};

const PROC_CONNTRACK: &str = "/proc/net/nf_conntrack";

/// Pass every entry of the calling thread's table to `f`.
pub fn for_each_entry(host: &Host, f: impl FnMut(&Entry)) -> Result<(), Unreadable> {
    if host.has_kernel() {
        let mut ct = host
            .conntrack()
            .map_err(|e| netlink_unreadable("ctnetlink socket", &e))?;
        ct.dump(Family::Any, f)
            .map_err(|e| netlink_unreadable("ctnetlink dump", &e))?;
        return Ok(());
    }
    let file = host.root().open(PROC_CONNTRACK, "root")?;
    proc_entries(std::io::BufReader::with_capacity(64 * 1024, file), f)
        .map_err(|e| crate::source::io_unreadable(PROC_CONNTRACK, "root", &e))
}

/// Each entry of /proc/net/nf_conntrack text, read a line at a time: under
/// `--root /host` this is a live table (1 Mi entries are some 250 MB of
/// text, which must not be held at once), and a line that does not parse
/// (not UTF-8, too long, unknown) is skipped alone.
fn proc_entries(mut r: impl BufRead, mut f: impl FnMut(&Entry)) -> std::io::Result<()> {
    use ctmodel::text::{Line, MAX_LINE, parse_line};
    let mut line = Vec::with_capacity(512);
    loop {
        line.clear();
        // The newline and one byte more than a line may hold: a longer
        // line is skipped whole, never parsed in pieces.
        let cap = MAX_LINE as u64 + 2;
        if (&mut r).take(cap).read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if !line.ends_with(b"\n") && line.len() as u64 == cap {
            skip_line(&mut r)?;
            continue;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if let Ok(Line::Entry(e)) = parse_line(text) {
            f(&e);
        }
    }
}

/// Consume the rest of the current line, newline included.
fn skip_line(r: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            r.consume(i + 1);
            return Ok(());
        }
        let n = buf.len();
        r.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(text: &[u8]) -> Vec<String> {
        let mut seen = Vec::new();
        proc_entries(std::io::BufReader::with_capacity(16, text), |e| {
            seen.push(format!("{}:{}", e.l4(), e.orig.sport().unwrap_or(0)));
        })
        .expect("reads");
        seen
    }

    #[test]
    fn proc_lines_are_read_one_at_a_time_and_a_bad_one_is_skipped_alone() {
        let good = |port: u16| {
            format!(
                "ipv4     2 udp      17 28 src=10.0.0.5 dst=10.0.0.53 sport={port} dport=53 [UNREPLIED] src=10.0.0.53 dst=10.0.0.5 sport=53 dport={port} mark=0 zone=0 use=2\n"
            )
        };
        let mut text = good(1).into_bytes();
        text.extend_from_slice(b"ipv4 2 udp 17 \xff\xfe not UTF-8\n");
        text.extend(std::iter::repeat_n(b'x', ctmodel::text::MAX_LINE * 3));
        text.push(b'\n');
        text.extend_from_slice(good(2).as_bytes());
        // The last line without its newline still counts.
        text.extend_from_slice(good(3).trim_end().as_bytes());
        assert_eq!(states(&text), ["udp:1", "udp:2", "udp:3"]);
        assert!(states(b"").is_empty());
    }
}
