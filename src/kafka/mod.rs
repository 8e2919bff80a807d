//! The Kafka pipeline (`spikewatch run`): consume mentions and complaints, drive one engine per
//! input partition, publish anomaly events, dead-letter bad input, commit input offsets only
//! after everything they caused is acknowledged. See README "Kafka pipeline".

pub mod admin;
mod batch;
pub mod changelog;
pub mod consumer;
pub mod dead_letter;
pub mod metrics;
pub mod offsets;
pub mod pipeline;
pub mod producer;
pub mod settings;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

pub use metrics::{Histogram, HistogramSnapshot, PartitionLag};
pub use offsets::OffsetRuns;
pub use pipeline::{run_pipeline, run_pipeline_observed, run_pipeline_with, Observers, RunReport};
pub use settings::{KafkaSettings, PipelineConfig, SettingsError, Topics};

/// Routes librdkafka's log and error callbacks to `tracing` (target `librdkafka`).
#[derive(Debug, Clone)]
pub struct LogContext {
    role: &'static str,
}

impl LogContext {
    pub fn new(role: &'static str) -> Self {
        Self { role }
    }
}

pub(crate) fn log_rdkafka(role: &str, level: RDKafkaLogLevel, fac: &str, msg: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", role, fac, "{msg}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", role, fac, "{msg}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", role, fac, "{msg}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", role, fac, "{msg}"),
    }
}

