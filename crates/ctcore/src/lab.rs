//! The pure part of `ctdoctor lab`: a sample of the lab namespace from the
//! kernel's figures, the run's summary from its samples and the counters'
//! increase, and the tally of the kernel-log records read during the run.
//! Values in, values out: the binary reads ctnetlink and /dev/kmsg.

use std::collections::BTreeMap;

use ctmodel::{Entry, L4Proto};
use serde::Serialize;

use crate::counters::{self, Counters};
use crate::kernel_log;

/// One sample of the namespace: the simulate series point plus the
/// kernel's own raw figures. Counters are cumulative since the start.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Point {
    /// Seconds since the traffic started.
    pub t: f64,
    /// Traffic entries: the namespace's count minus the pre-fill.
    pub entries: u64,
    /// The effective max: global max minus the pre-fill.
    pub max: u64,
    pub drops: u64,
    pub early_drops: u64,
    pub insert_failed: u64,
    /// Traffic entries by "l4/STATE" (TCP) or "l4/UNREPLIED|REPLIED|ASSURED"
    /// (from a dump; pre-fill entries excluded).
    pub by_state: BTreeMap<String, u64>,
    /// The namespace's own count (CTA_STATS_GLOBAL_ENTRIES).
    pub count: u64,
    pub global_max: u64,
    /// Flows the generator has started so far (approximate: read at the
    /// end from its per-second report).
    pub sent: u64,
    /// Table-full log lines naming this namespace, so far.
    pub log_lines: u64,
}

/// The run in numbers: what it was (the caller fills those fields) and
/// what the kernel did ([`Summary::record`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub about: String,
    pub namespace: String,
    pub netns_inode: u64,
    pub kernel: String,
    pub duration_s: f64,
    pub step_s: f64,
    pub rate_target: f64,
    pub rate_achieved: f64,
    pub timeouts: BTreeMap<String, u32>,
    pub global_max: u64,
    pub prefill: u64,
    /// headroom = global max - prefill: the table size the traffic sees.
    pub effective_max: u64,
    pub new_flows: u64,
    pub completed: u64,
    pub failed: u64,
    pub drops: u64,
    pub early_drops: u64,
    pub insert_failed: u64,
    pub chaintoolong: u64,
    pub peak_entries: u64,
    /// First sample with drops > 0 (step resolution).
    pub time_to_first_drop_s: Option<f64>,
    /// From the first table-full log line's kernel timestamp (sub-second).
    pub time_to_first_log_s: Option<f64>,
    pub log_lines: u64,
    pub log_suppressed: u64,
    /// All `net_ratelimit: N callbacks suppressed` during the run (global:
    /// other namespaces' table-full messages use up the same budget).
    pub log_ratelimited: u64,
    pub interrupted: bool,
    pub kept: bool,
}

impl Point {
    /// A sample from the namespace's count and the global max
    /// (IPCTNL_MSG_CT_GET_STATS), the counters' increase since the traffic
    /// started ([`Counters::delta`], wrap-safe per CPU) and the traffic's
    /// entries by state; `t`, `sent` and `log_lines` are the caller's.
    pub fn new(
        count: u64,
        global_max: u64,
        prefill: u64,
        counters: &Counters,
        by_state: BTreeMap<String, u64>,
    ) -> Self {
        Self {
            entries: count.saturating_sub(prefill),
            max: global_max.saturating_sub(prefill),
            drops: counters.drop.unwrap_or(0),
            early_drops: counters.early_drop.unwrap_or(0),
            insert_failed: counters.insert_failed.unwrap_or(0),
            by_state,
            count,
            global_max,
            ..Self::default()
        }
    }
}

/// The key of an entry in [`Point::by_state`]: its "l4/STATE" class
/// (ctmodel's), with "?" for protocol number 0.
pub fn state_key(e: &Entry) -> String {
    let key = ctmodel::flows::ClassKey::of(e);
    if e.l4() == L4Proto::Unknown(0) {
        format!("?/{}", key.state())
    } else {
        key.to_string()
    }
}

/// Fill each sample's `sent`: the flows started by its time, from the
/// generator's per-second counts (whole seconds before it, and the share
/// of the second it falls in).
pub fn count_sent(series: &mut [Point], started_per_second: &[u64]) {
    for p in series {
        let whole = p.t.floor() as usize;
        let before: u64 = started_per_second.iter().take(whole).sum();
        let part = started_per_second
            .get(whole)
            .map_or(0.0, |&n| n as f64 * (p.t - p.t.floor()));
        p.sent = before + part.round() as u64;
    }
}

/// The counters as the run's JSON names them: every counter of
/// [`counters::NAMES`], 0 when the kernel does not report it.
pub fn counter_map(c: &Counters) -> BTreeMap<&'static str, u64> {
    let mut m: BTreeMap<&'static str, u64> = counters::NAMES.iter().map(|n| (*n, 0)).collect();
    m.extend(c.named());
    m
}

