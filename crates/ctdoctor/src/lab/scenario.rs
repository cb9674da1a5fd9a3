//! The scenarios `lab` runs: a lab scenario is a traffic generator, its
//! default rate, the headroom left in the table and the namespace's own
//! timeouts, resolved from a name or a `simulate` scenario.

use std::time::Duration;

use ctcore::timeouts::Timeout;
use ctlab::traffic::{Kind, Sources};
use serde::Serialize;

/// A built-in lab scenario: traffic, its default rate, the headroom left
/// in the table, and the namespace's own timeouts.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub about: String,
    pub kind: Kind,
    pub rate: f64,
    pub headroom: u64,
    pub duration: Duration,
    /// The namespace's timeout overrides, in seconds.
    pub timeouts: Vec<(Timeout, u32)>,
}

pub const SCENARIOS: &[&str] = &[
    "short-connections",
    "short-connections-one-client",
    "syn-flood",
    "idle-attack",
    "keepalive",
    "udp-query",
    "icmp-echo",
];

pub fn scenario(name: &str) -> Option<Scenario> {
    let s = |about: &str, kind, rate, headroom, timeouts| Scenario {
        name: name.to_string(),
        about: about.to_string(),
        kind,
        rate,
        headroom,
        duration: Duration::from_secs(60),
        timeouts,
    };
    Some(match name {
        "short-connections" => s(
            "the runbook's load test: short TCP connections without keep-alive from many \
             source addresses, closed by the client, TIME_WAIT raised to 600 s",
            Kind::Short {
                sources: Sources::Many,
            },
            1000.0,
            20_000,
            vec![(Timeout::TcpTimeWait, 600)],
        ),
        "short-connections-one-client" => s(
            "the same load from one client address: ephemeral ports get reused and \
             reopen their TIME_WAIT entries, so the table fills more slowly",
            Kind::Short {
                sources: Sources::OneClient,
            },
            1000.0,
            20_000,
            vec![(Timeout::TcpTimeWait, 600)],
        ),
        "syn-flood" => s(
            "spoofed SYNs from many addresses: unreplied SYN_SENT entries, never ASSURED, \
             which early_drop may evict",
            Kind::SynFlood,
            2000.0,
            20_000,
            vec![],
        ),
        "idle-attack" => s(
            "TCP handshakes then silence, held against the 5-day ESTABLISHED timeout",
            Kind::Idle {
                sources: Sources::Many,
            },
            500.0,
            5_000,
            vec![],
        ),
        "keepalive" => s(
            "keep-alive TCP connections held open, one byte a second each way",
            Kind::KeepAlive {
                sources: Sources::Many,
                ping: Duration::from_secs(1),
            },
            200.0,
            5_000,
            vec![],
        ),
        "udp-query" => s(
            "UDP query/answer from many addresses, 20% unreplied (udp timeout 30 s)",
            Kind::Udp {
                sources: Sources::Many,
                unreplied: 0.2,
            },
            1000.0,
            20_000,
            vec![],
        ),
        "icmp-echo" => s(
            "ICMP echo requests, each a new entry (icmp timeout 30 s)",
            Kind::Icmp,
            1000.0,
            20_000,
            vec![],
        ),
        _ => return None,
    })
}

/// A `simulate` scenario (built-in name or TOML file, crates/ctsim) as a
/// lab run: its one traffic class becomes the generator, its table max the
/// headroom, its timeout overrides the namespace's timeouts. Lifecycles
/// and arrivals the generators cannot produce are refused by name.
pub fn from_sim(sim: &ctsim::Scenario) -> Result<Scenario, String> {
    use ctsim::{Arrival, Lifecycle};
    let [class] = sim.classes.as_slice() else {
        return Err(format!(
            "scenario {:?} has {} traffic classes; the lab runs exactly one",
            sim.name,
            sim.classes.len()
        ));
    };
    let sources = if class.sources.clients == 1 && !class.sources.spoofed {
        Sources::OneClient
    } else {
        Sources::Many
    };
    let kind = match &class.lifecycle {
        Lifecycle::ShortHttp { .. } => Kind::Short { sources },
        Lifecycle::Keepalive { .. } => Kind::KeepAlive {
            sources,
            ping: Duration::from_secs(1),
        },
        Lifecycle::Idle { .. } => Kind::Idle { sources },
        Lifecycle::Dns { unreplied, .. } => Kind::Udp {
            sources,
            unreplied: *unreplied,
        },
        Lifecycle::Icmp { .. } => Kind::Icmp,
        Lifecycle::SynFlood => Kind::SynFlood,
        other => {
            return Err(format!(
                "class {:?}: the lab has no real-traffic generator for {other:?}",
                class.name
            ));
        }
    };
    let rate = match class.arrival {
        Arrival::Constant { rate } | Arrival::Poisson { rate } => rate,
        _ => {
            return Err(format!(
                "class {:?}: the lab paces flows at a constant rate; use a constant or \
                 poisson arrival (or --rate with a lab scenario)",
                class.name
            ));
        }
    };
    let mut timeouts = Vec::new();
    for (k, v) in &sim.table.timeouts {
        let name = Timeout::from_name(k)
            .ok_or_else(|| format!("timeout {k:?} is not one the lab sets"))?;
        if !(1.0..=f64::from(u32::MAX)).contains(v) {
            return Err(format!("timeout {k} = {v}: out of range"));
        }
        timeouts.push((name, v.round() as u32));
    }
    let duration = sim
        .duration_s
        .filter(|d| d.is_finite() && *d > 0.0 && *d <= 3600.0)
        .map_or(Duration::from_secs(60), Duration::from_secs_f64);
    Ok(Scenario {
        name: sim.name.clone(),
        about: sim.description.clone(),
        kind,
        rate,
        headroom: sim.table.max.max(1),
        duration,
        timeouts,
    })
}

