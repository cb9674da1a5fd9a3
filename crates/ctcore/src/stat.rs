//! /proc/net/stat/nf_conntrack: one `%08x` row per possible CPU under a
//! header naming the columns (which changed across kernels, so the header
//! is read, never assumed). The `entries` column is the namespace total
//! repeated on every row: it is taken once, not summed.

use std::collections::BTreeMap;

/// Counters summed over CPUs, by the header's column names.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatTable {
    pub cpus: usize,
    pub entries: Option<u64>,
    pub counters: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatError {
    #[error("empty file")]
    Empty,
    #[error("row {row}: {why}")]
    Row { row: usize, why: String },
}

pub fn parse_stat(text: &str) -> Result<StatTable, StatError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or(StatError::Empty)?
        .split_whitespace()
        .collect();
    let mut t = StatTable::default();
    for (i, line) in lines.enumerate() {
        let values: Vec<&str> = line.split_whitespace().collect();
        if values.len() != header.len() {
            return Err(StatError::Row {
                row: i + 1,
                why: format!("{} columns, header has {}", values.len(), header.len()),
            });
        }
        t.cpus += 1;
        for (name, v) in header.iter().zip(values) {
            let v = u64::from_str_radix(v, 16).map_err(|_| StatError::Row {
                row: i + 1,
                why: format!("{name}={v:?} is not hex"),
            })?;
            if *name == "entries" {
                t.entries = Some(v);
            } else {
                // Per-CPU values summed: a corrupt row must not wrap (issue 8 section 3).
                let sum = t.counters.entry((*name).to_string()).or_insert(0);
                *sum = sum.saturating_add(v);
            }
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_and_sums() {
        let t = parse_stat(include_str!("../tests/fixtures/stat.txt")).expect("parses");
        assert_eq!(t.cpus, 2);
        assert_eq!(t.counters.get("drop"), Some(&0));
        assert!(t.counters.contains_key("search_restart"));
        let t = parse_stat(
            "entries drop early_drop\n0000000a 00000001 000000ff\n0000000a 00000002 00000001\n",
        )
        .expect("parses");
        assert_eq!(t.entries, Some(10));
        assert_eq!(t.counters["drop"], 3);
        assert_eq!(t.counters["early_drop"], 256);
    }

    #[test]
    fn per_cpu_sums_saturate_instead_of_wrapping() {
        let t =
            parse_stat("entries drop\n0 ffffffffffffffff\n0 ffffffffffffffff\n").expect("parses");
        assert_eq!(t.counters["drop"], u64::MAX);
    }

    /// This machine's 6.18 file and a 4.19 one: the same positions name
    /// different counters, so only the header tells `clashres` from
    /// `searched` and `chainlength` from `delete_list`.
    #[test]
    fn new_and_old_layouts_map_by_header() {
        use crate::counters::{Counters, canonical};
        let new = parse_stat(include_str!("../tests/fixtures/stat-6.18.txt")).expect("parses");
        assert!(new.counters.contains_key("clashres") && new.counters.contains_key("chainlength"));
        let c = Counters::from_named(new.counters.iter().map(|(k, v)| (k.as_str(), *v)));
        assert!(c.clash_resolve.is_some() && c.chaintoolong.is_some());
        let old = parse_stat(include_str!("../tests/fixtures/stat-4.19.txt")).expect("parses");
        assert_eq!(old.cpus, 2);
        assert_eq!(old.entries, Some(16));
        // Old columns keep their own names: `searched` is not clash_resolve,
        // `delete_list` is not chaintoolong.
        assert_eq!(old.counters["searched"], 12);
        assert_eq!(old.counters["delete_list"], 5);
        assert_eq!(canonical("searched"), "searched");
        assert_eq!(canonical("delete_list"), "delete_list");
        let c = Counters::from_named(old.counters.iter().map(|(k, v)| (k.as_str(), *v)));
        assert_eq!(c.clash_resolve, None);
        assert_eq!(c.chaintoolong, None);
        assert_eq!(c.found, Some(0x300));
        assert_eq!(c.drop, Some(5));
        assert_eq!(c.insert_failed, Some(1));
        assert_eq!(c.error, Some(0));
        assert_eq!(c.search_restart, Some(6));
        // Any order, unknown columns kept by name.
        let t = parse_stat("future drop entries chainlength\n1 2 3 4\n1 0 3 1\n").expect("parses");
        assert_eq!(t.entries, Some(3));
        assert_eq!(t.counters["future"], 2);
        assert_eq!(t.counters["drop"], 2);
        assert_eq!(
            Counters::from_named([("chainlength", t.counters["chainlength"])]).chaintoolong,
            Some(5)
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(parse_stat(""), Err(StatError::Empty));
        assert!(parse_stat("entries drop\n1\n").is_err());
        assert!(parse_stat("entries drop\nzz 1\n").is_err());
    }
}
