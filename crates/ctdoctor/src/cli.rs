//! Command-line surface (clap derive). Raw arguments only: turning them into
//! work happens in the command modules, so parsing is testable without I/O.

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands::apply::{ApplyArgs, RollbackArgs};
use crate::commands::check::CheckArgs;
use crate::commands::evict::EvictArgs;
use crate::commands::export::ExportArgs;
use crate::commands::lab::LabArgs;
use crate::commands::plan::PlanArgs;
use crate::commands::top::TopArgs;

#[derive(Debug, Parser)]
#[command(
    name = "ctdoctor",
    version,
    about = "Find, explain and fix conntrack table exhaustion (\"nf_conntrack: table full, dropping packet\")",
    after_help = "Examples:\n  ctdoctor check                     is conntrack dropping packets here, and why?\n  ctdoctor top                       breakdown of the live table (ctnetlink)\n  ctdoctor --netns ctbench top -n 5  the table of another network namespace\n  conntrack -L | ctdoctor top --file -\n  ctdoctor top --file dump.txt --filter l4=tcp --by state,dport --json\n\nExit codes: top: 0 success, 1 failure (the reason is printed), 2 bad usage.\ncheck: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios plugin convention)."
)]
pub struct Cli {
    /// Run against another network namespace: a name from `ip netns list`,
    /// a PID, or a path to a namespace file (e.g. /proc/PID/ns/net).
    #[arg(long, global = true, value_name = "NAME|PATH|PID")]
    pub netns: Option<String>,

    /// Read (and, for apply/rollback, write) the system under DIR instead
    /// of /: its proc, sys, dev/kmsg, run/netns, etc and var. A fake tree
    /// for tests, or the host's filesystem mounted in a container. Under a
    /// DIR no kernel socket is opened and no program run: check, top and
    /// export read the table from the tree's /proc/net/nf_conntrack;
    /// watch, forecast, lab and --netns need the running kernel.
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<std::path::PathBuf>,

    /// Where bpffs is mounted: check, top and export report the Cilium and
    /// Calico eBPF conntrack maps pinned under DIR/tc/globals.
    #[arg(long, global = true, value_name = "DIR", default_value = cthost::host::BPFFS)]
    pub bpffs: std::path::PathBuf,

    /// Machine-readable JSON output (stable field names).
    #[arg(long, global = true)]
    pub json: bool,

    /// Colour in human output (honours NO_COLOR).
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    pub color: Color,

