//! Property tests for the ctnetlink codec: random and mutated bytes never
//! panic the decoders, and encode -> decode returns the entry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ctmodel::{Entry, L3Proto, L4Proto, L4Tuple, State, Status, Tuple};
use ctnetlink::codec::{Attrs, Messages};
use ctnetlink::decode::{decode_cpu_stats, decode_entry, decode_global_stats};
use ctnetlink::encode::create_request;
use proptest::prelude::*;

fn ip(v6: bool) -> BoxedStrategy<IpAddr> {
    if v6 {
        any::<u128>()
            .prop_map(|a| IpAddr::V6(Ipv6Addr::from(a)))
            .boxed()
    } else {
        any::<u32>()
            .prop_map(|a| IpAddr::V4(Ipv4Addr::from(a)))
            .boxed()
    }
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        any::<bool>(),
        prop::sample::select(vec![6u8, 17, 1, 47, 132, 136]),
    )
        .prop_flat_map(|(v6, proto)| {
            (
                Just(v6),
                Just(proto),
                (ip(v6), ip(v6), ip(v6), ip(v6)),
                any::<(u16, u16, u16, u16)>(),
                (0u8..10, any::<u32>(), any::<u32>(), any::<Option<u16>>()),
                any::<u32>(),
            )
        })
        .prop_map(
            |(v6, proto, (a, b, c, d), (p1, p2, p3, p4), (state, timeout, mark, zone), status)| {
                let l4 = match L4Proto::from_number(proto) {
                    L4Proto::Icmp if v6 => L4Proto::Icmpv6,
                    p => p,
                };
                let (o, r) = match l4 {
                    L4Proto::Icmp | L4Proto::Icmpv6 => (
                        L4Tuple::Icmp {
                            kind: p1 as u8,
                            code: p2 as u8,
                            id: p3,
                        },
                        L4Tuple::Icmp {
                            kind: p4 as u8,
                            code: p2 as u8,
                            id: p3,
                        },
                    ),
                    L4Proto::Gre => (
                        L4Tuple::Gre {
                            skey: p1.into(),
                            dkey: p2.into(),
                        },
                        L4Tuple::Gre {
                            skey: p3.into(),
                            dkey: p4.into(),
                        },
                    ),
                    _ => (
                        L4Tuple::Ports {
                            sport: p1,
                            dport: p2,
                        },
                        L4Tuple::Ports {
                            sport: p3,
                            dport: p4,
                        },
                    ),
                };
                Entry {
                    l3: Some(if v6 { L3Proto::Ipv6 } else { L3Proto::Ipv4 }),
                    l4: Some(l4),
                    timeout: Some(timeout),
                    state: l4.state_names().map(|_| State::Code(state)),
                    orig: Tuple {
                        src: a,
                        dst: b,
                        l4: o,
                        zone: None,
                    },
                    reply: Tuple {
                        src: c,
                        dst: d,
                        l4: r,
                        zone: None,
                    },
                    status: Status::from_bits_retain(status) | Status::CONFIRMED,
                    mark: Some(mark),
                    zone,
                    ..Entry::default()
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        for m in Messages::new(&bytes).flatten() {
            let _ = decode_entry(m.payload);
            let _ = decode_cpu_stats(m.payload);
            let _ = decode_global_stats(m.payload);
        }
        let _ = decode_entry(&bytes);
        for _ in Attrs::new(&bytes) {}
    }

    #[test]
    fn encode_then_decode_is_identity(e in entry()) {
        let bytes = create_request(Vec::new(), 1, &e);
        let msg = Messages::new(&bytes).next().expect("one message").expect("valid");
        let d = decode_entry(msg.payload).expect("decodes");
        prop_assert_eq!(d, e);
    }

    #[test]
    fn mutated_messages_never_panic(e in entry(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = create_request(Vec::new(), 1, &e);
        for (i, b) in flips {
            let i = i % bytes.len();
            bytes[i] = b;
        }
        for m in Messages::new(&bytes).flatten() {
            let _ = decode_entry(m.payload);
        }
    }
}

/// fuzz/regressions/netlink_dump/gre-reply-without-protonum.bin: its second
/// message is a GRE entry whose reply tuple lost CTA_PROTO_NUM (its type
/// bytes mangled); the reply keys came out as ports (issue 21).
#[test]
fn reply_tuple_without_the_originals_protocol_is_refused() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/regressions/netlink_dump/gre-reply-without-protonum.bin"
    );
    let bytes = std::fs::read(path).expect("regression input");
    let msgs: Vec<_> = Messages::new(&bytes).flatten().collect();
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        decode_entry(msgs[1].payload),
        Err(ctnetlink::DecodeError::Inconsistent(
            "CTA_PROTO_NUM of CTA_TUPLE_REPLY differs from CTA_TUPLE_ORIG's"
        ))
    );
}

#[test]
fn address_attributes_have_their_familys_size() {
    let e = Entry {
        l3: Some(L3Proto::Ipv4),
        l4: Some(L4Proto::from_number(17)),
        orig: Tuple {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            l4: L4Tuple::Ports { sport: 1, dport: 2 },
            zone: None,
        },
        reply: Tuple {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            l4: L4Tuple::Ports { sport: 2, dport: 1 },
            zone: None,
        },
        timeout: Some(30),
        ..Entry::default()
    };
    let mut bytes = create_request(Vec::new(), 1, &e);
    // Relabel the first CTA_IP_V4_SRC (type 1, 8 bytes long) as
    // CTA_IP_V6_SRC (type 3): four bytes are no IPv6 address.
    let mut v4_src = [0u8; 8];
    v4_src[..2].copy_from_slice(&8u16.to_ne_bytes());
    v4_src[2..4].copy_from_slice(&1u16.to_ne_bytes());
    v4_src[4..].copy_from_slice(&[10, 0, 0, 1]);
    let at = bytes
        .windows(8)
        .position(|w| w == v4_src)
        .expect("CTA_IP_V4_SRC 10.0.0.1");
    bytes[at + 2..at + 4].copy_from_slice(&3u16.to_ne_bytes());
    let msg = Messages::new(&bytes).next().expect("one").expect("valid");
    assert!(matches!(
        decode_entry(msg.payload),
        Err(ctnetlink::DecodeError::AttrSize {
            attr: "CTA_IP_V6_SRC",
            expected: 16,
            got: 4
        })
    ));
}
