//! The test broker: its address, per-test topic and group names, topic creation, and the
//! group's committed offsets on the input topics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::Instance;
use spikewatch::event::InputKind;

pub(crate) const PARTITIONS: i32 = 4;

/// The broker address, or a panic that says how to get one. Never skips.
pub(crate) fn brokers() -> String {
    let b = std::env::var("SPIKEWATCH_TEST_BROKERS").unwrap_or_else(|_| {
        panic!(
            "SPIKEWATCH_TEST_BROKERS is not set: this test needs a running Kafka-protocol broker. \
             Run scripts/test.sh (it starts one), or `scripts/kafka-broker.sh start` and export \
             SPIKEWATCH_TEST_BROKERS=127.0.0.1:PORT"
        )
    });
    let addr = b.split(',').next().unwrap().to_string();
    if std::net::TcpStream::connect_timeout(
        &addr
            .parse()
            .expect("SPIKEWATCH_TEST_BROKERS must be HOST:PORT"),
        Duration::from_secs(2),
    )
    .is_err()
    {
        panic!("no broker listening at SPIKEWATCH_TEST_BROKERS={b}: start it with scripts/kafka-broker.sh start");
    }
    b
}

/// Unique topic and group names for one test.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub(crate) prefix: String,
    pub(crate) mentions: String,
    pub(crate) complaints: String,
    /// The anomaly topic: outage events (schema version 2).
    pub(crate) outages: String,
    /// The series anomaly topic: per-series incident events (schema version 1).
    pub(crate) anomalies: String,
    pub(crate) dead_letters: String,
    pub(crate) changelog: String,
    pub(crate) group: String,
}

impl Names {
    pub(crate) fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let prefix = format!("{test}-{}-{nanos}", std::process::id());
        Self {
            mentions: format!("{prefix}.mentions"),
            complaints: format!("{prefix}.complaints"),
            outages: format!("{prefix}.anomalies"),
            anomalies: format!("{prefix}.series-anomalies"),
            dead_letters: format!("{prefix}.dead-letters"),
            changelog: format!("{prefix}.state"),
            group: format!("{prefix}.group"),
            prefix,
        }
    }

    pub(crate) fn topic(&self, kind: InputKind) -> &str {
        match kind {
            InputKind::Mention => &self.mentions,
            InputKind::Complaint => &self.complaints,
        }
    }
}

pub(crate) fn create_topics(brokers: &str, n: &Names) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let topics = [
        &n.mentions,
        &n.complaints,
        &n.outages,
        &n.anomalies,
        &n.dead_letters,
    ];
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let res = rt
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .expect("create topics");
    for r in res {
        r.expect("topic created");
    }
}

/// Committed offsets of `group` on the input topics: (topic, partition) → offset.
pub(crate) fn committed(brokers: &str, n: &Names) -> BTreeMap<(String, i32), i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &n.group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for t in [&n.mentions, &n.complaints] {
        for p in 0..PARTITIONS {
            tpl.add_partition(t, p);
        }
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
            _ => None,
        })
        .collect()
}

/// Waits until the group's committed offsets reach `target` on every input partition.
pub(crate) fn wait_committed(
    brokers: &str,
    n: &Names,
    target: &BTreeMap<(String, i32), i64>,
    timeout: Duration,
    logs: &[&Instance],
) {
    let t0 = Instant::now();
    let mut last = BTreeMap::new();
    while t0.elapsed() < timeout {
        last = committed(brokers, n);
        if target
            .iter()
            .all(|(k, v)| last.get(k).is_some_and(|c| c >= v))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let logs: Vec<String> = logs.iter().map(|i| i.log_text()).collect();
    panic!(
        "committed offsets did not reach {target:?} within {timeout:?}; last {last:?}\n{}",
        logs.join("\n-----\n")
    );
}
