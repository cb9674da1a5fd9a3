//! Collecting [`Facts`] about this host and namespace: every source is read
//! on its own and fails on its own, recorded in `unreadable` with the reason
//! and the missing privilege. The only module here that does I/O besides
//! the readers in [`crate::source`].

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ctnetlink::{Conntrack, Family};

pub use crate::facts::{Counters, Facts, Mix, NetnsCount};
use crate::kernel_log;
use crate::namespaces::{self, Namespace};
use crate::ruleset;
use crate::services;
use crate::slab;
use crate::source::{Root, Unreadable, Why, on_path, run};
use crate::{cloud, stat};

const NF: &str = "/proc/sys/net/netfilter";

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
    pub root: Root,
    pub kernel_log: LogInput,
    /// Sample the counters twice, this far apart, to report rates.
    pub interval: Option<Duration>,
    pub all_netns: bool,
    /// Do not dump the table (no mix: evictable share, idle entries).
    pub no_dump: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            root: Root::default(),
            kernel_log: LogInput::Kmsg,
            interval: None,
            all_netns: false,
            no_dump: false,
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
    let mut values = BTreeMap::new();
    for c in cpus {
        for (name, v) in [
            ("found", c.found),
            ("invalid", c.invalid),
            ("insert", c.insert),
            ("insert_failed", c.insert_failed),
            ("drop", c.drop),
            ("early_drop", c.early_drop),
            ("error", c.error),
            ("search_restart", c.search_restart),
            ("clash_resolve", c.clash_resolve),
            ("chaintoolong", c.chaintoolong),
        ] {
            if let Some(v) = v {
                *values.entry(name.to_string()).or_insert(0) += u64::from(v);
            }
        }
    }
    Counters {
        source: "ctnetlink IPCTNL_MSG_CT_GET_STATS_CPU".into(),
        values,
    }
}

/// /proc/net/stat/nf_conntrack, with its column names mapped to ctnetlink's.
fn counters_proc(root: &Root) -> Result<Counters, Unreadable> {
    let path = "/proc/net/stat/nf_conntrack";
    let text = root.read(path, "root")?;
    let t = stat::parse_stat(&text).map_err(|e| Unreadable {
        what: path.into(),
        why: Why::Malformed(e.to_string()),
    })?;
    let values = t
        .counters
        .into_iter()
        .map(|(k, v)| {
            let k = match k.as_str() {
                "clashres" => "clash_resolve".to_string(),
                "chainlength" => "chaintoolong".to_string(),
                "icmp_error" => "error".to_string(),
                _ => k,
            };
            (k, v)
        })
        .collect();
    Ok(Counters {
        source: path.into(),
        values,
    })
}

fn read_kmsg(root: &Root) -> Result<(Vec<String>, bool), Unreadable> {
    let path = root.path("/dev/kmsg");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| Unreadable::io("/dev/kmsg", "CAP_SYSLOG (root)", &e))?;
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut truncated = false;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                if lines.is_empty() {
                    // The first record's sequence number: above 0, older
                    // records were overwritten in the ring buffer.
                    truncated = rec.split(',').nth(1).is_some_and(|s| s != "0");
                }
                lines.push(rec.lines().next().unwrap_or_default().to_string());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // EPIPE: a record was overwritten while reading; the next read continues.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => truncated = true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Unreadable::io("/dev/kmsg", "CAP_SYSLOG (root)", &e)),
        }
    }
    Ok((lines, truncated))
}

/// Every nf_conntrack_*timeout* sysctl and its value.
pub fn timeouts(root: &Root) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(root.path(NF)) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("nf_conntrack_")
                && name.contains("timeout")
                && let Ok(v) = root.read_u64(&format!("{NF}/{name}"), "")
            {
                out.insert(name, v);
            }
        }
    }
    out
}

