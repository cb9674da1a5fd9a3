//! What in the firewall makes conntrack necessary: nftables rules using
//! `ct` expressions or NAT statements (`nft -j list ruleset`), iptables
//! rules using the conntrack-family matches or NAT targets (`iptables-save`
//! output, legacy and nf_tables backends alike), nft `ct helper` / `ct
//! timeout` / `ct expectation` / `synproxy` objects, and NOTRACK exemptions, telling
//! an nft `notrack` that runs too late to do anything from one that works.
//! Rules that iptables-nft made show in `nft -j` as bare `xt` statements
//! (name only); they are described in their iptables form from
//! `iptables-nft-save` when it was read (issue 7 section 4).
//! Pure: text in, rule descriptions out.

use std::collections::BTreeSet;

use serde_json::Value;

/// Rules found, each described as `family table chain: what` (nft) or as
/// the iptables command that would add it (`iptables-nft -t nat -A ...`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuleUse {
    /// Rules matching on conntrack state (stateful filtering) or otherwise
    /// using the entry (connmark, connlimit, helpers, zones).
    pub stateful: Vec<String>,
    /// NAT rules (SNAT, DNAT, masquerade, redirect, netmap): need conntrack.
    pub nat: Vec<String>,
    /// NOTRACK / CT --notrack rules: traffic already exempted.
    pub notrack: Vec<String>,
    /// nft `notrack` rules that do nothing: every base chain reaching them
    /// runs after conntrack (KERNEL.md section 10), so the traffic is
    /// tracked all the same.
    pub notrack_ineffective: Vec<String>,
    /// nft objects that turn conntrack on without any rule using them
    /// (`ct helper`, `ct timeout`, `ct expectation`, `synproxy`: their object
    /// init calls nf_ct_netns_get; measured: a namespace holding only one
    /// tracks its loopback traffic).
    pub objects: Vec<String>,
    /// Total rules read.
    pub rules: usize,
}

impl RuleUse {
    pub fn needs_conntrack(&self) -> bool {
        !self.stateful.is_empty() || !self.nat.is_empty() || !self.objects.is_empty()
    }

    pub fn extend(&mut self, other: RuleUse) {
        self.stateful.extend(other.stateful);
        self.nat.extend(other.nat);
        self.notrack.extend(other.notrack);
        self.notrack_ineffective.extend(other.notrack_ineffective);
        self.objects.extend(other.objects);
        self.rules += other.rules;
    }

    fn add(&mut self, class: Class, what: String) {
        self.rules += 1;
        match class {
            Class::Nat => self.nat.push(what),
            Class::Stateful => self.stateful.push(what),
            Class::Notrack => self.notrack.push(what),
            Class::NotrackTooLate => self.notrack_ineffective.push(what),
            Class::Neutral => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nft JSON: {0}")]
pub struct NftError(String);

/// What one rule means for conntrack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Nat,
    Stateful,
    Notrack,
    /// An nft `notrack` only reached from base chains that run after
    /// conntrack: it does nothing.
    NotrackTooLate,
    /// Needs nothing: stateless, or the `ct state untracked accept`
    /// companion of a NOTRACK rule (it matches only packets conntrack
    /// skipped, so it is part of the exemption, not stateful filtering).
    Neutral,
}

/// xt targets (iptables-nft's compat statements) that make NAT bindings.
const XT_NAT: &[&str] = &["SNAT", "DNAT", "MASQUERADE", "REDIRECT", "NETMAP"];
/// xt matches that read the conntrack entry (`state` is implemented by the
/// `conntrack` match on iptables-nft, which shows it as such).
const XT_CT_MATCHES: &[&str] = &[
    "conntrack",
    "state",
    "connmark",
    "connlimit",
    "connbytes",
    "connlabel",
    "helper",
    // xt_cluster.c checkentry calls nf_ct_netns_get: it hashes the entry.
    "cluster",
];
/// xt targets that write to the conntrack entry or need one.
const XT_CT_TARGETS: &[&str] = &["CONNMARK", "CONNSECMARK", "SYNPROXY"];

/// One nft rule, with where it lives and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NftRule {
    family: String,
    table: String,
    chain: String,
    class: Class,
    what: String,
    xt: bool,
}

/// nft object kinds whose creation turns conntrack on in the namespace.
/// nft_synproxy.c's object init takes conntrack like its statement does
/// (measured: a namespace holding only `synproxy sp { mss 1460; wscale 7; }`
/// tracks its loopback traffic).
const NFT_CT_OBJECTS: &[&str] = &["ct helper", "ct timeout", "ct expectation", "synproxy"];

/// `nft -j list ruleset`, parsed into what each rule means for conntrack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NftRuleset {
    rules: Vec<NftRule>,
    /// `family table: ct helper NAME` for each conntrack object.
    objects: Vec<String>,
}

