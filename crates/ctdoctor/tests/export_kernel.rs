//! `ctdoctor export` on the real kernel: the exporter runs inside a test
//! namespace holding a known table and is scraped over that namespace's
//! loopback; its values must equal `conntrack -C` / `conntrack -S` there,
//! the text must parse (prometheus-parse and `promtool check metrics`), a
//! taken port must fail clearly, SIGTERM must end it cleanly. The load test
//! (100 concurrent scrapes of a 262,144-entry table) prints p99 and peak RSS.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::BIN;
use ctlab::{Mix, Netns};

const PORT: u16 = 19466;

/// The exporter as a child, killed on drop (also during a panic).
struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(ns: &Netns, extra: &[&str]) -> Exporter {
    let listen = format!("127.0.0.1:{PORT}");
    let mut args = vec![
        "--netns",
        ns.name(),
        "export",
        "--listen",
        &listen,
        "--no-kernel-log",
    ];
    args.extend_from_slice(extra);
    let child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ctdoctor export");
    let exporter = Exporter(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if get(ns, "/healthz").is_ok_and(|(code, _)| code == 200) {
            return exporter;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("exporter did not answer /healthz within 20 s");
}

/// One HTTP/1.1 GET over the namespace's loopback: (status, body).
fn get_with(ns: &Netns, path: &str, accept: &str) -> std::io::Result<(u16, String)> {
    let path = path.to_string();
    let accept = accept.to_string();
    ns.run(move || -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", PORT))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\nConnection: close\r\n\r\n")?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            common::dechunk(body)
        } else {
            body.to_string()
        };
        Ok((code, body))
    })
    .map_err(|e| std::io::Error::other(e.to_string()))?
}

fn get(ns: &Netns, path: &str) -> std::io::Result<(u16, String)> {
    get_with(ns, path, "text/plain")
}

/// Sample values by name (labels ignored: the families compared have none).
fn values(text: &str) -> BTreeMap<String, f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("prometheus-parse accepts the exposition");
    scrape
        .samples
        .into_iter()
        .filter(|s| s.labels.is_empty())
        .filter_map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some((s.metric, v)),
            _ => None,
        })
        .collect()
}

/// `conntrack -S` summed over CPUs: counter name -> total.
fn conntrack_s(ns: &Netns) -> BTreeMap<String, u64> {
    let out = ns.exec("conntrack", &["-S"]).expect("conntrack -S");
    let mut sums = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        for kv in line.split_whitespace() {
            if let Some((k, v)) = kv.split_once('=')
                && let Ok(v) = v.parse::<u64>()
                && k != "cpu"
            {
                *sums.entry(k.to_string()).or_insert(0) += v;
            }
        }
    }
    sums
}

/// /proc/net/stat/nf_conntrack of the namespace, each column summed over
/// the CPU rows (hex), as node_exporter's procfs reads it.
fn proc_stat(ns: &Netns) -> BTreeMap<String, u64> {
    let out = ns
        .exec("cat", &["/proc/net/stat/nf_conntrack"])
        .expect("read /proc/net/stat/nf_conntrack");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .expect("header")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut sums = BTreeMap::new();
    for line in lines {
        for (name, hex) in header.iter().zip(line.split_whitespace()) {
            *sums.entry(name.clone()).or_insert(0) += u64::from_str_radix(hex, 16).expect("hex");
        }
    }
    sums
}

