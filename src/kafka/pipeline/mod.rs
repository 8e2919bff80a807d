//! The consume loop of `spikewatch run`.
//!
//! One [`Engine`](crate::engine::Engine) per input partition number `p`, fed by partition `p`
//! of both input topics (co-partitioned: same partition count, producers key by service). Engine `p` is advanced to
//! its watermark: the minimum over its two topic-partitions of the newest event time seen,
//! leaving out a topic-partition idle (no message with an event time: dead letters do not
//! count) for `idle_timeout`; when both are idle the watermark moves on with the wall clock so
//! the last buckets close.
//!
//! Three threads of control. The `spikewatch-poll` thread polls the consumer and passes
//! batches of messages (copied out of librdkafka, `InputBatch`) to the `spikewatch-engine`
//! thread, which decodes them, feeds the engines and advances them; anomaly events are
//! enqueued as buckets close. The run loop, the task running [`run_pipeline_observed`], runs
//! the checkpoints, watches acknowledgements and answers the rebalance callback, which posts
//! its requests from the poll thread and blocks it until they are answered (`rebalance.rs`).
//! At every checkpoint (`checkpoint_interval_ms`) the offsets that became committable are
//! recorded together with every delivery enqueued since the previous checkpoint. A
//! checkpoint's offsets are stored (and auto-committed) only once all its deliveries and those
//! of every earlier checkpoint are acknowledged. The loop never waits for a single delivery,
//! and whatever blocks (producer flush, synchronous commit, changelog reads) runs on the
//! blocking pool, not on a tokio worker.
//!
//! The loop is a state machine (`Phase`): starting (topics, retried with backoff) →
//! consuming → stopping (on SIGINT/SIGTERM or a fatal error: the poll thread stops, the
//! engine thread handles what was polled) → draining (on SIGINT/SIGTERM: final checkpoint,
//! `producer.flush`, synchronous commit, leaving the group; bounded by `drain_timeout`) or
//! failed (leaving the group without committing further) → done. The rebalance callback's
//! requests are answered in every phase until the consumer is closed.
//!
//! Files: this one is the loop and its entry points. `startup.rs` prepares the topics;
//! `poll.rs` is the poll thread; `state.rs` is what the loop and the engine thread share,
//! made of `partition.rs` (a partition's engine and watermark), `ack_ledger.rs` (deliveries
//! and the offsets they hold back), `commit.rs` (the commit strategy: plain offsets or
//! changelog checkpoints), `board.rs` (status board) and `readiness.rs` (`/readyz`).
//! `ingest.rs` decodes batches and advances the engines; `rebalance.rs` (the consumer context
//! and the loop's answers to it) hands partitions over and takes them on, restoring them with
//! `restore.rs`; `error.rs` says why a run stops.

mod ack_ledger;
mod board;
mod commit;
mod error;
mod ingest;
mod partition;
mod poll;
mod readiness;
mod rebalance;
mod restore;
mod startup;
mod state;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use tokio::sync::broadcast;
use tokio::sync::mpsc::UnboundedReceiver;

use error::PipelineError;
use poll::{InputConsumer, PollInput, Poller};
use rebalance::{PipelineContext, Request};
pub use state::due_slack_ms;
use state::State;

use super::batch::InputBatch;
use super::consumer::{consumer_config, offsets_of, store};
use super::producer::create_producer;
use super::{Counters, CountersSnapshot};
use super::{KafkaSettings, PipelineConfig};
use crate::engine::BaselineSeed;
use crate::http::Readiness;
use crate::status::StatusBoard;

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub counters: CountersSnapshot,
    /// Per anomaly event: microseconds from the advance that closed its bucket to observing
    /// its broker acknowledgement (observation granularity about 10 ms).
    pub ack_latencies_us: Vec<u64>,
}

const ACK_POLL: Duration = Duration::from_millis(10);
/// Messages per batch passed to the engine thread (and handled under one lock).
const BATCH: usize = 1024;
/// Batches polled but not yet handled, at most: the engine thread's backlog.
const BATCHES_IN_FLIGHT: usize = 4;

/// Runs the pipeline until `shutdown` fires (or a delivery fails for good). `config.kafka`
/// must already have its `${env:…}` values resolved.
pub async fn run_pipeline(
    config: impl Into<PipelineConfig>,
    shutdown: broadcast::Receiver<()>,
) -> anyhow::Result<RunReport> {
    run_pipeline_with(config, shutdown, Arc::new(Counters::default())).await
}

/// [`run_pipeline`] updating `counters` as it goes (for a metrics endpoint or a benchmark).
pub async fn run_pipeline_with(
    config: impl Into<PipelineConfig>,
    shutdown: broadcast::Receiver<()>,
    counters: Arc<Counters>,
) -> anyhow::Result<RunReport> {
    run_pipeline_observed(config, shutdown, counters, Observers::default()).await
}

