//! The `/metrics` exposition of `spikewatch run` and `spikewatch demo --http-addr`: one
//! [`prometheus_client`] registry per server, encoded in the Prometheus text format 0.0.4
//! ([`CONTENT_TYPE`]) by the crate's encoder.
//!
//! The hot path never touches the registry: the pipeline and the engines count into plain
//! atomics ([`Counters`]), and collectors read a [`CountersSnapshot`] of them at scrape time.
//! `run` and `demo` share the families of the engines (`encode_engine`); `run` adds the
//! Kafka pipeline's, the alert delivery's and readiness. Both add `spikewatch_build_info` and
//! the standard `process_*` metrics. README "Metrics" lists every family.
//!
//! The unit tests are in `tests` (`metrics/tests.rs`).

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

pub use crate::prom::{
    counter, counter_family, gauge, gauge_family, render_collector, CONTENT_TYPE, PREFIX,
};

use crate::http::Readiness;
use crate::kafka::metrics::DURATION_BOUNDS_US;
use crate::kafka::{Counters, CountersSnapshot, HistogramSnapshot};

/// A registry of everything one server exposes.
#[derive(Debug)]
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    /// Build info, process metrics, and what `own` registers under the `spikewatch_` prefix.
    fn new(own: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::default();
        let sw = registry.sub_registry_with_prefix(PREFIX);
        sw.register(
            "build",
            "always 1; the version label is the running spikewatch version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        own(sw);
        // Unprefixed: the standard names every Prometheus client uses.
        registry
            .sub_registry_with_labels(std::iter::empty())
            .register_collector(Box::new(ProcessCollector));
        Self { registry }
    }

    /// `spikewatch run`: the engines, the Kafka pipeline, alert delivery and readiness.
    pub fn run(counters: Arc<Counters>, readiness: Arc<Readiness>) -> Self {
        Self::new(|r| {
            r.register_collector(Box::new(RunCollector(counters)));
            r.register_collector(Box::new(readiness));
        })
    }

    /// `spikewatch demo --http-addr`: the engine counters of the finished run and readiness.
    pub fn demo(counters: Arc<Counters>, readiness: Arc<Readiness>) -> Self {
        Self::new(|r| {
            r.register_collector(Box::new(EngineCollector(counters)));
            r.register_collector(Box::new(readiness));
        })
    }

    /// The text exposition now ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            // Only a collector's own formatting error can get here; serve what was written.
            tracing::error!("cannot encode /metrics: {e}");
        }
        out
    }
}

/// Engines, pipeline and alert delivery, from one snapshot per scrape.
#[derive(Debug)]
struct RunCollector(Arc<Counters>);

impl Collector for RunCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let snap = self.0.snapshot();
        encode_engine(&snap, &mut e)?;
        encode_pipeline(&snap, &mut e)?;
        match self.0.notify.get() {
            Some(n) => n.encode_metrics(&mut e),
            // The families with no output configured too, so that rules and dashboards can
            // name them.
            None => crate::notify::NotifyStats::default().encode_metrics(&mut e),
        }
    }
}

/// The engine families only (`demo`).
#[derive(Debug)]
struct EngineCollector(Arc<Counters>);

impl Collector for EngineCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        encode_engine(&self.0.snapshot(), &mut e)
    }
}

/// Engine and pipeline families of a fixed snapshot ([`CountersSnapshot::prometheus`]; tests
/// parse it).
#[cfg(test)]
#[derive(Debug)]
struct SnapshotCollector(CountersSnapshot);

/// Defined here rather than in `kafka`: the exposition reads the counters, not the other way
/// round.
#[cfg(test)]
impl CountersSnapshot {
    /// The engine and pipeline families of this snapshot in the Prometheus text format 0.0.4
    /// (what `/metrics` of `run` serves of them).
    pub(crate) fn prometheus(&self) -> String {
        render_collector(SnapshotCollector(self.clone()))
    }
}

#[cfg(test)]
impl Collector for SnapshotCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        encode_engine(&self.0, &mut e)?;
        encode_pipeline(&self.0, &mut e)
    }
}

