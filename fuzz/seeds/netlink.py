#!/usr/bin/env python3
"""Writes the netlink seed datagrams of fuzz/corpus/netlink_{dump,events}:
ctnetlink messages laid out as net/netfilter/nf_conntrack_netlink.c sends
them (host-endian headers, big-endian values). Run from fuzz/:
python3 seeds/netlink.py."""
import os
import struct

NESTED = 0x8000


def attr(kind, value, nested=False):
    k = kind | (NESTED if nested else 0)
    b = struct.pack("=HH", 4 + len(value), k) + value
    return b + b"\0" * (-len(b) % 4)


def nest(kind, *children):
    return attr(kind, b"".join(children), nested=True)


def msg(kind, flags, seq, payload, family=2, res_id=0):
    body = struct.pack("!BBH", family, 0, res_id) + payload
    b = struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body
    return b + b"\0" * (-len(b) % 4)


def tuple4(kind, src, dst, proto, sport, dport, zone=None):
    ip = nest(1, attr(1, bytes(src)), attr(2, bytes(dst)))
    p = nest(2, attr(1, bytes([proto])), attr(2, struct.pack("!H", sport)),
             attr(3, struct.pack("!H", dport)))
    z = attr(3, struct.pack("!H", zone)) if zone is not None else b""
    return nest(kind, ip, p, z)


def tuple6_icmp(kind, src, dst):
    ip = nest(1, attr(3, bytes(src)), attr(4, bytes(dst)))
    p = nest(2, attr(1, bytes([58])), attr(7, struct.pack("!H", 77)),
             attr(8, bytes([128])), attr(9, bytes([0])))
    return nest(kind, ip, p)


def counters(kind, packets, nbytes):
    return nest(kind, attr(1, struct.pack("!Q", packets)), attr(2, struct.pack("!Q", nbytes)))


CT_NEW, CT_DELETE, CPU, STATS = 0x100, 0x102, 0x104, 0x105
a, b = [10, 0, 0, 1], [10, 0, 0, 2]
tcp = (tuple4(1, a, b, 6, 40000, 443) + tuple4(2, b, a, 6, 443, 40000)
       + attr(3, struct.pack("!I", 0x18e)) + attr(7, struct.pack("!I", 431999))
       + attr(8, struct.pack("!I", 0)) + counters(9, 10, 800) + counters(10, 8, 6400)
       + attr(11, struct.pack("!I", 2)) + attr(12, struct.pack("!I", 0xdeadbeef))
       + nest(4, nest(1, attr(1, bytes([3])), attr(4, bytes([7, 7])))))
tcp_full = (tcp + attr(18, struct.pack("!H", 5))
            + nest(19, attr(1, b"system_u:object_r:unlabeled_t:s0\0"))
            + nest(20, attr(1, struct.pack("!Q", 1_700_000_000_000_000_000)),
                   attr(2, struct.pack("!Q", 1_700_000_001_000_000_000)))
            + attr(22, bytes(16)))
udp = (tuple4(1, a, b, 17, 5353, 53, zone=3) + tuple4(2, b, a, 17, 53, 5353, zone=3)
       + attr(3, struct.pack("!I", 0x8)) + attr(7, struct.pack("!I", 30)))
v6 = list(range(16))
icmp6 = (tuple6_icmp(1, v6, v6[::-1]) + tuple6_icmp(2, v6[::-1], v6)
         + attr(7, struct.pack("!I", 29)))
gre = (tuple4(1, a, b, 47, 1, 2) + tuple4(2, b, a, 47, 2, 1) + attr(7, struct.pack("!I", 180)))
done = struct.pack("=IHHII", 20, 3, 2, 7, 0) + struct.pack("=i", 0)
error = struct.pack("=IHHII", 36, 2, 0, 7, 0) + struct.pack("=i", -1) + bytes(16)
cpu = b"".join(attr(k, struct.pack("!I", k * 3)) for k in (2, 4, 8, 9, 10, 11, 12, 13, 14, 15))
stats = attr(1, struct.pack("!I", 1234)) + attr(2, struct.pack("!I", 262144))

dump = {
    "tcp-udp-done": msg(CT_NEW, 2, 7, tcp) + msg(CT_NEW, 2, 7, udp) + done,
    "tcp-all-attrs": msg(CT_NEW, 2, 7, tcp_full),
    "icmpv6-gre": msg(CT_NEW, 2, 7, icmp6, family=10) + msg(CT_NEW, 2, 7, gre),
    "stats-cpu": msg(CPU, 2, 7, cpu, family=0, res_id=1) + msg(CPU, 2, 7, cpu, family=0) + done,
    "stats-global": msg(STATS, 2, 7, stats, family=0) + error,
    "bare-payload": struct.pack("!BBH", 2, 0, 0) + udp,
}
events = {
    "new": msg(CT_NEW, 0x600, 0, tcp),
    "update-destroy": msg(CT_NEW, 0, 0, udp) + msg(CT_DELETE, 0, 0, tcp_full),
    "v6-new": msg(CT_NEW, 0x600, 0, icmp6, family=10),
    "truncated": msg(CT_NEW, 0x600, 0, tcp)[:60],
}
for d, seeds in (("netlink_dump", dump), ("netlink_events", events)):
    os.makedirs(f"corpus/{d}", exist_ok=True)
    for name, data in seeds.items():
        with open(f"corpus/{d}/{name}.bin", "wb") as f:
            f.write(data)
