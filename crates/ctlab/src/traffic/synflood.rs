//! Spoofed SYNs from many source addresses through a raw socket with
//! IP_HDRINCL (IPPROTO_RAW): no handshake ever completes, so every entry is
//! SYN_SENT and never ASSURED (what early_drop may evict). The target port
//! is closed and the namespace drops the stack's RSTs before conntrack
//! ([`super::Kind::nft_rules`]), so the entries stay unreplied.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};

use super::icmp::checksum;
use super::{FLOOD_PORT, Generator, Tally, TrafficError, io, source_addr};

pub struct SynFlood {
    sock: Socket,
}

impl SynFlood {
    pub fn new() -> Result<Self, TrafficError> {
        // IPPROTO_RAW implies IP_HDRINCL.
        let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))
            .map_err(io("raw IP socket (needs CAP_NET_RAW)"))?;
        Ok(Self { sock })
    }
}

/// A 40-byte IPv4 + TCP SYN from `src:sport` to `dst:dport`.
pub fn syn_packet(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, seq: u32) -> [u8; 40] {
    let mut p = [0u8; 40];
    // IPv4 header.
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64; // TTL
    p[9] = 6; // TCP
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let ipc = checksum(&p[..20]);
    p[10..12].copy_from_slice(&ipc.to_be_bytes());
    // TCP header.
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[32] = 5 << 4; // data offset: 5 words
    p[33] = 0x02; // SYN
    p[34..36].copy_from_slice(&64240u16.to_be_bytes());
    // Pseudo-header + TCP segment.
    let mut ph = [0u8; 32];
    ph[0..4].copy_from_slice(&src.octets());
    ph[4..8].copy_from_slice(&dst.octets());
    ph[9] = 6;
    ph[10..12].copy_from_slice(&20u16.to_be_bytes());
    ph[12..32].copy_from_slice(&p[20..40]);
    let tc = checksum(&ph);
    p[36..38].copy_from_slice(&tc.to_be_bytes());
    p
}

impl Generator for SynFlood {
    fn start(&mut self, i: u64) -> Result<bool, std::io::Error> {
        let src = source_addr(i);
        let sport = 1024 + (i % 60_000) as u16;
        let pkt = syn_packet(src, sport, Ipv4Addr::LOCALHOST, FLOOD_PORT, i as u32);
        let to = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
        self.sock.send_to(&pkt, &to.into())?;
        Ok(true)
    }

    fn poll(&mut self, _: std::time::Instant, _: &mut Tally) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn_checksums_verify() {
        let p = syn_packet(Ipv4Addr::new(127, 1, 2, 3), 4000, Ipv4Addr::LOCALHOST, 9, 7);
        assert_eq!(checksum(&p[..20]), 0);
        let mut ph = Vec::from(&p[12..20]);
        ph.extend_from_slice(&[0, 6, 0, 20]);
        ph.extend_from_slice(&p[20..]);
        assert_eq!(checksum(&ph), 0);
        assert_eq!(p[33], 0x02);
    }
}
