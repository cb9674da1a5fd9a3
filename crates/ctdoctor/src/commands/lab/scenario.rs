//! The scenarios `lab` runs: the repository's scenarios/*.toml (ctsim's
//! built-ins, the catalogue `simulate --scenario` reads: one name, one
//! workload) or a TOML file, each turned into a traffic generator, its
//! default rate, the headroom left in the table and the namespace's own
//! timeouts. A scenario with no generator mapping is refused by name.

use std::time::Duration;

use ctcore::timeouts::Timeout;
use ctlab::traffic::{Kind, Sources};
use serde::Serialize;

/// A scenario as the lab runs it: traffic, its default rate, the headroom
/// left in the table, and the namespace's own timeouts.
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

/// The built-in scenarios the lab can run (one traffic class with a
/// generator), in the catalogue's order.
pub fn runnable() -> Vec<&'static str> {
    ctsim::Scenario::builtin_names()
        .iter()
        .copied()
        .filter(|n| ctsim::Scenario::builtin(n).is_some_and(|s| from_sim(&s).is_ok()))
        .collect()
}

/// A scenario (built-in or TOML file, crates/ctsim) as a lab run: its one traffic class becomes the generator, its table max the
/// headroom, its timeout overrides the namespace's timeouts. Lifecycles
/// and arrivals the generators cannot produce are refused by name.
pub fn from_sim(sim: &ctsim::Scenario) -> Result<Scenario, String> {
    use ctsim::{Arrival, Lifecycle};
    let [class] = sim.classes.as_slice() else {
        return Err(format!(
            "it has {} traffic classes; the lab runs exactly one",
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

/// A built-in scenario by name, or a TOML file (a path ending in .toml
/// or containing '/'), as a lab run; the error says why the lab cannot run
/// it (unknown, unreadable, invalid, or no generator for its traffic).
pub fn resolve(host: &cthost::Host, name: &str) -> Result<Scenario, String> {
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
            let lab = runnable();
            let other: Vec<&str> = ctsim::Scenario::builtin_names()
                .iter()
                .copied()
                .filter(|n| !lab.contains(n))
                .collect();
            format!(
                "unknown scenario {name:?}; lab runs: {} (or a FILE.toml); simulate only: {}",
                lab.join(", "),
                other.join(", ")
            )
        })?
    };
    from_sim(&sim).map_err(|e| {
        format!(
            "lab cannot run scenario {name:?}: {e}. Built-in scenarios lab runs: {}",
            runnable().join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lab's scenarios as they were built into lab before they became
    /// scenarios/*.toml (issue 17): the same generator, rate, headroom,
    /// run length and namespace timeouts.
    #[test]
    fn lab_scenarios_are_scenario_files_with_their_old_workloads() {
        let many = Sources::Many;
        let minute = Duration::from_secs(60);
        let tw = vec![(Timeout::TcpTimeWait, 600)];
        // name, generator, rate, headroom, the namespace's timeouts
        type Case = (&'static str, Kind, f64, u64, Vec<(Timeout, u32)>);
        let cases: [Case; 7] = [
            (
                "short-connections",
                Kind::Short { sources: many },
                1000.0,
                20_000,
                tw.clone(),
            ),
            (
                "short-connections-one-client",
                Kind::Short {
                    sources: Sources::OneClient,
                },
                1000.0,
                20_000,
                tw,
            ),
            ("syn-flood", Kind::SynFlood, 2000.0, 20_000, vec![]),
            (
                "idle-attack",
                Kind::Idle { sources: many },
                500.0,
                5_000,
                vec![],
            ),
            (
                "keepalive",
                Kind::KeepAlive {
                    sources: many,
                    ping: Duration::from_secs(1),
                },
                200.0,
                5_000,
                vec![],
            ),
            (
                "udp-query",
                Kind::Udp {
                    sources: many,
                    unreplied: 0.2,
                },
                1000.0,
                20_000,
                vec![],
            ),
            ("icmp-echo", Kind::Icmp, 1000.0, 20_000, vec![]),
        ];
        let host = cthost::Host::system();
        for (name, kind, rate, headroom, timeouts) in cases {
            let sc = resolve(&host, name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(sc.name, name);
            assert_eq!(sc.kind, kind, "{name}");
            assert_eq!(
                (sc.rate, sc.headroom, sc.duration),
                (rate, headroom, minute),
                "{name}"
            );
            assert_eq!(sc.timeouts, timeouts, "{name}");
            assert!(!sc.about.is_empty(), "{name}");
            sc.kind.validate().expect("valid kind");
            assert!(runnable().contains(&name), "{name}");
        }
    }

    #[test]
    fn scenarios_without_a_generator_are_refused_by_name() {
        let host = cthost::Host::system();
        for (name, why) in [
            ("syn-flood-web", "2 traffic classes"),
            ("idle-attack-web", "2 traffic classes"),
            ("nat-gateway", "traffic classes"),
            ("udp-flood", "traffic classes"),
        ] {
            let e = resolve(&host, name).expect_err(name);
            assert!(
                e.contains(&format!("lab cannot run scenario \"{name}\"")),
                "{e}"
            );
            assert!(e.contains(why), "{e}");
            assert!(e.contains("short-connections"), "{e}");
            assert!(!runnable().contains(&name), "{name}");
        }
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