/// The lab's own scenarios by name, else a `simulate` scenario: a TOML file
/// (a path ending in .toml or containing '/') or a built-in name.
pub fn resolve(host: &cthost::Host, name: &str) -> Result<Scenario, String> {
    if let Some(sc) = scenario(name) {
        return Ok(sc);
    }
    let sim = if name.ends_with(".toml") || name.contains('/') {
        // The user's file, read through the host like every other file (lab
        // runs on the real host only, so its root is `/`).
        let path = std::path::absolute(name).map_err(|e| format!("{name}: {e}"))?;
        let text = host
            .root()
            .read(&path.to_string_lossy(), "read permission")
            .map_err(|e| {
                // Named as the user wrote it, not as made absolute.
                cthost::source::Unreadable {
                    what: name.to_string(),
                    ..e
                }
                .to_string()
            })?;
        ctsim::Scenario::from_toml(&text).map_err(|e| format!("{name}: {e}"))?
    } else {
        ctsim::Scenario::builtin(name).ok_or_else(|| {
            format!(
                "unknown scenario {name:?}; lab: {}; simulate: {}",
                SCENARIOS.join(", "),
                ctsim::Scenario::builtin_names().join(", ")
            )
        })?
    };
    from_sim(&sim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_scenario_exists() {
        for n in SCENARIOS {
            let s = scenario(n).expect("built in");
            assert_eq!(s.name, *n);
            assert!(s.rate > 0.0 && s.headroom > 0);
            s.kind.validate().expect("valid kind");
        }
        assert!(scenario("nope").is_none());
    }

    #[test]
    fn simulate_scenarios_become_lab_runs() {
        let host = cthost::Host::system();
        let sc = resolve(&host, "nginx-short-upstream").expect("one short-http class");
        assert!(matches!(
            sc.kind,
            Kind::Short {
                sources: Sources::Many
            }
        ));
        assert_eq!((sc.rate, sc.headroom), (2400.0, 262_144));
        let toml = "name = \"t\"\n[table]\nmax = 3000\nbuckets = 1024\n\
                    timeouts = { tcp_timeout_time_wait = 600 }\n[[class]]\nname = \"c\"\n\
                    arrival = { kind = \"constant\", rate = 500 }\n\
                    lifecycle = { kind = \"short-http\" }\nsources = { clients = 1 }\n";
        let sim = ctsim::Scenario::from_toml(toml).expect("valid");
        let sc = from_sim(&sim).expect("convertible");
        assert!(matches!(
            sc.kind,
            Kind::Short {
                sources: Sources::OneClient
            }
        ));
        assert_eq!(sc.timeouts, vec![(Timeout::TcpTimeWait, 600)]);
        assert_eq!(sc.headroom, 3000);
        // More than one class, or a lifecycle without a generator: refused.
        let e = resolve(&host, "nat-gateway").expect_err("several classes");
        assert!(e.contains("traffic classes"), "{e}");
        let flood = toml.replace("{ kind = \"short-http\" }", "{ kind = \"udp-flood\" }");
        let sim = ctsim::Scenario::from_toml(&flood).expect("valid");
        assert!(
            from_sim(&sim)
                .expect_err("no generator")
                .contains("no real-traffic generator")
        );
        let e = resolve(&host, "no-such").expect_err("unknown");
        assert!(
            e.contains("unknown scenario") && e.contains("nginx-short-upstream"),
            "{e}"
        );
        assert!(resolve(&host, "/nonexistent/x.toml").is_err());
    }
}
