//! Cilium and Calico eBPF conntrack maps, read through the [`Host`]: the
//! known pin names under `<bpffs>/tc/globals`, each map's key count and
//! max_entries. No bpffs, no such directory or no known map is nothing to
//! report (a plain host stays quiet); a map that cannot be opened (not
//! root) is one [`Unreadable`] for all of them.

use std::io;

use ctcore::bpf::{self, BpfMap};

use crate::Host;
use crate::source::{Unreadable, Why};

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
