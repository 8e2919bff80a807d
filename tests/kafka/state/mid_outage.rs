//! Changes of owner in the middle of an outage: a 2 → 1 → 2 instance rebalance keeps one
//! incident per series, and a restarted instance's status page shows the outage restored as
//! open, not "All systems normal".

use std::collections::BTreeMap;
use std::time::Duration;

use super::{incidents, plus_one, STATE_EXTRA};
use crate::common::*;
use spikewatch::event::IncidentState;
use spikewatch::sim::{HOUR_MS, MINUTE_MS};

#[test]
fn rebalance_two_one_two_keeps_an_outage_one_incident() {
    let b = brokers();
    let n = Names::new("rebal212");
    create_topics(&b, &n);
    let msgs = scenario_messages();
    let (s, onset, end) = scenario();
    // Phase 1 ends 10 minutes into the outage, phase 2 an hour later (after it ended), the
    // rest is phase 3.
    let cut1 = msgs.partition_point(|m| event_ms(m) < onset + 10 * MINUTE_MS);
    let cut2 = msgs.partition_point(|m| event_ms(m) < end + 20 * MINUTE_MS);
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &b, &n, STATE_EXTRA);
    let a = Instance::start(&cfg, dir.path().join("a.log"));
    let mut second = Instance::start(&cfg, dir.path().join("b1.log"));
    a.wait_for_log("partitions assigned", Duration::from_secs(60));
    second.wait_for_log("partitions assigned", Duration::from_secs(60));
    produce(&b, &n, &msgs[..cut1]);
    std::thread::sleep(Duration::from_secs(2));
    // 2 → 1: the second instance leaves; the first restores its partitions.
    second.signal("TERM");
    assert!(second.wait(Duration::from_secs(30)).success());
    produce(&b, &n, &msgs[cut1..cut2]);
    std::thread::sleep(Duration::from_secs(2));
    // 1 → 2.
    let second = Instance::start(&cfg, dir.path().join("b2.log"));
    second.wait_for_log("restored partition state", Duration::from_secs(60));
    produce(&b, &n, &msgs[cut2..]);
    let markers = plus_one(&produce_markers(
        &b,
        &n,
        s.start_ms + SCENARIO_HOURS * HOUR_MS + 30 * MINUTE_MS,
    ));
    wait_committed(&b, &n, &markers, Duration::from_secs(120), &[&a, &second]);
    let log = a.log_text();
    assert!(log.contains("restored partition state"), "{log}");

    let got = incidents(&b, &n.anomalies);
    for geo in ["IT-RM", "IT-MI"] {
        let ids: std::collections::BTreeSet<&String> = got
            .keys()
            .filter(|(id, _)| id.starts_with(&format!("telegram/{geo}/")))
            .map(|(id, _)| id)
            .collect();
        let per_signal: BTreeMap<&str, usize> = ids.iter().fold(BTreeMap::new(), |mut m, id| {
            *m.entry(id.split('/').nth(2).unwrap()).or_default() += 1;
            m
        });
        assert!(
            !per_signal.is_empty() && per_signal.values().all(|&c| c == 1),
            "one incident per signal in {geo}, opened before and resolved after the \
             rebalances: {ids:?}\n{got:?}"
        );
        for id in ids {
            let states: Vec<IncidentState> = got
                .iter()
                .filter(|((i, _), _)| i == id)
                .map(|(_, (st, _))| *st)
                .collect();
            assert!(states.contains(&IncidentState::Opened), "{id}: {states:?}");
            assert!(
                states.contains(&IncidentState::Resolved),
                "{id}: {states:?}"
            );
        }
    }
}

/// Polls `/api/incidents` until `pred` holds (or fails after `within`).
fn wait_incidents(
    port: u16,
    within: Duration,
    what: &str,
    inst: &Instance,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let t0 = std::time::Instant::now();
    loop {
        let (status, body) = http_get(port, "/api/incidents");
        if status.contains("200") {
            let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            if pred(&v) {
                return v;
            }
        }
        assert!(t0.elapsed() < within, "{what}: {body}\n{}", inst.log_text());
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_restart_mid_outage_shows_the_outage_restored_as_open_not_all_normal() {
    let b = brokers();
    let n = Names::new("restartpage");
    create_topics(&b, &n);
    let msgs = scenario_messages();
    let (_, onset, _) = scenario();
    let cut = msgs.partition_point(|m| event_ms(m) < onset + 15 * MINUTE_MS);
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &b, &n, STATE_EXTRA);
    let port = serve_http(&cfg);
    let telegram_open = |v: &serde_json::Value, list: &str, service: &str| {
        v[list]
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o[service] == "telegram"))
    };

    let mut a = Instance::start(&cfg, dir.path().join("a.log"));
    a.wait_for_log("partitions assigned", Duration::from_secs(60));
    produce(&b, &n, &msgs[..cut]);
    wait_incidents(port, Duration::from_secs(60), "outage opened", &a, |v| {
        v["open"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["latest"]["service"] == "telegram"))
    });
    a.signal("TERM");
    assert!(
        a.wait(Duration::from_secs(30)).success(),
        "{}",
        a.log_text()
    );

    // Restarted: no new input, so no event about the outage; the engine holds it open.
    let mut a2 = Instance::start(&cfg, dir.path().join("a2.log"));
    a2.wait_for_log("restored partition state", Duration::from_secs(60));
    let v = wait_incidents(
        port,
        Duration::from_secs(60),
        "restored outage shown",
        &a2,
        |v| telegram_open(v, "restored", "service"),
    );
    assert!(
        v["restored_series"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{v}"
    );
    let (_, page) = http_get(port, "/");
    assert!(!page.contains("All systems normal"), "{page}");
    assert!(page.contains("Restored from saved state"), "{page}");
    a2.signal("TERM");
    assert!(a2.wait(Duration::from_secs(30)).success());
}
