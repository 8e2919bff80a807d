//! The process's signals: SIGTERM drains and exits with offsets committed and the producer
//! flushed, SIGKILL mid-stream and a restart process every message, SIGHUP reloads the config
//! (or keeps the old one when the new one is invalid).

use std::time::{Duration, Instant};

use super::marker_ts;
use crate::common::*;
use spikewatch::event::IncidentState;

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
