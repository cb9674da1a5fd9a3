//! The exporter's whole `/metrics` page as a golden file, as node_exporter
//! tests its collectors: the real binary runs on the fake tree
//! `tests/fixtures/export/root` (`--root`: files only, no kernel socket, so
//! no root needed) and each scrape is compared with
//! `tests/snapshots/export_golden__*.snap`.
//!
//! Only what changes from run to run is touched: durations and the
//! breakdown's age are redacted, and samples are sorted within each family
//! (prometheus-client keeps a family's series in a HashMap, so their order
//! differs per process; it carries no meaning in the format). Everything
//! else, names, help, types, labels and values, is compared exactly.
//!
//! To update after a deliberate change: `INSTA_UPDATE=always cargo test -p
//! ctdoctor --test export_golden` (or `cargo insta review`), then review the
//! .snap diff. With CI=true insta never writes a snapshot: a change fails.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::BIN;

/// Flags of the golden run. `--breakdown-interval 1d`: one breakdown dump
/// only, so no arrivals and no steady-state forecast (two dumps would be
/// at least 10 s apart, and their window would vary per run).
const FLAGS: &[&str] = &[
    "export",
    "--listen",
    "127.0.0.1:0",
    "--top",
    "3",
    "--node-exporter-compat",
    "--all-netns",
    "--breakdown-interval",
    "1d",
];

/// Series that come from the background threads: the page is complete
/// once all are present (and two scrapes in a row agree).
const BACKGROUND: &[&str] = &[
    "ctdoctor_entries_by_state{",
    "ctdoctor_kernel_log_table_full_total{",
    "ctdoctor_scrape_duration_seconds{part=\"netns\"}",
];

const WAIT: Duration = Duration::from_secs(20);

/// The exporter as a child, killed on drop (also during a panic).
struct Exporter {
    child: Child,
    addr: SocketAddr,
    /// stderr lines printed before the address, then the rest as they come.
    early: Vec<String>,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Exporter {
    /// Start it on the fixture tree; its address is the one it prints
    /// (`--listen 127.0.0.1:0` takes a free port).
    fn start(root: &Path) -> Self {
        let mut child = Command::new(BIN)
            .arg("--root")
            .arg(root)
            .args(FLAGS)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ctdoctor export");
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut exporter = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            early: Vec::new(),
            stderr: rx,
        };
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = exporter.stderr.recv_timeout(left) else {
                break;
            };
            if let Some(addr) = line
                .strip_prefix("ctdoctor: serving metrics on http://")
                .and_then(|rest| rest.strip_suffix("/metrics"))
            {
                exporter.addr = addr.parse().expect("address it printed");
                return exporter;
            }
            exporter.early.push(line);
        }
        panic!(
            "exporter did not say where it serves within {WAIT:?}; stderr:\n{}",
            exporter.early.join("\n")
        );
    }

    /// One HTTP/1.1 GET of /metrics with this Accept header: the body.
    fn scrape(&self, accept: &str) -> String {
        common::scrape(self.addr, accept).expect("scrape /metrics")
    }

    /// Everything it printed on stderr so far.
    fn stderr(&self) -> Vec<String> {
        let mut all = self.early.clone();
        all.extend(self.stderr.try_iter());
        all
    }
}

/// Each family's samples in a stable order (see the module header); the
/// families' own order, and the comment lines within each, are kept.
fn sorted_samples(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut samples: Vec<&str> = Vec::new();
    let flush = |samples: &mut Vec<&str>, out: &mut String| {
        samples.sort_unstable();
        for s in samples.drain(..) {
            out.push_str(s);
            out.push('\n');
        }
    };
    for line in text.lines() {
        if line.starts_with('#') {
            flush(&mut samples, &mut out);
            out.push_str(line);
            out.push('\n');
        } else {
            samples.push(line);
        }
    }
    flush(&mut samples, &mut out);
    out
}

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/export/root")
}

/// Families whose values are timings (redacted in the snapshot).
const TIMINGS: &[&str] = &[
    "ctdoctor_scrape_duration_seconds",
    "ctdoctor_breakdown_age_seconds",
];

