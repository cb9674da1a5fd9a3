//! Connections held open: until the end of the run, keep-alive (one byte
//! every `ping`, echoed by the server) or idle (handshake, then silence,
//! the idle-connection attack against the 5-day ESTABLISHED timeout); or
//! idle for a fixed lifetime, then closed by the client (long-lived
//! connections that come and go: a steady state of rate x lifetime).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use socket2::Socket;

use super::connect::{self, Connect};
use super::server::{self, Server};
use super::{Generator, LIVED_PORT, SERVER_PORT, Sources, Tally, TrafficError};

pub struct Hold {
    sources: Sources,
    ping: Option<Duration>,
    /// Close each connection this long after its handshake; None: hold
    /// until the end.
    lifetime: Option<Duration>,
    server: SocketAddr,
    pending: VecDeque<(Socket, Instant)>,
    /// Open connections with the time their handshake was seen, oldest first.
    open: VecDeque<(Socket, Instant)>,
    last_ping: Instant,
    /// Connections (open or connecting) this process can hold with its
    /// file descriptors: two each. A start beyond it fails.
    capacity: usize,
    _server: Server,
}

impl Hold {
    pub fn new(sources: Sources, ping: Option<Duration>) -> Result<Self, TrafficError> {
        let scan = ping.map_or(Duration::from_millis(200), |p| {
            p.min(Duration::from_millis(200))
        });
        Self::build(sources, ping, None, SERVER_PORT, scan)
    }

    /// Idle connections closed `lifetime` after their handshake, to their
    /// own server on [`LIVED_PORT`].
    pub fn lived(sources: Sources, lifetime: Duration) -> Result<Self, TrafficError> {
        // The server closes its end within a scan (200 ms) of the
        // client's FIN: CLOSE_WAIT that long, then LAST_ACK, TIME_WAIT.
        Self::build(
            sources,
            None,
            Some(lifetime),
            LIVED_PORT,
            Duration::from_millis(200),
        )
    }

    fn build(
        sources: Sources,
        ping: Option<Duration>,
        lifetime: Option<Duration>,
        port: u16,
        scan: Duration,
    ) -> Result<Self, TrafficError> {
        Ok(Self {
            sources,
            ping,
            lifetime,
            server: server::addr(port),
            pending: VecDeque::new(),
            open: VecDeque::new(),
            last_ping: Instant::now(),
            capacity: (super::fd_budget() / 2) as usize,
            _server: Server::tcp_on(port, ping.is_some(), scan)?,
        })
    }
}

impl Generator for Hold {
    fn start(&mut self, i: u64) -> Result<bool, std::io::Error> {
        if self.open.len() + self.pending.len() >= self.capacity {
            return Err(std::io::Error::other(
                "file descriptor budget reached (RLIMIT_NOFILE)",
            ));
        }
        let s = connect::start_to(self.sources, i, self.server)?;
        self.pending.push_back((s, Instant::now()));
        Ok(false)
    }

    fn poll(&mut self, now: Instant, tally: &mut Tally) {
        for (s, at) in std::mem::take(&mut self.pending) {
            match connect::check(&s, at, now) {
                Connect::Pending => self.pending.push_back((s, at)),
                Connect::Established => {
                    tally.completed += 1;
                    self.open.push_back((s, now));
                }
                Connect::Failed => tally.failed += 1,
            }
        }
        if let Some(lifetime) = self.lifetime {
            // Oldest first: dropping a socket closes it (FIN from the client).
            while self
                .open
                .front()
                .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= lifetime)
            {
                self.open.pop_front();
            }
        }
        if let Some(ping) = self.ping
            && now.saturating_duration_since(self.last_ping) >= ping
        {
            self.last_ping = now;
            let mut buf = [0u8; 64];
            for (s, _) in &self.open {
                let mut s: &Socket = s;
                let _ = s.read(&mut buf);
                let _ = s.write(b"p");
            }
        }
    }

    fn held(&self) -> u64 {
        self.open.len() as u64
    }
}
