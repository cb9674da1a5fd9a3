//! Cloud NIC conntrack limits: AWS ENA exposes `conntrack_allowance_exceeded`
//! in `ethtool -S` when the hypervisor's own connection tracking drops
//! packets, which looks exactly like a full kernel table from inside.

pub use crate::facts::Allowance;
use crate::source::Unreadable;

/// Parse `ethtool -S IFACE` output.
pub fn parse_ethtool_stats(interface: &str, text: &str) -> Option<Allowance> {
    let value = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key)
                .then(|| v.trim().parse::<u64>().ok())
                .flatten()
        })
    };
    Some(Allowance {
        interface: interface.to_string(),
        exceeded: value("conntrack_allowance_exceeded")?,
        available: value("conntrack_allowance_available"),
    })
}

/// Interfaces whose driver is `ena`, read with `ethtool -S`.
pub fn ena_allowances(host: &crate::Host) -> (Vec<Allowance>, Vec<Unreadable>) {
    let root = host.root();
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let Ok(dir) = std::fs::read_dir(root.path("/sys/class/net")) else {
        return (found, errors);
    };
    for e in dir.flatten() {
        let iface = e.file_name().to_string_lossy().into_owned();
        let driver = std::fs::read_link(e.path().join("device/driver"))
            .ok()
            .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()));
        if driver.as_deref() != Some("ena") {
            continue;
        }
        if !host.on_path("ethtool") {
            errors.push(Unreadable {
                what: format!("ethtool -S {iface}"),
                why: crate::source::Why::NotPresent,
            });
            continue;
        }
        match host.run("ethtool", &["-S", &iface], "CAP_NET_ADMIN") {
            Ok(text) => found.extend(parse_ethtool_stats(&iface, &text)),
            Err(e) => errors.push(e),
        }
    }
    (found, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ena_stats() {
        let text = "NIC statistics:\n     tx_timeout: 0\n     bw_in_allowance_exceeded: 0\n     conntrack_allowance_exceeded: 1234\n     conntrack_allowance_available: 99\n";
        assert_eq!(
            parse_ethtool_stats("eth0", text),
            Some(Allowance {
                interface: "eth0".into(),
                exceeded: 1234,
                available: Some(99)
            })
        );
        assert_eq!(
            parse_ethtool_stats("eth0", "NIC statistics:\n rx: 1\n"),
            None
        );
    }
}
