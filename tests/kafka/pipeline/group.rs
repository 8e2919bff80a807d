//! Instances in one consumer group: two split the partitions and together do what one does; a
//! second joining mid-stream makes the first commit on revoke, and nothing is lost.

use std::time::{Duration, Instant};

use super::marker_ts;
use crate::common::*;
use spikewatch::event::IncidentState;

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