fn rulesets(f: &mut Facts) {
    let mut nft_ok = false;
    if on_path("nft") {
        match run("nft", &["-j", "list", "ruleset"], "CAP_NET_ADMIN") {
            Ok(json) => match ruleset::parse_nft_json(&json) {
                Ok(r) => {
                    f.rules.extend(r);
                    f.rule_sources.push("nft -j list ruleset".into());
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
    // listed; read their iptables form only when nft could not be read.
    let mut tools = vec!["iptables-legacy-save", "ip6tables-legacy-save"];
    if !nft_ok {
        tools.extend(["iptables-nft-save", "ip6tables-nft-save"]);
    }
    if !tools.iter().any(|t| on_path(t)) {
        tools = vec!["iptables-save", "ip6tables-save"];
    }
    for tool in tools.into_iter().filter(|t| on_path(t)) {
        match run(tool, &[], "CAP_NET_ADMIN (root)") {
            Ok(text) => {
                f.rules.extend(ruleset::parse_iptables_save(&text, tool));
                f.rule_sources.push(tool.to_string());
            }
            Err(e) => f.unreadable.push(e),
        }
    }
}

/// Namespaces counted at once (one thread each: setns moves only the
/// calling thread).
const NETNS_BATCH: usize = 16;

fn netns_counts(namespaces: &[Namespace]) -> Vec<NetnsCount> {
    let count_one = |ns: &Namespace| {
        let path = ns.path.to_string_lossy().into_owned();
        let r = ctnetlink::netns::enter(&path)
            .and_then(|()| Conntrack::open())
            .and_then(|mut ct| ct.stats());
        NetnsCount {
            inode: ns.inode,
            name: ns.name.clone(),
            count: r.as_ref().ok().map(|s| u64::from(s.entries)),
            error: r.err().map(|e| e.to_string()),
        }
    };
    let mut out = Vec::with_capacity(namespaces.len());
    for batch in namespaces.chunks(NETNS_BATCH) {
        std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .iter()
                .map(|ns| s.spawn(move || count_one(ns)))
                .collect();
            out.extend(handles.into_iter().filter_map(|h| h.join().ok()));
        });
    }
    out
}

/// Gather every fact this process can read, in its current namespace.
pub fn gather(opts: &Options) -> Facts {
    let root = &opts.root;
    let started = Instant::now();
    let mut f = Facts {
        kernel: root
            .read("/proc/sys/kernel/osrelease", "")
            .ok()
            .map(|s| s.trim().to_string()),
        netns_inode: namespaces::current_inode(),
        conntrack_loaded: root.exists(&format!("{NF}/nf_conntrack_max")),
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

    let mut ct = match Conntrack::open() {
        Ok(ct) => Some(ct),
        Err(e) => {
            f.unreadable
                .push(Unreadable::netlink("ctnetlink socket", &e));
            None
        }
    };
    match ct.as_mut().map(Conntrack::stats) {
        Some(Ok(s)) => {
            f.count = Some(u64::from(s.entries));
            f.max = s.max_entries.map(u64::from);
            f.count_source = Some("ctnetlink IPCTNL_MSG_CT_GET_STATS".into());
        }
        Some(Err(e)) => f
            .unreadable
            .push(Unreadable::netlink("ctnetlink stats", &e)),
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
    match ct.as_mut().map(counters_netlink) {
        Some(Ok((c, cpus))) => {
            f.counters = Some(c);
            first_cpus = Some(cpus);
        }
        other => {
            if let Some(Err(e)) = other {
                f.unreadable
                    .push(Unreadable::netlink("ctnetlink per-CPU stats", &e));
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
        match ct
            .as_mut()
            .map(|c| c.dump(Family::Any, |e| mix.add(e, established)))
        {
            Some(Ok(_)) => f.mix = Some(mix),
            Some(Err(e)) => f.unreadable.push(Unreadable::netlink("ctnetlink dump", &e)),
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

    let log = match &opts.kernel_log {
        LogInput::Kmsg => read_kmsg(root).map(|(lines, truncated)| {
            f.kernel_log_truncated = truncated;
            ("/dev/kmsg".to_string(), lines.join("\n"))
        }),
        LogInput::File(p) => std::fs::read(p)
            .map(|b| {
                (
                    p.display().to_string(),
                    String::from_utf8_lossy(&b).into_owned(),
                )
            })
            .map_err(|e| Unreadable::io(p.display().to_string(), "read permission", &e)),
        LogInput::Stdin => {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map(|_| {
                    (
                        "stdin".to_string(),
                        String::from_utf8_lossy(&b).into_owned(),
                    )
                })
                .map_err(|e| Unreadable::io("stdin", "", &e))
        }
    };
    match log {
        Ok((source, text)) => {
            f.kernel_log = Some(kernel_log::scan(text.lines()));
            f.kernel_log_source = Some(source);
        }
        Err(e) => f.unreadable.push(e),
    }

    rulesets(&mut f);
    f.services = services::detect(root);
    let (cloud, cloud_errors) = cloud::ena_allowances(root);
    f.cloud = cloud;
    f.unreadable.extend(cloud_errors);
    if opts.all_netns {
        f.netns_counts = Some(netns_counts(&f.namespaces));
    }

    if let Some(interval) = opts.interval {
        let left = interval.saturating_sub(started.elapsed());
        std::thread::sleep(left);
        let secs = started.elapsed().as_secs_f64();
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
