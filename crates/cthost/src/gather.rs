//! Collecting [`Facts`] about this host and namespace: every source is read
//! on its own and fails on its own, recorded in `unreadable` with the reason
//! and the missing privilege. The only module here that does I/O besides
//! the readers in [`crate::source`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ctnetlink::{Conntrack, Family};

pub use crate::facts::{Counters, Facts, Mix, NetnsCount};
use crate::kernel_log::{self, LogScan};
use crate::kmsg::{self, Kmsg};
use crate::namespaces::{self, Namespace};
use crate::ruleset;
use crate::services;
use crate::slab;
use crate::source::{Root, Unreadable, Why, io_unreadable, netlink_unreadable};
use crate::{Host, counts};
use crate::{cloud, stat};

pub(crate) const NF: &str = "/proc/sys/net/netfilter";

/// How long `check` samples the counters itself when drops cannot be dated
/// by the log: long enough for a table that is full now to drop a packet
/// (any new connection is dropped), short enough for a monitoring check.
pub const AUTO_SAMPLE: Duration = Duration::from_secs(1);

/// Where to read the kernel log from.
#[derive(Debug, Clone)]
pub enum LogInput {
    /// /dev/kmsg, read without blocking.
    Kmsg,
    File(PathBuf),
    Stdin,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The system read: the real one, or a fake tree (no ctnetlink).
    pub host: Host,
    pub kernel_log: LogInput,
    /// Sample the counters twice, this far apart, to report rates.
    pub interval: Option<Duration>,
    pub all_netns: bool,
    /// Do not dump the table (no mix: evictable share, idle entries).
    pub no_dump: bool,
    /// Without `interval`, sample the counters for [`AUTO_SAMPLE`] when
    /// drops are not in the log (`check`; not `plan`, which needs no date).
    pub sample_undated: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            host: Host::system(),
            kernel_log: LogInput::Kmsg,
            interval: None,
            all_netns: false,
            no_dump: false,
            sample_undated: false,
        }
    }
}

fn counters_netlink(
    ct: &mut Conntrack,
) -> Result<(Counters, Vec<ctnetlink::CpuStats>), ctnetlink::Error> {
    let cpus = ct.stats_cpu()?;
    Ok((sum_cpus(&cpus), cpus))
}

fn sum_cpus(cpus: &[ctnetlink::CpuStats]) -> Counters {
    let values = ctcore::counters::Counters::sum(cpus)
        .named()
        .map(|(name, v)| (name.to_string(), v))
        .collect();
    Counters {
        source: "ctnetlink IPCTNL_MSG_CT_GET_STATS_CPU".into(),
        values,
    }
}

/// /proc/net/stat/nf_conntrack, with its column names mapped to ctnetlink's.
pub fn counters_proc(root: &Root) -> Result<Counters, Unreadable> {
    let path = "/proc/net/stat/nf_conntrack";
    let text = root.read(path, "root")?;
    let t = stat::parse_stat(&text).map_err(|e| Unreadable {
        what: path.into(),
        why: Why::Malformed(e.to_string()),
    })?;
    let values = t
        .counters
        .into_iter()
        .map(|(k, v)| (ctcore::counters::canonical(&k).to_string(), v))
        .collect();
    Ok(Counters {
        source: path.into(),
        values,
    })
}

/// Scan the records still in /dev/kmsg's ring buffer; returns the scan
/// and whether older records were already overwritten.
fn read_kmsg(root: &Root, ctx: kernel_log::Context) -> Result<(LogScan, bool), Unreadable> {
    let mut kmsg = Kmsg::open(root, kmsg::From::Start, false)?;
    let mut scanner = kernel_log::Scanner::new(ctx);
    let drained = kmsg.drain(|record| scanner.line(record))?;
    Ok((scanner.finish(), drained.overrun))
}

/// Scan a log file or stdin as a stream (bounded memory whatever its size).
fn read_log(
    what: &str,
    input: impl Read,
    ctx: kernel_log::Context,
    host: Option<&str>,
) -> Result<LogScan, Unreadable> {
    kernel_log::scan_reader_for(
        std::io::BufReader::with_capacity(64 * 1024, input),
        ctx,
        host,
    )
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => Unreadable {
            what: what.to_string(),
            why: Why::Malformed(e.to_string()),
        },
        _ => io_unreadable(what, "read permission", &e),
    })
}