    /// Quiet: no warnings on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

impl Color {
    /// Whether to colour: `auto` means a terminal, no NO_COLOR, and a TERM
    /// other than `dumb` (a terminal that cannot show escape codes).
    pub fn enabled(self) -> bool {
        use std::io::IsTerminal;
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Auto => {
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Diagnose conntrack exhaustion on this host: fill, memory, drop
    /// counters, table-full messages in the kernel log, risky timeouts and
    /// what turns conntrack on here, each finding with evidence and a fix.
    #[command(
        after_help = "Examples:\n  ctdoctor check\n  ctdoctor check --interval 5s          rates: is it dropping right now?\n  ctdoctor check --all-netns            every container / pod namespace too\n  ctdoctor --netns ctd-x check --json\n  journalctl -k --since yesterday | ctdoctor check --kernel-log -\n\nExit codes (Nagios/Icinga plugin): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN\n(including bad usage)."
    )]
    Check(CheckArgs),
    /// Break the conntrack table down by protocol, state, flags, zone, mark,
    /// NAT, top sources, destinations and ports, and remaining timeout.
    #[command(
        after_help = "Examples:\n  ctdoctor top\n  ctdoctor top --source proc -n 20\n  ctdoctor top --file conntrack-L.txt --by src,dport\n  conntrack -L -o extended | ctdoctor top --file - --json\n  ctdoctor top --filter l4=tcp --filter state=SYN_SENT --by src\n  ctdoctor top --filter 'src=10.0.0.0/8' --filter 'dport=tcp/443,tcp/80' --csv\n\nFilter keys: l3, l4, state, flags (assured|unreplied|other), zone, mark,\nnat (none|snat|dnat|snat+dnat), src, dst, reply-src (address or CIDR), sport, dport\n(PORT or PROTO/PORT), timeout<DURATION, timeout>DURATION (remaining timeout).\nCommas mean OR, repeated --filter means AND, != negates."
    )]
    Top(TopArgs),

    /// Delete the entries matching a filter (top's syntax) over ctnetlink:
    /// one dump, then batched deletes by tuple and id. A dry run unless --yes.
    #[command(
        after_help = "Examples:\n  ctdoctor evict --filter flags=unreplied                 what would go (dry run)\n  ctdoctor --netns pod evict --filter flags=unreplied --yes\n  ctdoctor evict --filter l4=udp --filter 'timeout<10s' --yes --rate 20000/s\n  ctdoctor evict --filter l4=udp --filter dst=10.96.0.10 --filter dport=53 \\\n      --filter 'reply-src!=10.244.1.5,10.244.2.7' --yes   (kube-proxy stale service)\n\nASSURED entries are kept unless the filter names them (flags=assured or any state=).\n\nExit codes: 0 done (or dry run), 1 some deletions failed or no ctnetlink, 2 bad usage."
    )]
    Evict(EvictArgs),

    /// Size nf_conntrack_max, the hash table and timeouts from RAM, kernel
    /// and observed load; print sysctl.d, modprobe.d and NOTRACK rule files.
    #[command(
        after_help = "Examples:\n  ctdoctor plan\n  ctdoctor plan --profile nat-gateway --max-memory 2%\n  ctdoctor plan --memory 8GiB --cpus 4 --kernel 5.10.0 --peak 300000\n  ctdoctor plan --format sysctl > /etc/sysctl.d/90-conntrack.conf\n  ctdoctor plan --notrack-port 80,443 --format nft > notrack.nft"
    )]
    Plan(PlanArgs),

    /// Apply a plan live (journal first, read-back, rollback on failure).
    #[command(
        after_help = "Examples:\n  ctdoctor apply                       show what would change\n  ctdoctor apply --yes --persist       change live values and write the config files\n  ctdoctor plan --format json > p.json && ctdoctor apply --plan p.json --yes\n  ctdoctor --netns pod apply --timeouts-only --yes\n\nExit codes: 0 applied (or dry run), 1 refused or failed (everything restored), 2 bad usage."
    )]
    Apply(ApplyArgs),

    /// Restore exactly what the last apply changed (idempotent).
    Rollback(RollbackArgs),

    /// Serve Prometheus metrics (default http://127.0.0.1:9466/metrics).
    #[command(
        after_help = "Examples:\n  ctdoctor export\n  ctdoctor export --listen 0.0.0.0:9466 --all-netns --top 10\n  ctdoctor export --node-exporter-compat\n\nExit codes: 0 after SIGTERM/SIGINT, 1 start-up failure (port taken, no CAP_NET_ADMIN), 2 bad usage."
    )]
    Export(ExportArgs),

    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  ctdoctor completions bash > /etc/bash_completion.d/ctdoctor\n  ctdoctor completions zsh > \"${fpath[1]}/_ctdoctor\"\n  ctdoctor completions fish > ~/.config/fish/completions/ctdoctor.fish"
    )]
    Completions(crate::commands::assets::CompletionsArgs),

    /// Print the man page (roff), of ctdoctor or of one subcommand.
    #[command(
        after_help = "Examples:\n  ctdoctor man | man -l -\n  ctdoctor man check > ctdoctor-check.1"
    )]
    Man(crate::commands::assets::ManArgs),

    /// Reproduce table exhaustion with real traffic in a throwaway network
    /// namespace (root), sampling the kernel's count, states, counters and
    /// table-full log lines; the namespace is removed at the end.
    Lab(LabArgs),
    /// Predict when a workload or an attack fills the table: a
    /// kernel-faithful model of nf_conntrack (count, early_drop, GC).
    #[command(
        after_help = "Examples:\n  ctdoctor simulate --scenario nginx-short-upstream --duration 10m\n  ctdoctor simulate --rate 8000 --lifecycle short-http --timeout tcp_timeout_time_wait=120\n  ctdoctor simulate --scenario syn-flood-web --json > run.json\n  ctdoctor plan --format json > p.json && ctdoctor simulate --scenario nat-gateway --compare p.json\n  ctdoctor simulate --from-live --duration 1h --svg live.svg\n\nExit codes: 0 ran, 1 failed, 2 bad usage."
    )]
    Simulate(crate::commands::simulate::SimulateArgs),

    /// Live view of the table from ctnetlink events: fill, new/destroyed
    /// and drop rates, state mix, and who creates connections fastest.
    #[command(
        after_help = "Examples:\n  ctdoctor watch                                  full-screen view, 1 s intervals\n  ctdoctor --netns ctd-x watch --interval 5s\n  ctdoctor watch --filter l4=tcp --filter state=SYN_SENT\n  ctdoctor watch --json-lines --count 60 > minute.jsonl\n\nKeys: q quit, p pause, tab or 1-3 switch views, s sort (last interval / last 60 s),\n/ filter (the syntax of top --filter, space-separated; empty clears).\nEvents need net.netfilter.nf_conntrack_events=1 or 2 (the default); with 0,\nwatch still shows count, fill and drop rates, and says what to enable.\n\nExit codes: 0 stopped (q, --count, SIGINT/SIGTERM), 1 failure, 2 bad usage\n(including a full-screen view asked for without a terminal)."
    )]
    Watch(crate::commands::watch::WatchArgs),

    /// Predict the steady-state count and when the table is full, from
    /// arrival rates and time in state per protocol/state (ctnetlink events
    /// over a window, or two dumps), and the change that avoids it.
    #[command(
        after_help = "Examples:\n  ctdoctor forecast\n  ctdoctor forecast --window 5m --crit 30m --warn 4h\n  ctdoctor --netns pod forecast --json\n  ctdoctor forecast --source dumps        without ctnetlink events\n\nExit codes (Nagios/Icinga plugin, like check): 0 OK, 1 WARNING (full within\n--warn), 2 CRITICAL (full within --crit), 3 UNKNOWN (including bad usage)."
    )]
    Forecast(crate::commands::forecast::ForecastArgs),
}

