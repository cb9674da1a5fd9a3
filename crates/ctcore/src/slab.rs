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

/// Find the `nf_conntrack` cache (slabinfo 2.x: name, active_objs,
/// num_objs, objsize, ...). `None` when the cache is absent (merged into
/// a kmalloc cache by SLUB, or conntrack unused).
pub fn parse_slabinfo(text: &str) -> Option<SlabCache> {
    text.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        if f.next()? != "nf_conntrack" {
            return None;
        }
        let mut num = || f.next()?.parse::<u64>().ok();
        Some(SlabCache {
            active_objs: num()?,
            num_objs: num()?,
            objsize: num()?,
        })
    })
}

/// `MemTotal` of /proc/meminfo, in bytes.
pub fn parse_memtotal(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut f = line.split_whitespace().skip(1);
    let kib: u64 = f.next()?.parse().ok()?;
    // A corrupt or absurd value must not wrap (issue 8 section 3).
    (f.next() == Some("kB")).then(|| kib.saturating_mul(1024))
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
    }

    #[test]
    fn memtotal() {
        assert_eq!(
            parse_memtotal("MemTotal:       24597628 kB\nMemFree: 1 kB\n"),
            Some(24_597_628 * 1024)
        );
        assert_eq!(parse_memtotal("MemTotal: lots"), None);
    }
}
