//! `ctdoctor export`: a Prometheus exporter. Owns the command-line flags
//! and the start-up checks (netlink permission, port); [`sources`] reads,
//! [`live`] runs the event feed, [`metrics`] maps and encodes, [`server`]
//! serves; the prediction is `ctcore::forecast::estimate`'s over the same
//! feed and windows as `ctdoctor forecast` ([`live`]).

pub mod connections;
pub mod live;
pub mod metrics;
pub mod server;
pub mod sources;
pub mod workloads;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use ctcore::duration;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Address to serve on. The default is loopback only; binding to
    /// another address is an explicit choice.
    #[arg(long, default_value = "127.0.0.1:9466", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,

    /// Refresh the breakdown (a full table dump) at most this often.
    #[arg(long, default_value = "30s", value_name = "DURATION",
          value_parser = duration::flag(duration::SECOND, duration::DAY))]
    pub breakdown_interval: Duration,

    /// Skip the breakdown when the table holds more entries than this
    /// (ctdoctor_breakdown_age_seconds is then +Inf). The default, 1 Mi
    /// entries, is a dump of about 4 s here (0.95 s per 250,000 measured
    /// by scripts/bench-export) in one background thread, once per
    /// interval: the kernel locks one bucket at a time, so it never stalls
    /// packets; above it a dump costs more than an operator expects.
    #[arg(long, default_value_t = 1 << 20, value_name = "N")]
    pub breakdown_max_entries: u64,

    /// Also export the N sources with the most entries
    /// (ctdoctor_top_source_entries); 0 (the default) is off.
    #[arg(long, default_value_t = 0, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=MAX_TOP as u64))]
    pub top: usize,

    /// Per-workload series (ctdoctor_workload_entries,
    /// ctdoctor_workload_new_flows_per_second) for the N containers with
    /// the most entries plus one workload="other"; 0 turns them off.
    #[arg(long, default_value_t = workloads::DEFAULT, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=workloads::MAX as u64))]
    pub workloads: usize,

    /// Window of count samples (one every 10 s) for time to full.
    #[arg(long, default_value = "10m", value_name = "DURATION",
          value_parser = duration::flag(sources::SAMPLE_EVERY * 2, duration::DAY))]
    pub trend_window: Duration,

    /// Length of one forecast window on events: the published verdict is
    /// the last complete window's, as `forecast --window` (5s to 1h).
    #[arg(long, default_value = "60s", value_name = "DURATION",
          value_parser = duration::flag(Duration::from_secs(5), duration::HOUR))]
    pub forecast_window: Duration,

    /// Where the forecast and the breakdown come from: auto (events when
    /// they can be subscribed, else dumps), events (fail without them),
    /// dumps (two breakdown dumps, every --breakdown-interval).
    #[arg(long, value_enum, default_value_t = crate::commands::forecast::SourceArg::Auto)]
    pub source: crate::commands::forecast::SourceArg,

    /// Per-namespace entries and drops for every network namespace.
    #[arg(long)]
    pub all_netns: bool,

    /// Also export node_exporter's conntrack names and values.
    #[arg(long)]
    pub node_exporter_compat: bool,

    /// Do not follow /dev/kmsg for table-full lines.
    #[arg(long)]
    pub no_kernel_log: bool,

    /// Open HTTP connections at once (16 to 65536): past it a new one
    /// closes the oldest idle one, so a flood cannot starve a scrape. Each
    /// costs a descriptor and about 10 KiB.
    #[arg(long, default_value_t = server::DEFAULT_MAX_CONNECTIONS, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(server::MAX_CONNECTIONS))]
    pub max_connections: usize,
}

/// Upper bound of --top: labels stay bounded.
pub const MAX_TOP: usize = 100;

// Range checks live in the parsers so a bad value is a usage error
// (exit 2, like every other bad flag), not a start-up failure (exit 1).
pub fn run(args: &ExportArgs, quiet: bool, host: &cthost::Host) -> Result<()> {
    // Netlink permission first: without CAP_NET_ADMIN nothing works.
    if let Err(e) = host
        .has_kernel()
        .then(|| host.conntrack().and_then(|mut c| c.stats()))
        .transpose()
    {
        if e.is_permission() {
            bail!(
                "{e}: ctdoctor export needs CAP_NET_ADMIN (run as root, or grant it: AmbientCapabilities=CAP_NET_ADMIN)"
            );
        }
        bail!("cannot read conntrack stats over ctnetlink: {e}");
    }
    if args.source == crate::commands::forecast::SourceArg::Events
        && host.has_kernel()
        && cthost::gather::events_setting(host.root()) == Some(0)
    {
        bail!(
            "--source events: net.netfilter.nf_conntrack_events is 0 in this namespace, so the kernel sends no events (enable: sysctl -w net.netfilter.nf_conntrack_events=1, or use --source auto)"
        );
    }
    let shared = sources::Shared::new(sources::Config {
        breakdown_interval: args.breakdown_interval,
        breakdown_max_entries: args.breakdown_max_entries,
        top: args.top,
        trend_window: args.trend_window,
        all_netns: args.all_netns,
        kernel_log: !args.no_kernel_log,
        node_exporter_compat: args.node_exporter_compat,
        workloads: args.workloads,
        entry_bytes: sources::entry_bytes(host.root()),
        host: host.clone(),
        forecast_window: args.forecast_window,
        source: args.source,
    });
    let (max_connections, note) = server::fit_open_files(args.max_connections);
    if let Some(note) = note
        && (!quiet || max_connections < args.max_connections)
    {
        eprintln!("ctdoctor: {note}");
    }
    let limits = server::Limits::new(max_connections);
    let background = std::sync::Arc::clone(&shared);
    server::serve(args.listen, limits, shared, |addr| {
        if let Err(e) = background.start() {
            eprintln!("ctdoctor: warning: background threads not started: {e}");
        }
        if !quiet {
            eprintln!("ctdoctor: serving metrics on http://{addr}/metrics");
        }
    })
}

#[cfg(test)]
mod tests {
    fn parse(extra: &[&str]) -> Result<crate::cli::Cli, clap::Error> {
        let mut args = vec!["ctdoctor", "export"];
        args.extend_from_slice(extra);
        crate::cli::parse(args.into_iter().map(Into::into).collect())
    }

    #[test]
    fn out_of_range_values_are_usage_errors() {
        // clap errors exit 2 (bad usage), as the help text promises.
        for bad in [
            &["--top", "101"][..],
            &["--breakdown-interval", "0"],
            &["--breakdown-interval", "500ms"],
            &["--trend-window", "0"],
            &["--trend-window", "19s"],
            &["--max-connections", "15"],
            &["--max-connections", "65537"],
            &["--forecast-window", "4s"],
            &["--forecast-window", "61m"],
        ] {
            let e = parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad:?}");
        }
        for good in [
            &["--top", "100"][..],
            &["--top", "0"],
            &["--breakdown-interval", "1s"],
            &["--trend-window", "20s"],
            &["--max-connections", "16"],
            &["--max-connections", "65536"],
            &["--forecast-window", "5s"],
            &["--forecast-window", "1h"],
            &["--source", "dumps"],
        ] {
            assert!(parse(good).is_ok(), "{good:?}");
        }
    }
}
