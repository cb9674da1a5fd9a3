//! Renderers for `top`: an aligned table for people, CSV for spreadsheets,
//! JSON for scripts. They only format a [`TopReport`]; nothing is computed here.

use std::io::{self, Write};

use serde_json::{Map, Value};

use ctcore::workload::GroupRow;

use super::{Group, KeyCount, TopReport};

fn rows_of_map(m: &Map<String, Value>) -> Vec<(String, u64)> {
    m.iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
        .collect()
}

/// Rows of addresses: an owned one as `name (ip)`.
fn rows_of_list(v: &[KeyCount]) -> Vec<(String, u64)> {
    v.iter()
        .map(|kc| match &kc.workload {
            Some(w) => (format!("{} ({})", w.name, kc.key), kc.count),
            None => (kc.key.clone(), kc.count),
        })
        .collect()
}

fn rows_of_groups(v: &[GroupRow]) -> Vec<(String, u64)> {
    v.iter().map(|r| (r.key.clone(), r.count)).collect()
}

/// The rows of one grouping, with its title.
pub fn group_rows(r: &TopReport, g: Group) -> (&'static str, Vec<(String, u64)>) {
    match g {
        Group::L3 => ("l3", rows_of_map(&r.l3)),
        Group::L4 => ("l4", rows_of_map(&r.l4)),
        Group::State => ("tcp_state", rows_of_map(&r.tcp_state)),
        Group::Flags => ("flags", rows_of_map(&r.flags)),
        Group::Zone => ("zone", rows_of_map(&r.zone)),
        Group::Mark => ("mark", rows_of_map(&r.mark)),
        Group::Nat => ("nat", rows_of_map(&r.nat)),
        Group::Src => ("top_src", rows_of_list(&r.top_src)),
        Group::Dst => ("top_dst", rows_of_list(&r.top_dst)),
        Group::Dport => ("top_dport", rows_of_list(&r.top_dport)),
        Group::Timeout => ("timeout", rows_of_map(&r.timeout)),
        Group::Container => ("top_container", rows_of_groups(&r.top_container)),
        Group::Pod => ("top_pod", rows_of_groups(&r.top_pod)),
    }
}

/// Section heading in the human table.
fn title(g: Group) -> &'static str {
    match g {
        Group::L3 => "ADDRESS FAMILY",
        Group::L4 => "PROTOCOL",
        Group::State => "TCP STATE",
        Group::Flags => "FLAGS",
        Group::Zone => "ZONE",
        Group::Mark => "MARK",
        Group::Nat => "NAT",
        Group::Src => "TOP SOURCES",
        Group::Dst => "TOP DESTINATIONS",
        Group::Dport => "TOP DESTINATION PORTS",
        Group::Timeout => "TIMEOUT LEFT",
        Group::Container => "TOP CONTAINERS (by source)",
        Group::Pod => "TOP PODS (by source)",
    }
}

/// The groupings shown: `--by`'s, else all of them but the per-container
/// and per-pod ones when no container owns an address (they would repeat
/// the top sources).
fn selected(r: &TopReport, by: &[Group]) -> Vec<Group> {
    if !by.is_empty() {
        return by.to_vec();
    }
    let owned = r.top_container.iter().any(|g| g.workload.is_some());
    Group::ALL
        .into_iter()
        .filter(|g| owned || !matches!(g, Group::Container | Group::Pod))
        .collect()
}

pub fn table(r: &TopReport, by: &[Group], out: &mut impl Write) -> io::Result<()> {
    write!(out, "source: {}   entries: {}", r.source, r.entries)?;
    if r.filtered_out > 0 {
        write!(out, "   filtered out: {}", r.filtered_out)?;
    }
    if r.skipped_lines > 0 {
        write!(out, "   skipped lines: {}", r.skipped_lines)?;
    }
    writeln!(out)?;
    for m in &r.bpf_maps {
        writeln!(
            out,
            "{} CT map {}: {} / {} entries",
            m.datapath.label(),
            m.name,
            crate::output::thousands(m.entries),
            crate::output::thousands(m.max_entries)
        )?;
    }
    if r.dump_interrupted {
        writeln!(
            out,
            "note: the table changed during every dump attempt (NLM_F_DUMP_INTR); counts are approximate"
        )?;
    }
    let total = r.entries.max(1) as f64;
    for g in selected(r, by) {
        let (_, mut rows) = group_rows(r, g);
        rows.retain(|(_, c)| *c > 0);
        writeln!(out)?;
        writeln!(out, "{:<40} {:>10} {:>7}", title(g), "COUNT", "%")?;
        if rows.is_empty() {
            writeln!(out, "  (none)")?;
        }
        for (k, c) in rows {
            let pct = c as f64 * 100.0 / total;
            writeln!(out, "  {k:<38} {c:>10} {pct:>6.1}%")?;
        }
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn csv(r: &TopReport, by: &[Group], out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "group,key,count")?;
    writeln!(out, "entries,all,{}", r.entries)?;
    for g in selected(r, by) {
        let (title, rows) = group_rows(r, g);
        for (k, c) in rows {
            writeln!(out, "{title},{},{c}", csv_field(&k))?;
        }
    }
    Ok(())
}
