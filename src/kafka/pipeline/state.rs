//! The state the run loop (and the hand-overs it runs on the blocking pool) and the engine
//! thread share (behind a mutex never held across an `.await`): the partitions, the ack
//! ledger, the commit strategy, and what the pipeline reports to (counters, status board,
//! readiness, alerts). Ingest is in `ingest.rs`, assignment and hand-over in `rebalance.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::{Offset, TopicPartitionList};

use super::ack_ledger::{AckLedger, TopicOffset};
use super::board::BoardLink;
use super::commit::CommitStrategy;
use super::error::PipelineError;
use super::partition::PartitionState;
use super::readiness::ReadinessCheck;
use crate::domain::Secs;
use crate::engine::settings::Thresholds;
use crate::engine::BaselineSeed;
use crate::engine::EngineConfig;
use crate::kafka::producer::Producer;
use crate::kafka::{Counters, KafkaSettings, PipelineConfig};

/// How often the engine gauges (series, open incidents, state bytes) are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

pub(super) struct State {
    pub(super) counters: Arc<Counters>,
    pub(super) producer: Producer,
    /// `config.kafka` never changes while running (see [`Self::reconfigure`]).
    pub(super) config: PipelineConfig,
    pub(super) topic_names: [String; 2],
    pub(super) due_slack_ms: i64,
    pub(super) partitions: BTreeMap<i32, PartitionState>,
    pub(super) ledger: AckLedger,
    pub(super) commit: CommitStrategy,
    /// Set when the pipeline must stop without committing further.
    pub(super) fatal: Option<PipelineError>,
    pub(super) status: BoardLink,
    pub(super) health: ReadinessCheck,
    /// Assignment generation: bumped by every assignment (see [`crate::kafka::batch`]).
    pub(super) generation: Arc<AtomicU64>,
    /// Set once shutdown is requested. A restore runs on the blocking pool while the loop
    /// waits for it: it looks at this to give up.
    pub(super) stopping: Arc<AtomicBool>,
    pub(super) seed: Option<Arc<BaselineSeed>>,
    /// Alert delivery (`[notify]`): a copy of every outage event enqueued.
    pub(super) notify: Option<crate::notify::NotifyHandle>,
    /// When the engine gauges were last refreshed.
    gauges_at: Option<Instant>,
    /// When the engines were last advanced (see [`Self::discount_stall`]).
    pub(super) advanced_at: Option<Instant>,
}

