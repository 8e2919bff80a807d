//! The consumer: configuration and the context whose rebalance callbacks hand partitions over
//! cleanly (on revoke: finish in-flight work, flush, store and commit synchronously, drop the
//! partitions' state).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};

use super::changelog;
use super::pipeline::{PartitionState, State};
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
    /// Since when every broker is down (for `/readyz`); shared with the state, set here
    /// without taking the state's lock (callbacks may run while a drain holds it).
    pub(crate) brokers_down: Arc<Mutex<Option<std::time::Instant>>>,
}

impl ClientContext for PipelineContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::log_rdkafka("consumer", level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            self.brokers_down
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(std::time::Instant::now);
        }
        super::error_rdkafka("consumer", &error, reason);
    }
    /// Every `statistics.interval.ms`: consumer lag per assigned partition, and whether a
    /// broker is up. Only the fields used are parsed.
    fn stats_raw(&self, statistics: &[u8]) {
        match super::metrics::lag_from_statistics(statistics) {
            Ok(lag) => self.counters.set_consumer_lag(lag),
            Err(e) => tracing::debug!("unreadable librdkafka statistics: {e}"),
        }
        if super::metrics::any_broker_up(statistics) {
            *self.brokers_down.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

impl PipelineContext {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// On revoke: finish in-flight work (with the changelog: a final checkpoint), commit
    /// synchronously, drop the partitions' state.
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let mut st = self.lock();
        let revoked = partitions_of(tpl);
        tracing::info!(partitions = ?revoked, "partitions revoked: finishing in-flight work");
        let to_commit = st.hand_over(&revoked, |tpl| store(consumer, tpl));
        if to_commit.count() > 0 {
            match consumer.commit(&to_commit, CommitMode::Sync) {
                Ok(()) => {
                    st.counters
                        .commits
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(offsets = ?offsets_of(&to_commit), "committed on revoke")
                }
                Err(e) => tracing::warn!(
                    "commit on revoke failed (the new owner re-reads from the last commit): {e}"
                ),
            }
        }
        st.drop_partitions(&revoked);
    }

    /// On assignment: restore every newly assigned partition from the changelog and start
    /// its input at the offsets stored with that state.
    fn assign(&self, tpl: &mut TopicPartitionList) {
        let assigned = partitions_of(tpl);
        tracing::info!(partitions = ?assigned, "partitions assigned");
        let (settings, config, seed, topics, readiness, counters, stopping) = {
            let st = self.lock();
            // Messages polled before this point belong to the previous assignment.
            st.next_generation();
            (
                st.settings().clone(),
                st.config().clone(),
                st.seed(),
                st.topic_names().clone(),
                st.readiness.clone(),
                st.counters.clone(),
                st.stopping.clone(),
            )
        };
        let mut failed: Vec<i32> = Vec::new();
        // Not restored because the instance is stopping: not consumed either (their messages
        // are dropped as not owned; the next owner restores them).
        let mut cancelled: Vec<i32> = Vec::new();
        if settings.changelog {
            let mut todo: Vec<i32> = {
                let st = self.lock();
                assigned
                    .iter()
                    .filter(|(t, p)| topics.contains(t) && !st.owns(*p))
                    .map(|(_, p)| *p)
                    .collect()
            };
            todo.sort_unstable();
            todo.dedup();
            if !todo.is_empty() {
                if let Some(r) = &readiness {
                    r.set_not_ready(format!("restoring partitions {todo:?} from the changelog"));
                }
            }
            for p in todo {
                match restore_partition(&settings, &config, seed.as_ref(), p, &counters, &stopping)
                {
                    Ok(part) => {
                        let offsets = self.lock().adopt(p, part);
                        for (i, topic) in topics.iter().enumerate() {
                            if let Some(o) = offsets[i] {
                                if let Err(e) =
                                    tpl.set_partition_offset(topic, p, Offset::Offset(o))
                                {
                                    tracing::warn!("cannot set start offset: {e}");
                                }
                            }
                        }
                    }
                    Err(RestoreFailure::Cancelled) => {
                        tracing::info!(partition = p, "restore cancelled: shutting down");
                        cancelled.push(p);
                    }
                    Err(RestoreFailure::Failed(why)) => {
                        tracing::error!(partition = p, "{why}");
                        self.lock().fail(why);
                        failed.push(p);
                    }
                }
            }
        }
        let fresh: Vec<(String, i32)> = assigned
            .into_iter()
            .filter(|(_, p)| !failed.contains(p) && !cancelled.contains(p))
            .collect();
        self.lock().assign(&fresh);
        if let Some(r) = &readiness {
            if failed.is_empty() && cancelled.is_empty() {
                r.set_ready();
            }
        }
    }
}

/// Why a partition was not restored.
#[derive(Debug)]
enum RestoreFailure {
    /// Shutdown was requested meanwhile.
    Cancelled,
    /// Reading or checking the changelog failed for good: the instance stops.
    Failed(String),
}

/// Reads and rebuilds one partition's state, retrying a few times; gives up as soon as
/// `stopping` is set.
fn restore_partition(
    settings: &super::KafkaSettings,
    config: &crate::config::Config,
    seed: Option<&std::sync::Arc<crate::engine::BaselineSeed>>,
    p: i32,
    counters: &super::Counters,
    stopping: &AtomicBool,
) -> Result<PartitionState, RestoreFailure> {
    let started = std::time::Instant::now();
    let timeout = std::time::Duration::from_secs(settings.restore_timeout.0);
    let mut attempt = 0;
    let restored = loop {
        match changelog::restore_partition(
            settings,
            &settings.topics.changelog,
            p,
            timeout,
            stopping,
        ) {
            Ok(r) => break r,
            Err(changelog::ReadError::Cancelled) => return Err(RestoreFailure::Cancelled),
            Err(e) if attempt < 3 => {
                attempt += 1;
                tracing::warn!(
                    partition = p,
                    "reading the changelog failed (retrying): {e}"
                );
                // In steps: a shutdown does not wait for the backoff either.
                let until =
                    std::time::Instant::now() + std::time::Duration::from_millis(500 << attempt);
                while std::time::Instant::now() < until {
                    if stopping.load(Ordering::Relaxed) {
                        return Err(RestoreFailure::Cancelled);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
            Err(e) => {
                return Err(RestoreFailure::Failed(format!(
                    "cannot restore partition {p} from changelog topic {}: {e}",
                    settings.topics.changelog
                )))
            }
        }
    };
    if let Some(c) = &restored.commit {
        let ours = [&settings.topics.mentions, &settings.topics.complaints];
        if c.input_topics.iter().zip(ours).any(|(a, b)| a != b) {
            return Err(RestoreFailure::Failed(format!(
                "changelog topic {} holds the state of input topics {} / {}, not {} / {}: \
                 give every deployment its own changelog topic ([kafka.topics] changelog)",
                settings.topics.changelog, c.input_topics[0], c.input_topics[1], ours[0], ours[1]
            )));
        }
    }
    let (records, bytes, series) = (restored.records, restored.bytes, restored.series.len());
    let checkpoint = restored.commit.as_ref().map(|c| c.checkpoint);
    let (from_epoch, epoch) = (restored.commit_epoch, restored.writer.epoch());
    counters.observe_restore(started.elapsed(), series as u64);
    super::Counters::add(
        &counters.unusable_state_records,
        restored.unusable.len() as u64,
    );
    if stopping.load(Ordering::Relaxed) {
        return Err(RestoreFailure::Cancelled);
    }
    let part = PartitionState::restored(config, seed, p, restored, std::time::Instant::now());
    tracing::info!(
        partition = p,
        checkpoint,
        from_epoch,
        epoch,
        series,
        records,
        bytes,
        took_ms = started.elapsed().as_millis() as u64,
        "restored partition state from the changelog"
    );
    Ok(part)
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ConsumerContext for PipelineContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.assign(tpl);
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoke(consumer, tpl);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::warn!("rebalance error: {}", RDKafkaErrorCode::from(other));
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            tracing::error!("applying the rebalance failed: {e}");
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
