//! Non-blocking TCP connects shared by the TCP generators: bind the client
//! address, start the handshake, and later ask whether it finished.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::server::server_addr;
use super::{Sources, source_addr};

/// A connect that has not finished within this long counts as failed and
/// is abandoned before the SYN's first retransmission (1 s), so a dropped
/// SYN costs one attempt, as in the model.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(900);

pub enum Connect {
    Pending,
    Established,
    Failed,
}

/// Start connection number `i` to the in-namespace server.
pub fn start(sources: Sources, i: u64) -> std::io::Result<Socket> {
    start_to(sources, i, server_addr())
}

/// Start connection number `i` to `server`.
pub fn start_to(sources: Sources, i: u64, server: SocketAddr) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_nonblocking(true)?;
    if sources == Sources::Many {
        let a = std::net::SocketAddrV4::new(source_addr(i), 0);
        s.bind(&SockAddr::from(a))?;
    }
    match s.connect(&server.into()) {
        Ok(()) => Ok(s),
        Err(e) if e.raw_os_error() == Some(libc_einprogress()) => Ok(s),
        Err(e) => Err(e),
    }
}

const fn libc_einprogress() -> i32 {
    115 // EINPROGRESS on Linux
}

pub fn check(s: &Socket, started: Instant, now: Instant) -> Connect {
    match s.take_error() {
        Ok(Some(_)) | Err(_) => return Connect::Failed,
        Ok(None) => {}
    }
    if s.peer_addr().is_ok() {
        return Connect::Established;
    }
    if now.saturating_duration_since(started) >= CONNECT_TIMEOUT {
        Connect::Failed
    } else {
        Connect::Pending
    }
}
