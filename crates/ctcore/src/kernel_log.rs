//! Scanning kernel logs for conntrack exhaustion, in every historical text
//! (../shared/KERNEL.md section 3) and every log format an operator has:
//! raw /dev/kmsg records, `dmesg` (plain, -T, -x, -r, --time-format iso),
//! `journalctl -k` (short, short-precise, short-iso, short-monotonic,
//! short-full, short-unix), syslog kern.log / messages and RFC 5424; the
//! message is matched anywhere in a line, so an unknown prefix leaves it
//! undated, not unseen. Pure: lines (or
//! any `BufRead`) in, counts out; the clock and the boot time come in as a
//! [`Context`]; cthost's kmsg module reads /dev/kmsg's records into it.
//! Memory stays bounded whatever the input: lines are streamed,
//! over-long ones skipped, and a "line" without end (`/dev/zero`) is an error.

use std::collections::BTreeMap;
use std::io::{self, BufRead};
use std::sync::LazyLock;

use chrono::{DateTime, Datelike, NaiveDateTime};
use regex::Regex;

/// What the scanner needs to know to date lines; all of it passed in, so
/// the scan stays pure.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Context {
    /// Unix time now: a syslog stamp has no year, and it is this year
    /// unless that puts it in the future.
    pub now: Option<f64>,
    /// Unix time this host booted (/proc/stat btime): uptime stamps of this
    /// boot's own log become wall-clock times, and dated lines of a file
    /// are this boot's when they come after it.
    pub boot_time: Option<f64>,
    /// Seconds east of UTC, for the formats printed in local time (`dmesg
    /// -T`, syslog, `journalctl` short).
    pub utc_offset: i32,
    /// The log is this boot's own (/dev/kmsg): every line is from this boot
    /// and its uptime stamps can be dated. Uptime stamps in a file may come
    /// from any boot, so their age is unknown.
    pub this_boot: bool,
    /// The inode of the namespace being checked: its lines (and those that
    /// name no namespace) are always grouped, whatever [`MAX_GROUPS`].
    pub netns_inode: Option<u64>,
}

/// How far after `now` a line may be dated and still count: a log written
/// just before an NTP step back, or by a host whose clock runs a little
/// ahead, is minutes off, not years. A line dated later than that is clock
/// skew (or a forged line): its date says nothing about now, and counting
/// it as recent would keep a check CRITICAL until that date (issue 7).
pub const FUTURE_SLACK: f64 = 300.0;

/// When a line was logged: the text as the log printed it, seconds since
/// boot when the format carries them (kmsg, plain dmesg), and the Unix time
/// when it can be known.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stamp {
    pub text: String,
    pub since_boot: Option<f64>,
    pub at: Option<f64>,
}

/// Part of a group's lines: how many, the rate-limited drops after them,
/// and how recent the newest is.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Tally {
    pub lines: u64,
    /// `net_ratelimit: N callbacks suppressed` right after these lines.
    pub suppressed: u64,
    /// Lines whose wall-clock time cannot be known (uptime stamps in a file,
    /// or no stamp at all).
    pub undated: u64,
    /// The newest dated line.
    pub newest: Option<Stamp>,
    /// Lines dated more than [`FUTURE_SLACK`] after now (clock skew):
    /// neither recent nor undated, and never the newest.
    pub future: u64,
}

impl Tally {
    fn add(&mut self, stamp: Option<&Stamp>, now: Option<f64>) {
        self.lines += 1;
        match stamp.and_then(|s| s.at.map(|at| (s, at))) {
            Some((_, at)) if now.is_some_and(|n| at > n + FUTURE_SLACK) => self.future += 1,
            Some((s, at)) => {
                if self
                    .newest
                    .as_ref()
                    .and_then(|n| n.at)
                    .is_none_or(|n| at >= n)
                {
                    self.newest = Some(s.clone());
                }
            }
            None => self.undated += 1,
        }
    }

    /// Drops these lines prove: each logged line is one dropped packet, each
    /// suppressed callback one more (net_ratelimit, KERNEL.md section 3).
    pub fn implied_drops(&self) -> u64 {
        self.lines.saturating_add(self.suppressed)
    }
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
    /// Lines known to be from this boot: all of /dev/kmsg, and lines of a
    /// file dated after this boot started. Only these can be weighed
    /// against this boot's drop counters.
    pub this_boot: Tally,
    /// The others (an earlier boot, another host, or of unknown date):
    /// judged by their own age.
    pub other: Tally,
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
    /// Lines longer than [`MAX_LINE`], skipped unread, and the first one's
    /// line number.
    pub skipped_long: u64,
    pub first_skipped: Option<u64>,
    /// Table-full lines of namespaces beyond [`MAX_GROUPS`], counted only.
    pub ungrouped: u64,
    /// Table-full lines whose `in netns N` is no inode (too big for u64, or
    /// a leading zero the kernel's %u never prints): some namespace's, but
    /// not a known one, and never an unnamed line. Counted, also in
    /// `ungrouped`.
    pub malformed_netns: u64,
    /// Table-full lines whose syslog/journal prefix names another host
    /// than the one checked ([`Scanner::for_host`]), by that host name:
    /// that host's log, never weighed against this host's drop counter.
    /// Bounded by [`MAX_GROUPS`] names; beyond, counted under `""`.
    pub other_hosts: BTreeMap<String, u64>,
    /// Table-full or `net_ratelimit` texts in lines whose syslog/journal
    /// tag is not `kernel` (`logger` writes `host nobody[123]: ...`, and
    /// any local user can): not kernel messages, never counted.
    pub not_kernel: u64,
}

