//! The kernel's per-CPU conntrack counters (IPCTNL_MSG_CT_GET_STATS_CPU,
//! one message per CPU) and the two things every command does with them:
//! sum them over CPUs, and take the increase between two readings. Each
//! counter is a 32-bit value per CPU (CTA_STATS_* are be32), so an increase
//! is taken CPU by CPU modulo 2^32, never from the sums.

/// One CPU's counters; `None` where this kernel does not report one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuStats {
    pub cpu: u16,
    pub found: Option<u32>,
    pub invalid: Option<u32>,
    pub insert: Option<u32>,
    pub insert_failed: Option<u32>,
    pub drop: Option<u32>,
    pub early_drop: Option<u32>,
    pub error: Option<u32>,
    pub search_restart: Option<u32>,
    pub clash_resolve: Option<u32>,
    pub chaintoolong: Option<u32>,
}

/// The counter names, as ctnetlink's CTA_STATS_* and
/// /proc/net/stat/nf_conntrack's header spell them.
pub const NAMES: [&str; 10] = [
    "found",
    "invalid",
    "insert",
    "insert_failed",
    "drop",
    "early_drop",
    "error",
    "search_restart",
    "clash_resolve",
    "chaintoolong",
];

/// The [`NAMES`] spelling of a /proc/net/stat/nf_conntrack column: the
/// file's header spells three counters its own way.
pub fn canonical(column: &str) -> &str {
    match column {
        "clashres" => "clash_resolve",
        "chainlength" => "chaintoolong",
        "icmp_error" => "error",
        other => other,
    }
}

impl CpuStats {
    /// The counters in [`NAMES`] order.
    pub fn values(&self) -> [Option<u32>; 10] {
        [
            self.found,
            self.invalid,
            self.insert,
            self.insert_failed,
            self.drop,
            self.early_drop,
            self.error,
            self.search_restart,
            self.clash_resolve,
            self.chaintoolong,
        ]
    }
}

/// Counters over all CPUs (a sum, or an increase); `None` where no CPU
/// reported the counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub found: Option<u64>,
    pub invalid: Option<u64>,
    pub insert: Option<u64>,
    pub insert_failed: Option<u64>,
    pub drop: Option<u64>,
    pub early_drop: Option<u64>,
    pub error: Option<u64>,
    pub search_restart: Option<u64>,
    pub clash_resolve: Option<u64>,
    pub chaintoolong: Option<u64>,
}

impl Counters {
    fn from_values(v: [Option<u64>; 10]) -> Self {
        let [
            found,
            invalid,
            insert,
            insert_failed,
            drop,
            early_drop,
            error,
            search_restart,
            clash_resolve,
            chaintoolong,
        ] = v;
        Self {
            found,
            invalid,
            insert,
            insert_failed,
            drop,
            early_drop,
            error,
            search_restart,
            clash_resolve,
            chaintoolong,
        }
    }

    /// The counters in [`NAMES`] order.
    pub fn values(&self) -> [Option<u64>; 10] {
        [
            self.found,
            self.invalid,
            self.insert,
            self.insert_failed,
            self.drop,
            self.early_drop,
            self.error,
            self.search_restart,
            self.clash_resolve,
            self.chaintoolong,
        ]
    }

    /// (name, value) of the counters some CPU reported.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> {
        NAMES
            .into_iter()
            .zip(self.values())
            .filter_map(|(n, v)| Some((n, v?)))
    }

    /// Counters from (name, value) pairs, names as [`NAMES`] or as
    /// /proc/net/stat/nf_conntrack spells them ([`canonical`]); other
    /// names are ignored.
    pub fn from_named<'a>(pairs: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        let mut c = Self::default();
        for (name, v) in pairs {
            let slot = match canonical(name) {
                "found" => &mut c.found,
                "invalid" => &mut c.invalid,
                "insert" => &mut c.insert,
                "insert_failed" => &mut c.insert_failed,
                "drop" => &mut c.drop,
                "early_drop" => &mut c.early_drop,
                "error" => &mut c.error,
                "search_restart" => &mut c.search_restart,
                "clash_resolve" => &mut c.clash_resolve,
                "chaintoolong" => &mut c.chaintoolong,
                _ => continue,
            };
            *slot = Some(v);
        }
        c
    }

    /// Each counter summed over CPUs (in u64: 65,536 CPUs of u32 fit).
    pub fn sum(cpus: &[CpuStats]) -> Self {
        let mut out = [None; 10];
        for c in cpus {
            for (o, v) in out.iter_mut().zip(c.values()) {
                if let Some(v) = v {
                    *o = Some(o.unwrap_or(0) + u64::from(v));
                }
            }
        }
        Self::from_values(out)
    }

    /// The increase from `before` to `after`, CPU by CPU, modulo 2^32 (a
    /// CPU's counter that wrapped once between the readings still counts
    /// right). A CPU missing from either reading (hotplug) adds nothing
    /// rather than its whole history; a counter is `None` when no CPU
    /// reported it in both readings.
    pub fn delta(before: &[CpuStats], after: &[CpuStats]) -> Self {
        let mut out = [None; 10];
        for a in after {
            let Some(b) = before.iter().find(|b| b.cpu == a.cpu) else {
                continue;
            };
            for (o, (x, y)) in out.iter_mut().zip(b.values().into_iter().zip(a.values())) {
                if let (Some(x), Some(y)) = (x, y) {
                    *o = Some(o.unwrap_or(0) + u64::from(y.wrapping_sub(x)));
                }
            }
        }
        Self::from_values(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(cpu: u16, drop: u32, early: Option<u32>) -> CpuStats {
        CpuStats {
            cpu,
            drop: Some(drop),
            early_drop: early,
            ..CpuStats::default()
        }
    }

    #[test]
    fn sums_keep_unreported_counters_apart_from_zero() {
        let s = Counters::sum(&[cpu(0, 3, None), cpu(1, u32::MAX, None)]);
        assert_eq!(s.drop, Some(3 + u64::from(u32::MAX)));
        assert_eq!(s.early_drop, None);
        assert_eq!(s.found, None);
        assert_eq!(s.named().collect::<Vec<_>>(), [("drop", 4_294_967_298)]);
        assert_eq!(Counters::sum(&[]), Counters::default());
    }

    #[test]
    fn delta_wraps_per_cpu_and_ignores_cpus_in_one_reading() {
        let before = [cpu(0, u32::MAX - 1, Some(7)), cpu(1, 10, Some(0))];
        // CPU 0 wrapped (+3), CPU 1 +5, CPU 2 appeared (hotplug): ignored.
        let after = [cpu(0, 1, Some(9)), cpu(1, 15, None), cpu(2, 1000, Some(1))];
        let d = Counters::delta(&before, &after);
        assert_eq!(d.drop, Some(8));
        assert_eq!(d.early_drop, Some(2));
        assert_eq!(d.insert, None);
        // The sums would have said the drop counter fell by 4.3 billion.
        assert!(Counters::sum(&after).drop < Counters::sum(&before).drop);
    }

    #[test]
    fn proc_spellings_name_the_same_counters() {
        let c = Counters::from_named([
            ("clashres", 3),
            ("chainlength", 4),
            ("icmp_error", 5),
            ("drop", 6),
            ("entries", 9),
        ]);
        assert_eq!(c.clash_resolve, Some(3));
        assert_eq!(c.chaintoolong, Some(4));
        assert_eq!(c.error, Some(5));
        assert_eq!(c.drop, Some(6));
        assert_eq!(c.found, None);
        let back: Vec<_> = c.named().collect();
        assert_eq!(Counters::from_named(back), c);
    }
}
