//! The HTTP side: axum on a small tokio runtime, with tower limits
//! (bounded concurrency, request timeout, body limit) and graceful shutdown
//! on SIGTERM/SIGINT. Routes: /metrics, /healthz, /.

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

use super::metrics::{self, Format};
use super::sources::Shared;

/// Requests served at once; more wait (Prometheus scrapes are few, this
/// bounds the memory of a burst to this many encoded pages).
pub const MAX_CONCURRENT: usize = 16;
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// GET needs no body: anything larger is refused unread.
pub const MAX_BODY: usize = 4096;
/// Open connections at once; further ones wait in the kernel's accept
/// queue. Without this, idle clients could hold every file descriptor.
pub const MAX_CONNECTIONS: usize = 256;
/// A connection that sends nothing for this long is closed (idle
/// keep-alive, or a client that never finishes its request headers).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// After SIGTERM, requests in flight get this long to finish; connections
/// still open then (a half-sent request) do not hold the exit.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A TCP listener that holds at most `MAX_CONNECTIONS` connections open
/// and closes those idle for `idle` (axum's own TcpListener has neither).
pub struct BoundedListener {
    inner: tokio::net::TcpListener,
    permits: Arc<tokio::sync::Semaphore>,
    idle: Duration,
}

impl BoundedListener {
    pub fn new(inner: tokio::net::TcpListener, max: usize, idle: Duration) -> Self {
        Self {
            inner,
            permits: Arc::new(tokio::sync::Semaphore::new(max)),
            idle,
        }
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = Bounded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Bounded, SocketAddr) {
        // The semaphore is never closed, so acquiring only waits.
        let permit = Arc::clone(&self.permits).acquire_owned().await;
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let stream = Bounded {
            io,
            _permit: permit.ok(),
            idle: self.idle,
            deadline: Box::pin(tokio::time::sleep(self.idle)),
        };
        (stream, addr)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One accepted connection: its permit and its idle deadline, which every
/// byte read pushes back.
pub struct Bounded {
    io: tokio::net::TcpStream,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    idle: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl tokio::io::AsyncRead for Bounded {
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
                    let next = tokio::time::Instant::now() + self.idle;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection idle",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl tokio::io::AsyncWrite for Bounded {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = r
            && n > 0
        {
            // A client reading a long response is not idle.
            let next = tokio::time::Instant::now() + self.idle;
            self.deadline.as_mut().reset(next);
        }
        r
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

/// Bind, then serve until SIGTERM/SIGINT. Binding happens before anything
/// else so a taken port is the first error the operator sees.
pub fn serve(
    listen: SocketAddr,
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
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr().context("listening address")?;
        ready(addr);
        let listener = BoundedListener::new(listener, MAX_CONNECTIONS, IDLE_TIMEOUT);
        let (stopping, mut stopped) = tokio::sync::watch::channel(false);
        let server = axum::serve(listener, router(shared)).with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = stopping.send(true);
        });
        let grace = async move {
            // Err only once the server is gone, and then select! has
            // already taken the server's branch.
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            r = server => r.context("HTTP server"),
            () = grace => Ok(()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Instant;

    /// Serve a trivial router on a BoundedListener of `max` connections
    /// and `idle` timeout in a background runtime; return its address.
    fn spawn(max: usize, idle: Duration) -> SocketAddr {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                tx.send(l.local_addr().expect("addr")).expect("send");
                let app = Router::new().route("/", get(|| async { "ok" }));
                let _ = axum::serve(BoundedListener::new(l, max, idle), app).await;
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

    #[test]
    fn idle_and_half_sent_requests_are_closed() {
        let addr = spawn(4, Duration::from_millis(300));
        let mut half = std::net::TcpStream::connect(addr).expect("connect");
        half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .expect("write");
        half.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let t = Instant::now();
        let mut buf = [0u8; 64];
        // Closed by the server (EOF or reset), not by our 5 s timeout.
        let r = half.read(&mut buf);
        assert!(
            matches!(r, Ok(0))
                || r.as_ref()
                    .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
            "{r:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    }

    #[test]
    fn idle_clients_cannot_starve_a_scrape() {
        let addr = spawn(2, Duration::from_millis(300));
        // More idle connections than the limit: they take the permits,
        // then time out, and the real request is served after them.
        let idle: Vec<_> = (0..8)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
            .collect();
        let t = Instant::now();
        assert!(get_ok(addr));
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        drop(idle);
    }
}
