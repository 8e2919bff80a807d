//! The consume loop of `spikewatch run`.
//!
//! One [`Engine`] per input partition number `p`, fed by partition `p` of both input topics
//! (co-partitioned: same partition count, producers key by service). Engine `p` is advanced to
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

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{DeliveryFuture, Producer as _};
use rdkafka::util::Timeout;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::broadcast;

use super::batch::{InputBatch, InputMessage};
use super::changelog::{ChangelogWriter, Restored};
use super::consumer::{consumer_config, offsets_of, store, PipelineContext};
use super::dead_letter::{self, Reason, Source};
use super::offsets::OffsetRuns;
use super::producer::{create_producer, send_anomaly, send_outage, send_to_partition, Producer};
use super::{admin, Counters, CountersSnapshot, KafkaSettings};
use crate::config::{Config, Secs};
use crate::engine::{BaselineSeed, BucketReport, Engine, EngineSink, Ingest};
use crate::event::{decode_core, AnomalyEvent, InputKind, OutageEvent};
use crate::http::Readiness;
use crate::status::{RestoredIncident, RestoredOutage, StatusBoard};

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
const MAX_LATENCY_SAMPLES: usize = 1_000_000;
/// How often the engine gauges (series, open incidents, state bytes) are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

/// Input topics in engine order: index 0 mentions, 1 complaints.
const KINDS: [InputKind; 2] = [InputKind::Mention, InputKind::Complaint];

enum Delivery {
    DeadLetter(DeliveryFuture),
    Anomaly(DeliveryFuture, Instant),
    /// A changelog series record or tombstone.
    State(DeliveryFuture),
}

struct Checkpoint {
    deliveries: Vec<Delivery>,
    /// (topic index, partition, offset to commit).
    offsets: Vec<(usize, i32, i64)>,
    /// Changelog commit records to send once these deliveries (and all earlier ones) are
    /// acknowledged.
    commits: Vec<PendingCommit>,
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

struct TopicPart {
    runs: OffsetRuns,
    max_event_ms: Option<i64>,
    /// When the last message with an event time was received (dead letters not counted).
    last_msg: Instant,
    /// Offset after the last message handled.
    next_offset: Option<i64>,
}

pub(crate) struct PartitionState {
    engine: Engine,
    /// The assignment generation this state was created in (see [`super::batch`]).
    generation: u64,
    topics: [TopicPart; 2],
    writer: ChangelogWriter,
    /// A changelog checkpoint of this partition is not committed yet (at most one is).
    changelog_busy: bool,
    last_changelog: Instant,
    /// Input offsets and event times of the last checkpoint written.
    last_committed: Option<OffsetsAndTimes>,
    /// Services whose events this partition put on the status board: forgotten there when
    /// the partition goes (producers key by service, so a service lives in one partition).
    board_services: ahash::AHashSet<String>,
    /// Open outages and series incidents the restore found, for the status board (taken
    /// when the partition is adopted).
    restored_open: (Vec<RestoredOutage>, Vec<RestoredIncident>),
}

type OffsetsAndTimes = ([Option<i64>; 2], [Option<i64>; 2]);

impl PartitionState {
    fn new(config: &Config, seed: Option<&Arc<BaselineSeed>>, now: Instant) -> Self {
        let tp = || TopicPart {
            runs: OffsetRuns::default(),
            max_event_ms: None,
            last_msg: now,
            next_offset: None,
        };
        let mut engine = Engine::new(config.clone());
        if let Some(seed) = seed {
            engine.set_seed(seed.clone());
        }
        Self {
            engine,
            generation: 0,
            topics: [tp(), tp()],
            writer: ChangelogWriter::default(),
            changelog_busy: false,
            last_changelog: now,
            last_committed: None,
            board_services: ahash::AHashSet::new(),
            restored_open: (Vec::new(), Vec::new()),
        }
    }

    /// A partition as of its last changelog commit. Series that cannot be imported start
    /// afresh (reported in the log).
    pub(crate) fn restored(
        config: &Config,
        seed: Option<&Arc<BaselineSeed>>,
        partition: i32,
        r: Restored,
        now: Instant,
    ) -> Self {
        let mut part = Self::new(config, seed, now);
        let Restored {
            commit,
            series,
            writer,
            unusable,
            ..
        } = r;
        for u in &unusable {
            tracing::warn!(
                partition,
                key = %u.key,
                reason = u.error.kind(),
                "changelog record unusable, its series is rebuilt from new input: {}",
                u.error
            );
        }
        if let Some(c) = commit {
            part.restored_open =
                crate::status::restored_open(&c.layout.outages, series.iter().map(|(_, st)| st));
            let report = part.engine.restore_layout(c.layout, series);
            for (key, e) in &report.skipped {
                let key = key.clone().unwrap_or_default();
                tracing::warn!(partition, %key, "cannot restore series, rebuilding it: {e}");
            }
            for (i, tp) in part.topics.iter_mut().enumerate() {
                tp.max_event_ms = c.max_event_ms[i];
                tp.next_offset = c.offsets[i];
            }
        }
        part.writer = writer;
        part
    }

    /// The services this partition put on the status board, or would (restored ones).
    fn services_on_board(&self) -> impl Iterator<Item = &str> {
        self.board_services
            .iter()
            .map(String::as_str)
            .chain(self.restored_open.0.iter().map(|o| o.service.as_str()))
            .chain(self.restored_open.1.iter().map(|i| i.service.as_str()))
    }

