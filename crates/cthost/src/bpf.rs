//! Cilium and Calico eBPF conntrack maps, read through the [`Host`]: the
//! known pin names under `<bpffs>/tc/globals`, each map's key count and
//! max_entries. No bpffs, no such directory or no known map is nothing to
//! report (a plain host stays quiet); a map that cannot be opened (not
//! root) is one [`Unreadable`] for all of them.

use std::io;
use std::os::fd::AsFd;

use ctcore::bpf::{self, BpfMap};

use crate::Host;
use crate::source::{Unreadable, Why};

pub use crate::bpf_sys::Method as CountMethod;

/// A map's key count and max_entries, and how the keys were counted:
/// `method` `None` batches where the kernel and map type allow
/// (BPF_MAP_LOOKUP_BATCH) and falls back to BPF_MAP_GET_NEXT_KEY; `Some`
/// forces one (tests and the bench compare them; a forced batch on a map
/// without batch support is `Unsupported`).
pub fn count_fd(fd: impl AsFd, method: Option<CountMethod>) -> io::Result<(u64, u64, CountMethod)> {
    use crate::bpf_sys;
    let fd = fd.as_fd();
    let info = bpf_sys::info(fd)?;
    let max = u64::from(info.max_entries);
    let (n, used) = match method {
        None => bpf_sys::count(fd, &info, max)?,
        Some(CountMethod::NextKey) => (
            bpf_sys::count_keys(fd, info.key_size, max)?,
            CountMethod::NextKey,
        ),
        Some(CountMethod::Batch) => match bpf_sys::count_batch(fd, &info, max)? {
            Some(n) => (n, CountMethod::Batch),
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "BPF_MAP_LOOKUP_BATCH is not available for this map here",
                ));
            }
        },
    };
    Ok((n, max, used))
}

/// The known maps pinned under the host's bpffs, and why any could not be
/// read (at most one entry).
pub fn conntrack_maps(host: &Host) -> (Vec<BpfMap>, Vec<Unreadable>) {
    let dir = host.bpffs().join(bpf::PIN_DIR);
    let names = match host.bpf_pins(bpf::PIN_DIR) {
        Ok(names) => names,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return (vec![], vec![unreadable(&dir, &e)]);
        }
        // Not mounted, no Cilium/Calico, or a fake tree: nothing to say.
        Err(_) => return (vec![], vec![]),
    };
    let mut maps = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        let Some(datapath) = bpf::known(&name) else {
            continue;
        };
        match host.bpf_map_fill(&dir.join(&name)) {
            Ok((entries, max_entries)) => maps.push(BpfMap {
                name,
                datapath,
                entries,
                max_entries,
            }),
            Err(e) => {
                if errors.is_empty() {
                    errors.push(unreadable(&dir, &e));
                }
            }
        }
    }
    (maps, errors)
}

fn unreadable(dir: &std::path::Path, e: &io::Error) -> Unreadable {
    let why = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Why::Permission("CAP_BPF (root)".into()),
        _ => Why::Failed(e.to_string()),
    };
    Unreadable {
        what: format!("eBPF conntrack maps in {}", dir.display()),
        why,
    }
}

/// On the real kernel (root): maps made here, counted both ways.
#[cfg(test)]
mod kernel_tests {
    use aya::maps::lpm_trie::{Key, LpmTrie};
    use aya::maps::{HashMap, IterableMap, MapData};

    use super::*;

    /// A Cilium-shaped hash map (14-byte keys, 56-byte values) with `fill`
    /// distinct keys.
    fn hash(max: u32, fill: u32) -> HashMap<MapData, [u8; 14], [u8; 56]> {
        let mut m = HashMap::<MapData, [u8; 14], [u8; 56]>::create(max, 0).expect("create map");
        for i in 0..fill {
            let mut k = [0u8; 14];
            k[..4].copy_from_slice(&i.to_be_bytes());
            m.insert(k, [7u8; 56], 0).expect("insert");
        }
        m
    }

    #[test]
    fn batch_and_next_key_count_the_same() {
        // Empty, one partial batch, several batches and a full map.
        for (max, fill) in [(64, 0), (1024, 1000), (16_384, 10_001), (8192, 8192)] {
            let m = hash(max, fill);
            let fd = m.map().fd();
            let batch = count_fd(fd, Some(CountMethod::Batch)).expect("batch");
            let walk = count_fd(fd, Some(CountMethod::NextKey)).expect("next key");
            assert_eq!(batch, (u64::from(fill), u64::from(max), CountMethod::Batch));
            assert_eq!(
                walk,
                (u64::from(fill), u64::from(max), CountMethod::NextKey)
            );
            // The default takes the batch.
            assert_eq!(count_fd(fd, None).expect("count"), batch);
        }
    }

    #[test]
    fn a_map_type_without_batches_falls_back_to_next_key() {
        // BPF_MAP_TYPE_SOCKHASH (18) has no batch operations: ENOTSUPP.
        let fd = crate::bpf_sys::create_map(18, 4, 8, 64).expect("create sockhash");
        assert_eq!(
            count_fd(&fd, None).expect("count"),
            (0, 64, CountMethod::NextKey)
        );
        let e = count_fd(&fd, Some(CountMethod::Batch)).expect_err("no batch for sockhash");
        assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
        // An LPM trie (BPF_F_NO_PREALLOC) takes the generic batch here:
        // both ways count the same.
        let mut t = LpmTrie::<MapData, u32, u32>::create(128, 1).expect("create trie");
        for i in 0..100u32 {
            t.insert(&Key::new(32, i.to_be()), 1, 0).expect("insert");
        }
        let fd = t.map().fd();
        let (walk, _, _) = count_fd(fd, Some(CountMethod::NextKey)).expect("next key");
        let (any, _, _) = count_fd(fd, None).expect("count");
        assert_eq!((walk, any), (100, 100));
    }
}