/// Upper bound of (bucket width + allowed lateness) over every override: an event at `ts` is
/// certainly in a closed bucket once the watermark reaches `ts` + this.
pub fn due_slack_ms(c: &EngineConfig) -> i64 {
    let defaults = Thresholds::default();
    let mut width = defaults.bucket;
    let mut late = defaults.allowed_lateness;
    let service_geos = c
        .services
        .values()
        .flat_map(|o| o.geos.iter().flat_map(|g| g.values()));
    for o in std::iter::once(&c.detection)
        .chain(c.signals.values())
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
    pub(super) fn new(
        config: &PipelineConfig,
        producer: Producer,
        counters: Arc<Counters>,
    ) -> Self {
        let settings = &config.kafka;
        Self {
            counters,
            commit: CommitStrategy::new(settings, producer.clone()),
            producer,
            topic_names: [
                settings.topics.mentions.clone(),
                settings.topics.complaints.clone(),
            ],
            due_slack_ms: due_slack_ms(&config.engine),
            config: config.clone(),
            partitions: BTreeMap::new(),
            ledger: AckLedger::default(),
            fatal: None,
            status: BoardLink::new(),
            health: ReadinessCheck::new(settings),
            generation: Arc::new(AtomicU64::new(0)),
            stopping: Arc::new(AtomicBool::new(false)),
            seed: None,
            notify: None,
            gauges_at: None,
            advanced_at: None,
        }
    }

    pub(super) fn settings(&self) -> &KafkaSettings {
        &self.config.kafka
    }

    pub(super) fn topic_index(&self, topic: &str) -> Option<usize> {
        self.topic_names.iter().position(|t| t == topic)
    }

    /// Applies a new configuration from the next bucket without losing state. Kafka settings
    /// (brokers, topics, group) need a restart; buckets only ever get a wider offset slack, so
    /// offsets of messages in buckets cut the old way are never committed early.
    pub(super) fn reconfigure(&mut self, mut new: PipelineConfig) {
        if new.kafka != self.config.kafka {
            tracing::warn!(
                "[kafka] settings changed in the config file: they apply after a restart"
            );
        }
        new.kafka = self.config.kafka.clone();
        for part in self.partitions.values_mut() {
            part.engine.reconfigure(new.engine.clone());
        }
        self.due_slack_ms = self.due_slack_ms.max(due_slack_ms(&new.engine));
        // What `[detection]` sets; a key it leaves unset follows each series' built-in default.
        let shown = |v: Option<f64>| v.map_or_else(|| "built-in".to_string(), |v| v.to_string());
        tracing::info!(
            detection.open_z = %shown(new.engine.detection.open_z),
            detection.close_z = %shown(new.engine.detection.close_z),
            "config reloaded: new thresholds apply from the next bucket"
        );
        self.config = new;
    }

    /// Advances every engine to its watermark, enqueues what they produced, writes the
    /// changelog checkpoints that are due, and records the offsets that become committable
    /// once those deliveries are acknowledged.
    pub(super) fn checkpoint(&mut self, now: Instant) {
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
        let offsets = self
            .commit
            .checkpoint(
                now,
                &mut self.partitions,
                &self.topic_names,
                &mut self.ledger,
            )
            .unwrap_or_else(|e| {
                self.fatal = Some(e);
                Vec::new()
            });
        self.seal(offsets);
    }

    /// Everything enqueued since the previous checkpoint becomes one checkpoint.
    pub(super) fn seal(&mut self, offsets: Vec<TopicOffset>) {
        let seq = self.ledger.seal(offsets);
        self.commit.sealed(seq);
    }

    /// With the changelog: writes a changelog checkpoint of partition `p` now (see
    /// [`super::commit::ChangelogCommits::write`]).
    pub(super) fn write_changelog(&mut self, p: i32, now: Instant) {
        let Some(part) = self.partitions.get_mut(&p) else {
            return;
        };
        if let CommitStrategy::Changelog(c) = &mut self.commit {
            if let Err(e) = c.write(p, part, now, &self.topic_names, &mut self.ledger) {
                self.fatal = Some(e);
            }
        }
    }

    /// Pops every checkpoint whose deliveries (and all earlier ones) are acknowledged, sends
    /// the changelog commit records that became due; returns the offsets to store, if any
    /// advanced.
    pub(super) fn drain_ready(&mut self) -> Option<TopicPartitionList> {
        let partitions = &self.partitions;
        let acked = self
            .ledger
            .drain_ready(&self.counters, &mut self.fatal, |p| {
                partitions.contains_key(&p)
            })?;
        let mut advanced = acked.advanced;
        match self
            .commit
            .advance(acked.through, &mut self.partitions, &self.counters)
        {
            Ok(offsets) => {
                for (i, p, o) in offsets {
                    self.ledger.store(i, p, o, &mut advanced);
                }
            }
            Err(e) => self.fatal = Some(e),
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

    /// Records why the pipeline must stop, unless it already must.
    pub(super) fn fail(&mut self, why: PipelineError) {
        self.fatal.get_or_insert(why);
    }

    /// See [`ReadinessCheck::grace`].
    pub(super) fn readiness_grace(&self) -> Duration {
        self.health.grace()
    }

    /// Sets `/readyz` (see [`ReadinessCheck::check`]).
    pub(super) fn check_readiness(&mut self, now: Instant) {
        self.health.check(now);
    }

    /// See [`super::board::BoardLink::forget_moved`].
    pub(super) fn forget_moved(&mut self, assigned: Option<&[i32]>, now: Instant) {
        let grace = self.readiness_grace();
        self.status
            .forget_moved(assigned, now, grace, &mut self.partitions);
    }
}

/// A state whose producer is never contacted: nothing here is produced.
#[cfg(test)]
pub(super) fn test_state() -> State {
    let mut config = PipelineConfig::default();
    config.kafka.brokers = "127.0.0.1:9".into();
    let producer = crate::kafka::producer::create_producer(&config.kafka).unwrap();
    State::new(&config, producer, Arc::new(Counters::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn due_slack_covers_the_widest_bucket_and_lateness_of_any_override() {
        let c = Config::from_toml_str(
            "[services.x]\nbucket = \"5m\"\n[geos.IT]\nallowed_lateness = \"10m\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(due_slack_ms(&c.engine_config()), 5 * 60_000 + 10 * 60_000);
        assert_eq!(due_slack_ms(&EngineConfig::default()), 60_000 + 120_000);
    }
}
