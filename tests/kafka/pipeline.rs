//! Integration tests of `spikewatch run` against a real Kafka-protocol broker
//! (`SPIKEWATCH_TEST_BROKERS`; `scripts/test.sh` starts tansu). They fail, never skip, when no
//! broker is running.

use std::time::{Duration, Instant};

use crate::common::*;
use spikewatch::event::{IncidentState, InputKind};
use spikewatch::sim::{HOUR_MS, MINUTE_MS};

const MARKER_AHEAD_MS: i64 = 30 * MINUTE_MS;

fn marker_ts() -> i64 {
    let (s, _, _) = scenario();
    s.start_ms + SCENARIO_HOURS * HOUR_MS + MARKER_AHEAD_MS
}

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

#[test]
fn sigterm_exits_within_drain_time_with_offsets_committed_and_producer_flushed() {
    let b = brokers();
    let n = Names::new("sigterm");
    create_topics(&b, &n);
    let msgs = scenario_messages();
    produce(&b, &n, &msgs);
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &b, &n, "");
    let mut inst = Instance::start(&cfg, dir.path().join("run.log"));
    // Wait until the incident has been published (the pipeline is mid-stream or done).
    read_topic(&b, &n.anomalies, Duration::from_secs(90), |r| !r.is_empty());
    let t0 = Instant::now();
    inst.signal("TERM");
    let status = inst.wait(Duration::from_secs(30));
    let took = t0.elapsed();
    let log = inst.log_text();
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(
        took < Duration::from_secs(15),
        "took {took:?} (drain_timeout 15 s)"
    );
    assert!(log.contains("final commit"), "{log}");
    let report = inst.report();
    let produced = report["anomalies_produced"].as_u64().unwrap()
        + report["outages_produced"].as_u64().unwrap();
    assert_eq!(
        report["anomalies_acked"].as_u64(),
        Some(produced),
        "every produced event was acknowledged before exit: {report:#}"
    );
    let c = committed(&b, &n);
    assert!(!c.is_empty() && c.values().any(|&o| o > 0), "{c:?}");
}

#[test]
fn sigkill_mid_stream_then_restart_processes_every_message_and_still_publishes_the_incident() {
    let b = brokers();
    let n = Names::new("sigkill");
    create_topics(&b, &n);
    let msgs = scenario_messages();
    // The first hour: the restarted engine warms up again well before the outage at 3 h.
    let cut = msgs.len() / 5;
    produce(&b, &n, &msgs[..cut]);
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &b, &n, "");
    let mut first = Instance::start(&cfg, dir.path().join("run1.log"));
    let t0 = Instant::now();
    while committed(&b, &n).values().all(|&o| o == 0) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{}",
            first.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    first.signal("KILL");
    first.wait(Duration::from_secs(10));
    let before = committed(&b, &n);

    produce(&b, &n, &msgs[cut..]);
    let markers = produce_markers(&b, &n, marker_ts());
    let second = Instance::start(&cfg, dir.path().join("run2.log"));
    wait_committed(
        &b,
        &n,
        &markers,
        Duration::from_secs(120),
        &[&first, &second],
    );
    let after = committed(&b, &n);
    for (k, v) in &before {
        assert!(after[k] >= *v, "committed offset went back on {k:?}");
    }
    let got = dedup(&anomalies(&read_topic(
        &b,
        &n.anomalies,
        Duration::from_secs(20),
        |r| {
            anomalies(r).iter().any(|e| {
                e.service == "telegram" && e.geo == "IT-RM" && e.state == IncidentState::Opened
            })
        },
    )));
    assert!(
        got.values().any(|e| e.service == "telegram"
            && e.geo == "IT-RM"
            && e.state == IncidentState::Opened),
        "incident not published after restart: {got:?}\n{}",
        second.log_text()
    );
}