fn promtool_check(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        panic!("promtool missing: scripts/test installs the Debian package prometheus");
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn export_matches_conntrack_tools() {
    ctlab::require_root!();
    let ns = Netns::create("export").expect("netns");
    let entries = ctlab::generate(2_000, 9, Mix::default());
    ns.insert(&entries).expect("insert");
    let exporter = start(&ns, &["--top", "3", "--node-exporter-compat"]);

    let (code, text) = get(&ns, "/metrics").expect("scrape");
    assert_eq!(code, 200);
    let v = values(&text);
    let count: f64 =
        String::from_utf8_lossy(&ns.exec("conntrack", &["-C"]).expect("conntrack -C").stdout)
            .trim()
            .parse()
            .expect("conntrack -C number");
    assert_eq!(v["ctdoctor_entries"], count);
    assert_eq!(v["ctdoctor_entries"], 2_000.0);
    assert_eq!(v["node_nf_conntrack_entries"], count);
    let stats = conntrack_s(&ns);
    for (ours, theirs) in [
        ("ctdoctor_stat_drop_total", "drop"),
        ("ctdoctor_stat_early_drop_total", "early_drop"),
        ("ctdoctor_stat_insert_failed_total", "insert_failed"),
        ("ctdoctor_stat_invalid_total", "invalid"),
        ("ctdoctor_stat_search_restart_total", "search_restart"),
        ("ctdoctor_stat_found_total", "found"),
        ("ctdoctor_stat_insert_total", "insert"),
        ("ctdoctor_stat_clash_resolve_total", "clash_resolve"),
        ("ctdoctor_stat_chaintoolong_total", "chaintoolong"),
    ] {
        if let Some(&want) = stats.get(theirs) {
            let got = v
                .get(ours)
                .unwrap_or_else(|| panic!("{ours} missing; conntrack -S has {theirs}"));
            assert_eq!(*got, want as f64, "{ours} vs conntrack -S {theirs}");
        }
    }
    assert!(text.contains("ctdoctor_up{source=\"stats\"} 1"), "{text}");
    // node_exporter's values: CPU sums of /proc/net/stat/nf_conntrack.
    for (column, sum) in proc_stat(&ns) {
        let name = format!("node_nf_conntrack_stat_{column}");
        if let Some(ours) = v.get(&name) {
            assert_eq!(*ours, sum as f64, "{name} vs /proc/net/stat/nf_conntrack");
        }
    }
    assert_eq!(v["node_nf_conntrack_stat_ignore"], 0.0);
    promtool_check(&text);

    // The breakdown arrives from the background thread right after start.
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let (_, t) = get(&ns, "/metrics").expect("scrape");
        if t.contains("ctdoctor_entries_by_l4{") || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    let by_l4: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "ctdoctor_entries_by_l4")
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(by_l4, count, "breakdown by l4 sums to the count");
    let top = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "ctdoctor_top_source_entries")
        .count();
    assert_eq!(top, 3, "--top 3 gives exactly 3 series");
    promtool_check(&text);

    // OpenMetrics when asked.
    let (code, om) = get_with(
        &ns,
        "/metrics",
        "application/openmetrics-text;version=1.0.0",
    )
    .expect("scrape");
    assert_eq!(code, 200);
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    let (code, index) = get(&ns, "/").expect("index");
    assert_eq!(code, 200);
    assert!(index.contains("href=\"/metrics\""));

    // A second exporter on the same port: clear error, exit 1.
    let listen = format!("127.0.0.1:{PORT}");
    let out = Command::new(BIN)
        .args([
            "--netns",
            ns.name(),
            "export",
            "--listen",
            &listen,
            "--no-kernel-log",
        ])
        .output()
        .expect("second exporter");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot listen on 127.0.0.1:19466") && err.contains("in use"),
        "{err}"
    );

    // SIGTERM: clean exit 0, within the grace period even while a client
    // holds a half-sent request open (it held the exit for 30 s before).
    let (half_tx, half_rx) = std::sync::mpsc::channel::<()>();
    let mut exporter = exporter;
    let status = std::thread::scope(|sc| {
        let ns = &ns;
        sc.spawn(move || {
            let _ = ns.run(move || {
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", PORT)) {
                    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
                    let _ = half_rx.recv_timeout(Duration::from_secs(20));
                }
            });
        });
        std::thread::sleep(Duration::from_millis(300));
        let sent = Command::new("kill")
            .args(["-TERM", &exporter.0.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = exporter.0.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        drop(half_tx);
        status
    });
    assert!(status.success(), "{status:?}");
}

