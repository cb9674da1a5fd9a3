//! Counting a BPF hash map's keys: BPF_MAP_LOOKUP_BATCH against
//! BPF_MAP_GET_NEXT_KEY on the same map, in the same run (root needed).
//! The map has Cilium's CT shape (14-byte keys, 56-byte values); it lives
//! only as long as this process (never pinned).
//!
//!     cargo run --release -p cthost --example bpf_count_bench [-- ENTRIES [RUNS]]

use std::time::Instant;

use aya::maps::{HashMap, IterableMap, MapData};
use cthost::bpf::{CountMethod, count_fd};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let entries: u32 = args.next().map_or(Ok(500_000), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(5), |a| a.parse())?;
    let max = entries.next_power_of_two().max(1024);
    let mut m = HashMap::<MapData, [u8; 14], [u8; 56]>::create(max, 0)?;
    let t = Instant::now();
    for i in 0..entries {
        let mut k = [0u8; 14];
        k[..4].copy_from_slice(&i.to_be_bytes());
        m.insert(k, [7u8; 56], 0)?;
    }
    println!(
        "filled {entries} of max_entries {max} in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let fd = m.map().fd();
    for method in [CountMethod::NextKey, CountMethod::Batch] {
        let mut secs = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let (n, _, used) = count_fd(fd, Some(method))?;
            secs.push(t.elapsed().as_secs_f64());
            assert_eq!((n, used), (u64::from(entries), method));
        }
        secs.sort_by(f64::total_cmp);
        let median = secs[secs.len() / 2];
        println!(
            "{method:?}: median {:.1} ms over {runs} runs (min {:.1}, max {:.1}), {:.0} keys/s",
            median * 1e3,
            secs[0] * 1e3,
            secs[secs.len() - 1] * 1e3,
            f64::from(entries) / median
        );
    }
    Ok(())
}
