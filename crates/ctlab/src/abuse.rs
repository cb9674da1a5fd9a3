//! An abusive client of an HTTP exporter, for its flood test and benchmark
//! (issue 21): many idle connections held open (reopened when the server
//! closes them), a burst of new connections per second, slowloris heads
//! (one byte every few seconds), oversized request lines, headers and
//! bodies, while one well-behaved scraper GETs /metrics on its own thread
//! and times every answer. Loopback only: the caller runs it inside a
//! namespace it made. Every loop stops at the plan's deadline.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What to throw at the server, and for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: SocketAddr,
    /// Local addresses the attack connections bind to in turn (several
    /// 127.0.0.x when one address's ephemeral ports are too few); empty:
    /// the kernel's choice.
    pub sources: Vec<IpAddr>,
    pub duration: Duration,
    /// Idle connections to hold open (they send nothing).
    pub idle: usize,
    /// Connections opening at once while the idle ones are first made.
    pub connect_concurrency: usize,
    /// Reopens per second of idle and slowloris connections the server
    /// closed (0: closed ones stay closed).
    pub reopen_per_s: u32,
    /// New connections per second that connect and reset at once.
    pub burst_per_s: u32,
    /// Slowloris connections, and how often each sends one byte.
    pub slowloris: usize,
    pub slowloris_every: Duration,
    /// Clients sending oversized requests, one after another.
    pub oversized: usize,
    /// The well-behaved scraper: a new connection and GET this often.
    pub scrape_every: Duration,
    pub scrape_path: String,
    /// A scrape not answered within this counts as failed.
    pub scrape_timeout: Duration,
    /// Sample this process's RSS and descriptors (the server's pid).
    pub watch_pid: Option<u32>,
}

impl Plan {
    /// The benchmark's defaults at `target`: 50,000 idle, 1,000 new
    /// connections/s, 1,000 slowloris, 8 oversized clients, 60 s.
    pub fn full(target: SocketAddr) -> Self {
        Self {
            target,
            sources: Vec::new(),
            duration: Duration::from_secs(60),
            idle: 50_000,
            connect_concurrency: 256,
            reopen_per_s: 1_000,
            burst_per_s: 1_000,
            slowloris: 1_000,
            slowloris_every: Duration::from_secs(3),
            oversized: 8,
            scrape_every: Duration::from_secs(1),
            scrape_path: "/metrics".into(),
            scrape_timeout: Duration::from_secs(10),
            watch_pid: None,
        }
    }
}