/// 100 concurrent scrapes against a 262,144-entry table: all succeed
/// within a bound; p99 and peak RSS are printed (README figures).
#[test]
fn load_100_concurrent_scrapes() {
    ctlab::require_root!();
    let ns = Netns::create("export-load").expect("netns");
    let n = 262_144.min(common::global_max());
    let entries = ctlab::generate(n, 11, Mix::default());
    // The generator may repeat a tuple among 262,144 (EEXIST): count what
    // went in, not what was asked.
    let report = ns
        .run(|| ctnetlink::Conntrack::open().and_then(|mut ct| ct.create(&entries)))
        .expect("netns")
        .expect("insert");
    let n = n - report.failures() as usize;
    drop(entries);
    let exporter = start(&ns, &["--top", "10"]);
    // Let the first breakdown of the full table finish.
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    let mut latencies: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..100)
            .map(|_| {
                s.spawn(|| {
                    let t = Instant::now();
                    let (code, body) = get(&ns, "/metrics").expect("scrape");
                    assert_eq!(code, 200);
                    assert!(body.contains("ctdoctor_entries "));
                    t.elapsed().as_secs_f64()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("scraper"))
            .collect()
    });
    let total = started.elapsed();
    assert_eq!(latencies.len(), 100);
    assert!(
        total < Duration::from_secs(60),
        "100 scrapes took {total:?}"
    );
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies[98];
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", exporter.0.id())).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?")
        .to_string();
    println!(
        "load: {n} entries, 100 concurrent scrapes in {:.3} s, p50 {:.1} ms, p99 {:.1} ms, peak RSS {}",
        total.as_secs_f64(),
        latencies[49] * 1e3,
        p99 * 1e3,
        hwm.trim_start_matches("VmHWM:").trim()
    );
}

/// --all-netns labels the test namespace with its inode and name and its
/// count; a table above --breakdown-max-entries gets no breakdown (age
/// +Inf, no breakdown series) while the cheap counters stay.
#[test]
fn all_netns_and_breakdown_cap() {
    ctlab::require_root!();
    let ns = Netns::create("export-netns").expect("netns");
    let entries = ctlab::generate(500, 5, Mix::default());
    ns.insert(&entries).expect("insert");
    let _exporter = start(&ns, &["--all-netns", "--breakdown-max-entries", "100"]);
    let series = format!(
        "ctdoctor_netns_entries{{netns=\"{}\",name=\"{}\",",
        common::inode_of(&ns),
        ns.name()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let (_, t) = get(&ns, "/metrics").expect("scrape");
        if t.contains(&series) || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let row = text
        .lines()
        .find(|l| l.starts_with(&series))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert!(row.ends_with(" 500.0") || row.ends_with(" 500"), "{row}");
    // Its effective limit, same labels: the initial namespace's max on a
    // kernel without a per-namespace one (read-only sysctl in there),
    // else min(its own, the initial one's).
    let limit = series.replace("ctdoctor_netns_entries{", "ctdoctor_netns_entries_limit{");
    let row = text
        .lines()
        .find(|l| l.starts_with(&limit))
        .unwrap_or_else(|| panic!("no {limit} in\n{text}"));
    let value: f64 = row
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("value");
    let sh = |cmd: &str, arg: &str| {
        let o = ns
            .exec(cmd, &[arg, "/proc/sys/net/netfilter/nf_conntrack_max"])
            .expect(cmd);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let writable = u32::from_str_radix(&sh("stat", "-c%a"), 8).expect("mode") & 0o222 != 0;
    let own: u64 = sh("cat", "--").parse().expect("max");
    let init = common::global_max() as u64;
    let want = if writable { own.min(init) } else { init };
    assert_eq!(value, want as f64, "{row}");
    assert!(text.contains("ctdoctor_up{source=\"netns\"} 1"), "{text}");
    let age = text
        .lines()
        .find(|l| l.starts_with("ctdoctor_breakdown_age_seconds "))
        .expect("age line");
    assert!(age.ends_with("+Inf"), "{age}");
    assert!(
        !text.contains("ctdoctor_entries_by_l4"),
        "breakdown above the cap"
    );
    assert!(text.contains("ctdoctor_entries 500"), "{text}");
    promtool_check(&text);
}

/// Without CAP_NET_ADMIN: one clear line and exit 1, before serving.
#[test]
fn missing_capability_is_a_clear_error() {
    let out = ctlab::run_unprivileged(
        BIN,
        &["export", "--listen", "127.0.0.1:0", "--no-kernel-log"],
    )
    .expect("setpriv");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CAP_NET_ADMIN"), "{err}");
}
