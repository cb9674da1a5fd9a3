//! The kernel log during a run: new /dev/kmsg records, the table-full
//! lines naming the lab namespace, their first timestamp and the global
//! net_ratelimit suppressions.

use ctcore::lab::LogTally;
use cthost::Host;
use cthost::kmsg::{From, Kmsg};

/// New /dev/kmsg records since it was opened (it starts at the end), read
/// without blocking, into the tally of the namespace's table-full lines.
pub(super) struct KernelLog {
    /// `None` when /dev/kmsg could not be opened, or reading it failed.
    kmsg: Option<Kmsg>,
    pub(super) tally: LogTally,
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
            tally: LogTally::new(inode),
        }
    }

    /// Read what was logged since the last poll.
    pub(super) fn poll(&mut self) {
        let Some(kmsg) = self.kmsg.as_mut() else {
            return;
        };
        let mut records = Vec::new();
        if let Err(e) = kmsg.drain(|r| records.push(r.to_string())) {
            eprintln!("ctdoctor: warning: {e}: no further table-full log lines");
            self.kmsg = None;
        }
        self.tally.add(&records);
    }
}
