//! What in the firewall makes conntrack necessary: nftables rules using
//! `ct` expressions or NAT statements (`nft -j list ruleset`), iptables
//! rules using the state/conntrack matches or NAT targets (`iptables-save`
//! output, legacy and nf_tables backends alike), and NOTRACK exemptions.
//! Pure: text in, rule descriptions out.

use serde_json::Value;

/// Rules found, each described as `family table chain: what`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuleUse {
    /// Rules matching on conntrack state (stateful filtering).
    pub stateful: Vec<String>,
    /// NAT rules (SNAT, DNAT, masquerade, redirect): need conntrack to work.
    pub nat: Vec<String>,
    /// NOTRACK / CT --notrack rules: traffic already exempted.
    pub notrack: Vec<String>,
    /// Total rules read.
    pub rules: usize,
}

impl RuleUse {
    pub fn needs_conntrack(&self) -> bool {
        !self.stateful.is_empty() || !self.nat.is_empty()
    }

    pub fn extend(&mut self, other: RuleUse) {
        self.stateful.extend(other.stateful);
        self.nat.extend(other.nat);
        self.notrack.extend(other.notrack);
        self.rules += other.rules;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nft JSON: {0}")]
pub struct NftError(String);

fn walk<'a>(v: &'a Value, found: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                found.push(k.as_str());
                walk(child, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, found)),
        _ => {}
    }
}

/// Analyse `nft -j list ruleset`.
pub fn parse_nft_json(text: &str) -> Result<RuleUse, NftError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| NftError(e.to_string()))?;
    let items = doc["nftables"]
        .as_array()
        .ok_or_else(|| NftError("no \"nftables\" array".into()))?;
    let mut out = RuleUse::default();
    for item in items {
        let Some(rule) = item.get("rule") else {
            continue;
        };
        out.rules += 1;
        let place = format!(
            "{} {} {}",
            rule["family"].as_str().unwrap_or("?"),
            rule["table"].as_str().unwrap_or("?"),
            rule["chain"].as_str().unwrap_or("?")
        );
        let mut keys = Vec::new();
        walk(&rule["expr"], &mut keys);
        if keys.contains(&"notrack") {
            out.notrack.push(format!("{place}: notrack"));
        }
        if let Some(k) = keys
            .iter()
            .find(|k| matches!(**k, "snat" | "dnat" | "masquerade" | "redirect"))
        {
            out.nat.push(format!("{place}: {k}"));
        }
        if keys.contains(&"ct") && !keys.contains(&"notrack") {
            out.stateful.push(format!("{place}: ct expression"));
        }
    }
    Ok(out)
}

/// Analyse `iptables-save` / `ip6tables-save` output.
pub fn parse_iptables_save(text: &str, tool: &str) -> RuleUse {
    let mut out = RuleUse::default();
    let mut table = "";
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.trim();
            continue;
        }
        let Some(rule) = line.strip_prefix("-A ") else {
            continue;
        };
        out.rules += 1;
        let chain = rule.split_whitespace().next().unwrap_or("?");
        let place = format!("{tool} {table} {chain}");
        let words: Vec<&str> = rule.split_whitespace().collect();
        let target = words
            .iter()
            .position(|w| *w == "-j")
            .and_then(|i| words.get(i + 1))
            .copied()
            .unwrap_or("");
        if target == "NOTRACK" || (target == "CT" && words.contains(&"--notrack")) {
            out.notrack.push(format!("{place}: {}", rule.trim()));
        } else if matches!(
            target,
            "SNAT" | "DNAT" | "MASQUERADE" | "REDIRECT" | "NETMAP"
        ) {
            out.nat.push(format!("{place}: {}", rule.trim()));
        } else if words
            .windows(2)
            .any(|w| w[0] == "-m" && matches!(w[1], "state" | "conntrack"))
        {
            out.stateful.push(format!("{place}: {}", rule.trim()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");

    fn read(name: &str) -> String {
        std::fs::read_to_string(format!("{FX}{name}")).expect("fixture")
    }

    #[test]
    fn nft_stateful_nat_notrack() {
        let r = parse_nft_json(&read("nft-stateful-nat.json")).expect("parses");
        assert_eq!(r.rules, 6);
        assert_eq!(r.stateful.len(), 2, "{r:?}");
        assert_eq!(
            r.nat,
            vec!["ip nat postrouting: masquerade", "ip nat prerouting: dnat"]
        );
        assert_eq!(r.notrack, vec!["inet raw pre: notrack"]);
        assert!(r.needs_conntrack());
    }

    #[test]
    fn nft_stateless() {
        let r = parse_nft_json(&read("nft-stateless.json")).expect("parses");
        assert_eq!((r.rules, r.needs_conntrack()), (1, false));
        assert!(parse_nft_json("{").is_err());
        assert!(parse_nft_json("{\"x\": 1}").is_err());
    }

    #[test]
    fn iptables_both_backends() {
        let r = parse_iptables_save(&read("iptables-save-nft.txt"), "iptables");
        assert_eq!(r.rules, 4);
        assert_eq!(r.stateful.len(), 2);
        assert_eq!(
            r.nat,
            vec!["iptables nat POSTROUTING: POSTROUTING -o eth0 -j MASQUERADE"]
        );
        assert_eq!(r.notrack.len(), 1);
        let r = parse_iptables_save(&read("iptables-legacy-save.txt"), "iptables-legacy");
        assert_eq!((r.rules, r.needs_conntrack()), (1, false));
    }
}
