//! A deterministic table mix for tests and benchmarks: TCP in every common
//! state, UDP unreplied/replied/assured, ICMP, IPv6, GRE, SCTP, zones, marks,
//! SNAT and DNAT, with Zipf-like skew on sources so top-N is meaningful.
//! The same (n, seed) always gives the same entries, all with unique tuples.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ctmodel::{Entry, L3Proto, L4Proto, L4Tuple, State, Status, Tuple};

/// Shape of the generated table.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// Base timeout; each entry adds 0..=599 s. The default (7200) keeps
    /// every entry inside the 1h-1d bucket of the timeout histogram for
    /// the length of a test.
    pub timeout: u32,
    /// Distinct source addresses.
    pub sources: u32,
    /// Include IPv6, GRE, SCTP, zones, marks and NAT (the test mix); the
    /// benchmark mix is IPv4 TCP/UDP/ICMP like ../shared/bench/populate.py.
    pub exotic: bool,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            timeout: 7200,
            sources: 5000,
            exotic: true,
        }
    }
}

const TCP_STATES: [(&str, u32, bool); 8] = [
    // (state, weight, assured)
    ("ESTABLISHED", 40, true),
    ("TIME_WAIT", 20, true),
    ("SYN_SENT", 8, false),
    ("SYN_RECV", 4, false),
    ("CLOSE_WAIT", 6, true),
    ("FIN_WAIT", 6, true),
    ("LAST_ACK", 3, true),
    ("CLOSE", 3, true),
];

fn pick<T: Copy>(rng: &mut fastrand::Rng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut r = rng.u32(0..total);
    for (item, w) in items {
        if r < *w {
            return *item;
        }
        r -= w;
    }
    items[items.len() - 1].0
}

fn v4(base: u32, host: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(base | host))
}

fn v6(host: u32) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        0,
        0,
        0,
        0,
        (host >> 16) as u16,
        host as u16,
    ))
}

/// Skewed rank in 0..k: about a third of draws land on the first 1%.
fn skewed(rng: &mut fastrand::Rng, k: u32) -> u32 {
    let u = rng.f64();
    ((k as f64).powf(u) - 1.0).clamp(0.0, f64::from(k - 1)) as u32
}

