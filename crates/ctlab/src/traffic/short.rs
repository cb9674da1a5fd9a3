//! Short TCP connections without keep-alive: connect, and close from the
//! client as soon as the handshake is done; the server closes on EOF. Each
//! conntrack entry ends in TIME_WAIT (the runbook's load test).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use socket2::Socket;

use super::connect::{self, Connect};
use super::server::Server;
use super::{Generator, Sources, Tally, TrafficError};

pub struct Short {
    sources: Sources,
    pending: VecDeque<(Socket, Instant)>,
    _server: Server,
}

impl Short {
    pub fn new(sources: Sources) -> Result<Self, TrafficError> {
        Ok(Self {
            sources,
            pending: VecDeque::new(),
            _server: Server::tcp(false, Duration::from_millis(2))?,
        })
    }
}

impl Generator for Short {
    fn start(&mut self, i: u64) -> Result<bool, std::io::Error> {
        let s = connect::start(self.sources, i)?;
        self.pending.push_back((s, Instant::now()));
        Ok(false)
    }

    fn poll(&mut self, now: Instant, tally: &mut Tally) {
        self.pending
            .retain(|(s, at)| match connect::check(s, *at, now) {
                Connect::Pending => true,
                // Dropping the socket closes it: FIN from the client.
                Connect::Established => {
                    tally.completed += 1;
                    false
                }
                Connect::Failed => {
                    tally.failed += 1;
                    false
                }
            });
    }
}
