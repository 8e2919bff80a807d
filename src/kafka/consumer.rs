//! The consumer: configuration and the context whose rebalance callbacks hand partitions over
//! cleanly (on revoke: finish in-flight work, flush, store and commit synchronously, drop the
//! partitions' state).

use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::TopicPartitionList;

use super::pipeline::State;
use super::settings::KafkaSettings;
use super::Counters;

/// The librdkafka consumer configuration: at-least-once (offsets stored by spikewatch after
/// acknowledgement, committed in the background and synchronously on revoke and shutdown),
/// then the pass-through `[kafka.consumer]` table.
pub fn consumer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.brokers)
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        // librdkafka pauses fetching a partition whose local queue is over queued.min.messages
        // for this long (default 1 s): far too long for a consumer that drains 100k messages
        // in ~0.1 s; with the default a backlog is read at ~15% of the broker's speed.
        .set("fetch.queue.backoff.ms", "10")
        .set(
            "session.timeout.ms",
            (settings.session_timeout.0 * 1000).to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (settings.heartbeat_interval.0 * 1000).to_string(),
        )
        .set(
            "statistics.interval.ms",
            settings.statistics_interval_ms.to_string(),
        )
        .set("client.id", "spikewatch");
    for (k, v) in &settings.consumer {
        c.set(k, v);
    }
    c
}

/// Consumer context of `spikewatch run`.
pub struct PipelineContext {
    pub(crate) state: Arc<Mutex<State>>,
    /// Where statistics (consumer lag) go, without taking the state's lock.
    pub(crate) counters: Arc<Counters>,
}

impl ClientContext for PipelineContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::log_rdkafka("consumer", level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        super::error_rdkafka("consumer", &error, reason);
    }
    /// Every `statistics.interval.ms`: consumer lag per assigned partition, and a sample of
    /// the input rate. Only the fields used are parsed.
    fn stats_raw(&self, statistics: &[u8]) {
        match super::metrics::lag_from_statistics(statistics) {
            Ok(lag) => self.counters.set_consumer_lag(lag),
            Err(e) => tracing::debug!("unreadable librdkafka statistics: {e}"),
        }
        self.counters.sample_rate();
    }
}

impl ConsumerContext for PipelineContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let revoked: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                tracing::info!(partitions = ?revoked, "partitions revoked: finishing in-flight work");
                let to_commit = st.hand_over(&revoked, |tpl| store(consumer, tpl));
                if to_commit.count() > 0 {
                    match consumer.commit(&to_commit, CommitMode::Sync) {
                        Ok(()) => {
                            st.counters.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tracing::info!(offsets = ?offsets_of(&to_commit), "committed on revoke")
                        }
                        Err(e) => tracing::warn!(
                            "commit on revoke failed (the new owner re-reads from the last commit): {e}"
                        ),
                    }
                }
                st.drop_partitions(&revoked);
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!("rebalance error: {e}"),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let assigned: Vec<(String, i32)> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            tracing::info!(partitions = ?assigned, "partitions assigned");
            st.assign(&assigned);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(offsets = ?offsets_of(offsets), "offsets committed"),
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!("offset commit failed (retried at the next commit): {e}"),
        }
    }
}

/// Stores offsets for the next (auto or explicit) commit.
pub(crate) fn store<C: Consumer<X>, X: ConsumerContext>(consumer: &C, tpl: &TopicPartitionList) {
    if let Err(e) = consumer.store_offsets(tpl) {
        // Partitions no longer assigned refuse stores: their new owner re-reads them.
        tracing::debug!("storing offsets: {e}");
    }
}

pub(crate) fn offsets_of(tpl: &TopicPartitionList) -> Vec<String> {
    tpl.elements()
        .iter()
        .map(|e| format!("{}[{}]@{:?}", e.topic(), e.partition(), e.offset()))
        .collect()
}
