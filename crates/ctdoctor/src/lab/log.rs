//! The kernel log during a run: new /dev/kmsg records, the table-full
//! lines naming the lab namespace, their first timestamp and the global
//! net_ratelimit suppressions.

use cthost::Host;
use cthost::kmsg::{From, Kmsg};

/// New /dev/kmsg records since it was opened (it starts at the end), read
/// without blocking; table-full lines for one namespace inode are kept.
pub(super) struct KernelLog {
    /// `None` when /dev/kmsg could not be opened, or reading it failed.
    kmsg: Option<Kmsg>,
    inode: u64,
    pub(super) lines: u64,
    pub(super) suppressed: u64,
    /// Every `net_ratelimit: N callbacks suppressed` during the run, whoever
    /// logged: the limit is global (5 s, burst 10), so other namespaces'
    /// messages can hide this one's.
    pub(super) ratelimited: u64,
    pub(super) first_ts_us: Option<u64>,
    pub(super) texts: Vec<String>,
}

impl KernelLog {
    /// Opened at the end of the ring: only records logged from now on.
    /// Unreadable (no CAP_SYSLOG) is a warning: the run goes on without
    /// log lines.
    pub(super) fn open(host: &Host, inode: u64) -> Self {
        let kmsg = host
            .kmsg(From::End, false)
            .map_err(|e| eprintln!("ctdoctor: warning: {e}: no table-full log lines"))
            .ok();
        Self {
            kmsg,
            inode,
            lines: 0,
            suppressed: 0,
            ratelimited: 0,
            first_ts_us: None,
            texts: Vec::new(),
        }
    }

    pub(super) fn poll(&mut self) {
        let Some(kmsg) = self.kmsg.as_mut() else {
            return;
        };
        let mut records = Vec::new();
        if let Err(e) = kmsg.drain(|r| records.push(r.to_string())) {
            eprintln!("ctdoctor: warning: {e}: no further table-full log lines");
            self.kmsg = None;
        }
        let ctx = cthost::kernel_log::Context {
            netns_inode: Some(self.inode),
            this_boot: true,
            ..Default::default()
        };
        let scan = cthost::kernel_log::scan_with(records.iter().map(String::as_str), ctx);
        for g in scan
            .table_full
            .iter()
            .filter(|g| g.netns_inode == Some(self.inode))
        {
            self.lines += g.count;
            self.suppressed += g.suppressed;
        }
        let needle = format!("in netns {},", self.inode);
        for r in &records {
            let Some((head, msg)) = r.split_once(';') else {
                continue;
            };
            if let Some(n) = msg
                .strip_prefix("net_ratelimit: ")
                .and_then(|m| m.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
            {
                self.ratelimited += n;
            }
            if !msg.contains(&needle) {
                continue;
            }
            if self.first_ts_us.is_none() {
                self.first_ts_us = head.split(',').nth(2).and_then(|t| t.parse().ok());
            }
            if self.texts.len() < 20 {
                self.texts.push(msg.trim_end().to_string());
            }
        }
    }
}

/// Microseconds of CLOCK_MONOTONIC, the clock of /dev/kmsg timestamps.
pub(super) fn monotonic_us() -> Option<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    Some(t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
}
