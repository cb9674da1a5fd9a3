//! UDP query/answer: every query from a fresh socket (a new conntrack
//! tuple), answered by the in-namespace server except for a fraction left
//! unreplied (UNREPLIED entries under the udp timeout).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

use super::server::{Server, udp_addr};
use super::{Generator, Sources, Tally, TrafficError, source_addr};

pub struct Udp {
    sources: Sources,
    _server: Server,
}

impl Udp {
    pub fn new(sources: Sources, unreplied: f64) -> Result<Self, TrafficError> {
        Ok(Self {
            sources,
            _server: Server::udp(unreplied)?,
        })
    }
}

impl Generator for Udp {
    fn start(&mut self, i: u64) -> Result<bool, std::io::Error> {
        let from = match self.sources {
            Sources::Many => source_addr(i),
            Sources::OneClient => Ipv4Addr::LOCALHOST,
        };
        let s = UdpSocket::bind(SocketAddrV4::new(from, 0))?;
        s.send_to(&i.to_be_bytes(), udp_addr())?;
        // The socket closes here; the answer (if any) still passes
        // conntrack as the reply, then meets a closed port.
        Ok(true)
    }

    fn poll(&mut self, _: std::time::Instant, _: &mut Tally) {}
}