#[test]
fn two_instances_in_one_group_split_partitions_and_together_do_what_one_does() {
    let b = brokers();
    let n = Names::new("group");
    create_topics(&b, &n);
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &b, &n, "");
    let a = Instance::start(&cfg, dir.path().join("a.log"));
    a.wait_for_log("partitions assigned", Duration::from_secs(60));
    let bi = Instance::start(&cfg, dir.path().join("b.log"));
    // B's first assignment after A's revoke: both now own partitions.
    let t0 = Instant::now();
    loop {
        let (la, lb) = (a.log_text(), bi.log_text());
        let owns = |l: &str| {
            l.lines()
                .rev()
                .find(|x| x.contains("partitions assigned"))
                .is_some_and(|x| x.contains("\", "))
        };
        if owns(&lb) && owns(&la) && la.matches("partitions assigned").count() >= 2 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "instances did not split the partitions:\nA:\n{la}\nB:\n{lb}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let msgs = scenario_messages();
    produce(&b, &n, &msgs);
    let markers = produce_markers(&b, &n, marker_ts());
    wait_committed(&b, &n, &markers, Duration::from_secs(120), &[&a, &bi]);
    let expected = dedup(&oracle(&msgs));
    let got = dedup(&anomalies(&read_topic(
        &b,
        &n.anomalies,
        Duration::from_secs(20),
        |r| dedup(&anomalies(r)).len() >= expected.len(),
    )));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
}

#[test]
fn rebalance_mid_stream_commits_on_revoke_and_loses_nothing() {
    let b = brokers();
    let n = Names::new("rebalance");
    create_topics(&b, &n);
    let msgs = scenario_messages();
    // Half an hour first: partitions that move rebuild their state from the last commit and
    // warm up again long before the outage at 3 h.
    let cut = msgs.len() / 10;
    produce(&b, &n, &msgs[..cut]);
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &b, &n, "");
    let a = Instance::start(&cfg, dir.path().join("a.log"));
    let t0 = Instant::now();
    while committed(&b, &n).values().all(|&o| o == 0) {
        assert!(t0.elapsed() < Duration::from_secs(60), "{}", a.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    let bi = Instance::start(&cfg, dir.path().join("b.log"));
    bi.wait_for_log("partitions assigned", Duration::from_secs(60));
    a.wait_for_log("partitions revoked", Duration::from_secs(10));
    assert!(
        a.log_text().contains("committed on revoke"),
        "revoke must commit synchronously:\n{}",
        a.log_text()
    );
    produce(&b, &n, &msgs[cut..]);
    let markers = produce_markers(&b, &n, marker_ts());
    wait_committed(&b, &n, &markers, Duration::from_secs(120), &[&a, &bi]);
    let got = dedup(&anomalies(&read_topic(
        &b,
        &n.anomalies,
        Duration::from_secs(20),
        |r| {
            anomalies(r)
                .iter()
                .any(|e| e.geo == "IT-RM" && e.state == IncidentState::Opened)
        },
    )));
    assert!(
        got.values().any(|e| e.service == "telegram"
            && e.geo == "IT-RM"
            && e.state == IncidentState::Opened),
        "incident lost across the rebalance: {got:?}"
    );
}

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

#[test]
fn config_reload_applies_a_valid_file_and_keeps_the_old_one_on_an_invalid_file() {
    let b = brokers();
    let n = Names::new("reload");
    create_topics(&b, &n);
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &b, &n, "");
    let original = std::fs::read_to_string(&cfg).unwrap();
    let mut inst = Instance::start(&cfg, dir.path().join("run.log"));
    inst.wait_for_log("consuming", Duration::from_secs(60));

    write_file(&cfg, &format!("{original}\n[detection]\nopen_z = 9.5\n"));
    inst.signal("HUP");
    inst.wait_for_log("config reloaded", Duration::from_secs(20));
    assert!(
        inst.log_text().contains("open_z=9.5"),
        "{}",
        inst.log_text()
    );

    write_file(&cfg, &format!("{original}\n[detection]\nopen_zz = 1\n"));
    inst.signal("HUP");
    inst.wait_for_log(
        "config rejected, the old one stays in force",
        Duration::from_secs(20),
    );
    assert!(
        inst.log_text().contains("open_zz"),
        "the error names the key"
    );
    assert!(inst.child.try_wait().unwrap().is_none(), "still running");

    inst.signal("TERM");
    assert!(
        inst.wait(Duration::from_secs(30)).success(),
        "{}",
        inst.log_text()
    );
}
