//! `ctdoctor evict`: delete the entries that match a `top --filter`, over
//! ctnetlink: one dump (per family with a kernel-side protocol filter),
//! and batched deletes by tuple and CTA_ID (an entry re-created since the
//! dump is not touched) on a second socket while the dump goes on. Owns the
//! dry run, the ASSURED protection, --limit, --rate pacing and the report
//! (its JSON shape is in DESIGN.md under evict). The breakdown of what goes
//! is `top`'s.

use std::io;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use cthost::Host;
use ctmodel::{Breakdown, Entry, Filter};
use ctnetlink::Family;
use serde::Serialize;

use crate::commands::top::TopReport;
use crate::exit::{FAILED, Usage};

/// Entries per batch handed to the deleter: one sendmsg of
/// `Conntrack::delete_exact`.
const DELETE_BATCH: usize = 1024;

#[derive(Debug, Args)]
pub struct EvictArgs {
    /// Delete entries matching KEY=VALUE (top's filter syntax; repeatable,
    /// ANDed). At least one is required.
    #[arg(long, value_name = "KEY=VALUE", required = true)]
    pub filter: Vec<String>,

    /// Only show what would go (the default without --yes).
    #[arg(long)]
    pub dry_run: bool,

    /// Really delete.
    #[arg(long)]
    pub yes: bool,

    /// Delete at most N entries (per namespace).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,

    /// Pace deletions at N per second (`N` or `N/s`).
    #[arg(long, value_name = "N/s", value_parser = parse_rate)]
    pub rate: Option<u64>,

    /// Delete matching ASSURED entries too, as a filter naming them
    /// (flags=assured, state=...) does.
    #[arg(long)]
    pub include_assured: bool,

    /// Every network namespace (ip netns names, then those of processes).
    #[arg(long)]
    pub all_netns: bool,

    /// Rows in the top-N groupings of the breakdown.
    #[arg(short = 'n', long, default_value_t = 5)]
    pub top: usize,
}

fn parse_rate(s: &str) -> Result<u64, String> {
    let n = s.strip_suffix("/s").unwrap_or(s);
    match n.parse::<u64>() {
        Ok(0) => Err("must be at least 1/s".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?}: expected N or N/s, e.g. 50000/s")),
    }
}

/// One namespace's outcome. Field names are the JSON contract.
#[derive(Debug, Serialize)]
pub struct NsEvict {
    pub netns: String,
    /// Entries in the table before (the kernel's count; the dump's when
    /// the kernel does not report it).
    pub before: u64,
    /// Entries the filter matched (ASSURED ones included).
    pub matched: u64,
    /// Matched but ASSURED, kept because the filter does not name them.
    pub protected_assured: u64,
    /// Matched and not deleted because of --limit.
    pub over_limit: u64,
    /// Entries selected for deletion (what a dry run would delete).
    pub selected: u64,
    pub deleted: u64,
    /// ENOENT: expired, deleted by someone else, or re-created since the dump.
    pub gone: u64,
    pub failed: u64,
    /// errno name or number -> count, for `failed`.
    pub failed_errors: std::collections::BTreeMap<String, u64>,
    /// The kernel's count after the run (IPCTNL_MSG_CT_GET_STATS).
    pub after: Option<u64>,
    pub dump_interrupted: bool,
    pub seconds: f64,
    /// top's breakdown of the selected entries.
    pub breakdown: TopReport,
    /// Why this namespace was not processed (with --all-netns: an entry of
    /// /run/netns that is not a namespace, one deleted since the listing,
    /// no ctnetlink); its counts are then 0. `null` when it was.
    pub error: Option<String>,
}

