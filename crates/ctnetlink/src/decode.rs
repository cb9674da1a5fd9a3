//! Decoding of ctnetlink replies into the model: one IPCTNL_MSG_CT_NEW
//! message per entry (dump replies carry type CT_NEW, not CT_GET), per-CPU
//! statistics and the global count/max. Unknown attributes are skipped, so a
//! newer kernel's additions never fail a dump.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ctmodel::{Counters, Entry, L3Proto, L4Proto, L4Tuple, State, Status, Tuple};

use crate::codec::{Attr, Attrs};
use crate::consts::*;
use crate::error::DecodeError;

/// CTA_IP_V4_* are 4 bytes and CTA_IP_V6_* 16 (the kernel's policy): a
/// 16-byte V4 attribute is malformed, not an IPv6 address.
fn ipv4(attr: &Attr<'_>, name: &'static str) -> Result<IpAddr, DecodeError> {
    Ok(IpAddr::V4(Ipv4Addr::from(attr.exact::<4>(name)?)))
}

fn ipv6(attr: &Attr<'_>, name: &'static str) -> Result<IpAddr, DecodeError> {
    Ok(IpAddr::V6(Ipv6Addr::from(attr.exact::<16>(name)?)))
}

/// The attributes of one CTA_TUPLE_* nest, before the L4 part is shaped:
/// that takes the entry's protocol, which only the original tuple names
/// for sure.
#[derive(Default)]
struct TupleAttrs {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    proto: Option<u8>,
    sport: Option<u16>,
    dport: Option<u16>,
    kind: Option<u8>,
    code: Option<u8>,
    id: Option<u16>,
    zone: Option<u16>,
}

