//! Finding ids: the stable names `check --json` prints in `findings[].id`
//! (scripts and alert routing key on them), one variant per rule outcome.

use std::fmt;

/// What a finding is about; printed as its dotted id ("table.fill",
/// "netns.4026532245", "cloud.ena.eth0").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingId {
    TableFill,
    TableChains,
    /// The average chain at max near this kernel's insert-time chain limit.
    TableChainLimit,
    Memory,
    TimeoutTcpEstablished,
    TimeoutTcpTimeWait,
    /// One namespace's own fill, by its inode.
    Netns(u64),
    NetnsAll,
    /// Whether each namespace has its own `nf_conntrack_max`.
    NetnsMax,
    ConntrackUnused,
    CountersDrop,
    CountersEarlyDrop,
    CountersInsertFailed,
    CountersChainTooLong,
    LogTableFull,
    /// Table-full messages from one namespace, by its inode.
    LogTableFullIn(u64),
    LogTableFullMore,
    /// Table-full lines of another host's log (syslog/journal host name).
    LogOtherHost,
    LogVmalloc,
    /// An ENA NIC's conntrack allowance, by interface.
    CloudEna(String),
    /// A Cilium or Calico eBPF conntrack map, by pin name.
    BpfMap(String),
    WhoRules,
    WhoNotrack,
    WhoNotrackIneffective,
    WhoServices,
    WhoHostServices,
    WhoUnneeded,
    /// A live value that differs from the persisted or applied one, by key
    /// (`drift.nf_conntrack_max`, `drift.hashsize`).
    Drift(String),
}

impl FindingId {
    /// The id of every variant without a parameter, for tests and docs.
    pub const FIXED: [Self; 23] = [
        Self::TableFill,
        Self::TableChains,
        Self::TableChainLimit,
        Self::Memory,
        Self::TimeoutTcpEstablished,
        Self::TimeoutTcpTimeWait,
        Self::NetnsAll,
        Self::NetnsMax,
        Self::ConntrackUnused,
        Self::CountersDrop,
        Self::CountersEarlyDrop,
        Self::CountersInsertFailed,
        Self::CountersChainTooLong,
        Self::LogTableFull,
        Self::LogTableFullMore,
        Self::LogOtherHost,
        Self::LogVmalloc,
        Self::WhoRules,
        Self::WhoNotrack,
        Self::WhoNotrackIneffective,
        Self::WhoServices,
        Self::WhoHostServices,
        Self::WhoUnneeded,
    ];
}

impl fmt::Display for FindingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fixed = match self {
            Self::Netns(inode) => return write!(f, "netns.{inode}"),
            Self::CloudEna(interface) => return write!(f, "cloud.ena.{interface}"),
            Self::BpfMap(name) => return write!(f, "bpf.{name}"),
            Self::LogTableFullIn(inode) => return write!(f, "log.table_full.{inode}"),
            Self::Drift(key) => return write!(f, "drift.{key}"),
            Self::TableFill => "table.fill",
            Self::TableChains => "table.chains",
            Self::TableChainLimit => "table.chain_limit",
            Self::Memory => "memory",
            Self::TimeoutTcpEstablished => "timeouts.tcp_established",
            Self::TimeoutTcpTimeWait => "timeouts.tcp_time_wait",
            Self::NetnsAll => "netns.all",
            Self::NetnsMax => "netns.max",
            Self::ConntrackUnused => "conntrack.unused",
            Self::CountersDrop => "counters.drop",
            Self::CountersEarlyDrop => "counters.early_drop",
            Self::CountersInsertFailed => "counters.insert_failed",
            Self::CountersChainTooLong => "counters.chaintoolong",
            Self::LogTableFull => "log.table_full",
            Self::LogTableFullMore => "log.table_full.more",
            Self::LogOtherHost => "log.other_host",
            Self::LogVmalloc => "log.vmalloc",
            Self::WhoRules => "who.rules",
            Self::WhoNotrack => "who.notrack",
            Self::WhoNotrackIneffective => "who.notrack_ineffective",
            Self::WhoServices => "who.services",
            Self::WhoHostServices => "who.host_services",
            Self::WhoUnneeded => "who.unneeded",
        };
        f.write_str(fixed)
    }
}

impl serde::Serialize for FindingId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `finding.id == "table.fill"`: compares the printed id.
impl PartialEq<&str> for FindingId {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<str> for FindingId {
    fn eq(&self, other: &str) -> bool {
        format!("{self}") == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_documented_dotted_names_and_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for id in FindingId::FIXED {
            let s = id.to_string();
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_'),
                "{s}"
            );
            assert!(seen.insert(s.clone()), "duplicate {s}");
        }
        assert_eq!(FindingId::Netns(4026532245).to_string(), "netns.4026532245");
        assert_eq!(
            FindingId::CloudEna("eth0".into()).to_string(),
            "cloud.ena.eth0"
        );
        assert_eq!(
            serde_json::to_string(&FindingId::TableFill).expect("json"),
            "\"table.fill\""
        );
        assert!(FindingId::LogTableFullMore == "log.table_full.more");
    }
}
