//! Building blocks of `/metrics` beyond plain counters: fixed-bucket histograms, consumer lag
//! from librdkafka's statistics, build and process metrics, and the Prometheus text format
//! helpers.

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// Whether librdkafka statistics show a connection to some broker up (`state: "UP"`).
/// Unreadable statistics say no.
pub fn any_broker_up(json: &[u8]) -> bool {
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

/// `spikewatch_build_info{version="…"} 1`: which version each instance runs (a rolling upgrade
/// shows two), and a series to join other targets' metrics with (`and on(instance, job)`).
pub fn build_info(out: &mut String) {
    header(
        out,
        "build_info",
        "gauge",
        "always 1; the version label is the running spikewatch version",
    );
    let _ = writeln!(
        out,
        "spikewatch_build_info{{version=\"{}\"}} 1",
        label_value(env!("CARGO_PKG_VERSION"))
    );
}

/// The standard `process_*` metrics of Prometheus client libraries (CPU, memory, file
/// descriptors, start time), read from `/proc/self`. Nothing on other systems or if `/proc`
/// is unreadable: a missing metric is better than a wrong one.
pub fn process(out: &mut String) {
    if let Some(p) = ProcessStats::read() {
        p.render(out);
    }
}

/// What [`process`] reports.
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

    fn render(&self, out: &mut String) {
        let mut family = |name: &str, kind: &str, help: &str, v: String| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {v}");
        };
        family(
            "process_cpu_seconds_total",
            "counter",
            "user and system CPU time spent, in seconds",
            float(self.cpu_seconds),
        );
        family(
            "process_resident_memory_bytes",
            "gauge",
            "resident memory size in bytes",
            self.resident_bytes.to_string(),
        );
        family(
            "process_virtual_memory_bytes",
            "gauge",
            "virtual memory size in bytes",
            self.virtual_bytes.to_string(),
        );
        family(
            "process_start_time_seconds",
            "gauge",
            "start time of the process since the Unix epoch, in seconds",
            float(self.start_time_seconds),
        );
        if let Some(n) = self.open_fds {
            family(
                "process_open_fds",
                "gauge",
                "open file descriptors",
                n.to_string(),
            );
        }
        if let Some(n) = self.max_fds {
            family(
                "process_max_fds",
                "gauge",
                "limit on open file descriptors",
                n.to_string(),
            );
        }
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

    #[test]
    fn build_info_names_the_version() {
        let mut out = String::new();
        build_info(&mut out);
        assert!(
            out.contains("# TYPE spikewatch_build_info gauge\n"),
            "{out}"
        );
        assert!(
            out.ends_with(&format!(
                "spikewatch_build_info{{version=\"{}\"}} 1\n",
                env!("CARGO_PKG_VERSION")
            )),
            "{out}"
        );
    }

    #[test]
    fn process_stats_are_parsed_from_proc() {
        // A command name with a space and a parenthesis, as proc(5) allows.
        let stat = "4242 (spike watch) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 50 0 0 20 0 9 0 12345 987654321 2000 18446744073709551615";
        let status = "Name:\tspikewatch\nVmPeak:\t  999 kB\nVmRSS:\t    8000 kB\n";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
        let p = ProcessStats::parse(stat, status, boot).unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.resident_bytes, 8_192_000);
        assert_eq!(p.virtual_bytes, 987_654_321);
        assert!((p.start_time_seconds - 1_700_000_123.45).abs() < 1e-3);
        assert_eq!(
            parse_max_open_files(
                "Limit                     Soft Limit           Hard Limit           Units\n\
                 Max open files            1024                 524288               files\n"
            ),
            Some(1024)
        );
        assert_eq!(ProcessStats::parse("garbage", status, boot), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_of_this_process_are_plausible() {
        let mut out = String::new();
        process(&mut out);
        let v = |name: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name} in {out}"))
                .parse()
                .unwrap()
        };
        assert!(v("process_resident_memory_bytes") > 1e6, "{out}");
        assert!(v("process_open_fds") >= 3.0, "{out}");
        assert!(v("process_max_fds") >= v("process_open_fds"), "{out}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = v("process_start_time_seconds");
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "{start} vs {now}"
        );
        assert!(out.contains("# TYPE process_cpu_seconds_total counter\n"));
    }
}
