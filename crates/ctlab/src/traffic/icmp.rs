//! ICMP echo requests from a raw socket, each flow its own (destination,
//! id) pair so every request is a new conntrack entry (never ASSURED,
//! icmp timeout); the namespace's own stack answers.

use std::net::{SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};

use super::{Generator, Tally, TrafficError, io, source_addr};

pub struct Icmp {
    sock: Socket,
}

impl Icmp {
    pub fn new() -> Result<Self, TrafficError> {
        let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
            .map_err(io("raw ICMP socket (needs CAP_NET_RAW)"))?;
        // Replies are never read: keep the queue tiny.
        let _ = sock.set_recv_buffer_size(4096);
        Ok(Self { sock })
    }
}

/// Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = match pair {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request: type 8, code 0, id, sequence 1, 8 bytes of payload.
pub fn echo_request(id: u16, payload: u64) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = 8;
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&1u16.to_be_bytes());
    p[8..16].copy_from_slice(&payload.to_be_bytes());
    let c = checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

impl Generator for Icmp {
    fn start(&mut self, i: u64) -> Result<bool, std::io::Error> {
        let dst = source_addr(i / 65536);
        let pkt = echo_request((i % 65536) as u16, i);
        let to = SocketAddr::V4(SocketAddrV4::new(dst, 0));
        self.sock.send_to(&pkt, &to.into())?;
        Ok(true)
    }

    fn poll(&mut self, _: std::time::Instant, _: &mut Tally) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_packet_with_its_checksum_is_zero() {
        let p = echo_request(0x1234, 42);
        assert_eq!(checksum(&p), 0);
        // RFC 1071 example words 0001 f203 f4f5 f6f7 sum to ddf2.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }
}
