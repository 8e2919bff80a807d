//! Building blocks of `/metrics` beyond plain counters: fixed-bucket histograms and consumer
//! lag from librdkafka's statistics (encoded by the top-level `metrics` exposition).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds (microseconds) of the duration histograms' buckets: 1 ms … 60 s, plus `+Inf`.
pub(crate) const DURATION_BOUNDS_US: [u64; 15] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000, 60_000_000,
];
const NB: usize = DURATION_BOUNDS_US.len() + 1;

/// A duration histogram with fixed buckets (`DURATION_BOUNDS_US`), lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    counts: [AtomicU64; NB],
    sum_us: AtomicU64,
}

/// A copy of a [`Histogram`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HistogramSnapshot {
    /// Per bucket (not cumulative), bounds `DURATION_BOUNDS_US` then `+Inf`.
    pub buckets: [u64; NB],
    pub sum_us: u64,
    pub count: u64,
}

impl Histogram {
    pub(crate) fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = DURATION_BOUNDS_US.partition_point(|&b| b < us);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let buckets: [u64; NB] = std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed));
        HistogramSnapshot {
            buckets,
            sum_us: self.sum_us.load(Ordering::Relaxed),
            count: buckets.iter().sum(),
        }
    }
}

impl HistogramSnapshot {
    #[cfg(test)]
    /// The smallest bucket bound (seconds) below which at least `q` of the observations fall:
    /// an upper bound of the `q` quantile. `None` without observations; `+Inf` past 60 s.
    pub(crate) fn quantile_upper_bound(&self, q: f64) -> Option<f64> {
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
pub(crate) fn lag_from_statistics(json: &[u8]) -> Result<Vec<PartitionLag>, serde_json::Error> {
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

/// Whether librdkafka statistics show a connection to some broker up (`state: "UP"`).
/// Unreadable statistics say no.
pub(crate) fn any_broker_up(json: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Broker {
        #[serde(default)]
        state: String,
        /// `internal`: librdkafka's own pseudo-broker, always up.
        #[serde(default)]
        source: String,
    }
    #[derive(serde::Deserialize)]
    struct Brokers {
        #[serde(default)]
        brokers: std::collections::HashMap<String, Broker>,
    }
    serde_json::from_slice::<Brokers>(json).is_ok_and(|s| {
        s.brokers
            .values()
            .any(|b| b.state == "UP" && b.source != "internal")
    })
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
}
