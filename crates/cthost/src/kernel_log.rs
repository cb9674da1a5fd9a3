//! Scanning kernel logs for conntrack exhaustion, in every historical text
//! (../shared/KERNEL.md section 3) and every log format an operator has:
//! raw /dev/kmsg records, `dmesg`, `dmesg -T`, `journalctl -k` (short and
//! short-iso), syslog kern.log / messages. Pure: lines in, counts out.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

/// When a line was logged: the text as the log printed it, and seconds since
/// boot when the format carries them (kmsg, plain dmesg).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stamp {
    pub text: String,
    pub since_boot: Option<f64>,
}

/// Table-full messages of one network namespace (`None`: the message did
/// not name one, i.e. the initial namespace or a kernel before 6.17).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TableFull {
    pub netns_inode: Option<u64>,
    pub count: u64,
    /// `net_ratelimit: N callbacks suppressed` lines right after these
    /// messages: at least this many more drops went unlogged.
    pub suppressed: u64,
    pub first: Option<Stamp>,
    pub last: Option<Stamp>,
    /// The message as printed, e.g. `nf_conntrack: table full, dropping packet.`
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LogScan {
    pub lines: u64,
    /// The first timestamp in the log: how far back it reaches.
    pub first: Option<Stamp>,
    pub table_full: Vec<TableFull>,
    /// `nf_conntrack: falling back to vmalloc.`: the bucket array was too
    /// large for contiguous memory.
    pub vmalloc_fallbacks: u64,
    pub last_vmalloc: Option<Stamp>,
}

impl LogScan {
    pub fn total_full(&self) -> u64 {
        self.table_full.iter().map(|t| t.count).sum()
    }
}

#[allow(clippy::expect_used)] // constant patterns, checked by the tests
fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid regex")
}

static KMSG: LazyLock<Regex> = LazyLock::new(|| re(r"^(\d+),(\d+),(\d+),[^;]*;(.*)$"));
static DMESG: LazyLock<Regex> = LazyLock::new(|| re(r"^\[\s*(\d+\.\d+)\]\s?(.*)$"));
static DMESG_T: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^\[([A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4})\]\s?(.*)$")
});
static SYSLOG: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+) \S+ kernel: (?:\[\s*(\d+\.\d+)\] )?(.*)$",
    )
});
static FULL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:ip|nf)_conntrack: (?:nf_conntrack: )?table full(?:,| in netns (\d+),) dropping packet\.?\s*$",
    )
});
static RATELIMIT: LazyLock<Regex> =
    LazyLock::new(|| re(r"^net_ratelimit: (\d+) callbacks suppressed"));
static VMALLOC: LazyLock<Regex> = LazyLock::new(|| re(r"^nf_conntrack: falling back to vmalloc"));

/// Split a log line into its timestamp and the kernel's message.
fn split(line: &str) -> (Option<Stamp>, &str) {
    if let Some(c) = KMSG.captures(line) {
        let usec: f64 = c[3].parse().unwrap_or(0.0);
        let secs = usec / 1e6;
        let msg = c.get(4).map_or("", |m| m.as_str());
        return (
            Some(Stamp {
                text: format!("{secs:.6}"),
                since_boot: Some(secs),
            }),
            msg,
        );
    }
    if let Some(c) = DMESG.captures(line) {
        let secs: f64 = c[1].parse().unwrap_or(0.0);
        let msg = c.get(2).map_or("", |m| m.as_str());
        return (
            Some(Stamp {
                text: c[1].to_string(),
                since_boot: Some(secs),
            }),
            msg,
        );
    }
    if let Some(c) = DMESG_T.captures(line) {
        let msg = c.get(2).map_or("", |m| m.as_str());
        return (
            Some(Stamp {
                text: c[1].to_string(),
                since_boot: None,
            }),
            msg,
        );
    }
    if let Some(c) = SYSLOG.captures(line) {
        let since_boot = c.get(2).and_then(|m| m.as_str().parse().ok());
        let msg = c.get(3).map_or("", |m| m.as_str());
        return (
            Some(Stamp {
                text: c[1].to_string(),
                since_boot,
            }),
            msg,
        );
    }
    (None, line)
}

