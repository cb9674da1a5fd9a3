//! The cloud rule: ENA NICs whose conntrack allowance was exceeded
//! (`ethtool -S` conntrack_allowance_exceeded), a limit outside the kernel.

use super::*;

pub(super) fn cloud(f: &Facts) -> Vec<Finding> {
    f.cloud
        .iter()
        .map(|a| Finding {
            id: FindingId::CloudEna(a.interface.clone()),
            severity: if a.exceeded > 0 { Severity::Critical } else { Severity::Ok },
            title: if a.exceeded > 0 {
                format!("{}: the cloud NIC dropped {} packets for its own connection-tracking allowance", a.interface, a.exceeded)
            } else {
                format!("{}: cloud NIC conntrack allowance not exceeded", a.interface)
            },
            evidence: vec![format!(
                "ethtool -S {}: conntrack_allowance_exceeded={}{}",
                a.interface,
                a.exceeded,
                a.available.map(|v| format!(" conntrack_allowance_available={v}")).unwrap_or_default()
            )],
            fix: if a.exceeded > 0 {
                vec!["the hypervisor's table (AWS ENA), not the kernel's, is full: use a larger instance type or track fewer flows (security-group rules that need no tracking)".into()]
            } else {
                vec![]
            },
        })
        .collect()
}
