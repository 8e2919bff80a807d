//! Consuming and publishing end to end: an outage in the scenario reaches the anomaly and
//! outage topics (and `tail`) exactly as the engine alone makes it, normal traffic stays quiet;
//! poison messages go to dead letters and the valid messages around them are processed.

use std::time::{Duration, Instant};

use super::marker_ts;
use crate::common::*;
use spikewatch::event::{IncidentState, InputKind};
use spikewatch::sim::MINUTE_MS;

#[test]
fn end_to_end_outage_is_published_and_normal_traffic_is_quiet() {
    let b = brokers();
    let n = Names::new("e2e");
    create_topics(&b, &n);
    let t0 = Instant::now();
    let msgs = scenario_messages();
    produce(&b, &n, &msgs);
    let markers = produce_markers(&b, &n, marker_ts());
    eprintln!("produced {} messages in {:?}", msgs.len(), t0.elapsed());
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &b, &n, "");
    let mut inst = Instance::start(&cfg, dir.path().join("run.log"));
    wait_committed(&b, &n, &markers, Duration::from_secs(90), &[&inst]);
    eprintln!("committed after {:?}", t0.elapsed());

    let (_, onset, end) = scenario();
    let expected = dedup(&oracle(&msgs));
    assert!(
        !expected.is_empty(),
        "the scenario must contain an incident for the test to mean anything"
    );
    let got = dedup(&anomalies(&read_topic(
        &b,
        &n.anomalies,
        Duration::from_secs(20),
        |r| dedup(&anomalies(r)).len() >= expected.len(),
    )));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "anomaly events on the topic differ from the engine's own"
    );
    let opened: Vec<_> = got
        .values()
        .filter(|e| e.state == IncidentState::Opened)
        .collect();
    assert!(opened
        .iter()
        .any(|e| e.service == "telegram" && e.geo == "IT-RM"));
    assert!(opened
        .iter()
        .any(|e| e.service == "telegram" && e.geo == "IT-MI"));
    for e in got.values() {
        assert_eq!(e.service, "telegram", "normal traffic raised {e:?}");
        assert!(
            e.opened_at.millis() >= onset && e.opened_at.millis() <= end,
            "incident opened outside the outage: {e:?}"
        );
    }
    // Keyed service/geo.
    for r in read_topic(&b, &n.anomalies, Duration::from_secs(5), |r| {
        r.len() >= got.len()
    }) {
        let e: spikewatch::event::AnomalyEvent = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(r.key.as_deref(), Some(e.key().as_bytes()));
    }

    // One outage, one incident: the anomaly topic carries one outage over both cities and
    // both signals, keyed by service.
    let records = read_topic(&b, &n.outages, Duration::from_secs(20), |r| {
        outages(r)
            .values()
            .any(|(st, _)| *st == IncidentState::Resolved)
    });
    let outage_events = outages(&records);
    let opened: Vec<_> = outage_events
        .iter()
        .filter(|(_, (st, _))| *st == IncidentState::Opened)
        .collect();
    assert_eq!(opened.len(), 1, "{outage_events:#?}");
    assert!(opened[0].0 .0.starts_with("telegram/"), "{opened:?}");
    for r in &records {
        assert_eq!(r.key.as_deref(), Some(&b"telegram"[..]));
    }
    // `tail` prints one OPENED line for it (and exits once idle, counted from assignment).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spikewatch"))
        .args(["tail", "--config"])
        .arg(&cfg)
        .args(["--from-beginning", "--idle-exit", "5s"])
        .output()
        .expect("tail runs");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let opened_lines: Vec<&str> = stdout.lines().filter(|l| l.contains(" OPENED ")).collect();
    assert_eq!(opened_lines.len(), 1, "{stdout}");
    assert!(
        opened_lines[0].contains("telegram: problems in"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), outage_events.len(), "{stdout}");
    let series = std::process::Command::new(env!("CARGO_BIN_EXE_spikewatch"))
        .args(["tail", "--series", "--config"])
        .arg(&cfg)
        .args(["--from-beginning", "--idle-exit", "5s"])
        .output()
        .expect("tail runs");
    assert!(series.status.success(), "{series:?}");
    assert_eq!(
        String::from_utf8_lossy(&series.stdout).lines().count(),
        got.len(),
        "tail --series prints every per-series event"
    );
    inst.signal("TERM");
    assert!(
        inst.wait(Duration::from_secs(30)).success(),
        "{}",
        inst.log_text()
    );
}