/// nf_conntrack_events of the namespace `root` shows (read from a thread
/// inside it): 0 off, 1 on, 2 on once a listener subscribes (the default
/// on recent kernels); None when unreadable or out of range.
pub fn events_setting(root: &Root) -> Option<u8> {
    root.read_u64(&format!("{NF}/nf_conntrack_events"), "")
        .ok()
        .and_then(|v| u8::try_from(v).ok())
}

/// The namespace's timeout table: the kernel's defaults (latest version)
/// with every timeout sysctl that can be read. Read in the calling
/// thread's network namespace, as /proc/sys/net is.
pub fn timeout_table(root: &Root) -> ctcore::timeouts::TimeoutTable {
    use ctcore::timeouts::{Timeout, TimeoutTable};
    let mut t = TimeoutTable::defaults(ctcore::version::Version::LATEST);
    for (k, v) in timeouts(root) {
        if let Some(name) = Timeout::from_name(&k) {
            t.set(name, v as f64);
        }
    }
    t
}

/// Every nf_conntrack_*timeout* sysctl and its value.
pub fn timeouts(root: &Root) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(root.path(NF)) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(ctcore::timeouts::PREFIX)
                && name.contains("timeout")
                && let Ok(v) = root.read_u64(&format!("{NF}/{name}"), "")
            {
                out.insert(name, v);
            }
        }
    }
    out
}

fn rulesets(f: &mut Facts, host: &Host) {
    let mut nft_ok = false;
    if host.on_path("nft") {
        match host.run("nft", &["-j", "list", "ruleset"], "CAP_NET_ADMIN") {
            Ok(json) => match ruleset::read_nft_json(&json) {
                Ok(nft) => {
                    f.rule_sources.push("nft -j list ruleset".into());
                    let saves = if nft.has_xt() {
                        iptables_nft_saves(f, host)
                    } else {
                        Vec::new()
                    };
                    let saves: Vec<_> = saves
                        .iter()
                        .map(|(family, tool, text)| ruleset::IptablesSave { family, tool, text })
                        .collect();
                    f.rules.extend(nft.with_iptables(&saves));
                    nft_ok = true;
                }
                Err(e) => f.unreadable.push(Unreadable {
                    what: "nft -j list ruleset".into(),
                    why: Why::Malformed(e.to_string()),
                }),
            },
            Err(e) => f.unreadable.push(e),
        }
    } else {
        f.unreadable.push(Unreadable {
            what: "nft".into(),
            why: Why::NotPresent,
        });
    }
    // iptables-nft rules live in the nf_tables ruleset that nft already
    // listed (their iptables form was read above when they held xt
    // statements); read the nft-backend saves here only when nft could not
    // be read.
    let mut tools = vec!["iptables-legacy-save", "ip6tables-legacy-save"];
    if !nft_ok {
        tools.extend(["iptables-nft-save", "ip6tables-nft-save"]);
    }
    if !tools.iter().any(|t| host.on_path(t)) {
        tools = vec!["iptables-save", "ip6tables-save"];
    }
    for tool in tools.into_iter().filter(|t| host.on_path(t)) {
        match host.run(tool, &[], "CAP_NET_ADMIN (root)") {
            Ok(text) => {
                f.rules.extend(ruleset::parse_iptables_save(&text, tool));
                f.rule_sources.push(tool.to_string());
            }
            Err(e) => f.unreadable.push(e),
        }
    }
}

/// Whether nf_conntrack is built in: /sys/module/NAME exists for a built-in
/// with parameters too (kernel/params.c param_sysfs_builtin), but only a
/// loadable module gets `initstate` (kernel/module/main.c modinfo_attrs).
pub(crate) fn conntrack_builtin(root: &Root) -> Option<bool> {
    root.exists("/sys/module/nf_conntrack")
        .then(|| !root.exists("/sys/module/nf_conntrack/initstate"))
}

