//! Helpers shared by the binary's end-to-end tests: run ctdoctor, read its
//! output and JSON findings, facts of test namespaces, numbers read from
//! /proc and /sys, self-deleting temporary files and trees (`--root`), and
//! scrapes of the exporter's /metrics (chunked bodies decoded); the real
//! exporter on events in a test namespace is [`exporter`]'s.
//! A test that needs root starts with `ctlab::require_root!()` (in ctlab,
//! so ctlab's own tests share it).
#![allow(dead_code)] // each test binary uses its own subset

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use ctlab::Netns;

pub mod containers;
pub mod exporter;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_ctdoctor");

pub fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run ctdoctor")
}

/// `run` with `input` on stdin (for `--file -`).
pub fn run_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ctdoctor");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait for ctdoctor")
}

/// stderr alone, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout then stderr, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// stdout parsed as JSON; a panic shows stdout and stderr otherwise.
pub fn json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `ctdoctor --netns NS check --json`.
pub fn check_json(ns: &Netns) -> Value {
    json(&run(&["--netns", ns.name(), "check", "--json"]))
}

/// The finding with this id, if the report has one.
pub fn finding<'a>(v: &'a Value, id: &str) -> Option<&'a Value> {
    v["findings"].as_array()?.iter().find(|f| f["id"] == id)
}

/// The finding with this id; a panic shows the report when it is missing.
pub fn must_find<'a>(v: &'a Value, id: &str) -> &'a Value {
    finding(v, id).unwrap_or_else(|| panic!("no {id} finding: {v:#}"))
}

