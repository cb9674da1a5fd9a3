//! Real traffic generators for the lab: each runs on a thread that has
//! entered a throwaway namespace, paced at a target rate ([`pacer`]),
//! bounded in time and in connections, and reports what it actually sent
//! per second. One file per generator; this module owns the shared loop.

mod connect;
pub mod hold;
pub mod icmp;
pub mod pacer;
pub mod server;
pub mod short;
pub mod synflood;
pub mod udp;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use pacer::Pacer;

/// Errors of a generator: bad limits, or a socket that could not be set up.
/// The fastest flow rate accepted (new flows per second): far above what
/// one loopback generator reaches, low enough that the pacer's burst
/// arithmetic stays exact.
pub const MAX_RATE: f64 = 10_000_000.0;

#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error("rate must be above 0 and at most {MAX_RATE} per second, got {0}")]
    Rate(f64),
    #[error("duration must be between 1 ms and 24 h, got {0:?}")]
    Duration(Duration),
    #[error("unreplied fraction must be within 0..=1, got {0}")]
    Fraction(f64),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> TrafficError {
    move |source| TrafficError::Io { what, source }
}

/// Where client connections come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sources {
    /// Every flow from its own address 127.a.b.c (a >= 1): every flow is a
    /// new conntrack tuple, the count grows exactly at the rate.
    Many,
    /// All from 127.0.0.1: the kernel picks ephemeral ports and reuses
    /// those whose TIME_WAIT entry still exists (the entry is reopened,
    /// KERNEL.md section 12).
    OneClient,
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Kind {
    /// Short TCP connections without keep-alive, closed by the client as
    /// soon as they are established (conntrack ends in TIME_WAIT).
    Short { sources: Sources },
    /// TCP connections held open until the end; each sends one byte every
    /// `ping` and the server echoes it (ASSURED ESTABLISHED).
    KeepAlive { sources: Sources, ping: Duration },
    /// TCP connections held open in silence after the handshake.
    Idle { sources: Sources },
    /// TCP connections held open in silence for `lifetime` after the
    /// handshake, then closed by the client (ESTABLISHED for `lifetime`,
    /// then TIME_WAIT): long-lived connections with a real steady state,
    /// rate x lifetime. Their server listens on [`LIVED_PORT`], so this
    /// runs beside [`Kind::Short`] in one namespace.
    Lived {
        sources: Sources,
        lifetime: Duration,
    },
    /// UDP query/answer; the server leaves `unreplied` of the queries
    /// unanswered (UNREPLIED entries, udp timeout instead of udp_stream).
    Udp { sources: Sources, unreplied: f64 },
    /// ICMP echo requests (raw socket), each with its own id/destination.
    Icmp,
    /// Spoofed SYNs from many source addresses (raw socket, IP_HDRINCL) to a
    /// closed port whose RSTs are dropped before conntrack: SYN_SENT entries
    /// that are never ASSURED. Needs [`Kind::nft_rules`] loaded.
    SynFlood,
}

/// The TCP port of the in-namespace server and of the SYN flood target.
pub const SERVER_PORT: u16 = 8080;
/// The TCP port of [`Kind::Lived`]'s server.
pub const LIVED_PORT: u16 = 8081;
pub const UDP_PORT: u16 = 5353;
pub const FLOOD_PORT: u16 = 9;

impl Kind {
    /// Extra nft rules the namespace needs for this generator (load them
    /// with `Netns::nft` before running), if any.
    pub fn nft_rules(&self) -> Option<String> {
        match self {
            // Raw priority (-300) runs before conntrack (-200): the RST the
            // stack answers to each spoofed SYN never reaches the entry, so
            // it stays SYN_SENT (unreplied) instead of turning CLOSE.
            Kind::SynFlood => Some(format!(
                "table inet ctlab_flood {{\n\
                 chain rawout {{ type filter hook output priority -300; tcp sport {FLOOD_PORT} tcp flags & rst == rst drop; }}\n\
                 }}\n"
            )),
            _ => None,
        }
    }

    pub fn validate(&self) -> Result<(), TrafficError> {
        if let Kind::Udp { unreplied, .. } = self
            && !(0.0..=1.0).contains(unreplied)
        {
            return Err(TrafficError::Fraction(*unreplied));
        }
        Ok(())
    }
}

