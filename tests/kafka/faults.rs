//! Broker faults: unreachable at start (nothing listening), and down mid-run (librdkafka's
//! mock cluster, since the tansu test broker keeps its data in memory and cannot restart).

use std::time::{Duration, Instant};

use crate::common::*;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

#[test]
fn unreachable_broker_at_start_is_retried_with_clear_logs_and_sigterm_still_exits_cleanly() {
    // A port nothing listens on.
    let port = free_port();
    let n = Names::new("unreachable");
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &format!("127.0.0.1:{port}"), &n, "");
    let mut inst = Instance::start(&cfg, dir.path().join("run.log"));
    inst.wait_for_log("broker not reachable or not ready", Duration::from_secs(40));
    assert!(
        inst.child.try_wait().unwrap().is_none(),
        "must keep retrying, not exit"
    );
    let t0 = Instant::now();
    inst.signal("TERM");
    let status = inst.wait(Duration::from_secs(15));
    assert!(status.success(), "{status:?}\n{}", inst.log_text());
    assert!(t0.elapsed() < Duration::from_secs(10));
}

/// librdkafka's in-process mock cluster (one broker, which a test can take down) with the
/// input, output and dead-letter topics of `name` created.
fn mock_cluster(name: &str) -> (MockCluster<'static, DefaultProducerContext>, Names) {
    let mock = MockCluster::new(1).expect("mock cluster");
    let n = Names::new(name);
    for t in [
        &n.mentions,
        &n.complaints,
        &n.outages,
        &n.anomalies,
        &n.dead_letters,
    ] {
        mock.create_topic(t, PARTITIONS, 1).unwrap();
    }
    (mock, n)
}

#[test]
fn broker_down_mid_run_loses_nothing_and_processing_resumes_when_it_is_back() {
    let (mock, n) = mock_cluster("brokerdown");
    let b = mock.bootstrap_servers();
    let msgs = scenario_messages();
    // The first half hour only: a broker outage longer than the session timeout costs the
    // group membership, so the partitions' state is rebuilt from the last commit and warms
    // up again, well before the outage at 3 h.
    let half = msgs.len() / 10;
    produce(&b, &n, &msgs[..half]);
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &b, &n, "create_topics = false");
    let mut inst = Instance::start(&cfg, dir.path().join("run.log"));
    let t0 = Instant::now();
    while committed(&b, &n).values().all(|&o| o == 0) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no progress:\n{}",
            inst.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    mock.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        inst.child.try_wait().is_ok_and(|s| s.is_none()),
        "spikewatch exited while the broker was down:\n{}",
        inst.log_text()
    );
    mock.broker_up(1).unwrap();
    produce(&b, &n, &msgs[half..]);
    let markers = produce_markers(&b, &n, {
        let (s, _, _) = scenario();
        s.start_ms + (SCENARIO_HOURS + 1) * spikewatch::sim::HOUR_MS
    });
    wait_committed(&b, &n, &markers, Duration::from_secs(120), &[&inst]);
    // Read until the incident shows up, not just any event: other incidents (a warm-up after
    // the rebuilt state) can be read first.
    let got = dedup(&anomalies(&read_topic(
        &b,
        &n.anomalies,
        Duration::from_secs(20),
        |r| anomalies(r).iter().any(|e| e.service == "telegram"),
    )));
    assert!(
        got.values().any(|e| e.service == "telegram"),
        "incident not published across the broker outage:\n{}",
        inst.log_text()
    );
}

/// Polls `GET /readyz` until its status line contains `want`; returns the body.
fn wait_readyz(port: u16, want: &str, within: Duration, inst: &Instance) -> String {
    let t0 = Instant::now();
    loop {
        // Not listening yet right after the start.
        let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        let (status, body) = if listening {
            http_get(port, "/readyz")
        } else {
            ("not listening".to_string(), String::new())
        };
        if status.contains(want) {
            return body;
        }
        assert!(
            t0.elapsed() < within,
            "/readyz not {want} within {within:?}: {status} {body}\n{}",
            inst.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn readyz_turns_503_during_a_broker_outage_and_200_once_it_is_back() {
    let (mock, n) = mock_cluster("readyoutage");
    let b = mock.bootstrap_servers();
    let dir = tmpdir();
    let cfg = write_config(
        dir.path(),
        &b,
        &n,
        "create_topics = false\nstatistics_interval_ms = 500",
    );
    let port = serve_http(&cfg);
    let mut inst = Instance::start(&cfg, dir.path().join("run.log"));
    wait_readyz(port, "200", Duration::from_secs(60), &inst);

    // Longer than the grace (3 × the 6 s session timeout, at least 30 s). Before, /readyz
    // stayed 200 through a 2-minute outage with no partition assigned.
    mock.broker_down(1).unwrap();
    let why = wait_readyz(port, "503", Duration::from_secs(90), &inst);
    assert!(
        why.contains("no partition assigned") || why.contains("every broker unreachable"),
        "{why}"
    );
    mock.broker_up(1).unwrap();
    wait_readyz(port, "200", Duration::from_secs(90), &inst);
    inst.signal("TERM");
    let status = inst.wait(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", inst.log_text());
}
