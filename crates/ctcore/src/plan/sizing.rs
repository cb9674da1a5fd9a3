//! The one sizing policy for nf_conntrack_max and the hash table, used by
//! `check` (its suggested new max) and by `plan`, so the two commands never
//! disagree on the same host (issue 7 section 7); and the memory of one
//! entry, extension area included. Total on every input: any u64 or f64
//! gives a max in 512..=2147483136 and a bucket count that is a multiple of
//! 512, never a wrapped value (issue 8 section 3). Integer arithmetic here is
//! checked or saturating only, which clippy enforces below.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;

use crate::facts::Mix;

use super::Version;

/// The largest value the kernel's int sysctls accept (nf_conntrack_max is
/// an `int` handled by proc_dointvec).
pub const INT_MAX: u64 = i32::MAX as u64;

/// Buckets come in whole pages of 8-byte heads: the kernel rounds the size
/// up to a multiple of PAGE_SIZE / 8 = 512 (nf_ct_alloc_hashtable).
pub const PAGE_BUCKETS: u64 = 512;

/// Bytes of one bucket head (struct hlist_nulls_head).
pub const BUCKET_BYTES: u64 = 8;

/// The largest max planned: INT_MAX rounded down to a multiple of 512, so
/// that max = buckets holds whenever the bucket limit allows it.
pub const MAX_MAX: u64 = 2_147_483_136;

/// nf_ct_alloc_hashtable refuses more than INT_MAX / sizeof(struct
/// hlist_nulls_head) = 268435455 buckets before rounding up to a page; the
/// largest multiple of 512 below that is 268434944.
pub const MAX_BUCKETS: u64 = 268_434_944;

/// The headroom `check` applies to the observed peak, and `plan`'s default.
pub const DEFAULT_HEADROOM: f64 = 2.0;

/// NF_CT_EXT_PREALLOC (nf_conntrack_extend.c): the first extension an entry
/// gets allocates at least 128 bytes (a kmalloc-128 object), whatever it is
/// (../shared/KERNEL.md section 7).
pub const EXTENSION_BYTES: u64 = 128;

const GIB: u64 = 1 << 30;

/// Round up to a multiple of 512 (at least 512), saturating at the largest
/// multiple of 512 a u64 holds instead of wrapping.
pub fn round_buckets(n: u64) -> u64 {
    n.div_ceil(PAGE_BUCKETS)
        .max(1)
        .checked_mul(PAGE_BUCKETS)
        .unwrap_or(u64::MAX - u64::MAX % PAGE_BUCKETS)
}

/// Bytes of a table of `entries` entries of `entry_bytes` each (slab object
/// plus extension area) and `buckets` bucket heads, saturating.
pub fn table_memory(entries: u64, buckets: u64, entry_bytes: u64) -> u64 {
    entries
        .saturating_mul(entry_bytes)
        .saturating_add(buckets.saturating_mul(BUCKET_BYTES))
}

/// Round down to a multiple of 512.
fn round_down(n: u64) -> u64 {
    n.checked_rem(PAGE_BUCKETS)
        .map_or(n, |r| n.saturating_sub(r))
}

/// What the kernel chooses by itself (nf_conntrack_init_start, 64-bit):
/// (buckets, max). `hashsize` is an explicit module/boot parameter, which
/// makes max 8 x buckets in every version.
pub fn kernel_default(ram: u64, k: Version, hashsize: Option<u64>) -> (u64, u64) {
    if let Some(h) = hashsize {
        let b = round_buckets(h);
        return (b, b.saturating_mul(8));
    }
    // 1/16384 of memory in 8-byte heads.
    let formula = ram.checked_div(16384 * 8).unwrap_or(0);
    let (buckets, factor) = if k
        >= (Version {
            major: 5,
            minor: 15,
        }) {
        // commit d532bcd0b269: average chain length 2 instead of 8.
        let b = if ram > 4 * GIB {
            262_144
        } else if ram > GIB {
            65_536
        } else {
            formula.max(1024)
        };
        (b, 1)
    } else if k.major >= 4 {
        let b = if ram > 4 * GIB {
            65_536
        } else if ram > GIB {
            16_384
        } else {
            formula.max(32)
        };
        (b, 4)
    } else {
        (if ram > GIB { 16_384 } else { formula.max(32) }, 4)
    };
    let b = round_buckets(buckets);
    (b, b.saturating_mul(factor))
}

