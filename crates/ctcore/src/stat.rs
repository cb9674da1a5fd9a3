//! /proc/net/stat/nf_conntrack: one `%08x` row per possible CPU under a
//! header naming the columns (which changed across kernels, so the header
//! is read, never assumed). The `entries` column is the namespace total
//! repeated on every row: it is taken once, not summed. A file without
//! the counters every kernel since 2.6 prints ([`REQUIRED`]), without CPU
//! rows, or naming a column twice is malformed: a counter never read is
//! unknown, not 0.

use std::collections::BTreeMap;

/// Counters summed over CPUs, by the header's column names.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatTable {
    pub cpus: usize,
    pub entries: Option<u64>,
    pub counters: BTreeMap<String, u64>,
}

/// Columns every kernel's header has had (2.6 to 6.18, KERNEL.md
/// sections 9 and 14), and the ones `check` judges drops by.
pub const REQUIRED: [&str; 4] = ["entries", "insert_failed", "drop", "early_drop"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatError {
    #[error("empty file")]
    Empty,
    #[error("header has no {0} column (header: {1:?})")]
    Missing(String, String),
    #[error("header names column {0} twice")]
    Duplicate(String),
    #[error("no CPU rows under the header")]
    NoRows,
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
    let joined = header.join(" ");
    for (i, name) in header.iter().enumerate() {
        if header[..i].contains(name) {
            return Err(StatError::Duplicate((*name).to_string()));
        }
    }
    if let Some(m) = REQUIRED.iter().find(|r| !header.contains(r)) {
        return Err(StatError::Missing((*m).to_string(), joined));
    }
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
    if t.cpus == 0 {
        return Err(StatError::NoRows);
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
            "entries insert_failed drop early_drop\n0000000a 0 00000001 000000ff\n0000000a 0 00000002 00000001\n",
        )
        .expect("parses");
        assert_eq!(t.entries, Some(10));
        assert_eq!(t.counters["drop"], 3);
        assert_eq!(t.counters["early_drop"], 256);
    }

    #[test]
    fn per_cpu_sums_saturate_instead_of_wrapping() {
        let t =
            parse_stat(
            "entries insert_failed drop early_drop\n0 0 ffffffffffffffff 0\n0 0 ffffffffffffffff 0\n",
        ).expect("parses");
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
        let t = parse_stat(
            "future drop entries chainlength early_drop insert_failed\n1 2 3 4 0 0\n1 0 3 1 0 0\n",
        )
        .expect("parses");
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
        let h = "entries insert_failed drop early_drop";
        assert!(parse_stat(&format!("{h}\n1\n")).is_err());
        assert!(parse_stat(&format!("{h}\nzz 1 0 0\n")).is_err());
    }

    /// Issue 20 W6: files that would have read as "drop=0".
    #[test]
    fn missing_duplicate_or_rowless_is_malformed_not_zero() {
        let full = "entries insert_failed drop early_drop";
        assert_eq!(
            parse_stat("entries found new\n1 2 3\n"),
            Err(StatError::Missing(
                "insert_failed".into(),
                "entries found new".into()
            ))
        );
        assert!(matches!(
            parse_stat("ENTRIES DROP\n1 2\n"),
            Err(StatError::Missing(..))
        ));
        assert!(matches!(parse_stat("foo\n"), Err(StatError::Missing(..))));
        assert_eq!(parse_stat(&format!("{full}\n")), Err(StatError::NoRows));
        assert_eq!(
            parse_stat("entries drop drop\n00000001 00000005 00000001\n"),
            Err(StatError::Duplicate("drop".into()))
        );
        assert_eq!(
            parse_stat(&format!("{full} drop\n1 0 0 0 0\n")),
            Err(StatError::Duplicate("drop".into()))
        );
        // Every layout the kernel has printed still parses.
        let t = parse_stat(&format!("{full}\n1 0 2 0\n")).expect("parses");
        assert_eq!((t.cpus, t.counters["drop"]), (1, 2));
    }
}
