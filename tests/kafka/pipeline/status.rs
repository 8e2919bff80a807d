//! The status page, `/readyz`, `/api/incidents` and `/metrics` of a running pipeline: they
//! follow what it consumed, detected, published and checkpointed.

use std::time::{Duration, Instant};

use super::marker_ts;
use crate::common::*;

#[test]
fn status_page_api_and_metrics_follow_the_pipeline() {
    let b = brokers();
    let n = Names::new("http");
    create_topics(&b, &n);
    let msgs = scenario_messages();
    produce(&b, &n, &msgs);
    let markers = produce_markers(&b, &n, marker_ts());
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &b, &n, "statistics_interval_ms = 500");
    let port = serve_http(&cfg);
    let mut inst = Instance::start(&cfg, dir.path().join("run.log"));
    wait_committed(&b, &n, &markers, Duration::from_secs(90), &[&inst]);

    let (status, body) = http_get(port, "/readyz");
    assert!(
        status.contains("200"),
        "{status} {body}\n{}",
        inst.log_text()
    );
    let (_, metrics) = http_get(port, "/metrics");
    let decoded: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("spikewatch_decoded_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no decoded counter in:\n{metrics}"));
    assert!(
        decoded >= msgs.len() as u64,
        "decoded {decoded} of {}",
        msgs.len()
    );
    assert!(metrics.contains("# TYPE spikewatch_active_series gauge"));
    let m =
        |name: &str| metric(&metrics, name).unwrap_or_else(|| panic!("no {name} in:\n{metrics}"));
    // Every message was consumed: the input counters (dashboards rate() them), one per input
    // topic, cover them all.
    let consumed = |topic: &str| {
        m(&format!(
            "spikewatch_messages_consumed_total{{topic=\"{topic}\"}}"
        ))
    };
    assert!(
        consumed(&n.mentions) + consumed(&n.complaints) >= msgs.len() as f64,
        "{metrics}"
    );
    // The engines' counters (refreshed once a second), incidents by state.
    let t0 = Instant::now();
    loop {
        let (_, metrics) = http_get(port, "/metrics");
        let opened = metric(&metrics, "spikewatch_incidents_total{state=\"opened\"}");
        let closed = metric(&metrics, "spikewatch_buckets_closed_total");
        if opened >= Some(1.0) && closed > Some(0.0) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no incident or closed bucket counted:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        metrics.contains(&format!(
            "\nspikewatch_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{metrics}"
    );
    assert!(m("process_resident_memory_bytes") > 0.0, "{metrics}");
    assert_eq!(m("spikewatch_ready"), 1.0, "{metrics}");
    assert!(m("spikewatch_engine_state_bytes") > 10_000.0, "{metrics}");
    assert!(m("spikewatch_active_series") > 0.0, "{metrics}");
    // The incident's events were acknowledged: each one is in the histogram, well under 10 s.
    let acked = m("spikewatch_anomalies_acked_total");
    assert!(acked >= 1.0, "{metrics}");
    // (One more event may be acknowledged between the two reads of a scrape.)
    let count = m("spikewatch_ack_delay_seconds_count");
    assert!((count - acked).abs() <= 1.0, "{metrics}");
    assert_eq!(m("spikewatch_ack_delay_seconds_bucket{le=\"+Inf\"}"), count);
    assert!(m("spikewatch_ack_delay_seconds_bucket{le=\"10\"}") >= count * 0.99);
    let sum = m("spikewatch_ack_delay_seconds_sum");
    assert!(sum > 0.0 && sum < 10.0 * count, "{metrics}");
    // Nothing hit the cardinality caps. State went to the changelog; every partition was
    // restored (from an empty changelog) once, at the assignment.
    assert_eq!(m("spikewatch_cardinality_rolled_up_total"), 0.0);
    assert_eq!(m("spikewatch_cardinality_dropped_total"), 0.0);
    assert!(
        m("spikewatch_checkpoint_duration_seconds_count") >= 1.0,
        "{metrics}"
    );
    assert!(m("spikewatch_changelog_commits_total") >= 1.0, "{metrics}");
    assert!(m("spikewatch_state_bytes") > 0.0, "{metrics}");
    assert_eq!(
        m("spikewatch_restore_duration_seconds_count"),
        PARTITIONS as f64,
        "{metrics}"
    );
    assert_eq!(m("spikewatch_unusable_state_records_total"), 0.0);
    // Consumer lag per input partition (librdkafka statistics every 500 ms): everything up to
    // the markers is committed, so at most the marker itself is left.
    let t0 = Instant::now();
    let lags = loop {
        let (_, metrics) = http_get(port, "/metrics");
        let lags: Vec<(String, f64)> = metrics
            .lines()
            .filter(|l| l.starts_with("spikewatch_consumer_lag{"))
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').unwrap();
                (k.to_string(), v.parse().unwrap())
            })
            .collect();
        let all_partitions = lags.len() == 2 * PARTITIONS as usize;
        if all_partitions && lags.iter().all(|(_, v)| *v <= 1.0) {
            break lags;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "lag of every input partition not reported, or not caught up: {lags:?}\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    for part in 0..PARTITIONS {
        for topic in [&n.mentions, &n.complaints] {
            let key = format!("spikewatch_consumer_lag{{topic=\"{topic}\",partition=\"{part}\"}}");
            assert!(
                lags.iter().any(|(k, v)| *k == key && *v >= 0.0),
                "{key} missing: {lags:?}"
            );
        }
    }
    let (status, incidents) = http_get(port, "/api/incidents");
    assert!(status.contains("200"), "{status}");
    let v: serde_json::Value = serde_json::from_str(&incidents).expect("JSON");
    let all: Vec<&serde_json::Value> = v["open"]
        .as_array()
        .unwrap()
        .iter()
        .chain(v["resolved"].as_array().unwrap())
        .collect();
    assert!(
        all.iter().any(|i| i["latest"]["service"] == "telegram"
            && i["latest"]["geos"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == "IT-RM")),
        "{incidents}"
    );
    // Input arrived just now: the board knows, and is not stale.
    assert_eq!(v["input"]["stale"], false, "{incidents}");
    assert!(v["input"]["last_input"].is_string(), "{incidents}");
    let (_, page) = http_get(port, "/");
    assert!(page.contains("telegram"), "{page}");
    assert!(!page.contains("No data since"), "{page}");

    inst.signal("TERM");
    assert!(
        inst.wait(Duration::from_secs(30)).success(),
        "{}",
        inst.log_text()
    );
}
