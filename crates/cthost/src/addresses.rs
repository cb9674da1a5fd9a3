//! The host's address book (ctcore's [`AddressBook`]): for every network
//! namespace a container owns ([`owners::owners`]), the addresses
//! configured inside it, read from a process in it (/proc/PID/net/fib_trie
//! and /proc/PID/net/if_inet6: the same for Docker, podman and pods, no
//! runtime API). Never fails; what could not be read is said in at most
//! one note, and the addresses concerned stay unattributed.

use std::collections::BTreeSet;

pub use ctcore::workload::{AddressBook, Workload};
use ctcore::workload::{parse_fib_trie, parse_if_inet6};

use crate::namespaces;
use crate::owners;
use crate::source::Root;

/// The book, and the one note on what was missing (runtime metadata that
/// could not be read, namespaces of processes this user may not see).
pub fn book(root: &Root) -> (AddressBook, Option<String>) {
    let all = namespaces::list(root);
    let init = namespaces::init_inode(root);
    let owners = owners::owners(root, &all, init);
    let pids = namespaces::pids(root);
    let wanted: BTreeSet<u64> = owners
        .iter()
        .filter(|(_, o)| o.container.is_some())
        .map(|(i, _)| *i)
        .collect();
    let (inside, denied) = namespaces::pids_by_inode(root, &pids, &wanted);
    let mut book = AddressBook::default();
    let mut problems: Vec<String> = Vec::new();
    for (inode, owner) in &owners {
        let Some(c) = &owner.container else { continue };
        if let Some(e) = &c.metadata_error {
            problems.push(format!("{}: {e}", owner.name));
        }
        let Some(&pid) = inside.get(inode).and_then(|p| p.first()) else {
            continue;
        };
        let mut addrs = Vec::new();
        for (file, parse) in [
            (
                "fib_trie",
                parse_fib_trie as fn(&str) -> Vec<std::net::IpAddr>,
            ),
            ("if_inet6", parse_if_inet6),
        ] {
            match root.read(&format!("/proc/{pid}/net/{file}"), "root") {
                Ok(t) => addrs.extend(parse(&t)),
                // The process has exited, or the namespace has no IPv6
                // (no if_inet6 at all): nothing to attribute, nothing wrong.
                Err(e) if e.why == ctcore::facts::Why::NotPresent => {}
                Err(e) => problems.push(format!("{}: {e}", owner.name)),
            }
        }
        book.add(Workload::of(c), addrs);
    }
    // As root a denial is a process guarded on purpose (another user
    // namespace's, a sandbox): not worth a note on every run.
    if denied > 0 && !nix::unistd::geteuid().is_root() {
        problems.insert(
            0,
            format!("the network namespaces of {denied} processes are unreadable (not root)"),
        );
    }
    let note = (!problems.is_empty()).then(|| {
        format!(
            "container metadata partly unreadable ({}{}): their addresses are shown as addresses",
            problems[0],
            if problems.len() > 1 {
                format!("; and {} more", problems.len() - 1)
            } else {
                String::new()
            }
        )
    });
    (book, note)
}