    /// See the module docs. `None`: hold (a live topic-partition has no event time yet).
    fn watermark(&self, now: Instant, idle: Duration) -> Option<i64> {
        let mut min: Option<i64> = None;
        let mut any_active = false;
        for tp in &self.topics {
            if now.duration_since(tp.last_msg) < idle {
                any_active = true;
                let m = tp.max_event_ms?;
                min = Some(min.map_or(m, |x| x.min(m)));
            }
        }
        if any_active {
            return min;
        }
        let newest = self.topics.iter().filter_map(|t| t.max_event_ms).max()?;
        let last = self.topics.iter().map(|t| t.last_msg).max()?;
        Some(newest + now.duration_since(last).as_millis() as i64)
    }
}

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

/// Everything the loop and the rebalance callbacks share (behind a mutex never held across
/// an `.await`).
pub(crate) struct State {
    pub(crate) counters: Arc<Counters>,
    producer: Producer,
    settings: KafkaSettings,
    config: Config,
    topic_names: [String; 2],
    due_slack_ms: i64,
    partitions: BTreeMap<i32, PartitionState>,
    pending: Vec<Delivery>,
    checkpoints: VecDeque<Checkpoint>,
    stored: BTreeMap<(usize, i32), i64>,
    fatal: Option<String>,
    latencies: Vec<u64>,
    /// Where closed buckets and anomaly events also go, for the status page.
    board: Option<Arc<Mutex<StatusBoard>>>,
    pub(crate) readiness: Option<Arc<Readiness>>,
    /// Assignment generation: bumped by every assignment (see [`super::batch`]).
    pub(crate) generation: Arc<AtomicU64>,
    /// Set once shutdown is requested. Restores run inside the consumer's poll (the rebalance
    /// callback), where the loop cannot see the shutdown signal: they look at this instead.
    pub(crate) stopping: Arc<AtomicBool>,
    pending_commits: Vec<PendingCommit>,
    commit_flights: Vec<CommitFlight>,
    seed: Option<Arc<BaselineSeed>>,
    /// Alert delivery (`[notify]`): a copy of every outage event enqueued.
    notify: Option<crate::notify::NotifyHandle>,
    /// When the engine gauges were last refreshed.
    gauges_at: Option<Instant>,
    /// Wall-clock time (ms) of the last input message, and whether the board has it.
    last_input_ms: Option<i64>,
    input_on_board: bool,
    /// Since when no partition is assigned (`None`: some is).
    unassigned_since: Option<Instant>,
    /// Since when librdkafka reports every broker down (`None`: some broker is up), set by
    /// the consumer's callbacks.
    pub(crate) brokers_down: Arc<Mutex<Option<Instant>>>,
    /// `/readyz` is 503 because of [`State::check_readiness`] (not a restore or shutdown).
    unready_by_check: bool,
    /// Services on the status board of partitions revoked (when, which), until it is known
    /// whether they come back: the eager protocol revokes every partition at each rebalance
    /// and assigns most of them again at once, and their live views are worth keeping.
    revoked_on_board: BTreeMap<i32, (Instant, Vec<String>)>,
}

/// Upper bound of (bucket width + allowed lateness) over every override: an event at `ts` is
/// certainly in a closed bucket once the watermark reaches `ts` + this.
pub fn due_slack_ms(c: &Config) -> i64 {
    let mut width = c.detection.bucket;
    let mut late = c.detection.allowed_lateness;
    let service_geos = c
        .services
        .values()
        .flat_map(|o| o.geos.iter().flat_map(|g| g.values()));
    for o in c
        .signals
        .values()
        .chain(c.geos.values())
        .chain(c.services.values())
        .chain(service_geos)
    {
        width = width.max(o.bucket.unwrap_or(Secs(0)));
        late = late.max(o.allowed_lateness.unwrap_or(Secs(0)));
    }
    width.millis() + late.millis()
}

impl State {
    fn new(config: &Config, producer: Producer, counters: Arc<Counters>) -> Self {
        let settings = config.kafka.clone();
        Self {
            counters,
            producer,
            topic_names: [
                settings.topics.mentions.clone(),
                settings.topics.complaints.clone(),
            ],
            settings,
            due_slack_ms: due_slack_ms(config),
            config: config.clone(),
            partitions: BTreeMap::new(),
            pending: Vec::new(),
            checkpoints: VecDeque::new(),
            stored: BTreeMap::new(),
            fatal: None,
            latencies: Vec::new(),
            board: None,
            readiness: None,
            generation: Arc::new(AtomicU64::new(0)),
            stopping: Arc::new(AtomicBool::new(false)),
            pending_commits: Vec::new(),
            commit_flights: Vec::new(),
            seed: None,
            notify: None,
            gauges_at: None,
            last_input_ms: None,
            input_on_board: true,
            unassigned_since: Some(Instant::now()),
            brokers_down: Arc::new(Mutex::new(None)),
            unready_by_check: false,
            revoked_on_board: BTreeMap::new(),
        }
    }

    /// Forgets on the status board the services of revoked partitions that were not assigned
    /// again: after an assignment (`assigned`: what it gave), or once they have been gone for
    /// [`Self::readiness_grace`] (no assignment came: a broker outage).
    fn forget_moved(&mut self, assigned: Option<&[i32]>, now: Instant) {
        let grace = self.readiness_grace();
        let mut moved: Vec<String> = Vec::new();
        let partitions = &mut self.partitions;
        self.revoked_on_board.retain(|p, (at, services)| {
            let back = assigned.is_some_and(|a| a.contains(p));
            let gone = assigned.is_some() || now.saturating_duration_since(*at) > grace;
            if back {
                // Its views stay, still tied to the partition for its next revoke.
                if let Some(part) = partitions.get_mut(p) {
                    part.board_services.extend(services.drain(..));
                }
            } else if gone {
                moved.append(services);
            }
            !(back || gone)
        });
        if moved.is_empty() {
            return;
        }
        tracing::info!(
            services = moved.len(),
            "status board: forgetting services of partitions now owned elsewhere"
        );
        if let Some(b) = &self.board {
            b.lock()
                .unwrap_or_else(|e| e.into_inner())
                .forget_services(moved.iter().map(String::as_str));
        }
    }