/// What the pipeline is given from outside besides its config: the status board every closed
/// bucket and anomaly event also goes to, readiness, new configurations to apply, and the
/// baselines new series start from.
#[derive(Default)]
pub struct Observers {
    pub board: Option<Arc<Mutex<StatusBoard>>>,
    pub readiness: Option<Arc<Readiness>>,
    /// Validated configurations to apply without a restart (SIGHUP, file change).
    pub reload: Option<tokio::sync::mpsc::Receiver<PipelineConfig>>,
    /// Baselines learned from history that new series start from (`run --initial-state`).
    pub seed: Option<Arc<BaselineSeed>>,
    /// Alert delivery: every outage event enqueued to the anomaly topic is offered to it.
    pub notify: Option<crate::notify::NotifyHandle>,
}

/// [`run_pipeline_with`] feeding `observers`.
pub async fn run_pipeline_observed(
    config: impl Into<PipelineConfig>,
    mut shutdown: broadcast::Receiver<()>,
    counters: Arc<Counters>,
    mut observers: Observers,
) -> anyhow::Result<RunReport> {
    let config: PipelineConfig = config.into();
    let reload = observers.reload.take();
    let readiness = observers.readiness.clone();
    let ready = |why: &str| {
        if let Some(x) = &readiness {
            x.set_not_ready(why);
        }
    };
    // Starting.
    ready("connecting to the broker");
    let settings = config.kafka.clone();
    if !startup::prepare(&settings, &mut shutdown).await? {
        tracing::info!("stopped before the broker was reachable");
        return Ok(RunReport::default());
    }
    let producer = create_producer(&settings)?;
    let mut st = State::new(&config, producer.clone(), counters.clone());
    st.status.board = observers.board.clone();
    if let Some(mut b) = st.status.lock() {
        // From now on the page tells when input stops.
        b.watch_input(crate::status::wall_ms());
    }
    st.health.readiness = observers.readiness.clone();
    st.seed = observers.seed.clone();
    st.notify = observers.notify.clone();
    let generation = st.generation.clone();
    // A restore runs on the blocking pool while the loop waits for it: tell it from another
    // task that the signal came (a restore of a large changelog takes minutes).
    let stopping = st.stopping.clone();
    let brokers_down = st.health.brokers_down.clone();
    let mut stop_watch = shutdown.resubscribe();
    tokio::spawn(async move {
        // A closed channel means stop too, as in the loop below.
        let _ = stop_watch.recv().await;
        stopping.store(true, Ordering::SeqCst);
    });
    let state = Arc::new(Mutex::new(st));
    // Decoding and the engines run on their own thread, fed batches copied out of librdkafka
    // by the poll thread; the loop runs the checkpoints, watches acknowledgements and answers
    // the rebalance callback.
    let (batches, mut inbox) = tokio::sync::mpsc::channel::<InputBatch>(BATCHES_IN_FLIGHT);
    let engine_thread = {
        let state = state.clone();
        std::thread::Builder::new()
            .name("spikewatch-engine".into())
            .spawn(move || {
                while let Some(batch) = inbox.blocking_recv() {
                    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                    st.handle_batch(&batch);
                }
            })?
    };
    let (requests_tx, requests) = tokio::sync::mpsc::unbounded_channel();
    let consumer: Arc<InputConsumer> = Arc::new(consumer_config(&settings).create_with_context(
        PipelineContext {
            requests: requests_tx,
            counters: counters.clone(),
            brokers_down: brokers_down.clone(),
        },
    )?);
    consumer.subscribe(&[&settings.topics.mentions, &settings.topics.complaints])?;
    tracing::info!(
        group = %settings.group_id,
        mentions = %settings.topics.mentions,
        complaints = %settings.topics.complaints,
        anomalies = %settings.topics.anomalies,
        changelog = settings.changelog.then_some(settings.topics.changelog.as_str()),
        "consuming"
    );
    // Ready once the first assignment is taken (and restored).
    ready("waiting for a partition assignment");
    let input = PollInput {
        batches,
        generation,
        topic_names: [
            settings.topics.mentions.clone(),
            settings.topics.complaints.clone(),
        ],
        brokers_down,
    };
    let poller = match poll::spawn(consumer.clone(), input) {
        Ok(p) => p,
        Err(e) => {
            // Closing the consumer may run the rebalance callback: it must not wait for us.
            drop(requests);
            return Err(e.into());
        }
    };
    let mut run = Run {
        requests,
        consumer: Some(consumer),
        poller,
        engine_thread: Some(engine_thread),
        state,
        counters,
        settings,
        readiness,
        shutdown,
        reload,
    };
    let mut phase = Phase::Consuming;
    loop {
        phase = match phase {
            Phase::Consuming => run.consume().await,
            Phase::Stopping(fatal) => run.stop(fatal).await,
            Phase::Draining => run.drain().await,
            Phase::Failed(f) => run.fail(f).await,
            Phase::Done(result) => return *result,
        };
    }
}

