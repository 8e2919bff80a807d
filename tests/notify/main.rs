//! Alert delivery against a real local HTTP receiver (axum on 127.0.0.1): the notifier is fed
//! the outage events of a short demo run, as the pipeline would hand them over. One test binary
//! (`cargo test --test notify`; `cargo test --test notify alertmanager::` runs one module), a
//! module per concern:
//!
//! * `delivery`: every event once and in order, retries and their bound, a receiver that never
//!   answers, the filters (with the generic JSON format).
//! * `alertmanager`: the Alertmanager shape, severity changes, re-sends and moved partitions.
//! * `slack`: the Slack-compatible `text` and `blocks`.
//! * `readme`: the README's "Alert delivery" example and key table against the code.
//!
//! The outage events, the recording receiver and the notifier helpers they share are here.

mod alertmanager;
mod delivery;
mod readme;
mod slack;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use spikewatch::config::Config;
use spikewatch::engine::{BucketReport, Engine, EngineSink};
use spikewatch::event::{AnomalyEvent, IncidentState, OutageEvent, Severity};
use spikewatch::notify::{Format, Notifier, NotifySettings, OutputSettings, OutputStatsSnapshot};
use spikewatch::sim::{self, Outage, Scenario, DAY_MS, HOUR_MS};

// ---- Outage events from a demo run ----

#[derive(Default)]
struct Outages(Vec<OutageEvent>);

impl EngineSink for Outages {
    fn bucket(&mut self, _: &BucketReport<'_>) {}
    fn anomaly(&mut self, _: AnomalyEvent) {}
    fn outage(&mut self, e: OutageEvent) {
        self.0.push(e);
    }
}

/// The demo's telegram over three days with one outage in Rome and Milan (as in
/// tests/demo.rs: debug builds are slow), run once for every test here.
pub(crate) fn demo_outages() -> &'static [OutageEvent] {
    static EVENTS: OnceLock<Vec<OutageEvent>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let base = Scenario::demo();
        let from = base.start_ms + 2 * DAY_MS + 10 * HOUR_MS;
        let to = from + 2 * HOUR_MS;
        let scenario = Scenario {
            days: 3,
            services: base
                .services
                .into_iter()
                .filter(|s| s.name == "telegram")
                .collect(),
            outages: vec![Outage {
                label: "telegram down in Rome and Milan",
                service: "telegram",
                geos: vec![("IT-RM", from, to), ("IT-MI", from, to)],
                complaints_factor: 12.0,
                mentions_factor: 10.0,
            }],
            ..base
        };
        let mut engine = Engine::new(Config::default());
        let mut out = Outages::default();
        sim::drive(&scenario, &mut engine, &mut out);
        let events = out.0;
        assert!(
            events.iter().any(|e| e.state == IncidentState::Opened)
                && events.iter().any(|e| e.state == IncidentState::Resolved),
            "the demo run has an outage that opens and resolves: {events:#?}"
        );
        events
    })
}

/// The demo outage's events reshaped into one that starts as a lone-signal minor outage and
/// is confirmed (and major) later, then resolves as minor; plus a second outage that is never
/// confirmed.
pub(crate) fn escalating_outages() -> Vec<OutageEvent> {
    let events = demo_outages();
    let opened = events
        .iter()
        .find(|e| e.state == IncidentState::Opened)
        .unwrap();
    let resolved = events
        .iter()
        .find(|e| e.state == IncidentState::Resolved)
        .unwrap();
    let lone = |e: &OutageEvent, seq, state| OutageEvent {
        seq,
        state,
        severity: Severity::Minor,
        confirmed: false,
        signals: vec!["mentions".into()],
        ..e.clone()
    };
    let confirmed = |e: &OutageEvent, seq, state| OutageEvent {
        seq,
        state,
        severity: Severity::Major,
        confirmed: true,
        ..e.clone()
    };
    let other = |e: &OutageEvent| OutageEvent {
        outage_id: format!("{}-other", e.outage_id),
        ..e.clone()
    };
    vec![
        lone(opened, 1, IncidentState::Opened),
        lone(&other(opened), 1, IncidentState::Opened),
        confirmed(opened, 2, IncidentState::Updated),
        lone(&other(opened), 2, IncidentState::Updated),
        // Matches no severity filter on its own: delivered because its outage was admitted.
        OutageEvent {
            severity: Severity::Minor,
            ..confirmed(resolved, 3, IncidentState::Resolved)
        },
        lone(&other(resolved), 3, IncidentState::Resolved),
    ]
}

// ---- A receiver that records what it is sent ----

#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: serde_json::Value,
    pub(crate) status: StatusCode,
}

#[derive(Clone, Default)]
pub(crate) struct Receiver {
    log: Arc<Mutex<Vec<Received>>>,
    /// Answer 500 to this many requests first.
    pub(crate) fail_first: usize,
    /// Never answer.
    pub(crate) hang: bool,
    seen: Arc<AtomicUsize>,
}

impl Receiver {
    pub(crate) fn requests(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }
    pub(crate) fn accepted(&self) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.status.is_success())
            .collect()
    }
}

async fn record(
    State(r): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if r.hang {
        std::future::pending::<()>().await;
    }
    let n = r.seen.fetch_add(1, Ordering::SeqCst);
    let status = if n < r.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let body = serde_json::from_slice(&body).unwrap_or_else(|e| {
        serde_json::Value::String(format!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        ))
    });
    r.log.lock().unwrap().push(Received {
        path: uri.path().to_string(),
        headers,
        body,
        status,
    });
    status
}

/// Serves `r` on 127.0.0.1 (a free port); returns its base URL.
pub(crate) async fn serve(r: Receiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(record).with_state(r);
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}

/// JSON equality with floats compared to 1e-12 relative: serde_json's float parser may be off
/// in the last bit, which is not what these tests are about.
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b)),
        (Object(x), Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// `body` is `event` as JSON (and parses as an outage event).
pub(crate) fn assert_is_event(body: &serde_json::Value, event: &OutageEvent) {
    let parsed: OutageEvent = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(
        (&parsed.outage_id, parsed.seq),
        (&event.outage_id, event.seq)
    );
    assert!(
        same_json(body, &serde_json::to_value(event).unwrap()),
        "{body}
is not
{event:?}"
    );
}

pub(crate) fn output(url: &str, format: Format) -> OutputSettings {
    OutputSettings {
        // Fast retries: the test waits for them.
        retry_backoff_ms: 20,
        max_retry_backoff_ms: 200,
        ..OutputSettings::new(url, format)
    }
}

pub(crate) fn start(o: OutputSettings) -> Notifier {
    let settings = NotifySettings { webhook: vec![o] };
    settings.validate().unwrap();
    Notifier::start(&settings).unwrap()
}

pub(crate) fn stats(n: &Notifier) -> OutputStatsSnapshot {
    n.stats().snapshot()[0].2
}

/// Waits (a generous bound, not a timing assertion) until `done` holds.
pub(crate) async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