/// Conntrack's own hook priority (NF_IP_PRI_CONNTRACK, -200): a `notrack`
/// must run before it, at a lower number (`priority raw` is -300).
const CONNTRACK_PRIO: i64 = -200;

/// Where a base chain hooks in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hook {
    hook: String,
    prio: i64,
}

impl Hook {
    /// A `notrack` here runs before conntrack looks at the packet. The
    /// entry is made at prerouting and output (priority -200); ingress
    /// (netdev, inet) runs before prerouting; input, forward and
    /// postrouting see packets that are tracked already.
    fn before_conntrack(&self) -> bool {
        match self.hook.as_str() {
            "ingress" => true,
            "prerouting" | "output" => self.prio < CONNTRACK_PRIO,
            _ => false,
        }
    }

    fn describe(&self) -> String {
        format!("hook {} priority {}", self.hook, self.prio)
    }
}

/// For each chain (family, table, name): the base chains that reach it,
/// itself included, through `jump` / `goto` in rules (depth-first).
/// `None` when something the walk cannot follow (a named verdict map)
/// may jump to it, or no base chain reaches it: unknown.
fn reaching_hooks(
    items: &[Value],
) -> std::collections::BTreeMap<(String, String, String), Option<Vec<Hook>>> {
    use std::collections::BTreeMap;
    type Key = (String, String, String);
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let mut hooks: BTreeMap<Key, Option<Hook>> = BTreeMap::new();
    let mut edges: BTreeMap<Key, Vec<Key>> = BTreeMap::new();
    let mut unknown: BTreeSet<Key> = BTreeSet::new();
    let targets = |v: &Value| {
        let mut keys = Vec::new();
        walk(v, &mut keys);
        keys.into_iter()
            .filter(|(k, _)| matches!(*k, "jump" | "goto"))
            .filter_map(|(_, t)| t["target"].as_str().map(str::to_string))
            .collect::<Vec<_>>()
    };
    for item in items {
        if let Some(c) = item.get("chain") {
            let key = (s(&c["family"]), s(&c["table"]), s(&c["name"]));
            let hook = match (c["hook"].as_str(), c["prio"].as_i64()) {
                (Some(h), Some(p)) => Some(Hook {
                    hook: h.to_string(),
                    prio: p,
                }),
                _ => None,
            };
            hooks.insert(key, hook);
        } else if let Some(r) = item.get("rule") {
            let from = (s(&r["family"]), s(&r["table"]), s(&r["chain"]));
            for t in targets(&r["expr"]) {
                let to = (from.0.clone(), from.1.clone(), t);
                edges.entry(from.clone()).or_default().push(to);
            }
        } else if let Some(obj) = item.as_object() {
            // Verdict maps and sets can hold `jump` too; which chain uses
            // them is not followed: their targets stay unknown.
            for v in obj.values() {
                for t in targets(v) {
                    unknown.insert((s(&v["family"]), s(&v["table"]), t));
                }
            }
        }
    }
    let mut reached: BTreeMap<Key, Vec<Hook>> = BTreeMap::new();
    for (base, hook) in &hooks {
        let Some(hook) = hook else { continue };
        let mut seen = BTreeSet::new();
        let mut stack = vec![base.clone()];
        while let Some(k) = stack.pop() {
            if !seen.insert(k.clone()) {
                continue;
            }
            reached.entry(k.clone()).or_default().push(hook.clone());
            stack.extend(edges.get(&k).into_iter().flatten().cloned());
        }
    }
    hooks
        .keys()
        .map(|k| {
            let r = reached.get(k).filter(|_| !unknown.contains(k)).cloned();
            (k.clone(), r)
        })
        .collect()
}

