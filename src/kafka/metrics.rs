//! Building blocks of `/metrics` beyond plain counters: fixed-bucket histograms, a recent
//! rate, consumer lag from librdkafka's statistics, and the Prometheus text format helpers.

use std::collections::VecDeque;
use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Upper bounds (microseconds) of the duration histograms' buckets: 1 ms … 60 s, plus `+Inf`.
pub const DURATION_BOUNDS_US: [u64; 15] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000, 60_000_000,
];
const NB: usize = DURATION_BOUNDS_US.len() + 1;

/// A duration histogram with fixed buckets ([`DURATION_BOUNDS_US`]), lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    counts: [AtomicU64; NB],
    sum_us: AtomicU64,
}

/// A copy of a [`Histogram`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HistogramSnapshot {
    /// Per bucket (not cumulative), bounds [`DURATION_BOUNDS_US`] then `+Inf`.
    pub buckets: [u64; NB],
    pub sum_us: u64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = DURATION_BOUNDS_US.partition_point(|&b| b < us);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: [u64; NB] = std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed));
        HistogramSnapshot {
            buckets,
            sum_us: self.sum_us.load(Ordering::Relaxed),
            count: buckets.iter().sum(),
        }
    }
}

impl HistogramSnapshot {
    /// The smallest bucket bound (seconds) below which at least `q` of the observations fall:
    /// an upper bound of the `q` quantile. `None` without observations; `+Inf` past 60 s.
    pub fn quantile_upper_bound(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let want = (q * self.count as f64).ceil().max(1.0) as u64;
        let mut cum = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            cum += n;
            if cum >= want {
                return Some(
                    DURATION_BOUNDS_US
                        .get(i)
                        .map_or(f64::INFINITY, |&b| b as f64 / 1e6),
                );
            }
        }
        Some(f64::INFINITY)
    }
}

/// Samples of a running total, for its rate over the last [`RateWindow::WINDOW`].
#[derive(Debug, Default)]
pub struct RateWindow {
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    pub const WINDOW: Duration = Duration::from_secs(60);
    /// Samples closer together than this are not kept (bounds memory at any sampling rate).
    const MIN_SPACING: Duration = Duration::from_millis(500);

    /// Records `total` at `now` and returns the rate per second since the oldest sample kept:
    /// the newest one at least [`Self::WINDOW`] old, or the oldest one if none is. 0 with
    /// less than 100 ms of history.
    pub fn sample(&mut self, now: Instant, total: u64) -> f64 {
        if self
            .samples
            .back()
            .is_none_or(|&(t, _)| now.saturating_duration_since(t) >= Self::MIN_SPACING)
        {
            self.samples.push_back((now, total));
        }
        // Drop samples while the next one is old enough to span the whole window.
        while self.samples.len() > 1
            && now.saturating_duration_since(self.samples[1].0) >= Self::WINDOW
        {
            self.samples.pop_front();
        }
        let &(t0, n0) = self.samples.front().expect("just pushed");
        let span = now.saturating_duration_since(t0);
        if span < Duration::from_millis(100) {
            return 0.0;
        }
        total.saturating_sub(n0) as f64 / span.as_secs_f64()
    }
}

/// Consumer lag of one assigned input partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Messages between the partition's high watermark and the group's committed offset.
    pub lag: i64,
}

/// The part of librdkafka's statistics JSON that `/metrics` uses.
#[derive(Debug, Deserialize)]
struct Stats {
    #[serde(default)]
    topics: std::collections::BTreeMap<String, StatsTopic>,
}

#[derive(Debug, Deserialize)]
struct StatsTopic {
    #[serde(default)]
    partitions: std::collections::BTreeMap<String, StatsPartition>,
}

#[derive(Debug, Deserialize)]
struct StatsPartition {
    partition: i32,
    #[serde(default)]
    desired: bool,
    #[serde(default = "unknown")]
    consumer_lag: i64,
}

fn unknown() -> i64 {
    -1
}

