//! Integration tests of `spikewatch run` against a real Kafka-protocol broker
//! (`SPIKEWATCH_TEST_BROKERS`; `scripts/test.sh` starts tansu). They fail, never skip, when no
//! broker is running.
//!
//! This module holds the time of the markers the tests produce after the scenario; the tests
//! are in a module per concern:
//!
//! * `publish`: consuming and publishing end to end (anomaly and outage topics, `tail`), and
//!   poison messages going to dead letters.
//! * `lifecycle`: the process's signals: SIGTERM drains and exits, SIGKILL and a restart lose
//!   nothing, SIGHUP reloads the config.
//! * `group`: instances in one consumer group: splitting the partitions, a rebalance mid-stream.
//! * `status`: the status page, `/api/incidents` and `/metrics` while the pipeline runs.

mod group;
mod lifecycle;
mod publish;
mod status;

use crate::common::*;
use spikewatch::sim::{HOUR_MS, MINUTE_MS};

const MARKER_AHEAD_MS: i64 = 30 * MINUTE_MS;

pub(crate) fn marker_ts() -> i64 {
    let (s, _, _) = scenario();
    s.start_ms + SCENARIO_HOURS * HOUR_MS + MARKER_AHEAD_MS
}