/// The extension area counted per entry, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Extension {
    /// Bytes added to every entry: 0 or [`EXTENSION_BYTES`].
    pub bytes: u64,
    /// What showed it in use (or why none was counted).
    pub reasons: Vec<String>,
}

impl Extension {
    pub fn describe(&self) -> String {
        if self.bytes == 0 {
            format!("no extension area counted: {}", self.reasons.join("; "))
        } else {
            format!(
                "+ {} B extension area per entry: {}",
                self.bytes,
                self.reasons.join("; ")
            )
        }
    }
}

/// Whether entries carry the extension area (acct, timestamp, ecache,
/// labels, NAT, helper, zone on older kernels: nf_conntrack_extend.h), from
/// what the table shows, the sysctls that attach one to every new entry,
/// and masquerade rules (`nat_rules` as [`crate::ruleset`] describes them).
/// Counted for every entry at max as soon as any one shows it: the planned
/// table must hold the worst mix, not today's.
///
/// Measured on 6.18 (kmalloc-128 objects per 20000 new UDP entries):
/// plain tracking +0, nf_conntrack_acct=1 +19823, MASQUERADE +19943, DNAT
/// to a fixed address +0. NAT entries in the table count anyway (issue 7
/// section 7): on gateways they are mostly masqueraded, and over-counting
/// 128 B is the safe side for a memory plan.
pub fn extension(
    mix: Option<&Mix>,
    sysctls: &BTreeMap<String, u64>,
    nat_rules: &[String],
) -> Extension {
    let mut reasons = Vec::new();
    // Both attach their extension to every new entry when 1
    // (nf_conntrack_acct.c, nf_conntrack_timestamp.c).
    for name in ["nf_conntrack_acct", "nf_conntrack_timestamp"] {
        if sysctls.get(name).is_some_and(|v| *v != 0) {
            reasons.push(format!("{name}=1"));
        }
    }
    // 1 = events on every entry; 2 (the default since 6.0) only while a
    // ctnetlink listener exists (nf_ct_ecache_ext_add).
    if sysctls.get("nf_conntrack_events") == Some(&1) {
        reasons.push("nf_conntrack_events=1".into());
    }
    // nf_nat_masquerade_ipv4/ipv6 keep the output interface in the NAT
    // extension (nf_ct_nat_ext_add), for every masqueraded entry.
    if let Some(rule) = nat_rules
        .iter()
        .find(|r| r.to_ascii_lowercase().contains("masquerade"))
    {
        reasons.push(format!("masquerade rule: {rule}"));
    }
    if let Some(m) = mix {
        let seen = [
            (m.nat, "NAT"),
            (m.counters, "with counters"),
            (m.timestamps, "with timestamps"),
            (m.labels, "with labels"),
            (m.zones, "in a zone"),
            (m.helpers, "with a helper or sequence adjustment"),
        ];
        let parts: Vec<String> = seen
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        if !parts.is_empty() {
            reasons.push(format!(
                "{} of {} entries in the table carry one ({})",
                m.with_extension,
                m.entries,
                parts.join(", ")
            ));
        }
    }
    if reasons.is_empty() {
        let seen = if mix.is_some() {
            "no NAT, counters, timestamps, labels, zones or helpers in the table"
        } else {
            "table not dumped"
        };
        Extension {
            bytes: 0,
            reasons: vec![format!(
                "{seen}; nf_conntrack_acct and nf_conntrack_timestamp off; no masquerade rule"
            )],
        }
    } else {
        Extension {
            bytes: EXTENSION_BYTES,
            reasons,
        }
    }
}

/// What to size for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    /// Peak number of entries to hold.
    pub peak: u64,
    /// Multiplier on the peak; anything below 1 (or NaN) counts as 1.
    pub headroom: f64,
    pub ram: u64,
    pub kernel: Version,
    /// Bytes per entry, extension area included.
    pub entry_bytes: u64,
    /// Memory budget for a full table, in bytes.
    pub budget: Option<u64>,
}