/// Lag of every partition assigned to this consumer whose lag librdkafka knows (it does once
/// the partition has a committed offset and a high watermark), sorted.
pub fn lag_from_statistics(json: &[u8]) -> Result<Vec<PartitionLag>, serde_json::Error> {
    let stats: Stats = serde_json::from_slice(json)?;
    let mut out: Vec<PartitionLag> = stats
        .topics
        .into_iter()
        .flat_map(|(topic, t)| {
            t.partitions
                .into_values()
                // -1 is librdkafka's internal "unassigned" partition.
                .filter(|p| p.partition >= 0 && p.desired && p.consumer_lag >= 0)
                .map(move |p| PartitionLag {
                    topic: topic.clone(),
                    partition: p.partition,
                    lag: p.consumer_lag,
                })
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Prometheus text format writers (exposition format 0.0.4); names get the `spikewatch_`
/// prefix.
pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP spikewatch_{name} {help}");
    let _ = writeln!(out, "# TYPE spikewatch_{name} {kind}");
}

pub(crate) fn scalar(out: &mut String, name: &str, kind: &str, help: &str, v: impl Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "spikewatch_{name} {v}");
}

/// A label value with `\`, `"` and newlines escaped.
pub(crate) fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Formats a float the way Prometheus reads it (`+Inf`, `NaN`).
pub(crate) fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// A histogram in seconds: `_bucket{le=…}` (cumulative), `_sum`, `_count`.
pub(crate) fn histogram(out: &mut String, name: &str, help: &str, h: &HistogramSnapshot) {
    header(out, name, "histogram", help);
    let mut cum = 0;
    for (i, n) in h.buckets.iter().enumerate() {
        cum += n;
        let le = DURATION_BOUNDS_US
            .get(i)
            .map_or("+Inf".to_string(), |&b| float(b as f64 / 1e6));
        let _ = writeln!(out, "spikewatch_{name}_bucket{{le=\"{le}\"}} {cum}");
    }
    let _ = writeln!(
        out,
        "spikewatch_{name}_sum {}",
        float(h.sum_us as f64 / 1e6)
    );
    let _ = writeln!(out, "spikewatch_{name}_count {}", h.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_inclusive_upper_bounds() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(1_000)); // le 0.001
        h.observe(Duration::from_micros(1_001)); // le 0.0025
        h.observe(Duration::from_millis(40)); // le 0.05
        h.observe(Duration::from_secs(3600)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[5], 1);
        assert_eq!(s.buckets[NB - 1], 1);
        assert_eq!(s.sum_us, 1_000 + 1_001 + 40_000 + 3_600_000_000);
        assert_eq!(s.quantile_upper_bound(0.5), Some(0.0025));
        assert_eq!(s.quantile_upper_bound(0.75), Some(0.05));
        assert_eq!(s.quantile_upper_bound(0.99), Some(f64::INFINITY));
        assert_eq!(HistogramSnapshot::default().quantile_upper_bound(0.5), None);
    }

    #[test]
    fn histogram_renders_cumulative_buckets_sum_and_count() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(7));
        let mut out = String::new();
        histogram(&mut out, "x_seconds", "help text", &h.snapshot());
        assert!(out.starts_with(
            "# HELP spikewatch_x_seconds help text\n# TYPE spikewatch_x_seconds histogram\n"
        ));
        assert!(out.contains("spikewatch_x_seconds_bucket{le=\"0.001\"} 0\n"));
        assert!(out.contains("spikewatch_x_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(out.contains("spikewatch_x_seconds_bucket{le=\"0.01\"} 2\n"));
        assert!(out.contains("spikewatch_x_seconds_bucket{le=\"60\"} 2\n"));
        assert!(out.contains("spikewatch_x_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(out.contains("spikewatch_x_seconds_sum 0.01\n"));
        assert!(out.ends_with("spikewatch_x_seconds_count 2\n"));
    }

    #[test]
    fn rate_covers_about_the_last_minute() {
        let t0 = Instant::now();
        let mut r = RateWindow::default();
        assert_eq!(r.sample(t0, 0), 0.0);
        // 100 events/s for two minutes, sampled every 5 s.
        let mut rate = 0.0;
        for i in 1..=24u64 {
            rate = r.sample(t0 + Duration::from_secs(5 * i), 500 * i);
        }
        assert!((rate - 100.0).abs() < 1e-9, "{rate}");
        // Then nothing for 30 s: half the window is quiet.
        let quiet = r.sample(t0 + Duration::from_secs(150), 12_000);
        assert!((quiet - 50.0).abs() < 1e-9, "{quiet}");
        // Then nothing for two more minutes.
        let idle = r.sample(t0 + Duration::from_secs(300), 12_000);
        assert_eq!(idle, 0.0);
        assert!(r.samples.len() <= 2, "{:?}", r.samples);
    }

    #[test]
    fn rate_keeps_few_samples_when_sampled_often() {
        let t0 = Instant::now();
        let mut r = RateWindow::default();
        for i in 0..10_000u64 {
            r.sample(t0 + Duration::from_millis(10 * i), i);
        }
        assert!(r.samples.len() <= 2 + 60_000 / 500, "{}", r.samples.len());
    }

    #[test]
    fn lag_is_read_for_assigned_partitions_with_a_known_lag() {
        let json = br#"{"name":"spikewatch#consumer-1","type":"consumer","ts":1,
            "topics":{
              "m":{"topic":"m","partitions":{
                "0":{"partition":0,"desired":true,"consumer_lag":12,"hi_offset":40},
                "1":{"partition":1,"desired":false,"consumer_lag":-1},
                "2":{"partition":2,"desired":true,"consumer_lag":-1},
                "-1":{"partition":-1,"desired":false,"consumer_lag":-1}}},
              "c":{"topic":"c","partitions":{
                "3":{"partition":3,"desired":true,"consumer_lag":0}}}}}"#;
        let lag = lag_from_statistics(json).unwrap();
        assert_eq!(
            lag,
            vec![
                PartitionLag {
                    topic: "c".into(),
                    partition: 3,
                    lag: 0
                },
                PartitionLag {
                    topic: "m".into(),
                    partition: 0,
                    lag: 12
                },
            ]
        );
        assert_eq!(lag_from_statistics(b"{}").unwrap(), vec![]);
        assert!(lag_from_statistics(b"not json").is_err());
    }

    #[test]
    fn label_values_and_floats_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(0.25), "0.25");
        assert_eq!(float(1.0), "1");
    }
}