impl Summary {
    /// What the kernel did, from the samples, the counters' increase over
    /// the whole run and the log tally; `start_us` is the traffic's start
    /// on the clock of /dev/kmsg (CLOCK_MONOTONIC, microseconds).
    /// `global_max` and `prefill` must be set first.
    pub fn record(
        &mut self,
        series: &[Point],
        counters: &Counters,
        log: &LogTally,
        start_us: Option<u64>,
    ) {
        self.effective_max = self.global_max.saturating_sub(self.prefill);
        self.drops = counters.drop.unwrap_or(0);
        self.early_drops = counters.early_drop.unwrap_or(0);
        self.insert_failed = counters.insert_failed.unwrap_or(0);
        self.chaintoolong = counters.chaintoolong.unwrap_or(0);
        self.peak_entries = series.iter().map(|p| p.entries).max().unwrap_or(0);
        self.time_to_first_drop_s = series.iter().find(|p| p.drops > 0).map(|p| p.t);
        self.time_to_first_log_s = match (log.first_us, start_us) {
            (Some(l), Some(s)) => Some(l.saturating_sub(s) as f64 / 1e6),
            _ => None,
        };
        self.log_lines = log.lines;
        self.log_suppressed = log.suppressed;
        self.log_ratelimited = log.ratelimited;
    }
}

/// Table-full lines kept as text (the rest are counted).
pub const LOG_TEXTS: usize = 20;

/// The lab namespace's table-full lines among /dev/kmsg records, as they
/// are read batch by batch during a run (kernel_log's matching).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogTally {
    /// The namespace's inode, as `table full in netns N` names it.
    pub inode: u64,
    pub lines: u64,
    /// `net_ratelimit: N callbacks suppressed` right after its lines.
    pub suppressed: u64,
    /// Every `net_ratelimit: N callbacks suppressed` during the run, whoever
    /// logged: the limit is global (5 s, burst 10), so other namespaces'
    /// messages can hide this one's.
    pub ratelimited: u64,
    /// The first line's timestamp, microseconds since boot.
    pub first_us: Option<u64>,
    /// The first [`LOG_TEXTS`] lines, as logged.
    pub texts: Vec<String>,
}

impl LogTally {
    pub fn new(inode: u64) -> Self {
        Self {
            inode,
            ..Self::default()
        }
    }

