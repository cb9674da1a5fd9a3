//! Which workload owns an address: the [`AddressBook`] (address to the
//! container or pod whose network namespace holds it), the parsers of what
//! a namespace says its addresses are (/proc/PID/net/fib_trie's LOCAL
//! leaves, /proc/PID/net/if_inet6), the `name (ip)` label, the folding of
//! per-address counts into per-workload rows (`top`/`watch --by container`
//! and `--by pod`) and the exporter's bounded top-N-plus-`other` ranking.
//! Pure: cthost reads the files and the runtimes' metadata.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::facts::ContainerOwner;

/// A container (and its pod, when the CRI labels name one), as the
/// attribution shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Workload {
    /// The container's name, else its 12-digit short id, else the runtime.
    pub name: String,
    /// `docker`, `podman`, `containerd`, `cri-o`, `kubernetes`.
    pub runtime: String,
    pub image: Option<String>,
    pub pod: Option<String>,
    pub pod_namespace: Option<String>,
}

impl Workload {
    /// The workload of a namespace's container owner.
    pub fn of(c: &ContainerOwner) -> Self {
        let name = c
            .name
            .clone()
            .or_else(|| {
                c.id.as_deref()
                    .map(|i| i.get(..12).unwrap_or(i).to_string())
            })
            .or_else(|| {
                // A pod sandbox seen through kubelet's cgroups alone.
                c.pod.clone()
            })
            .unwrap_or_else(|| c.runtime.clone());
        Self {
            name,
            runtime: c.runtime.clone(),
            image: c.image.clone(),
            pod: c.pod.clone(),
            pod_namespace: c.pod_namespace.clone(),
        }
    }

    /// The `--by pod` key: `namespace/pod`, or the container's name when
    /// it belongs to no known pod.
    pub fn pod_key(&self) -> String {
        match (&self.pod_namespace, &self.pod) {
            (Some(ns), Some(p)) => format!("{ns}/{p}"),
            (None, Some(p)) => p.clone(),
            _ => self.name.clone(),
        }
    }
}

/// Address to workload. An address two different workloads claim (two
/// isolated networks reusing a range) is ambiguous and maps to nothing:
/// a wrong name is worse than an address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AddressBook {
    workloads: Vec<Workload>,
    by_addr: BTreeMap<IpAddr, Option<usize>>,
}

impl AddressBook {
    /// Add the addresses of one workload's namespace.
    pub fn add(&mut self, w: Workload, addrs: impl IntoIterator<Item = IpAddr>) {
        let idx = match self.workloads.iter().position(|x| *x == w) {
            Some(i) => i,
            None => {
                self.workloads.push(w);
                self.workloads.len() - 1
            }
        };
        for a in addrs {
            self.by_addr
                .entry(a)
                .and_modify(|e| {
                    if *e != Some(idx) {
                        *e = None;
                    }
                })
                .or_insert(Some(idx));
        }
    }

    pub fn get(&self, ip: IpAddr) -> Option<&Workload> {
        self.workloads.get(self.index(ip)?)
    }

    /// The position in [`AddressBook::workloads`] of the owner of `ip`
    /// (for per-entry tallies that should not clone a workload each time).
    pub fn index(&self, ip: IpAddr) -> Option<usize> {
        *self.by_addr.get(&ip)?
    }

    /// Every workload added, in the order first added.
    pub fn workloads(&self) -> &[Workload] {
        &self.workloads
    }

    /// Addresses that map to a workload.
    pub fn len(&self) -> usize {
        self.by_addr.values().filter(|v| v.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `name (ip)` for an owned address, the address itself otherwise.
    pub fn label(&self, ip: IpAddr) -> String {
        match self.get(ip) {
            Some(w) => format!("{} ({ip})", w.name),
            None => ip.to_string(),
        }
    }
}

/// How per-address rows are folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// One row per container ([`Workload::name`]).
    Container,
    /// One row per pod ([`Workload::pod_key`]).
    Pod,
}

/// One folded row: a workload's key and count, or an address no workload
/// owns (its own row, `workload` None).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRow {
    pub key: String,
    pub count: u64,
    /// The workload behind `key` (for `--by pod`, the first container of
    /// the pod seen); absent for an address no workload owns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
}

