//! The consume loop of `spikewatch run`.
//!
//! One [`Engine`](crate::engine::Engine) per input partition number `p`, fed by partition `p`
//! of both input topics (co-partitioned: same partition count, producers key by service). Engine `p` is advanced to
//! its watermark: the minimum over its two topic-partitions of the newest event time seen,
//! leaving out a topic-partition idle (no message with an event time: dead letters do not
//! count) for `idle_timeout`; when both are idle the watermark moves on with the wall clock so
//! the last buckets close.
//!
//! The task running [`run_pipeline_observed`] polls the consumer and passes batches of messages
//! (copied out of librdkafka, `InputBatch`) to the `spikewatch-engine` thread, which decodes
//! them, feeds the engines and advances them; anomaly events are enqueued as buckets close.
//! At every checkpoint (`checkpoint_interval_ms`) the offsets that became committable are
//! recorded together with every delivery enqueued since the previous checkpoint. A
//! checkpoint's offsets are stored (and auto-committed) only once all its deliveries and those
//! of every earlier checkpoint are acknowledged. The loop never waits for a single delivery.
//!
//! States: starting (topics, retried with backoff) → consuming → draining (on SIGINT/SIGTERM:
//! stop fetching, final checkpoint, `producer.flush`, synchronous commit; bounded by
//! `drain_timeout`) → done.
//!
//! Files: this one is the loop and its entry points. `startup.rs` prepares the topics;
//! `state.rs` is what the loop, the engine thread and the rebalance callbacks share, made of
//! `partition.rs` (a partition's engine and watermark), `ack_ledger.rs` (deliveries and the
//! offsets they hold back), `commit.rs` (the commit strategy: plain offsets or changelog
//! checkpoints), `board.rs` (status board) and `readiness.rs` (`/readyz`). `ingest.rs`
//! decodes batches and advances the engines; `rebalance.rs` (the consumer context) hands
//! partitions over and takes them on, restoring them with `restore.rs`; `error.rs` says why
//! a run stops.

mod ack_ledger;
mod board;
mod commit;
mod error;
mod ingest;
mod partition;
mod readiness;
mod rebalance;
mod restore;
mod startup;
mod state;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::Message;
use tokio::sync::broadcast;

use error::PipelineError;
use rebalance::PipelineContext;
pub use state::due_slack_ms;
use state::State;

