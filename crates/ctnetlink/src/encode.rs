//! Encoding of entries for IPCTNL_MSG_CT_NEW (create) and CT_DELETE, the
//! inverse of [`crate::decode`] for the attributes a create accepts.

use std::net::IpAddr;

use ctmodel::{Entry, L4Proto, L4Tuple, State, Status, Tuple};

use crate::codec::MessageBuilder;
use crate::consts::*;

fn put_tuple(m: &mut MessageBuilder, kind: u16, t: &Tuple, l4: L4Proto) {
    m.begin(kind).begin(CTA_TUPLE_IP);
    match (t.src, t.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            m.attr(CTA_IP_V4_SRC, &s.octets())
                .attr(CTA_IP_V4_DST, &d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                IpAddr::V6(a) => a.octets(),
            };
            m.attr(CTA_IP_V6_SRC, &v6(s)).attr(CTA_IP_V6_DST, &v6(d));
        }
    }
    m.end()
        .begin(CTA_TUPLE_PROTO)
        .attr(CTA_PROTO_NUM, &[l4.number()]);
    let v6 = matches!(t.src, IpAddr::V6(_));
    match t.l4 {
        L4Tuple::Ports { sport, dport } => {
            m.attr(CTA_PROTO_SRC_PORT, &sport.to_be_bytes())
                .attr(CTA_PROTO_DST_PORT, &dport.to_be_bytes());
        }
        L4Tuple::Gre { skey, dkey } => {
            // GRE keys are 16 bits in the kernel tuple.
            m.attr(CTA_PROTO_SRC_PORT, &(skey as u16).to_be_bytes())
                .attr(CTA_PROTO_DST_PORT, &(dkey as u16).to_be_bytes());
        }
        L4Tuple::Icmp { kind, code, id } => {
            let (a_id, a_type, a_code) = if v6 {
                (
                    CTA_PROTO_ICMPV6_ID,
                    CTA_PROTO_ICMPV6_TYPE,
                    CTA_PROTO_ICMPV6_CODE,
                )
            } else {
                (CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE)
            };
            m.attr(a_id, &id.to_be_bytes())
                .attr(a_type, &[kind])
                .attr(a_code, &[code]);
        }
        L4Tuple::None => {}
    }
    m.end();
    if let Some(zone) = t.zone {
        m.attr(CTA_TUPLE_ZONE, &zone.to_be_bytes());
    }
    m.end();
}