impl NsEvict {
    /// A namespace of --all-netns that could not be processed.
    fn unprocessed(netns: String, error: String, top: usize) -> Self {
        NsEvict {
            netns,
            before: 0,
            matched: 0,
            protected_assured: 0,
            over_limit: 0,
            selected: 0,
            deleted: 0,
            gone: 0,
            failed: 0,
            failed_errors: Default::default(),
            after: None,
            dump_interrupted: false,
            seconds: 0.0,
            breakdown: TopReport::new("netlink".into(), &Breakdown::new(Filter::default()), top),
            error: Some(error),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EvictReport {
    pub dry_run: bool,
    pub filter: Vec<String>,
    pub namespaces: Vec<NsEvict>,
    pub deleted: u64,
    pub gone: u64,
    pub failed: u64,
    pub selected: u64,
    /// Namespaces with an `error` (not processed).
    pub netns_errors: u64,
    #[serde(skip)]
    pub by_netns: bool,
}

impl crate::output::Render for EvictReport {
    fn text(&self, out: &mut dyn io::Write, style: crate::output::Style) -> io::Result<()> {
        for ns in &self.namespaces {
            if self.by_netns {
                writeln!(out, "== netns {} ==", ns.netns)?;
            }
            if let Some(e) = &ns.error {
                writeln!(out, "error: {e}")?;
                continue;
            }
            writeln!(
                out,
                "{} entries, {} match {}: {} selected, {} ASSURED protected{}{}",
                ns.before,
                ns.matched,
                self.filter.join(" "),
                ns.selected,
                ns.protected_assured,
                if ns.over_limit > 0 {
                    format!(", {} over --limit", ns.over_limit)
                } else {
                    String::new()
                },
                if ns.dump_interrupted {
                    " (dump interrupted: the table changed while read)"
                } else {
                    ""
                },
            )?;
            if self.dry_run {
                writeln!(
                    out,
                    "dry run: would delete {} (add --yes to delete)",
                    ns.selected
                )?;
            } else {
                writeln!(
                    out,
                    "deleted {}, already gone {}, failed {}{} in {:.3} s; entries after: {}",
                    ns.deleted,
                    ns.gone,
                    ns.failed,
                    if ns.failed_errors.is_empty() {
                        String::new()
                    } else {
                        format!(" ({:?})", ns.failed_errors)
                    },
                    ns.seconds,
                    ns.after.map_or("unknown".into(), |n| n.to_string()),
                )?;
            }
            if ns.selected > 0 {
                writeln!(out)?;
                ns.breakdown.text(out, style)?;
            }
        }
        Ok(())
    }

    fn exit_code(&self) -> u8 {
        if self.failed > 0 || self.netns_errors > 0 {
            FAILED
        } else {
            0
        }
    }
}

fn errno_name(errno: i32) -> String {
    match errno {
        libc::EBUSY => "EBUSY".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::ENOMEM => "ENOMEM".into(),
        libc::EOPNOTSUPP => "EOPNOTSUPP".into(),
        n => n.to_string(),
    }
}

/// What the dump selects, counted as the entries stream by: matches,
/// ASSURED kept, --limit, top's breakdown of the selected, and the
/// selected entries themselves, handed to the deleter in batches while the
/// dump goes on.
struct Selection<'a> {
    filter: &'a Filter,
    names_assured: bool,
    limit: u64,
    /// Entries the dump delivered (to tell a refused filter from a failure
    /// after entries came).
    seen: u64,
    matched: u64,
    protected: u64,
    selected: u64,
    over_limit: u64,
    breakdown: Breakdown,
    /// Selected entries not yet handed over; `None` in a dry run.
    pending: Option<Vec<Entry>>,
    batch: usize,
    to_delete: Option<mpsc::SyncSender<Vec<Entry>>>,
}

impl Selection<'_> {
    fn take(&mut self, e: &Entry) {
        self.seen += 1;
        if !self.filter.matches(e) {
            return;
        }
        self.matched += 1;
        if e.assured() && !self.names_assured {
            self.protected += 1;
            return;
        }
        if self.selected >= self.limit {
            self.over_limit += 1;
            return;
        }
        self.selected += 1;
        self.breakdown.add(e);
        if let Some(pending) = &mut self.pending {
            pending.push(e.clone());
            if pending.len() >= self.batch {
                self.hand_over();
            }
        }
    }

    /// Send the pending entries to the deleter. A closed channel means the
    /// deleter stopped on an error, which its join reports.
    fn hand_over(&mut self) {
        if let (Some(pending), Some(tx)) = (&mut self.pending, &self.to_delete)
            && !pending.is_empty()
        {
            let batch = std::mem::replace(pending, Vec::with_capacity(self.batch));
            let _ = tx.send(batch);
        }
    }
}

/// The deleter: its own ctnetlink socket (opened in the namespace of the
/// dump), deleting each batch the dump hands over while the dump's next
/// pages are still coming, paced by --rate.
fn delete_batches(
    mut ct: ctnetlink::Conntrack,
    batches: mpsc::Receiver<Vec<Entry>>,
    rate: Option<u64>,
) -> Result<ctnetlink::DeleteReport, ctnetlink::Error> {
    let mut total = ctnetlink::DeleteReport::default();
    let mut start = None;
    let mut done = 0u64;
    for batch in batches {
        let start = *start.get_or_insert_with(Instant::now);
        let r = ct.delete_exact(&batch)?;
        total.deleted += r.deleted;
        total.gone += r.gone;
        for (errno, n) in r.failed {
            match total.failed.iter_mut().find(|(e, _)| *e == errno) {
                Some((_, m)) => *m += n,
                None => total.failed.push((errno, n)),
            }
        }
        done += batch.len() as u64;
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(done as f64 / rate as f64);
            std::thread::sleep(due.saturating_sub(start.elapsed()));
        }
    }
    Ok(total)
}

