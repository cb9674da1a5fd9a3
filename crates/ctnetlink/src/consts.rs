//! Kernel constants, with their kernel names, from include/uapi/linux/netlink.h,
//! include/uapi/linux/netfilter/nfnetlink.h and nfnetlink_conntrack.h.
#![allow(missing_docs)]

pub const NETLINK_NETFILTER: isize = 12;

pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_ROOT: u16 = 0x100;
pub const NLM_F_MATCH: u16 = 0x200;
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;

pub const NLA_HDRLEN: usize = 4;
pub const NLA_F_NESTED: u16 = 0x8000;
pub const NLA_TYPE_MASK: u16 = 0x3fff;

pub const NFNL_SUBSYS_CTNETLINK: u16 = 1;
pub const NFNETLINK_V0: u8 = 0;

pub const IPCTNL_MSG_CT_NEW: u16 = 0;
pub const IPCTNL_MSG_CT_GET: u16 = 1;
pub const IPCTNL_MSG_CT_DELETE: u16 = 2;
pub const IPCTNL_MSG_CT_GET_STATS_CPU: u16 = 4;
pub const IPCTNL_MSG_CT_GET_STATS: u16 = 5;

// enum ctattr_type
pub const CTA_TUPLE_ORIG: u16 = 1;
pub const CTA_TUPLE_REPLY: u16 = 2;
pub const CTA_STATUS: u16 = 3;
pub const CTA_PROTOINFO: u16 = 4;
pub const CTA_TIMEOUT: u16 = 7;
pub const CTA_MARK: u16 = 8;
/// With CTA_MARK in a dump request: only entries with mark & mask == mark.
pub const CTA_MARK_MASK: u16 = 21;
pub const CTA_COUNTERS_ORIG: u16 = 9;
pub const CTA_COUNTERS_REPLY: u16 = 10;
pub const CTA_USE: u16 = 11;
pub const CTA_ID: u16 = 12;
pub const CTA_ZONE: u16 = 18;
pub const CTA_SECCTX: u16 = 19;
pub const CTA_TIMESTAMP: u16 = 20;
pub const CTA_LABELS: u16 = 22;

// enum ctattr_tuple
pub const CTA_TUPLE_IP: u16 = 1;
pub const CTA_TUPLE_PROTO: u16 = 2;
pub const CTA_TUPLE_ZONE: u16 = 3;

// enum ctattr_ip
pub const CTA_IP_V4_SRC: u16 = 1;
pub const CTA_IP_V4_DST: u16 = 2;
pub const CTA_IP_V6_SRC: u16 = 3;
pub const CTA_IP_V6_DST: u16 = 4;

// enum ctattr_l4proto
pub const CTA_PROTO_NUM: u16 = 1;
pub const CTA_PROTO_SRC_PORT: u16 = 2;
pub const CTA_PROTO_DST_PORT: u16 = 3;
pub const CTA_PROTO_ICMP_ID: u16 = 4;
pub const CTA_PROTO_ICMP_TYPE: u16 = 5;
pub const CTA_PROTO_ICMP_CODE: u16 = 6;
pub const CTA_PROTO_ICMPV6_ID: u16 = 7;
pub const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
pub const CTA_PROTO_ICMPV6_CODE: u16 = 9;

// enum ctattr_protoinfo and the per-protocol state attributes (all = 1)
pub const CTA_PROTOINFO_TCP: u16 = 1;
pub const CTA_PROTOINFO_DCCP: u16 = 2;
pub const CTA_PROTOINFO_SCTP: u16 = 3;
pub const CTA_PROTOINFO_TCP_STATE: u16 = 1;
pub const CTA_PROTOINFO_DCCP_STATE: u16 = 1;
pub const CTA_PROTOINFO_SCTP_STATE: u16 = 1;
pub const CTA_PROTOINFO_SCTP_VTAG_ORIGINAL: u16 = 2;
pub const CTA_PROTOINFO_SCTP_VTAG_REPLY: u16 = 3;

// enum ctattr_counters
pub const CTA_COUNTERS_PACKETS: u16 = 1;
pub const CTA_COUNTERS_BYTES: u16 = 2;
pub const CTA_COUNTERS32_PACKETS: u16 = 3;
pub const CTA_COUNTERS32_BYTES: u16 = 4;

// enum ctattr_tstamp
pub const CTA_TIMESTAMP_START: u16 = 1;
pub const CTA_TIMESTAMP_STOP: u16 = 2;

// enum ctattr_secctx
pub const CTA_SECCTX_NAME: u16 = 1;

// enum ctattr_stats_cpu
pub const CTA_STATS_FOUND: u16 = 2;
pub const CTA_STATS_INVALID: u16 = 4;
pub const CTA_STATS_INSERT: u16 = 8;
pub const CTA_STATS_INSERT_FAILED: u16 = 9;
pub const CTA_STATS_DROP: u16 = 10;
pub const CTA_STATS_EARLY_DROP: u16 = 11;
pub const CTA_STATS_ERROR: u16 = 12;
pub const CTA_STATS_SEARCH_RESTART: u16 = 13;
pub const CTA_STATS_CLASH_RESOLVE: u16 = 14;
pub const CTA_STATS_CHAIN_TOOLONG: u16 = 15;

// enum ctattr_stats_global
pub const CTA_STATS_GLOBAL_ENTRIES: u16 = 1;
pub const CTA_STATS_GLOBAL_MAX_ENTRIES: u16 = 2;

pub const fn ctnl_msg(msg: u16) -> u16 {
    (NFNL_SUBSYS_CTNETLINK << 8) | msg
}

/// CTA_FILTER (kernel 5.8+): which tuple attributes of the dump request a
/// dumped entry must match; nested CTA_FILTER_ORIG_FLAGS (u32, host order).
pub const CTA_FILTER: u16 = 25;
pub const CTA_FILTER_ORIG_FLAGS: u16 = 1;
pub const CTA_FILTER_F_CTA_PROTO_NUM: u32 = 1 << 3;