impl LogScan {
    pub fn total_full(&self) -> u64 {
        self.table_full.iter().map(|t| t.count).sum()
    }
}

/// The longest line read: kernel messages are at most 1 KiB (printk's
/// PRINTKRB_RECORD_MAX), syslog and journal add a prefix; longer lines are
/// not kernel messages and are skipped.
pub const MAX_LINE: usize = 64 * 1024;
/// A "line" this long is not text (e.g. `--kernel-log /dev/zero`): stop.
pub const MAX_RUN: u64 = 256 << 20;
/// Distinct namespaces tracked; more (a log crafted to exhaust memory) are
/// only counted.
pub const MAX_GROUPS: usize = 4096;

#[allow(clippy::expect_used)] // constant patterns, checked by the tests
fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid regex")
}

static KMSG: LazyLock<Regex> = LazyLock::new(|| re(r"^(\d+),(\d+),(\d+),[^;]*;(.*)$"));
/// Uptime stamps: plain `dmesg`, `dmesg -x` (`kern  :warn  : [..]`),
/// `dmesg -r` (`<4>[..]`) and `journalctl -o short-monotonic`
/// (`[..] host kernel: `).
static DMESG: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(?:<\d+>|[a-z]+\s*:\s*[a-z]+\s*: )?\[\s*(\d+\.\d+)\]\s?(?:\S+ kernel: )?(.*)$")
});
/// `dmesg --time-format iso`: `2026-11-26T18:00:00,123456+00:00 msg`.
static ISO_LEAD: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?) (.*)$")
});
/// RFC 5424 syslog: `<4>1 2026-11-26T18:00:00Z host kernel - - - msg`.
static RFC5424: LazyLock<Regex> =
    LazyLock::new(|| re(r"^<\d+>1 (\S+) \S+ \S+ \S+ \S+ (?:\S+|\[.*?\]) ?(.*)$"));
/// `journalctl -o short-full`: `Thu 2026-11-26 18:00:00 UTC host kernel: msg`.
static SHORT_FULL: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^[A-Z][a-z]{2} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (\S+) \S+ kernel: (.*)$")
});
/// `journalctl -o short-unix`: `1764180000.123456 host kernel: msg`.
static SHORT_UNIX: LazyLock<Regex> = LazyLock::new(|| re(r"^(\d{9,}(?:\.\d+)?) \S+ kernel: (.*)$"));
static DMESG_T: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^\[([A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4})\]\s?(.*)$")
});
static SYSLOG: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?|\d{4}-\d\d-\d\dT\S+) \S+ kernel: (?:\[\s*(\d+\.\d+)\] )?(.*)$",
    )
});
/// The tag (program name) of a syslog-format line: RFC 3164 `MON DD
/// HH:MM:SS HOST TAG[PID]: ` and the same with an RFC 3339 stamp (rsyslog;
/// `journalctl` short, short-precise, short-iso), `journalctl -o
/// short-full`, `short-unix` and `short-monotonic` (`[  1.5] HOST TAG: `),
/// and RFC 5424's APP-NAME. Only `kernel` is the kernel; plain dmesg and
/// /dev/kmsg records have no tag and are the kernel's by construction. A
/// host never contains `:` (so `[1.0] nf_conntrack: nf_conntrack: ...`
/// is dmesg), and dmesg's iso stamp has a `,` (`--time-format iso`).
static TAGS: LazyLock<[Regex; 5]> = LazyLock::new(|| {
    [
        re(
            r"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?|\d{4}-\d\d-\d\dT[^\s,]+) [^\s:]+ ([^\s:\[]+)(?:\[\d*\])?: ",
        ),
        re(
            r"^[A-Z][a-z]{2} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ [^\s:]+ ([^\s:\[]+)(?:\[\d*\])?: ",
        ),
        re(r"^\d{9,}(?:\.\d+)? [^\s:]+ ([^\s:\[]+)(?:\[\d*\])?: "),
        re(r"^\[\s*\d+\.\d+\] [^\s:]+ ([^\s:\[]+)(?:\[\d*\])?: "),
        re(r"^<\d+>1 \S+ \S+ (\S+) "),
    ]
});

/// Whether a line's syslog/journal tag names a program other than the
/// kernel ([`TAGS`]): its text is that program's, whatever it says.
pub fn user_space(line: &str) -> bool {
    TAGS.iter()
        .find_map(|r| r.captures(line).and_then(|c| c.get(1)))
        .is_some_and(|tag| tag.as_str() != "kernel")
}

/// The host a syslog (`Dec  5 10:00:00 host kernel:`; `journalctl -k`
/// short, short-precise and short-iso print the same), `journalctl -o
/// short-full` / `short-unix` / `short-monotonic` or RFC 5424 line names.
static HOSTS: LazyLock<[Regex; 5]> = LazyLock::new(|| {
    [
        re(
            r"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?|\d{4}-\d\d-\d\dT\S+) (\S+) kernel: ",
        ),
        re(r"^[A-Z][a-z]{2} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ (\S+) kernel: "),
        re(r"^\d{9,}(?:\.\d+)? (\S+) kernel: "),
        re(r"^\[\s*\d+\.\d+\] (\S+) kernel: "),
        re(r"^<\d+>1 \S+ (\S+) "),
    ]
});

/// The host name a log line's prefix carries, if its format has one.
pub fn line_host(line: &str) -> Option<&str> {
    HOSTS
        .iter()
        .find_map(|r| r.captures(line).and_then(|c| c.get(1)))
        .map(|m| m.as_str())
        .filter(|h| *h != "-")
}