    /// How long no assignment, or every broker down, is tolerated before `/readyz` says 503:
    /// a rebalance takes up to about a session timeout, a restart of the broker a little.
    fn readiness_grace(&self) -> Duration {
        Duration::from_secs((3 * self.settings.session_timeout.0).max(30))
    }

    /// Why this instance should not count as ready at `now`, beyond restores and shutdown: no
    /// partition assigned (broker unreachable: the group session expired; or more instances
    /// than partitions) or every broker down, for longer than [`Self::readiness_grace`].
    fn readiness_problem(&self, now: Instant) -> Option<String> {
        let grace = self.readiness_grace();
        if let Some(t) = self.unassigned_since {
            let for_ = now.saturating_duration_since(t);
            if for_ > grace {
                return Some(format!(
                    "no partition assigned for {} s (broker unreachable, or more instances than \
                     input partitions)",
                    for_.as_secs()
                ));
            }
        }
        let down = *self.brokers_down.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = down {
            let for_ = now.saturating_duration_since(t);
            if for_ > grace {
                return Some(format!("every broker unreachable for {} s", for_.as_secs()));
            }
        }
        None
    }

    /// Sets `/readyz` from [`Self::readiness_problem`]; makes ready again only what it made
    /// not ready.
    fn check_readiness(&mut self, now: Instant) {
        let Some(r) = self.readiness.clone() else {
            return;
        };
        match self.readiness_problem(now) {
            Some(why) => {
                if !self.unready_by_check {
                    tracing::warn!("not ready: {why}");
                }
                r.set_not_ready(why);
                self.unready_by_check = true;
            }
            None if self.unready_by_check => {
                tracing::info!("ready again");
                r.set_ready();
                self.unready_by_check = false;
            }
            None => {}
        }
    }

    /// Tells the status board when input last arrived (once per checkpoint tick, not per
    /// batch: the board's lock is shared with the HTTP handlers).
    fn input_to_board(&mut self) {
        if self.input_on_board {
            return;
        }
        if let (Some(b), Some(ms)) = (&self.board, self.last_input_ms) {
            b.lock().unwrap_or_else(|e| e.into_inner()).input_seen(ms);
        }
        self.input_on_board = true;
    }

    /// Applies a new configuration from the next bucket without losing state. Kafka settings
    /// (brokers, topics, group) need a restart; buckets only ever get a wider offset slack, so
    /// offsets of messages in buckets cut the old way are never committed early.
    fn reconfigure(&mut self, mut new: Config) {
        if new.kafka != self.config.kafka {
            tracing::warn!(
                "[kafka] settings changed in the config file: they apply after a restart"
            );
        }
        new.kafka = self.config.kafka.clone();
        for part in self.partitions.values_mut() {
            part.engine.reconfigure(new.clone());
        }
        self.due_slack_ms = self.due_slack_ms.max(due_slack_ms(&new));
        tracing::info!(
            open_z = new.detection.open_z,
            close_z = new.detection.close_z,
            "config reloaded: new thresholds apply from the next bucket"
        );
        self.config = new;
    }

    fn topic_index(&self, topic: &str) -> Option<usize> {
        self.topic_names.iter().position(|t| t == topic)
    }