/// Bounds of a run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Limits {
    /// Target new flows per second.
    pub rate: f64,
    /// Stop after this long.
    pub duration: Duration,
    /// Stop starting flows after this many.
    pub max_flows: u64,
}

impl Limits {
    pub fn validate(&self) -> Result<(), TrafficError> {
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= MAX_RATE) {
            return Err(TrafficError::Rate(self.rate));
        }
        if self.duration < Duration::from_millis(1) || self.duration > Duration::from_secs(86_400) {
            return Err(TrafficError::Duration(self.duration));
        }
        Ok(())
    }
}

/// What a generator actually did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Report {
    /// Flows started in each second of the run (index = second).
    pub started_per_second: Vec<u64>,
    /// Flows that failed in each second (send error, connect timeout or
    /// refusal: what a dropped SYN looks like from the client).
    pub failed_per_second: Vec<u64>,
    pub started: u64,
    /// Flows that completed their exchange (handshake seen, datagram sent).
    pub completed: u64,
    pub failed: u64,
    /// Sends the pacer forgave because the generator fell too far behind.
    pub skipped: u64,
    /// Connections still open at the end (keep-alive and idle; at most
    /// [`fd_budget`] / 2: beyond it a start fails).
    pub held: u64,
    pub elapsed_secs: f64,
}

impl Report {
    fn bump(v: &mut Vec<u64>, at: Duration) {
        let s = at.as_secs() as usize;
        if v.len() <= s {
            v.resize(s + 1, 0);
        }
        v[s] += 1;
    }

    /// Achieved rate over the run.
    pub fn rate(&self) -> f64 {
        if self.elapsed_secs > 0.0 {
            self.started as f64 / self.elapsed_secs
        } else {
            0.0
        }
    }
}

/// What a generator's poll found since the last one.
#[derive(Debug, Default)]
pub struct Tally {
    pub completed: u64,
    pub failed: u64,
}

/// One generator: start a flow, then housekeeping between sends.
pub(crate) trait Generator {
    /// Start flow number `i`. `Ok(true)`: complete already (a datagram
    /// went out); `Ok(false)`: pending, [`Generator::poll`] reports it.
    fn start(&mut self, i: u64) -> Result<bool, std::io::Error>;
    fn poll(&mut self, now: Instant, tally: &mut Tally);
    /// Connections held open right now.
    fn held(&self) -> u64 {
        0
    }
}

/// The address of client number `i` in [`Sources::Many`] mode: 127.a.b.c
/// with a, b, c in 1..=254 (never 127.0.0.1, the server), 16.3 million
/// distinct before wrapping.
pub fn source_addr(i: u64) -> Ipv4Addr {
    let n = i % (254 * 254 * 254);
    let c = (n % 254) as u8 + 1;
    let b = ((n / 254) % 254) as u8 + 1;
    let a = (n / (254 * 254)) as u8 + 1;
    Ipv4Addr::new(127, a, b, c)
}

/// Most open file descriptors a held-connection generator may use: each
/// connection costs two (client and server end, both in this process).
pub fn fd_budget() -> u64 {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1024);
    soft.saturating_sub(256)
}

/// Run `kind` within `limits` on the calling thread, which must already be
/// inside the target namespace (sockets stay bound to it). Returns early
/// when `stop` becomes true (Ctrl-C). Held connections close at the end.
pub fn run(kind: &Kind, limits: &Limits, stop: &AtomicBool) -> Result<Report, TrafficError> {
    run_notify(kind, limits, stop, || {})
}

/// [`run`], calling `started` once the servers are up, right before the
/// first flow: the instant the report's second 0 begins (a sampler aligns
/// its clock on it; setting up the servers takes tens of ms).
pub fn run_notify(
    kind: &Kind,
    limits: &Limits,
    stop: &AtomicBool,
    started: impl FnOnce(),
) -> Result<Report, TrafficError> {
    kind.validate()?;
    limits.validate()?;
    let mut g: Box<dyn Generator> = match kind {
        Kind::Short { sources } => Box::new(short::Short::new(*sources)?),
        Kind::KeepAlive { sources, ping } => Box::new(hold::Hold::new(*sources, Some(*ping))?),
        Kind::Idle { sources } => Box::new(hold::Hold::new(*sources, None)?),
        Kind::Lived { sources, lifetime } => Box::new(hold::Hold::lived(*sources, *lifetime)?),
        Kind::Udp { sources, unreplied } => Box::new(udp::Udp::new(*sources, *unreplied)?),
        Kind::Icmp => Box::new(icmp::Icmp::new()?),
        Kind::SynFlood => Box::new(synflood::SynFlood::new()?),
    };
    started();
    Ok(drive(g.as_mut(), limits, stop))
}

