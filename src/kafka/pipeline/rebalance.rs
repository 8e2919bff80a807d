//! Rebalances, in two halves (the model of Vector's Kafka source).
//!
//! The consumer context's callback runs on the `spikewatch-poll` thread (`poll.rs`), inside
//! the consumer's poll. It does no hand-over work itself: it posts a [`Request`] to the run
//! loop and blocks until the loop answers. librdkafka hands a revoked partition on once the
//! callback returns, so by then that partition's in-flight work must be finished and its
//! offsets committed; an assigned partition's start offsets (those of its restored state)
//! must be in the `assign` the callback makes. While the callback blocks, nothing is polled,
//! so no message of the new assignment can come before its state.
//!
//! The loop's half, [`answer`]: on revoke, the hand-over runs on the blocking pool (a
//! checkpoint, with the changelog a final changelog checkpoint per partition, `producer.flush`,
//! acknowledgements; bounded by `drain_timeout`), the partitions' state is dropped, and the
//! offsets to commit go back to the callback, which commits them synchronously before it
//! returns (it holds the consumer: the last revoke comes while the consumer is being closed,
//! when only the callback can reach it). On assignment, each new partition is
//! restored from the changelog (`restore.rs`) and its start offsets go back to the callback.
//! The loop does nothing else meanwhile: no checkpoint runs while a partition is half handed
//! over, and the engines are not advanced while input is held up (see `discount_stall`).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::Producer as _;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use super::error::PipelineError;
use super::partition::PartitionState;
use super::poll::InputConsumer;
use super::restore::{restore_partition, RestoreFailure};
use super::state::State;
use crate::kafka::consumer::{offsets_of, store};
use crate::kafka::Counters;

/// Consumer context of `spikewatch run`.
pub(super) struct PipelineContext {
    /// Where the rebalance callback posts its requests to the run loop.
    pub(super) requests: tokio::sync::mpsc::UnboundedSender<Request>,
    /// Where statistics (consumer lag) and commits on revoke are counted, without taking the
    /// state's lock.
    pub(super) counters: Arc<Counters>,
    /// Since when every broker is down (for `/readyz`); shared with the state, set here
    /// without taking the state's lock (callbacks may run while a drain holds it).
    pub(super) brokers_down: Arc<Mutex<Option<Instant>>>,
}

