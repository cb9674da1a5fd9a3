//! `ctdoctor top`: read entries from ctnetlink, /proc or a text dump, fold
//! them into a [`Breakdown`] and build a [`TopReport`]; its table and CSV
//! forms are [`report`]'s.

mod report;

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use ctcore::workload::{AddressBook, GroupRow, Grouping, Workload, group};
use cthost::Host;
use ctmodel::scan::{self, ScanReport};
use ctmodel::{Breakdown, Filter};
use ctnetlink::Family;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::cli::{Source, is_stdin};

pub const PROC_CONNTRACK: &str = "/proc/net/nf_conntrack";

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Live source when no --file is given.
    #[arg(long, value_enum, default_value_t = Source::Netlink)]
    pub source: Source,

    /// Read a saved dump instead (/proc/net/nf_conntrack text or any
    /// `conntrack -L` output); `-` reads standard input.
    #[arg(long, short = 'f', value_name = "PATH|-")]
    pub file: Option<PathBuf>,

    /// Groupings to show (comma-separated); all by default. JSON always
    /// carries every grouping.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub by: Vec<Group>,

    /// How many rows in top-N groupings (src, dst, dport, mark).
    #[arg(short = 'n', long, default_value_t = 10)]
    pub top: usize,

    /// Only count entries matching KEY=VALUE (repeatable, ANDed).
    #[arg(long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,

    /// CSV output (group,key,count).
    #[arg(long)]
    pub csv: bool,

    /// Parser threads for text input (default: all CPUs). At most the
    /// number of CPUs available: a larger N is lowered to it, with a note.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Group {
    L3,
    L4,
    State,
    Flags,
    Zone,
    Mark,
    Nat,
    Src,
    Dst,
    Dport,
    Timeout,
    /// Entries per container owning the original source address (unowned
    /// addresses as themselves).
    Container,
    /// Entries per pod (`namespace/pod`; a container in no pod as itself).
    Pod,
}

impl Group {
    /// Every grouping, in the table's order (`--by` empty).
    pub const ALL: [Group; 13] = [
        Group::L3,
        Group::L4,
        Group::State,
        Group::Flags,
        Group::Zone,
        Group::Mark,
        Group::Nat,
        Group::Src,
        Group::Dst,
        Group::Dport,
        Group::Timeout,
        Group::Container,
        Group::Pod,
    ];
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyCount {
    pub key: String,
    pub count: u64,
    /// The container owning the address `key` (top_src, top_dst), absent
    /// when no workload owns it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LineErrorOut {
    pub line: u64,
    pub reason: String,
}

/// The result of `top`: field names are the stable JSON contract of DESIGN.md.
#[derive(Debug, Clone, Serialize)]
pub struct TopReport {
    pub source: String,
    pub entries: u64,
    pub l3: Map<String, Value>,
    pub l4: Map<String, Value>,
    pub tcp_state: Map<String, Value>,
    pub flags: Map<String, Value>,
    pub zone: Map<String, Value>,
    pub mark: Map<String, Value>,
    pub nat: Map<String, Value>,
    pub top_src: Vec<KeyCount>,
    pub top_dst: Vec<KeyCount>,
    pub top_dport: Vec<KeyCount>,
    pub timeout: Map<String, Value>,
    /// Entries per container / pod owning the original-direction source
    /// (a MASQUERADEd flow's original source is the container); addresses
    /// no workload owns are rows of their own, keyed by the address.
    pub top_container: Vec<GroupRow>,
    pub top_pod: Vec<GroupRow>,
    pub skipped_lines: u64,
    /// Entries rejected by --filter.
    pub filtered_out: u64,
    /// Distinct source / destination addresses seen (all counted exactly).
    pub distinct_src: usize,
    pub distinct_dst: usize,
    /// The first malformed lines (text sources) with their reasons.
    pub errors: Vec<LineErrorOut>,
    /// ctnetlink reported NLM_F_DUMP_INTR on every attempt: counts may be
    /// off by the entries that changed during the dump.
    pub dump_interrupted: bool,
    /// Cilium and Calico eBPF conntrack maps of the live host (not of a
    /// --file dump); absent where none is pinned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bpf_maps: Vec<ctcore::bpf::BpfMap>,
    #[serde(skip)]
    pub lines: u64,
    /// Notes for stderr (e.g. --threads lowered), not part of the JSON.
    #[serde(skip)]
    pub notes: Vec<String>,
    /// The groupings to show (`--by`; empty: all).
    #[serde(skip)]
    pub by: Vec<Group>,
}

impl crate::output::Render for TopReport {
    fn text(&self, mut out: &mut dyn io::Write, _: crate::output::Style) -> io::Result<()> {
        report::table(self, &self.by, &mut out)
    }
    fn csv(&self, mut out: &mut dyn io::Write) -> Option<io::Result<()>> {
        Some(report::csv(self, &self.by, &mut out))
    }
    fn notes(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.notes.iter().map(|n| format!("note: {n}")).collect();
        for e in &self.errors {
            lines.push(if e.line > 0 {
                format!("line {}: skipped: {}", e.line, e.reason)
            } else {
                format!("skipped: {}", e.reason)
            });
        }
        if self.skipped_lines > 0 {
            lines.push(format!(
                "{} of {} lines skipped as malformed",
                self.skipped_lines, self.lines
            ));
        }
        lines
    }
}

fn map<K: ToString>(rows: impl IntoIterator<Item = (K, u64)>) -> Map<String, Value> {
    rows.into_iter()
        .map(|(k, c)| (k.to_string(), Value::from(c)))
        .collect()
}

fn list<K: ToString>(rows: impl IntoIterator<Item = (K, u64)>) -> Vec<KeyCount> {
    rows.into_iter()
        .map(|(k, c)| KeyCount {
            key: k.to_string(),
            count: c,
            workload: None,
        })
        .collect()
}

impl TopReport {
    pub fn new(source: String, b: &Breakdown, n: usize) -> Self {
        let (distinct_src, distinct_dst) = b.distinct();
        Self {
            source,
            entries: b.entries,
            l3: map(b.l3()),
            l4: map(b.l4()),
            tcp_state: map(b.tcp_state()),
            flags: map([
                ("assured", b.assured),
                ("unreplied", b.unreplied),
                ("other", b.other_flags),
            ]),
            zone: map(b.zone()),
            mark: map(b.mark(n)),
            nat: map(b.nat()),
            top_src: list(b.top_src(n)),
            top_dst: list(b.top_dst(n)),
            top_dport: list(b.top_dport(n)),
            timeout: map(b.timeout_histogram()),
            top_container: Vec::new(),
            top_pod: Vec::new(),
            skipped_lines: 0,
            filtered_out: b.filtered_out,
            distinct_src,
            distinct_dst,
            errors: Vec::new(),
            dump_interrupted: false,
            bpf_maps: Vec::new(),
            lines: 0,
            notes: Vec::new(),
            by: Vec::new(),
        }
    }

