//! The ack ledger, owned by the pipeline's state: every delivery enqueued since the previous
//! checkpoint is recorded with the checkpoint that seals it, together with the input offsets
//! that became committable then. A checkpoint's offsets are stored only once all its
//! deliveries and those of every earlier checkpoint are acknowledged; nothing after a failed
//! delivery is ever stored. Deliveries are polled, never waited for.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use futures::FutureExt;
use rdkafka::producer::DeliveryFuture;

use super::error::PipelineError;
use crate::kafka::Counters;

const MAX_LATENCY_SAMPLES: usize = 1_000_000;

pub(super) enum Delivery {
    DeadLetter(DeliveryFuture),
    Anomaly(DeliveryFuture, Instant),
    /// A changelog series record or tombstone.
    State(DeliveryFuture),
}

/// (topic index, partition, offset to commit).
pub(super) type TopicOffset = (usize, i32, i64);

struct Checkpoint {
    /// Sequence number, in sealing order (see [`AckLedger::seal`]).
    seq: u64,
    deliveries: Vec<Delivery>,
    offsets: Vec<TopicOffset>,
}

/// What [`AckLedger::drain_ready`] found acknowledged.
pub(super) struct Acked {
    /// The sequence number of the last checkpoint fully acknowledged by this drain, if any.
    pub(super) through: Option<u64>,
    /// Offsets that advanced, per (topic index, partition).
    pub(super) advanced: BTreeMap<(usize, i32), i64>,
}

#[derive(Default)]
pub(super) struct AckLedger {
    /// Enqueued since the last checkpoint.
    pending: Vec<Delivery>,
    checkpoints: VecDeque<Checkpoint>,
    next_seq: u64,
    /// Offsets stored for commit, per (topic index, partition).
    stored: BTreeMap<(usize, i32), i64>,
    /// See [`super::RunReport::ack_latencies_us`].
    latencies: Vec<u64>,
}

impl AckLedger {
    pub(super) fn push(&mut self, d: Delivery) {
        self.pending.push(d);
    }

    /// Everything enqueued since the previous checkpoint becomes one checkpoint, committing
    /// `offsets` once acknowledged; returns its sequence number.
    pub(super) fn seal(&mut self, offsets: Vec<TopicOffset>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.checkpoints.push_back(Checkpoint {
            seq,
            deliveries: std::mem::take(&mut self.pending),
            offsets,
        });
        seq
    }

    /// Pops every checkpoint whose deliveries (and all earlier ones) are acknowledged, storing
    /// the offsets of partitions still owned (`owns`). A failed delivery, or `fatal` already
    /// set, clears every checkpoint and returns `None`.
    pub(super) fn drain_ready(
        &mut self,
        counters: &Counters,
        fatal: &mut Option<PipelineError>,
        owns: impl Fn(i32) -> bool,
    ) -> Option<Acked> {
        let mut acked = Acked {
            through: None,
            advanced: BTreeMap::new(),
        };
        while let Some(front) = self.checkpoints.front_mut() {
            let latencies = &mut self.latencies;
            front.deliveries.retain_mut(|d| {
                let (fut, sent) = match d {
                    Delivery::DeadLetter(f) | Delivery::State(f) => (f, None),
                    Delivery::Anomaly(f, t) => (f, Some(*t)),
                };
                match fut.now_or_never() {
                    None => true,
                    Some(Ok(Ok(_))) => {
                        if let Some(t) = sent {
                            Counters::add(&counters.anomalies_acked, 1);
                            counters.observe_ack_delay(t.elapsed());
                            if latencies.len() < MAX_LATENCY_SAMPLES {
                                latencies.push(t.elapsed().as_micros() as u64);
                            }
                        }
                        false
                    }
                    Some(Ok(Err((e, _)))) => {
                        *fatal = Some(PipelineError::Delivery(e));
                        false
                    }
                    Some(Err(_)) => {
                        *fatal = Some(PipelineError::DeliveryCancelled);
                        false
                    }
                }
            });
            if fatal.is_some() {
                // Nothing after a failed delivery may be committed.
                self.checkpoints.clear();
                return None;
            }
            if !front.deliveries.is_empty() {
                break;
            }
            let cp = self.checkpoints.pop_front().expect("front exists");
            acked.through = Some(cp.seq);
            for (i, p, o) in cp.offsets {
                if owns(p) {
                    self.store(i, p, o, &mut acked.advanced);
                }
            }
        }
        Some(acked)
    }

    /// Stores offset `o` of (topic index `i`, partition `p`) if it advances; records it in
    /// `advanced` then.
    pub(super) fn store(
        &mut self,
        i: usize,
        p: i32,
        o: i64,
        advanced: &mut BTreeMap<(usize, i32), i64>,
    ) {
        let prev = self.stored.get(&(i, p)).copied();
        if prev.is_none_or(|s| o > s) {
            self.stored.insert((i, p), o);
            advanced.insert((i, p), o);
        }
    }

    pub(super) fn stored(&self, i: usize, p: i32) -> Option<i64> {
        self.stored.get(&(i, p)).copied()
    }

    /// The (topic index, partition) pairs with a stored offset.
    pub(super) fn stored_keys(&self) -> impl Iterator<Item = (usize, i32)> + '_ {
        self.stored.keys().copied()
    }

    pub(super) fn unstore(&mut self, i: usize, p: i32) {
        self.stored.remove(&(i, p));
    }

    /// Offsets of checkpoints still waiting (a flush that timed out) belong to the old
    /// owner's state: never stored for a later assignment.
    pub(super) fn forget_partitions(&mut self, dropped: &[i32]) {
        for cp in &mut self.checkpoints {
            cp.offsets.retain(|(_, p, _)| !dropped.contains(p));
        }
    }

    /// Every sealed checkpoint is acknowledged.
    pub(super) fn is_settled(&self) -> bool {
        self.checkpoints.is_empty()
    }

    pub(super) fn take_latencies(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.latencies)
    }
}
