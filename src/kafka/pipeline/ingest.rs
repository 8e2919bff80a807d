//! Ingest, on the `spikewatch-engine` thread: decoding a batch of input messages, feeding
//! the engines, dead-lettering what cannot be used, and advancing the engines to their
//! watermarks, enqueueing the events they produce.

use std::time::{Duration, Instant};

use super::ack_ledger::Delivery;
use super::board::Tee;
use super::error::PipelineError;
use super::state::State;
use crate::engine::Ingest;
use crate::event::{decode_core, AnomalyEvent, InputKind, OutageEvent};
use crate::kafka::batch::{InputBatch, InputMessage};
use crate::kafka::dead_letter::{self, Reason, Source};
use crate::kafka::producer::{send_anomaly, send_outage};
use crate::kafka::Counters;

/// Input topics in engine order: index 0 mentions, 1 complaints.
const KINDS: [InputKind; 2] = [InputKind::Mention, InputKind::Complaint];
/// A gap between two engine advances at least this long is a stall of the process (see
/// `discount_stall`).
const STALL_MIN: Duration = Duration::from_secs(2);

/// Counts of the messages of one batch, added to [`Counters`] once per batch.
#[derive(Default)]
struct BatchCounts {
    /// Per input topic (index as in [`KINDS`]).
    input: [u64; 2],
    decoded: u64,
    late: u64,
}

impl BatchCounts {
    fn add_to(&self, c: &Counters) {
        for (n, counter) in [
            (self.input[0], &c.mentions_in),
            (self.input[1], &c.complaints_in),
            (self.decoded, &c.decoded),
            (self.late, &c.late),
        ] {
            if n > 0 {
                Counters::add(counter, n);
            }
        }
    }
}

impl State {
    /// Handles the messages of one batch.
    pub(super) fn handle_batch(&mut self, batch: &InputBatch) {
        let mut counts = BatchCounts::default();
        // Event times are bounded by the wall clock (plus `engine.max_future_skew`): messages
        // dated years ahead are dead-lettered however many arrive, so no producer can move an
        // engine's clock past what is real and blind it for everyone else.
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for part in self.partitions.values_mut() {
            part.engine.set_wall_clock(Some(wall_ms));
        }
        if !batch.is_empty() {
            self.status.input_seen(wall_ms);
        }
        for m in batch.iter() {
            self.handle(m, batch.received, &mut counts);
        }
        counts.add_to(&self.counters);
        // Closing buckets as soon as the watermark passes them keeps new events in each
        // series' ring of open buckets rather than the engine's overflow map (a backlog
        // otherwise runs hours of event time ahead of the checkpoints).
        self.advance_engines(batch.received);
    }

    /// Handles one input message; the common counts go to `counts`.
    fn handle(&mut self, m: InputMessage<'_>, now: Instant, counts: &mut BatchCounts) {
        let c = &self.counters;
        let settings = &self.config.kafka;
        let InputMessage {
            topic: idx,
            partition,
            offset,
            generation,
            key,
            payload,
        } = m;
        counts.input[idx] += 1;
        let part = match self.partitions.get_mut(&partition) {
            Some(part) if generation >= part.generation => part,
            stale => {
                // Fetched before its partition was revoked (or before it was assigned again):
                // the partition's current owner reads it from its own offsets.
                tracing::debug!(
                    partition,
                    offset,
                    reassigned = stale.is_some(),
                    "message of a partition no longer assigned"
                );
                return;
            }
        };
        let payload = payload.unwrap_or_default();
        let outcome: Result<i64, Reason> = if payload.len() > settings.max_message_bytes {
            Err(Reason {
                kind: "too_large",
                message: format!(
                    "message of {} bytes exceeds kafka.max_message_bytes = {}",
                    payload.len(),
                    settings.max_message_bytes
                ),
            })
        } else {
            match decode_core(KINDS[idx], payload) {
                Err(e) => Err(Reason {
                    kind: e.kind(),
                    message: e.to_string(),
                }),
                Ok(ev) => match part.engine.observe(ev.observation()) {
                    Err(e) => {
                        Counters::add(&c.rejected, 1);
                        Err(Reason {
                            kind: e.kind(),
                            message: e.to_string(),
                        })
                    }
                    Ok(ingest) => {
                        counts.decoded += 1;
                        if ingest == Ingest::Late {
                            counts.late += 1;
                        }
                        Ok(ev.ts.millis())
                    }
                },
            }
        };
        // With the changelog, offsets are committed with the state; the runs are not needed.
        let runs = self.commit.tracks_runs();
        let tp = &mut part.topics[idx];
        tp.next_offset = Some(offset + 1);
        match outcome {
            Ok(ts) => {
                // Only a message with an event time makes its topic-partition live: a dead
                // letter has none, and a live topic-partition without one holds the watermark.
                tp.last_msg = now;
                if runs {
                    tp.runs.push(offset, ts.saturating_add(self.due_slack_ms));
                }
                tp.max_event_ms = Some(tp.max_event_ms.map_or(ts, |m| m.max(ts)));
            }
            Err(reason) => {
                let src = Source {
                    topic: &self.topic_names[idx],
                    partition,
                    offset,
                    key,
                };
                tracing::debug!(
                    topic = src.topic,
                    partition,
                    offset,
                    kind = reason.kind,
                    "dead letter: {}",
                    reason.message
                );
                match dead_letter::send(
                    &self.producer,
                    &settings.topics.dead_letters,
                    src,
                    payload,
                    &reason,
                    settings.dead_letter_max_bytes,
                ) {
                    Ok(f) => {
                        self.ledger.push(Delivery::DeadLetter(f));
                        if runs {
                            tp.runs.push(offset, i64::MIN);
                        }
                        c.dead_lettered(reason.kind);
                    }
                    Err(e) => {
                        self.fatal = Some(PipelineError::enqueue("a dead letter")(e));
                        // Not recorded as done: never committed.
                        if runs {
                            tp.runs.push(offset, i64::MAX);
                        }
                    }
                }
            }
        }
    }

