//! The real `ctdoctor export` on ctnetlink events in a throwaway namespace:
//! the namespace (tracked loopback, events on, the scrape port untracked),
//! the exporter child (killed and reaped on drop), scrapes of it, the
//! held-connection load and the pre-fill that bring a namespace close to
//! nf_conntrack_max, and the namespace's count. Shared by
//! export_forecast_kernel (exporter vs forecast) and deploy_prometheus
//! (real Prometheus on a filling and a flat namespace).

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ctlab::Netns;
use ctlab::traffic::{Kind, Sources};

use super::{BIN, global_max};

/// A child process killed and reaped on drop (also during a panic), with
/// a name for the messages.
pub struct Killed(pub Child, pub &'static str);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Killed {
    /// Panic with the process's stderr (when piped) if it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.0.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = self.0.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("{} exited early ({status}):\n{err}", self.1);
        }
    }
}

/// Held TCP connections, silent after the handshake (closed at the end):
/// ASSURED ESTABLISHED entries that nothing removes within a test.
pub const HELD: Kind = Kind::Idle {
    sources: Sources::Many,
};

/// A namespace `tag` with tracked loopback and nf_conntrack_events 1,
/// where TCP `port` (the exporter's) is not tracked: scrapes add no flow,
/// so the exporter sees only the test's load.
pub fn events_namespace(tag: &str, port: u16) -> Netns {
    let ns = Netns::create(tag).expect("netns");
    ns.track_loopback().expect("nft");
    ns.sysctl("net.netfilter.nf_conntrack_events", "1")
        .expect("sysctl in the test namespace");
    ns.nft(&format!(
        "table inet xfscrape {{\n\
         chain pre {{ type filter hook prerouting priority -300; tcp dport {port} notrack; tcp sport {port} notrack; }}\n\
         chain out {{ type filter hook output priority -300; tcp dport {port} notrack; tcp sport {port} notrack; }}\n\
         }}\n"
    ))
    .expect("nft in the test namespace");
    ns
}

/// One scrape of the exporter on 127.0.0.1:`port` inside `ns`.
pub fn scrape(ns: &Netns, port: u16) -> std::io::Result<String> {
    ns.run(|| super::scrape(("127.0.0.1", port), "text/plain"))
        .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// Start `ctdoctor --netns NS export --listen 127.0.0.1:PORT
/// --no-kernel-log ARGS...`; returns once it serves (its feed has started:
/// background threads start before the first answer). Panics with its
/// stderr if it exits, or after 20 s without an answer.
pub fn start(ns: &Netns, port: u16, args: &[&str]) -> Killed {
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .args(["--netns", ns.name(), "export", "--listen", &listen])
        .arg("--no-kernel-log")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ctdoctor export");
    let mut e = Killed(child, "ctdoctor export");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        e.assert_running();
        if scrape(ns, port).is_ok() {
            return e;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("exporter did not serve within 20 s");
}

/// Raise RLIMIT_NOFILE for `connections` held connections (two
/// descriptors each, both ends in this process) plus some to spare.
pub fn fds_for(connections: u64) {
    let want = 2 * connections + 512;
    let fds = ctlab::abuse::raise_nofile(want).expect("RLIMIT_NOFILE");
    assert!(fds >= want - 256, "RLIMIT_NOFILE {fds}, want {want}");
}

/// Insert ASSURED TCP entries into `ns` until `room` entries are left
/// below nf_conntrack_max (in batches of 50,000).
pub fn prefill_leaving(ns: &Netns, room: u64) {
    let max = global_max() as u64;
    assert!(max > room, "nf_conntrack_max {max} <= room {room}");
    for chunk in ctlab::fill((max - room) as usize, true).chunks(50_000) {
        ns.insert(chunk).expect("pre-fill");
    }
}

/// The namespace's entry count (ctnetlink's stats, read inside it).
pub fn count(ns: &Netns) -> u64 {
    ns.run(|| {
        ctnetlink::Conntrack::open()
            .and_then(|mut c| c.stats())
            .map(|g| u64::from(g.entries))
    })
    .expect("thread in netns")
    .expect("stats")
}
