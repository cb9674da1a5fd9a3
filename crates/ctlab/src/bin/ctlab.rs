//! ctlab: build and measure real conntrack tables for the benchmark script.
//!   ctlab populate N [SEED]   insert the benchmark mix into this namespace
//!   ctlab fill N [assured|unassured]  fill with one kind of TCP entry
//!   ctlab bare-dump           dump the table, decode nothing (the kernel's floor)
//!   ctlab flush               delete every entry of this namespace
//!   ctlab listen SECONDS      count ctnetlink events (NEW/UPDATE/DESTROY,
//!                             lost) for SECONDS; print them as JSON with the
//!                             listener's CPU time (for scripts/bench-events)
//!   ctlab udp RATE SECONDS    new UDP flows at RATE/s (each from its own
//!                             127.a.b.c, unanswered) for SECONDS; print the
//!                             rate achieved (for scripts/bench-export)
//!   ctlab abuse ADDR [--seconds N] [--idle N] [--burst N] [--reopen N]
//!               [--slowloris N] [--oversized N] [--sources N] [--pid PID]
//!                             flood an exporter at ADDR while scraping it
//!                             once a second; print the report as JSON (for
//!                             scripts/bench-export-abuse)

use anyhow::{Context, Result, bail};
use ctlab::{Mix, generate};
use ctnetlink::{Conntrack, Family};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("abuse") {
        return abuse(&args[1..]);
    }
    let mut ct = Conntrack::open()?;
    match args.first().map(String::as_str) {
        Some("populate") => {
            let n: usize = args.get(1).context("populate N [SEED]")?.parse()?;
            let seed: u64 = args.get(2).map_or(Ok(1), |s| s.parse())?;
            let mix = Mix {
                timeout: 3600,
                sources: 50_000,
                exotic: false,
            };
            let t = std::time::Instant::now();
            let mut done = 0usize;
            // Generate in slices to keep memory flat for millions of entries.
            let entries = generate(n, seed, mix);
            for chunk in entries.chunks(65_536) {
                let r = ct.create(chunk)?;
                if r.failures() > 0 {
                    bail!(
                        "{} inserts failed: {:?} (errno, count)",
                        r.failures(),
                        r.failed
                    );
                }
                done += chunk.len();
            }
            eprintln!(
                "inserted {done} entries in {:.2} s",
                t.elapsed().as_secs_f64()
            );
        }
        Some("fill") => {
            let n: usize = args.get(1).context("fill N assured|unassured")?.parse()?;
            let assured = args.get(2).map(String::as_str) != Some("unassured");
            let r = ct.create(&ctlab::fill(n, assured))?;
            eprintln!(
                "inserted {} entries; failed (errno, count): {:?}",
                r.ok, r.failed
            );
        }
        Some("bare-dump") => {
            let (msgs, bytes) = ct.dump_raw(Family::Any)?;
            println!("{msgs} messages, {bytes} bytes");
        }
        Some("flush") => ct.flush()?,
        Some("listen") => listen(args.get(1).context("listen SECONDS")?.parse()?)?,
        Some("udp") => {
            let rate: f64 = args.get(1).context("udp RATE SECONDS")?.parse()?;
            let secs: f64 = args.get(2).context("udp RATE SECONDS")?.parse()?;
            let kind = ctlab::traffic::Kind::Udp {
                sources: ctlab::traffic::Sources::Many,
                unreplied: 1.0,
            };
            let limits = ctlab::traffic::Limits {
                rate,
                duration: std::time::Duration::from_secs_f64(secs),
                max_flows: u64::MAX,
            };
            let stop = std::sync::atomic::AtomicBool::new(false);
            let r = ctlab::traffic::run(&kind, &limits, &stop)?;
            println!("{{\"rate\":{:.1},\"started\":{}}}", r.rate(), r.started);
        }
        _ => {
            bail!(
                "usage: ctlab populate N [SEED] | fill N [assured|unassured] | bare-dump | flush | listen SECONDS | udp RATE SECONDS"
            )
        }
    }
    Ok(())
}

/// `ctlab abuse ADDR [--flag N]...`: the full plan with its numbers changed.
fn abuse(args: &[String]) -> Result<()> {
    let target = args
        .first()
        .context("abuse ADDR [--seconds N] [--idle N] ...")?
        .parse()
        .context("ADDR")?;
    let mut plan = ctlab::abuse::Plan::full(target);
    for pair in args[1..].chunks(2) {
        let [flag, value] = pair else {
            bail!("{pair:?}: every flag takes a number");
        };
        let n: u64 = value.parse().with_context(|| format!("{flag} {value}"))?;
        let count = usize::try_from(n)?;
        match flag.as_str() {
            "--seconds" => plan.duration = std::time::Duration::from_secs(n),
            "--idle" => plan.idle = count,
            "--burst" => plan.burst_per_s = u32::try_from(n)?,
            "--reopen" => plan.reopen_per_s = u32::try_from(n)?,
            "--slowloris" => plan.slowloris = count,
            "--oversized" => plan.oversized = count,
            "--pid" => plan.watch_pid = Some(u32::try_from(n)?),
            // 127.0.0.2, .3, ...: more ephemeral ports than one address has.
            "--sources" => {
                plan.sources = (0..n.min(250))
                    .map(|i| std::net::IpAddr::from([127, 0, 0, 2 + i as u8]))
                    .collect();
            }
            _ => bail!("unknown flag {flag}"),
        }
    }
    let report = ctlab::abuse::run(&plan)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name: utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    // USER_HZ is 100 on Linux.
    f.iter().sum::<f64>() / 100.0
}

fn listen(seconds: f64) -> Result<()> {
    use ctnetlink::{EventKind, Events, Groups};
    let mut ev = Events::subscribe(Groups::ALL)?;
    let (mut new, mut update, mut destroy, mut lost, mut malformed) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut first, mut last) = (None, None);
    let t0 = std::time::Instant::now();
    let cpu0 = cpu_seconds();
    let end = std::time::Duration::from_secs_f64(seconds);
    while t0.elapsed() < end {
        let left = end.saturating_sub(t0.elapsed());
        let p = ev.poll(
            left.min(std::time::Duration::from_millis(100)),
            |k, _| match k {
                EventKind::New => new += 1,
                EventKind::Update => update += 1,
                EventKind::Destroy => destroy += 1,
            },
        )?;
        if p.events > 0 {
            first.get_or_insert(t0.elapsed().as_secs_f64());
            last = Some(t0.elapsed().as_secs_f64());
        }
        lost += u64::from(p.lost);
        malformed += p.malformed;
    }
    let busy = match (first, last) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    println!(
        "{{\"new\":{new},\"update\":{update},\"destroy\":{destroy},\"lost_reports\":{lost},\"malformed\":{malformed},\"receive_buffer\":{},\"events_span_s\":{busy:.3},\"cpu_s\":{:.3}}}",
        ev.receive_buffer(),
        cpu_seconds() - cpu0
    );
    Ok(())
}