/// A finding's evidence lines.
pub fn evidence(f: &Value) -> Vec<&str> {
    f["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// The global nf_conntrack_max (every namespace's count is compared with it).
pub fn global_max() -> usize {
    let max = ctlab::global_max().expect("nf_conntrack_max");
    usize::try_from(max).expect("nf_conntrack_max fits usize")
}

/// The number a /proc or /sys file holds (`nf_conntrack_buckets`, `hashsize`).
pub fn read_u64(path: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path}: {e}: {text:?}"))
}

/// The namespace's inode: the number the kernel prints in `table full in netns N`.
pub fn inode_of(ns: &Netns) -> u64 {
    std::fs::metadata(format!("/run/netns/{}", ns.name()))
        .expect("netns file")
        .ino()
}

/// A directory removed on drop (also on a panic's unwinding).
pub struct TempDir(pub PathBuf);

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl TempDir {
    /// A fresh directory, unique per call (tests of one process run in parallel).
    pub fn new(tag: &str) -> Self {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("ctdoctor-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        Self(d)
    }

    /// Write `body` at `path` under the directory, creating parents.
    pub fn put(&self, path: &str, body: &str) {
        let p = self.p(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, body).expect("write");
    }

    /// `path` under the directory.
    pub fn p(&self, path: &str) -> PathBuf {
        self.0.join(path.trim_start_matches('/'))
    }

    /// The text at `path` under the directory.
    pub fn get(&self, path: &str) -> String {
        std::fs::read_to_string(self.p(path)).expect("read")
    }

    pub fn s(&self) -> &str {
        self.0.to_str().expect("utf8 path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file with `content` in the temporary directory, removed on drop.
pub struct TempFile(PathBuf);

impl TempFile {
    /// A fresh file, unique per call like [`TempDir::new`].
    pub fn new(tag: &str, content: &[u8]) -> Self {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ctdoctor-{tag}-{}-{n}", std::process::id()));
        std::fs::write(&path, content).expect("write temp file");
        Self(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What `ip netns list` prints now.
pub fn netns_list() -> String {
    let o = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Whether `ip netns list` still shows the namespace `ns`.
pub fn netns_exists(ns: &str) -> bool {
    netns_list()
        .lines()
        .any(|l| l.split_whitespace().next() == Some(ns))
}

/// One HTTP/1.1 GET of /metrics at `addr` (`Accept: accept`, `Connection:
/// close`, 10 s read timeout): the body, dechunked when sent chunked; an
/// error (with the response head) unless the status is 200. Opened in the
/// calling thread's namespace (wrap it in `Netns::run` for another).
pub fn scrape(addr: impl std::net::ToSocketAddrs, accept: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(std::io::Error::other(format!("not 200: {head}")));
    }
    Ok(
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        },
    )
}

/// The body of an HTTP/1.1 response sent with `Transfer-Encoding: chunked`.
pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `run`, killed after `limit`: `None` if it had not finished by then (a
/// hang fails the test instead of stalling the suite). stdout and stderr
/// are drained by threads, so a large output cannot block the child.
pub fn run_within(args: &[&str], limit: std::time::Duration) -> Option<Output> {
    use std::io::Read;
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ctdoctor");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for ctdoctor") {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    status.map(|status| Output {
        status,
        stdout,
        stderr,
    })
}

/// Something that is not a namespace, under /run/netns (where `ip netns`
/// and `--all-netns` look), with a name unique to this process and `tag`;
/// removed on drop, so even when the test panics.
pub struct StrayNetnsEntry(PathBuf);

impl StrayNetnsEntry {
    /// A FIFO (opening it for reading blocks without O_NONBLOCK).
    pub fn fifo(tag: &str) -> Self {
        let s = Self::path(tag);
        let o = Command::new("mkfifo")
            .arg(&s.0)
            .output()
            .expect("run mkfifo");
        assert!(o.status.success(), "mkfifo {}: {o:?}", s.0.display());
        s
    }

    /// An empty regular file, as a failed `ip netns add` leaves behind.
    pub fn file(tag: &str) -> Self {
        let s = Self::path(tag);
        std::fs::write(&s.0, b"").expect("create stray file");
        s
    }

    fn path(tag: &str) -> Self {
        std::fs::create_dir_all("/run/netns").expect("/run/netns");
        Self(PathBuf::from(format!(
            "/run/netns/ctd-stray-{}-{tag}",
            std::process::id()
        )))
    }

    pub fn name(&self) -> &str {
        self.0
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name")
    }
}

impl Drop for StrayNetnsEntry {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `kind` flows at `rate`/s (at most `max_flows`) from ctlab's paced
/// generator in `ns` while `during` runs; stopped after it (held
/// connections are closed then).
pub fn with_flows<T: Send>(
    ns: &Netns,
    kind: &ctlab::traffic::Kind,
    rate: f64,
    max_flows: u64,
    during: impl FnOnce() -> T + Send,
) -> (ctlab::traffic::Report, T) {
    let (mut reports, out) = with_mix(ns, &[(kind.clone(), rate, max_flows)], during);
    (reports.remove(0), out)
}

/// Several generators side by side in `ns`, each (kind, rate/s, most
/// flows) on its own thread, while `during` runs; all stop after it (also
/// when it panics, so a failed assertion does not wait out the load).
pub fn with_mix<T: Send>(
    ns: &Netns,
    load: &[(ctlab::traffic::Kind, f64, u64)],
    during: impl FnOnce() -> T + Send,
) -> (Vec<ctlab::traffic::Report>, T) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let generators: Vec<_> = load
            .iter()
            .map(|(kind, rate, max_flows)| {
                let stop = &stop;
                s.spawn(move || {
                    ns.run(|| {
                        ctlab::traffic::run(
                            kind,
                            &ctlab::traffic::Limits {
                                rate: *rate,
                                duration: std::time::Duration::from_secs(600),
                                max_flows: *max_flows,
                            },
                            stop,
                        )
                    })
                })
            })
            .collect();
        // Stopped also when `during` panics: the scope joins the
        // generators before the panic goes on, and they hold until stopped.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let out = {
            let _stop = StopOnDrop(&stop);
            during()
        };
        let reports = generators
            .into_iter()
            .map(|g| {
                g.join()
                    .expect("generator thread")
                    .expect("netns")
                    .expect("traffic")
            })
            .collect();
        (reports, out)
    })
}