    /// Time this process did not run (SIGSTOP, a VM or stop-the-world pause, a restore
    /// holding the loop) is not idleness of its input: it is added to every topic-partition's
    /// last message time. Otherwise a process waking from a pause takes every partition for
    /// idle and closes buckets with the wall clock, ahead of input that was waiting all along
    /// (and, if the group replaced it meanwhile, publishes those early closes as a zombie).
    /// The loop advances at least every checkpoint interval, so a longer gap is a stall.
    fn discount_stall(&mut self, now: Instant) {
        let every = Duration::from_millis(self.settings().checkpoint_interval_ms);
        let stall_after = (every * 10).max(STALL_MIN);
        if let Some(prev) = self.advanced_at {
            let stalled = now.saturating_duration_since(prev);
            if stalled > stall_after {
                for tp in self
                    .partitions
                    .values_mut()
                    .flat_map(|p| p.topics.iter_mut())
                {
                    tp.last_msg = (tp.last_msg + stalled).min(now);
                }
            }
        }
        self.advanced_at = Some(now);
    }

    /// Advances every engine to its watermark and enqueues the anomaly events they produced.
    pub(super) fn advance_engines(&mut self, now: Instant) {
        self.discount_stall(now);
        let idle = Duration::from_secs(self.settings().idle_timeout.0);
        let mut events: Vec<AnomalyEvent> = Vec::new();
        let mut outages: Vec<OutageEvent> = Vec::new();
        // The input partition of each outage event, for alert delivery.
        let mut origin: Vec<i32> = Vec::new();
        // Lock order: the state (held by our caller), then the board; HTTP handlers take only
        // the board. Taken only when a bucket may close.
        let mut board = None;
        for (&p, part) in self.partitions.iter_mut() {
            let Some(wm) = part.watermark(now, idle) else {
                continue;
            };
            if board.is_none() && part.engine.closes_buckets_at(wm) {
                board = self.status.lock();
            }
            let mut sink = Tee {
                events: &mut events,
                outages: &mut outages,
                board: board.as_deref_mut(),
                services: &mut part.board_services,
            };
            part.engine.advance(wm, &mut sink);
            origin.resize(outages.len(), p);
            for tp in &mut part.topics {
                tp.runs.release(wm);
            }
        }
        drop(board);
        if let Some(n) = &self.notify {
            n.set_partitions(self.partitions.keys().copied());
        }
        if events.is_empty() && outages.is_empty() {
            return;
        }
        let closed_at = Instant::now();
        let topics = &self.config.kafka.topics;
        for (ev, &partition) in outages.iter().zip(&origin) {
            match send_outage(&self.producer, &topics.anomalies, ev) {
                Ok(f) => {
                    tracing::info!(
                        outage = %ev.outage_id, seq = ev.seq, state = ?ev.state,
                        service = %ev.service, severity = ?ev.severity,
                        countries = %ev.countries.join(","), signals = %ev.signals.join(","),
                        peak_zscore = format_args!("{:.1}", ev.peak_zscore), "outage event"
                    );
                    Counters::add(&self.counters.outages_produced, 1);
                    self.ledger.push(Delivery::Anomaly(f, closed_at));
                    // Never waits: a full queue drops, a dead receiver cannot stall this.
                    if let Some(n) = &self.notify {
                        n.notify_from(ev, Some(partition));
                    }
                }
                Err(e) => self.fatal = Some(PipelineError::enqueue("an outage event")(e)),
            }
        }
        if !topics.series_anomalies.is_empty() {
            for ev in &events {
                match send_anomaly(&self.producer, &topics.series_anomalies, ev) {
                    Ok(f) => {
                        tracing::debug!(
                            incident = %ev.incident_id, seq = ev.seq, state = ?ev.state,
                            zscore = format_args!("{:.1}", ev.zscore), "series incident event"
                        );
                        Counters::add(&self.counters.anomalies_produced, 1);
                        self.ledger.push(Delivery::Anomaly(f, closed_at));
                    }
                    Err(e) => self.fatal = Some(PipelineError::enqueue("an anomaly event")(e)),
                }
            }
        }
        // Watched for acknowledgement from now on, not from the next checkpoint.
        self.seal(Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::test_state as state;
    use super::*;

    fn batch(generation: u64, offsets: std::ops::Range<i64>) -> InputBatch {
        let mut b = InputBatch::with_capacity(8, Instant::now());
        for offset in offsets {
            let payload = format!(
                r#"{{"service":"telegram","geo":"IT-RM","ts":"2026-06-14T07:00:{:02}Z"}}"#,
                offset % 60
            );
            b.push(InputMessage {
                topic: 0,
                partition: 3,
                offset,
                generation,
                key: Some(b"telegram"),
                payload: Some(payload.as_bytes()),
            });
        }
        b
    }

    #[test]
    fn messages_polled_before_a_partition_is_assigned_again_are_not_applied_to_its_new_state() {
        let mut st = with_partition_3();
        let topics = [
            (st.topic_names[0].clone(), 3),
            (st.topic_names[1].clone(), 3),
        ];
        st.handle_batch(&batch(1, 0..5));
        assert_eq!(st.partitions[&3].topics[0].next_offset, Some(5));
        // Revoked, then assigned again (say, restored from the changelog at offset 5) while
        // offsets 5..8 polled before were still on their way: the new owner reads them again
        // from its own offsets, so the old copies must not count.
        st.drop_partitions(&topics);
        st.next_generation();
        st.assign(&topics);
        st.handle_batch(&batch(1, 5..8));
        assert_eq!(st.partitions[&3].topics[0].next_offset, None);
        assert_eq!(st.counters.snapshot().decoded, 5);
        // Polled after the assignment: applied.
        st.handle_batch(&batch(2, 5..8));
        assert_eq!(st.partitions[&3].topics[0].next_offset, Some(8));
        assert_eq!(st.counters.snapshot().decoded, 8);
    }

    #[test]
    fn messages_of_a_partition_kept_across_a_rebalance_are_applied() {
        let mut st = state();
        let p3 = [(st.topic_names[0].clone(), 3)];
        st.next_generation();
        st.assign(&p3);
        // Another partition is assigned (cooperative): partition 3 keeps its state, and its
        // messages polled before that are still its next ones.
        st.next_generation();
        st.assign(&[(st.topic_names[0].clone(), 1)]);
        st.handle_batch(&batch(1, 0..4));
        assert_eq!(st.partitions[&3].topics[0].next_offset, Some(4));
        assert_eq!(st.counters.snapshot().decoded, 4);
    }

    /// A state with partition 3 of both input topics assigned.
    fn with_partition_3() -> State {
        let mut st = state();
        let topics = [
            (st.topic_names[0].clone(), 3),
            (st.topic_names[1].clone(), 3),
        ];
        st.next_generation();
        st.assign(&topics);
        st
    }

    /// Partition 3 assigned, with one complaint of 2026-06-14 07:00 received at `at`.
    fn one_complaint_at(at: Instant) -> State {
        let mut st = with_partition_3();
        let c = r#"{"service":"telegram","geo":"IT-RM","ts":"2026-06-14T07:00:00Z","count":3}"#;
        st.handle_batch(&one(1, 0, c, at));
        st.advance_engines(at);
        st
    }

    /// Regression (found by the pause test of issue 13 item 9): a process stopped for
    /// minutes took every partition for idle when it woke and closed buckets with the wall
    /// clock, ahead of the input that had been waiting for it.
    #[test]
    fn a_pause_of_the_process_is_not_idleness_of_its_input() {
        let t0 = Instant::now();
        let mut st = one_complaint_at(t0);
        let newest = st.partitions[&3].topics[1].max_event_ms.unwrap();
        st.advance_engines(t0 + Duration::from_secs(600));
        let wm = st.partitions[&3].engine.watermark();
        assert!(wm.is_none_or(|w| w <= newest), "{wm:?} > {newest}");

        // Input idle while the loop runs (a tick a second): the watermark follows the wall
        // clock once both topic-partitions are idle, as before.
        let mut st = one_complaint_at(t0);
        let idle = st.settings().idle_timeout.0;
        for s in 1..=idle + 60 {
            st.advance_engines(t0 + Duration::from_secs(s));
        }
        let wm = st.partitions[&3].engine.watermark();
        assert!(
            wm.is_some_and(|w| w > newest + 30_000),
            "{wm:?} vs {newest}"
        );
    }

    /// One message of input topic `topic` (0 mentions, 1 complaints) of partition 3.
    fn one(topic: usize, offset: i64, payload: &str, received: Instant) -> InputBatch {
        let mut b = InputBatch::with_capacity(1, received);
        b.push(InputMessage {
            topic,
            partition: 3,
            offset,
            generation: 1,
            key: Some(b"telegram"),
            payload: Some(payload.as_bytes()),
        });
        b
    }

    #[test]
    fn a_topic_partition_receiving_only_dead_letters_does_not_hold_the_watermark() {
        // Partition 3's complaints carry event time; its mentions topic-partition has been
        // idle since the assignment. Then a mention arrives that is dead-lettered (more than
        // `max_future_skew` ahead of the partition's newest event, like a marker that
        // overtakes a backlog on the other topic; or undecodable): it has no event time, so it
        // must not make the mentions topic-partition live again. A live topic-partition
        // without event time holds the whole partition's watermark (for up to `idle_timeout`,
        // or for ever while such messages keep coming), and buckets the complaints already
        // passed stay open: a shutdown in that window checkpoints them unclosed.
        let mut st = with_partition_3();
        let idle = Duration::from_secs(st.settings().idle_timeout.0);
        let t0 = Instant::now() - 2 * idle;
        st.partitions.get_mut(&3).unwrap().topics[0].last_msg = t0;
        let complaint = |minute: i64| {
            format!(
                r#"{{"service":"telegram","geo":"IT-RM","ts":"2026-06-14T07:{minute:02}:00Z","count":3}}"#
            )
        };
        let now = Instant::now();
        st.handle_batch(&one(1, 0, &complaint(0), now));
        st.handle_batch(&one(1, 1, &complaint(30), now));
        let newest = st.partitions[&3].topics[1].max_event_ms.unwrap();
        assert_eq!(st.partitions[&3].watermark(now, idle), Some(newest));
        let far_ahead = r#"{"service":"zz-marker-3","geo":"IT","ts":"2026-06-16T07:00:00Z"}"#;
        for (offset, payload) in [(0, far_ahead), (1, "not json")] {
            st.handle_batch(&one(0, offset, payload, now));
            let part = &st.partitions[&3];
            assert_eq!(part.topics[0].next_offset, Some(offset + 1), "handled");
            assert_eq!(part.watermark(now, idle), Some(newest), "{payload}");
        }
        assert_eq!(st.counters.snapshot().dead_lettered, 2);
        // The complaints' buckets closed as far as their event time allows.
        assert_eq!(st.partitions[&3].engine.watermark(), Some(newest));
    }

    /// Regression (issue 13, item 1): 32 messages dated 2099 in one partition moved its
    /// engine's clock to 2099 (and the changelog saved it); every real event after was late.
    /// Now they are dead-lettered as `ahead_of_wall_clock` and real events still count.
    #[test]
    fn messages_dated_far_ahead_of_the_wall_clock_are_dead_lettered_and_leave_the_clock_alone() {
        let mut st = with_partition_3();
        let now = Instant::now();
        let real = |offset: i64| {
            let ts = crate::event::Timestamp(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64
                    - 600_000
                    + offset * 1000,
            );
            format!(r#"{{"service":"telegram","geo":"IT-RM","ts":"{ts}","count":3}}"#)
        };
        st.handle_batch(&one(1, 0, &real(0), now));
        let clock = st.partitions[&3].engine.clock();
        for offset in 1..=100 {
            let svc = ["telegram", "made-up"][offset as usize % 2];
            let poison = format!(
                r#"{{"service":"{svc}","geo":"IT","ts":"2099-01-01T00:00:{:02}Z","count":1}}"#,
                offset % 60
            );
            st.handle_batch(&one(1, offset, &poison, now));
        }
        assert_eq!(st.counters.snapshot().dead_lettered, 100);
        assert_eq!(
            st.counters.snapshot().dead_letter_kinds,
            [("ahead_of_wall_clock", 100)],
            "counted by kind too"
        );
        assert!(st
            .counters
            .snapshot()
            .prometheus()
            .contains("spikewatch_dead_letters_by_kind_total{kind=\"ahead_of_wall_clock\"} 100\n"));
        assert_eq!(st.partitions[&3].engine.clock(), clock, "the clock moved");
        st.handle_batch(&one(1, 101, &real(1), now));
        let snap = st.counters.snapshot();
        assert_eq!((snap.decoded, snap.late), (2, 0));
    }
}
