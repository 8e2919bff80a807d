//! When input offsets may be committed: the two commit strategies.
//!
//! - [`CommitStrategy::Offsets`] (`[kafka] changelog = false`): an input message's offset is
//!   committable once the bucket it fell into has closed ([`crate::kafka::offsets`]) and what
//!   it caused is acknowledged.
//! - [`CommitStrategy::Changelog`]: input offsets advance with the partition's state. Every
//!   `changelog_interval_ms` the series that changed are written to the changelog topic; once
//!   they (and everything enqueued before) are acknowledged, the partition's commit record
//!   follows, and once that is acknowledged the input offsets stored with it are committable.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::producer::DeliveryFuture;

use super::ack_ledger::{AckLedger, Delivery, TopicOffset};
use super::error::PipelineError;
use super::partition::PartitionState;
use crate::kafka::producer::{send_to_partition, Producer};
use crate::kafka::{Counters, KafkaSettings};

pub(super) enum CommitStrategy {
    Offsets,
    Changelog(ChangelogCommits),
}

/// The changelog checkpoints in progress.
pub(super) struct ChangelogCommits {
    producer: Producer,
    topic: String,
    every: Duration,
    /// Commit records of checkpoints written since the ack ledger last sealed.
    unsealed: Vec<PendingCommit>,
    /// Commit records to send once the ledger checkpoint (sequence number) that sealed their
    /// series records, and every earlier one, is acknowledged.
    sealed: VecDeque<(u64, PendingCommit)>,
    flights: Vec<CommitFlight>,
}

/// A changelog checkpoint whose series records are on their way.
struct PendingCommit {
    partition: i32,
    checkpoint: u64,
    key: Vec<u8>,
    record: Vec<u8>,
    offsets: [Option<i64>; 2],
    started: Instant,
    bytes: usize,
}

/// A changelog commit record on its way.
struct CommitFlight {
    partition: i32,
    checkpoint: u64,
    offsets: [Option<i64>; 2],
    started: Instant,
    bytes: usize,
    delivery: DeliveryFuture,
}

impl CommitStrategy {
    pub(super) fn new(settings: &KafkaSettings, producer: Producer) -> Self {
        if !settings.changelog {
            return Self::Offsets;
        }
        Self::Changelog(ChangelogCommits {
            producer,
            topic: settings.topics.changelog.clone(),
            every: Duration::from_millis(settings.changelog_interval_ms),
            unsealed: Vec::new(),
            sealed: VecDeque::new(),
            flights: Vec::new(),
        })
    }

    /// Whether input offsets are tracked per message ([`crate::kafka::OffsetRuns`]). With the
    /// changelog, offsets are committed with the state; the runs are not needed.
    pub(super) fn tracks_runs(&self) -> bool {
        matches!(self, Self::Offsets)
    }

    /// Whether partition state is restored from (and checkpointed to) the changelog.
    pub(super) fn uses_changelog(&self) -> bool {
        matches!(self, Self::Changelog(_))
    }

    /// At a checkpoint: the offsets that become committable once what is enqueued so far is
    /// acknowledged; with the changelog, none (they advance with changelog commits, see
    /// [`Self::advance`]), but the changelog checkpoints that are due are written.
    pub(super) fn checkpoint(
        &mut self,
        now: Instant,
        partitions: &mut BTreeMap<i32, PartitionState>,
        topic_names: &[String; 2],
        ledger: &mut AckLedger,
    ) -> Result<Vec<TopicOffset>, PipelineError> {
        match self {
            Self::Offsets => {
                let mut offsets = Vec::new();
                for (&p, part) in partitions.iter() {
                    for (i, tp) in part.topics.iter().enumerate() {
                        if let Some(o) = tp.runs.committable() {
                            offsets.push((i, p, o));
                        }
                    }
                }
                Ok(offsets)
            }
            Self::Changelog(c) => {
                let mut failed = Ok(Vec::new());
                for (&p, part) in partitions.iter_mut() {
                    if !part.changelog_busy && now.duration_since(part.last_changelog) >= c.every {
                        if let Err(e) = c.write(p, part, now, topic_names, ledger) {
                            failed = Err(e);
                        }
                    }
                }
                failed
            }
        }
    }

    /// The ledger sealed checkpoint `seq`: the commit records written since wait for it.
    pub(super) fn sealed(&mut self, seq: u64) {
        if let Self::Changelog(c) = self {
            c.sealed
                .extend(c.unsealed.drain(..).map(|commit| (seq, commit)));
        }
    }

    /// Sends the commit records of every checkpoint acknowledged through ledger checkpoint
    /// `through`, and returns the input offsets of changelog commits that are now
    /// acknowledged.
    pub(super) fn advance(
        &mut self,
        through: Option<u64>,
        partitions: &mut BTreeMap<i32, PartitionState>,
        counters: &Counters,
    ) -> Result<Vec<TopicOffset>, PipelineError> {
        match self {
            Self::Offsets => Ok(Vec::new()),
            Self::Changelog(c) => c.advance(through, partitions, counters),
        }
    }