/// The iptables form of iptables-nft's tables, as (nft family, tool,
/// output): iptables-nft stores what nf_tables cannot express natively as
/// xt statements, which `nft -j` names without their options (issue 7
/// section 4). Where only `iptables-save` exists (RHEL 8), it is used when
/// its header says it is the nf_tables backend.
fn iptables_nft_saves(f: &mut Facts, host: &Host) -> Vec<(&'static str, &'static str, String)> {
    let mut out = Vec::new();
    for (family, tools) in [
        ("ip", ["iptables-nft-save", "iptables-save"]),
        ("ip6", ["ip6tables-nft-save", "ip6tables-save"]),
    ] {
        let Some(tool) = tools.into_iter().find(|t| host.on_path(t)) else {
            continue;
        };
        match host.run(tool, &[], "CAP_NET_ADMIN (root)") {
            Ok(text) if tool.contains("-nft-") || text.contains("(nf_tables)") => {
                f.rule_sources.push(tool.to_string());
                out.push((family, tool, text));
            }
            Ok(_) => {}
            Err(e) => f.unreadable.push(e),
        }
    }
    out
}

/// The live namespaces, other than this one, that this boot's table-full
/// lines name, with their drop counters (from `--all-netns` when read).
fn log_netns(f: &Facts, host: &Host) -> Vec<NetnsCount> {
    let named: Vec<u64> = f
        .kernel_log
        .iter()
        .flat_map(|l| &l.table_full)
        .filter(|g| g.this_boot.lines > 0)
        .filter_map(|g| g.netns_inode)
        .filter(|i| Some(*i) != f.netns_inode)
        .collect();
    if let Some(all) = &f.netns_counts {
        return all
            .iter()
            .filter(|c| named.contains(&c.inode))
            .cloned()
            .collect();
    }
    let live: Vec<Namespace> = f
        .namespaces
        .iter()
        .filter(|n| named.contains(&n.inode))
        .cloned()
        .collect();
    counts::count_all(host, &live, f.init_netns_inode)
}

