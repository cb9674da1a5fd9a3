//! Connections held open until the end of the run: keep-alive (one byte
//! every `ping`, echoed by the server) or idle (handshake, then silence,
//! the idle-connection attack against the 5-day ESTABLISHED timeout).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use socket2::Socket;

use super::connect::{self, Connect};
use super::server::Server;
use super::{Generator, Sources, Tally, TrafficError};

pub struct Hold {
    sources: Sources,
    ping: Option<Duration>,
    pending: VecDeque<(Socket, Instant)>,
    open: Vec<Socket>,
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
        Ok(Self {
            sources,
            ping,
            pending: VecDeque::new(),
            open: Vec::new(),
            last_ping: Instant::now(),
            capacity: (super::fd_budget() / 2) as usize,
            _server: Server::tcp(ping.is_some(), scan)?,
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
        let s = connect::start(self.sources, i)?;
        self.pending.push_back((s, Instant::now()));
        Ok(false)
    }

    fn poll(&mut self, now: Instant, tally: &mut Tally) {
        for (s, at) in std::mem::take(&mut self.pending) {
            match connect::check(&s, at, now) {
                Connect::Pending => self.pending.push_back((s, at)),
                Connect::Established => {
                    tally.completed += 1;
                    self.open.push(s);
                }
                Connect::Failed => tally.failed += 1,
            }
        }
        if let Some(ping) = self.ping
            && now.saturating_duration_since(self.last_ping) >= ping
        {
            self.last_ping = now;
            let mut buf = [0u8; 64];
            for mut s in &self.open {
                let _ = s.read(&mut buf);
                let _ = s.write(b"p");
            }
        }
    }

    fn held(&self) -> u64 {
        self.open.len() as u64
    }
}