impl ClientContext for PipelineContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::kafka::log_rdkafka("consumer", level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            self.brokers_down
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(Instant::now);
        }
        crate::kafka::error_rdkafka("consumer", &error, reason);
    }
    /// Every `statistics.interval.ms`: consumer lag per assigned partition, and whether a
    /// broker is up. Only the fields used are parsed.
    fn stats_raw(&self, statistics: &[u8]) {
        match crate::kafka::metrics::lag_from_statistics(statistics) {
            Ok(lag) => self.counters.set_consumer_lag(lag),
            Err(e) => tracing::debug!("unreadable librdkafka statistics: {e}"),
        }
        if crate::kafka::metrics::any_broker_up(statistics) {
            *self.brokers_down.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

impl PipelineContext {
    /// Posts a request to the loop and blocks until it answers. `None`: the loop is gone (the
    /// consumer is closed after the run ended, or the run was dropped).
    fn ask<T>(&self, request: impl FnOnce(SyncSender<T>) -> Request) -> Option<T> {
        let (reply, answer) = sync_channel(1);
        self.requests.send(request(reply)).ok()?;
        answer.recv().ok()
    }

    /// On revoke: the loop finishes in-flight work and drops the partitions' state; the
    /// offsets it returns are committed synchronously here.
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let revoked = partitions_of(tpl);
        tracing::info!(partitions = ?revoked, "partitions revoked: finishing in-flight work");
        let Some(to_commit) = self.ask(|reply| Request::Revoked {
            partitions: revoked,
            reply,
        }) else {
            tracing::debug!("partitions revoked after the run ended: nothing to hand over");
            return;
        };
        if to_commit.count() > 0 {
            match consumer.commit(&to_commit, CommitMode::Sync) {
                Ok(()) => {
                    self.counters.commits.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(offsets = ?offsets_of(&to_commit), "committed on revoke")
                }
                Err(e) => tracing::warn!(
                    "commit on revoke failed (the new owner re-reads from the last commit): {e}"
                ),
            }
        }
    }

    /// On assignment: the loop restores every newly assigned partition; its input starts at
    /// the offsets stored with that state.
    fn assign(&self, tpl: &mut TopicPartitionList) {
        let assigned = partitions_of(tpl);
        tracing::info!(partitions = ?assigned, "partitions assigned");
        let starts = self
            .ask(|reply| Request::Assigned {
                partitions: assigned,
                reply,
            })
            .unwrap_or_default();
        for (topic, p, o) in starts {
            if let Err(e) = tpl.set_partition_offset(&topic, p, Offset::Offset(o)) {
                tracing::warn!("cannot set start offset: {e}");
            }
        }
    }
}

/// What the rebalance callback asks of the loop; the callback blocks until `reply` is sent
/// (or dropped).
pub(super) enum Request {
    Assigned {
        partitions: Vec<(String, i32)>,
        /// The start offsets of the partitions restored.
        reply: SyncSender<Vec<StartOffset>>,
    },
    Revoked {
        partitions: Vec<(String, i32)>,
        /// The revoked partitions' offsets, to commit synchronously.
        reply: SyncSender<TopicPartitionList>,
    },
}

/// (topic, partition, offset) an assigned partition's input starts at.
pub(super) type StartOffset = (String, i32, i64);

/// The loop's answer to a request of the rebalance callback (see the module docs).
/// `consumer`: the loop's reference, `None` once it is closing the consumer.
pub(super) async fn answer(
    state: &Arc<Mutex<State>>,
    consumer: Option<&Arc<InputConsumer>>,
    request: Request,
) {
    match request {
        Request::Assigned { partitions, reply } => {
            let starts = take_on(state, partitions).await;
            let _ = reply.send(starts);
        }
        Request::Revoked { partitions, reply } => {
            let to_commit = hand_over(state, consumer.cloned(), partitions).await;
            let _ = reply.send(to_commit);
        }
    }
}

/// Finishes the in-flight work of the revoked partitions and drops their state; returns their
/// offsets to commit. On the blocking pool: it flushes the producer and waits for
/// acknowledgements, holding the state's lock so that the engine thread cannot feed the
/// partitions meanwhile.
async fn hand_over(
    state: &Arc<Mutex<State>>,
    consumer: Option<Arc<InputConsumer>>,
    revoked: Vec<(String, i32)>,
) -> TopicPartitionList {
    let state = state.clone();
    let done = tokio::task::spawn_blocking(move || {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        // Offsets that become committable meanwhile are stored here, in order, while the loop
        // stores nothing else. Without the consumer (it is being closed, so every partition is
        // revoked) the commit covers them.
        let to_commit = st.hand_over(&revoked, |tpl| {
            if let Some(c) = &consumer {
                store(&**c, tpl);
            }
        });
        st.drop_partitions(&revoked);
        to_commit
    })
    .await;
    done.unwrap_or_else(|e| {
        // Nothing is committed: the new owner re-reads from the last commit.
        tracing::error!("handing partitions over failed: {e}");
        TopicPartitionList::new()
    })
}

/// Restores every newly assigned partition from the changelog and takes the assigned
/// partitions on; returns the input offsets the restored ones start at.
async fn take_on(state: &Arc<Mutex<State>>, assigned: Vec<(String, i32)>) -> Vec<StartOffset> {
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    let (settings, config, seed, topics, readiness, counters, stopping, restores) = {
        let st = lock();
        // Messages polled before this point belong to the previous assignment.
        st.next_generation();
        (
            st.settings().clone(),
            st.config.engine.clone(),
            st.seed.clone(),
            st.topic_names.clone(),
            st.health.readiness.clone(),
            st.counters.clone(),
            st.stopping.clone(),
            st.commit.uses_changelog(),
        )
    };
    let mut starts = Vec::new();
    let mut failed: Vec<i32> = Vec::new();
    // Not restored because the instance is stopping: not consumed either (their messages are
    // dropped as not owned; the next owner restores them).
    let mut cancelled: Vec<i32> = Vec::new();
    if restores {
        let mut todo: Vec<i32> = {
            let st = lock();
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
                .await
            {
                Ok(part) => {
                    let offsets = lock().adopt(p, part);
                    for (i, topic) in topics.iter().enumerate() {
                        if let Some(o) = offsets[i] {
                            starts.push((topic.clone(), p, o));
                        }
                    }
                }
                Err(RestoreFailure::Cancelled) => {
                    tracing::info!(partition = p, "restore cancelled: shutting down");
                    cancelled.push(p);
                }
                Err(RestoreFailure::Failed(why)) => {
                    tracing::error!(partition = p, "{why}");
                    lock().fail(PipelineError::Restore(why));
                    failed.push(p);
                }
            }
        }
    }
    let fresh: Vec<(String, i32)> = assigned
        .into_iter()
        .filter(|(_, p)| !failed.contains(p) && !cancelled.contains(p))
        .collect();
    lock().assign(&fresh);
    if let Some(r) = &readiness {
        if failed.is_empty() && cancelled.is_empty() {
            r.set_ready();
        }
    }
    starts
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

/// Assignment and hand-over of partitions, for the loop's answers above and the drain at
/// shutdown.
impl State {
    /// The stored offsets of the given topic-partitions, for a synchronous commit.
    fn stored_offsets(&self, which: &[(String, i32)]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (topic, p) in which {
            if let Some(i) = self.topic_index(topic) {
                if let Some(o) = self.ledger.stored(i, *p) {
                    let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(o));
                }
            }
        }
        tpl
    }

    /// Every topic-partition with a stored offset or a state.
    pub(super) fn all_assigned(&self) -> Vec<(String, i32)> {
        let mut all: Vec<(String, i32)> = self
            .ledger
            .stored_keys()
            .map(|(i, p)| (self.topic_names[i].clone(), p))
            .collect();
        for &p in self.partitions.keys() {
            for t in &self.topic_names {
                if !all.iter().any(|(x, q)| x == t && *q == p) {
                    all.push((t.clone(), p));
                }
            }
        }
        all
    }

    /// Finishes in-flight work (checkpoint, flush, drain) and returns the offsets to commit
    /// synchronously for `which`. Offsets that become committable meanwhile go to `store`.
    /// Blocks for up to `drain_timeout`: never on a tokio worker.
    pub(super) fn hand_over(
        &mut self,
        which: &[(String, i32)],
        mut store: impl FnMut(&TopicPartitionList),
    ) -> TopicPartitionList {
        self.checkpoint(Instant::now());
        let timeout = Duration::from_secs(self.settings().drain_timeout.0);
        // With the changelog, each partition handed over ends with a checkpoint of its final
        // state (after the one in flight, if any, is committed).
        let mut final_due: Vec<i32> = if self.commit.uses_changelog() {
            let mut ps: Vec<i32> = which
                .iter()
                .map(|(_, p)| *p)
                .filter(|p| self.partitions.contains_key(p))
                .collect();
            ps.sort_unstable();
            ps.dedup();
            ps
        } else {
            Vec::new()
        };
        let started = Instant::now();
        loop {
            let now = Instant::now();
            let mut wrote = false;
            final_due.retain(|&p| {
                if self.partitions.get(&p).is_some_and(|x| x.changelog_busy) {
                    return true;
                }
                self.write_changelog(p, now);
                wrote = true;
                false
            });
            if wrote {
                self.seal(Vec::new());
            }
            let left = timeout.saturating_sub(started.elapsed());
            if let Err(e) = self.producer.flush(Timeout::After(left)) {
                tracing::warn!("producer flush did not finish within {timeout:?}: {e}");
            }
            // Delivery futures resolve on the producer's thread right after flush.
            let deadline = Instant::now() + Duration::from_millis(500);
            loop {
                if let Some(tpl) = self.drain_ready() {
                    store(&tpl);
                }
                let settled = self.ledger.is_settled() && self.commit.is_settled();
                if settled || self.fatal.is_some() || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let busy = which
                .iter()
                .any(|(_, p)| self.partitions.get(p).is_some_and(|x| x.changelog_busy));
            if (final_due.is_empty() && !busy)
                || self.fatal.is_some()
                || started.elapsed() > timeout
            {
                if !final_due.is_empty() || busy {
                    tracing::warn!(
                        "final changelog checkpoint not committed within {timeout:?}: the next \
                         owner restores the previous one and reads the input since again"
                    );
                }
                break;
            }
        }
        self.stored_offsets(which)
    }

    pub(super) fn drop_partitions(&mut self, which: &[(String, i32)]) {
        // Offsets of checkpoints still waiting (a flush that timed out) belong to the old
        // owner's state: never store them for a later assignment.
        let dropped: Vec<i32> = which.iter().map(|(_, p)| *p).collect();
        self.ledger.forget_partitions(&dropped);
        self.commit.forget_partitions(&dropped);
        let now = Instant::now();
        for (topic, p) in which {
            if let Some(i) = self.topic_index(topic) {
                self.ledger.unstore(i, *p);
            }
            if let Some(part) = self.partitions.remove(p) {
                tracing::info!(partition = p, "dropped engine state of partition");
                // Unless it comes back, its new owner shows these from now on, and nothing
                // here would ever resolve them (see `forget_moved`).
                let services = part.services_on_board().map(str::to_string).collect();
                self.status.revoked(*p, now, services);
            }
        }
        if self.partitions.is_empty() {
            self.health.unassigned();
        }
        Counters::add(&self.counters.rebalances, 1);
    }

    /// Starts a new assignment generation: messages polled before it are not applied to the
    /// partition states created from now on.
    pub(super) fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(super) fn assign(&mut self, which: &[(String, i32)]) {
        let now = Instant::now();
        if !which.is_empty() {
            // Assigned: the group coordinator answered, so a broker is up.
            self.health.assigned();
        }
        let assigned: Vec<i32> = which.iter().map(|(_, p)| *p).collect();
        let generation = self.generation.load(Ordering::SeqCst);
        for (topic, p) in which {
            if self.topic_index(topic).is_some() {
                self.partitions.entry(*p).or_insert_with(|| {
                    let mut part =
                        PartitionState::new(&self.config.engine, self.seed.as_ref(), now);
                    part.generation = generation;
                    part
                });
            }
        }
        self.forget_moved(Some(&assigned), now);
    }

    pub(super) fn owns(&self, partition: i32) -> bool {
        self.partitions.contains_key(&partition)
    }

    /// Takes over a partition restored from the changelog; returns the input offsets to
    /// resume from (per topic index; `None`: the group's committed offset).
    pub(super) fn adopt(&mut self, partition: i32, mut part: PartitionState) -> [Option<i64>; 2] {
        part.generation = self.generation.load(Ordering::SeqCst);
        self.status.show_restored(partition, &part.restored_open);
        let offsets = part.next_offsets();
        self.partitions.insert(partition, part);
        offsets
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::kafka::producer::create_producer;
    use crate::kafka::PipelineConfig;

    /// Plain offsets (no changelog): nothing is produced or restored, so no broker is needed.
    fn state() -> Arc<Mutex<State>> {
        let mut config = PipelineConfig::default();
        config.kafka.brokers = "127.0.0.1:9".into();
        config.kafka.changelog = false;
        let producer = create_producer(&config.kafka).unwrap();
        Arc::new(Mutex::new(State::new(
            &config,
            producer,
            Arc::new(Counters::default()),
        )))
    }

    #[tokio::test]
    async fn a_revoke_is_answered_with_the_offsets_to_commit_after_the_state_is_dropped() {
        let state = state();
        let topics = state.lock().unwrap().topic_names.clone();
        let both = vec![(topics[0].clone(), 3), (topics[1].clone(), 3)];
        {
            let mut st = state.lock().unwrap();
            st.assign(&both);
            st.ledger.store(0, 3, 42, &mut BTreeMap::new());
        }
        let (reply, answer_rx) = sync_channel(1);
        let request = Request::Revoked {
            partitions: both,
            reply,
        };
        answer(&state, None, request).await;
        let tpl = answer_rx.recv().unwrap();
        assert_eq!(
            offsets_of(&tpl),
            vec![format!("{}[3]@Offset(42)", topics[0])]
        );
        let st = state.lock().unwrap();
        assert!(!st.owns(3));
        assert_eq!(
            st.ledger.stored(0, 3),
            None,
            "never stored for a later owner"
        );
        assert_eq!(st.counters.rebalances.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn an_assignment_is_taken_on_in_a_new_generation_and_answered_without_start_offsets() {
        let state = state();
        let topics = state.lock().unwrap().topic_names.clone();
        let before = state.lock().unwrap().generation.load(Ordering::SeqCst);
        let (reply, answer_rx) = sync_channel(1);
        let request = Request::Assigned {
            partitions: vec![(topics[0].clone(), 5), (topics[1].clone(), 5)],
            reply,
        };
        answer(&state, None, request).await;
        // Without the changelog the group's committed offsets apply.
        assert!(answer_rx.recv().unwrap().is_empty());
        let st = state.lock().unwrap();
        assert!(st.owns(5));
        assert_eq!(st.generation.load(Ordering::SeqCst), before + 1);
        assert_eq!(st.partitions[&5].generation, before + 1);
    }
}