#[test]
fn poison_messages_go_to_dead_letters_and_valid_messages_around_them_are_processed() {
    let b = brokers();
    let n = Names::new("poison");
    create_topics(&b, &n);
    let (s, _, _) = scenario();
    let t = s.start_ms + 10 * MINUTE_MS;
    let valid: Vec<Msg> = scenario_messages()
        .into_iter()
        .filter(|m| m.key == "telegram")
        .take(400)
        .collect();
    let big = format!(
        r#"{{"ts":{t},"service":"telegram","geo":"IT-RM","text":"{}"}}"#,
        "x".repeat(10 << 20)
    );
    let poison: Vec<(InputKind, &str, Vec<u8>)> = vec![
        (InputKind::Mention, "json", b"{not json".to_vec()),
        (
            InputKind::Complaint,
            "json",
            format!(r#"{{"ts":{t},"service":"telegram","geo":"IT-RM","count":"many"}}"#)
                .into_bytes(),
        ),
        (
            InputKind::Mention,
            "json",
            format!(r#"{{"ts":{t},"geo":"IT-RM"}}"#).into_bytes(),
        ),
        (InputKind::Mention, "too_large", big.into_bytes()),
        (
            InputKind::Complaint,
            "timestamp_out_of_range",
            br#"{"ts":"9999-01-01T00:00:00Z","service":"telegram","geo":"IT-RM","count":3}"#
                .to_vec(),
        ),
    ];
    let mut all = valid[..200].to_vec();
    for (kind, _, payload) in &poison {
        all.push(Msg {
            kind: *kind,
            key: "telegram".into(),
            payload: payload.clone(),
        });
    }
    all.extend_from_slice(&valid[200..]);
    produce(&b, &n, &all);
    let markers = produce_markers(&b, &n, marker_ts());
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &b, &n, "");
    let mut inst = Instance::start(&cfg, dir.path().join("run.log"));
    wait_committed(&b, &n, &markers, Duration::from_secs(90), &[&inst]);

    let dl = read_topic(&b, &n.dead_letters, Duration::from_secs(30), |r| {
        r.len() >= poison.len()
    });
    assert_eq!(dl.len(), poison.len(), "dead letters: {dl:?}");
    let mut kinds: Vec<&str> = dl
        .iter()
        .map(|r| r.headers["spikewatch.error.kind"].as_str())
        .collect();
    kinds.sort();
    let mut want: Vec<&str> = poison.iter().map(|p| p.1).collect();
    want.sort();
    assert_eq!(kinds, want);
    for r in &dl {
        let src = &r.headers["spikewatch.source.topic"];
        assert!(src == &n.mentions || src == &n.complaints, "{src}");
        assert!(r.headers["spikewatch.source.offset"].parse::<i64>().is_ok());
        assert!(r.headers["spikewatch.source.partition"]
            .parse::<i32>()
            .is_ok());
        assert!(!r.headers["spikewatch.error"].is_empty());
        if r.headers["spikewatch.error.kind"] == "too_large" {
            let from: usize = r.headers["spikewatch.truncated_from"].parse().unwrap();
            assert!(from > 10 << 20, "{from}");
            assert_eq!(
                r.payload.len(),
                900_000,
                "payload cut to dead_letter_max_bytes"
            );
        } else {
            let original = poison
                .iter()
                .find(|p| p.1 == r.headers["spikewatch.error.kind"] && p.2 == r.payload);
            assert!(
                original.is_some() || r.headers["spikewatch.error.kind"] == "json",
                "dead letter carries the original bytes"
            );
        }
    }
    inst.signal("TERM");
    assert!(inst.wait(Duration::from_secs(30)).success());
    let report = inst.report();
    assert_eq!(report["dead_lettered"], poison.len() as u64, "{report:#}");
    // Every valid message and the markers were decoded.
    assert_eq!(
        report["decoded"],
        valid.len() as u64 + 2 * PARTITIONS as u64,
        "{report:#}"
    );
}