/// What bounded the planned max below peak x headroom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// The memory budget holds this many entries.
    Budget { cap: u64 },
    /// nf_conntrack_max is an int: [`MAX_MAX`].
    Kernel,
}

/// The sizing, every number bounded.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TableSize {
    /// peak x headroom, rounded up, saturating at u64::MAX.
    pub wanted: u64,
    pub max: u64,
    pub buckets: u64,
    pub default_buckets: u64,
    pub default_max: u64,
    /// max x entry bytes + buckets x 8, saturating.
    pub memory_at_max: u64,
    /// Set when max < wanted because of a limit.
    pub limit: Option<Limit>,
    /// max >= peak.
    pub covers_peak: bool,
}

/// peak x headroom, rounded up, in u64 (saturating; at least the peak).
fn wanted(peak: u64, headroom: f64) -> u64 {
    let h = if headroom >= 1.0 { headroom } else { 1.0 };
    // `as` from f64 saturates (inf -> u64::MAX); h >= 1 excludes NaN.
    let w = (peak as f64 * h).ceil() as u64;
    w.max(peak)
}

/// The sizing policy: peak x headroom, never below the kernel's own default
/// for this RAM and version, capped by the budget, clamped to the kernel's
/// limits; max = buckets (average chain 2 when full) rounded to 512.
pub fn size(d: &Demand) -> TableSize {
    let wanted = wanted(d.peak, d.headroom);
    let (default_buckets, default_max) = kernel_default(d.ram, d.kernel, None);
    let mut target = wanted.max(default_max);
    let mut limit = None;
    if let Some(budget) = d.budget {
        let per_entry = d.entry_bytes.saturating_add(BUCKET_BYTES);
        let cap = round_down(budget.checked_div(per_entry).unwrap_or(u64::MAX));
        if target > cap {
            target = cap;
            limit = Some(Limit::Budget { cap });
        }
    }
    // round_buckets rounds up; keep a capped value at or below its cap.
    let rounded = if limit.is_some() {
        round_down(target)
    } else {
        round_buckets(target)
    };
    let max = rounded.clamp(PAGE_BUCKETS, MAX_MAX);
    if limit.is_none() && max < wanted {
        limit = Some(Limit::Kernel);
    }
    let buckets = max.min(MAX_BUCKETS);
    let memory_at_max = table_memory(max, buckets, d.entry_bytes);
    TableSize {
        wanted,
        max,
        buckets,
        default_buckets,
        default_max,
        memory_at_max,
        limit,
        covers_peak: max >= d.peak,
    }
}