/// Where the run loop is (after starting). Requests of the rebalance callback are answered in
/// every phase until the consumer is closed: the poll thread waits for them.
enum Phase {
    /// Input is polled (by the poll thread) and handled; checkpoints, acknowledgements.
    Consuming,
    /// Shutdown requested, or a fatal error: the poll thread stops and the engine thread
    /// handles the batches already polled.
    Stopping(Option<PipelineError>),
    /// Shutdown: the final hand-over of every partition, a synchronous commit, then leaving
    /// the group; bounded by `drain_timeout`.
    Draining,
    /// A fatal error: leaving the group without committing further.
    Failed(PipelineError),
    /// Boxed: a report is large, the other phases small.
    Done(Box<anyhow::Result<RunReport>>),
}

/// What the run loop owns.
struct Run {
    /// Requests of the rebalance callback (see `rebalance.rs`).
    requests: UnboundedReceiver<Request>,
    /// Taken when the consumer is closed.
    consumer: Option<Arc<InputConsumer>>,
    poller: Poller,
    engine_thread: Option<std::thread::JoinHandle<()>>,
    state: Arc<Mutex<State>>,
    counters: Arc<Counters>,
    settings: KafkaSettings,
    readiness: Option<Arc<Readiness>>,
    shutdown: broadcast::Receiver<()>,
    reload: Option<tokio::sync::mpsc::Receiver<PipelineConfig>>,
}

impl Drop for Run {
    /// A run dropped before it is done (its future cancelled) still stops the poll thread, and
    /// no callback waits for a loop that will not answer.
    fn drop(&mut self) {
        self.poller.stop.store(true, Ordering::SeqCst);
        self.requests.close();
    }
}