/// Whether a log's host name is this host: equal ignoring case, or equal
/// in the first label (syslog prints `web1` for `web1.example.com`).
pub fn same_host(logged: &str, this: &str) -> bool {
    let first = |h: &str| h.split('.').next().unwrap_or(h).to_ascii_lowercase();
    logged.eq_ignore_ascii_case(this) || first(logged) == first(this)
}

static FULL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        // Anywhere in the line: a prefix this scanner does not know (a
        // log format, a relay's header) must not hide the message.
        r"(?:^|[^a-z_])(?P<m>(?:ip|nf)_conntrack: (?:nf_conntrack: )?table full(?:,| in netns (?P<ns>\d+),) dropping packet\.?)\s*$",
    )
});
static RATELIMIT: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:^|[^a-z_])net_ratelimit: (\d+) callbacks suppressed"));
static VMALLOC: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:^|[^a-z_])nf_conntrack: falling back to vmalloc"));

/// Unix seconds of a naive local time.
fn local(t: NaiveDateTime, ctx: &Context) -> f64 {
    let utc = t.and_utc();
    utc.timestamp() as f64 + f64::from(utc.timestamp_subsec_micros()) / 1e6
        - f64::from(ctx.utc_offset)
}

/// `Nov 20 03:12:01[.123456]` (syslog, journalctl short): this year, or
/// the year before when this year would be more than a day ahead of now (a
/// day of slack: another host's clock or time zone may differ from ours,
/// and a few hours ahead is that, not last year).
fn syslog_time(text: &str, ctx: &Context) -> Option<f64> {
    let now = ctx.now?;
    let year = DateTime::from_timestamp(now as i64 + i64::from(ctx.utc_offset), 0)?.year();
    let parse = |y: i32| {
        NaiveDateTime::parse_from_str(&format!("{y} {text}"), "%Y %b %e %H:%M:%S%.f")
            .ok()
            .map(|t| local(t, ctx))
    };
    // The latest year that puts the stamp no more than a day ahead; going
    // back up to 8 years finds the last leap year for `Feb 29` (issue 7:
    // logged on 29 Feb 2024, read in 2025).
    (year - 8..=year)
        .rev()
        .filter_map(parse)
        .find(|&t| t <= now + 86_400.0)
}

/// `dmesg -T`'s `Thu Nov 26 18:00:00 2026`: the weekday is ignored (a
/// mismatched one, e.g. from a clock set wrongly when the line was printed
/// and fixed since, must not leave the line undated); the date is used.
fn ctime_time(text: &str, ctx: &Context) -> Option<f64> {
    let date = text.get(4..)?;
    NaiveDateTime::parse_from_str(date, "%b %e %H:%M:%S %Y")
        .ok()
        .map(|t| local(t, ctx))
}

/// `journalctl -o short-full`'s `2026-11-26 18:00:00` and zone: UTC/GMT
/// are known; any other abbreviation is taken as this host's local time.
fn full_time(text: &str, zone: &str, ctx: &Context) -> Option<f64> {
    let t = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok()?;
    if matches!(zone, "UTC" | "GMT" | "Z") {
        let utc = t.and_utc();
        Some(utc.timestamp() as f64 + f64::from(utc.timestamp_subsec_micros()) / 1e6)
    } else {
        Some(local(t, ctx))
    }
}

/// `2026-11-26T13:40:00[.123456](+0000|+00:00|Z|)` (journalctl short-iso,
/// rsyslog's RFC 3339 format); without an offset, local time.
fn iso_time(text: &str, ctx: &Context) -> Option<f64> {
    let secs = |d: DateTime<chrono::FixedOffset>| {
        d.timestamp() as f64 + f64::from(d.timestamp_subsec_micros()) / 1e6
    };
    DateTime::parse_from_rfc3339(text)
        .ok()
        .or_else(|| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z").ok())
        .map(secs)
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| local(t, ctx))
        })
}

/// An uptime stamp's Unix time, only for this boot's own log.
fn uptime_time(secs: f64, ctx: &Context) -> Option<f64> {
    ctx.this_boot
        .then_some(ctx.boot_time)
        .flatten()
        .map(|b| b + secs)
}