    /// One batch of records (their first lines, "PRIO,SEQ,USEC,FLAGS;text"),
    /// in the order logged.
    pub fn add<S: AsRef<str>>(&mut self, records: &[S]) {
        let ctx = kernel_log::Context {
            netns_inode: Some(self.inode),
            this_boot: true,
            ..Default::default()
        };
        let scan = kernel_log::scan_with(records.iter().map(AsRef::as_ref), ctx);
        for g in scan
            .table_full
            .iter()
            .filter(|g| g.netns_inode == Some(self.inode))
        {
            self.lines += g.count;
            self.suppressed += g.suppressed;
        }
        for r in records.iter().map(AsRef::as_ref) {
            if let Some(n) = kernel_log::suppressed_callbacks(r) {
                self.ratelimited += n;
                continue;
            }
            let one = kernel_log::scan_with(std::iter::once(r), ctx);
            let Some(g) = one
                .table_full
                .into_iter()
                .find(|g| g.netns_inode == Some(self.inode))
            else {
                continue;
            };
            if self.first_us.is_none() {
                self.first_us = g
                    .first
                    .and_then(|s| s.since_boot)
                    .map(|s| (s * 1e6).round() as u64);
            }
            if self.texts.len() < LOG_TEXTS {
                self.texts.push(g.text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::CpuStats;
    use ctmodel::text::{Line, parse_line};

    fn drops(cpu: u16, drop: u32) -> CpuStats {
        CpuStats {
            cpu,
            drop: Some(drop),
            insert_failed: Some(0),
            ..CpuStats::default()
        }
    }

    #[test]
    fn a_point_is_the_traffic_over_the_prefill_and_its_counters_wrap_per_cpu() {
        // CPU 0's drop counter wrapped during the run (+5), CPU 1 rose by 2.
        let base = [drops(0, u32::MAX - 2), drops(1, 10)];
        let now = [drops(0, 2), drops(1, 12)];
        let by_state = BTreeMap::from([("tcp/TIME_WAIT".to_string(), 1800)]);
        let p = Point::new(
            27_000,
            30_000,
            25_000,
            &Counters::delta(&base, &now),
            by_state.clone(),
        );
        assert_eq!(
            p,
            Point {
                entries: 2000,
                max: 5000,
                drops: 7,
                early_drops: 0,
                insert_failed: 0,
                by_state,
                count: 27_000,
                global_max: 30_000,
                ..Point::default()
            }
        );
        // A count below the pre-fill (entries expired or evicted): 0, not a wrap.
        let p = Point::new(100, 30_000, 25_000, &Counters::default(), BTreeMap::new());
        assert_eq!((p.entries, p.max), (0, 5000));
    }

    #[test]
    fn sent_is_read_off_the_per_second_report() {
        let mut series: Vec<Point> = [0.0, 0.5, 1.25, 3.0, 4.2]
            .into_iter()
            .map(|t| Point {
                t,
                ..Point::default()
            })
            .collect();
        count_sent(&mut series, &[100, 200, 300]);
        let sent: Vec<u64> = series.iter().map(|p| p.sent).collect();
        assert_eq!(sent, [0, 50, 150, 600, 600]);
    }

    #[test]
    fn the_summary_takes_peak_first_drop_and_first_log_line() {
        let at = |t: f64, entries: u64, drops: u64| Point {
            t,
            entries,
            drops,
            ..Point::default()
        };
        let series = [
            at(0.0, 0, 0),
            at(1.0, 1000, 0),
            at(2.0, 2000, 3),
            at(3.0, 1990, 9),
        ];
        let counters = Counters {
            drop: Some(9),
            early_drop: Some(4),
            chaintoolong: Some(1),
            ..Counters::default()
        };
        let log = LogTally {
            lines: 2,
            suppressed: 5,
            ratelimited: 40,
            first_us: Some(7_250_000),
            ..LogTally::new(1)
        };
        let mut s = Summary {
            global_max: 262_144,
            prefill: 260_144,
            ..Summary::default()
        };
        s.record(&series, &counters, &log, Some(5_000_000));
        assert_eq!(s.effective_max, 2000);
        assert_eq!(
            (s.drops, s.early_drops, s.insert_failed, s.chaintoolong),
            (9, 4, 0, 1)
        );
        assert_eq!(s.peak_entries, 2000);
        assert_eq!(s.time_to_first_drop_s, Some(2.0));
        assert_eq!(s.time_to_first_log_s, Some(2.25));
        assert_eq!(
            (s.log_lines, s.log_suppressed, s.log_ratelimited),
            (2, 5, 40)
        );
        // No start time (clock unreadable): no first-log time; a line
        // logged before the start counts from 0.
        s.record(&series, &counters, &log, None);
        assert_eq!(s.time_to_first_log_s, None);
        s.record(&series, &counters, &log, Some(8_000_000));
        assert_eq!(s.time_to_first_log_s, Some(0.0));
        s.record(&[], &Counters::default(), &LogTally::default(), None);
        assert_eq!(
            (s.peak_entries, s.time_to_first_drop_s, s.drops),
            (0, None, 0)
        );
    }

    #[test]
    fn counter_map_names_every_counter() {
        let m = counter_map(&Counters {
            drop: Some(3),
            ..Counters::default()
        });
        assert_eq!(m.len(), 10);
        assert_eq!(m["drop"], 3);
        assert_eq!(m["chaintoolong"], 0);
    }

    const OURS: &str =
        "nf_conntrack: nf_conntrack: table full in netns 4026532245, dropping packet";

    #[test]
    fn the_log_tally_keeps_this_namespaces_lines_and_every_ratelimit() {
        let mut log = LogTally::new(4_026_532_245);
        log.add(&[
            format!("4,100,5000000,-;{OURS}"),
            "4,101,5000100,-;net_ratelimit: 12 callbacks suppressed".to_string(),
            "4,102,5000200,-;nf_conntrack: nf_conntrack: table full in netns 99, dropping packet"
                .to_string(),
            "4,103,5000300,-;net_ratelimit: 3 callbacks suppressed".to_string(),
            "6,104,5000400,-;eth0: link up".to_string(),
        ]);
        log.add(&[format!("4,105,6000000,-;{OURS}")]);
        assert_eq!(
            log,
            LogTally {
                inode: 4_026_532_245,
                lines: 2,
                suppressed: 12,
                ratelimited: 15,
                first_us: Some(5_000_000),
                texts: vec![OURS.to_string(), OURS.to_string()],
            }
        );
        let mut many = LogTally::new(4_026_532_245);
        let records: Vec<String> = (0..25)
            .map(|i| format!("4,{i},{},-;{OURS}", 1_000_000 + i))
            .collect();
        many.add(&records);
        assert_eq!((many.lines, many.texts.len()), (25, LOG_TEXTS));
        assert_eq!(many.first_us, Some(1_000_000));
    }

    #[test]
    fn state_keys_are_the_class_keys() {
        let entry = |line: &str| match parse_line(line.as_bytes()) {
            Ok(Line::Entry(e)) => e,
            other => panic!("{other:?}"),
        };
        let udp = entry(
            "ipv4     2 udp      17 29 src=127.0.0.1 dst=127.0.0.1 sport=58168 dport=53 \
             packets=1 bytes=29 [UNREPLIED] src=127.0.0.1 dst=127.0.0.1 sport=53 dport=58168 \
             packets=0 bytes=0 mark=0 use=1",
        );
        assert_eq!(state_key(&udp), "udp/UNREPLIED");
        let tcp = entry(
            "ipv4     2 tcp      6 95 SYN_SENT src=10.1.1.1 dst=10.2.2.2 sport=1000 dport=443 \
             [UNREPLIED] src=10.2.2.2 dst=10.1.1.1 sport=443 dport=1000 mark=0 use=1",
        );
        assert_eq!(state_key(&tcp), "tcp/SYN_SENT");
        let zero = Entry {
            l4: Some(L4Proto::Unknown(0)),
            ..Entry::default()
        };
        assert_eq!(state_key(&zero), "?/UNREPLIED");
    }
}