use super::batch::{InputBatch, InputMessage};
use super::consumer::{consumer_config, offsets_of, store};
use super::producer::create_producer;
use super::PipelineConfig;
use super::{Counters, CountersSnapshot};
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
    let mut reload = observers.reload.take();
    let ready = |r: bool, why: &str| {
        if let Some(x) = &observers.readiness {
            if r {
                x.set_ready();
            } else {
                x.set_not_ready(why);
            }
        }
    };
    // Starting.
    ready(false, "connecting to the broker");
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
    // The pipeline task may be stuck in a restore inside the consumer's poll when the signal
    // comes (a restore of a large changelog takes minutes): tell it from another task.
    let stopping = st.stopping.clone();
    let brokers_down = st.health.brokers_down.clone();
    let mut stop_watch = shutdown.resubscribe();
    tokio::spawn(async move {
        // A closed channel means stop too, as in the loop below.
        let _ = stop_watch.recv().await;
        stopping.store(true, Ordering::SeqCst);
    });
    let state = Arc::new(Mutex::new(st));
    // Decoding and the engines run on their own thread, fed batches copied out of librdkafka;
    // this task polls the consumer, runs the checkpoints and watches acknowledgements.
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
    let consumer: StreamConsumer<PipelineContext> = consumer_config(&settings)
        .create_with_context(PipelineContext {
            state: state.clone(),
            counters: counters.clone(),
            brokers_down: brokers_down.clone(),
        })?;
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
    ready(false, "waiting for a partition assignment");

    let mut checkpoint_tick =
        tokio::time::interval(Duration::from_millis(settings.checkpoint_interval_ms));
    checkpoint_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ack_tick = tokio::time::interval(ACK_POLL);
    ack_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let summary_every = Duration::from_secs(settings.summary_interval.0.max(1));
    let mut summary_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + summary_every, summary_every);
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    let mut fatal: Option<PipelineError> = None;
    let topic_names = [
        settings.topics.mentions.clone(),
        settings.topics.complaints.clone(),
    ];
    // Consuming.
    loop {
        tokio::select! {
            biased;
            _ = shutdown.recv() => break,
            _ = checkpoint_tick.tick() => {
                let mut st = lock();
                let now = Instant::now();
                st.checkpoint(now);
                st.status.input_to_board();
                st.check_readiness(now);
                st.forget_moved(None, now);
                if let Some(tpl) = st.drain_ready() {
                    store(&consumer, &tpl);
                }
                if let Some(f) = st.fatal.take() {
                    fatal = Some(f);
                    break;
                }
            }
            Some(new) = async {
                match reload.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                lock().reconfigure(new);
            }
            _ = ack_tick.tick() => {
                let mut st = lock();
                if let Some(tpl) = st.drain_ready() {
                    store(&consumer, &tpl);
                }
            }
            _ = summary_tick.tick(), if settings.summary_interval.0 > 0 => {
                tracing::info!("summary: {}", counters.snapshot());
            }
            m = consumer.recv() => match m {
                Ok(msg) => {
                    // A message came: some broker is up.
                    *brokers_down.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    // Take what is already fetched without waiting and pass it on as one
                    // batch. The lock is never held while polling the consumer: polling may
                    // run the rebalance callback, which takes it.
                    let mut batch = InputBatch::with_capacity(BATCH, Instant::now());
                    let copy = |batch: &mut InputBatch, m: &rdkafka::message::BorrowedMessage<'_>| {
                        // Read after the poll that returned `m`: a rebalance callback run by
                        // that poll came before `m`.
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
                    copy(&mut batch, &msg);
                    drop(msg);
                    let mut stream = consumer.stream();
                    while batch.len() < BATCH {
                        match stream.next().now_or_never() {
                            Some(Some(Ok(m))) => copy(&mut batch, &m),
                            Some(Some(Err(e))) => {
                                tracing::warn!("consumer error (retrying): {e}");
                                break;
                            }
                            Some(None) | None => break,
                        }
                    }
                    drop(stream);
                    if !batch.is_empty() && batches.send(batch).await.is_err() {
                        fatal = Some(PipelineError::EngineThreadStopped);
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!("consumer error (retrying): {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    // Stopping: the engine thread finishes; a fatal error ends the run here.
    ready(false, "stopping");
    // The engine thread handles the batches already passed on, then ends.
    drop(batches);
    let joined = tokio::task::spawn_blocking(move || engine_thread.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        fatal.get_or_insert(PipelineError::EngineThreadPanicked);
    }
    if let Some(f) = fatal {
        tracing::error!("stopping without committing further: {f}");
        // The last committed offsets stay; a restart re-reads from there.
        drop(consumer);
        anyhow::bail!("pipeline stopped: {f}");
    }

    // Draining, then done.
    tracing::info!("shutdown requested: draining");
    let drain_timeout = Duration::from_secs(settings.drain_timeout.0);
    let st2 = state.clone();
    let drain = tokio::task::spawn_blocking(move || {
        let tpl = {
            let mut st = st2.lock().unwrap_or_else(|e| e.into_inner());
            let all = st.all_assigned();
            st.hand_over(&all, |tpl| store(&consumer, tpl))
        };
        let committed = if tpl.count() > 0 {
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
        } else {
            true
        };
        // Leaves the group (the revoke callback runs once more, with nothing left to do).
        drop(consumer);
        committed
    });
    let result = tokio::time::timeout(drain_timeout + Duration::from_secs(5), drain).await;
    let mut st = lock();
    if result.as_ref().is_ok_and(|r| r.as_ref().is_ok_and(|c| *c)) {
        st.counters.commits.fetch_add(1, Ordering::Relaxed);
    }
    let report = RunReport {
        counters: counters.snapshot(),
        ack_latencies_us: st.ledger.take_latencies(),
    };
    drop(st);
    tracing::info!("final summary: {}", report.counters);
    match result {
        Ok(Ok(true)) => Ok(report),
        Ok(Ok(false)) => {
            anyhow::bail!("final commit failed; the next run re-reads from the last commit")
        }
        Ok(Err(e)) => anyhow::bail!("drain task failed: {e}"),
        Err(_) => anyhow::bail!(
            "drain did not finish within kafka.drain_timeout = {}",
            settings.drain_timeout
        ),
    }
}