/// Where `top` reads entries from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// ctnetlink dump (needs CAP_NET_ADMIN; works without /proc/net/nf_conntrack).
    Netlink,
    /// /proc/net/nf_conntrack (needs CONFIG_NF_CONNTRACK_PROCFS).
    Proc,
}

/// Parse the command line with `--color` applied to clap's own messages
/// too: a usage error under `--color never` has no escape codes (issue 7 §6).
/// The flag is read before parsing because the error comes from parsing.
pub fn parse(args: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let mut choice = clap::ColorChoice::Auto;
    let mut words = args.iter().skip(1).map(|a| a.to_str());
    while let Some(word) = words.next() {
        let value = match word {
            Some("--") => break,
            Some("--color") => words.next().flatten(),
            Some(w) => w.strip_prefix("--color="),
            None => None,
        };
        match value {
            Some("never") => choice = clap::ColorChoice::Never,
            Some("always") => choice = clap::ColorChoice::Always,
            Some("auto") => choice = clap::ColorChoice::Auto,
            _ => {}
        }
    }
    let mut cmd = Cli::command().color(choice);
    let matches = cmd.try_get_matches_from_mut(args)?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

/// A file argument where `-` means standard input.
pub fn is_stdin(p: &std::path::Path) -> bool {
    p.as_os_str() == "-"
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_after_subcommand() {
        let cli = Cli::try_parse_from(["ctdoctor", "top", "--netns", "x", "--json", "-n", "3"])
            .expect("parses");
        assert_eq!(cli.netns.as_deref(), Some("x"));
        assert!(cli.json);
    }

    /// Every duration flag takes the one syntax (units or plain seconds)
    /// and refuses what lies outside its bounds, naming them.
    #[test]
    fn duration_flags_share_one_syntax_and_name_their_bounds() {
        let parse = |args: &[&str]| {
            let mut v = vec!["ctdoctor"];
            v.extend_from_slice(args);
            Cli::try_parse_from(v)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        for ok in [
            &["watch", "--interval", "250ms"][..],
            &["watch", "--interval", "2"],
            &["check", "--interval", "0.5", "--recent", "30m"],
            &[
                "export",
                "--breakdown-interval",
                "15s",
                "--trend-window",
                "1m",
            ],
            &[
                "lab",
                "short-connections",
                "--duration",
                "30s",
                "--step",
                "1",
            ],
            &[
                "forecast", "--window", "5m", "--warn", "1h", "--crit", "10m",
            ],
        ] {
            assert_eq!(parse(ok), Ok(()), "{ok:?}");
        }
        for (bad, range) in [
            (&["watch", "--interval", "10ms"][..], "between 100ms and 1h"),
            (&["check", "--interval", "0"], "between 100ms and 1h"),
            (&["check", "--recent=-1"], "between 1s and 1year"),
            (&["export", "--trend-window", "10s"], "between 20s and 1day"),
            (
                &["lab", "short-connections", "--duration", "100y"],
                "between 100ms and 1day",
            ),
            (&["forecast", "--window", "1s"], "between 5s and 1day"),
        ] {
            let e = parse(bad).expect_err("refused");
            assert!(e.contains(range), "{bad:?}: {e}");
        }
        let e = parse(&["watch", "--interval", "soon"]).expect_err("refused");
        assert!(e.contains("e.g. 500ms"), "{e}");
    }
}