/// Whether a `--kernel-log` input can be read to its end: a regular file, a
/// pipe (`-`, process substitution) or /dev/kmsg (char 1:11, read without
/// blocking: `Ok(true)`). Other devices never end (`/dev/urandom`, a
/// terminal) and sockets are no log: refused (issue 7), the check is UNKNOWN.
fn log_kind(what: &str, m: &std::fs::Metadata) -> Result<bool, Unreadable> {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    let kind = if t.is_file() || t.is_fifo() {
        return Ok(false);
    } else if kmsg::is_device(m) {
        return Ok(true);
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_dir() {
        "a directory"
    } else {
        "not a file"
    };
    Err(Unreadable {
        what: what.to_string(),
        why: Why::Malformed(format!(
            "{kind}, not a log: give a regular file, /dev/kmsg, or - / a pipe"
        )),
    })
}

/// Scan the kernel log into `f`; a log the user named that cannot be read
/// is recorded as `kernel_log_error` (the check is then UNKNOWN).
fn kernel_log(f: &mut Facts, opts: &Options) {
    let root = opts.host.root();
    // Local time of `dmesg -T`, syslog and journal stamps; the offset of
    // now (a line from the other side of a DST change is an hour off).
    let ctx = kernel_log::Context {
        now: f.now,
        boot_time: f.boot_time.map(|b| b as f64),
        utc_offset: chrono::Local::now().offset().local_minus_utc(),
        this_boot: matches!(opts.kernel_log, LogInput::Kmsg),
        netns_inode: f.netns_inode,
    };
    // This host's name, as the syslog/journal prefix of its own lines says.
    f.hostname = root
        .read("/proc/sys/kernel/hostname", "")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    let host = f.hostname.clone();
    let log = match &opts.kernel_log {
        LogInput::Kmsg => read_kmsg(root, ctx).map(|(scan, truncated)| {
            f.kernel_log_truncated = truncated;
            ("/dev/kmsg".to_string(), scan)
        }),
        LogInput::File(p) => {
            let what = p.display().to_string();
            std::fs::metadata(p)
                .map_err(|e| io_unreadable(what.clone(), "read permission", &e))
                .and_then(|m| log_kind(&what, &m))
                .and_then(|kmsg| {
                    if kmsg {
                        return read_kmsg(root, ctx).map(|(scan, truncated)| {
                            f.kernel_log_truncated = truncated;
                            scan
                        });
                    }
                    std::fs::File::open(p)
                        .map_err(|e| io_unreadable(what.clone(), "read permission", &e))
                        .and_then(|file| read_log(&what, file, ctx, host.as_deref()))
                })
                .map(|scan| (what, scan))
        }
        LogInput::Stdin => {
            use std::os::fd::AsFd;
            std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map(std::fs::File::from)
                .and_then(|file| file.metadata())
                .map_err(|e| io_unreadable("stdin", "", &e))
                .and_then(|m| log_kind("stdin", &m))
                .and_then(|_| read_log("stdin", std::io::stdin().lock(), ctx, host.as_deref()))
                .map(|scan| ("stdin".to_string(), scan))
        }
    };
    match log {
        Ok((source, scan)) => {
            f.kernel_log = Some(scan);
            f.kernel_log_source = Some(source);
        }
        Err(e) => {
            // A log the user named is what they asked about: UNKNOWN.
            if !matches!(opts.kernel_log, LogInput::Kmsg) {
                f.kernel_log_error = Some(e.clone());
            }
            f.unreadable.push(e);
        }
    }
}

/// Gather every fact this process can read, in its current namespace.
pub fn gather(opts: &Options) -> Facts {
    let root = opts.host.root();
    let started = Instant::now();
    let mut f = Facts {
        kernel: root
            .read("/proc/sys/kernel/osrelease", "")
            .ok()
            .map(|s| s.trim().to_string()),
        netns_inode: namespaces::current_inode(),
        // Only an absent nf_conntrack_max means not loaded: any other
        // error (a loop, an unsearchable directory) leaves it loaded, and
        // its unreadable count and max make the verdict UNKNOWN.
        conntrack_loaded: root
            .present(&format!("{NF}/nf_conntrack_max"))
            .unwrap_or(true),
        now: opts
            .host
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64()),
        ..Facts::default()
    };
    f.namespaces = namespaces::list(root);
    f.init_netns_inode = namespaces::init_inode(root);
    f.netns_name = f
        .netns_inode
        .and_then(|i| namespaces::name_of(&f.namespaces, i))
        .map(str::to_string);
    f.boot_time = root.read("/proc/stat", "").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok()))
    });
    // Before the early return: an unreadable `--kernel-log` is UNKNOWN
    // even where conntrack is not loaded.
    kernel_log(&mut f, opts);
    if !f.conntrack_loaded {
        return f;
    }
    f.timeouts = timeouts(root);
    for name in [
        "nf_conntrack_acct",
        "nf_conntrack_timestamp",
        "nf_conntrack_events",
    ] {
        if let Ok(v) = root.read_u64(&format!("{NF}/{name}"), "") {
            f.extension_sysctls.insert(name.to_string(), v);
        }
    }
    f.buckets = root
        .read_u64(&format!("{NF}/nf_conntrack_buckets"), "")
        .ok();

    let mut ct = match opts.host.conntrack() {
        Ok(ct) => Some(ct),
        Err(e) => {
            f.unreadable
                .push(netlink_unreadable("ctnetlink socket", &e));
            None
        }
    };
    match ct.as_mut().map(Conntrack::stats) {
        Some(Ok(s)) => {
            f.count = Some(u64::from(s.entries));
            f.max = s.max_entries.map(u64::from);
            f.count_source = Some("ctnetlink IPCTNL_MSG_CT_GET_STATS".into());
        }
        Some(Err(e)) => f.unreadable.push(netlink_unreadable("ctnetlink stats", &e)),
        None => {}
    }
    if f.count.is_none() {
        match root.read_u64(&format!("{NF}/nf_conntrack_count"), "") {
            Ok(c) => {
                f.count = Some(c);
                f.count_source = Some(format!("{NF}/nf_conntrack_count"));
            }
            Err(e) => f.unreadable.push(e),
        }
    }
    if f.max.is_none() {
        match root.read_u64(&format!("{NF}/nf_conntrack_max"), "") {
            Ok(m) => f.max = Some(m),
            Err(e) => f.unreadable.push(e),
        }
    }

    let mut first_cpus = None;
    let counted = Instant::now();
    match ct.as_mut().map(counters_netlink) {
        Some(Ok((c, cpus))) => {
            f.counters = Some(c);
            first_cpus = Some(cpus);
        }
        other => {
            if let Some(Err(e)) = other {
                f.unreadable
                    .push(netlink_unreadable("ctnetlink per-CPU stats", &e));
            }
            match counters_proc(root) {
                Ok(c) => f.counters = Some(c),
                Err(e) => f.unreadable.push(e),
            }
        }
    }

    if !opts.no_dump {
        let established = f
            .timeouts
            .get("nf_conntrack_tcp_timeout_established")
            .copied();
        let mut mix = Mix::default();
        match ct.as_mut() {
            Some(c) => match c.dump(Family::Any, |e| mix.add(e, established)) {
                Ok(_) => f.mix = Some(mix),
                Err(e) => f.unreadable.push(netlink_unreadable("ctnetlink dump", &e)),
            },
            // A fake tree: its /proc/net/nf_conntrack is the table.
            None if !opts.host.has_kernel() => {
                match crate::table::for_each_entry(&opts.host, |e| mix.add(e, established)) {
                    Ok(()) => f.mix = Some(mix),
                    Err(e) => f.unreadable.push(e),
                }
            }
            None => f.unreadable.push(Unreadable {
                what: "table dump (entry mix)".into(),
                why: Why::Permission("CAP_NET_ADMIN".into()),
            }),
        }
    }

    match root.read("/proc/slabinfo", "root") {
        Ok(text) => f.slab = slab::parse_slabinfo(&text),
        Err(e) => f.unreadable.push(e),
    }
    f.mem_total = root
        .read("/proc/meminfo", "")
        .ok()
        .and_then(|t| slab::parse_memtotal(&t));

    rulesets(&mut f, &opts.host);
    f.services = services::detect(root);
    f.conntrack_builtin = conntrack_builtin(root);
    let (cloud, cloud_errors) = cloud::ena_allowances(&opts.host);
    f.cloud = cloud;
    f.unreadable.extend(cloud_errors);
    let (maps, bpf_errors) = crate::bpf::conntrack_maps(&opts.host);
    f.bpf_maps = maps;
    f.unreadable.extend(bpf_errors);
    if opts.all_netns {
        f.netns_counts = Some(counts::count_all(
            &opts.host,
            &f.namespaces,
            f.init_netns_inode,
        ));
    }
    f.log_netns = log_netns(&f, &opts.host);
    let (drift, drift_errors) = crate::drift::read(root, &f);
    f.drift = Some(drift);
    f.unreadable.extend(drift_errors);

    // Drops the log cannot date (rate-limited, issue 7): without
    // --interval, sample the counters for AUTO_SAMPLE so the rate dates
    // them; the decision is diagnose's, over the facts read so far.
    let (from, interval) = match opts.interval {
        Some(i) => (started, Some(i)),
        None if opts.sample_undated && crate::diagnose::undated_excess(&f) > 0 => {
            (counted, Some(AUTO_SAMPLE))
        }
        None => (started, None),
    };
    if let Some(interval) = interval {
        let left = interval.saturating_sub(from.elapsed());
        std::thread::sleep(left);
        let secs = from.elapsed().as_secs_f64();
        let second = match (ct.as_mut(), &first_cpus) {
            (Some(c), Some(_)) => c.stats_cpu().ok().map(|cpus| (sum_cpus(&cpus), cpus)),
            _ => counters_proc(root).ok().map(|c| (c, Vec::new())),
        };
        if let (Some(first), Some((second, _))) = (&f.counters, second) {
            let rates = second
                .values
                .iter()
                .map(|(k, v)| {
                    let before = first.values.get(k).copied().unwrap_or(0);
                    (k.clone(), v.saturating_sub(before) as f64 / secs)
                })
                .collect();
            f.rates = Some(rates);
            f.interval_secs = Some(secs);
            f.counters = Some(second);
        }
    }
    f
}