impl Run {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Consuming: until shutdown or a fatal error.
    async fn consume(&mut self) -> Phase {
        let settings = self.settings.clone();
        let mut checkpoint_tick =
            tokio::time::interval(Duration::from_millis(settings.checkpoint_interval_ms));
        checkpoint_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ack_tick = tokio::time::interval(ACK_POLL);
        ack_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let summary_every = Duration::from_secs(settings.summary_interval.0.max(1));
        let mut summary_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + summary_every, summary_every);
        let consumer = self
            .consumer
            .clone()
            .expect("the consumer is open while consuming");
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.recv() => return Phase::Stopping(None),
                // The poll thread is blocked until this is answered; nothing else runs
                // meanwhile (see `rebalance.rs`).
                Some(request) = self.requests.recv() => {
                    rebalance::answer(&self.state, self.consumer.as_ref(), request).await;
                }
                end = async { self.poller.done.as_mut().expect("running").await },
                    if self.poller.done.is_some() => {
                    self.poller.done = None;
                    // Not told to stop: the engine thread is gone, or the poll thread panicked.
                    return Phase::Stopping(Some(match end {
                        Ok(_) => PipelineError::EngineThreadStopped,
                        Err(_) => PipelineError::PollThreadPanicked,
                    }));
                }
                _ = checkpoint_tick.tick() => {
                    // On the blocking pool: a changelog checkpoint of ~100k series takes
                    // most of a second to encode and may wait on a full producer queue, and
                    // the runtime's two workers also serve HTTP. Awaited here, so the loop
                    // does nothing else meanwhile, as before.
                    let state = self.state.clone();
                    let consumer = consumer.clone();
                    let ticked = tokio::task::spawn_blocking(move || {
                        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                        let now = Instant::now();
                        st.checkpoint(now);
                        st.status.input_to_board();
                        st.check_readiness(now);
                        st.forget_moved(None, now);
                        if let Some(tpl) = st.drain_ready() {
                            store(&*consumer, &tpl);
                        }
                        st.fatal.take()
                    })
                    .await;
                    match ticked {
                        Ok(None) => {}
                        Ok(Some(f)) => return Phase::Stopping(Some(f)),
                        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        // Cancelled: only when the runtime itself shuts down.
                        Err(_) => return Phase::Stopping(None),
                    }
                }
                Some(new) = async {
                    match self.reload.as_mut() {
                        Some(r) => r.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    self.lock().reconfigure(new);
                }
                _ = ack_tick.tick() => {
                    let mut st = self.lock();
                    if let Some(tpl) = st.drain_ready() {
                        store(&*consumer, &tpl);
                    }
                }
                _ = summary_tick.tick(), if settings.summary_interval.0 > 0 => {
                    tracing::info!("summary: {}", self.counters.snapshot());
                }
            }
        }
    }

    /// Runs `work` while answering the rebalance callback, which may be waiting on the poll
    /// thread (or in the consumer's close) meanwhile.
    async fn serving<T>(&mut self, work: impl Future<Output = T>) -> T {
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased;
                out = &mut work => return out,
                Some(request) = self.requests.recv() => {
                    rebalance::answer(&self.state, self.consumer.as_ref(), request).await;
                }
            }
        }
    }

    /// Stopping: the poll thread and then the engine thread end; a fatal error ends the run
    /// without the final drain.
    async fn stop(&mut self, mut fatal: Option<PipelineError>) -> Phase {
        if let Some(r) = &self.readiness {
            r.set_not_ready("stopping");
        }
        // Partitions assigned from now on are not restored for nothing.
        self.lock().stopping.store(true, Ordering::SeqCst);
        self.poller.stop.store(true, Ordering::SeqCst);
        if let Some(done) = self.poller.done.take() {
            let _ = self.serving(done).await;
        }
        // The poll thread dropped the batch sender: the engine thread handles the batches
        // already passed on, then ends.
        let engine_thread = self.engine_thread.take().expect("joined once");
        let joined = tokio::task::spawn_blocking(move || engine_thread.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            fatal.get_or_insert(PipelineError::EngineThreadPanicked);
        }
        match fatal {
            Some(f) => Phase::Failed(f),
            None => Phase::Draining,
        }
    }

    /// Closes the consumer (leaving the group) on the blocking pool: closing runs the revoke
    /// callback once more, answered here.
    async fn close(&mut self) {
        let consumer = self.consumer.take();
        let close = tokio::task::spawn_blocking(move || drop(consumer));
        let _ = self.serving(close).await;
    }

    /// Failed: the last committed offsets stay; a restart re-reads from there.
    async fn fail(&mut self, f: PipelineError) -> Phase {
        tracing::error!("stopping without committing further: {f}");
        self.close().await;
        Phase::Done(Box::new(Err(anyhow::anyhow!("pipeline stopped: {f}"))))
    }

    /// Draining, then done.
    async fn drain(&mut self) -> Phase {
        tracing::info!("shutdown requested: draining");
        let drain_timeout = Duration::from_secs(self.settings.drain_timeout.0);
        let deadline = tokio::time::Instant::now() + drain_timeout + Duration::from_secs(5);
        let consumer = self
            .consumer
            .clone()
            .expect("the consumer is open until drained");
        let state = self.state.clone();
        // Blocking: the hand-over flushes the producer, the commit waits for the broker.
        let drain = tokio::task::spawn_blocking(move || {
            let tpl = {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                let all = st.all_assigned();
                st.hand_over(&all, |tpl| store(&*consumer, tpl))
            };
            if tpl.count() == 0 {
                return true;
            }
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => {
                    tracing::info!(offsets = ?offsets_of(&tpl), "final commit");
                    true
                }
                Err(e) => {
                    tracing::warn!("final commit failed: {e}");
                    false
                }
            }
        });
        let drained = tokio::time::timeout_at(deadline, self.serving(drain)).await;
        // Leaves the group (the revoke callback runs once more, with nothing left to do).
        let closed = tokio::time::timeout_at(deadline, self.close())
            .await
            .is_ok();
        let committed = matches!(drained, Ok(Ok(true))) && closed;
        if committed {
            Counters::add(&self.counters.commits, 1);
        }
        // Not waiting for a drain that overran: the latencies are only for benchmarks.
        let latencies = match self.state.try_lock() {
            Ok(mut st) => st.ledger.take_latencies(),
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner().ledger.take_latencies(),
            Err(std::sync::TryLockError::WouldBlock) => Vec::new(),
        };
        let report = RunReport {
            counters: self.counters.snapshot(),
            ack_latencies_us: latencies,
        };
        tracing::info!("final summary: {}", report.counters);
        Phase::Done(Box::new(match drained {
            Ok(Ok(true)) if closed => Ok(report),
            Ok(Ok(false)) => Err(anyhow::anyhow!(
                "final commit failed; the next run re-reads from the last commit"
            )),
            Ok(Err(e)) => Err(anyhow::anyhow!("drain task failed: {e}")),
            Ok(Ok(true)) | Err(_) => Err(anyhow::anyhow!(
                "drain did not finish within kafka.drain_timeout = {}",
                self.settings.drain_timeout
            )),
        }))
    }
}
