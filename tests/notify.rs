//! Alert delivery against a real local HTTP receiver (axum on 127.0.0.1): the notifier is fed
//! the outage events of a short demo run, as the pipeline would hand them over.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use spikewatch::config::{Config, Secs};
use spikewatch::engine::{BucketReport, Engine, EngineSink};
use spikewatch::event::{AnomalyEvent, IncidentState, OutageEvent, Severity, Timestamp};
use spikewatch::notify::{
    Format, Notifier, NotifySettings, NotifyUrl, OutputSettings, OutputStatsSnapshot,
};
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
fn demo_outages() -> &'static [OutageEvent] {
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

// ---- A receiver that records what it is sent ----

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: serde_json::Value,
    status: StatusCode,
}

#[derive(Clone, Default)]
struct Receiver {
    log: Arc<Mutex<Vec<Received>>>,
    /// Answer 500 to this many requests first.
    fail_first: usize,
    /// Never answer.
    hang: bool,
    seen: Arc<AtomicUsize>,
}

impl Receiver {
    fn requests(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }
    fn accepted(&self) -> Vec<Received> {
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
async fn serve(r: Receiver) -> String {
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
fn assert_is_event(body: &serde_json::Value, event: &OutageEvent) {
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

fn output(url: &str, format: Format) -> OutputSettings {
    OutputSettings {
        // Fast retries: the test waits for them.
        retry_backoff_ms: 20,
        max_retry_backoff_ms: 200,
        ..OutputSettings::new(url, format)
    }
}

fn start(o: OutputSettings) -> Notifier {
    let settings = NotifySettings { webhook: vec![o] };
    settings.validate().unwrap();
    Notifier::start(&settings).unwrap()
}

fn stats(n: &Notifier) -> OutputStatsSnapshot {
    n.stats().snapshot()[0].2
}

/// Waits (a generous bound, not a timing assertion) until `done` holds.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- Tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_receives_each_outage_event_once_in_order_as_the_event_itself() {
    let events = demo_outages();
    let rx = Receiver::default();
    let url = serve(rx.clone()).await;
    let n = start(output(&format!("{url}/hooks/spikewatch"), Format::Json));
    let h = n.handle();
    for e in events {
        h.notify(e);
    }
    wait_for("every event", || stats(&n).sent == events.len() as u64).await;
    // The pipeline may emit the same events again (after a rebalance): not sent twice.
    for e in events {
        h.notify(e);
    }
    wait_for("the duplicates to be skipped", || {
        stats(&n).deduplicated == events.len() as u64
    })
    .await;
    let st = n.stats();
    n.shutdown(Duration::from_secs(5)).await;

    let got = rx.requests();
    assert_eq!(
        got.len(),
        events.len(),
        "one request per event, no duplicates"
    );
    for (r, e) in got.iter().zip(events) {
        assert_eq!(r.path, "/hooks/spikewatch");
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(
            r.headers["idempotency-key"].to_str().unwrap(),
            format!("{}#{}", e.outage_id, e.seq)
        );
        assert_is_event(&r.body, e);
    }
    let s = st.snapshot()[0].2;
    assert_eq!((s.failed, s.dropped, s.retries), (0, 0, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_the_first_three_requests_gets_the_event_after_retries() {
    let event = &demo_outages()[0];
    let rx = Receiver {
        fail_first: 3,
        ..Receiver::default()
    };
    let url = serve(rx.clone()).await;
    let n = start(output(&url, Format::Json));
    n.handle().notify(event);
    wait_for("the event", || stats(&n).sent == 1).await;
    let s = stats(&n);
    assert_eq!((s.retries, s.failed), (3, 0), "{s:?}");
    let got = rx.requests();
    assert_eq!(
        got.iter().map(|r| r.status.as_u16()).collect::<Vec<_>>(),
        [500, 500, 500, 200]
    );
    for r in &got {
        assert_is_event(&r.body, event);
    }
    n.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_and_a_given_up_event_is_counted_as_failed() {
    let event = &demo_outages()[0];
    let rx = Receiver {
        fail_first: usize::MAX,
        ..Receiver::default()
    };
    let url = serve(rx.clone()).await;
    let n = start(OutputSettings {
        max_retries: 2,
        ..output(&url, Format::Json)
    });
    n.handle().notify(event);
    wait_for("the event to be given up", || stats(&n).failed == 1).await;
    assert_eq!(rx.requests().len(), 3, "the first attempt and two retries");
    assert_eq!(stats(&n).sent, 0);
    n.shutdown(Duration::from_secs(5)).await;
}

fn rfc3339(v: &serde_json::Value) -> Timestamp {
    Timestamp::parse_rfc3339(v.as_str().expect("a string timestamp")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_gets_one_alert_per_outage_with_labels_annotations_and_ends_on_resolve() {
    let events = demo_outages();
    let rx = Receiver::default();
    let url = serve(rx.clone()).await;
    let n = start(OutputSettings {
        resend_interval: Secs(0),
        ..output(&url, Format::Alertmanager)
    });
    for e in events {
        n.handle().notify(e);
    }
    wait_for("every event", || stats(&n).sent == events.len() as u64).await;
    n.shutdown(Duration::from_secs(5)).await;

    let got = rx.requests();
    assert_eq!(got.len(), events.len());
    for (r, e) in got.iter().zip(events) {
        assert_eq!(r.path, "/api/v2/alerts");
        let alerts = r.body.as_array().expect("an array of alerts");
        // The outage's alert is the last; one before it ends the old severity's alert.
        let (current, ended) = alerts.split_last().expect("at least one alert");
        for a in alerts {
            let labels = a["labels"].as_object().unwrap();
            assert_eq!(labels["alertname"], "SpikewatchOutage");
            assert_eq!(labels["service"], e.service.as_str());
            assert_eq!(labels["outage_id"], e.outage_id.as_str());
            assert!(
                ["minor", "major", "critical"].contains(&labels["severity"].as_str().unwrap()),
                "{a}"
            );
            for v in labels
                .values()
                .chain(a["annotations"].as_object().unwrap().values())
            {
                assert!(
                    v.is_string(),
                    "Alertmanager takes string labels and annotations: {a}"
                );
            }
            assert_eq!(rfc3339(&a["startsAt"]), e.opened_at);
        }
        assert_eq!(
            current["labels"]["severity"],
            serde_json::to_value(e.severity).unwrap()
        );
        let summary = current["annotations"]["summary"].as_str().unwrap();
        assert!(summary.starts_with("telegram: "), "{summary}");
        assert!(summary.contains("problems in IT"), "{summary}");
        assert!(!current["annotations"]["description"]
            .as_str()
            .unwrap()
            .is_empty());
        match e.state {
            IncidentState::Resolved => {
                assert_eq!(rfc3339(&current["endsAt"]), e.resolved_at.unwrap());
                assert!(summary.contains("resolved"), "{summary}");
            }
            _ => assert!(current.get("endsAt").is_none(), "firing: {current}"),
        }
        for a in ended {
            assert!(a.get("endsAt").is_some(), "{a}");
            assert_ne!(a["labels"]["severity"], current["labels"]["severity"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_open_alerts_are_sent_again_until_resolved() {
    let opened = demo_outages()
        .iter()
        .find(|e| e.state == IncidentState::Opened)
        .unwrap();
    let rx = Receiver::default();
    let url = serve(rx.clone()).await;
    let n = start(OutputSettings {
        resend_interval: Secs(1),
        ..output(&url, Format::Alertmanager)
    });
    n.handle().notify(opened);
    wait_for("a re-send", || rx.requests().len() >= 2).await;
    assert_eq!(stats(&n).sent, 1, "re-sends are not events");
    n.shutdown(Duration::from_secs(5)).await;
    let got = rx.requests();
    assert_eq!(got[1].body, got[0].body, "the same open alert again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_format_has_the_headline_as_text_and_blocks() {
    let events = demo_outages();
    let rx = Receiver::default();
    let url = serve(rx.clone()).await;
    let n = start(output(&url, Format::Slack));
    for e in events {
        n.handle().notify(e);
    }
    wait_for("every event", || stats(&n).sent == events.len() as u64).await;
    n.shutdown(Duration::from_secs(5)).await;
    let got = rx.accepted();
    assert_eq!(got.len(), events.len());
    for (r, e) in got.iter().zip(events) {
        let text = r.body["text"].as_str().expect("`text` is a string");
        assert!(
            text.starts_with("telegram: ") && text.contains("problems in IT"),
            "{text}"
        );
        assert!(text.contains(" UTC ("), "{text}");
        if e.confirmed {
            assert!(
                text.contains("confirmed by complaints and mentions"),
                "{text}"
            );
        }
        if e.state == IncidentState::Resolved {
            assert!(text.contains("resolved"), "{text}");
        }
        let blocks = r.body["blocks"].as_array().expect("`blocks`");
        assert!(!blocks.is_empty());
        for b in blocks {
            assert_eq!(b["type"], "section");
            assert_eq!(b["text"]["type"], "mrkdwn");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_receiver_does_not_block_the_sender_and_drops_are_counted() {
    let template = &demo_outages()[0];
    let rx = Receiver {
        hang: true,
        ..Receiver::default()
    };
    let url = serve(rx.clone()).await;
    const QUEUE: usize = 16;
    let n = start(OutputSettings {
        queue: QUEUE,
        timeout: Secs(1),
        ..output(&url, Format::Json)
    });
    let h = n.handle();
    let events: Vec<OutageEvent> = (0..1000u64)
        .map(|i| OutageEvent {
            seq: i + 1,
            state: if i == 0 {
                IncidentState::Opened
            } else {
                IncidentState::Updated
            },
            ..template.clone()
        })
        .collect();
    let t = Instant::now();
    for e in &events {
        h.notify(e);
    }
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "notify must not wait: {took:?}"
    );
    let s = stats(&n);
    // At most the queue and the one event in flight are kept.
    assert!(s.dropped >= 1000 - QUEUE as u64 - 1, "{s:?}");
    assert!(s.queued <= QUEUE as u64, "{s:?}");
    assert_eq!(s.sent, 0);
    // Shutting down gives up on the hung receiver instead of waiting for it.
    let t = Instant::now();
    n.shutdown(Duration::from_millis(500)).await;
    assert!(t.elapsed() < Duration::from_secs(10));
}

/// The demo outage's events reshaped into one that starts as a lone-signal minor outage and
/// is confirmed (and major) later, then resolves as minor; plus a second outage that is never
/// confirmed.
fn escalating_outages() -> Vec<OutageEvent> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_admit_an_outage_from_its_first_matching_event_through_its_resolution() {
    let events = escalating_outages();
    for (filter, want) in [
        (
            OutputSettings {
                only_confirmed: true,
                ..OutputSettings::new("http://unused", Format::Json)
            },
            vec![2, 4],
        ),
        (
            OutputSettings {
                min_severity: Severity::Major,
                ..OutputSettings::new("http://unused", Format::Json)
            },
            vec![2, 4],
        ),
        (
            OutputSettings::new("http://unused", Format::Json),
            vec![0, 1, 2, 3, 4, 5],
        ),
    ] {
        let rx = Receiver::default();
        let url = serve(rx.clone()).await;
        let n = start(OutputSettings {
            url: NotifyUrl(url),
            ..filter
        });
        for e in &events {
            n.handle().notify(e);
        }
        wait_for("the admitted events", || {
            stats(&n).sent == want.len() as u64
        })
        .await;
        n.shutdown(Duration::from_secs(5)).await;
        let got = rx.requests();
        assert_eq!(got.len(), want.len());
        for (r, &i) in got.iter().zip(&want) {
            assert_is_event(&r.body, &events[i]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_ends_the_old_severity_alert_when_an_outage_escalates() {
    let events: Vec<OutageEvent> = escalating_outages().into_iter().step_by(2).collect();
    let rx = Receiver::default();
    let url = serve(rx.clone()).await;
    let n = start(OutputSettings {
        resend_interval: Secs(0),
        ..output(&url, Format::Alertmanager)
    });
    for e in &events {
        n.handle().notify(e);
    }
    wait_for("every event", || stats(&n).sent == 3).await;
    n.shutdown(Duration::from_secs(5)).await;
    let severities: Vec<Vec<(String, bool)>> = rx
        .requests()
        .iter()
        .map(|r| {
            r.body
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    (
                        a["labels"]["severity"].as_str().unwrap().to_string(),
                        a.get("endsAt").is_some(),
                    )
                })
                .collect()
        })
        .collect();
    let s = |v: &str, ended| (v.to_string(), ended);
    assert_eq!(
        severities,
        [
            vec![s("minor", false)],
            vec![s("minor", true), s("major", false)],
            vec![s("major", true), s("minor", true)],
        ]
    );
}

/// The README's "Alert delivery" section: its TOML example is a valid config, and its key
/// table names every `[[notify.webhook]]` key with the default the code has.
#[test]
fn readme_alert_delivery_example_is_valid_and_its_table_lists_every_key() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("\n## Alert delivery\n")
        .nth(1)
        .expect("a section \"Alert delivery\"");
    let section = section.split("\n## ").next().unwrap();
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a TOML example");
    let mut cfg = Config::from_toml_str(example, "README.md").unwrap();
    cfg.notify
        .resolve_env(|name| {
            (name == "SLACK_WEBHOOK_URL").then(|| "https://hooks.slack.example/T0/B0/x".into())
        })
        .unwrap();
    let formats: Vec<Format> = cfg.notify.webhook.iter().map(|o| o.format).collect();
    assert_eq!(formats, [Format::Json, Format::Alertmanager, Format::Slack]);

    let defaults = serde_json::to_value(OutputSettings::new("http://h", Format::Json)).unwrap();
    for (key, value) in defaults.as_object().unwrap() {
        let row = section
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("`{key}`")))
            .unwrap_or_else(|| panic!("README's table has no row for `{key}`"));
        if key == "url" {
            continue;
        }
        let shown = match value {
            serde_json::Value::String(s) => format!("\"{s}\""),
            other => other.to_string(),
        };
        assert!(
            row.contains(&format!("`{shown}`")),
            "`{key}` default {shown}: {row}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_stops_re_sending_alerts_of_partitions_moved_to_another_instance() {
    let opened = demo_outages()
        .iter()
        .find(|e| e.state == IncidentState::Opened)
        .unwrap();
    let moved = OutageEvent {
        outage_id: format!("{}-moved", opened.outage_id),
        ..opened.clone()
    };
    let rx = Receiver::default();
    let url = serve(rx.clone()).await;
    let n = start(OutputSettings {
        resend_interval: Secs(1),
        ..output(&url, Format::Alertmanager)
    });
    let h = n.handle();
    h.set_partitions([1, 3].into_iter());
    h.notify_from(opened, Some(1));
    h.notify_from(&moved, Some(3));
    wait_for("both outages", || stats(&n).sent == 2).await;
    // A rebalance: partition 3 now belongs to another instance.
    h.set_partitions([1].into_iter());
    let before = rx.requests().len();
    // The second re-send after the change was certainly built after it.
    wait_for("two re-sends", || rx.requests().len() >= before + 2).await;
    n.shutdown(Duration::from_secs(5)).await;
    let last = rx.requests().pop().unwrap();
    let ids: Vec<&str> = last
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["outage_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [opened.outage_id.as_str()]);
}
