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
        axum::serve(listener, router(shared))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("HTTP server")
    })
}