/// One `iptables-nft-save` / `ip6tables-nft-save` output and the nft
/// family its tables live in (`ip` or `ip6`).
#[derive(Debug, Clone, Copy)]
pub struct IptablesSave<'a> {
    pub family: &'a str,
    /// The program that printed it: names the command in descriptions.
    pub tool: &'a str,
    pub text: &'a str,
}

fn walk<'a>(v: &'a Value, found: &mut Vec<(&'a str, &'a Value)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                found.push((k.as_str(), child));
                walk(child, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, found)),
        _ => {}
    }
}

/// `ct state untracked` (alone, matched positively): the NOTRACK companion.
fn is_untracked_match(v: &Value) -> bool {
    let m = &v["match"];
    let positive = matches!(m["op"].as_str(), Some("==" | "in"));
    let on_state = m["left"]["ct"]["key"].as_str() == Some("state");
    let only_untracked = match &m["right"] {
        Value::String(s) => s == "untracked",
        Value::Array(a) => a.len() == 1 && a[0].as_str() == Some("untracked"),
        _ => false,
    };
    positive && on_state && only_untracked
}

fn classify_nft(expr: &Value) -> (Class, String, bool) {
    let mut keys = Vec::new();
    walk(expr, &mut keys);
    let xt: Vec<(&str, &str)> = keys
        .iter()
        .filter(|(k, _)| *k == "xt")
        .map(|(_, v)| {
            (
                v["type"].as_str().unwrap_or("?"),
                v["name"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    let has_xt = !xt.is_empty();
    let xt_named = |kind: &str, names: &[&str]| {
        xt.iter()
            .find(|(t, n)| *t == kind && names.contains(n))
            .map(|(t, n)| format!("xt {t} {n}"))
    };
    if keys.iter().any(|(k, _)| *k == "notrack") {
        return (Class::Notrack, "notrack".into(), has_xt);
    }
    // NOTRACK and CT --notrack are both the CT target on iptables-nft; so is
    // CT --helper/--zone, which only the iptables form tells apart.
    if let Some(w) = xt_named("target", &["NOTRACK", "CT"]) {
        return (
            Class::Notrack,
            format!("{w} (NOTRACK, or CT --helper/--zone: see iptables-nft-save)"),
            true,
        );
    }
    if let Some((k, _)) = keys
        .iter()
        .find(|(k, _)| matches!(*k, "snat" | "dnat" | "masquerade" | "redirect"))
    {
        return (Class::Nat, (*k).to_string(), has_xt);
    }
    if let Some(w) = xt_named("target", XT_NAT) {
        return (Class::Nat, w, true);
    }
    if let Some(w) = xt_named("match", XT_CT_MATCHES).or_else(|| xt_named("target", XT_CT_TARGETS))
    {
        return (Class::Stateful, w, true);
    }
    // Statements that take conntrack by themselves: `synproxy`
    // (nft_synproxy.c), `flow add @ft` (nft_flow_offload.c), and the `ct
    // helper` / `ct timeout` / `ct expectation` / `ct count` statements
    // (nft_ct.c, nft_connlimit.c), all calling nf_ct_netns_get.
    if let Some((k, _)) = keys
        .iter()
        .find(|(k, _)| k.starts_with("ct ") || matches!(*k, "flow" | "synproxy"))
    {
        let what = if *k == "flow" { "flow offload" } else { k };
        return (Class::Stateful, what.to_string(), has_xt);
    }
    let uses_ct = keys.iter().any(|(k, _)| *k == "ct");
    if uses_ct {
        let ct_uses = keys.iter().filter(|(k, _)| *k == "ct").count();
        let untracked = match expr {
            Value::Array(items) => items.iter().filter(|i| is_untracked_match(i)).count(),
            _ => 0,
        };
        if ct_uses == untracked {
            return (Class::Neutral, "ct state untracked".into(), has_xt);
        }
        return (Class::Stateful, "ct expression".into(), has_xt);
    }
    (Class::Neutral, String::new(), has_xt)
}

/// Analyse `nft -j list ruleset` on its own (xt statements by name only).
pub fn parse_nft_json(text: &str) -> Result<RuleUse, NftError> {
    read_nft_json(text).map(|r| r.rule_use())
}

/// Parse `nft -j list ruleset`, keeping where each rule lives so that
/// iptables-nft's tables can be described from their save output.
pub fn read_nft_json(text: &str) -> Result<NftRuleset, NftError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| NftError(e.to_string()))?;
    let items = doc["nftables"]
        .as_array()
        .ok_or_else(|| NftError("no \"nftables\" array".into()))?;
    let reach = reaching_hooks(items);
    let rules = items
        .iter()
        .filter_map(|item| item.get("rule"))
        .map(|rule| {
            let name = |k: &str| rule[k].as_str().unwrap_or("?").to_string();
            let (mut class, mut what, xt) = classify_nft(&rule["expr"]);
            // KERNEL.md section 10: a notrack after conntrack does nothing.
            // Only said when every base chain reaching the rule is known.
            if class == Class::Notrack {
                let key = (name("family"), name("table"), name("chain"));
                if let Some(Some(hooks)) = reach.get(&key)
                    && !hooks.is_empty()
                    && !hooks.iter().any(Hook::before_conntrack)
                {
                    class = Class::NotrackTooLate;
                    let from: Vec<String> = hooks.iter().map(Hook::describe).collect();
                    what = format!(
                        "{what} in a chain run at {}, after conntrack (priority -200): does nothing",
                        from.join(", ")
                    );
                }
            }
            NftRule {
                family: name("family"),
                table: name("table"),
                chain: name("chain"),
                class,
                what,
                xt,
            }
        })
        .collect();
    let objects = items
        .iter()
        .filter_map(|item| item.as_object())
        .flat_map(|obj| obj.iter())
        .filter(|(k, _)| NFT_CT_OBJECTS.contains(&k.as_str()))
        .map(|(k, o)| {
            let name = |f: &str| o[f].as_str().unwrap_or("?").to_string();
            format!("{} {}: {k} {}", name("family"), name("table"), name("name"))
        })
        .collect();
    Ok(NftRuleset { rules, objects })
}

impl NftRuleset {
    /// Some rule holds an xt statement: iptables-nft made it, and only
    /// `iptables-nft-save` can say what it does in full.
    pub fn has_xt(&self) -> bool {
        self.rules.iter().any(|r| r.xt)
    }

    /// What the rules need, from nft's view alone.
    pub fn rule_use(&self) -> RuleUse {
        self.with_iptables(&[])
    }

    /// What the rules need, taking the rules of every table that an
    /// iptables-nft save lists from that save (their iptables form) and
    /// all other rules from nft, so no rule is counted twice.
    pub fn with_iptables(&self, saves: &[IptablesSave]) -> RuleUse {
        let covered: BTreeSet<(&str, &str)> = saves
            .iter()
            .flat_map(|s| save_tables(s.text).map(move |t| (s.family, t)))
            .collect();
        let mut out = RuleUse {
            objects: self.objects.clone(),
            ..RuleUse::default()
        };
        for r in &self.rules {
            if covered.contains(&(r.family.as_str(), r.table.as_str())) {
                continue;
            }
            let place = format!("{} {} {}", r.family, r.table, r.chain);
            out.add(r.class, format!("{place}: {}", r.what));
        }
        for s in saves {
            out.extend(parse_iptables_save(s.text, s.tool));
        }
        out
    }
}

/// The tables an `iptables-save` output lists (`*nat`, ...).
fn save_tables(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter_map(|l| l.strip_prefix('*'))
        .map(str::trim)
}

/// The value after `flag` in an iptables rule, and whether `!` negates it.
fn flag_value<'a>(words: &[&'a str], flag: &str) -> Option<(&'a str, bool)> {
    let i = words.iter().position(|w| *w == flag)?;
    let negated = i > 0 && words[i - 1] == "!";
    words.get(i + 1).map(|v| (*v, negated))
}

