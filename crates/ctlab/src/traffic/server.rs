//! The in-namespace servers the generators talk to: a TCP server on
//! 127.0.0.1:SERVER_PORT (or another port, to run beside it; closes when the client closes, optionally echoes)
//! and a UDP server on 127.0.0.1:UDP_PORT answering all but a fraction of
//! queries. Each runs on its own thread until dropped.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::{SERVER_PORT, TrafficError, UDP_PORT, io};

/// A server thread, stopped and joined on drop.
pub struct Server {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

pub fn server_addr() -> SocketAddr {
    addr(SERVER_PORT)
}

/// 127.0.0.1:`port`.
pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

pub fn udp_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, UDP_PORT))
}

fn listener(port: u16) -> Result<TcpListener, TrafficError> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .map_err(io("server socket"))?;
    s.set_reuse_address(true).map_err(io("SO_REUSEADDR"))?;
    s.bind(&addr(port).into())
        .map_err(io("binding the TCP server's 127.0.0.1 port"))?;
    s.listen(4096).map_err(io("listen"))?;
    s.set_nonblocking(true).map_err(io("O_NONBLOCK"))?;
    Ok(s.into())
}

impl Server {
    /// TCP server: accepts everything; closes a connection when its client
    /// closes; echoes what it reads when `echo`. Open connections are
    /// scanned every `scan` (short for short connections, long for many
    /// held ones).
    pub fn tcp(echo: bool, scan: Duration) -> Result<Self, TrafficError> {
        Self::tcp_on(SERVER_PORT, echo, scan)
    }

    /// [`Server::tcp`] on 127.0.0.1:`port`.
    pub fn tcp_on(port: u16, echo: bool, scan: Duration) -> Result<Self, TrafficError> {
        let l = listener(port)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("lab-tcp-server".into())
            .spawn(move || tcp_loop(&l, echo, scan, &flag))
            .map_err(io("spawning the server thread"))?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }

    /// UDP server answering each query except an `unreplied` fraction
    /// (spread evenly: query k is left unanswered when floor((k+1) f) >
    /// floor(k f)).
    pub fn udp(unreplied: f64) -> Result<Self, TrafficError> {
        let s = UdpSocket::bind(udp_addr()).map_err(io("binding udp 127.0.0.1:5353"))?;
        s.set_nonblocking(true).map_err(io("O_NONBLOCK"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("lab-udp-server".into())
            .spawn(move || udp_loop(&s, unreplied, &flag))
            .map_err(io("spawning the server thread"))?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

fn tcp_loop(l: &TcpListener, echo: bool, scan: Duration, stop: &AtomicBool) {
    let mut open: Vec<TcpStream> = Vec::new();
    let mut last_scan = Instant::now();
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        let mut accepted = 0;
        loop {
            match l.accept() {
                Ok((c, _)) => {
                    if c.set_nonblocking(true).is_ok() {
                        open.push(c);
                    }
                    accepted += 1;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if last_scan.elapsed() >= scan {
            last_scan = Instant::now();
            open.retain_mut(|c| {
                loop {
                    match c.read(&mut buf) {
                        Ok(0) => return false,
                        Ok(n) => {
                            if echo {
                                let _ = c.write(&buf[..n]);
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return false,
                    }
                }
            });
        }
        if accepted == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn udp_loop(s: &UdpSocket, unreplied: f64, stop: &AtomicBool) {
    let mut k: u64 = 0;
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        match s.recv_from(&mut buf) {
            Ok((n, from)) => {
                let skip = ((k + 1) as f64 * unreplied).floor() > (k as f64 * unreplied).floor();
                k += 1;
                if !skip {
                    let _ = s.send_to(&buf[..n], from);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}
