//! Unit tests of the /metrics exposition and the process metrics.

use super::*;
use std::time::Duration;

#[derive(Debug)]
struct OneHistogram(HistogramSnapshot);

impl Collector for OneHistogram {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        histogram(&mut e, "x_seconds", "help text", &self.0)
    }
}

#[test]
fn histogram_renders_cumulative_buckets_sum_and_count() {
    let h = crate::kafka::Histogram::default();
    h.observe(Duration::from_millis(3));
    h.observe(Duration::from_millis(7));
    let out = render_collector(OneHistogram(h.snapshot()));
    assert!(
        out.starts_with(
            "# HELP spikewatch_x_seconds help text\n# TYPE spikewatch_x_seconds histogram\n"
        ),
        "{out}"
    );
    assert!(out.contains("spikewatch_x_seconds_bucket{le=\"0.001\"} 0\n"));
    assert!(out.contains("spikewatch_x_seconds_bucket{le=\"0.005\"} 1\n"));
    assert!(out.contains("spikewatch_x_seconds_bucket{le=\"0.01\"} 2\n"));
    assert!(out.contains("spikewatch_x_seconds_bucket{le=\"60\"} 2\n"));
    assert!(out.contains("spikewatch_x_seconds_bucket{le=\"+Inf\"} 2\n"));
    assert_eq!(out.matches("le=\"+Inf\"").count(), 1, "{out}");
    assert!(out.contains("spikewatch_x_seconds_sum 0.01\n"), "{out}");
    assert!(out.ends_with("spikewatch_x_seconds_count 2\n"), "{out}");
}

#[test]
fn build_info_names_the_version() {
    let out = Exposition::demo(Default::default(), Default::default()).render();
    assert!(
        out.contains("# TYPE spikewatch_build_info gauge\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "\nspikewatch_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{out}"
    );
}

#[test]
fn label_values_are_escaped() {
    let c = Counters::default();
    c.set_consumer_lag(vec![crate::kafka::PartitionLag {
        topic: "a\"b\\c\nd".into(),
        partition: 2,
        lag: 5,
    }]);
    let out = render_collector(SnapshotCollector(c.snapshot()));
    assert!(
        out.contains("spikewatch_consumer_lag{topic=\"a\\\"b\\\\c\\nd\",partition=\"2\"} 5\n"),
        "{out}"
    );
}

#[test]
fn run_and_demo_share_the_engine_families() {
    let names = |text: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.to_string())
            .collect()
    };
    let run = names(&Exposition::run(Default::default(), Default::default()).render());
    let demo = names(&Exposition::demo(Default::default(), Default::default()).render());
    assert!(demo.is_subset(&run), "{:?}", demo.difference(&run));
    for f in [
        "spikewatch_incidents_total counter",
        "spikewatch_outage_events_total counter",
        "spikewatch_decoded_total counter",
        "spikewatch_ready gauge",
        "spikewatch_build_info gauge",
    ] {
        assert!(demo.contains(f), "{f}: {demo:?}");
    }
    assert!(!demo.contains("spikewatch_consumer_lag gauge"));
    assert!(run.contains("spikewatch_messages_consumed_total counter"));
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
    let out = Exposition::demo(Default::default(), Default::default()).render();
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