/// A line's timestamp as printed, dated only when needed (most lines are
/// not about conntrack, and parsing dates is the costly part).
#[derive(Debug, Clone, Copy)]
enum Raw<'a> {
    /// Seconds since boot: /dev/kmsg's microseconds.
    Kmsg(f64),
    /// Seconds since boot as plain dmesg printed them.
    Uptime(&'a str, f64),
    /// `dmesg -T`.
    Ctime(&'a str),
    /// syslog / journal, with the kernel's uptime stamp when present.
    Syslog(&'a str, Option<f64>),
    /// RFC 3339 at the start (`dmesg --time-format iso`, RFC 5424).
    Iso(&'a str),
    /// `journalctl -o short-full`: date-time and zone.
    Full(&'a str, &'a str),
    /// `journalctl -o short-unix`: Unix seconds.
    Unix(&'a str),
}

impl Raw<'_> {
    fn stamp(self, ctx: &Context) -> Stamp {
        match self {
            Raw::Kmsg(secs) => Stamp {
                text: format!("{secs:.6}"),
                since_boot: Some(secs),
                at: uptime_time(secs, ctx),
            },
            Raw::Uptime(text, secs) => Stamp {
                text: text.to_string(),
                since_boot: Some(secs),
                at: uptime_time(secs, ctx),
            },
            Raw::Ctime(text) => Stamp {
                text: text.to_string(),
                since_boot: None,
                at: ctime_time(text, ctx),
            },
            Raw::Iso(text) => Stamp {
                text: text.to_string(),
                since_boot: None,
                at: iso_time(&text.replace(',', "."), ctx),
            },
            Raw::Full(text, zone) => Stamp {
                text: format!("{text} {zone}"),
                since_boot: None,
                at: full_time(text, zone, ctx),
            },
            Raw::Unix(text) => Stamp {
                text: text.to_string(),
                since_boot: None,
                at: text.parse().ok(),
            },
            Raw::Syslog(text, since_boot) => Stamp {
                text: text.to_string(),
                since_boot,
                at: if text.contains('T') {
                    iso_time(text, ctx)
                } else {
                    syslog_time(text, ctx)
                },
            },
        }
    }
}

/// Split a log line into its timestamp and the kernel's message.
fn split<'a>(line: &'a str) -> (Option<Raw<'a>>, &'a str) {
    if let Some(c) = KMSG.captures(line) {
        let usec: f64 = c[3].parse().unwrap_or(0.0);
        let msg = c.get(4).map_or("", |m| m.as_str());
        return (Some(Raw::Kmsg(usec / 1e6)), msg);
    }
    if let Some(c) = DMESG.captures(line) {
        let secs: f64 = c[1].parse().unwrap_or(0.0);
        let msg = c.get(2).map_or("", |m| m.as_str());
        let text = c.get(1).map_or("", |m| m.as_str());
        return (Some(Raw::Uptime(text, secs)), msg);
    }
    if let Some(c) = DMESG_T.captures(line) {
        let msg = c.get(2).map_or("", |m| m.as_str());
        let text = c.get(1).map_or("", |m| m.as_str());
        return (Some(Raw::Ctime(text)), msg);
    }
    if let Some(c) = SYSLOG.captures(line) {
        let since_boot = c.get(2).and_then(|m| m.as_str().parse().ok());
        let msg = c.get(3).map_or("", |m| m.as_str());
        let text = c.get(1).map_or("", |m| m.as_str());
        return (Some(Raw::Syslog(text, since_boot)), msg);
    }
    let two = |c: regex::Captures<'a>| {
        (
            c.get(1).map_or("", |m| m.as_str()),
            c.get(2).map_or("", |m| m.as_str()),
        )
    };
    if let Some(c) = SHORT_FULL.captures(line) {
        let msg = c.get(3).map_or("", |m| m.as_str());
        let (text, zone) = two(c);
        return (Some(Raw::Full(text, zone)), msg);
    }
    if let Some((text, msg)) = SHORT_UNIX.captures(line).map(two) {
        return (Some(Raw::Unix(text)), msg);
    }
    if let Some((text, msg)) = RFC5424.captures(line).map(two) {
        return (Some(Raw::Iso(text)), msg);
    }
    if let Some((text, msg)) = ISO_LEAD.captures(line).map(two) {
        return (Some(Raw::Iso(text)), msg);
    }
    // Unknown formats: the message is still found anywhere in the line,
    // undated (counted as recent, issue 7 section 3).
    (None, line)
}

/// Streams log lines into a [`LogScan`].
#[derive(Debug)]
pub struct Scanner {
    ctx: Context,
    out: LogScan,
    groups: BTreeMap<Option<u64>, TableFull>,
    /// The group and part (this boot or not) of the previous kernel line,
    /// for attributing a following `net_ratelimit` line.
    previous: Option<(Option<u64>, bool)>,
    /// The host checked: table-full lines naming another are that host's.
    host: Option<String>,
}

impl Scanner {
    pub fn new(ctx: Context) -> Self {
        Self {
            ctx,
            out: LogScan::default(),
            groups: BTreeMap::new(),
            previous: None,
            host: None,
        }
    }

    /// A scanner for the log of host `host` (this host's name): table-full
    /// lines whose prefix names another host go to
    /// [`LogScan::other_hosts`], not to the groups; lines naming no host
    /// (kmsg, dmesg) and this host's are grouped. So a file mixing hosts
    /// (a central syslog) is judged line by line.
    pub fn for_host(ctx: Context, host: Option<&str>) -> Self {
        Self {
            host: host.map(str::to_string),
            ..Self::new(ctx)
        }
    }

    /// Whether a line stamped so is known to be from this boot.
    fn of_this_boot(&self, stamp: Option<&Stamp>) -> bool {
        if self.ctx.this_boot {
            return true;
        }
        match (stamp.and_then(|s| s.at), self.ctx.boot_time) {
            (Some(at), Some(boot)) => at >= boot,
            _ => false,
        }
    }

    pub fn line(&mut self, line: &str) {
        // kmsg continuation lines (" SUBSYSTEM=...") and blank lines.
        if line.starts_with(' ') || line.trim().is_empty() {
            return;
        }
        self.out.lines += 1;
        let (raw, msg) = split(line.trim_end());
        let ctx = self.ctx;
        let stamp = || raw.map(|r| r.stamp(&ctx));
        if self.out.first.is_none() {
            self.out.first = stamp();
        }
        if (FULL.is_match(msg) || RATELIMIT.is_match(msg)) && user_space(line) {
            self.out.not_kernel += 1;
            self.previous = None;
            return;
        }
        if let Some(c) = FULL.captures(msg) {
            if let Some(this) = self.host.as_deref()
                && let Some(other) = line_host(line).filter(|h| !same_host(h, this))
            {
                let key = if self.out.other_hosts.len() < MAX_GROUPS
                    || self.out.other_hosts.contains_key(other)
                {
                    other
                } else {
                    ""
                };
                *self.out.other_hosts.entry(key.to_string()).or_insert(0) += 1;
                self.previous = None;
                return;
            }
            let stamp = stamp();
            let text = c.name("m").map_or(msg, |m| m.as_str());
            // `in netns N` as the kernel prints it (%u of an inode): a
            // leading zero or a number beyond u64 is no inode, yet names
            // some namespace: never this one, never the unnamed group.
            let netns = match c.name("ns").map(|m| m.as_str()) {
                None => None,
                Some(n) => match n.parse::<u64>() {
                    Ok(i) if !(n.starts_with('0') && n.len() > 1) => Some(i),
                    _ => {
                        self.out.malformed_netns += 1;
                        self.out.ungrouped += 1;
                        self.previous = None;
                        return;
                    }
                },
            };
            let this_boot = self.of_this_boot(stamp.as_ref());
            // This namespace's lines and unnamed ones are always grouped:
            // a log crafted with many namespaces must not hide them.
            let always = netns.is_none() || netns == self.ctx.netns_inode;
            if !always && !self.groups.contains_key(&netns) && self.groups.len() >= MAX_GROUPS {
                self.out.ungrouped += 1;
                self.previous = None;
                return;
            }
            let g = self.groups.entry(netns).or_insert_with(|| TableFull {
                netns_inode: netns,
                count: 0,
                suppressed: 0,
                first: stamp.clone(),
                last: None,
                text: text.to_string(),
                this_boot: Tally::default(),
                other: Tally::default(),
            });
            g.count += 1;
            if this_boot {
                g.this_boot.add(stamp.as_ref(), ctx.now);
            } else {
                g.other.add(stamp.as_ref(), ctx.now);
            }
            g.last = stamp;
            self.previous = Some((netns, this_boot));
        } else if let Some(c) = RATELIMIT.captures(msg) {
            if let Some((key, this_boot)) = self.previous
                && let Some(g) = self.groups.get_mut(&key)
            {
                let n = c[1].parse::<u64>().unwrap_or(0);
                g.suppressed = g.suppressed.saturating_add(n);
                let part = if this_boot {
                    &mut g.this_boot
                } else {
                    &mut g.other
                };
                part.suppressed = part.suppressed.saturating_add(n);
            }
        } else {
            if VMALLOC.is_match(msg) {
                self.out.vmalloc_fallbacks += 1;
                self.out.last_vmalloc = stamp();
            }
            self.previous = None;
        }
    }

    /// A line longer than [`MAX_LINE`] (1-based number), skipped unread.
    pub fn skipped(&mut self, line_number: u64) {
        self.out.skipped_long += 1;
        self.out.first_skipped.get_or_insert(line_number);
        self.previous = None;
    }

    pub fn finish(mut self) -> LogScan {
        self.out.table_full = self.groups.into_values().collect();
        self.out
    }
}

/// `N` of a `net_ratelimit: N callbacks suppressed` line (any format),
/// whoever logged it: the limit is global, so a scan of one namespace's
/// lines may also want the count of all.
pub fn suppressed_callbacks(line: &str) -> Option<u64> {
    if user_space(line) {
        return None;
    }
    let (_, msg) = split(line.trim_end());
    RATELIMIT.captures(msg)?[1].parse().ok()
}

/// Scan log lines (any of the supported formats, even mixed) of unknown
/// origin and date.
pub fn scan<'a>(lines: impl IntoIterator<Item = &'a str>) -> LogScan {
    scan_with(lines, Context::default())
}

