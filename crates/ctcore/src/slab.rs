//! /proc/slabinfo and /proc/meminfo: the real size of a conntrack entry and
//! the RAM it is compared with (not the folklore 352 bytes per entry).

/// The `nf_conntrack` slab cache line of /proc/slabinfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SlabCache {
    pub active_objs: u64,
    pub num_objs: u64,
    /// Bytes per object, including the slab's alignment.
    pub objsize: u64,
}

/// The object sizes a conntrack entry can have: `plan --entry-bytes`'s
/// range (a struct nf_conn is some 256 bytes; 0 or a gigabyte is a
/// corrupt file, not an entry).
pub const ENTRY_BYTES: std::ops::RangeInclusive<u64> = 64..=65536;

/// Find the `nf_conntrack` cache (slabinfo 2.x: name, active_objs,
/// num_objs, objsize, ...). `None` when the cache is absent (merged into
/// a kmalloc cache by SLUB, or conntrack unused) or its object size is
/// outside [`ENTRY_BYTES`].
pub fn parse_slabinfo(text: &str) -> Option<SlabCache> {
    text.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        if f.next()? != "nf_conntrack" {
            return None;
        }
        let mut num = || f.next()?.parse::<u64>().ok();
        let cache = SlabCache {
            active_objs: num()?,
            num_objs: num()?,
            objsize: num()?,
        };
        ENTRY_BYTES.contains(&cache.objsize).then_some(cache)
    })
}

/// `MemTotal` of /proc/meminfo, in bytes; `None` below `plan --memory`'s
/// 1 MiB floor (a corrupt file, not a machine).
pub fn parse_memtotal(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut f = line.split_whitespace().skip(1);
    let kib: u64 = f.next()?.parse().ok()?;
    // A corrupt or absurd value must not wrap (issue 8 section 3).
    let bytes = (f.next() == Some("kB")).then(|| kib.saturating_mul(1024))?;
    (bytes >= crate::plan::MIN_MEMORY).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slabinfo_fixture() {
        let text = include_str!("../tests/fixtures/slabinfo.txt");
        assert_eq!(
            parse_slabinfo(text),
            Some(SlabCache {
                active_objs: 80,
                num_objs: 144,
                objsize: 256
            })
        );
        assert_eq!(parse_slabinfo("kmalloc-256 784 784 256 16 1"), None);
        assert_eq!(parse_slabinfo("nf_conntrack x y z"), None);
        assert_eq!(parse_slabinfo("nf_conntrack 1 1 0 16 1"), None);
        assert_eq!(parse_slabinfo("nf_conntrack 1 1 99999999 16 1"), None);
    }

    #[test]
    fn memtotal() {
        assert_eq!(
            parse_memtotal("MemTotal:       24597628 kB\nMemFree: 1 kB\n"),
            Some(24_597_628 * 1024)
        );
        assert_eq!(parse_memtotal("MemTotal: lots"), None);
        assert_eq!(parse_memtotal("MemTotal: 0 kB"), None);
        assert_eq!(parse_memtotal("MemTotal: 1023 kB"), None);
    }
}