fn read_tuple(attr: &Attr<'_>) -> Result<TupleAttrs, DecodeError> {
    let mut t = TupleAttrs::default();
    for a in attr.nested() {
        let a = a?;
        match a.kind {
            CTA_TUPLE_IP => {
                for ipa in a.nested() {
                    let ipa = ipa?;
                    match ipa.kind {
                        CTA_IP_V4_SRC => t.src = Some(ipv4(&ipa, "CTA_IP_V4_SRC")?),
                        CTA_IP_V4_DST => t.dst = Some(ipv4(&ipa, "CTA_IP_V4_DST")?),
                        CTA_IP_V6_SRC => t.src = Some(ipv6(&ipa, "CTA_IP_V6_SRC")?),
                        CTA_IP_V6_DST => t.dst = Some(ipv6(&ipa, "CTA_IP_V6_DST")?),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for p in a.nested() {
                    let p = p?;
                    match p.kind {
                        CTA_PROTO_NUM => t.proto = Some(p.u8("CTA_PROTO_NUM")?),
                        CTA_PROTO_SRC_PORT => t.sport = Some(p.be16("CTA_PROTO_SRC_PORT")?),
                        CTA_PROTO_DST_PORT => t.dport = Some(p.be16("CTA_PROTO_DST_PORT")?),
                        CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => {
                            t.id = Some(p.be16("CTA_PROTO_ICMP_ID")?)
                        }
                        CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => {
                            t.kind = Some(p.u8("CTA_PROTO_ICMP_TYPE")?);
                        }
                        CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => {
                            t.code = Some(p.u8("CTA_PROTO_ICMP_CODE")?);
                        }
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_ZONE => t.zone = Some(a.be16("CTA_TUPLE_ZONE")?),
            _ => {}
        }
    }
    Ok(t)
}

impl TupleAttrs {
    /// The tuple of an entry of protocol `proto`: GRE keys travel in the
    /// port attributes (nf_ct_port_tuple_to_nlattr), so the shape follows
    /// the entry's protocol, not the attributes alone.
    fn build(self, proto: u8) -> Result<Tuple, DecodeError> {
        let src = self.src.ok_or(DecodeError::Missing("CTA_IP_*_SRC"))?;
        let dst = self.dst.ok_or(DecodeError::Missing("CTA_IP_*_DST"))?;
        let l4 = match (
            L4Proto::from_number(proto),
            self.sport,
            self.dport,
            self.kind,
        ) {
            (L4Proto::Gre, s, d, _) if s.is_some() || d.is_some() => L4Tuple::Gre {
                skey: s.unwrap_or(0).into(),
                dkey: d.unwrap_or(0).into(),
            },
            (_, Some(s), Some(d), _) => L4Tuple::Ports { sport: s, dport: d },
            (_, _, _, Some(k)) => L4Tuple::Icmp {
                kind: k,
                code: self.code.unwrap_or(0),
                id: self.id.unwrap_or(0),
            },
            _ => L4Tuple::None,
        };
        Ok(Tuple {
            src,
            dst,
            l4,
            zone: self.zone,
        })
    }
}

fn decode_counters(attr: &Attr<'_>) -> Result<Counters, DecodeError> {
    let mut c = Counters::default();
    for a in attr.nested() {
        let a = a?;
        match a.kind {
            CTA_COUNTERS_PACKETS => c.packets = a.be64("CTA_COUNTERS_PACKETS")?,
            CTA_COUNTERS_BYTES => c.bytes = a.be64("CTA_COUNTERS_BYTES")?,
            CTA_COUNTERS32_PACKETS => c.packets = a.be32("CTA_COUNTERS32_PACKETS")?.into(),
            CTA_COUNTERS32_BYTES => c.bytes = a.be32("CTA_COUNTERS32_BYTES")?.into(),
            _ => {}
        }
    }
    Ok(c)
}

fn decode_protoinfo(attr: &Attr<'_>) -> Result<Option<u8>, DecodeError> {
    for a in attr.nested() {
        let a = a?;
        if matches!(
            a.kind,
            CTA_PROTOINFO_TCP | CTA_PROTOINFO_DCCP | CTA_PROTOINFO_SCTP
        ) {
            for s in a.nested() {
                let s = s?;
                // CTA_PROTOINFO_{TCP,DCCP,SCTP}_STATE are all attribute 1.
                if s.kind == CTA_PROTOINFO_TCP_STATE {
                    return Ok(Some(s.u8("CTA_PROTOINFO_*_STATE")?));
                }
            }
        }
    }
    Ok(None)
}

/// Decode the payload of one entry message (nfgenmsg + attributes).
pub fn decode_entry(payload: &[u8]) -> Result<Entry, DecodeError> {
    let (nfgen, attrs) = payload
        .split_at_checked(4)
        .ok_or(DecodeError::Truncated("nfgenmsg"))?;
    let mut e = Entry {
        l3: Some(L3Proto::from_family(nfgen[0])),
        ..Entry::default()
    };
    let (mut orig, mut reply) = (None, None);
    for a in Attrs::new(attrs) {
        let a = a?;
        match a.kind {
            CTA_TUPLE_ORIG => orig = Some(read_tuple(&a)?),
            CTA_TUPLE_REPLY => reply = Some(read_tuple(&a)?),
            CTA_STATUS => e.status = Status::from_bits_retain(a.be32("CTA_STATUS")?),
            CTA_PROTOINFO => e.state = decode_protoinfo(&a)?.map(State::Code),
            CTA_TIMEOUT => e.timeout = Some(a.be32("CTA_TIMEOUT")?),
            CTA_MARK => e.mark = Some(a.be32("CTA_MARK")?),
            CTA_COUNTERS_ORIG => e.counters_orig = Some(decode_counters(&a)?),
            CTA_COUNTERS_REPLY => e.counters_reply = Some(decode_counters(&a)?),
            CTA_USE => e.use_count = Some(a.be32("CTA_USE")?),
            CTA_ID => e.id = Some(a.be32("CTA_ID")?),
            CTA_ZONE => e.zone = Some(a.be16("CTA_ZONE")?),
            CTA_SECCTX => {
                for s in a.nested() {
                    let s = s?;
                    if s.kind == CTA_SECCTX_NAME {
                        let name = s.value.split(|&b| b == 0).next().unwrap_or_default();
                        e.secctx = Some(String::from_utf8_lossy(name).into());
                    }
                }
            }
            CTA_TIMESTAMP => {
                for t in a.nested() {
                    let t = t?;
                    match t.kind {
                        CTA_TIMESTAMP_START => {
                            e.timestamp_start = Some(t.be64("CTA_TIMESTAMP_START")?)
                        }
                        CTA_TIMESTAMP_STOP => {
                            e.timestamp_stop = Some(t.be64("CTA_TIMESTAMP_STOP")?)
                        }
                        _ => {}
                    }
                }
            }
            CTA_LABELS => e.labels = Some(a.value.into()),
            _ => {}
        }
    }
    let orig = orig.ok_or(DecodeError::Missing("CTA_TUPLE_ORIG"))?;
    let reply = reply.ok_or(DecodeError::Missing("CTA_TUPLE_REPLY"))?;
    let proto = orig.proto.ok_or(DecodeError::Missing("CTA_PROTO_NUM"))?;
    // ctnetlink_dump_tuples() writes the protocol into both tuples; a reply
    // tuple of another protocol (or none) would be shaped wrong silently.
    if reply.proto != Some(proto) {
        return Err(DecodeError::Inconsistent(
            "CTA_PROTO_NUM of CTA_TUPLE_REPLY differs from CTA_TUPLE_ORIG's",
        ));
    }
    e.orig = orig.build(proto)?;
    e.reply = reply.build(proto)?;
    e.l4 = Some(L4Proto::from_number(proto));
    Ok(e)
}

/// Per-CPU counters from IPCTNL_MSG_CT_GET_STATS_CPU (ctcore sums them and
/// takes their increases).
pub use ctcore::counters::CpuStats;

pub fn decode_cpu_stats(payload: &[u8]) -> Result<CpuStats, DecodeError> {
    let (nfgen, attrs) = payload
        .split_at_checked(4)
        .ok_or(DecodeError::Truncated("nfgenmsg"))?;
    // nfgenmsg.res_id (be16) carries the CPU number.
    let mut s = CpuStats {
        cpu: u16::from_be_bytes([nfgen[2], nfgen[3]]),
        ..CpuStats::default()
    };
    for a in Attrs::new(attrs) {
        let a = a?;
        let slot = match a.kind {
            CTA_STATS_FOUND => &mut s.found,
            CTA_STATS_INVALID => &mut s.invalid,
            CTA_STATS_INSERT => &mut s.insert,
            CTA_STATS_INSERT_FAILED => &mut s.insert_failed,
            CTA_STATS_DROP => &mut s.drop,
            CTA_STATS_EARLY_DROP => &mut s.early_drop,
            CTA_STATS_ERROR => &mut s.error,
            CTA_STATS_SEARCH_RESTART => &mut s.search_restart,
            CTA_STATS_CLASH_RESOLVE => &mut s.clash_resolve,
            CTA_STATS_CHAIN_TOOLONG => &mut s.chaintoolong,
            _ => continue,
        };
        *slot = Some(a.be32("CTA_STATS_*")?);
    }
    Ok(s)
}

/// IPCTNL_MSG_CT_GET_STATS: the namespace's entry count and the global max.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GlobalStats {
    pub entries: u32,
    pub max_entries: Option<u32>,
}

pub fn decode_global_stats(payload: &[u8]) -> Result<GlobalStats, DecodeError> {
    let attrs = payload.get(4..).ok_or(DecodeError::Truncated("nfgenmsg"))?;
    let (mut entries, mut max) = (None, None);
    for a in Attrs::new(attrs) {
        let a = a?;
        match a.kind {
            CTA_STATS_GLOBAL_ENTRIES => entries = Some(a.be32("CTA_STATS_GLOBAL_ENTRIES")?),
            CTA_STATS_GLOBAL_MAX_ENTRIES => max = Some(a.be32("CTA_STATS_GLOBAL_MAX_ENTRIES")?),
            _ => {}
        }
    }
    Ok(GlobalStats {
        entries: entries.ok_or(DecodeError::Missing("CTA_STATS_GLOBAL_ENTRIES"))?,
        max_entries: max,
    })
}
