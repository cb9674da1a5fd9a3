//! The HTTP side: axum's router on hyper's HTTP/1.1 connections, served
//! on a small tokio runtime, with tower limits (bounded concurrency,
//! request timeout, body limit), connection limits that hold under a flood
//! (issue 21: a bounded table that evicts idle connections, deadlines for
//! the first request head and for idle keep-alive, a head size) and
//! graceful shutdown on SIGTERM/SIGINT. Routes: /metrics, /healthz, /.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use super::connections::{Entry, Table};
use super::metrics::{self, Format};
use super::sources::Shared;

/// Requests served at once; more wait (Prometheus scrapes are few, this
/// bounds the memory of a burst to this many encoded pages).
pub const MAX_CONCURRENT: usize = 16;
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// GET needs no body: anything larger is refused unread (413).
pub const MAX_BODY: usize = 4096;
/// Default of `--max-connections`: open connections at once. Each costs
/// one descriptor and about 10 KiB (hyper's 8 KiB read buffer and the
/// task), so 1,024 are about 10 MiB; beyond it the oldest idle connection
/// is closed (see `connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Bounds of `--max-connections`: fewer than the requests served at once
/// would refuse scrapes; 65,536 is about 650 MiB and as many descriptors.
pub const MAX_CONNECTIONS: std::ops::RangeInclusive<u64> = 16..=65_536;
/// A new connection must send a whole request head this soon (a scraper
/// sends it with the handshake); slowloris and idle sockets are closed.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Between requests on a keep-alive connection, the next request head
/// must arrive within this (hyper's header_read_timeout, whose timer runs
/// from the end of the previous response); and a connection that moves no
/// byte either way for this long (a client that stopped reading its
/// response) is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The request line and headers together: hyper answers 431 above it.
/// Prometheus sends about 300 bytes; hyper's floor is 8 KiB.
pub const MAX_HEAD: usize = 16 * 1024;
/// Pending handshakes the kernel keeps for accept (capped by
/// net.core.somaxconn): a connection burst waits there instead of being
/// dropped, which would cost a scraper a 1 s SYN retransmit.
pub const BACKLOG: u32 = 4096;
/// After SIGTERM, requests in flight get this long to finish; connections
/// still open then (a half-sent request) do not hold the exit.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Descriptors kept beside the connections (listener, netlink sockets,
/// /dev/kmsg, the runtime's own, per-namespace sockets).
pub const FD_RESERVE: u64 = 256;

/// The connection limits of one server (constants above, tests shrink them).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub first_request: Duration,
    pub idle: Duration,
}

impl Limits {
    pub fn new(max_connections: usize) -> Self {
        Self {
            max_connections,
            first_request: FIRST_REQUEST_TIMEOUT,
            idle: IDLE_TIMEOUT,
        }
    }
}

/// Make room for `max` connections under RLIMIT_NOFILE: raise the soft
/// limit to the hard one when it is too low (the systemd default soft
/// limit is 1,024). Returns the connections that fit and a note for the
/// operator when the limit was changed or is too small.
pub fn fit_open_files(max: usize) -> (usize, Option<String>) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let need = max as u64 + FD_RESERVE;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return (max, None);
    };
    if soft >= need {
        return (max, None);
    }
    let raised = setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok();
    let now = if raised { hard } else { soft };
    if now >= need {
        return (
            max,
            Some(format!(
                "open-file limit raised from {soft} to {now} (the hard limit) for {max} connections"
            )),
        );
    }
    let fit = usize::try_from(now.saturating_sub(FD_RESERVE))
        .unwrap_or(max)
        .clamp(1, max);
    (
        fit,
        Some(format!(
            "warning: the open-file limit is {now} (hard {hard}): serving at most {fit} connections instead of {max} (raise LimitNOFILE)"
        )),
    )
}

/// A connection's byte stream with a progress deadline: when neither a
/// read nor a write moves for `idle`, it fails with TimedOut.
pub struct Idle {
    io: tokio::net::TcpStream,
    idle: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Idle {
    pub fn new(io: tokio::net::TcpStream, idle: Duration) -> Self {
        Self {
            io,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn progress(&mut self) {
        let next = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    fn expired(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "connection idle")
}

impl tokio::io::AsyncRead for Idle {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.progress();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl tokio::io::AsyncWrite for Idle {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    // A client reading a long response is not idle.
                    self.progress();
                }
                Poll::Ready(Ok(n))
            }
            // A client that stopped reading its response.
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

const INDEX: &str = "<!DOCTYPE html>\n<html><head><title>ctdoctor exporter</title></head>\n<body><h1>ctdoctor exporter</h1>\n<p>Conntrack table metrics for Prometheus: <a href=\"/metrics\">/metrics</a> (health: <a href=\"/healthz\">/healthz</a>).</p>\n</body></html>\n";

async fn metrics_handler(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    // Netlink calls block: keep them off the async workers.
    let body = tokio::task::spawn_blocking(move || {
        let snap = shared.snapshot();
        metrics::encode(&snap, format)
    })
    .await;
    match body {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, format.content_type())], text).into_response(),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding metrics failed\n",
        )
            .into_response(),
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/", get(|| async { Html(INDEX) }))
        .with_state(shared)
        // The last layer is the outermost: the timeout also covers the
        // wait for a concurrency permit, so a queue of scrapes drains
        // with 408s instead of waiting without bound.
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(GlobalConcurrencyLimitLayer::new(MAX_CONCURRENT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        // Without signal handlers the default action (exit) still applies.
        _ => std::future::pending::<()>().await,
    }
}

/// Bind with a deep accept backlog (tokio's own bind asks for 1,024).
pub fn bind(listen: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(BACKLOG)
}

/// Bind, then serve until SIGTERM/SIGINT. Binding happens before anything
/// else so a taken port is the first error the operator sees.
pub fn serve(
    listen: SocketAddr,
    limits: Limits,
    shared: Arc<Shared>,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(MAX_CONCURRENT + 2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let listener = bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr().context("listening address")?;
        ready(addr);
        run(listener, router(shared), limits, shutdown_signal()).await;
        Ok(())
    })
}

/// Accept until `stop` resolves, then let requests in flight finish for
/// at most SHUTDOWN_GRACE.
pub async fn run(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    stop: impl std::future::Future<Output = ()>,
) {
    let table = Table::new(limits.max_connections);
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    // Every connection task holds a sender: recv() returns None once
    // they are all gone.
    let (alive, mut all_gone) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    // Refused: every connection is mid-request; the drop
                    // closes this one.
                    let Some(entry) = table.admit() else { continue };
                    let _ = stream.set_nodelay(true);
                    let conn = connection(stream, entry, app.clone(), limits, stopped.clone(), alive.clone());
                    tokio::spawn(conn);
                }
                Err(e) => {
                    // Out of descriptors or memory: free one and retry
                    // soon (axum::serve sleeps 1 s, as long as a scrape
                    // may take); anything else (ECONNABORTED) is the
                    // client's and the next accept goes on.
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) {
                        table.evict_one();
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            },
        }
    }
    drop(listener);
    let _ = stopping.send(true);
    drop(alive);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, all_gone.recv()).await;
}