fn drive(g: &mut dyn Generator, limits: &Limits, stop: &AtomicBool) -> Report {
    // Validated by the caller.
    let mut pacer = Pacer::with_rate(limits.rate).unwrap_or_else(|| {
        Pacer::new(1.0, 1, 1).unwrap_or_else(|| unreachable!("constant pacer is valid"))
    });
    let mut r = Report::default();
    let start = Instant::now();
    let mut tally = Tally::default();
    loop {
        let now = start.elapsed();
        if stop.load(Ordering::Relaxed) || now >= limits.duration {
            break;
        }
        let room = limits.max_flows.saturating_sub(r.started);
        let n = if room > 0 {
            pacer.due(now).min(room)
        } else {
            0
        };
        for _ in 0..n {
            let i = r.started;
            r.started += 1;
            let started = g.start(i);
            // Stamped when the flow's first packet has passed conntrack (the
            // send returned), not when the batch was due: a stall inside a
            // batch must not put flows into a second they missed.
            let at = start.elapsed();
            Report::bump(&mut r.started_per_second, at);
            match started {
                Ok(true) => r.completed += 1,
                Ok(false) => {}
                Err(_) => {
                    r.failed += 1;
                    Report::bump(&mut r.failed_per_second, at);
                }
            }
        }
        g.poll(Instant::now(), &mut tally);
        r.completed += std::mem::take(&mut tally.completed);
        for _ in 0..std::mem::take(&mut tally.failed) {
            r.failed += 1;
            Report::bump(&mut r.failed_per_second, start.elapsed());
        }
        let wait = pacer.wait(start.elapsed()).min(Duration::from_millis(2));
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
    r.elapsed_secs = start.elapsed().as_secs_f64();
    r.skipped = pacer.skipped();
    r.held = g.held();
    let secs = r.elapsed_secs.ceil() as usize;
    r.started_per_second
        .resize(secs.max(r.started_per_second.len()), 0);
    r.failed_per_second.resize(r.started_per_second.len(), 0);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_are_distinct_and_never_the_server() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..200_000 {
            let a = source_addr(i);
            assert_ne!(a, Ipv4Addr::LOCALHOST);
            assert!(a.octets()[1] >= 1 && a.octets()[3] >= 1 && a.octets()[3] <= 254);
            assert!(seen.insert(a));
        }
    }

    #[test]
    fn bad_limits_are_refused() {
        let ok = Limits {
            rate: 100.0,
            duration: Duration::from_secs(1),
            max_flows: 10,
        };
        assert!(ok.validate().is_ok());
        for rate in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            assert!(Limits { rate, ..ok }.validate().is_err());
        }
        assert!(
            Limits {
                duration: Duration::ZERO,
                ..ok
            }
            .validate()
            .is_err()
        );
        assert!(
            Limits {
                duration: Duration::from_secs(90_000),
                ..ok
            }
            .validate()
            .is_err()
        );
        let udp = Kind::Udp {
            sources: Sources::Many,
            unreplied: 1.5,
        };
        assert!(udp.validate().is_err());
    }

    struct Fake(u64);
    impl Generator for Fake {
        fn start(&mut self, _: u64) -> Result<bool, std::io::Error> {
            self.0 += 1;
            Ok(true)
        }
        fn poll(&mut self, _: Instant, _: &mut Tally) {}
    }

    #[test]
    fn drive_respects_the_flow_bound() {
        let stop = AtomicBool::new(false);
        let mut g = Fake(0);
        let r = drive(
            &mut g,
            &Limits {
                rate: 100_000.0,
                duration: Duration::from_millis(300),
                max_flows: 500,
            },
            &stop,
        );
        assert_eq!(r.started, 500);
        assert_eq!(g.0, 500);
        assert_eq!(r.started_per_second.iter().sum::<u64>(), 500);
    }
}