/// The dump(s) feeding `sel`. With one protocol required, the kernel
/// copies out only its entries (CTA_FILTER, 5.8+, one dump per family);
/// a kernel that refuses the filter (before any entry) gets that family's
/// plain dump instead. Otherwise one dump of both families.
fn dump_into(
    ct: &mut ctnetlink::Conntrack,
    filter: &Filter,
    sel: &mut Selection<'_>,
) -> Result<ctnetlink::DumpSummary, ctnetlink::Error> {
    let Some(l4) = filter.only_l4() else {
        return ct.dump(Family::Any, |e| sel.take(e));
    };
    let mut total = ctnetlink::DumpSummary::default();
    for family in [Family::Ipv4, Family::Ipv6] {
        let seen = sel.seen;
        let s = match ct.dump_l4(family, l4.number(), |e| sel.take(e)) {
            Ok(s) => s,
            Err(_) if sel.seen == seen => ct.dump(family, |e| sel.take(e))?,
            Err(e) => return Err(e),
        };
        total.entries += s.entries;
        total.malformed += s.malformed;
        total.first_malformed = total.first_malformed.or(s.first_malformed);
        total.interrupted |= s.interrupted;
    }
    Ok(total)
}

struct Plan<'a> {
    filter: &'a Filter,
    args: &'a EvictArgs,
    dry_run: bool,
}