/// Serve one connection until it ends, is evicted, misses its first
/// request deadline, or the server stops (then gracefully).
async fn connection(
    stream: tokio::net::TcpStream,
    entry: Entry,
    app: Router,
    limits: Limits,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    _alive: tokio::sync::mpsc::Sender<()>,
) {
    use tower::ServiceExt;
    let slot = Arc::clone(entry.slot());
    let on_request = Arc::clone(&slot);
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let busy = on_request.begin();
        let app = app.clone();
        async move {
            let response = app.oneshot(req).await;
            drop(busy);
            response
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    // half_close: a probe that sends its request and shuts down its write
    // side (`nc -N`, HTTP/1.0 scripts) still gets the answer.
    http.timer(hyper_util::rt::TokioTimer::new())
        .half_close(true)
        .header_read_timeout(limits.idle)
        .max_buf_size(MAX_HEAD);
    let io = hyper_util::rt::TokioIo::new(Idle::new(stream, limits.idle));
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let first = tokio::time::sleep(limits.first_request);
    tokio::pin!(first);
    let mut stopping = false;
    loop {
        tokio::select! {
            // Errors (reset, timeouts, 4xx on a bad head) end this client only.
            _ = conn.as_mut() => break,
            () = slot.evicted() => break,
            () = &mut first, if !slot.served() => break,
            r = stopped.changed(), if !stopping => {
                stopping = true;
                if r.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
    drop(entry);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Instant;

    /// Serve a trivial router with `max` connections, `first` and `idle`
    /// deadlines in a background runtime; return its address.
    fn spawn(max: usize, first: Duration, idle: Duration) -> SocketAddr {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let l = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
                tx.send(l.local_addr().expect("addr")).expect("send");
                let app = Router::new().route("/", get(|| async { "ok" }));
                let limits = Limits {
                    max_connections: max,
                    first_request: first,
                    idle,
                };
                run(l, app, limits, std::future::pending()).await;
            });
        });
        rx.recv().expect("address")
    }

    fn get_ok(addr: SocketAddr) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(addr) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        if s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 200")
    }

    /// Closed by the server (EOF or reset) within `within`, not by our
    /// 5 s read timeout.
    fn closed_within(s: &mut std::net::TcpStream, within: Duration) {
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let t = Instant::now();
        let mut buf = [0u8; 64];
        let r = s.read(&mut buf);
        assert!(
            matches!(r, Ok(0))
                || r.as_ref()
                    .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
            "{r:?}"
        );
        assert!(t.elapsed() < within, "{:?}", t.elapsed());
    }

    #[test]
    fn half_sent_first_requests_are_closed() {
        let addr = spawn(4, Duration::from_millis(300), Duration::from_secs(30));
        let mut half = std::net::TcpStream::connect(addr).expect("connect");
        half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .expect("write");
        closed_within(&mut half, Duration::from_secs(3));
    }

    #[test]
    fn idle_keep_alive_connections_are_closed() {
        let addr = spawn(4, Duration::from_secs(30), Duration::from_millis(300));
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut buf = [0u8; 256];
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = s.read(&mut buf).expect("response");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        closed_within(&mut s, Duration::from_secs(3));
    }

    #[test]
    fn idle_clients_cannot_starve_a_scrape() {
        // Long deadlines: only eviction can make room.
        let addr = spawn(2, Duration::from_secs(60), Duration::from_secs(60));
        let mut idle: Vec<_> = (0..8)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
            .collect();
        let t = Instant::now();
        assert!(get_ok(addr));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // The oldest idle ones were closed to make room.
        closed_within(&mut idle[0], Duration::from_secs(3));
    }

    #[test]
    fn oversized_heads_are_refused() {
        let addr = spawn(4, Duration::from_secs(5), Duration::from_secs(5));
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(MAX_HEAD));
        // The server may close before taking it all.
        let _ = s.write_all(long.as_bytes());
        let mut out = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = s.read_to_end(&mut out);
        assert!(
            out.is_empty() || out.starts_with(b"HTTP/1.1 431"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
}