/// Generate `n` entries.
pub fn generate(n: usize, seed: u64, mix: Mix) -> Vec<Entry> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    let protos: &[(u8, u32)] = if mix.exotic {
        &[
            (6, 62),
            (17, 25),
            (1, 5),
            (58, 2),
            (47, 2),
            (132, 2),
            (136, 2),
        ]
    } else {
        &[(6, 70), (17, 25), (1, 5)]
    };
    while out.len() < n {
        let proto = pick(&mut rng, protos);
        let ipv6 = proto == 58 || (mix.exotic && proto != 1 && rng.u32(0..10) == 0);
        let src_host = 1 + skewed(&mut rng, mix.sources);
        let dst_host = 1 + skewed(&mut rng, 500);
        let (src, dst) = if ipv6 {
            (v6(src_host), v6(0x10000 | dst_host))
        } else {
            (
                v4(10 << 24, src_host),
                v4((172 << 24) | (16 << 16), dst_host),
            )
        };
        let l4 = L4Proto::from_number(proto);
        let sport = rng.u16(1024..=65535);
        let (orig_l4, reply_l4, state, status) = match l4 {
            L4Proto::Tcp => {
                let dport = pick(&mut rng, &[(443, 60), (80, 30), (22, 5), (8080, 5)]);
                let weighted: Vec<((&str, bool), u32)> =
                    TCP_STATES.iter().map(|(s, w, a)| ((*s, *a), *w)).collect();
                let (name, assured) = pick(&mut rng, &weighted);
                let status = match (assured, name) {
                    (true, _) => Status::SEEN_REPLY | Status::ASSURED,
                    (false, "SYN_RECV") => Status::SEEN_REPLY,
                    _ => Status::empty(),
                };
                (
                    L4Tuple::Ports { sport, dport },
                    L4Tuple::Ports {
                        sport: dport,
                        dport: sport,
                    },
                    Some(State::from_name(l4, name)),
                    status,
                )
            }
            L4Proto::Udp | L4Proto::Udplite => {
                let dport = pick(&mut rng, &[(53, 70), (443, 15), (123, 10), (5353, 5)]);
                let status = pick(
                    &mut rng,
                    &[
                        (Status::empty(), 30),
                        (Status::SEEN_REPLY, 55),
                        (Status::SEEN_REPLY | Status::ASSURED, 15),
                    ],
                );
                (
                    L4Tuple::Ports { sport, dport },
                    L4Tuple::Ports {
                        sport: dport,
                        dport: sport,
                    },
                    None,
                    status,
                )
            }
            L4Proto::Icmp | L4Proto::Icmpv6 => {
                let (req, rep) = if l4 == L4Proto::Icmp {
                    (8, 0)
                } else {
                    (128, 129)
                };
                let status = if rng.bool() {
                    Status::SEEN_REPLY
                } else {
                    Status::empty()
                };
                (
                    L4Tuple::Icmp {
                        kind: req,
                        code: 0,
                        id: sport,
                    },
                    L4Tuple::Icmp {
                        kind: rep,
                        code: 0,
                        id: sport,
                    },
                    None,
                    status,
                )
            }
            L4Proto::Gre => (
                L4Tuple::Gre {
                    skey: u32::from(sport),
                    dkey: 7,
                },
                L4Tuple::Gre {
                    skey: 7,
                    dkey: u32::from(sport),
                },
                None,
                Status::SEEN_REPLY,
            ),
            _ => (
                L4Tuple::Ports { sport, dport: 3868 },
                L4Tuple::Ports {
                    sport: 3868,
                    dport: sport,
                },
                Some(State::from_name(l4, "ESTABLISHED")),
                Status::SEEN_REPLY | Status::ASSURED,
            ),
        };
        let zone = (mix.exotic && rng.u32(0..50) == 0).then_some(7u16);
        let mark = if mix.exotic && rng.u32(0..20) == 0 {
            0x42
        } else {
            0
        };
        let orig = Tuple {
            src,
            dst,
            l4: orig_l4,
            zone: None,
        };
        let mut reply = Tuple {
            src: dst,
            dst: src,
            l4: reply_l4,
            zone: None,
        };
        // NAT: the reply tuple differs from the swapped original.
        if mix.exotic && !ipv6 && l4 == L4Proto::Tcp {
            match rng.u32(0..20) {
                0 => reply.dst = v4((192 << 24) | (168 << 16), 1), // SNAT to 192.168.0.1
                1 => reply.src = v4((10 << 24) | (99 << 16), dst_host), // DNAT to a backend
                _ => {}
            }
        }
        if !seen.insert((orig, zone)) {
            continue;
        }
        out.push(Entry {
            l3: Some(if ipv6 { L3Proto::Ipv6 } else { L3Proto::Ipv4 }),
            l4: Some(l4),
            timeout: Some(mix.timeout + rng.u32(0..600)),
            state,
            orig,
            reply,
            status,
            mark: Some(mark),
            zone,
            ..Entry::default()
        });
    }
    out
}

/// `n` TCP entries that are all ASSURED ESTABLISHED (`assured`), or all
/// unreplied SYN_SENT: the two ways a table fills. Unique tuples from
/// 10.0.0.0/8 to 172.16.0.1:443; timeouts of an hour and more.
pub fn fill(n: usize, assured: bool) -> Vec<Entry> {
    (0..n)
        .map(|i| {
            let i = i as u32;
            let src = IpAddr::V4(Ipv4Addr::from((10 << 24) | (i >> 14)));
            let dst = IpAddr::V4(Ipv4Addr::new(172, 16, 0, 1));
            let sport = 1024 + (i & 0x3fff) as u16;
            let (state, status) = if assured {
                ("ESTABLISHED", Status::SEEN_REPLY | Status::ASSURED)
            } else {
                ("SYN_SENT", Status::empty())
            };
            Entry {
                l3: Some(L3Proto::Ipv4),
                l4: Some(L4Proto::Tcp),
                timeout: Some(3600 + (i % 600)),
                state: Some(State::from_name(L4Proto::Tcp, state)),
                orig: Tuple {
                    src,
                    dst,
                    l4: L4Tuple::Ports { sport, dport: 443 },
                    zone: None,
                },
                reply: Tuple {
                    src: dst,
                    dst: src,
                    l4: L4Tuple::Ports {
                        sport: 443,
                        dport: sport,
                    },
                    zone: None,
                },
                status,
                mark: Some(0),
                ..Entry::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_unique() {
        let a = generate(2000, 9, Mix::default());
        assert_eq!(a, generate(2000, 9, Mix::default()));
        assert_eq!(a.len(), 2000);
        let tuples: HashSet<_> = a.iter().map(|e| (e.orig, e.zone)).collect();
        assert_eq!(tuples.len(), 2000);
    }
}