pub(crate) fn error_rdkafka(role: &str, error: &KafkaError, reason: &str) {
    // The end of a partition, reported to the reader that asked for it (changelog restore,
    // which reads to it); librdkafka also passes it here as a global error. Not a problem.
    if matches!(
        error,
        KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
    ) {
        return;
    }
    tracing::warn!(target: "librdkafka", role, "kafka client error (retrying): {error}: {reason}");
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_rdkafka(self.role, level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        error_rdkafka(self.role, &error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for LogContext {}

/// What the pipeline did, as counters a metrics endpoint can read at any time.
#[derive(Debug, Default)]
pub struct Counters {
    pub mentions_in: AtomicU64,
    pub complaints_in: AtomicU64,
    /// Decoded and accepted by the engine (including late ones).
    pub decoded: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Dead letters per error kind (`json`, `timestamp_out_of_range`, …: a small fixed set).
    pub dead_letter_kinds: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Accepted, but their bucket had already closed.
    pub late: AtomicU64,
    /// Refused by the engine (e.g. too far ahead); also dead-lettered.
    pub rejected: AtomicU64,
    /// Per-series incident events (series topic).
    pub anomalies_produced: AtomicU64,
    /// Outage events (anomaly topic).
    pub outages_produced: AtomicU64,
    /// Both kinds, acknowledged.
    pub anomalies_acked: AtomicU64,
    pub offset_stores: AtomicU64,
    pub commits: AtomicU64,
    pub rebalances: AtomicU64,
    /// Gauges, set at every checkpoint: live series and open incidents over all partitions.
    pub series: AtomicU64,
    pub open_incidents: AtomicU64,
    /// Gauge, set at every checkpoint: estimated bytes of engine state over all partitions.
    pub engine_state_bytes: AtomicU64,
    /// Events counted only toward an ancestor series: their own series did not fit under the
    /// cardinality caps (summed over partitions, see [`Counters::observe_engine`]).
    pub cardinality_rolled_up: AtomicU64,
    /// Events refused because a new service, geo or signal did not fit under the caps (they
    /// are also `rejected` and dead-lettered).
    pub cardinality_dropped: AtomicU64,
    /// Bucket close → anomaly event acknowledged by the broker.
    pub ack_delay: Histogram,
    /// Writing a state checkpoint (the changelog).
    pub checkpoint_duration: Histogram,
    /// Gauge: bytes of the last state checkpoint.
    pub state_bytes: AtomicU64,
    /// Restoring a partition's state on assignment.
    pub restore_duration: Histogram,
    pub restored_series: AtomicU64,
    /// Per assigned input partition, from librdkafka's statistics.
    consumer_lag: Mutex<Vec<PartitionLag>>,
    /// Engine counters summed over partitions (see [`Counters::observe_engine`]).
    engine: Mutex<EngineTotals>,
    /// Changelog checkpoints committed, and the bytes they wrote.
    pub changelog_commits: AtomicU64,
    pub changelog_bytes: AtomicU64,
    /// Changelog records that could not be used (their series were rebuilt).
    pub unusable_state_records: AtomicU64,
    /// Alert delivery counters, set once when `run` starts its notifier (rendered by
    /// `crate::metrics::Exposition::run`).
    pub notify: std::sync::OnceLock<std::sync::Arc<crate::notify::NotifyStats>>,
    /// The input topics (mentions, complaints), the `topic` label of
    /// `spikewatch_messages_consumed_total`; set once by `run` (default: [`Topics::default`]'s).
    pub input_topics: std::sync::OnceLock<[String; 2]>,
}

/// What the engines counted, summed over partitions.
#[derive(Debug, Default)]
struct EngineTotals {
    /// Per partition: its engine's counts last seen.
    seen: BTreeMap<i32, crate::engine::EngineStats>,
    total: crate::engine::EngineStats,
}

impl EngineTotals {
    /// Adds what `now` counted since `before`; a count that went down is a new engine's (the
    /// partition was reassigned): all of it is new.
    fn add(&mut self, now: &crate::engine::EngineStats, before: &crate::engine::EngineStats) {
        let t = &mut self.total;
        macro_rules! delta {
            ($($f:ident),*) => {$(
                t.$f += if now.$f >= before.$f { now.$f - before.$f } else { now.$f };
            )*};
        }
        delta!(
            events,
            late,
            rejected,
            capped,
            capacity_rejected,
            series_created,
            series_seeded,
            series_expired,
            buckets_closed,
            no_data_buckets,
            incidents_opened,
            incidents_resolved,
            anomaly_events,
            outages_opened,
            outages_resolved,
            outage_events
        );
    }
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CountersSnapshot {
    pub mentions_in: u64,
    pub complaints_in: u64,
    pub decoded: u64,
    pub dead_lettered: u64,
    /// (error kind, dead letters).
    pub dead_letter_kinds: Vec<(&'static str, u64)>,
    pub late: u64,
    pub rejected: u64,
    pub anomalies_produced: u64,
    pub outages_produced: u64,
    pub anomalies_acked: u64,
    pub offset_stores: u64,
    pub commits: u64,
    pub rebalances: u64,
    pub series: u64,
    pub open_incidents: u64,
    pub engine_state_bytes: u64,
    pub cardinality_rolled_up: u64,
    pub cardinality_dropped: u64,
    pub consumer_lag: Vec<PartitionLag>,
    pub ack_delay: HistogramSnapshot,
    pub checkpoint_duration: HistogramSnapshot,
    pub state_bytes: u64,
    pub restore_duration: HistogramSnapshot,
    pub restored_series: u64,
    pub changelog_commits: u64,
    pub changelog_bytes: u64,
    pub unusable_state_records: u64,
    /// Engine counters summed over partitions (refreshed once a second).
    #[serde(skip)]
    pub engine: crate::engine::EngineStats,
    /// (mentions, complaints) topic names.
    #[serde(skip)]
    pub input_topics: [String; 2],
}

impl Counters {
    /// Counts one dead letter of `kind`.
    pub(crate) fn dead_lettered(&self, kind: &'static str) {
        Self::add(&self.dead_lettered, 1);
        *self
            .dead_letter_kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default() += 1;
    }
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// One anomaly event acknowledged, `took` after the checkpoint that closed its bucket.
    pub(crate) fn observe_ack_delay(&self, took: Duration) {
        self.ack_delay.observe(took);
    }

    /// One state checkpoint written: how long it took and its size.
    pub(crate) fn observe_checkpoint(&self, took: Duration, bytes: u64) {
        self.checkpoint_duration.observe(took);
        self.state_bytes.store(bytes, Ordering::Relaxed);
    }

    /// One partition's state restored: how long it took and how many series it holds.
    pub(crate) fn observe_restore(&self, took: Duration, series: u64) {
        self.restore_duration.observe(took);
        Counters::add(&self.restored_series, series);
    }

    /// Adds what the engine of `partition` counted since it was last observed to the engine
    /// totals and the cardinality counters. An engine whose counts went down is a new one (the
    /// partition was reassigned): all its counts are new.
    pub fn observe_engine(&self, partition: i32, stats: &crate::engine::EngineStats) {
        let mut e = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        let before = e.seen.insert(partition, stats.clone()).unwrap_or_default();
        let (capped, dropped) = (e.total.capped, e.total.capacity_rejected);
        e.add(stats, &before);
        Counters::add(&self.cardinality_rolled_up, e.total.capped - capped);
        Counters::add(
            &self.cardinality_dropped,
            e.total.capacity_rejected - dropped,
        );
    }

    /// Replaces the consumer lag table (from librdkafka's statistics).
    pub(crate) fn set_consumer_lag(&self, lag: Vec<PartitionLag>) {
        *self.consumer_lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            mentions_in: g(&self.mentions_in),
            complaints_in: g(&self.complaints_in),
            decoded: g(&self.decoded),
            dead_lettered: g(&self.dead_lettered),
            dead_letter_kinds: self
                .dead_letter_kinds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect(),
            late: g(&self.late),
            rejected: g(&self.rejected),
            anomalies_produced: g(&self.anomalies_produced),
            outages_produced: g(&self.outages_produced),
            anomalies_acked: g(&self.anomalies_acked),
            offset_stores: g(&self.offset_stores),
            commits: g(&self.commits),
            rebalances: g(&self.rebalances),
            series: g(&self.series),
            open_incidents: g(&self.open_incidents),
            engine_state_bytes: g(&self.engine_state_bytes),
            cardinality_rolled_up: g(&self.cardinality_rolled_up),
            cardinality_dropped: g(&self.cardinality_dropped),
            consumer_lag: self
                .consumer_lag
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            ack_delay: self.ack_delay.snapshot(),
            checkpoint_duration: self.checkpoint_duration.snapshot(),
            state_bytes: g(&self.state_bytes),
            restore_duration: self.restore_duration.snapshot(),
            restored_series: g(&self.restored_series),
            changelog_commits: g(&self.changelog_commits),
            changelog_bytes: g(&self.changelog_bytes),
            unusable_state_records: g(&self.unusable_state_records),
            engine: self
                .engine
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .total
                .clone(),
            input_topics: self.input_topics.get().cloned().unwrap_or_else(|| {
                let t = Topics::default();
                [t.mentions, t.complaints]
            }),
        }
    }
}

impl std::fmt::Display for CountersSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "in: {} mentions, {} complaints; decoded {}; dead-lettered {}; late {}; rejected {}; \
             anomalies {} produced / {} acked ({} outage events); commits {}; rebalances {}",
            self.mentions_in,
            self.complaints_in,
            self.decoded,
            self.dead_lettered,
            self.late,
            self.rejected,
            self.anomalies_produced + self.outages_produced,
            self.anomalies_acked,
            self.outages_produced,
            self.commits,
            self.rebalances
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    /// Parses Prometheus text format: sample (name with labels) → value; checks that every
    /// sample belongs to a family announced by HELP and TYPE lines before it.
    fn parse(text: &str) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
        let mut samples = BTreeMap::new();
        let mut types = BTreeMap::new();
        let mut helped = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                assert!(!help.is_empty(), "{line}");
                helped.insert(name.to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(helped.contains(name), "TYPE before HELP: {line}");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(
                    types.insert(name.to_string(), kind.to_string()).is_none(),
                    "{line}"
                );
            } else {
                let (key, value) = line.rsplit_once(' ').expect("sample value");
                let name = key.split('{').next().unwrap();
                assert!(
                    name.starts_with("spikewatch_") || name.starts_with("process_"),
                    "{line}"
                );
                let family = types
                    .keys()
                    .find(|f| {
                        name == f.as_str()
                            || (types[f.as_str()] == "histogram"
                                && ["_bucket", "_sum", "_count"]
                                    .iter()
                                    .any(|s| name == format!("{f}{s}")))
                    })
                    .unwrap_or_else(|| panic!("sample without TYPE: {line}"));
                if types[family] == "counter" {
                    assert!(name.ends_with("_total"), "{line}");
                }
                let v: f64 = match value {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().unwrap_or_else(|_| panic!("{line}")),
                };
                assert!(samples.insert(key.to_string(), v).is_none(), "{line}");
            }
        }
        (samples, types)
    }

    #[test]
    fn prometheus_output_parses_and_names_every_metric() {
        let c = Counters::default();
        Counters::add(&c.mentions_in, 5);
        c.observe_ack_delay(Duration::from_millis(12));
        c.observe_ack_delay(Duration::from_millis(300));
        c.observe_checkpoint(Duration::from_millis(40), 123_456);
        c.observe_checkpoint(Duration::from_millis(60), 234_567);
        c.observe_restore(Duration::from_millis(800), 1_000);
        c.observe_restore(Duration::from_millis(200), 24);
        c.engine_state_bytes.store(99, Ordering::Relaxed);
        c.set_consumer_lag(vec![
            PartitionLag {
                topic: "spikewatch.mentions".into(),
                partition: 0,
                lag: 7,
            },
            PartitionLag {
                topic: "spikewatch.complaints".into(),
                partition: 3,
                lag: 0,
            },
        ]);
        Counters::add(&c.complaints_in, 2);
        c.input_topics
            .set(["in.m".to_string(), "in.c".to_string()])
            .unwrap();
        c.dead_lettered("json");
        c.dead_lettered("json");
        c.dead_lettered("too_large");
        c.observe_engine(
            4,
            &crate::engine::EngineStats {
                incidents_opened: 3,
                incidents_resolved: 2,
                outage_events: 6,
                outages_opened: 1,
                outages_resolved: 1,
                buckets_closed: 100,
                ..Default::default()
            },
        );
        let text = crate::metrics::Exposition::run(Arc::new(c), Default::default()).render();
        let (s, types) = parse(&text);
        assert_eq!(s["spikewatch_messages_consumed_total{topic=\"in.m\"}"], 5.0);
        assert_eq!(s["spikewatch_messages_consumed_total{topic=\"in.c\"}"], 2.0);
        assert_eq!(types["spikewatch_messages_consumed_total"], "counter");
        assert_eq!(s["spikewatch_dead_lettered_total"], 3.0);
        assert_eq!(
            s["spikewatch_dead_letters_by_kind_total{kind=\"json\"}"],
            2.0
        );
        assert_eq!(
            s["spikewatch_dead_letters_by_kind_total{kind=\"too_large\"}"],
            1.0
        );
        assert_eq!(s["spikewatch_incidents_total{state=\"opened\"}"], 3.0);
        assert_eq!(s["spikewatch_incidents_total{state=\"resolved\"}"], 2.0);
        assert_eq!(s["spikewatch_outage_events_total{state=\"opened\"}"], 1.0);
        assert_eq!(s["spikewatch_outage_events_total{state=\"updated\"}"], 4.0);
        assert_eq!(s["spikewatch_outage_events_total{state=\"resolved\"}"], 1.0);
        assert_eq!(s["spikewatch_buckets_closed_total"], 100.0);
        assert_eq!(s["spikewatch_ready"], 0.0);
        assert_eq!(
            s[&format!(
                "spikewatch_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )],
            1.0
        );
        for family in [
            "spikewatch_notify_sent_total",
            "spikewatch_notify_queued",
            "process_cpu_seconds_total",
        ] {
            assert!(types.contains_key(family), "{family}: {text}");
        }
        assert_eq!(
            s["spikewatch_consumer_lag{topic=\"spikewatch.mentions\",partition=\"0\"}"],
            7.0
        );
        assert_eq!(
            s["spikewatch_consumer_lag{topic=\"spikewatch.complaints\",partition=\"3\"}"],
            0.0
        );
        assert_eq!(types["spikewatch_consumer_lag"], "gauge");
        assert_eq!(s["spikewatch_ack_delay_seconds_count"], 2.0);
        assert!((s["spikewatch_ack_delay_seconds_sum"] - 0.312).abs() < 1e-9);
        assert_eq!(s["spikewatch_ack_delay_seconds_bucket{le=\"0.01\"}"], 0.0);
        assert_eq!(s["spikewatch_ack_delay_seconds_bucket{le=\"0.025\"}"], 1.0);
        assert_eq!(s["spikewatch_ack_delay_seconds_bucket{le=\"0.5\"}"], 2.0);
        assert_eq!(s["spikewatch_ack_delay_seconds_bucket{le=\"+Inf\"}"], 2.0);
        assert_eq!(types["spikewatch_ack_delay_seconds"], "histogram");
        assert_eq!(s["spikewatch_checkpoint_duration_seconds_count"], 2.0);
        assert!((s["spikewatch_checkpoint_duration_seconds_sum"] - 0.1).abs() < 1e-9);
        assert_eq!(s["spikewatch_state_bytes"], 234_567.0);
        assert_eq!(types["spikewatch_state_bytes"], "gauge");
        assert_eq!(s["spikewatch_restore_duration_seconds_count"], 2.0);
        assert_eq!(
            s["spikewatch_restore_duration_seconds_bucket{le=\"0.25\"}"],
            1.0
        );
        assert_eq!(s["spikewatch_restored_series_total"], 1_024.0);
        assert_eq!(s["spikewatch_engine_state_bytes"], 99.0);
        for name in [
            "spikewatch_cardinality_rolled_up_total",
            "spikewatch_cardinality_dropped_total",
            "spikewatch_active_series",
            "spikewatch_open_incidents",
            "spikewatch_decoded_total",
        ] {
            assert_eq!(s[name], 0.0, "{name}");
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_the_count() {
        let c = Counters::default();
        for ms in [1, 3, 3, 20, 70_000] {
            c.observe_ack_delay(Duration::from_millis(ms));
        }
        let (s, _) = parse(&c.snapshot().prometheus());
        let mut buckets: Vec<(f64, f64)> = s
            .iter()
            .filter_map(|(k, v)| {
                let le = k
                    .strip_prefix("spikewatch_ack_delay_seconds_bucket{le=\"")?
                    .strip_suffix("\"}")?;
                Some((
                    if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap()
                    },
                    *v,
                ))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(buckets.len(), metrics::DURATION_BOUNDS_US.len() + 1);
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
        assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, 5.0));
        assert_eq!(buckets[0], (0.001, 1.0));
        assert_eq!(s["spikewatch_ack_delay_seconds_count"], 5.0);
    }

    #[test]
    fn no_lag_known_renders_the_family_without_samples() {
        let text = Counters::default().snapshot().prometheus();
        assert!(text.contains("# TYPE spikewatch_consumer_lag gauge\n"));
        assert!(!text.contains("spikewatch_consumer_lag{"));
        parse(&text);
    }

    #[test]
    fn engine_counts_are_summed_over_partitions_and_survive_a_reassignment() {
        let c = Counters::default();
        let st = |capped, dropped| crate::engine::EngineStats {
            capped,
            capacity_rejected: dropped,
            ..Default::default()
        };
        c.observe_engine(0, &st(10, 1));
        c.observe_engine(1, &st(5, 0));
        c.observe_engine(0, &st(12, 1));
        let s = c.snapshot();
        assert_eq!((s.cardinality_rolled_up, s.cardinality_dropped), (17, 1));
        // Partition 0 moved away and came back with a fresh engine.
        c.observe_engine(0, &st(3, 0));
        c.observe_engine(1, &st(5, 2));
        let s = c.snapshot();
        assert_eq!((s.cardinality_rolled_up, s.cardinality_dropped), (20, 3));
    }
}