/// What the detection engines counted: the same families in `run` (summed over the
/// assigned partitions) and `demo`.
pub(crate) fn encode_engine(s: &CountersSnapshot, e: &mut DescriptorEncoder) -> fmt::Result {
    let en = &s.engine;
    counter(
        e,
        "decoded",
        "events decoded and counted by the engines (late ones included)",
        s.decoded,
    )?;
    counter(
        e,
        "late",
        "events later than the allowed lateness (counted, not applied)",
        s.late,
    )?;
    counter(
        e,
        "rejected",
        "events the engines refused (dead-lettered by run)",
        s.rejected,
    )?;
    counter(
        e,
        "cardinality_rolled_up",
        "events counted only toward an ancestor series because their own series did not fit \
         under engine.max_geos / max_series / max_series_per_service",
        s.cardinality_rolled_up,
    )?;
    counter(
        e,
        "cardinality_dropped",
        "events refused because a new service, geo or signal did not fit under \
         engine.max_services / max_geos (also counted as rejected and dead-lettered)",
        s.cardinality_dropped,
    )?;
    counter(
        e,
        "buckets_closed",
        "series buckets closed and scored",
        en.buckets_closed,
    )?;
    counter(e, "series_created", "series created", en.series_created)?;
    counter(
        e,
        "series_expired",
        "series dropped after engine.series_ttl without events",
        en.series_expired,
    )?;
    counter_family(
        e,
        "incidents",
        "per-series incidents, by state: opened, resolved",
        [
            ([("state", "opened")], en.incidents_opened),
            ([("state", "resolved")], en.incidents_resolved),
        ],
    )?;
    counter(
        e,
        "anomaly_events",
        "per-series incident events the engines emitted (opened, updated, resolved)",
        en.anomaly_events,
    )?;
    let updated = en
        .outage_events
        .saturating_sub(en.outages_opened + en.outages_resolved);
    counter_family(
        e,
        "outage_events",
        "outage events the engines emitted, by state: opened, updated, resolved",
        [
            ([("state", "opened")], en.outages_opened),
            ([("state", "updated")], updated),
            ([("state", "resolved")], en.outages_resolved),
        ],
    )?;
    gauge(e, "active_series", "series in memory", s.series)?;
    gauge(e, "open_incidents", "incidents open now", s.open_incidents)?;
    gauge(
        e,
        "engine_state_bytes",
        "estimated bytes of engine state in memory over all assigned partitions",
        s.engine_state_bytes,
    )
}

/// What the Kafka pipeline of `run` counted.
pub(crate) fn encode_pipeline(s: &CountersSnapshot, e: &mut DescriptorEncoder) -> fmt::Result {
    counter_family(
        e,
        "messages_consumed",
        "input messages consumed, bad ones included, per input topic",
        [
            ([("topic", s.input_topics[0].as_str())], s.mentions_in),
            ([("topic", s.input_topics[1].as_str())], s.complaints_in),
        ],
    )?;
    counter(
        e,
        "dead_lettered",
        "messages parked in the dead-letter topic",
        s.dead_lettered,
    )?;
    counter_family(
        e,
        "dead_letters_by_kind",
        "messages parked in the dead-letter topic, by error kind (the header \
         spikewatch.error.kind they carry)",
        s.dead_letter_kinds
            .iter()
            .map(|(k, n)| ([("kind", *k)], *n)),
    )?;
    for (name, help, v) in [
        (
            "outages_produced",
            "outage events produced (anomaly topic)",
            s.outages_produced,
        ),
        (
            "anomalies_produced",
            "per-series incident events produced (series anomaly topic)",
            s.anomalies_produced,
        ),
        (
            "anomalies_acked",
            "outage and series incident events acknowledged by the broker",
            s.anomalies_acked,
        ),
        (
            "offset_stores",
            "input offset stores after acknowledgement",
            s.offset_stores,
        ),
        ("commits", "synchronous offset commits", s.commits),
        ("rebalances", "consumer group rebalances", s.rebalances),
        (
            "restored_series",
            "series restored into engines on partition assignment",
            s.restored_series,
        ),
        (
            "changelog_commits",
            "changelog checkpoints committed (state and input offsets durable)",
            s.changelog_commits,
        ),
        (
            "changelog_bytes",
            "bytes written to the changelog topic",
            s.changelog_bytes,
        ),
        (
            "unusable_state_records",
            "changelog records that could not be used (corrupt, newer format); their series \
             were rebuilt from new input",
            s.unusable_state_records,
        ),
    ] {
        counter(e, name, help, v)?;
    }
    gauge(
        e,
        "state_bytes",
        "bytes of the last state checkpoint written",
        s.state_bytes,
    )?;
    gauge_family(
        e,
        "consumer_lag",
        "messages between an assigned input partition's high watermark and the group's \
         committed offset (librdkafka statistics, every kafka.statistics_interval_ms)",
        s.consumer_lag.iter().map(|l| {
            (
                ([("topic", l.topic.as_str())], [("partition", l.partition)]),
                l.lag,
            )
        }),
    )?;
    histogram(
        e,
        "ack_delay_seconds",
        "from the checkpoint that closed a bucket to its anomaly event acknowledged by the \
         broker (observed every 10 ms)",
        &s.ack_delay,
    )?;
    histogram(
        e,
        "checkpoint_duration_seconds",
        "time to write a state checkpoint",
        &s.checkpoint_duration,
    )?;
    histogram(
        e,
        "restore_duration_seconds",
        "time to restore a partition's state on assignment",
        &s.restore_duration,
    )
}