/// Scrape until the background series are in and two scrapes in a row
/// agree but for timings (the kernel-log thread counts one record at a
/// time, so a scrape may fall between two of them).
fn settled(exporter: &Exporter, accept: &str) -> String {
    let untimed = |page: &str| -> Vec<String> {
        page.lines()
            .filter(|l| !TIMINGS.iter().any(|t| l.starts_with(t)))
            .map(str::to_string)
            .collect()
    };
    let deadline = Instant::now() + WAIT;
    let mut last = Vec::new();
    loop {
        let page = sorted_samples(&exporter.scrape(accept));
        let now = untimed(&page);
        if BACKGROUND.iter().all(|s| page.contains(s)) && now == last {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not settle within {WAIT:?} (waiting for {BACKGROUND:?}):\n{page}"
        );
        last = now;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What varies per run, replaced by a name for it.
fn redacted() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_description(format!(
        "ctdoctor --root tests/fixtures/export/root {}",
        FLAGS.join(" ")
    ));
    s.set_omit_expression(true);
    // Absolute: insta finds the workspace with `cargo metadata`, and a
    // test binary run without cargo (another user, a copied binary) would
    // otherwise look for the snapshots in the wrong directory.
    s.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots"));
    // A number in the exposition: 0.000232303, 2.027636204, 1e-5, +Inf.
    const NUM: &str = r"(?:[0-9.e+-]+|\+Inf)";
    s.add_filter(
        &format!(r#"(?m)^(ctdoctor_scrape_duration_seconds\{{part="[a-z_]+"\}}) {NUM}$"#),
        "$1 [seconds]",
    );
    s.add_filter(
        &format!(r"(?m)^(ctdoctor_breakdown_age_seconds) {NUM}$"),
        "$1 [age]",
    );
    s
}

#[test]
fn metrics_page_on_a_fake_tree() {
    let t = Instant::now();
    let exporter = Exporter::start(&fixture());
    let text = settled(&exporter, "text/plain");
    let openmetrics = settled(&exporter, "application/openmetrics-text;version=1.0.0");

    // Checks the golden file cannot make: the text parses, and the one
    // namespace of the tree (no kernel to enter it) was warned about on
    // stderr, once, and has no series.
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("prometheus-parse accepts the page");
    assert!(parsed.samples.len() > 40, "{text}");
    let warnings = exporter.stderr();
    let pod = warnings
        .iter()
        .filter(|l| l.contains("(pod-a): no per-netns series"))
        .count();
    assert_eq!(pod, 1, "stderr: {warnings:?}");
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("ctnetlink is off under --root")),
        "{warnings:?}"
    );
    drop(exporter);

    redacted().bind(|| {
        insta::assert_snapshot!("metrics", text);
        insta::assert_snapshot!("openmetrics", openmetrics);
    });
    eprintln!("export_golden: {:.2} s", t.elapsed().as_secs_f64());
}

/// nf_conntrack_max 0 is no limit: the dump fallback's time to full is
/// +Inf (it once published 0, "full now", for any non-empty table) and
/// there is no memory limit to publish.
#[test]
fn unlimited_max_is_never_full() {
    let dir = common::TempDir::new("export-max0");
    let root = dir.0.join("root");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(fixture())
        .arg(&root)
        .status()
        .expect("cp");
    assert!(cp.success());
    std::fs::write(root.join("proc/sys/net/netfilter/nf_conntrack_max"), "0\n").expect("max");
    let exporter = Exporter::start(&root);
    let deadline = Instant::now() + WAIT;
    let page = loop {
        let page = exporter.scrape("text/plain");
        if page.contains("\nctdoctor_time_to_full_seconds ") {
            break page;
        }
        assert!(Instant::now() < deadline, "no time to full:\n{page}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(page.contains("\nctdoctor_entries_limit 0.0\n"), "{page}");
    assert!(page.contains("\nctdoctor_entries 5000.0\n"), "{page}");
    assert!(
        page.contains("\nctdoctor_time_to_full_seconds +Inf\n"),
        "{page}"
    );
    assert!(!page.contains("ctdoctor_memory_limit_bytes"), "{page}");
}
