//! ctlab: build and measure real conntrack tables for the benchmark script.
//!   ctlab populate N [SEED]   insert the benchmark mix into this namespace
//!   ctlab fill N [assured|unassured]  fill with one kind of TCP entry
//!   ctlab bare-dump           dump the table, decode nothing (the kernel's floor)
//!   ctlab flush               delete every entry of this namespace

use anyhow::{Context, Result, bail};
use ctlab::{Mix, generate};
use ctnetlink::{Conntrack, Family};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
        _ => {
            bail!("usage: ctlab populate N [SEED] | fill N [assured|unassured] | bare-dump | flush")
        }
    }
    Ok(())
}
