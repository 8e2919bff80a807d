//! The `spikewatch-poll` thread: polls the consumer, copies what it fetches out of librdkafka
//! in batches for the engine thread, and serves librdkafka's callbacks.
//!
//! The consumer is polled on a thread of its own, not on the run loop's task, because the
//! rebalance callback runs inside the poll and blocks there until the loop has handed the
//! revoked partitions over or restored the assigned ones (see `rebalance.rs`): that must
//! neither hold a tokio worker nor wait on the task that has to do the work.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;
use tokio::sync::{mpsc, oneshot};

use super::rebalance::PipelineContext;
use super::BATCH;
use crate::kafka::batch::{InputBatch, InputMessage};

pub(super) type InputConsumer = BaseConsumer<PipelineContext>;

/// How long one poll waits for a message: also how long a stop request may wait for the thread
/// (unless a rebalance callback is running, which the loop answers while stopping).
const POLL_WAIT: Duration = Duration::from_millis(100);

/// Why the poll thread ended.
#[derive(Debug)]
pub(super) enum PollEnd {
    /// Told to stop.
    Stopped,
    /// The engine thread no longer takes batches.
    EngineGone,
}

/// The running poll thread.
pub(super) struct Poller {
    /// Set to make the thread stop after its current poll.
    pub(super) stop: Arc<AtomicBool>,
    /// Resolves once the thread has ended and let go of the consumer (an error: it panicked).
    pub(super) done: Option<oneshot::Receiver<PollEnd>>,
}

/// What the poll thread needs besides the consumer.
pub(super) struct PollInput {
    /// Batches for the engine thread; dropped when the thread ends, which ends that thread.
    pub(super) batches: mpsc::Sender<InputBatch>,
    /// See [`crate::kafka::batch`].
    pub(super) generation: Arc<AtomicU64>,
    pub(super) topic_names: [String; 2],
    /// Cleared whenever a message comes (see [`super::readiness::ReadinessCheck`]).
    pub(super) brokers_down: Arc<Mutex<Option<Instant>>>,
}

/// Starts the poll thread.
pub(super) fn spawn(consumer: Arc<InputConsumer>, input: PollInput) -> std::io::Result<Poller> {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, done) = oneshot::channel();
    let stop2 = stop.clone();
    std::thread::Builder::new()
        .name("spikewatch-poll".into())
        .spawn(move || {
            let end = poll(&consumer, input, &stop2);
            // The loop closes the consumer once this thread is done: its own reference must
            // be the last, so that closing runs where the loop can answer the last revoke.
            drop(consumer);
            let _ = tx.send(end);
        })?;
    Ok(Poller {
        stop,
        done: Some(done),
    })
}

fn poll(consumer: &InputConsumer, input: PollInput, stop: &AtomicBool) -> PollEnd {
    let PollInput {
        batches,
        generation,
        topic_names,
        brokers_down,
    } = input;
    let copy = |batch: &mut InputBatch, m: &BorrowedMessage<'_>| {
        // Read after the poll that returned `m`: a rebalance callback run by that poll came
        // before `m`.
        let generation = generation.load(Ordering::SeqCst);
        if let Some(topic) = topic_names.iter().position(|t| t == m.topic()) {
            batch.push(InputMessage {
                topic,
                partition: m.partition(),
                offset: m.offset(),
                generation,
                key: m.key(),
                payload: m.payload(),
            });
        }
    };
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(POLL_WAIT) {
            None => {}
            Some(Err(e)) => {
                tracing::warn!("consumer error (retrying): {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Some(Ok(msg)) => {
                // A message came: some broker is up.
                *brokers_down.lock().unwrap_or_else(|e| e.into_inner()) = None;
                // Take what is already fetched without waiting and pass it on as one batch.
                let mut batch = InputBatch::with_capacity(BATCH, Instant::now());
                copy(&mut batch, &msg);
                drop(msg);
                while batch.len() < BATCH {
                    match consumer.poll(Duration::ZERO) {
                        Some(Ok(m)) => copy(&mut batch, &m),
                        Some(Err(e)) => {
                            tracing::warn!("consumer error (retrying): {e}");
                            break;
                        }
                        None => break,
                    }
                }
                if !batch.is_empty() && batches.blocking_send(batch).is_err() {
                    return PollEnd::EngineGone;
                }
            }
        }
    }
    PollEnd::Stopped
}
