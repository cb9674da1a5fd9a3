//! `ctdoctor check`: gather host facts, diagnose, and print a one-screen
//! report whose exit code is a Nagios/Icinga plugin status. Arguments and
//! the run here; the report's rendering in [`report`].

mod report;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ctcore::duration;
use cthost::diagnose::{self, Report, Thresholds};
use cthost::gather::{self, LogInput, Options};

use crate::cli::is_stdin;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Sample the kernel counters twice this far apart and report rates
    /// (e.g. 5s, 500ms): a non-zero drop rate means it is happening now.
    /// 100ms..1h: a rate needs a few packets' time, and a monitoring check
    /// must finish.
    #[arg(long, value_name = "DURATION",
          value_parser = duration::flag(Duration::from_millis(100), duration::HOUR))]
    pub interval: Option<Duration>,

    /// Read the kernel log from a file (dmesg, dmesg -T, journalctl -k,
    /// /var/log/kern.log or messages) or `-` for stdin, instead of /dev/kmsg.
    #[arg(long, value_name = "FILE|-")]
    pub kernel_log: Option<PathBuf>,

    /// Table-full lines younger than this (or of unknown age) mean packets
    /// are dropped now: CRITICAL; older drops are WARNING, so a monitoring
    /// check recovers (e.g. 1h, 30m, 2h30m).
    #[arg(long, value_name = "DURATION", default_value = "1h",
          value_parser = duration::flag(duration::SECOND, duration::YEAR))]
    pub recent: Duration,

    /// Fill percentage of nf_conntrack_max for WARNING.
    #[arg(long, default_value_t = 75.0, value_name = "PERCENT")]
    pub warn: f64,

    /// Fill percentage of nf_conntrack_max for CRITICAL.
    #[arg(long, default_value_t = 90.0, value_name = "PERCENT")]
    pub crit: f64,

    /// Also count every network namespace on the host: each one's count
    /// is compared with the global max on its own.
    #[arg(long)]
    pub all_netns: bool,

    /// Do not dump the table (faster on huge tables; no evictable share,
    /// no idle-entry analysis).
    #[arg(long)]
    pub no_dump: bool,
}

pub fn run(args: &CheckArgs, host: &cthost::Host) -> anyhow::Result<Report> {
    if !(0.0..=100.0).contains(&args.warn)
        || !(0.0..=100.0).contains(&args.crit)
        || args.warn > args.crit
    {
        anyhow::bail!(
            "--warn and --crit are percentages with warn <= crit (got {} / {})",
            args.warn,
            args.crit
        );
    }
    let opts = Options {
        host: host.clone(),
        kernel_log: match &args.kernel_log {
            None => LogInput::Kmsg,
            Some(p) if is_stdin(p) => LogInput::Stdin,
            // Read like the default: without blocking at the ring's end.
            Some(p) if p.as_path() == std::path::Path::new("/dev/kmsg") => LogInput::Kmsg,
            Some(p) => LogInput::File(p.clone()),
        },
        interval: args.interval,
        all_netns: args.all_netns,
        no_dump: args.no_dump,
        sample_undated: true,
    };
    let facts = gather::gather(&opts);
    Ok(diagnose::diagnose(
        &facts,
        &Thresholds {
            warn: args.warn,
            crit: args.crit,
            recent: args.recent,
        },
    ))
}
