//! The operator's HTTP surface: health, readiness, Prometheus metrics, a JSON API over the
//! [`StatusBoard`], and a status page. Handlers only read shared state and never hold a lock
//! across an `.await`.

mod map;
mod page;
mod settings;

use std::collections::VecDeque;
use std::future::Future;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

pub use settings::HttpSettings;

use crate::status::StatusBoard;

/// Renders the Prometheus text exposition of whatever the driver counts.
pub(crate) type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

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

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The gauge `spikewatch_ready` (1 when `/readyz` answers 200), Prometheus text (the
    /// registry of `/metrics` encodes it through its [`prometheus_client`] collector).
    pub fn prometheus(&self) -> String {
        crate::prom::render_collector(ReadinessGauge(self.is_ready()))
    }

    /// Why not ready (empty if never said).
    pub(crate) fn reason(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// `spikewatch_ready` at one moment.
#[derive(Debug)]
struct ReadinessGauge(bool);

impl ReadinessGauge {
    fn encode_into(
        &self,
        e: &mut prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        crate::prom::gauge(
            e,
            "ready",
            "1 when /readyz answers 200 (assigned and consuming), else 0",
            u64::from(self.0),
        )
    }
}

impl prometheus_client::collector::Collector for ReadinessGauge {
    fn encode(&self, mut e: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        self.encode_into(&mut e)
    }
}

/// The `/metrics` registry reads readiness at every scrape.
impl prometheus_client::collector::Collector for Readiness {
    fn encode(&self, mut e: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        ReadinessGauge(self.is_ready()).encode_into(&mut e)
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

/// Limits of the HTTP server (`[http]` settings). Without them 1,100 idle connections
/// exhausted the process's file descriptors: `/healthz` stopped answering and the pipeline
/// could not open a socket to restore its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Open connections at most; at the cap a new connection closes the oldest one.
    pub max_connections: usize,
    /// A connection that sends no complete request head for this long (after connecting or
    /// after its previous response) is closed; a connection told to close that has not
    /// finished its response within it is dropped.
    pub idle_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self::from(&HttpSettings::default())
    }
}

impl From<&HttpSettings> for ServerLimits {
    fn from(h: &HttpSettings) -> Self {
        Self {
            max_connections: h.max_connections.max(1),
            idle_timeout: Duration::from_secs(h.idle_timeout.0.max(1)),
        }
    }
}

/// Like `serve`, on a listener the caller bound (e.g. port 0 in tests), with the default
/// [`ServerLimits`].
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, ServerLimits::default(), shutdown).await
}

/// Like [`serve_on`], with the given limits. HTTP/1.1 only (what `axum::serve` spoke too). At
/// most `max_connections` connections are open: when a new one arrives at the cap, the oldest
/// is told to close (at once if idle, after its response otherwise) and the new one is served
/// as soon as it has. The oldest rather than the newest goes because a client holding idle
/// connections holds old ones, while a health probe or a browser comes in new.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(
        addr = %listener.local_addr()?,
        max_connections = limits.max_connections,
        idle_timeout_s = limits.idle_timeout.as_secs_f64(),
        "HTTP server listening"
    );
    let app = router(state);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Open connections, oldest first: who is told to close at the cap.
    let mut open: VecDeque<Arc<Notify>> = VecDeque::new();
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors (or a connection reset before it was taken):
                    // retrying at once would spin.
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Ended connections still listed are skipped: only one that is still open
                // frees a permit.
                while let Some(oldest) = open.pop_front() {
                    if Arc::strong_count(&oldest) > 1 {
                        oldest.notify_one();
                        break;
                    }
                }
                let wait =
                    tokio::time::timeout(limits.idle_timeout, permits.clone().acquire_owned());
                tokio::select! {
                    biased;
                    _ = &mut shutdown => break,
                    p = wait => match p {
                        Ok(Ok(p)) => p,
                        // Nothing closed in time: this one is refused (closed) instead.
                        _ => continue,
                    },
                }
            }
        };
        open.retain(|c| Arc::strong_count(c) > 1);
        let close = Arc::new(Notify::new());
        open.push_back(close.clone());
        tasks.spawn(serve_connection(
            stream,
            app.clone(),
            limits,
            close,
            stop_rx.clone(),
            permit,
        ));
    }
    drop(listener);
    // Graceful: idle connections close at once, the others after their response, and any
    // still open after `idle_timeout` are dropped.
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.idle_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
    }
    Ok(())
}

/// Serves one connection until it ends, is told to close (`close`: the server is at its
/// cap; `stop`: shutdown), or ends badly. Holds its `permit` until then.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    limits: ServerLimits,
    close: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper starts the header timer whenever it waits for a request head, on a new
    // connection and between keep-alive requests alike: it is the idle timeout.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .keep_alive(true);
    let service = TowerToHyperService::new(app);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    // Armed once the connection is told to close: a client that does not read its response
    // must not keep the connection (and its permit) forever.
    let grace = tokio::time::sleep(Duration::from_secs(100 * 365 * 86_400));
    let mut grace = std::pin::pin!(grace);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("HTTP connection ended: {e}");
                }
                return;
            }
            _ = close.notified(), if !closing => {}
            _ = stop.changed(), if !closing => {}
            _ = grace.as_mut(), if closing => {
                tracing::debug!("HTTP connection dropped: did not finish after being told to close");
                return;
            }
        }
        closing = true;
        conn.as_mut().graceful_shutdown();
        grace
            .as_mut()
            .reset(tokio::time::Instant::now() + limits.idle_timeout);
    }
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
        [(header::CONTENT_TYPE, crate::prom::CONTENT_TYPE)],
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