/// Share of RAM in percent (0 when RAM is unknown).
pub fn share_of(bytes: u64, ram: u64) -> f64 {
    if ram == 0 {
        0.0
    } else {
        bytes as f64 * 100.0 / ram as f64
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const K618: Version = Version {
        major: 6,
        minor: 18,
    };

    fn demand(peak: u64, headroom: f64) -> Demand {
        Demand {
            peak,
            headroom,
            ram: 24 * GIB,
            kernel: K618,
            entry_bytes: 256,
            budget: None,
        }
    }

    #[test]
    fn absurd_peaks_and_headrooms_clamp_to_int_max_instead_of_wrapping_to_zero() {
        // Issue 8 section 3: each of these printed nf_conntrack_max = 0.
        for (peak, headroom) in [
            (u64::MAX, 2.0),
            (9_223_372_036_854_775_808, 2.0),
            (1_000, 1e30),
            (1_000, f64::INFINITY),
        ] {
            let s = size(&demand(peak, headroom));
            assert_eq!((s.max, s.buckets), (2_147_483_136, 268_434_944));
            assert_eq!(s.limit, Some(Limit::Kernel));
        }
        let s = size(&demand(u64::MAX, 2.0));
        assert!(!s.covers_peak);
        assert_eq!(s.wanted, u64::MAX);
        // NaN headroom counts as 1: the peak itself.
        let s = size(&demand(1_000_000, f64::NAN));
        assert_eq!((s.wanted, s.max), (1_000_000, 1_000_448));
        assert!(s.covers_peak && s.limit.is_none());
    }

    #[test]
    fn peak_just_below_the_int_limit_is_covered_without_headroom() {
        let s = size(&demand(2_000_000_000, 2.0));
        assert_eq!(s.max, 2_147_483_136);
        assert!(s.covers_peak);
        assert_eq!(s.limit, Some(Limit::Kernel));
    }

    #[test]
    fn rounding_saturates() {
        assert_eq!(round_buckets(0), 512);
        assert_eq!(round_buckets(513), 1024);
        assert_eq!(round_buckets(u64::MAX), u64::MAX - 511);
        assert_eq!(round_down(1023), 512);
        assert_eq!(
            kernel_default(u64::MAX, K618, Some(u64::MAX)),
            (u64::MAX - 511, u64::MAX)
        );
    }

    #[test]
    fn memory_saturates_on_absurd_entry_sizes() {
        let mut d = demand(1_000, 2.0);
        d.entry_bytes = u64::MAX;
        assert_eq!(size(&d).memory_at_max, u64::MAX);
        // A budget with an absurd entry size holds nothing: the floor of 512.
        d.budget = Some(1 << 30);
        let s = size(&d);
        assert_eq!(s.max, 512);
        assert_eq!(s.limit, Some(Limit::Budget { cap: 0 }));
    }

    #[test]
    fn extension_follows_the_table_and_the_sysctls() {
        let none = extension(Some(&Mix::default()), &BTreeMap::new(), &[]);
        assert_eq!(none.bytes, 0);
        let acct = extension(None, &[("nf_conntrack_acct".to_string(), 1)].into(), &[]);
        assert_eq!(acct.bytes, 128);
        assert_eq!(acct.reasons, ["nf_conntrack_acct=1"]);
        let events2 = extension(None, &[("nf_conntrack_events".to_string(), 2)].into(), &[]);
        assert_eq!(events2.bytes, 0);
        let nat = Mix {
            entries: 10,
            nat: 3,
            with_extension: 3,
            ..Mix::default()
        };
        let e = extension(Some(&nat), &BTreeMap::new(), &[]);
        assert_eq!(e.bytes, 128);
        assert_eq!(
            e.reasons,
            ["3 of 10 entries in the table carry one (3 NAT)"]
        );
        let masq = extension(
            Some(&Mix::default()),
            &BTreeMap::new(),
            &["ip nat postrouting: masquerade".to_string()],
        );
        assert_eq!(masq.bytes, 128);
        assert_eq!(
            masq.reasons,
            ["masquerade rule: ip nat postrouting: masquerade"]
        );
    }

    proptest! {
        #[test]
        fn any_input_gives_a_bounded_nonzero_page_multiple(
            peak in any::<u64>(),
            headroom in any::<f64>(),
            ram in any::<u64>(),
            entry_bytes in any::<u64>(),
            budget in proptest::option::of(any::<u64>()),
            major in 0u32..10,
            minor in any::<u32>(),
        ) {
            let d = Demand { peak, headroom, ram, kernel: Version { major, minor }, entry_bytes, budget };
            let s = size(&d);
            prop_assert!(s.max >= 512 && s.max <= INT_MAX);
            prop_assert_eq!(s.max % 512, 0);
            prop_assert!(s.buckets >= 512 && s.buckets.is_multiple_of(512) && s.buckets <= MAX_BUCKETS);
            prop_assert_eq!(s.covers_peak, s.max >= peak);
            // Without a budget the plan covers the peak whenever the kernel can.
            if budget.is_none() && peak <= MAX_MAX {
                prop_assert!(s.covers_peak);
            }
            if s.max < s.wanted.max(s.default_max) {
                prop_assert!(s.limit.is_some());
            }
        }

        #[test]
        fn kernel_default_never_zero(ram in any::<u64>(), major in 0u32..10, minor in any::<u32>(), h in proptest::option::of(any::<u64>())) {
            let (b, m) = kernel_default(ram, Version { major, minor }, h);
            prop_assert!(b >= 512 && b % 512 == 0 && m >= b);
        }
    }
}
