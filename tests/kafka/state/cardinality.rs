//! Cardinality through Kafka: a million junk geos stay under the series caps, in memory and in
//! the changelog, and the outage is still detected.

use std::time::Duration;

use super::{changelog_series, incidents, plus_one, STATE_EXTRA};
use crate::common::*;
use spikewatch::event::{IncidentState, InputKind};
use spikewatch::sim::{HOUR_MS, MINUTE_MS};

#[test]
fn a_million_junk_geos_through_kafka_stay_under_the_caps_and_the_outage_is_detected() {
    let b = brokers();
    let n = Names::new("cardinality");
    create_topics(&b, &n);
    let real = scenario_messages();
    let (_, onset, _) = scenario();
    // 1,000,000 distinct geos for the service that has the outage, spread over the stream in
    // time order: 70% look like Italian cities (they roll into IT), 30% like new countries.
    const JUNK: usize = 1_000_000;
    let every = JUNK / real.len() + 1;
    let mut msgs = Vec::with_capacity(real.len() + JUNK);
    let mut junk = 0usize;
    for m in &real {
        let t = event_ms(m);
        msgs.push(m.clone());
        for _ in 0..every.min(JUNK - junk) {
            let geo = if junk % 10 < 7 {
                format!("IT-Z{junk}")
            } else {
                format!("Z{junk}")
            };
            msgs.push(Msg {
                kind: InputKind::Complaint,
                key: "telegram".into(),
                payload: format!(r#"{{"ts":{t},"service":"telegram","geo":"{geo}","count":1}}"#)
                    .into_bytes(),
            });
            junk += 1;
        }
    }
    assert_eq!(junk, JUNK);
    produce(&b, &n, &msgs);
    let markers = plus_one(&produce_markers(
        &b,
        &n,
        scenario().0.start_ms + SCENARIO_HOURS * HOUR_MS + 30 * MINUTE_MS,
    ));
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &b, &n, STATE_EXTRA);
    let port = serve_http(&cfg);
    append_config(
        &cfg,
        "\n[engine]\nmax_geos = 2000\nmax_series_per_service = 1000\n",
    );
    let mut run = Instance::start(&cfg, dir.path().join("run.log"));
    wait_committed(&b, &n, &markers, Duration::from_secs(240), &[&run]);
    // Engine counts reach the gauges at the next gauge refresh (once a second): read until
    // they have caught up with the committed input.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let (_, metrics) = http_get(port, "/metrics");
        let caught_up = metric(&metrics, "spikewatch_cardinality_rolled_up_total")
            .is_some_and(|v| v >= (JUNK - 2 * 2_000) as f64);
        if caught_up || std::time::Instant::now() > deadline {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let m = |k: &str| metric(&metrics, k).unwrap_or_else(|| panic!("no {k} in\n{metrics}"));
    assert!(m("spikewatch_active_series") <= 4.0 * 1_000.0, "{metrics}");
    assert!(
        m("spikewatch_engine_state_bytes") < (8 << 20) as f64,
        "{metrics}"
    );
    assert!(
        m("spikewatch_cardinality_rolled_up_total") >= (JUNK - 2 * 2_000) as f64,
        "{metrics}"
    );
    let decoded = m("spikewatch_decoded_total");
    assert!(
        decoded >= msgs.len() as f64,
        "every message counted: {metrics}"
    );
    run.signal("TERM");
    assert!(run.wait(Duration::from_secs(30)).success());
    let series = changelog_series(&b, &n.changelog);
    let telegram = series.keys().filter(|k| k.starts_with("telegram/")).count();
    assert!(
        telegram <= 1_000,
        "{telegram} telegram series in the changelog"
    );

    let got = incidents(&b, &n.anomalies);
    let rome: Vec<_> = got
        .iter()
        .filter(|((id, _), (st, _))| {
            id.starts_with("telegram/IT-RM/") && *st == IncidentState::Opened
        })
        .collect();
    assert!(
        !rome.is_empty(),
        "the outage in Rome is still detected: {got:?}"
    );
    for ((id, _), _) in rome {
        let at = spikewatch::event::Timestamp::parse_rfc3339(id.rsplit('/').next().unwrap())
            .unwrap()
            .millis();
        assert!((at - onset).abs() <= 5 * MINUTE_MS, "{id}");
    }
}