fn family(e: &Entry) -> u8 {
    match e.orig.src {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

/// Append one IPCTNL_MSG_CT_NEW create request for `e` to `buf`. The kernel
/// requires both tuples and CTA_TIMEOUT, and CTA_STATUS must keep
/// IPS_CONFIRMED (ctnetlink_create_conntrack sets it; clearing it is EBUSY).
pub fn create_request(buf: Vec<u8>, seq: u32, e: &Entry) -> Vec<u8> {
    let l4 = e.l4();
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    let mut m = MessageBuilder::new(buf, ctnl_msg(IPCTNL_MSG_CT_NEW), flags, seq, family(e));
    put_tuple(&mut m, CTA_TUPLE_ORIG, &e.orig, l4);
    put_tuple(&mut m, CTA_TUPLE_REPLY, &e.reply, l4);
    let proto_nest = match l4 {
        L4Proto::Tcp => Some(CTA_PROTOINFO_TCP),
        L4Proto::Sctp => Some(CTA_PROTOINFO_SCTP),
        L4Proto::Dccp => Some(CTA_PROTOINFO_DCCP),
        _ => None,
    };
    if let (Some(nest), Some(State::Code(code))) = (proto_nest, &e.state) {
        m.begin(CTA_PROTOINFO).begin(nest).attr(1, &[*code]);
        if l4 == L4Proto::Sctp {
            // nlattr_to_sctp() requires both verification tags with the state.
            m.attr(CTA_PROTOINFO_SCTP_VTAG_ORIGINAL, &0u32.to_be_bytes())
                .attr(CTA_PROTOINFO_SCTP_VTAG_REPLY, &0u32.to_be_bytes());
        }
        m.end().end();
    }
    let status = e.status | Status::CONFIRMED;
    m.attr(CTA_STATUS, &status.bits().to_be_bytes());
    m.attr(CTA_TIMEOUT, &e.timeout.unwrap_or(600).to_be_bytes());
    if let Some(mark) = e.mark {
        m.attr(CTA_MARK, &mark.to_be_bytes());
    }
    if let Some(zone) = e.zone {
        m.attr(CTA_ZONE, &zone.to_be_bytes());
    }
    m.finish()
}

/// Append one IPCTNL_MSG_CT_DELETE for the entry with `e`'s original tuple.
pub fn delete_request(buf: Vec<u8>, seq: u32, e: &Entry) -> Vec<u8> {
    let flags = NLM_F_REQUEST | NLM_F_ACK;
    let mut m = MessageBuilder::new(buf, ctnl_msg(IPCTNL_MSG_CT_DELETE), flags, seq, family(e));
    put_tuple(&mut m, CTA_TUPLE_ORIG, &e.orig, e.l4());
    if let Some(zone) = e.zone {
        m.attr(CTA_ZONE, &zone.to_be_bytes());
    }
    m.finish()
}

/// Append one IPCTNL_MSG_CT_DELETE for exactly the entry `e` was: its
/// original tuple, zone and CTA_ID, so that an entry re-created with the
/// same tuple since `e` was dumped is not deleted (ctnetlink_del_conntrack
/// compares CTA_ID with nf_ct_get_id() and answers ENOENT when they
/// differ). `ack`: NLM_F_ACK; without it the kernel still answers errors.
pub fn delete_exact_request(buf: Vec<u8>, seq: u32, e: &Entry, ack: bool) -> Vec<u8> {
    let flags = if ack {
        NLM_F_REQUEST | NLM_F_ACK
    } else {
        NLM_F_REQUEST
    };
    let mut m = MessageBuilder::new(buf, ctnl_msg(IPCTNL_MSG_CT_DELETE), flags, seq, family(e));
    put_tuple(&mut m, CTA_TUPLE_ORIG, &e.orig, e.l4());
    if let Some(zone) = e.zone {
        m.attr(CTA_ZONE, &zone.to_be_bytes());
    }
    if let Some(id) = e.id {
        m.attr(CTA_ID, &id.to_be_bytes());
    }
    m.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Messages;
    use crate::decode::decode_entry;
    use ctmodel::{L3Proto, text};

    #[test]
    fn create_request_decodes_to_the_same_entry() {
        let lines = [
            "tcp 6 95 SYN_SENT src=10.1.1.1 dst=10.2.2.2 sport=1000 dport=443 src=10.2.2.2 dst=10.1.1.1 sport=443 dport=1000 mark=42 zone=7 use=1",
            "icmpv6 58 95 src=2001:db8::1 dst=2001:db8::2 type=128 code=0 id=77 [UNREPLIED] src=2001:db8::2 dst=2001:db8::1 type=129 code=0 id=77 mark=0 use=1",
            "gre 47 95 src=10.1.1.1 dst=10.2.2.2 srckey=0x1 dstkey=0x2 [UNREPLIED] src=10.2.2.2 dst=10.1.1.1 srckey=0x2 dstkey=0x1 mark=0 use=1",
            "udp 17 29 src=127.0.0.1 dst=127.0.0.1 sport=58168 dport=53 src=127.0.0.1 dst=127.0.0.1 sport=53 dport=58168 [ASSURED] mark=0 use=1",
        ];
        for line in lines {
            let text::Line::Entry(e) = text::parse_line(line.as_bytes()).expect("fixture parses")
            else {
                panic!("not an entry")
            };
            let bytes = create_request(Vec::new(), 1, &e);
            let msg = Messages::new(&bytes).next().expect("one").expect("valid");
            let d = decode_entry(msg.payload).expect("decodes");
            assert_eq!(d.l3, e.l3.or(Some(L3Proto::Ipv4)));
            assert_eq!(
                (d.l4, d.state.clone(), d.timeout),
                (e.l4, e.state.clone(), e.timeout)
            );
            assert_eq!((d.orig, d.reply), (e.orig, e.reply), "{line}");
            assert_eq!(d.status, e.status | Status::CONFIRMED);
            assert_eq!((d.mark, d.zone), (e.mark, e.zone));
        }
    }
}
