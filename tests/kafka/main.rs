//! Integration tests of `spikewatch run` against a real Kafka-protocol broker
//! (`SPIKEWATCH_TEST_BROKERS`; `scripts/test.sh` starts tansu, see README "Tests against a real
//! broker"). They fail, never skip, when no broker is running. One test binary
//! (`cargo test --test kafka`; `cargo test --test kafka state::` runs one module,
//! `state::chaos::` one of its submodules), a module per concern:
//!
//! * `pipeline`: consuming, publishing, dead letters, offsets, restarts, rebalances, shutdown:
//!   `pipeline::publish` (end to end, dead letters), `pipeline::lifecycle` (SIGTERM, SIGKILL
//!   and restart, SIGHUP reload), `pipeline::group` (instances in one group, rebalances),
//!   `pipeline::status` (status page, API, metrics).
//! * `state`: durable state: the changelog makes SIGKILLs, rebalances and damaged records
//!   invisible in the results: `state::chaos` (SIGKILLs, a paused owner waking up, against
//!   the uninterrupted engine of `state::uninterrupted`), `state::mid_outage` (rebalance and
//!   restart during an outage), `state::startup` (a damaged changelog record,
//!   `--initial-state`), `state::cardinality` (a million junk geos).
//! * `faults`: broker faults, unreachable at start and down mid-run (librdkafka's mock cluster).
//! * `notify`: alert delivery from `spikewatch run` itself to a local HTTP receiver.
//! * `reference`: an experiment, `#[ignore]`d and run by hand (see its module doc).
//! * `common`: the helpers they share: `common::broker` (address, topics, committed offsets),
//!   `common::config` (config file, temporary files), `common::instance` (the `spikewatch run`
//!   process), `common::scenario` (the generated input), `common::produce`, `common::read`
//!   (`read_all`, `read_topic`, decoding events).

mod common;
mod faults;
mod notify;
mod pipeline;
mod reference;
mod state;