/// Scan log lines (any of the supported formats, even mixed).
pub fn scan<'a>(lines: impl IntoIterator<Item = &'a str>) -> LogScan {
    let mut out = LogScan::default();
    let mut groups: BTreeMap<Option<u64>, TableFull> = BTreeMap::new();
    // The group whose message was the previous kernel line, for attributing
    // a following `net_ratelimit` line.
    let mut previous: Option<Option<u64>> = None;
    for line in lines {
        // kmsg continuation lines (" SUBSYSTEM=...") and blank lines.
        if line.starts_with(' ') || line.trim().is_empty() {
            continue;
        }
        out.lines += 1;
        let (stamp, msg) = split(line.trim_end());
        if out.first.is_none() {
            out.first.clone_from(&stamp);
        }
        if let Some(c) = FULL.captures(msg) {
            let netns = c.get(1).and_then(|m| m.as_str().parse().ok());
            let g = groups.entry(netns).or_insert_with(|| TableFull {
                netns_inode: netns,
                count: 0,
                suppressed: 0,
                first: stamp.clone(),
                last: None,
                text: msg.to_string(),
            });
            g.count += 1;
            g.last = stamp;
            previous = Some(netns);
        } else if let Some(c) = RATELIMIT.captures(msg) {
            if let Some(key) = previous
                && let Some(g) = groups.get_mut(&key)
            {
                g.suppressed += c[1].parse::<u64>().unwrap_or(0);
            }
        } else {
            if VMALLOC.is_match(msg) {
                out.vmalloc_fallbacks += 1;
                out.last_vmalloc = stamp;
            }
            previous = None;
        }
    }
    out.table_full = groups.into_values().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> LogScan {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).expect("fixture");
        scan(text.lines())
    }

    #[test]
    fn real_table_full_in_netns_every_format() {
        for (name, first_since_boot) in [
            ("dmesg.txt", true),
            ("kmsg.txt", true),
            ("dmesg-T.txt", false),
        ] {
            let s = fixture(name);
            assert_eq!(s.table_full.len(), 1, "{name}");
            let g = &s.table_full[0];
            assert_eq!(g.netns_inode, Some(4_026_532_177), "{name}");
            assert_eq!(g.count, 3, "{name}");
            assert_eq!(
                g.first.as_ref().and_then(|t| t.since_boot).is_some(),
                first_since_boot,
                "{name}"
            );
        }
        let s = fixture("kmsg.txt");
        let g = &s.table_full[0];
        assert_eq!(g.first.as_ref().and_then(|t| t.since_boot), Some(1945.9873));
        assert_eq!(
            g.last.as_ref().and_then(|t| t.since_boot),
            Some(1948.029156)
        );
    }

    #[test]
    fn historical_texts_and_ratelimit() {
        let s = fixture("kernel-log-historical.txt");
        assert_eq!(s.lines, 15);
        // Initial namespace (no netns in the text): 2 ip_conntrack + 1
        // single-prefix + 3 double-prefix lines.
        let init = s
            .table_full
            .iter()
            .find(|g| g.netns_inode.is_none())
            .expect("init group");
        assert_eq!(init.count, 6);
        // 117 and 2301 follow table-full lines; the 5 follows a vmalloc line.
        assert_eq!(init.suppressed, 2418);
        assert_eq!(
            init.first.as_ref().map(|s| s.text.as_str()),
            Some("Nov 20 03:12:01")
        );
        assert_eq!(
            init.first.as_ref().and_then(|s| s.since_boot),
            Some(812_345.000_001)
        );
        assert_eq!(init.text, "ip_conntrack: table full, dropping packet.");
        let ns: Vec<(Option<u64>, u64)> = s
            .table_full
            .iter()
            .map(|g| (g.netns_inode, g.count))
            .collect();
        assert_eq!(
            ns,
            vec![
                (None, 6),
                (Some(4_026_532_177), 2),
                (Some(4_026_532_999), 1)
            ]
        );
        assert_eq!(s.vmalloc_fallbacks, 1);
        assert_eq!(s.total_full(), 9);
    }

    #[test]
    fn unrelated_and_garbage_lines() {
        let s = scan([
            "hello",
            "",
            "nf_conntrack: expectation table full",
            "\u{fffd}\u{0}[[[",
        ]);
        assert_eq!((s.lines, s.total_full()), (3, 0));
    }
}
