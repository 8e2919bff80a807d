//! The Alertmanager format: one alert per outage with labels and annotations, ended on resolve
//! and when the outage changes severity; open alerts re-sent until resolved, but no longer those
//! of partitions that moved to another instance.

use std::time::Duration;

use spikewatch::config::Secs;
use spikewatch::event::{IncidentState, OutageEvent, Timestamp};
use spikewatch::notify::{Format, OutputSettings};

use crate::{demo_outages, escalating_outages, output, serve, start, stats, wait_for, Receiver};

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
