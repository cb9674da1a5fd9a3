//! `ctdoctor evict`: delete the entries that match a `top --filter`, over
//! ctnetlink: one dump, then batched deletes by tuple and CTA_ID (an entry
//! re-created since the dump is not touched). Owns the dry run, the ASSURED
//! protection, --limit, --rate pacing and the report (its JSON shape is in
//! DESIGN.md under evict). The breakdown of what goes is `top`'s.

use std::io;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use cthost::Host;
use ctmodel::{Breakdown, Entry, Filter};
use ctnetlink::Family;
use serde::Serialize;

use crate::commands::top::TopReport;
use crate::exit::{FAILED, Usage};

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
    #[serde(skip)]
    pub by_netns: bool,
}

impl crate::output::Render for EvictReport {
    fn text(&self, out: &mut dyn io::Write, style: crate::output::Style) -> io::Result<()> {
        for ns in &self.namespaces {
            if self.by_netns {
                writeln!(out, "== netns {} ==", ns.netns)?;
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
        if self.failed > 0 { FAILED } else { 0 }
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

#[derive(Default)]
struct Selection {
    matched: u64,
    protected: u64,
    selected: Vec<Entry>,
}

impl Selection {
    fn take(&mut self, filter: &Filter, names_assured: bool, e: &Entry) {
        if filter.matches(e) {
            self.matched += 1;
            if e.assured() && !names_assured {
                self.protected += 1;
            } else {
                self.selected.push(e.clone());
            }
        }
    }
}

struct Plan<'a> {
    filter: &'a Filter,
    args: &'a EvictArgs,
    dry_run: bool,
}

/// Dump, select, delete: in the calling thread's namespace.
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
    let names_assured = p.args.include_assured || p.filter.names_assured();
    let before = ct.stats().ok().map(|s| u64::from(s.entries));
    let mut sel = Selection::default();
    // With one protocol required, the kernel copies out only its entries
    // (CTA_FILTER, 5.8+); an older kernel refuses the filter: full dump.
    let filtered = match filter.only_l4() {
        Some(l4) => (|| {
            let take = |e: &Entry| sel.take(filter, names_assured, e);
            let mut take = take;
            let v4 = ct.dump_l4(Family::Ipv4, l4.number(), &mut take)?;
            let v6 = ct.dump_l4(Family::Ipv6, l4.number(), &mut take)?;
            Ok::<_, ctnetlink::Error>((v4, v6))
        })()
        .ok(),
        None => None,
    };
    let summary = match filtered {
        Some((v4, v6)) => ctnetlink::DumpSummary {
            entries: before.unwrap_or(v4.entries + v6.entries),
            malformed: v4.malformed + v6.malformed,
            first_malformed: v4.first_malformed.or(v6.first_malformed),
            interrupted: v4.interrupted || v6.interrupted,
        },
        None => {
            sel = Selection::default();
            let s = ct.dump(Family::Any, |e| sel.take(filter, names_assured, e))?;
            ctnetlink::DumpSummary {
                entries: before.unwrap_or(s.entries),
                ..s
            }
        }
    };
    let Selection {
        matched,
        protected,
        mut selected,
    } = sel;
    let mut over_limit = 0;
    if let Some(limit) = p.args.limit {
        let keep = usize::try_from(limit).unwrap_or(usize::MAX);
        over_limit = selected.len().saturating_sub(keep) as u64;
        selected.truncate(keep);
    }
    let mut b = Breakdown::new(Filter::default());
    for e in &selected {
        b.add(e);
    }
    let mut breakdown = TopReport::new("netlink".into(), &b, p.args.top);
    breakdown.dump_interrupted = summary.interrupted;
    let mut ns = NsEvict {
        netns,
        before: summary.entries,
        matched,
        protected_assured: protected,
        over_limit,
        selected: selected.len() as u64,
        deleted: 0,
        gone: 0,
        failed: 0,
        failed_errors: Default::default(),
        after: None,
        dump_interrupted: summary.interrupted,
        seconds: 0.0,
        breakdown,
    };
    if !p.dry_run {
        // Chunks of a twentieth of a second's worth when paced.
        let chunk = p.args.rate.map_or(usize::MAX, |r| {
            usize::try_from((r / 20).max(1)).unwrap_or(1)
        });
        let start = Instant::now();
        let mut done = 0u64;
        for part in selected.chunks(chunk.max(1)) {
            let r = ct.delete_exact(part)?;
            ns.deleted += r.deleted;
            ns.gone += r.gone;
            for (errno, n) in r.failed {
                ns.failed += n;
                *ns.failed_errors.entry(errno_name(errno)).or_default() += n;
            }
            done += part.len() as u64;
            if let Some(rate) = p.args.rate {
                let due = Duration::from_secs_f64(done as f64 / rate as f64);
                std::thread::sleep(due.saturating_sub(start.elapsed()));
            }
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
            namespaces.push(host.in_netns(&path, |h| evict_here(&plan, name, h))?);
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