fn classify_iptables(words: &[&str]) -> Class {
    let target = flag_value(words, "-j").map_or("", |(t, _)| t);
    let has_match = |names: &[&str]| {
        words
            .windows(2)
            .any(|w| w[0] == "-m" && names.contains(&w[1]))
    };
    if target == "NOTRACK" || (target == "CT" && words.contains(&"--notrack")) {
        return Class::Notrack;
    }
    if XT_NAT.contains(&target) {
        return Class::Nat;
    }
    // CT --helper / --zone / --timeout: the entry gets a helper, zone or
    // timeout policy, so it needs conntrack.
    if XT_CT_TARGETS.contains(&target) || target == "CT" {
        return Class::Stateful;
    }
    if !has_match(XT_CT_MATCHES) {
        return Class::Neutral;
    }
    // `-m conntrack --ctstate UNTRACKED -j ACCEPT` (or `-m state`) alone is
    // the NOTRACK companion: it matches only what conntrack skipped.
    let only_untracked =
        |flag| flag_value(words, flag).is_some_and(|(v, negated)| v == "UNTRACKED" && !negated);
    let other_ct = words
        .windows(2)
        .filter(|w| w[0] == "-m" && XT_CT_MATCHES.contains(&w[1]))
        .count();
    if other_ct == 1 && (only_untracked("--ctstate") || only_untracked("--state")) {
        return Class::Neutral;
    }
    Class::Stateful
}

