//! JSONL events through the library: each event feeds its city's series and their roll-ups, and
//! the incident events written parse back into `AnomalyEvent`s.

use spikewatch::config::Config;
use spikewatch::event::{AnomalyEvent, IncidentState};
use spikewatch::replay::{replay_jsonl, IncidentEvents, ReplayOptions, ReplayOutput};

use crate::complaints_jsonl;

#[test]
fn jsonl_incidents_parse_back_into_anomaly_events() {
    let input = complaints_jsonl(420, &[]);
    let mut out = Vec::new();
    let mut inc = Vec::new();
    let outcome = replay_jsonl(
        "events.jsonl",
        input.as_bytes(),
        &Config::default(),
        &ReplayOptions {
            incident_events: IncidentEvents::Series,
            ..ReplayOptions::default()
        },
        ReplayOutput::new(&mut out).with_incidents(&mut inc),
    )
    .unwrap();
    let events: Vec<AnomalyEvent> = String::from_utf8(inc)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("AnomalyEvent"))
        .collect();
    assert!(!events.is_empty());
    let opened: Vec<&AnomalyEvent> = events
        .iter()
        .filter(|e| e.state == IncidentState::Opened)
        .collect();
    let geos: Vec<&str> = opened.iter().map(|e| e.geo.as_str()).collect();
    assert!(
        geos.contains(&"IT-RM") && geos.contains(&"IT") && geos.contains(&"*"),
        "{geos:?}"
    );
    assert!(events.iter().any(|e| e.state == IncidentState::Resolved));
    // Output: one row per series (IT-RM, IT, *) and bucket.
    let text = String::from_utf8(out).unwrap();
    let mut rows = text.lines();
    assert_eq!(rows.next(), Some(spikewatch::replay::EVENTS_HEADER));
    let rows: Vec<&str> = rows.collect();
    assert_eq!(rows.len(), 3 * 420);
    assert!(rows
        .iter()
        .any(|r| r.contains(",telegram,IT,complaints,") && r.ends_with(",1")));
    assert_eq!(outcome.summary.accepted, 420);
    assert_eq!(outcome.summary.series, 3);
}
