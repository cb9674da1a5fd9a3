//! eBPF conntrack maps: the tables Cilium and Calico keep beside (or
//! instead of) nf_conntrack, pinned under bpffs. This module owns which pin
//! names are conntrack maps, which agent setting sizes each, and how full
//! is too full; reading them is cthost's (`cthost::bpf`).

use serde::Serialize;

/// Where Cilium and Calico pin their global maps, below the bpffs root.
pub const PIN_DIR: &str = "tc/globals";

/// The agent that owns a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Datapath {
    Cilium,
    Calico,
}

impl Datapath {
    pub fn label(self) -> &'static str {
        match self {
            Self::Cilium => "Cilium",
            Self::Calico => "Calico",
        }
    }
}

/// One pinned conntrack (or NAT) map: its fill as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BpfMap {
    /// The pin name (`cilium_ct4_global`, `cali_v4_ct3`): a known name only.
    pub name: String,
    pub datapath: Datapath,
    /// Keys counted in the map.
    pub entries: u64,
    /// The map's max_entries.
    pub max_entries: u64,
}

impl BpfMap {
    pub fn fill_percent(&self) -> f64 {
        if self.max_entries == 0 {
            0.0
        } else {
            self.entries as f64 * 100.0 / self.max_entries as f64
        }
    }
}

/// Cilium's pinned maps that track or translate connections, with the agent
/// flag that sizes each and its Helm value (`--bpf-map-dynamic-size-ratio`,
/// Helm `bpf.mapDynamicSizeRatio`, sizes all of them from RAM when the
/// per-map flag is not set). The ConfigMap (cilium-config) key is the flag
/// without its dashes. Checked against docs.cilium.io/en/stable/network/
/// ebpf/maps/ (the flags), Cilium's Documentation/helm-values.rst
/// (`bpf.ctTcpMax`, `bpf.ctAnyMax`, `bpf.natMax`) and pkg/maps/nat/nat.go
/// (`MapNameSnat4Global = "cilium_snat_v4_external"`); the pins live in
/// /sys/fs/bpf/tc/globals (pkg/bpf's tc/globals map root).
const CILIUM: [(&str, &str, &str); 6] = [
    (
        "cilium_ct4_global",
        "--bpf-ct-global-tcp-max",
        "bpf.ctTcpMax",
    ),
    (
        "cilium_ct6_global",
        "--bpf-ct-global-tcp-max",
        "bpf.ctTcpMax",
    ),
    (
        "cilium_ct_any4_global",
        "--bpf-ct-global-any-max",
        "bpf.ctAnyMax",
    ),
    (
        "cilium_ct_any6_global",
        "--bpf-ct-global-any-max",
        "bpf.ctAnyMax",
    ),
    (
        "cilium_snat_v4_external",
        "--bpf-nat-global-max",
        "bpf.natMax",
    ),
    (
        "cilium_snat_v6_external",
        "--bpf-nat-global-max",
        "bpf.natMax",
    ),
];

/// The datapath of a pin name ctdoctor reports, `None` for any other map.
/// Calico versions its pin names (`cali_v4_ct`, `cali_v4_ct2`,
/// `cali_v4_ct3`): the digits are the layout version (felix/bpf/maps:
/// `versionedStr` appends the version when above 1; felix/bpf/conntrack:
/// `Name: "cali_v4_ct"`, `"cali_v6_ct"`, Version 2 then 3), pinned under
/// /sys/fs/bpf/tc/globals (`bpfdefs.GlobalPinDir`).
pub fn known(name: &str) -> Option<Datapath> {
    if CILIUM.iter().any(|(n, _, _)| *n == name) {
        return Some(Datapath::Cilium);
    }
    let version = name
        .strip_prefix("cali_v4_ct")
        .or_else(|| name.strip_prefix("cali_v6_ct"))?;
    version
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then_some(Datapath::Calico)
}

