//! The Kafka pipeline (`spikewatch run`): consume mentions and complaints, drive one engine per
//! input partition, publish anomaly events, dead-letter bad input, commit input offsets only
//! after everything they caused is acknowledged. See README "Kafka pipeline".

pub mod admin;
pub mod changelog;
pub mod consumer;
pub mod dead_letter;
pub mod offsets;
pub mod pipeline;
pub mod producer;
pub mod settings;

use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

pub use offsets::OffsetRuns;
pub use pipeline::{run_pipeline, run_pipeline_observed, run_pipeline_with, Observers, RunReport};
pub use settings::{KafkaSettings, SettingsError, Topics};

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
    /// Accepted, but their bucket had already closed.
    pub late: AtomicU64,
    /// Refused by the engine (e.g. too far ahead); also dead-lettered.
    pub rejected: AtomicU64,
    pub anomalies_produced: AtomicU64,
    pub anomalies_acked: AtomicU64,
    pub offset_stores: AtomicU64,
    pub commits: AtomicU64,
    pub rebalances: AtomicU64,
    /// Gauges, set at every checkpoint: live series and open incidents over all partitions.
    pub series: AtomicU64,
    pub open_incidents: AtomicU64,
    /// Changelog checkpoints committed, and the bytes they wrote.
    pub changelog_commits: AtomicU64,
    pub changelog_bytes: AtomicU64,
    /// Series restored from the changelog, and changelog records that could not be used.
    pub restored_series: AtomicU64,
    pub unusable_state_records: AtomicU64,
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CountersSnapshot {
    pub mentions_in: u64,
    pub complaints_in: u64,
    pub decoded: u64,
    pub dead_lettered: u64,
    pub late: u64,
    pub rejected: u64,
    pub anomalies_produced: u64,
    pub anomalies_acked: u64,
    pub offset_stores: u64,
    pub commits: u64,
    pub rebalances: u64,
    pub series: u64,
    pub open_incidents: u64,
    pub changelog_commits: u64,
    pub changelog_bytes: u64,
    pub restored_series: u64,
    pub unusable_state_records: u64,
}

impl CountersSnapshot {
    /// Prometheus text exposition (format 0.0.4).
    pub fn prometheus(&self) -> String {
        let counters: [(&str, &str, u64); 11] = [
            (
                "mentions_in_total",
                "mention messages consumed",
                self.mentions_in,
            ),
            (
                "complaints_in_total",
                "complaint messages consumed",
                self.complaints_in,
            ),
            (
                "decoded_total",
                "messages decoded and counted by the engine",
                self.decoded,
            ),
            (
                "dead_lettered_total",
                "messages parked in the dead-letter topic",
                self.dead_lettered,
            ),
            (
                "late_total",
                "events later than the allowed lateness (counted, not applied)",
                self.late,
            ),
            (
                "rejected_total",
                "events the engine refused (dead-lettered)",
                self.rejected,
            ),
            (
                "anomalies_produced_total",
                "anomaly events produced",
                self.anomalies_produced,
            ),
            (
                "anomalies_acked_total",
                "anomaly events acknowledged by the broker",
                self.anomalies_acked,
            ),
            (
                "offset_stores_total",
                "input offset stores after acknowledgement",
                self.offset_stores,
            ),
            ("commits_total", "synchronous offset commits", self.commits),
            (
                "rebalances_total",
                "consumer group rebalances",
                self.rebalances,
            ),
        ];
        let mut out = String::new();
        for (name, help, v) in counters {
            out.push_str(&format!(
                "# HELP spikewatch_{name} {help}\n# TYPE spikewatch_{name} counter\nspikewatch_{name} {v}\n"
            ));
        }
        for (name, help, v) in [
            ("active_series", "series in memory", self.series),
            ("open_incidents", "incidents open now", self.open_incidents),
        ] {
            out.push_str(&format!(
                "# HELP spikewatch_{name} {help}\n# TYPE spikewatch_{name} gauge\nspikewatch_{name} {v}\n"
            ));
        }
        out
    }
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            mentions_in: g(&self.mentions_in),
            complaints_in: g(&self.complaints_in),
            decoded: g(&self.decoded),
            dead_lettered: g(&self.dead_lettered),
            late: g(&self.late),
            rejected: g(&self.rejected),
            anomalies_produced: g(&self.anomalies_produced),
            anomalies_acked: g(&self.anomalies_acked),
            offset_stores: g(&self.offset_stores),
            commits: g(&self.commits),
            rebalances: g(&self.rebalances),
            series: g(&self.series),
            open_incidents: g(&self.open_incidents),
            changelog_commits: g(&self.changelog_commits),
            changelog_bytes: g(&self.changelog_bytes),
            restored_series: g(&self.restored_series),
            unusable_state_records: g(&self.unusable_state_records),
        }
    }
}

impl std::fmt::Display for CountersSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "in: {} mentions, {} complaints; decoded {}; dead-lettered {}; late {}; rejected {}; \
             anomalies {} produced / {} acked; commits {}; rebalances {}",
            self.mentions_in,
            self.complaints_in,
            self.decoded,
            self.dead_lettered,
            self.late,
            self.rejected,
            self.anomalies_produced,
            self.anomalies_acked,
            self.commits,
            self.rebalances
        )
    }
}
