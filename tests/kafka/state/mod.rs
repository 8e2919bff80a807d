//! Durable state against a real Kafka-protocol broker (`SPIKEWATCH_TEST_BROKERS`;
//! `scripts/test.sh` starts tansu): the changelog makes SIGKILLs, rebalances and damaged
//! records invisible in the results. They fail, never skip, when no broker is running.
//!
//! This module holds the helpers the state tests share (the changelog config, reading the
//! changelog's series and the published incidents back); the tests are in a module per concern:
//!
//! * `uninterrupted`: the two-week run ([`uninterrupted::WeeksRun`]) and the check that what
//!   instances published and left in the changelog equals the engine run uninterrupted.
//! * `chaos`: instances SIGKILLed at seeded points, and an owner paused past its session
//!   (a zombie) waking after its replacement, both against that check.
//! * `mid_outage`: rebalances and a restart in the middle of an outage (one incident per
//!   series; the status page shows the restored outage as open).
//! * `startup`: what an instance starts from: a changelog with a damaged record, an
//!   `--initial-state` file.
//! * `cardinality`: a million junk geos stay under the caps.

mod cardinality;
mod chaos;
mod mid_outage;
mod startup;
mod uninterrupted;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;
use spikewatch::config::Config;
use spikewatch::engine::{Engine, SeriesState};
use spikewatch::event::{AnomalyEvent, IncidentState};
use spikewatch::kafka::changelog;
use spikewatch::kafka::KafkaSettings;

/// Fast changelog checkpoints so that kills land between them.
pub(crate) const STATE_EXTRA: &str = "changelog_interval_ms = 300";

pub(crate) fn plus_one(m: &BTreeMap<(String, i32), i64>) -> BTreeMap<(String, i32), i64> {
    m.iter().map(|(k, v)| (k.clone(), v + 1)).collect()
}

/// Every series in a changelog topic, as of its last commit, by key.
pub(crate) fn changelog_series(brokers: &str, topic: &str) -> BTreeMap<String, SeriesState> {
    let settings = KafkaSettings {
        brokers: brokers.to_string(),
        group_id: "test-reader".into(),
        ..KafkaSettings::default()
    };
    let mut out = BTreeMap::new();
    for p in 0..PARTITIONS {
        let records = changelog::read_partition(&settings, topic, p, Duration::from_secs(30))
            .expect("read changelog");
        let mut r = changelog::restore(records);
        assert!(r.unusable.is_empty(), "{:?}", r.unusable);
        let Some(commit) = r.commit.take() else {
            continue;
        };
        let mut e = Engine::new(Config::default());
        let report = e.restore_layout(commit.layout, std::mem::take(&mut r.series));
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        for s in e.export_series() {
            out.insert(s.key(), s);
        }
    }
    out
}

/// (incident id, seq) → (state, bucket start) of every anomaly event on a topic.
pub(crate) fn incidents(
    brokers: &str,
    topic: &str,
) -> BTreeMap<(String, u64), (IncidentState, String)> {
    let events: Vec<AnomalyEvent> = anomalies(&read_all(brokers, topic));
    dedup(&events)
        .into_iter()
        .map(|(k, e)| (k, (e.state, e.bucket_start.to_rfc3339())))
        .collect()
}