    /// Name the workloads behind the addresses: top_src and top_dst rows
    /// get their owner, and the per-container and per-pod rankings are
    /// folded from every source address.
    pub fn attribute(mut self, b: &Breakdown, book: &AddressBook, n: usize) -> Self {
        let owned = |rows: Vec<(std::net::IpAddr, u64)>| -> Vec<KeyCount> {
            rows.into_iter()
                .map(|(ip, c)| KeyCount {
                    key: ip.to_string(),
                    count: c,
                    workload: book.get(ip).cloned(),
                })
                .collect()
        };
        self.top_src = owned(b.top_src(n));
        self.top_dst = owned(b.top_dst(n));
        let all = b.top_src(0);
        self.top_container = group(all.iter().copied(), book, Grouping::Container, n);
        self.top_pod = group(all, book, Grouping::Pod, n);
        self
    }

    fn with_scan(mut self, r: &ScanReport) -> Self {
        self.skipped_lines = r.skipped;
        self.lines = r.lines;
        self.errors = r
            .first_errors
            .iter()
            .map(|e| LineErrorOut {
                line: e.line,
                reason: e.error.to_string(),
            })
            .collect();
        self
    }
}

/// Parser threads: --threads bounded to 1..=CPUs (issue 7 §6: 20000 threads
/// aborted the process, 2^64-1 overflowed), and the note when it was lowered.
fn threads(asked: Option<usize>, cpus: usize) -> (usize, Option<String>) {
    let cpus = cpus.max(1);
    match asked {
        None => (cpus, None),
        Some(n) if n > cpus => (
            cpus,
            Some(format!(
                "--threads {n} lowered to {cpus}, the number of CPUs available"
            )),
        ),
        Some(n) => (n.max(1), None),
    }
}

/// Why a text source gave nothing: every line that was not blank or a
/// conntrack-tools message is malformed (issue 7 §6), so the input is not
/// conntrack text and an empty table would be a wrong answer.
#[derive(Debug)]
struct NothingParsed {
    source: String,
    skipped: u64,
    first: Vec<LineErrorOut>,
}

impl std::fmt::Display for NothingParsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no conntrack entry in {}: {} malformed lines and not one valid entry",
            self.source, self.skipped
        )?;
        for e in &self.first {
            write!(f, "\n  line {}: {}", e.line, e.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for NothingParsed {}

fn scan_text<R: Read>(
    reader: R,
    args: &TopArgs,
    filter: &Filter,
    source: String,
    book: &AddressBook,
) -> Result<TopReport> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let (threads, note) = threads(args.threads, cpus);
    let (b, r) = scan::scan(reader, threads, || Breakdown::new(filter.clone()))
        .with_context(|| format!("reading {source}"))?;
    let mut report = TopReport::new(source, &b, args.top)
        .attribute(&b, book, args.top)
        .with_scan(&r);
    if r.entries == 0 && r.skipped > 0 {
        return Err(NothingParsed {
            source: report.source,
            skipped: r.skipped,
            first: report.errors,
        }
        .into());
    }
    report.notes.extend(note);
    Ok(report)
}

/// Dump attempts when the kernel flags the dump as interrupted or overrun.
const DUMP_ATTEMPTS: usize = 3;

fn from_netlink(
    args: &TopArgs,
    filter: &Filter,
    host: &Host,
    book: &AddressBook,
) -> Result<TopReport> {
    let mut ct = host.conntrack()?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut b = Breakdown::new(filter.clone());
        match ct.dump(Family::Any, |e| b.add(e)) {
            Ok(summary) if !summary.interrupted || attempt == DUMP_ATTEMPTS => {
                let mut report =
                    TopReport::new("netlink".into(), &b, args.top).attribute(&b, book, args.top);
                report.skipped_lines = summary.malformed;
                if let Some(e) = summary.first_malformed {
                    report.errors.push(LineErrorOut {
                        line: 0,
                        reason: format!("malformed ctnetlink message: {e}"),
                    });
                }
                report.dump_interrupted = summary.interrupted;
                return Ok(report);
            }
            Ok(_) => {}
            Err(ctnetlink::Error::Overrun { .. }) if attempt < DUMP_ATTEMPTS => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The breakdown `args` ask for, from the source they name.
pub fn run(args: &TopArgs, host: &Host) -> Result<TopReport> {
    // The live table's addresses are this host's containers'; a saved
    // dump's may be another host's (or gone): not attributed.
    let (book, note) = if args.file.is_none() {
        cthost::addresses::book(host.root())
    } else {
        (AddressBook::default(), None)
    };
    let mut report = breakdown(args, host, &book)?;
    report.notes.extend(note);
    report.by.clone_from(&args.by);
    if args.file.is_none() {
        let (maps, errors) = cthost::bpf::conntrack_maps(host);
        report.bpf_maps = maps;
        report.notes.extend(errors.iter().map(|e| e.to_string()));
    }
    Ok(report)
}

fn breakdown(args: &TopArgs, host: &Host, book: &AddressBook) -> Result<TopReport> {
    let mut filter = Filter::parse(&args.filter).map_err(crate::exit::Usage::from)?;
    if filter.uses_idle() {
        // idle is the configured timeout minus the remaining one: the
        // configured ones are this namespace's (or --root tree's) sysctls,
        // which a saved listing does not carry.
        if args.file.is_some() {
            return Err(crate::exit::Usage(
                "idle< and idle> need the namespace's timeout sysctls: not with --file (use timeout< / timeout>)".into(),
            )
            .into());
        }
        let table = cthost::gather::timeout_table(host.root());
        filter = filter.with_configured(move |k| table.configured(k));
    }
    if let Some(path) = &args.file {
        if is_stdin(path) {
            return scan_text(io::stdin().lock(), args, &filter, "stdin".into(), book);
        }
        let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        return scan_text(f, args, &filter, format!("file:{}", path.display()), book);
    }
    match args.source {
        Source::Netlink if host.has_kernel() => from_netlink(args, &filter, host, book),
        // A fake --root tree has no kernel to ask: its /proc file is the table.
        Source::Netlink | Source::Proc => {
            if !host.has_kernel() {
                // A tree's file: only a regular one (never a FIFO or a device).
                let f = host
                    .root()
                    .open(PROC_CONNTRACK, "root")
                    .map_err(|e| anyhow::anyhow!("cannot open {e}"))?;
                return scan_text(f, args, &filter, "proc".into(), book);
            }
            let f = match File::open(host.root().path(PROC_CONNTRACK)) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
                    "{PROC_CONNTRACK} does not exist: the kernel is built without \
                     CONFIG_NF_CONNTRACK_PROCFS (or conntrack is not loaded); use --source netlink"
                ),
                Err(e) => return Err(e).with_context(|| format!("cannot open {PROC_CONNTRACK}")),
            };
            scan_text(f, args, &filter, "proc".into(), book)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::threads;

    #[test]
    fn threads_are_bounded_by_the_cpus() {
        assert_eq!(threads(None, 4), (4, None));
        assert_eq!(threads(Some(2), 4), (2, None));
        assert_eq!(threads(Some(0), 4), (1, None));
        let (n, note) = threads(Some(usize::MAX), 4);
        assert_eq!(n, 4);
        assert!(note.is_some_and(|n| n.contains("18446744073709551615 lowered to 4")));
        assert_eq!(threads(Some(20_000), 0).0, 1);
    }
}
