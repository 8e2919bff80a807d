//! Shared helpers of the integration tests that need a real Kafka-protocol broker.
//!
//! `scripts/test.sh` starts one (tansu, see `scripts/kafka-broker.sh`) and passes its address
//! in `SPIKEWATCH_TEST_BROKERS`. Each test uses its own topics and group, so tests can share it.
//!
//! The tests take every helper from here (`use crate::common::*`); a module per concern:
//!
//! * `broker`: the broker address, per-test topic and group names, topic creation, the
//!   group's committed offsets and waiting for them.
//! * `config`: the config file of a test run (and additions to it), temporary files, ports.
//! * `instance`: [`Instance`], a running `spikewatch run` (log, report, signals), and reading
//!   its HTTP endpoints.
//! * `scenario`: the generated input streams (the 5-hour scenario, the two-week one) as wire
//!   messages, and what the engine alone makes of them.
//! * `produce`: writing input messages and the far-ahead markers to the broker.
//! * `read`: reading a topic back ([`read_all`], [`read_topic`]) and decoding its events.

mod broker;
mod config;
mod instance;
mod produce;
mod read;
mod scenario;

pub(crate) use broker::*;
pub(crate) use config::*;
pub(crate) use instance::*;
pub(crate) use produce::*;
pub(crate) use read::*;
pub(crate) use scenario::*;
