//! The consumer's configuration and offset helpers. The context whose rebalance callback has
//! partitions handed over and taken on is the pipeline's (`pipeline/rebalance.rs`).

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::TopicPartitionList;

use super::settings::KafkaSettings;

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