/// Analyse `iptables-save` / `ip6tables-save` output (any backend); each
/// rule is described as the command that adds it, named after `tool`
/// without `-save` (`iptables-nft -t nat -A POSTROUTING ... -j MASQUERADE`).
pub fn parse_iptables_save(text: &str, tool: &str) -> RuleUse {
    let mut out = RuleUse::default();
    let command = tool.strip_suffix("-save").unwrap_or(tool);
    let mut table = "";
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.trim();
            continue;
        }
        let Some(rule) = line.strip_prefix("-A ") else {
            continue;
        };
        let words: Vec<&str> = rule.split_whitespace().collect();
        let t = if table == "filter" {
            String::new()
        } else {
            format!(" -t {table}")
        };
        out.add(
            classify_iptables(&words),
            format!("{command}{t} -A {}", rule.trim()),
        );
    }
    out
}

/// Who wrote the rules that need conntrack, told by the names they put in
/// them (chains, bridges, tables, comments), as each writes them:
/// Docker's `DOCKER*` chains and `docker0`; netavark's `NETAVARK*` chains
/// and `netavark` table (podman 4+); CNI plugins' `CNI-`; kube-proxy's
/// `KUBE-`; Calico's `cali-`; Cilium's `CILIUM_`; libvirt's `LIBVIRT_`;
/// ufw's `ufw-`; firewalld's tables. First marker wins; a rule with none
/// is nobody's (a base-chain MASQUERADE of a user-defined bridge).
const WRITERS: &[(&str, &[&str])] = &[
    ("Docker", &["DOCKER", "docker0"]),
    ("Podman (netavark)", &["NETAVARK", "netavark", "podman"]),
    ("CNI plugins", &["CNI-"]),
    ("kube-proxy", &["KUBE-"]),
    ("Calico", &["cali-"]),
    ("Cilium", &["CILIUM_", "cilium"]),
    ("libvirt", &["LIBVIRT_"]),
    ("ufw", &["ufw-", "ufw6-"]),
    ("firewalld", &["firewalld"]),
];

