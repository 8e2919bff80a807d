//! The operator's HTTP surface: health, readiness, Prometheus metrics, a JSON API over the
//! [`StatusBoard`], and a status page. Handlers only read shared state and never hold a lock
//! across an `.await`.

mod map;
mod page;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::status::StatusBoard;

/// Renders the Prometheus text exposition of whatever the driver counts.
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

/// Readiness as the driver sees it: assigned, state restored, broker reachable.
#[derive(Debug, Default)]
pub struct Readiness {
    ready: AtomicBool,
    reason: Mutex<String>,
}

impl Readiness {
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Not ready, and why (shown by `/readyz`).
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = reason.into();
        self.ready.store(false, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The gauge `spikewatch_ready` (1 when `/readyz` answers 200), Prometheus text.
    pub fn prometheus(&self) -> String {
        format!(
            "# HELP spikewatch_ready 1 when /readyz answers 200 (assigned and consuming), else 0\n\
             # TYPE spikewatch_ready gauge\nspikewatch_ready {}\n",
            u8::from(self.is_ready())
        )
    }

    fn reason(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub board: Arc<Mutex<StatusBoard>>,
    pub readiness: Arc<Readiness>,
    pub metrics: MetricsRenderer,
    /// Shown in the page title, e.g. the consumer group or "demo".
    pub instance: String,
}

impl AppState {
    /// A state with an empty board, not ready, and no metrics.
    pub fn new(instance: impl Into<String>) -> Self {
        Self {
            board: Arc::new(Mutex::new(StatusBoard::default())),
            readiness: Arc::new(Readiness::default()),
            metrics: Arc::new(String::new),
            instance: instance.into(),
        }
    }

    fn board(&self) -> std::sync::MutexGuard<'_, StatusBoard> {
        // A panic elsewhere while holding the lock leaves data that is still worth showing.
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// All routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/incidents", get(incidents))
        .route("/api/series", get(series))
        .with_state(state)
}

/// Serves until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(listener, state, shutdown).await
}

/// Like [`serve`], on a listener the caller bound (e.g. port 0 in tests).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "HTTP server listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.readiness.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let reason = s.readiness.reason();
        let body = if reason.is_empty() {
            "not ready\n".to_string()
        } else {
            format!("not ready: {reason}\n")
        };
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        (s.metrics)(),
    )
        .into_response()
}

async fn incidents(State(s): State<AppState>) -> Response {
    let view = s.board().incidents();
    Json(view).into_response()
}

#[derive(Debug, Deserialize)]
struct SeriesQuery {
    service: String,
    geo: String,
    #[serde(default = "default_signal")]
    signal: String,
}

fn default_signal() -> String {
    crate::event::SIGNAL_COMPLAINTS.to_string()
}

async fn series(State(s): State<AppState>, Query(q): Query<SeriesQuery>) -> Response {
    match s.board().series(&q.service, &q.geo, &q.signal) {
        Some(view) => Json(view).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!(
                "no recent buckets for {}/{}/{}: only roll-up geos and series that had an \
                 incident are kept\n",
                q.service, q.geo, q.signal
            ),
        )
            .into_response(),
    }
}

async fn status_page(State(s): State<AppState>) -> Html<String> {
    let board = s.board();
    Html(page::render(&board, &s.instance))
}