/// Fold per-address counts by workload: every address a workload owns
/// adds to its row, every other address is its own row (keyed by the
/// address). Largest first, ties by key; at most `n` rows (all when 0).
pub fn group(
    rows: impl IntoIterator<Item = (IpAddr, u64)>,
    book: &AddressBook,
    by: Grouping,
    n: usize,
) -> Vec<GroupRow> {
    // Keyed by (owned, key): a container may be named like an address
    // (`docker run --name 10.0.0.9` is valid), and its row must not absorb
    // that address's when no workload owns it.
    let mut folded: BTreeMap<(bool, String), (u64, Option<Workload>)> = BTreeMap::new();
    for (ip, c) in rows {
        let (key, w) = match book.get(ip) {
            Some(w) => (
                match by {
                    Grouping::Container => w.name.clone(),
                    Grouping::Pod => w.pod_key(),
                },
                Some(w),
            ),
            None => (ip.to_string(), None),
        };
        let e = folded
            .entry((w.is_some(), key))
            .or_insert_with(|| (0, w.cloned()));
        e.0 += c;
    }
    let mut out: Vec<GroupRow> = folded
        .into_iter()
        .map(|((_, key), (count, workload))| GroupRow {
            key,
            count,
            workload,
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    if n > 0 {
        out.truncate(n);
    }
    out
}

/// One workload's figures for the exporter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub entries: u64,
    /// New flows per second; None before two dumps were compared.
    pub new_per_s: Option<f64>,
}

/// The exporter's bounded ranking: the `n` workloads with the most entries
/// (ties by workload), and the sum of everything else (`other`: the
/// workloads past `n` and `unowned`, the entries of addresses no workload
/// owns), so the series add up to the table. `n` 0 gives no rows and
/// everything in `other`.
pub fn rank(
    rows: BTreeMap<Workload, Figures>,
    unowned: Figures,
    n: usize,
) -> (Vec<(Workload, Figures)>, Figures) {
    let mut v: Vec<(Workload, Figures)> = rows.into_iter().collect();
    v.sort_by(|a, b| b.1.entries.cmp(&a.1.entries).then_with(|| a.0.cmp(&b.0)));
    let rest = v.split_off(n.min(v.len()));
    let mut other = unowned;
    for (_, f) in rest {
        other.entries += f.entries;
        other.new_per_s = match (other.new_per_s, f.new_per_s) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }
    (v, other)
}

/// The local IPv4 addresses of a namespace from its /proc/net/fib_trie:
/// each leaf (`|-- A.B.C.D`) followed by a `/32 host LOCAL` line, loopback
/// (127/8) left out, each once. Lines that are not of this form are
/// skipped.
pub fn parse_fib_trie(text: &str) -> Vec<IpAddr> {
    let mut out = Once::default();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(a) = t.strip_prefix("|-- ") {
            leaf = a.trim().parse().ok();
            continue;
        }
        if t.starts_with('+') || !t.starts_with('/') {
            leaf = None;
            continue;
        }
        let mut f = t.split_whitespace();
        let (Some(len), Some(_scope), Some(kind)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if let Some(a) = leaf
            && len == "/32"
            && kind == "LOCAL"
            && !a.is_loopback()
        {
            out.push(IpAddr::V4(a));
        }
    }
    out.list
}

/// Addresses in the order first seen, each once: a set beside the list,
/// as a namespace may hold tens of thousands (a 4 MiB fib_trie took 4.5 s
/// with a linear search per address).
#[derive(Default)]
struct Once {
    list: Vec<IpAddr>,
    seen: std::collections::BTreeSet<IpAddr>,
}

impl Once {
    fn push(&mut self, ip: IpAddr) {
        if self.seen.insert(ip) {
            self.list.push(ip);
        }
    }
}

/// The IPv6 addresses of a namespace from its /proc/net/if_inet6 (`ADDR32HEX
/// IFINDEX PREFIXLEN SCOPE FLAGS NAME`): global-scope ones only (loopback
/// and link-local addresses repeat across namespaces). Malformed lines are
/// skipped.
pub fn parse_if_inet6(text: &str) -> Vec<IpAddr> {
    let mut out = Once::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(hex), Some(_), Some(_), Some(scope)) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) || scope != "00" {
            continue;
        }
        let Ok(v) = u128::from_str_radix(hex, 16) else {
            continue;
        };
        let ip = IpAddr::V6(Ipv6Addr::from(v));
        if !ip.is_loopback() {
            out.push(ip);
        }
    }
    out.list
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(name: &str, pod: Option<(&str, &str)>) -> Workload {
        Workload {
            name: name.into(),
            runtime: "docker".into(),
            image: Some("busybox:1".into()),
            pod: pod.map(|p| p.1.to_string()),
            pod_namespace: pod.map(|p| p.0.to_string()),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    const TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 172.17.0.0/16 2 0 2
        +-- 172.17.0.0/30 2 0 2
           |-- 172.17.0.0
              /16 link UNICAST
           |-- 172.17.0.2
              /32 host LOCAL
        |-- 172.17.255.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
           |-- 172.17.0.2
              /32 host LOCAL
";

    #[test]
    fn fib_trie_local_leaves() {
        assert_eq!(parse_fib_trie(TRIE), vec![ip("172.17.0.2")]);
        assert!(parse_fib_trie("").is_empty());
        // A LOCAL line with no leaf before it, a bad leaf: nothing.
        assert!(parse_fib_trie("/32 host LOCAL\n|-- 300.1.1.1\n /32 host LOCAL\n").is_empty());
    }

    #[test]
    fn many_addresses_each_once_in_order() {
        // 60,000 addresses, each twice (Main and Local tables), as a
        // namespace with that many can print: all kept once, in order.
        let leaves: String = (0..60_000u32)
            .map(|i| {
                format!(
                    "|-- 10.{}.{}.{}\n /32 host LOCAL\n",
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                )
            })
            .collect();
        let got = parse_fib_trie(&format!("Main:\n{leaves}Local:\n{leaves}"));
        assert_eq!(got.len(), 60_000);
        assert_eq!(got[0], ip("10.0.0.0"));
        assert_eq!(got[59_999], ip("10.0.234.95"));
        let v6: String = (0..60_000u128)
            .map(|i| format!("{:032x} 04 40 00 80 eth0\n", (0xfd00u128 << 112) | i))
            .collect();
        let got = parse_if_inet6(&format!("{v6}{v6}"));
        assert_eq!(got.len(), 60_000);
        assert_eq!(got[1], ip("fd00::1"));
    }

    #[test]
    fn if_inet6_global_only() {
        let t = "fd000000000000000000000000000002 04 40 00 82     eth0
00000000000000000000000000000001 01 80 10 80       lo
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
zz 1 2 00 3 x
";
        assert_eq!(parse_if_inet6(t), vec![ip("fd00::2")]);
    }

    #[test]
    fn ambiguous_addresses_map_to_nothing() {
        let mut b = AddressBook::default();
        b.add(w("a", None), [ip("10.0.0.2"), ip("10.0.0.3")]);
        b.add(w("b", None), [ip("10.0.0.3")]);
        b.add(w("a", None), [ip("10.0.0.2")]);
        assert_eq!(b.get(ip("10.0.0.2")).map(|w| w.name.as_str()), Some("a"));
        assert_eq!(b.get(ip("10.0.0.3")), None);
        assert_eq!(b.len(), 1);
        assert_eq!(b.label(ip("10.0.0.2")), "a (10.0.0.2)");
        assert_eq!(b.label(ip("10.0.0.9")), "10.0.0.9");
    }

    #[test]
    fn group_by_container_and_pod() {
        let mut b = AddressBook::default();
        b.add(
            w("web", Some(("shop", "web-0"))),
            [ip("10.0.0.2"), ip("fd00::2")],
        );
        b.add(w("side", Some(("shop", "web-0"))), [ip("10.0.0.4")]);
        b.add(w("db", None), [ip("10.0.0.3")]);
        let rows = vec![
            (ip("10.0.0.2"), 5),
            (ip("fd00::2"), 2),
            (ip("10.0.0.3"), 6),
            (ip("10.0.0.4"), 1),
            (ip("192.0.2.1"), 4),
        ];
        let c = group(rows.clone(), &b, Grouping::Container, 0);
        let keys: Vec<(&str, u64)> = c.iter().map(|r| (r.key.as_str(), r.count)).collect();
        assert_eq!(keys, [("web", 7), ("db", 6), ("192.0.2.1", 4), ("side", 1)]);
        assert!(c[2].workload.is_none());
        let p = group(rows, &b, Grouping::Pod, 2);
        let keys: Vec<(&str, u64)> = p.iter().map(|r| (r.key.as_str(), r.count)).collect();
        assert_eq!(keys, [("shop/web-0", 8), ("db", 6)]);
    }

    #[test]
    fn a_container_named_like_an_address_keeps_its_own_row() {
        let mut b = AddressBook::default();
        b.add(w("10.0.0.9", None), [ip("10.0.0.2")]);
        let rows = vec![(ip("10.0.0.2"), 5), (ip("10.0.0.9"), 3)];
        let got = group(rows, &b, Grouping::Container, 0);
        let keys: Vec<(&str, u64, bool)> = got
            .iter()
            .map(|r| (r.key.as_str(), r.count, r.workload.is_some()))
            .collect();
        assert_eq!(keys, [("10.0.0.9", 5, true), ("10.0.0.9", 3, false)]);
    }

    #[test]
    fn rank_300_workloads_keeps_20_and_other() {
        let rows: BTreeMap<Workload, Figures> = (0..300u64)
            .map(|i| {
                (
                    w(&format!("pod-{i:03}"), Some(("ns", "p"))),
                    Figures {
                        entries: i * 10,
                        new_per_s: Some(i as f64),
                    },
                )
            })
            .collect();
        let total: u64 = rows.values().map(|f| f.entries).sum();
        let total_new: f64 = rows.values().filter_map(|f| f.new_per_s).sum();
        let unowned = Figures {
            entries: 7,
            new_per_s: Some(0.5),
        };
        let (top, other) = rank(rows, unowned, 20);
        assert_eq!(top.len(), 20);
        assert_eq!(top[0].0.name, "pod-299");
        assert_eq!(top[19].0.name, "pod-280");
        let sum: u64 = top.iter().map(|(_, f)| f.entries).sum::<u64>() + other.entries;
        assert_eq!(sum, total + 7);
        let new: f64 = top.iter().filter_map(|(_, f)| f.new_per_s).sum::<f64>()
            + other.new_per_s.unwrap_or(0.0);
        assert!((new - (total_new + 0.5)).abs() < 1e-6);
        let (none, all) = rank(
            BTreeMap::new(),
            Figures {
                entries: 3,
                new_per_s: None,
            },
            20,
        );
        assert!(none.is_empty());
        assert_eq!(all.entries, 3);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = parse_fib_trie(&s);
            let _ = parse_if_inet6(&s);
        }

        #[test]
        fn parsers_take_only_what_they_print(
            lines in proptest::collection::vec(
                prop_oneof![
                    Just("|-- 10.1.2.3".to_string()),
                    Just("   /32 host LOCAL".to_string()),
                    Just("   /24 link UNICAST".to_string()),
                    Just("+-- 10.0.0.0/8 2 0 2".to_string()),
                    "[ -~]{0,40}",
                ],
                0..40,
            )
        ) {
            let text = lines.join("\n");
            for a in parse_fib_trie(&text) {
                let leaf = format!("|-- {a}");
                prop_assert!(text.contains(&leaf));
            }
        }

        #[test]
        fn group_preserves_the_sum(
            counts in proptest::collection::vec((0u8..8, 0u64..1000), 0..50),
            n in 0usize..5,
        ) {
            let mut b = AddressBook::default();
            b.add(w("a", None), [ip("10.0.0.1"), ip("10.0.0.2")]);
            b.add(w("b", Some(("x", "p"))), [ip("10.0.0.3")]);
            let rows: Vec<(IpAddr, u64)> = counts
                .iter()
                .map(|(o, c)| (IpAddr::V4(Ipv4Addr::new(10, 0, 0, *o)), *c))
                .collect();
            let total: u64 = rows.iter().map(|r| r.1).sum();
            let all = group(rows.clone(), &b, Grouping::Container, 0);
            prop_assert_eq!(all.iter().map(|r| r.count).sum::<u64>(), total);
            let cap = if n == 0 { usize::MAX } else { n };
            prop_assert!(group(rows, &b, Grouping::Pod, n).len() <= cap);
        }
    }
}