/// Latency figures in seconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    fn of(mut v: Vec<f64>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        // Nearest rank.
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Self {
            p50: rank(0.50),
            p99: rank(0.99),
            max: v[v.len() - 1],
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Scrapes {
    pub count: u64,
    /// Status 200 with the whole body (Content-Length bytes, holding the
    /// expected text).
    pub ok: u64,
    pub failed: u64,
    /// The first few failures, as text.
    pub errors: Vec<String>,
    pub latency: Latency,
}

impl Scrapes {
    /// Count one scrape that took `took` seconds, keeping its time.
    fn record(&mut self, took: f64, r: Result<()>, times: &mut Vec<f64>) {
        self.count += 1;
        times.push(took);
        match r {
            Ok(()) => self.ok += 1,
            Err(e) => {
                self.failed += 1;
                if self.errors.len() < 10 {
                    self.errors.push(format!("after {took:.3} s: {e}"));
                }
            }
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Held {
    pub opened: u64,
    pub connect_failed: u64,
    pub closed_by_server: u64,
    pub peak_open: u64,
    pub open_at_end: u64,
    /// The longest any one was held open before the server closed it.
    pub longest_held_s: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Burst {
    pub attempted: u64,
    pub connected: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Oversized {
    pub attempts: u64,
    /// Outcome ("431", "413", "closed", ...) -> count.
    pub outcomes: BTreeMap<String, u64>,
    /// The most bytes the server took of one oversized request before it
    /// answered or closed.
    pub max_bytes_taken: u64,
    pub longest_s: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Server {
    pub peak_rss_kib: u64,
    pub peak_hwm_kib: u64,
    pub peak_fds: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub duration_s: f64,
    pub scrapes: Scrapes,
    pub idle: Held,
    pub slowloris: Held,
    pub burst: Burst,
    pub oversized: Oversized,
    pub server: Server,
}

/// Raise this process's open-file limit to `want` (root may raise the
/// hard limit too, up to fs.nr_open).
pub fn raise_nofile(want: u64) -> Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit")?;
    if soft >= want {
        return Ok(soft);
    }
    if setrlimit(Resource::RLIMIT_NOFILE, want, want.max(hard)).is_ok() {
        return Ok(want);
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit")?;
    Ok(hard)
}

#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    connect_failed: AtomicU64,
    closed_by_server: AtomicU64,
    open: AtomicU64,
    peak_open: AtomicU64,
    longest_ms: AtomicU64,
}

impl Counters {
    fn up(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
        let now = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_open.fetch_max(now, Ordering::Relaxed);
    }

    fn down(&self, held: Duration, by_server: bool) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        if by_server {
            self.closed_by_server.fetch_add(1, Ordering::Relaxed);
        }
        self.longest_ms
            .fetch_max(held.as_millis() as u64, Ordering::Relaxed);
    }

    fn report(&self) -> Held {
        Held {
            opened: self.opened.load(Ordering::Relaxed),
            connect_failed: self.connect_failed.load(Ordering::Relaxed),
            closed_by_server: self.closed_by_server.load(Ordering::Relaxed),
            peak_open: self.peak_open.load(Ordering::Relaxed),
            open_at_end: self.open.load(Ordering::Relaxed),
            longest_held_s: self.longest_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}

struct Shared {
    plan: Plan,
    end: tokio::time::Instant,
    next_source: AtomicUsize,
    /// Tokens for reopening a closed connection.
    reopen: tokio::sync::Semaphore,
    idle: Counters,
    slow: Counters,
    burst: [AtomicU64; 3],
    oversized: std::sync::Mutex<Oversized>,
}

impl Shared {
    async fn connect(&self) -> std::io::Result<tokio::net::TcpStream> {
        let target = self.plan.target;
        let socket = if target.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        if !self.plan.sources.is_empty() {
            let i = self.next_source.fetch_add(1, Ordering::Relaxed) % self.plan.sources.len();
            socket.bind(SocketAddr::new(self.plan.sources[i], 0))?;
        }
        match tokio::time::timeout(Duration::from_secs(10), socket.connect(target)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    fn over(&self) -> bool {
        tokio::time::Instant::now() >= self.end
    }

    /// Wait for a reopen token; false when the run is over or reopening
    /// is off.
    async fn may_reopen(&self) -> bool {
        if self.plan.reopen_per_s == 0 {
            return false;
        }
        tokio::select! {
            p = self.reopen.acquire() => match p {
                Ok(p) => { p.forget(); !self.over() }
                Err(_) => false,
            },
            () = tokio::time::sleep_until(self.end) => false,
        }
    }
}

/// Run the plan; blocks until its deadline (plus the last scrape).
pub fn run(plan: &Plan) -> Result<Report> {
    raise_nofile((plan.idle + plan.slowloris) as u64 + 4096)?;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = {
        let plan = plan.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || scrape_loop(&plan, &stop))
    };
    let monitor = plan.watch_pid.map(|pid| {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || watch(pid, &stop))
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("client runtime")?;
    let attack = rt.block_on(attack(plan.clone()));
    stop.store(true, Ordering::Relaxed);
    let scrapes = scraper
        .join()
        .map_err(|_| anyhow::anyhow!("scraper panicked"))?;
    let server = match monitor {
        Some(m) => m.join().map_err(|_| anyhow::anyhow!("monitor panicked"))?,
        None => Server::default(),
    };
    // The runtime's tasks (and their sockets) go with it.
    drop(rt);
    Ok(Report {
        duration_s: started.elapsed().as_secs_f64(),
        scrapes,
        server,
        ..attack
    })
}

async fn attack(plan: Plan) -> Report {
    let end = tokio::time::Instant::now() + plan.duration;
    let s = Arc::new(Shared {
        end,
        next_source: AtomicUsize::new(0),
        reopen: tokio::sync::Semaphore::new(0),
        idle: Counters::default(),
        slow: Counters::default(),
        burst: Default::default(),
        oversized: std::sync::Mutex::new(Oversized::default()),
        plan,
    });
    let mut tasks = tokio::task::JoinSet::new();
    // Reopen tokens, 10 times a second.
    {
        let s = Arc::clone(&s);
        tasks.spawn(async move {
            let per_tick = (s.plan.reopen_per_s as usize).div_ceil(10);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !s.over() {
                tick.tick().await;
                // Unused tokens do not pile up into a later burst.
                let have = s.reopen.available_permits();
                s.reopen.add_permits(per_tick.saturating_sub(have));
            }
        });
    }
    // Idle connections, `connect_concurrency` opening at a time.
    {
        let s = Arc::clone(&s);
        tasks.spawn(async move {
            let gate = Arc::new(tokio::sync::Semaphore::new(
                s.plan.connect_concurrency.max(1),
            ));
            let mut held = tokio::task::JoinSet::new();
            for _ in 0..s.plan.idle {
                if s.over() {
                    break;
                }
                let Ok(permit) = Arc::clone(&gate).acquire_owned().await else {
                    break;
                };
                let s = Arc::clone(&s);
                held.spawn(async move { idle(s, Some(permit)).await });
            }
            while held.join_next().await.is_some() {}
        });
    }
    for _ in 0..s.plan.slowloris {
        let s = Arc::clone(&s);
        tasks.spawn(async move { slowloris(s).await });
    }
    for i in 0..s.plan.oversized {
        let s = Arc::clone(&s);
        tasks.spawn(async move { oversized(s, i).await });
    }
    {
        let s = Arc::clone(&s);
        tasks.spawn(async move { burst(s).await });
    }
    // Every task ends by the deadline; the margin covers a connect or
    // read in flight then.
    let _ = tokio::time::timeout_at(end + Duration::from_secs(15), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let b = |i: usize| s.burst[i].load(Ordering::Relaxed);
    let oversized = s.oversized.lock().map(|o| o.clone()).unwrap_or_default();
    Report {
        idle: s.idle.report(),
        slowloris: s.slow.report(),
        burst: Burst {
            attempted: b(0),
            connected: b(1),
            failed: b(2),
        },
        oversized,
        ..Report::default()
    }
}

/// Hold a connection that sends nothing; reopen it when the server closes it.
async fn idle(s: Arc<Shared>, mut first: Option<tokio::sync::OwnedSemaphorePermit>) {
    loop {
        let conn = s.connect().await;
        drop(first.take());
        match conn {
            Ok(mut c) => {
                s.idle.up();
                let t = Instant::now();
                let mut buf = [0u8; 256];
                let by_server = tokio::select! {
                    _ = c.read(&mut buf) => true,
                    () = tokio::time::sleep_until(s.end) => false,
                };
                s.idle.down(t.elapsed(), by_server);
                if !by_server {
                    // Hold it to the end of the run, then let it go.
                    return;
                }
            }
            Err(_) => {
                s.idle.connect_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !s.may_reopen().await {
            return;
        }
    }
}

async fn slowloris(s: Arc<Shared>) {
    const HEAD: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    loop {
        match s.connect().await {
            Ok(mut c) => {
                s.slow.up();
                let t = Instant::now();
                let mut by_server = true;
                if c.write_all(HEAD).await.is_ok() {
                    let mut buf = [0u8; 256];
                    loop {
                        tokio::select! {
                            // Any answer (408, or EOF) means the server gave up on us.
                            _ = c.read(&mut buf) => break,
                            () = tokio::time::sleep(s.plan.slowloris_every) => {
                                if c.write_all(b"a").await.is_err() {
                                    break;
                                }
                            }
                            () = tokio::time::sleep_until(s.end) => { by_server = false; break }
                        }
                    }
                }
                s.slow.down(t.elapsed(), by_server);
                if !by_server {
                    return;
                }
            }
            Err(_) => {
                s.slow.connect_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !s.may_reopen().await {
            return;
        }
    }
}

/// New connections at `burst_per_s`, each reset (SO_LINGER 0) as soon as
/// it is up; every 10 ms, as many as are due by then.
async fn burst(s: Arc<Shared>) {
    let rate = f64::from(s.plan.burst_per_s);
    if rate == 0.0 {
        return;
    }
    let start = tokio::time::Instant::now();
    let mut started = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !s.over() {
        tick.tick().await;
        let due = (rate * start.elapsed().as_secs_f64()) as u64;
        for _ in started..due {
            let s = Arc::clone(&s);
            s.burst[0].fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                match s.connect().await {
                    Ok(c) => {
                        s.burst[1].fetch_add(1, Ordering::Relaxed);
                        // No TIME_WAIT left behind on the client's ports.
                        let _ = c.set_zero_linger();
                    }
                    Err(_) => {
                        s.burst[2].fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        started = started.max(due);
    }
}

/// One oversized request after another: a 1 MiB request line, 1 MiB of
/// headers, a 64 MiB body with Content-Length, an endless chunked body.
async fn oversized(s: Arc<Shared>, worker: usize) {
    let mut kind = worker;
    while !s.over() {
        kind = (kind + 1) % 4;
        let t = Instant::now();
        let outcome = match s.connect().await {
            Ok(c) => send_oversized(c, kind, &s).await,
            Err(_) => (String::from("connect failed"), 0),
        };
        let Ok(mut o) = s.oversized.lock() else {
            return;
        };
        o.attempts += 1;
        *o.outcomes.entry(outcome.0).or_default() += 1;
        o.max_bytes_taken = o.max_bytes_taken.max(outcome.1);
        o.longest_s = o.longest_s.max(t.elapsed().as_secs_f64());
    }
}

async fn send_oversized(mut c: tokio::net::TcpStream, kind: usize, s: &Shared) -> (String, u64) {
    const MIB: usize = 1 << 20;
    let (head, body): (Vec<u8>, usize) = match kind {
        0 => {
            let mut h = b"GET /".to_vec();
            h.extend(std::iter::repeat_n(b'a', MIB));
            h.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
            (h, 0)
        }
        1 => {
            let mut h = b"GET /metrics HTTP/1.1\r\nHost: x\r\n".to_vec();
            for i in 0..128 {
                h.extend_from_slice(format!("X-Pad-{i}: ").as_bytes());
                h.extend(std::iter::repeat_n(b'a', 8 * 1024));
                h.extend_from_slice(b"\r\n");
            }
            h.extend_from_slice(b"\r\n");
            (h, 0)
        }
        2 => (
            format!(
                "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                64 * MIB
            )
            .into_bytes(),
            64 * MIB,
        ),
        _ => (
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            usize::MAX,
        ),
    };
    let chunk: Vec<u8> = if kind == 3 {
        let mut v = format!("{:x}\r\n", 64 * 1024).into_bytes();
        v.extend(std::iter::repeat_n(b'b', 64 * 1024));
        v.extend_from_slice(b"\r\n");
        v
    } else {
        vec![b'b'; 64 * 1024]
    };
    // Reset on close: no TIME_WAIT left on the client's ports.
    let _ = c.set_zero_linger();
    let (mut rd, mut wr) = c.split();
    let mut taken = 0u64;
    let mut answer = Vec::new();
    let write = async {
        if wr.write_all(&head).await.is_err() {
            return;
        }
        taken += head.len() as u64;
        let mut left = body;
        while left > 0 {
            let n = chunk.len().min(left);
            if wr.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            taken += n as u64;
            left = left.saturating_sub(n);
        }
        // Everything sent: wait for the answer.
        std::future::pending::<()>().await;
    };
    let read = async {
        let mut buf = [0u8; 4096];
        while answer.len() < 12 {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let limit =
        tokio::time::sleep_until(s.end.max(tokio::time::Instant::now()) + Duration::from_secs(1));
    let bound = tokio::time::sleep(Duration::from_secs(20));
    let stuck = tokio::select! {
        () = write => false,
        () = read => false,
        () = limit => false,
        () = bound => true,
    };
    if stuck {
        return ("no answer in 20 s".into(), taken);
    }
    // The status line may come after the write side failed.
    if answer.len() < 12 {
        let mut buf = [0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), rd.read(&mut buf)).await {
            answer.extend_from_slice(&buf[..n]);
        }
    }
    let status = std::str::from_utf8(answer.get(9..12).unwrap_or_default())
        .unwrap_or("")
        .to_string();
    (
        if status.is_empty() {
            "closed".into()
        } else {
            status
        },
        taken,
    )
}

/// The scraper: a fresh connection and one GET per `scrape_every`, on a
/// plain thread so the attack's runtime never delays it.
fn scrape_loop(plan: &Plan, stop: &AtomicBool) -> Scrapes {
    let mut out = Scrapes::default();
    let mut times = Vec::new();
    let end = Instant::now() + plan.duration;
    let mut next = Instant::now();
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let r = scrape(plan);
        out.record(t.elapsed().as_secs_f64(), r, &mut times);
        next += plan.scrape_every;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    out.latency = Latency::of(times);
    out
}

fn scrape(plan: &Plan) -> Result<()> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect_timeout(&plan.target, plan.scrape_timeout)
        .context("connect")?;
    c.set_read_timeout(Some(plan.scrape_timeout))?;
    c.set_write_timeout(Some(plan.scrape_timeout))?;
    write!(
        c,
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        plan.scrape_path
    )
    .context("send")?;
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).context("read")?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no end of head")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "status: {}",
        head.lines().next().unwrap_or("")
    );
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .context("no Content-Length")?;
    anyhow::ensure!(
        body.len() == length,
        "body {} of {length} bytes",
        body.len()
    );
    Ok(())
}

/// `rounds` bursts of `concurrency` scrapes at once (each its own thread
/// and fresh connection, as many Prometheus servers scraping one node),
/// one burst every `every`, with the plan's target, path and timeout.
/// Every scrape is timed, failed ones too.
pub fn bursts(plan: &Plan, concurrency: usize, rounds: usize, every: Duration) -> Scrapes {
    let mut out = Scrapes::default();
    let mut times = Vec::new();
    let mut next = Instant::now();
    for _ in 0..rounds {
        let results: Vec<(f64, Result<()>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..concurrency)
                .map(|_| {
                    s.spawn(|| {
                        let t = Instant::now();
                        let r = scrape(plan);
                        (t.elapsed().as_secs_f64(), r)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| (0.0, Err(anyhow::anyhow!("scraper panicked"))))
                })
                .collect()
        });
        for (took, r) in results {
            out.record(took, r, &mut times);
        }
        next += every;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    out.latency = Latency::of(times);
    out
}

/// Peak RSS, high-water mark and descriptors of `pid`, sampled every 200 ms
/// until `stop` is set.
pub fn watch(pid: u32, stop: &AtomicBool) -> Server {
    let mut s = Server::default();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let kib = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            s.peak_rss_kib = s.peak_rss_kib.max(kib("VmRSS:"));
            s.peak_hwm_kib = s.peak_hwm_kib.max(kib("VmHWM:"));
        }
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            s.peak_fds = s.peak_fds.max(fds.count() as u64);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    s
}