    /// Forgets the commits of partitions no longer owned.
    pub(super) fn forget_partitions(&mut self, dropped: &[i32]) {
        if let Self::Changelog(c) = self {
            c.unsealed.retain(|c| !dropped.contains(&c.partition));
            c.sealed.retain(|(_, c)| !dropped.contains(&c.partition));
            c.flights.retain(|c| !dropped.contains(&c.partition));
        }
    }

    /// No commit record is on its way.
    pub(super) fn is_settled(&self) -> bool {
        match self {
            Self::Offsets => true,
            Self::Changelog(c) => c.flights.is_empty(),
        }
    }
}

impl ChangelogCommits {
    /// Enqueues the series of partition `p` that changed since its last changelog checkpoint;
    /// its commit record follows once they and everything before are acknowledged.
    pub(super) fn write(
        &mut self,
        p: i32,
        part: &mut PartitionState,
        now: Instant,
        topic_names: &[String; 2],
        ledger: &mut AckLedger,
    ) -> Result<(), PipelineError> {
        let offsets = part.next_offsets();
        let max_event_ms = [part.topics[0].max_event_ms, part.topics[1].max_event_ms];
        let live = part.engine.series_count() as u64;
        let delta = part.engine.take_changes();
        let unchanged = delta.changed.is_empty()
            && delta.removed.is_empty()
            && !part.writer.has_tombstones_due()
            && part.last_committed == Some((offsets, max_event_ms));
        if unchanged {
            // Nothing new since the last checkpoint: no commit record either.
            part.last_changelog = now;
            return Ok(());
        }
        part.last_committed = Some((offsets, max_event_ms));
        let out = part
            .writer
            .checkpoint(delta, topic_names, offsets, max_event_ms, live);
        part.changelog_busy = true;
        part.last_changelog = now;
        for (key, value) in &out.records {
            let f = send_to_partition(&self.producer, &self.topic, p, key, value.as_deref())
                .map_err(PipelineError::enqueue("a changelog record"))?;
            ledger.push(Delivery::State(f));
        }
        tracing::debug!(
            partition = p,
            checkpoint = out.checkpoint,
            series = out.series_written,
            bytes = out.bytes,
            "changelog checkpoint enqueued"
        );
        self.unsealed.push(PendingCommit {
            partition: p,
            checkpoint: out.checkpoint,
            key: out.commit_key,
            record: out.commit,
            offsets,
            started: now,
            bytes: out.bytes,
        });
        Ok(())
    }

    fn advance(
        &mut self,
        through: Option<u64>,
        partitions: &mut BTreeMap<i32, PartitionState>,
        counters: &Counters,
    ) -> Result<Vec<TopicOffset>, PipelineError> {
        while let Some((_, c)) = self
            .sealed
            .front()
            .filter(|(seq, _)| through.is_some_and(|t| *seq <= t))
        {
            if partitions.contains_key(&c.partition) {
                let delivery = send_to_partition(
                    &self.producer,
                    &self.topic,
                    c.partition,
                    &c.key,
                    Some(&c.record),
                )
                .map_err(PipelineError::enqueue("a changelog commit"))?;
                self.flights.push(CommitFlight {
                    partition: c.partition,
                    checkpoint: c.checkpoint,
                    offsets: c.offsets,
                    started: c.started,
                    bytes: c.bytes,
                    delivery,
                });
            }
            self.sealed.pop_front();
        }
        let mut offsets = Vec::new();
        let mut failed = None;
        let mut i = 0;
        while i < self.flights.len() {
            let result = (&mut self.flights[i].delivery).now_or_never();
            let Some(result) = result else {
                i += 1;
                continue;
            };
            let f = self.flights.swap_remove(i);
            match result {
                Ok(Ok(_)) => {
                    if let Some(part) = partitions.get_mut(&f.partition) {
                        part.writer.committed(f.checkpoint);
                        part.changelog_busy = false;
                        for (t, o) in f.offsets.iter().enumerate() {
                            if let Some(o) = o {
                                offsets.push((t, f.partition, *o));
                            }
                        }
                    }
                    Counters::add(&counters.changelog_commits, 1);
                    Counters::add(&counters.changelog_bytes, f.bytes as u64);
                    counters.observe_checkpoint(f.started.elapsed(), f.bytes as u64);
                    tracing::debug!(
                        partition = f.partition,
                        checkpoint = f.checkpoint,
                        took_ms = f.started.elapsed().as_millis() as u64,
                        "changelog checkpoint committed"
                    );
                }
                Ok(Err((e, _))) => failed = Some(PipelineError::ChangelogCommit(e)),
                Err(_) => failed = Some(PipelineError::ChangelogCommitCancelled),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(offsets),
        }
    }
}
