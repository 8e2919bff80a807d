//! Unit tests of the status board.

use super::*;
use crate::config::Config;
use crate::engine::Engine;
use crate::sim::{self, Scenario};

fn report<'a>(geo: &'a str, start_ms: i64) -> BucketReport<'a> {
    BucketReport {
        service: "telegram",
        geo,
        signal: "complaints",
        start_ms,
        end_ms: start_ms + 60_000,
        observed: Some(3.0),
        expected: 2.0,
        scale: 1.0,
        zscore: 1.0,
        anomaly_score: 0.1,
        alert: false,
        warming_up: false,
    }
}

#[test]
fn charts_rollups_always_and_cities_only_after_an_incident() {
    let mut b = StatusBoard::new(BoardLimits {
        history_buckets: 3,
        max_series: 10,
        resolved_kept: 5,
    });
    for i in 0..5 {
        b.record_bucket(&report("IT", i * 60_000));
        b.record_bucket(&report("IT-RM", i * 60_000));
    }
    let it = b.series("telegram", "IT", "complaints").unwrap();
    assert_eq!(it.buckets.len(), 3, "a ring of the last buckets");
    assert_eq!(it.buckets[0].start, Timestamp(2 * 60_000));
    assert!(b.series("telegram", "IT-RM", "complaints").is_none());
}

#[test]
fn incidents_move_from_open_to_resolved_and_series_get_charted() {
    // Telegram's 3-hour outage on day 16 of the demo.
    let s = Scenario {
        days: 17,
        ..Scenario::demo()
    };
    let mut engine = Engine::new(Config::default());
    let mut events: Vec<AnomalyEvent> = Vec::new();
    sim::drive(&s, &mut engine, &mut events);
    let mut board = StatusBoard::default();
    let outage_end = s.outages[0].end_ms();
    let mut saw_open = false;
    for e in &events {
        board.record_anomaly(e);
        if e.bucket_end.millis() < outage_end && e.geo == "*" {
            saw_open |= board
                .incidents()
                .series
                .open
                .iter()
                .any(|i| i.latest.geo == "*");
        }
    }
    assert!(saw_open, "the outage was shown as open while it lasted");
    let view = board.incidents().series;
    assert!(
        view.open.is_empty(),
        "all resolved at the end: {:?}",
        view.open
    );
    assert!(view.resolved.iter().any(|i| i.latest.geo == "IT-RM"));
    assert!(view.resolved.iter().all(|i| !i.open));
    // Every incident series is charted (its buckets arrive from then on).
    assert!(board.series("telegram", "IT-RM", "complaints").is_some());
}

#[test]
fn incident_series_displace_the_stalest_rollups_when_full() {
    let mut b = StatusBoard::new(BoardLimits {
        history_buckets: 10,
        max_series: 2,
        resolved_kept: 5,
    });
    b.record_bucket(&report("IT", 0));
    b.record_bucket(&report("DE", 60_000));
    b.record_bucket(&report("FR", 120_000));
    assert_eq!(b.charted_series(), 2, "no room for FR");
    let s = Scenario {
        days: 17,
        ..Scenario::demo()
    };
    let mut engine = Engine::new(Config::default());
    let mut events: Vec<AnomalyEvent> = Vec::new();
    sim::drive(&s, &mut engine, &mut events);
    let e = events.iter().find(|e| e.geo == "IT-RM").unwrap();
    b.record_anomaly(e);
    assert_eq!(b.charted_series(), 2);
    assert!(
        b.series("telegram", "IT", "complaints").is_none(),
        "stalest went"
    );
    assert!(b.series(&e.service, "IT-RM", &e.signal).is_some());
}