/// Scan log lines, dated with `ctx`.
pub fn scan_with<'a>(lines: impl IntoIterator<Item = &'a str>, ctx: Context) -> LogScan {
    let mut s = Scanner::new(ctx);
    for line in lines {
        s.line(line);
    }
    s.finish()
}

/// Scan a log as a stream: memory stays bounded by [`MAX_LINE`] whatever
/// the input's size. Lines longer than that are skipped and counted; a run
/// of [`MAX_RUN`] bytes without a line break is an error (not a text log).
pub fn scan_reader(r: impl BufRead, ctx: Context) -> io::Result<LogScan> {
    scan_reader_for(r, ctx, None)
}

/// [`scan_reader`] of a log judged for host `host` ([`Scanner::for_host`]).
pub fn scan_reader_for(
    mut r: impl BufRead,
    ctx: Context,
    host: Option<&str>,
) -> io::Result<LogScan> {
    let mut s = Scanner::for_host(ctx, host);
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    let mut overlong = false;
    let mut run: u64 = 0;
    let mut number: u64 = 0;
    // A line ends at LF, CR (old Mac / some relays: a CR-only log is one
    // endless "line" otherwise) or CRLF (the LF after a CR is skipped).
    let mut after_cr = false;
    let end = |s: &mut Scanner, line: &mut Vec<u8>, overlong: bool, number: u64| {
        if overlong {
            s.skipped(number);
        } else {
            s.line(&String::from_utf8_lossy(line));
        }
        line.clear();
    };
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if !line.is_empty() || overlong {
                end(&mut s, &mut line, overlong, number + 1);
            }
            break;
        }
        if after_cr && buf[0] == b'\n' {
            after_cr = false;
            r.consume(1);
            continue;
        }
        after_cr = false;
        let newline = buf.iter().position(|&b| b == b'\n' || b == b'\r');
        let cr = newline.is_some_and(|i| buf[i] == b'\r');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        run += chunk.len() as u64;
        if !overlong {
            if line.len() + chunk.len() > MAX_LINE {
                overlong = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(newline.is_some());
        r.consume(used);
        if run > MAX_RUN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "line {}: over {} MiB without a line break: not a text log",
                    number + 1,
                    MAX_RUN >> 20
                ),
            ));
        }
        if newline.is_some() {
            after_cr = cr;
            number += 1;
            end(&mut s, &mut line, overlong, number);
            overlong = false;
            run = 0;
        }
    }
    Ok(s.finish())
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

    /// 2026-11-26 14:00:00 UTC.
    const NOW: f64 = 1_795_701_600.0;

    fn at(line: &str, ctx: Context) -> Option<f64> {
        let s = scan_with([line], ctx);
        s.table_full[0].last.as_ref().and_then(|s| s.at)
    }

    #[test]
    fn every_dated_format_gives_a_wall_clock_time() {
        let ctx = Context {
            now: Some(NOW),
            boot_time: Some(NOW - 3600.0),
            utc_offset: 0,
            this_boot: false,
            netns_inode: None,
        };
        let msg = "nf_conntrack: nf_conntrack: table full, dropping packet";
        let t1340 = NOW - 1200.0;
        for (line, want) in [
            (format!("[Thu Nov 26 13:40:00 2026] {msg}"), Some(t1340)),
            (format!("Nov 26 13:40:00 gw kernel: {msg}"), Some(t1340)),
            (
                format!("Nov 26 13:40:00.250000 gw kernel: {msg}"),
                Some(t1340 + 0.25),
            ),
            (
                format!("2026-11-26T13:40:00+0000 gw kernel: {msg}"),
                Some(t1340),
            ),
            (
                format!("2026-11-26T15:40:00+02:00 gw kernel: {msg}"),
                Some(t1340),
            ),
            (
                format!("2026-11-26T13:40:00.5Z gw kernel: {msg}"),
                Some(t1340 + 0.5),
            ),
            // Plain dmesg in a file: uptime of an unknown boot.
            (format!("[ 2400.000000] {msg}"), None),
            (format!("4,1,2400000000,-;{msg}"), None),
        ] {
            assert_eq!(at(&line, ctx), want, "{line}");
        }
        // Local-time formats follow the given offset (UTC+1 here).
        let cet = Context {
            utc_offset: 3600,
            ..ctx
        };
        assert_eq!(
            at(&format!("[Thu Nov 26 14:40:00 2026] {msg}"), cet),
            Some(t1340)
        );
        assert_eq!(
            at(&format!("Nov 26 14:40:00 gw kernel: {msg}"), cet),
            Some(t1340)
        );
        // This boot's own log: uptime stamps are dated from the boot time.
        let kmsg = Context {
            this_boot: true,
            netns_inode: None,
            ..ctx
        };
        assert_eq!(
            at(&format!("4,1,2400000000,-;{msg}"), kmsg),
            Some(NOW - 1200.0)
        );
        assert_eq!(
            at(&format!("[ 2400.000000] {msg}"), kmsg),
            Some(NOW - 1200.0)
        );
    }

    #[test]
    fn syslog_line_without_a_year_is_last_year_when_this_year_is_ahead() {
        let ctx = Context {
            now: Some(NOW),
            ..Context::default()
        };
        let msg = "nf_conntrack: table full, dropping packet.";
        // Dec 31 of 2026 is a month ahead of now: it was 2025-12-31.
        assert_eq!(
            at(&format!("Dec 31 23:00:00 gw kernel: {msg}"), ctx),
            Some(1_767_222_000.0)
        );
        // Earlier this year: this year.
        assert_eq!(
            at(&format!("Jan  2 00:00:00 gw kernel: {msg}"), ctx),
            Some(1_767_312_000.0)
        );
        // Without a clock there is no year to give it.
        assert_eq!(
            at(
                &format!("Jan  2 00:00:00 gw kernel: {msg}"),
                Context::default()
            ),
            None
        );
    }

    #[test]
    fn lines_split_into_this_boot_and_others_with_their_suppressed_drops() {
        let ctx = Context {
            now: Some(NOW),
            boot_time: Some(NOW - 600.0),
            utc_offset: 0,
            this_boot: false,
            netns_inode: None,
        };
        let s = scan_with(
            [
                "Nov 26 13:00:00 gw kernel: nf_conntrack: nf_conntrack: table full in netns 9, dropping packet",
                "Nov 26 13:00:01 gw kernel: net_ratelimit: 7 callbacks suppressed",
                "Nov 26 13:55:00 gw kernel: nf_conntrack: nf_conntrack: table full in netns 9, dropping packet",
                "Nov 26 13:55:01 gw kernel: net_ratelimit: 3 callbacks suppressed",
                "[ 12.5] nf_conntrack: nf_conntrack: table full in netns 9, dropping packet",
            ],
            ctx,
        );
        let g = &s.table_full[0];
        assert_eq!((g.count, g.suppressed), (3, 10));
        assert_eq!(
            (
                g.this_boot.lines,
                g.this_boot.suppressed,
                g.this_boot.undated
            ),
            (1, 3, 0)
        );
        assert_eq!(
            g.this_boot.newest.as_ref().and_then(|s| s.at),
            Some(NOW - 300.0)
        );
        assert_eq!(
            (g.other.lines, g.other.suppressed, g.other.undated),
            (2, 7, 1)
        );
        assert_eq!(
            g.other.newest.as_ref().and_then(|s| s.at),
            Some(NOW - 3600.0)
        );
        assert_eq!(g.this_boot.implied_drops(), 4);
    }

    const FULL_LINE: &str = "[ 1.0] nf_conntrack: nf_conntrack: table full, dropping packet\n";

    #[test]
    fn over_long_line_is_skipped_and_the_next_line_still_counts() {
        let mut input = FULL_LINE.as_bytes().to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        input.push(b'\n');
        input.extend_from_slice(FULL_LINE.as_bytes());
        // No newline at the end: the last line still counts.
        input.extend_from_slice(FULL_LINE.trim_end().as_bytes());
        let s = scan_reader(io::Cursor::new(input), Context::default()).expect("scan");
        assert_eq!((s.skipped_long, s.first_skipped), (1, Some(2)));
        assert_eq!((s.lines, s.total_full()), (3, 3));
    }

    #[test]
    fn endless_line_is_an_error_not_unbounded_memory() {
        // `--kernel-log /dev/zero`: never a line break.
        let e = scan_reader(io::BufReader::new(io::repeat(0)), Context::default())
            .expect_err("not a text log");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            e.to_string(),
            "line 1: over 256 MiB without a line break: not a text log"
        );
    }

    #[test]
    fn invalid_utf8_and_nul_runs_are_read_as_text() {
        let mut input = vec![0u8; 5000];
        input.extend_from_slice(b"\xff\xfe\n");
        input.extend_from_slice(FULL_LINE.as_bytes());
        let s = scan_reader(io::Cursor::new(input), Context::default()).expect("scan");
        assert_eq!((s.lines, s.total_full(), s.skipped_long), (2, 1, 0));
    }

    // 2026-11-26T18:00:00Z
    const NOW2: f64 = 1_795_716_000.0;

    fn ctx_now() -> Context {
        Context {
            now: Some(NOW2),
            ..Context::default()
        }
    }

    #[test]
    fn table_full_found_in_every_log_format_and_dated_where_possible() {
        let msg = "nf_conntrack: table full, dropping packet";
        let cases: [(String, Option<f64>); 7] = [
            (format!("kern  :warn  : [    1.200000] {msg}"), None),
            (format!("<4>[    1.200000] {msg}"), None),
            (
                format!("2026-11-26T17:00:00,123456+00:00 {msg}"),
                Some(NOW2 - 3600.0 + 0.123456),
            ),
            (format!("[ 1234.567890] host kernel: {msg}"), None),
            (
                format!("Thu 2026-11-26 17:00:00 UTC host kernel: {msg}"),
                Some(NOW2 - 3600.0),
            ),
            (
                format!("1795712400.500000 host kernel: {msg}"),
                Some(NOW2 - 3599.5),
            ),
            (
                format!("<4>1 2026-11-26T17:00:00Z host kernel - - - {msg}"),
                Some(NOW2 - 3600.0),
            ),
        ];
        for (line, at) in cases {
            let s = scan_with([line.as_str()], ctx_now());
            assert_eq!(s.total_full(), 1, "{line}");
            let g = &s.table_full[0];
            assert_eq!(g.netns_inode, None, "{line}");
            assert_eq!(
                g.text, "nf_conntrack: table full, dropping packet",
                "{line}"
            );
            let got = g.last.as_ref().and_then(|t| t.at);
            match at {
                Some(at) => assert!(
                    got.is_some_and(|g| (g - at).abs() < 1e-3),
                    "{line}: {got:?}"
                ),
                None => assert_eq!(got, None, "{line}"),
            }
        }
    }

    #[test]
    fn lone_cr_ends_a_line() {
        let log = "[1.0] a\r[2.0] nf_conntrack: table full, dropping packet\r[3.0] b\r\n[4.0] nf_conntrack: table full, dropping packet\r\n";
        let s = scan_reader(log.as_bytes(), Context::default()).expect("scan");
        assert_eq!(s.lines, 4);
        assert_eq!(s.total_full(), 2);
    }

    #[test]
    fn own_namespace_and_unnamed_lines_tracked_beyond_group_cap() {
        let mut lines: Vec<String> = (1..=MAX_GROUPS as u64 + 10)
            .map(|i| format!("nf_conntrack: table full in netns {i}, dropping packet"))
            .collect();
        lines.push("nf_conntrack: table full in netns 999999999, dropping packet".into());
        lines.push("nf_conntrack: table full, dropping packet".into());
        let ctx = Context {
            netns_inode: Some(999_999_999),
            ..Context::default()
        };
        let s = scan_with(lines.iter().map(String::as_str), ctx);
        assert!(
            s.table_full
                .iter()
                .any(|g| g.netns_inode == Some(999_999_999))
        );
        assert!(s.table_full.iter().any(|g| g.netns_inode.is_none()));
        assert_eq!(s.ungrouped, 10);
    }

    #[test]
    fn future_dated_lines_are_skew_not_recent() {
        let s = scan_with(
            [
                "2030-01-01T00:00:00Z nf_conntrack: table full, dropping packet",
                "9999-01-01T00:00:00Z nf_conntrack: table full, dropping packet",
                "2026-11-26T18:04:00Z nf_conntrack: table full, dropping packet",
            ],
            ctx_now(),
        );
        let g = &s.table_full[0];
        assert_eq!(g.count, 3);
        assert_eq!(g.other.future, 2);
        assert_eq!(g.other.undated, 0);
        // Within the slack: a clock a few minutes ahead, still dated.
        assert_eq!(
            g.other.newest.as_ref().and_then(|t| t.at),
            Some(NOW2 + 240.0)
        );
    }

    #[test]
    fn malformed_netns_is_not_unnamed() {
        let s = scan([
            "nf_conntrack: table full in netns 99999999999999999999999, dropping packet",
            "nf_conntrack: table full in netns 007, dropping packet",
        ]);
        assert!(s.table_full.is_empty(), "{:?}", s.table_full);
        assert_eq!(s.malformed_netns, 2);
        assert_eq!(s.ungrouped, 2);
    }

    #[test]
    fn syslog_feb_29_dates_to_last_leap_year() {
        // Now: 2027-03-01T00:00:00Z (2027 is not a leap year; nor is 2026 or 2025).
        let ctx = Context {
            now: Some(1_803_859_200.0),
            ..Context::default()
        };
        let s = scan_with(
            ["Feb 29 12:00:00 host kernel: nf_conntrack: table full, dropping packet"],
            ctx,
        );
        // 2024-02-29T12:00:00Z
        assert_eq!(
            s.table_full[0].last.as_ref().and_then(|t| t.at),
            Some(1_709_208_000.0)
        );
    }

    #[test]
    fn dmesg_t_wrong_weekday_uses_the_date() {
        // 2026-11-26 is a Thursday; the line says Monday.
        let s = scan_with(
            ["[Mon Nov 26 17:00:00 2026] nf_conntrack: table full, dropping packet"],
            ctx_now(),
        );
        assert_eq!(
            s.table_full[0].last.as_ref().and_then(|t| t.at),
            Some(NOW2 - 3600.0)
        );
    }

    #[test]
    fn lines_naming_another_host_are_that_hosts_log() {
        let log = "Dec  5 10:00:00 otherhost kernel: nf_conntrack: table full, dropping packet
Dec 05 10:00:01.123456 OtherHost kernel: nf_conntrack: nf_conntrack: table full, dropping packet
Dec  5 10:00:02 web1 kernel: nf_conntrack: table full, dropping packet
2026-12-05T10:00:03+0000 db2 kernel: nf_conntrack: table full, dropping packet
<4>1 2026-12-05T10:00:04Z db2 kernel - - - nf_conntrack: table full, dropping packet
1764928804.5 db2 kernel: nf_conntrack: table full, dropping packet
[ 5.0] nf_conntrack: table full, dropping packet
";
        let mut s = Scanner::for_host(Context::default(), Some("web1.example.com"));
        for l in log.lines() {
            s.line(l);
        }
        let s = s.finish();
        // web1's line and the dmesg line (no host) are this host's.
        assert_eq!(s.total_full(), 2);
        assert_eq!(s.other_hosts.get("otherhost"), Some(&1));
        assert_eq!(s.other_hosts.get("OtherHost"), Some(&1));
        assert_eq!(s.other_hosts.get("db2"), Some(&3));
        // Without a host to compare with, every line is grouped as before.
        let all = scan_reader(log.as_bytes(), Context::default()).expect("scan");
        assert_eq!(all.total_full(), 7);
        assert!(all.other_hosts.is_empty());
        assert_eq!(line_host("Dec  5 10:00:00 h1 kernel: x"), Some("h1"));
        assert_eq!(line_host("[ 1.0] x"), None);
        assert!(same_host("WEB1", "web1.example.com") && !same_host("web10", "web1"));
    }

    /// Issue 20 W8: what `logger` writes (any local user) is not the
    /// kernel's, in every tagged format; dmesg and kmsg stay the kernel's.
    #[test]
    fn user_space_lines_are_not_kernel_table_full_lines() {
        let msg = "nf_conntrack: table full, dropping packet";
        let user = [
            format!("Dec  7 13:19:45 vm nobody[123]: {msg}"),
            format!("Dec  7 13:19:45 vm nobody: {msg}"),
            format!("Dec 07 13:19:45.123456 vm logger[9]: {msg}"),
            format!("2026-12-07T13:19:45+0000 vm nobody[123]: {msg}"),
            format!("Mon 2026-12-07 13:19:45 UTC vm nobody[123]: {msg}"),
            format!("1796649585.5 vm nobody[123]: {msg}"),
            format!("[  123.456789] vm nobody[123]: {msg}"),
            format!("<13>1 2026-12-07T13:19:45Z vm nobody 123 - - {msg}"),
            "Dec  7 13:19:46 vm nobody[123]: net_ratelimit: 99 callbacks suppressed".into(),
        ];
        let s = scan(user.iter().map(String::as_str));
        assert_eq!(s.total_full(), 0, "{s:?}");
        assert_eq!(s.not_kernel, 9);
        assert_eq!(suppressed_callbacks(&user[8]), None);
        let kernel = [
            format!("Dec  7 13:19:45 vm kernel: {msg}"),
            format!("Dec 07 13:19:45.123456 vm kernel: {msg}"),
            format!("2026-12-07T13:19:45+0000 vm kernel: [ 12.5] {msg}"),
            format!("Mon 2026-12-07 13:19:45 UTC vm kernel: {msg}"),
            format!("1796649585.5 vm kernel: {msg}"),
            format!("[  123.456789] vm kernel: {msg}"),
            format!("<4>1 2026-12-07T13:19:45Z vm kernel - - - {msg}"),
            format!("[  123.456789] nf_conntrack: {msg}"),
            format!("<4>[  123.456789] {msg}"),
            format!("kern  :warn  : [  123.456789] {msg}"),
            format!("2026-12-07T13:19:45,123456+00:00 nf_conntrack: {msg}"),
            format!("4,1234,123456789,-;{msg}"),
        ];
        let s = scan(kernel.iter().map(String::as_str));
        assert_eq!((s.total_full(), s.not_kernel), (12, 0), "{s:?}");
        assert!(kernel.iter().all(|l| !user_space(l)));
    }

    /// `journalctl -o short-monotonic` names its host: another host's
    /// lines are that host's log.
    #[test]
    fn short_monotonic_names_its_host() {
        let line = "[  123.456789] web2 kernel: nf_conntrack: table full, dropping packet";
        assert_eq!(line_host(line), Some("web2"));
        let mut s = Scanner::for_host(Context::default(), Some("web1"));
        s.line(line);
        let s = s.finish();
        assert_eq!((s.total_full(), s.other_hosts.get("web2")), (0, Some(&1)));
        assert_eq!(line_host("[  123.456789] nf_conntrack: x"), None);
    }
}