/// Dump, select, delete: in the calling thread's namespace. Deleting
/// overlaps the dump: a second socket deletes the batches already dumped
/// while the first still receives (the kernel resumes a dump at the id of
/// the first entry it has not sent yet, so deleting sent ones neither skips
/// nor repeats any).
fn evict_here(p: &Plan<'_>, netns: String, host: &Host) -> Result<NsEvict, ctnetlink::Error> {
    let t = Instant::now();
    let mut ct = host.conntrack()?;
    // idle clauses subtract from this namespace's configured timeouts.
    let with_idle;
    let filter = if p.filter.uses_idle() {
        let table = cthost::gather::timeout_table(host.root());
        with_idle = p
            .filter
            .clone()
            .with_configured(move |k| table.configured(k));
        &with_idle
    } else {
        p.filter
    };
    let before = ct.stats().ok().map(|s| u64::from(s.entries));
    // Batches of a twentieth of a second's worth when paced.
    let batch = p.args.rate.map_or(DELETE_BATCH, |r| {
        usize::try_from(r / 20).unwrap_or(1).clamp(1, DELETE_BATCH)
    });
    let mut sel = Selection {
        filter,
        names_assured: p.args.include_assured || p.filter.names_assured(),
        limit: p.args.limit.unwrap_or(u64::MAX),
        seen: 0,
        matched: 0,
        protected: 0,
        selected: 0,
        over_limit: 0,
        breakdown: Breakdown::new(Filter::default()),
        pending: (!p.dry_run).then(|| Vec::with_capacity(batch)),
        batch,
        to_delete: None,
    };
    let (summary, deleted) = if p.dry_run {
        (dump_into(&mut ct, filter, &mut sel)?, None)
    } else {
        let deleter = host.conntrack()?;
        let rate = p.args.rate;
        std::thread::scope(|s| {
            // A few batches in flight: the dump never waits on the deleter
            // unless it is far ahead, and memory stays bounded.
            let (tx, rx) = mpsc::sync_channel(16);
            let worker = s.spawn(move || delete_batches(deleter, rx, rate));
            sel.to_delete = Some(tx);
            let dumped = dump_into(&mut ct, filter, &mut sel);
            sel.hand_over();
            sel.to_delete = None; // closes the channel: the deleter finishes
            let deleted = worker.join().unwrap_or_else(|_| {
                Err(ctnetlink::Error::Io {
                    what: "evict: the deleting thread",
                    source: io::Error::other("panicked"),
                })
            });
            Ok::<_, ctnetlink::Error>((dumped?, Some(deleted?)))
        })?
    };
    let mut breakdown = TopReport::new("netlink".into(), &sel.breakdown, p.args.top);
    breakdown.dump_interrupted = summary.interrupted;
    let mut ns = NsEvict {
        netns,
        before: before.unwrap_or(summary.entries),
        matched: sel.matched,
        protected_assured: sel.protected,
        over_limit: sel.over_limit,
        selected: sel.selected,
        deleted: 0,
        gone: 0,
        failed: 0,
        failed_errors: Default::default(),
        after: None,
        dump_interrupted: summary.interrupted,
        seconds: 0.0,
        breakdown,
        error: None,
    };
    if let Some(r) = deleted {
        ns.deleted = r.deleted;
        ns.gone = r.gone;
        for (errno, n) in r.failed {
            ns.failed += n;
            *ns.failed_errors.entry(errno_name(errno)).or_default() += n;
        }
    }
    ns.after = ct.stats().ok().map(|s| u64::from(s.entries));
    ns.seconds = t.elapsed().as_secs_f64();
    Ok(ns)
}

pub fn run(args: &EvictArgs, netns: Option<&str>, host: &Host) -> Result<EvictReport> {
    let filter = Filter::parse(&args.filter).map_err(Usage::from)?;
    if args.all_netns && netns.is_some() {
        return Err(Usage("--all-netns and --netns exclude each other".into()).into());
    }
    if !host.has_kernel() {
        return Err(Usage("evict needs the running kernel (not --root)".into()).into());
    }
    let plan = Plan {
        filter: &filter,
        args,
        dry_run: args.dry_run || !args.yes,
    };
    let mut namespaces = Vec::new();
    if args.all_netns {
        for ns in cthost::namespaces::list(host.root()) {
            let path = ns.path.to_string_lossy().into_owned();
            let name = ns.name.clone();
            // One bad entry (a file left in /run/netns, a namespace deleted
            // since the listing) is reported there; the others go on.
            let r = host.in_netns(&path, |h| evict_here(&plan, name.clone(), h));
            namespaces
                .push(r.unwrap_or_else(|e| NsEvict::unprocessed(name, e.to_string(), args.top)));
        }
    } else {
        let name = netns.unwrap_or("current").to_string();
        namespaces.push(evict_here(&plan, name, host)?);
    }
    let sum = |f: fn(&NsEvict) -> u64| namespaces.iter().map(f).sum();
    Ok(EvictReport {
        dry_run: plan.dry_run,
        filter: args.filter.clone(),
        deleted: sum(|n| n.deleted),
        gone: sum(|n| n.gone),
        failed: sum(|n| n.failed),
        selected: sum(|n| n.selected),
        netns_errors: namespaces.iter().filter(|n| n.error.is_some()).count() as u64,
        by_netns: args.all_netns,
        namespaces,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("5000/s"), Ok(5000));
        assert_eq!(parse_rate("7"), Ok(7));
        assert!(parse_rate("0/s").is_err() && parse_rate("fast").is_err());
        assert!(parse_rate("-1").is_err());
    }
}
