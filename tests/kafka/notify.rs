//! Alert delivery from `spikewatch run` itself, against a real Kafka-protocol broker
//! (`SPIKEWATCH_TEST_BROKERS`, see `main.rs`) and a local HTTP receiver: the
//! outage events the pipeline publishes also reach a `[[notify.webhook]]`, and `/metrics`
//! counts them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use spikewatch::event::{IncidentState, OutageEvent};
use spikewatch::sim::{HOUR_MS, MINUTE_MS};

type Log = Arc<Mutex<Vec<OutageEvent>>>;

async fn record(State(log): State<Log>, body: Bytes) -> StatusCode {
    match serde_json::from_slice::<OutageEvent>(&body) {
        Ok(e) => {
            log.lock().unwrap().push(e);
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

#[test]
fn run_delivers_the_outage_events_it_publishes_to_a_webhook_once_each() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let log: Log = Arc::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let hook = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(record).with_state(log.clone());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });

    let b = brokers();
    let n = Names::new("notify");
    create_topics(&b, &n);
    let msgs = scenario_messages();
    produce(&b, &n, &msgs);
    let (s, _, _) = scenario();
    let markers = produce_markers(
        &b,
        &n,
        s.start_ms + SCENARIO_HOURS * HOUR_MS + 30 * MINUTE_MS,
    );
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &b, &n, "");
    let port = serve_http(&cfg);
    append_config(
        &cfg,
        &format!("\n[[notify.webhook]]\nurl = \"http://{hook}/hooks/spikewatch\"\n"),
    );
    let mut inst = Instance::start(&cfg, dir.path().join("run.log"));
    wait_committed(&b, &n, &markers, Duration::from_secs(90), &[&inst]);

    // What the pipeline published, by (outage_id, seq).
    let records = read_topic(&b, &n.outages, Duration::from_secs(20), |r| {
        outages(r)
            .values()
            .any(|(st, _)| *st == IncidentState::Resolved)
    });
    let published: BTreeMap<(String, u64), OutageEvent> = records
        .iter()
        .map(|r| serde_json::from_slice::<OutageEvent>(&r.payload).unwrap())
        .map(|e| ((e.outage_id.clone(), e.seq), e))
        .collect();
    assert!(!published.is_empty());
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.lock().unwrap().len() < published.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = log.lock().unwrap().clone();
    let ids: Vec<(String, u64)> = got.iter().map(|e| (e.outage_id.clone(), e.seq)).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        published.keys().cloned().collect::<Vec<_>>(),
        "each published outage event once\n{}",
        inst.log_text()
    );
    for w in ids.windows(2) {
        if w[0].0 == w[1].0 {
            assert!(w[0].1 < w[1].1, "an outage's events in order: {ids:?}");
        }
    }
    assert!(got.iter().any(|e| e.state == IncidentState::Opened));
    assert!(got.iter().any(|e| e.state == IncidentState::Resolved));
    for e in &got {
        assert_eq!(e.service, published[&(e.outage_id.clone(), e.seq)].service);
    }

    let (_, metrics) = http_get(port, "/metrics");
    assert_eq!(
        metric(
            &metrics,
            "spikewatch_notify_sent_total{output=\"json-1\",format=\"json\"}"
        ),
        Some(got.len() as f64),
        "{metrics}"
    );
    let logs = inst.log_text();
    assert!(
        !logs.contains("/hooks/spikewatch"),
        "the webhook URL is never logged:\n{logs}"
    );
    inst.signal("TERM");
    assert!(
        inst.wait(Duration::from_secs(30)).success(),
        "{}",
        inst.log_text()
    );
}