/// A duration histogram in seconds: buckets [`DURATION_BOUNDS_US`] and `+Inf`, `_sum`,
/// `_count`.
pub(crate) fn histogram(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &HistogramSnapshot,
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    // Per bucket, not cumulative: the encoder sums them up.
    let buckets: Vec<(f64, u64)> = DURATION_BOUNDS_US
        .iter()
        .map(|&b| b as f64 / 1e6)
        .chain([f64::INFINITY])
        .zip(h.buckets)
        .collect();
    m.encode_histogram::<NoLabelSet>(h.sum_us as f64 / 1e6, h.count, &buckets, None)
}

/// The standard `process_*` metrics of Prometheus client libraries (CPU, memory, file
/// descriptors, start time), read from `/proc/self` at scrape time. Nothing on other systems
/// or if `/proc` is unreadable: a missing metric is better than a wrong one.
#[derive(Debug)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        match ProcessStats::read() {
            Some(p) => p.encode(&mut e),
            None => Ok(()),
        }
    }
}

/// What [`ProcessCollector`] reports.
#[derive(Debug, Clone, PartialEq)]
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    start_time_seconds: f64,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

/// Linux reports CPU times and start times in USER_HZ ticks, which is 100 on every
/// architecture Linux userspace sees (the kernel converts from its internal HZ); asking
/// `sysconf` would need libc for a constant.
const USER_HZ: f64 = 100.0;

impl ProcessStats {
    fn read() -> Option<Self> {
        if !cfg!(target_os = "linux") {
            return None;
        }
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let mut p = Self::parse(&stat, &status, &boot)?;
        p.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        p.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| parse_max_open_files(&l));
        Some(p)
    }

    /// From `/proc/self/stat`, `/proc/self/status` and `/proc/stat` (see proc(5)).
    fn parse(stat: &str, status: &str, boot: &str) -> Option<Self> {
        // The command name (field 2) is in parentheses and may itself contain spaces or ')'.
        let after_comm = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = after_comm.split_whitespace().collect();
        // f[0] is field 3 (state): field N is f[N - 3].
        let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let (utime, stime, start, vsize) = (field(14)?, field(15)?, field(22)?, field(23)?);
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        };
        let btime = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(Self {
            cpu_seconds: (utime + stime) as f64 / USER_HZ,
            resident_bytes: kb("VmRSS:")? * 1024,
            virtual_bytes: vsize,
            start_time_seconds: btime as f64 + start as f64 / USER_HZ,
            open_fds: None,
            max_fds: None,
        })
    }

    fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        counter(
            e,
            "process_cpu_seconds",
            "user and system CPU time spent, in seconds",
            self.cpu_seconds,
        )?;
        gauge(
            e,
            "process_resident_memory_bytes",
            "resident memory size in bytes",
            self.resident_bytes,
        )?;
        gauge(
            e,
            "process_virtual_memory_bytes",
            "virtual memory size in bytes",
            self.virtual_bytes,
        )?;
        gauge(
            e,
            "process_start_time_seconds",
            "start time of the process since the Unix epoch, in seconds",
            self.start_time_seconds,
        )?;
        if let Some(n) = self.open_fds {
            gauge(e, "process_open_fds", "open file descriptors", n)?;
        }
        if let Some(n) = self.max_fds {
            gauge(e, "process_max_fds", "limit on open file descriptors", n)?;
        }
        Ok(())
    }
}

/// The soft limit of "Max open files" in `/proc/self/limits` (`None` if unlimited).
fn parse_max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests;