    /// Handles the messages of one batch.
    fn handle_batch(&mut self, batch: &InputBatch) {
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
            self.last_input_ms = Some(wall_ms);
            self.input_on_board = false;
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
        let outcome: Result<i64, Reason> = if payload.len() > self.settings.max_message_bytes {
            Err(Reason {
                kind: "too_large",
                message: format!(
                    "message of {} bytes exceeds kafka.max_message_bytes = {}",
                    payload.len(),
                    self.settings.max_message_bytes
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
        let runs = !self.settings.changelog;
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
                    &self.settings.topics.dead_letters,
                    src,
                    payload,
                    &reason,
                    self.settings.dead_letter_max_bytes,
                ) {
                    Ok(f) => {
                        self.pending.push(Delivery::DeadLetter(f));
                        if runs {
                            tp.runs.push(offset, i64::MIN);
                        }
                        c.dead_lettered(reason.kind);
                    }
                    Err(e) => {
                        self.fatal = Some(format!("cannot enqueue a dead letter: {e}"));
                        // Not recorded as done: never committed.
                        if runs {
                            tp.runs.push(offset, i64::MAX);
                        }
                    }
                }
            }
        }
    }

    /// Advances every engine to its watermark and enqueues the anomaly events they produced.
    fn advance_engines(&mut self, now: Instant) {
        let idle = Duration::from_secs(self.settings.idle_timeout.0);
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
                board = self
                    .board
                    .as_ref()
                    .map(|b| b.lock().unwrap_or_else(|e| e.into_inner()));
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
        let topics = &self.settings.topics;
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
                    self.pending.push(Delivery::Anomaly(f, closed_at));
                    // Never waits: a full queue drops, a dead receiver cannot stall this.
                    if let Some(n) = &self.notify {
                        n.notify_from(ev, Some(partition));
                    }
                }
                Err(e) => self.fatal = Some(format!("cannot enqueue an outage event: {e}")),
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
                        self.pending.push(Delivery::Anomaly(f, closed_at));
                    }
                    Err(e) => self.fatal = Some(format!("cannot enqueue an anomaly event: {e}")),
                }
            }
        }
        // Watched for acknowledgement from now on, not from the next checkpoint.
        self.seal(Vec::new());
    }

    /// Advances every engine to its watermark, enqueues what they produced, writes the
    /// changelog checkpoints that are due, and records the offsets that become committable
    /// once those deliveries are acknowledged.
    fn checkpoint(&mut self, now: Instant) {
        // `state_bytes` visits every series: once a second is enough for a gauge.
        if self
            .gauges_at
            .is_none_or(|t| now.duration_since(t) >= GAUGE_INTERVAL)
        {
            self.gauges_at = Some(now);
            let (mut series, mut open, mut bytes) = (0u64, 0u64, 0u64);
            for (&p, part) in &self.partitions {
                series += part.engine.series_count() as u64;
                open += part.engine.open_incidents() as u64;
                bytes += part.engine.state_bytes() as u64;
                self.counters.observe_engine(p, part.engine.stats());
            }
            self.counters.series.store(series, Ordering::Relaxed);
            self.counters.open_incidents.store(open, Ordering::Relaxed);
            self.counters
                .engine_state_bytes
                .store(bytes, Ordering::Relaxed);
        }
        self.advance_engines(now);
        let mut offsets = Vec::new();
        if self.settings.changelog {
            // Input offsets advance with changelog commits instead (see `drain_ready`).
            let every = Duration::from_millis(self.settings.changelog_interval_ms);
            let due: Vec<i32> = self
                .partitions
                .iter()
                .filter(|(_, p)| !p.changelog_busy && now.duration_since(p.last_changelog) >= every)
                .map(|(&p, _)| p)
                .collect();
            for p in due {
                self.write_changelog(p, now);
            }
        } else {
            for (&p, part) in &self.partitions {
                for (i, tp) in part.topics.iter().enumerate() {
                    if let Some(o) = tp.runs.committable() {
                        offsets.push((i, p, o));
                    }
                }
            }
        }
        self.seal(offsets);
    }

    /// Everything enqueued since the previous checkpoint becomes one checkpoint.
    fn seal(&mut self, offsets: Vec<(usize, i32, i64)>) {
        self.checkpoints.push_back(Checkpoint {
            deliveries: std::mem::take(&mut self.pending),
            offsets,
            commits: std::mem::take(&mut self.pending_commits),
        });
    }

    /// Enqueues the series of partition `p` that changed since its last changelog checkpoint;
    /// its commit record follows once they and everything before are acknowledged.
    fn write_changelog(&mut self, p: i32, now: Instant) {
        let Some(part) = self.partitions.get_mut(&p) else {
            return;
        };
        let offsets = [part.topics[0].next_offset, part.topics[1].next_offset];
        let max_event_ms = [part.topics[0].max_event_ms, part.topics[1].max_event_ms];
        let live = part.engine.series_count() as u64;
        let delta = part.engine.take_changes();
        let unchanged = delta.changed.is_empty()
            && delta.removed.is_empty()
            && part.last_committed == Some((offsets, max_event_ms));
        if unchanged {
            // Nothing new since the last checkpoint: no commit record either.
            part.last_changelog = now;
            return;
        }
        part.last_committed = Some((offsets, max_event_ms));
        let out = part
            .writer
            .checkpoint(delta, &self.topic_names, offsets, max_event_ms, live);
        part.changelog_busy = true;
        part.last_changelog = now;
        let topic = &self.settings.topics.changelog;
        for (key, value) in &out.records {
            match send_to_partition(&self.producer, topic, p, key, value.as_deref()) {
                Ok(f) => self.pending.push(Delivery::State(f)),
                Err(e) => {
                    self.fatal = Some(format!("cannot enqueue a changelog record: {e}"));
                    return;
                }
            }
        }
        tracing::debug!(
            partition = p,
            checkpoint = out.checkpoint,
            series = out.series_written,
            bytes = out.bytes,
            "changelog checkpoint enqueued"
        );
        self.pending_commits.push(PendingCommit {
            partition: p,
            checkpoint: out.checkpoint,
            key: out.commit_key,
            record: out.commit,
            offsets,
            started: now,
            bytes: out.bytes,
        });
    }

    /// Sends the commit records of a fully acknowledged checkpoint, and returns the input
    /// offsets of changelog commits that are now acknowledged.
    fn advance_commits(&mut self, ready: Vec<PendingCommit>) -> Vec<(usize, i32, i64)> {
        let topic = self.settings.topics.changelog.clone();
        for c in ready {
            if !self.partitions.contains_key(&c.partition) {
                continue;
            }
            match send_to_partition(&self.producer, &topic, c.partition, &c.key, Some(&c.record)) {
                Ok(delivery) => self.commit_flights.push(CommitFlight {
                    partition: c.partition,
                    checkpoint: c.checkpoint,
                    offsets: c.offsets,
                    started: c.started,
                    bytes: c.bytes,
                    delivery,
                }),
                Err(e) => {
                    self.fatal = Some(format!("cannot enqueue a changelog commit: {e}"));
                    return Vec::new();
                }
            }
        }
        let mut offsets = Vec::new();
        let mut i = 0;
        while i < self.commit_flights.len() {
            let result = (&mut self.commit_flights[i].delivery).now_or_never();
            let Some(result) = result else {
                i += 1;
                continue;
            };
            let f = self.commit_flights.swap_remove(i);
            match result {
                Ok(Ok(_)) => {
                    if let Some(part) = self.partitions.get_mut(&f.partition) {
                        part.writer.committed(f.checkpoint);
                        part.changelog_busy = false;
                        for (t, o) in f.offsets.iter().enumerate() {
                            if let Some(o) = o {
                                offsets.push((t, f.partition, *o));
                            }
                        }
                    }
                    Counters::add(&self.counters.changelog_commits, 1);
                    Counters::add(&self.counters.changelog_bytes, f.bytes as u64);
                    self.counters
                        .observe_checkpoint(f.started.elapsed(), f.bytes as u64);
                    tracing::debug!(
                        partition = f.partition,
                        checkpoint = f.checkpoint,
                        took_ms = f.started.elapsed().as_millis() as u64,
                        "changelog checkpoint committed"
                    );
                }
                Ok(Err((e, _))) => {
                    self.fatal = Some(format!("changelog commit failed: {e}"));
                }
                Err(_) => self.fatal = Some("changelog commit cancelled (producer gone)".into()),
            }
        }
        offsets
    }

    /// Pops every checkpoint whose deliveries (and all earlier ones) are acknowledged; returns
    /// the offsets to store, if any advanced.
    fn drain_ready(&mut self) -> Option<TopicPartitionList> {
        let mut advanced: BTreeMap<(usize, i32), i64> = BTreeMap::new();
        let mut ready_commits = Vec::new();
        while let Some(front) = self.checkpoints.front_mut() {
            let fatal = &mut self.fatal;
            let counters = &self.counters;
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
                        *fatal = Some(format!("delivery failed: {e}"));
                        false
                    }
                    Some(Err(_)) => {
                        *fatal = Some("delivery was cancelled (producer gone)".into());
                        false
                    }
                }
            });
            if self.fatal.is_some() {
                // Nothing after a failed delivery may be committed.
                self.checkpoints.clear();
                return None;
            }
            if !front.deliveries.is_empty() {
                break;
            }
            let cp = self.checkpoints.pop_front().expect("front exists");
            ready_commits.extend(cp.commits);
            for (i, p, o) in cp.offsets {
                if !self.partitions.contains_key(&p) {
                    continue;
                }
                let prev = self.stored.get(&(i, p)).copied();
                if prev.is_none_or(|s| o > s) {
                    self.stored.insert((i, p), o);
                    advanced.insert((i, p), o);
                }
            }
        }
        for (i, p, o) in self.advance_commits(ready_commits) {
            let prev = self.stored.get(&(i, p)).copied();
            if prev.is_none_or(|s| o > s) {
                self.stored.insert((i, p), o);
                advanced.insert((i, p), o);
            }
        }
        if self.fatal.is_some() {
            return None;
        }
        if advanced.is_empty() {
            return None;
        }
        let mut tpl = TopicPartitionList::new();
        for ((i, p), o) in advanced {
            let _ = tpl.add_partition_offset(&self.topic_names[i], p, Offset::Offset(o));
        }
        Counters::add(&self.counters.offset_stores, 1);
        Some(tpl)
    }

    /// The stored offsets of the given topic-partitions, for a synchronous commit.
    fn stored_offsets(&self, which: &[(String, i32)]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (topic, p) in which {
            if let Some(i) = self.topic_index(topic) {
                if let Some(&o) = self.stored.get(&(i, *p)) {
                    let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(o));
                }
            }
        }
        tpl
    }

    fn all_assigned(&self) -> Vec<(String, i32)> {
        let mut all: Vec<(String, i32)> = self
            .stored
            .keys()
            .map(|&(i, p)| (self.topic_names[i].clone(), p))
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
    /// synchronously for `which`. Stores go through `store`.
    pub(crate) fn hand_over(
        &mut self,
        which: &[(String, i32)],
        store: impl Fn(&TopicPartitionList),
    ) -> TopicPartitionList {
        self.checkpoint(Instant::now());
        let timeout = Duration::from_secs(self.settings.drain_timeout.0);
        // With the changelog, each partition handed over ends with a checkpoint of its final
        // state (after the one in flight, if any, is committed).
        let mut final_due: Vec<i32> = if self.settings.changelog {
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
                let settled = self.checkpoints.is_empty() && self.commit_flights.is_empty();
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

    pub(crate) fn drop_partitions(&mut self, which: &[(String, i32)]) {
        // Offsets of checkpoints still waiting (a flush that timed out) belong to the old
        // owner's state: never store them for a later assignment.
        let dropped: Vec<i32> = which.iter().map(|(_, p)| *p).collect();
        for cp in &mut self.checkpoints {
            cp.offsets.retain(|(_, p, _)| !dropped.contains(p));
            cp.commits.retain(|c| !dropped.contains(&c.partition));
        }
        self.pending_commits
            .retain(|c| !dropped.contains(&c.partition));
        self.commit_flights
            .retain(|c| !dropped.contains(&c.partition));
        let now = Instant::now();
        for (topic, p) in which {
            if let Some(i) = self.topic_index(topic) {
                self.stored.remove(&(i, *p));
            }
            if let Some(part) = self.partitions.remove(p) {
                tracing::info!(partition = p, "dropped engine state of partition");
                // Unless it comes back, its new owner shows these from now on, and nothing
                // here would ever resolve them (see `forget_moved`).
                let services = part.services_on_board().map(str::to_string).collect();
                self.revoked_on_board.insert(*p, (now, services));
            }
        }
        if self.partitions.is_empty() {
            self.unassigned_since.get_or_insert_with(Instant::now);
        }
        Counters::add(&self.counters.rebalances, 1);
    }

    /// Starts a new assignment generation: messages polled before it are not applied to the
    /// partition states created from now on.
    pub(crate) fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(crate) fn assign(&mut self, which: &[(String, i32)]) {
        let now = Instant::now();
        if !which.is_empty() {
            // Assigned: the group coordinator answered, so a broker is up.
            self.unassigned_since = None;
            *self.brokers_down.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        let assigned: Vec<i32> = which.iter().map(|(_, p)| *p).collect();
        let generation = self.generation.load(Ordering::SeqCst);
        for (topic, p) in which {
            if self.topic_index(topic).is_some() {
                self.partitions.entry(*p).or_insert_with(|| {
                    let mut part = PartitionState::new(&self.config, self.seed.as_ref(), now);
                    part.generation = generation;
                    part
                });
            }
        }
        self.forget_moved(Some(&assigned), now);
    }

    pub(crate) fn owns(&self, partition: i32) -> bool {
        self.partitions.contains_key(&partition)
    }

    pub(crate) fn settings(&self) -> &KafkaSettings {
        &self.settings
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn seed(&self) -> Option<Arc<BaselineSeed>> {
        self.seed.clone()
    }

    /// Takes over a partition restored from the changelog; returns the input offsets to
    /// resume from (per topic index; `None`: the group's committed offset).
    pub(crate) fn adopt(&mut self, partition: i32, mut part: PartitionState) -> [Option<i64>; 2] {
        part.generation = self.generation.load(Ordering::SeqCst);
        if let Some(b) = &self.board {
            let (outages, incidents) = part.restored_open.clone();
            if !outages.is_empty() || !incidents.is_empty() {
                tracing::info!(
                    partition,
                    outages = outages.len(),
                    incidents = incidents.len(),
                    "restored open outages and incidents shown on the status board"
                );
            }
            b.lock()
                .unwrap_or_else(|e| e.into_inner())
                .record_restored(outages, incidents);
        }
        let offsets = [part.topics[0].next_offset, part.topics[1].next_offset];
        self.partitions.insert(partition, part);
        offsets
    }

    pub(crate) fn topic_names(&self) -> &[String; 2] {
        &self.topic_names
    }

    pub(crate) fn fail(&mut self, why: String) {
        self.fatal.get_or_insert(why);
    }
}

/// Creates topics (if configured) and checks co-partitioning, retrying with backoff while the
/// broker is unreachable. `Ok(false)`: told to stop first.
async fn prepare(
    settings: &KafkaSettings,
    shutdown: &mut broadcast::Receiver<()>,
) -> anyhow::Result<bool> {
    let t = &settings.topics;
    let mut backoff = Duration::from_millis(250);
    loop {
        let attempt = async {
            if settings.create_topics {
                let mut outputs: Vec<&str> =
                    vec![&t.mentions, &t.complaints, &t.anomalies, &t.dead_letters];
                if !t.series_anomalies.is_empty() {
                    outputs.push(&t.series_anomalies);
                }
                admin::create_topics(settings, &outputs, settings.partitions).await?;
            }
            let s = settings.clone();
            let (m, c) = tokio::task::spawn_blocking(move || {
                Ok::<_, rdkafka::error::KafkaError>((
                    admin::partition_count(&s, &s.topics.mentions)?,
                    admin::partition_count(&s, &s.topics.complaints)?,
                ))
            })
            .await
            .expect("metadata task")?;
            if settings.changelog && m > 0 && c > 0 {
                if settings.create_topics {
                    admin::create_changelog_topic(settings, m.max(c) as i32).await?;
                }
                let s = settings.clone();
                let n = tokio::task::spawn_blocking(move || {
                    admin::partition_count(&s, &s.topics.changelog)
                })
                .await
                .expect("metadata task")?;
                return Ok::<_, rdkafka::error::KafkaError>((m, c, Some(n)));
            }
            Ok((m, c, None))
        };
        let result = tokio::select! {
            r = attempt => r,
            _ = shutdown.recv() => return Ok(false),
        };
        match result {
            Ok((m, c, Some(n))) if m > 0 && c > 0 && n < m.max(c) => {
                anyhow::bail!(
                    "changelog topic {} has {n} partitions, fewer than the input topics ({}): \
                     it must have one per input partition (create it with as many, \
                     cleanup.policy=compact), or set [kafka] changelog = false",
                    t.changelog,
                    m.max(c)
                );
            }
            Ok((m, c, _)) if m > 0 && c > 0 => {
                if m != c {
                    tracing::warn!(
                        mentions = m,
                        complaints = c,
                        "input topics have different partition counts: partition p of both \
                         feeds one engine, so a service's mentions and complaints may be split"
                    );
                }
                tracing::info!(
                    brokers = %settings.brokers,
                    mentions_partitions = m,
                    complaints_partitions = c,
                    "broker reachable, input topics present"
                );
                return Ok(true);
            }
            Ok(_) => tracing::warn!(
                "input topics {} / {} do not exist yet; retrying in {backoff:?}",
                t.mentions,
                t.complaints
            ),
            Err(e) => tracing::warn!(
                brokers = %settings.brokers,
                "broker not reachable or not ready: {e}; retrying in {backoff:?}"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.recv() => return Ok(false),
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Runs the pipeline until `shutdown` fires (or a delivery fails for good). `config.kafka`
/// must already have its `${env:…}` values resolved.
pub async fn run_pipeline(
    config: Config,
    shutdown: broadcast::Receiver<()>,
) -> anyhow::Result<RunReport> {
    run_pipeline_with(config, shutdown, Arc::new(Counters::default())).await
}

/// [`run_pipeline`] updating `counters` as it goes (for a metrics endpoint or a benchmark).
pub async fn run_pipeline_with(
    config: Config,
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
    pub reload: Option<tokio::sync::mpsc::Receiver<Config>>,
    /// Baselines learned from history that new series start from (`run --initial-state`).
    pub seed: Option<Arc<BaselineSeed>>,
    /// Alert delivery: every outage event enqueued to the anomaly topic is offered to it.
    pub notify: Option<crate::notify::NotifyHandle>,
}

/// The engines' output at a checkpoint: anomaly events to produce, and everything to the
/// status board if there is one.
struct Tee<'a> {
    events: &'a mut Vec<AnomalyEvent>,
    outages: &'a mut Vec<OutageEvent>,
    board: Option<&'a mut StatusBoard>,
    /// Services of the partition with events on the board.
    services: &'a mut ahash::AHashSet<String>,
}

impl Tee<'_> {
    fn on_board(&mut self, service: &str) {
        if self.board.is_some() && !self.services.contains(service) {
            self.services.insert(service.to_string());
        }
    }
}

impl EngineSink for Tee<'_> {
    fn bucket(&mut self, r: &BucketReport<'_>) {
        if let Some(b) = self.board.as_deref_mut() {
            b.record_bucket(r);
        }
    }
    fn anomaly(&mut self, e: AnomalyEvent) {
        self.on_board(&e.service);
        if let Some(b) = self.board.as_deref_mut() {
            b.record_anomaly(&e);
        }
        self.events.push(e);
    }
    fn outage(&mut self, e: OutageEvent) {
        self.on_board(&e.service);
        if let Some(b) = self.board.as_deref_mut() {
            b.record_outage(&e);
        }
        self.outages.push(e);
    }
}

/// [`run_pipeline_with`] feeding `observers`.
pub async fn run_pipeline_observed(
    config: Config,
    mut shutdown: broadcast::Receiver<()>,
    counters: Arc<Counters>,
    mut observers: Observers,
) -> anyhow::Result<RunReport> {
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
    ready(false, "connecting to the broker");
    let settings = config.kafka.clone();
    if !prepare(&settings, &mut shutdown).await? {
        tracing::info!("stopped before the broker was reachable");
        return Ok(RunReport::default());
    }
    let producer = create_producer(&settings)?;
    let mut st = State::new(&config, producer.clone(), counters.clone());
    st.board = observers.board.clone();
    if let Some(b) = &st.board {
        // From now on the page tells when input stops.
        b.lock()
            .unwrap_or_else(|e| e.into_inner())
            .watch_input(crate::status::wall_ms());
    }
    st.readiness = observers.readiness.clone();
    st.seed = observers.seed.clone();
    st.notify = observers.notify.clone();
    let generation = st.generation.clone();
    // The pipeline task may be stuck in a restore inside the consumer's poll when the signal
    // comes (a restore of a large changelog takes minutes): tell it from another task.
    let stopping = st.stopping.clone();
    let brokers_down = st.brokers_down.clone();
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
    let mut fatal: Option<String> = None;
    let topic_names = [
        settings.topics.mentions.clone(),
        settings.topics.complaints.clone(),
    ];
    loop {
        tokio::select! {
            biased;
            _ = shutdown.recv() => break,
            _ = checkpoint_tick.tick() => {
                let mut st = lock();
                let now = Instant::now();
                st.checkpoint(now);
                st.input_to_board();
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
                        fatal = Some("the engine thread stopped".into());
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

    ready(false, "stopping");
    // The engine thread handles the batches already passed on, then ends.
    drop(batches);
    let joined = tokio::task::spawn_blocking(move || engine_thread.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        fatal.get_or_insert_with(|| "the engine thread panicked".into());
    }
    if let Some(f) = fatal {
        tracing::error!("stopping without committing further: {f}");
        // The last committed offsets stay; a restart re-reads from there.
        drop(consumer);
        anyhow::bail!("pipeline stopped: {f}");
    }

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
        ack_latencies_us: std::mem::take(&mut st.latencies),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn part(now: Instant, ages_s: [u64; 2], max_event: [Option<i64>; 2]) -> PartitionState {
        let mut p = PartitionState::new(&Config::default(), None, now);
        for i in 0..2 {
            p.topics[i].last_msg = now - Duration::from_secs(ages_s[i]);
            p.topics[i].max_event_ms = max_event[i];
        }
        p
    }

    const IDLE: Duration = Duration::from_secs(30);

    fn state() -> State {
        let mut config = Config::default();
        // Never contacted: nothing here is produced.
        config.kafka.brokers = "127.0.0.1:9".into();
        let producer = create_producer(&config.kafka).unwrap();
        State::new(&config, producer, Arc::new(Counters::default()))
    }

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
    fn readyz_is_503_once_no_partition_is_assigned_or_every_broker_is_down_past_the_grace() {
        let mut st = state();
        let readiness = Arc::new(Readiness::default());
        st.readiness = Some(readiness.clone());
        let topics = [(st.topic_names[0].clone(), 3)];
        st.assign(&topics);
        readiness.set_ready();
        let grace = st.readiness_grace();
        let t0 = Instant::now();
        st.check_readiness(t0 + 10 * grace);
        assert!(readiness.is_ready(), "assigned: ready however long");

        // The broker goes away: the group session expires and the partition is revoked.
        st.drop_partitions(&topics);
        st.check_readiness(Instant::now());
        assert!(readiness.is_ready(), "a rebalance is not an outage");
        st.check_readiness(Instant::now() + grace + Duration::from_secs(1));
        assert!(!readiness.is_ready());
        assert!(
            readiness.reason().contains("no partition assigned"),
            "{}",
            readiness.reason()
        );
        // Assigned again: ready again.
        st.assign(&topics);
        st.check_readiness(Instant::now());
        assert!(readiness.is_ready());

        // Every broker down while the partition is still assigned.
        *st.brokers_down.lock().unwrap() = Some(Instant::now());
        st.check_readiness(Instant::now() + grace + Duration::from_secs(1));
        assert!(!readiness.is_ready());
        assert!(readiness.reason().contains("every broker unreachable"));
        *st.brokers_down.lock().unwrap() = None;
        st.check_readiness(Instant::now());
        assert!(readiness.is_ready());
    }

    #[test]
    fn only_readiness_it_took_away_is_given_back() {
        let mut st = state();
        let readiness = Arc::new(Readiness::default());
        st.readiness = Some(readiness.clone());
        st.assign(&[(st.topic_names[0].clone(), 3)]);
        readiness.set_not_ready("stopping");
        st.check_readiness(Instant::now());
        assert!(!readiness.is_ready());
        assert_eq!(readiness.reason(), "stopping");
    }

    #[test]
    fn the_board_shows_restored_outages_of_an_adopted_partition_and_forgets_them_on_revoke() {
        let mut st = state();
        let board = Arc::new(Mutex::new(StatusBoard::default()));
        st.board = Some(board.clone());
        let mut part = PartitionState::new(&Config::default(), None, Instant::now());
        part.restored_open.0.push(RestoredOutage {
            outage_id: "telegram/2026-06-14T07:00:00.000Z".into(),
            service: "telegram".into(),
            opened_at: crate::event::Timestamp(1_781_420_400_000),
            severity: crate::event::Severity::Major,
            countries: vec!["IT".into()],
            signals: vec!["complaints".into()],
            peak_zscore: 12.0,
            peak_at: crate::event::Timestamp(1_781_420_400_000),
            peak_geo: "IT".into(),
        });
        // A service with live events on the board from this partition.
        part.board_services.insert("whatsapp".into());
        st.adopt(3, part);
        assert_eq!(board.lock().unwrap().incidents().restored.len(), 1);

        // Eager rebalance: revoked, then assigned again: kept.
        let p3 = [(st.topic_names[0].clone(), 3)];
        st.drop_partitions(&p3);
        st.assign(&p3);
        assert_eq!(board.lock().unwrap().incidents().restored.len(), 1);

        // Revoked, and the next assignment does not include it: forgotten.
        st.drop_partitions(&p3);
        assert_eq!(
            board.lock().unwrap().incidents().restored.len(),
            1,
            "not before it is known"
        );
        st.assign(&[(st.topic_names[0].clone(), 1)]);
        assert!(board.lock().unwrap().incidents().restored.is_empty());
    }

    #[test]
    fn the_board_forgets_a_revoked_partition_when_no_assignment_follows() {
        let mut st = state();
        let board = Arc::new(Mutex::new(StatusBoard::default()));
        st.board = Some(board.clone());
        let mut part = PartitionState::new(&Config::default(), None, Instant::now());
        part.restored_open.1.push(crate::status::RestoredIncident {
            incident_id: "telegram/IT/complaints/x".into(),
            service: "telegram".into(),
            geo: "IT".into(),
            signal: "complaints".into(),
            opened_at: crate::event::Timestamp(0),
            severity: crate::event::Severity::Minor,
            peak_zscore: 7.0,
        });
        st.adopt(3, part);
        st.drop_partitions(&[(st.topic_names[0].clone(), 3)]);
        st.forget_moved(None, Instant::now());
        assert_eq!(board.lock().unwrap().incidents().restored_series.len(), 1);
        let later = Instant::now() + st.readiness_grace() + Duration::from_secs(1);
        st.forget_moved(None, later);
        assert!(board.lock().unwrap().incidents().restored_series.is_empty());
    }

    #[test]
    fn messages_polled_before_a_partition_is_assigned_again_are_not_applied_to_its_new_state() {
        let mut st = state();
        let topics = [
            (st.topic_names[0].clone(), 3),
            (st.topic_names[1].clone(), 3),
        ];
        st.next_generation();
        st.assign(&topics);
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
        let mut st = state();
        let topics = [
            (st.topic_names[0].clone(), 3),
            (st.topic_names[1].clone(), 3),
        ];
        st.next_generation();
        st.assign(&topics);
        let idle = Duration::from_secs(st.settings.idle_timeout.0);
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
        let mut st = state();
        let topics = [
            (st.topic_names[0].clone(), 3),
            (st.topic_names[1].clone(), 3),
        ];
        st.next_generation();
        st.assign(&topics);
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

    #[test]
    fn watermark_is_the_minimum_of_both_live_topic_partitions() {
        let now = Instant::now();
        let p = part(now, [1, 2], [Some(5_000), Some(3_000)]);
        assert_eq!(p.watermark(now, IDLE), Some(3_000));
    }

    #[test]
    fn a_live_topic_partition_without_events_holds_the_watermark() {
        let now = Instant::now();
        let p = part(now, [1, 1], [Some(5_000), None]);
        assert_eq!(p.watermark(now, IDLE), None);
    }

    #[test]
    fn an_idle_topic_partition_no_longer_holds_the_watermark() {
        let now = Instant::now();
        let p = part(now, [1, 31], [Some(5_000), Some(3_000)]);
        assert_eq!(p.watermark(now, IDLE), Some(5_000));
        let p = part(now, [1, 31], [Some(5_000), None]);
        assert_eq!(p.watermark(now, IDLE), Some(5_000));
    }

    #[test]
    fn when_both_are_idle_the_watermark_moves_with_the_wall_clock() {
        let now = Instant::now();
        let p = part(now, [40, 60], [Some(5_000), Some(3_000)]);
        assert_eq!(p.watermark(now, IDLE), Some(5_000 + 40_000));
    }

    #[test]
    fn due_slack_covers_the_widest_bucket_and_lateness_of_any_override() {
        let c = Config::from_toml_str(
            "[services.x]\nbucket = \"5m\"\n[geos.IT]\nallowed_lateness = \"10m\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(due_slack_ms(&c), 5 * 60_000 + 10 * 60_000);
        assert_eq!(due_slack_ms(&Config::default()), 60_000 + 120_000);
    }
}