/// How to give a map more room: the agent setting that sizes it.
pub fn raise(map: &BpfMap) -> String {
    match map.datapath {
        Datapath::Cilium => {
            let (flag, helm) = CILIUM
                .iter()
                .find(|(n, _, _)| *n == map.name)
                .map_or(("--bpf-ct-global-tcp-max", "bpf.ctTcpMax"), |(_, f, h)| {
                    (*f, *h)
                });
            format!(
                "raise cilium-agent's {flag} (Helm value {helm}, cilium-config key {}), or --bpf-map-dynamic-size-ratio (Helm bpf.mapDynamicSizeRatio) to size the maps from RAM; the agent recreates the map on restart",
                flag.trim_start_matches("--")
            )
        }
        // Felix's FelixConfiguration fields (calico api/pkg/apis/
        // projectcalico/v3/felixconfig.go): bpfMapSizeConntrack, overridden
        // by bpfMapSizePerCpuConntrack x CPUs when set; bpfMapSizeConntrackScaling
        // (default DoubleIfFull in the releases that have it) doubles a
        // full map by itself. Felix reads every field from FELIX_<NAME> too.
        Datapath::Calico => "raise Felix's bpfMapSizeConntrack (FelixConfiguration; environment FELIX_BPFMAPSIZECONNTRACK), or bpfMapSizePerCpuConntrack which overrides it when set; where bpfMapSizeConntrackScaling exists, DoubleIfFull (its default) grows a full map by itself, Disabled keeps the size. Felix restarts to resize the map".into(),
    }
}

/// The severity band of a map's fill against check's --warn/--crit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band {
    Ok,
    Warning,
    Critical,
}

pub fn band(map: &BpfMap, warn: f64, crit: f64) -> Band {
    let fill = map.fill_percent();
    if fill >= crit {
        Band::Critical
    } else if fill >= warn {
        Band::Warning
    } else {
        Band::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(name: &str, entries: u64, max: u64) -> BpfMap {
        BpfMap {
            name: name.into(),
            datapath: known(name).expect("known"),
            entries,
            max_entries: max,
        }
    }

    #[test]
    fn known_names_only() {
        assert_eq!(known("cilium_ct4_global"), Some(Datapath::Cilium));
        assert_eq!(known("cilium_snat_v6_external"), Some(Datapath::Cilium));
        assert_eq!(known("cali_v4_ct3"), Some(Datapath::Calico));
        assert_eq!(known("cali_v6_ct"), Some(Datapath::Calico));
        assert_eq!(known("cali_v4_ct_nats"), None);
        assert_eq!(known("cali_v4_ctc"), None);
        assert_eq!(known("cilium_lb4_services_v2"), None);
        assert_eq!(known("cilium_ct4_global2"), None);
    }

    #[test]
    fn bands_follow_the_thresholds() {
        assert_eq!(
            band(&map("cilium_ct4_global", 950, 1024), 75.0, 90.0),
            Band::Critical
        );
        assert_eq!(
            band(&map("cilium_ct4_global", 800, 1024), 75.0, 90.0),
            Band::Warning
        );
        assert_eq!(
            band(&map("cilium_ct4_global", 102, 1024), 75.0, 90.0),
            Band::Ok
        );
        assert_eq!(band(&map("cilium_ct4_global", 0, 0), 75.0, 90.0), Band::Ok);
    }

    #[test]
    fn raise_names_the_agent_setting() {
        assert!(raise(&map("cilium_ct_any4_global", 1, 2)).contains("--bpf-ct-global-any-max"));
        assert!(raise(&map("cilium_snat_v4_external", 1, 2)).contains("--bpf-nat-global-max"));
        assert!(raise(&map("cilium_ct6_global", 1, 2)).contains("--bpf-ct-global-tcp-max"));
        assert!(raise(&map("cilium_ct_any6_global", 1, 2)).contains("Helm value bpf.ctAnyMax"));
        assert!(raise(&map("cilium_snat_v6_external", 1, 2)).contains("bpf.natMax"));
        assert!(raise(&map("cali_v4_ct3", 1, 2)).contains("FELIX_BPFMAPSIZECONNTRACK"));
    }
}