/// The writers of the rules that need conntrack (NAT, stateful, objects),
/// with how many rules each wrote, most first.
pub fn writers(r: &RuleUse) -> Vec<(&'static str, usize)> {
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for rule in r.nat.iter().chain(&r.stateful).chain(&r.objects) {
        let Some(w) = WRITERS
            .iter()
            .find(|(_, marks)| marks.iter().any(|m| rule.contains(m)))
        else {
            continue;
        };
        match counts.iter_mut().find(|c| c.0 == w.0) {
            Some(c) => c.1 += 1,
            None => counts.push((w.0, 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
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
        let r = parse_iptables_save(&read("iptables-save-nft.txt"), "iptables-save");
        assert_eq!(r.rules, 4);
        assert_eq!(r.stateful.len(), 2);
        assert_eq!(
            r.nat,
            vec!["iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE"]
        );
        assert_eq!(
            r.notrack,
            vec!["iptables -t raw -A PREROUTING -p udp -m udp --dport 53 -j CT --notrack"]
        );
        let r = parse_iptables_save(&read("iptables-legacy-save.txt"), "iptables-legacy-save");
        assert_eq!((r.rules, r.needs_conntrack()), (1, false));
    }

    /// Issue 7 section 4: iptables-nft rules show in `nft -j` as bare xt
    /// statements; before, none of them counted.
    #[test]
    fn xt_statements_of_iptables_nft_need_conntrack() {
        let r = parse_nft_json(&read("nft-iptables-nft.json")).expect("parses");
        assert_eq!(r.rules, 21);
        assert_eq!(
            r.nat,
            vec![
                "ip nat POSTROUTING: xt target MASQUERADE",
                "ip nat POSTROUTING: xt target SNAT",
                "ip nat PREROUTING: xt target DNAT",
                "ip nat PREROUTING: xt target NETMAP",
                "ip nat OUTPUT: xt target REDIRECT",
                "ip6 nat POSTROUTING: xt target MASQUERADE",
            ]
        );
        assert_eq!(
            r.stateful,
            vec![
                "ip filter FORWARD: xt match conntrack",
                "ip filter INPUT: xt match conntrack",
                // `--ctstate UNTRACKED`: nft -j cannot tell; the save can.
                "ip filter INPUT: xt match conntrack",
                "ip filter INPUT: xt match connlimit",
                "ip filter INPUT: xt match connmark",
                "ip filter INPUT: xt match helper",
                "ip mangle PREROUTING: xt target CONNMARK",
                "ip6 filter FORWARD: xt match conntrack",
            ]
        );
        assert_eq!(r.notrack.len(), 4, "{:?}", r.notrack);
        assert_eq!(r.notrack[3], "inet exempt pre: notrack");
        assert!(r.notrack[0].starts_with("ip raw PREROUTING: xt target CT"));
    }

    /// With the saves read, iptables-nft's tables are described as the
    /// iptables commands that made them, each rule once.
    #[test]
    fn xt_rules_are_described_in_their_iptables_form() {
        let nft = read_nft_json(&read("nft-iptables-nft.json")).expect("parses");
        assert!(nft.has_xt());
        let v4 = read("iptables-nft-save.txt");
        let v6 = read("ip6tables-nft-save.txt");
        let saves = [
            IptablesSave {
                family: "ip",
                tool: "iptables-nft-save",
                text: &v4,
            },
            IptablesSave {
                family: "ip6",
                tool: "ip6tables-nft-save",
                text: &v6,
            },
        ];
        let r = nft.with_iptables(&saves);
        assert_eq!(r.rules, 21);
        assert_eq!(
            r.nat,
            vec![
                "iptables-nft -t nat -A PREROUTING -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
                "iptables-nft -t nat -A PREROUTING -d 198.51.100.0/24 -j NETMAP --to 10.9.0.0/24",
                "iptables-nft -t nat -A OUTPUT -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128",
                "iptables-nft -t nat -A POSTROUTING -s 172.17.0.0/16 -j MASQUERADE",
                "iptables-nft -t nat -A POSTROUTING -o eth0 -j SNAT --to-source 192.0.2.1",
                "ip6tables-nft -t nat -A POSTROUTING -s fd00::/64 -j MASQUERADE",
            ]
        );
        assert_eq!(
            r.stateful,
            vec![
                "iptables-nft -t mangle -A PREROUTING -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff",
                "iptables-nft -t raw -A PREROUTING -p tcp -m tcp --dport 21 -j CT --helper ftp",
                "iptables-nft -A INPUT -m state --state ESTABLISHED -j ACCEPT",
                "iptables-nft -A INPUT -p tcp -m tcp --dport 22 -m connlimit --connlimit-above 10 --connlimit-mask 32 --connlimit-saddr -j REJECT --reject-with icmp-port-unreachable",
                "iptables-nft -A INPUT -m connmark --mark 0x1 -j ACCEPT",
                "iptables-nft -A INPUT -m helper --helper ftp -j ACCEPT",
                "iptables-nft -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                "ip6tables-nft -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            ]
        );
        assert_eq!(
            r.notrack,
            vec![
                "inet exempt pre: notrack",
                "iptables-nft -t raw -A PREROUTING -p udp -m udp --dport 53 -j CT --notrack",
                "iptables-nft -t raw -A OUTPUT -p udp -m udp --sport 53 -j NOTRACK",
            ]
        );
    }

    /// `ct state untracked accept` (and its iptables form) only accepts what
    /// NOTRACK exempted: not a reason conntrack is needed.
    #[test]
    fn untracked_accept_is_an_exemption_not_stateful_filtering() {
        let r = parse_nft_json(&read("nft-iptables-nft.json")).expect("parses");
        assert!(
            !r.stateful.iter().any(|s| s.starts_with("inet exempt")),
            "{:?}",
            r.stateful
        );
        let only = |right: &str| {
            format!(
                r#"{{"nftables": [{{"rule": {{"family": "inet", "table": "t", "chain": "c", "expr": [{{"match": {{"op": "in", "left": {{"ct": {{"key": "state"}}}}, "right": {right}}}}}, {{"accept": null}}]}}}}]}}"#
            )
        };
        let r = parse_nft_json(&only(r#""untracked""#)).expect("parses");
        assert_eq!((r.rules, r.needs_conntrack()), (1, false));
        let r = parse_nft_json(&only(r#"["established", "untracked"]"#)).expect("parses");
        assert_eq!(r.stateful, vec!["inet t c: ct expression"]);
        let save = "*filter\n-A INPUT -m conntrack --ctstate UNTRACKED -j ACCEPT\n-A INPUT -m state --state UNTRACKED -j ACCEPT\n-A INPUT -m conntrack ! --ctstate UNTRACKED -j DROP\nCOMMIT\n";
        let r = parse_iptables_save(save, "iptables-nft-save");
        assert_eq!(r.rules, 3);
        assert_eq!(
            r.stateful,
            vec!["iptables-nft -A INPUT -m conntrack ! --ctstate UNTRACKED -j DROP"]
        );
    }

    /// KERNEL.md section 10: `notrack` in a chain at priority >= -200, or
    /// in a regular chain only reached from one, runs after conntrack made
    /// the entry and does nothing; before, it counted as an exemption.
    #[test]
    fn notrack_after_conntrack_priority_is_ineffective_not_an_exemption() {
        let r = parse_nft_json(&read("nft-ct-objects-notrack-prio.json")).expect("parses");
        assert_eq!(
            r.notrack,
            vec!["ip t rawpre: notrack", "ip t out2: notrack",]
        );
        assert_eq!(
            r.notrack_ineffective,
            vec![
                "ip t out: notrack in a chain run at hook output priority 0, after conntrack (priority -200): does nothing",
                "ip t out3: notrack in a chain run at hook output priority -200, after conntrack (priority -200): does nothing",
                "ip t nochain: notrack in a chain run at hook forward priority 0, after conntrack (priority -200): does nothing",
            ]
        );
        // A regular chain no base chain reaches, or one a verdict map may
        // jump to, is not judged.
        let doc = |extra: &str| {
            format!(
                r#"{{"nftables": [{{"chain": {{"family": "ip", "table": "t", "name": "c"}}}}{extra}, {{"rule": {{"family": "ip", "table": "t", "chain": "c", "expr": [{{"notrack": null}}]}}}}]}}"#
            )
        };
        let r = parse_nft_json(&doc("")).expect("parses");
        assert_eq!((r.notrack.len(), r.notrack_ineffective.len()), (1, 0));
        let vmap = r#", {"chain": {"family": "ip", "table": "t", "name": "b", "hook": "output", "prio": 0}}, {"rule": {"family": "ip", "table": "t", "chain": "b", "expr": [{"jump": {"target": "c"}}]}}"#;
        let r = parse_nft_json(&doc(vmap)).expect("parses");
        assert_eq!((r.notrack.len(), r.notrack_ineffective.len()), (0, 1));
        let map = r#", {"map": {"family": "ip", "table": "t", "name": "m", "elem": [[1, {"jump": {"target": "c"}}]]}}"#;
        let r = parse_nft_json(&doc(&format!("{vmap}{map}"))).expect("parses");
        assert_eq!((r.notrack.len(), r.notrack_ineffective.len()), (1, 0));
        // A notrack that does nothing exempts nothing, and needs nothing.
        let r = parse_nft_json(&doc(vmap)).expect("parses");
        assert!(!r.needs_conntrack());
    }

    /// nft `ct helper` / `ct timeout` / `ct expectation` objects turn
    /// conntrack on by existing; `ct helper set`, `synproxy`, `ct count`,
    /// `ct original`, `ct timeout set`, `ct expectation set`, `flow add`
    /// and iptables' `-m cluster` need it too. Before, the objects,
    /// `synproxy`, `flow add` and `-m cluster` were missed.
    #[test]
    fn ct_objects_synproxy_and_cluster_need_conntrack() {
        let r = parse_nft_json(&read("nft-ct-objects-notrack-prio.json")).expect("parses");
        assert_eq!(
            r.objects,
            vec![
                "ip t: ct helper ftph",
                "ip t: ct timeout tmo",
                "ip t: ct expectation ex",
            ]
        );
        assert_eq!(
            r.stateful,
            vec![
                "ip t fw: ct helper",
                "ip t fw: synproxy",
                "ip t fw: ct count",
                "ip t fw: ct expression",
                "ip t fw: ct timeout",
                "ip t fw: ct expectation",
                "ip filter INPUT: xt match cluster",
            ]
        );
        let only_objects = r#"{"nftables": [{"ct helper": {"family": "ip", "name": "h", "table": "t", "type": "ftp"}}]}"#;
        let r = parse_nft_json(only_objects).expect("parses");
        assert_eq!((r.rules, r.needs_conntrack()), (0, true));
        // `nft -j list ruleset` after `table ip x { synproxy sp { mss 1460;
        // wscale 7; } }`, nothing else.
        let synproxy_object = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "x", "handle": 1}}, {"synproxy": {"family": "ip", "name": "sp", "table": "x", "handle": 1, "mss": 1460, "wscale": 7}}]}"#;
        let r = parse_nft_json(synproxy_object).expect("parses");
        assert_eq!(r.objects, vec!["ip x: synproxy sp"]);
        let r = parse_iptables_save(&read("iptables-nft-save-cluster.txt"), "iptables-nft-save");
        assert_eq!(
            r.stateful,
            vec![
                "iptables-nft -A INPUT -m cluster --cluster-local-nodemask 0x00000001 --cluster-total-nodes 2 --cluster-hash-seed 0xdeadbeef -j ACCEPT"
            ]
        );
        // `flow add @ft` (flowtable offload: nft_flow_offload_init takes
        // conntrack), as libnftables-json(5) spells it: this kernel has no
        // CONFIG_NF_FLOW_TABLE, so it cannot be captured here.
        let flow = r#"{"nftables": [{"rule": {"family": "ip", "table": "t", "chain": "c", "expr": [{"flow": {"op": "add", "flowtable": "@ft"}}]}}]}"#;
        assert!(parse_nft_json(flow).expect("parses").needs_conntrack());
    }

    /// Bad input gives an error or a partial answer, never a panic.
    #[test]
    fn truncated_and_odd_input_never_panics() {
        let json = read("nft-iptables-nft.json");
        for end in (0..json.len()).filter(|i| json.is_char_boundary(*i)) {
            let _ = read_nft_json(&json[..end]);
        }
        let odd = r#"{"nftables": [{"rule": {"expr": [{"xt": 1}, {"match": {"left": {"ct": 2}, "right": [3]}}, {"ct": null}]}}, {"rule": 5}]}"#;
        let r = parse_nft_json(odd).expect("parses");
        assert_eq!(r.rules, 2);
        let save = read("iptables-nft-save.txt");
        for end in (0..save.len()).filter(|i| save.is_char_boundary(*i)) {
            let _ = parse_iptables_save(&save[..end], "iptables-nft-save");
        }
        for line in [
            "-A",
            "-A X -j",
            "-A X ! --ctstate",
            "-A X -m",
            "-A X -m conntrack --ctstate",
            "*",
        ] {
            let _ = parse_iptables_save(line, "t");
        }
    }

    /// Captured with `iptables-save` in a namespace running dockerd 20.10
    /// (Debian docker.io, a container with `-p 8080:80`) and rootful
    /// podman 4.3 with netavark 1.4 (iptables driver), kernel 6.18.
    #[test]
    fn writers_of_real_docker_and_netavark_rules() {
        let save = include_str!("../tests/fixtures/iptables-docker-podman.save");
        let r = parse_iptables_save(save, "iptables-nft-save");
        let w = writers(&r);
        let get = |n: &str| w.iter().find(|x| x.0 == n).map(|x| x.1);
        assert!(get("Docker").is_some_and(|n| n >= 3), "{w:?}\n{r:#?}");
        assert!(
            get("Podman (netavark)").is_some_and(|n| n >= 2),
            "{w:?}\n{r:#?}"
        );
        assert_eq!(w.len(), 2, "{w:?}");
    }
}
