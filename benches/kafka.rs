//! Throughput and latency of `spikewatch run` through a real broker.
//!
//!   scripts/kafka-broker.sh start        # prints 127.0.0.1:PORT
//!   SPIKEWATCH_BENCH_BROKERS=127.0.0.1:PORT cargo bench --bench kafka [-- HOURS]
//!
//! Publishes HOURS (default 24) of the demo's traffic to fresh topics, then in the same run:
//! 1. a bare rdkafka consumer reads both input topics doing nothing (events/s);
//! 2. the pipeline (consume, decode, engine, dead letters, anomaly events, offset commits)
//!    reads the same messages (events/s, measured from its first to its last message);
//! 3. delay from a bucket's close (the advance that closed it) to its anomaly event's broker
//!    acknowledgement being observed (p50/p99, hdrhistogram).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use spikewatch::config::{Config, Secs};
use spikewatch::event::InputEvent;
use spikewatch::kafka::Counters;
use spikewatch::sim::{self, Scenario, HOUR_MS};

const PARTITIONS: i32 = 4;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let brokers = std::env::var("SPIKEWATCH_BENCH_BROKERS")
        .or_else(|_| std::env::var("SPIKEWATCH_TEST_BROKERS"))
        .expect("set SPIKEWATCH_BENCH_BROKERS=HOST:PORT (scripts/kafka-broker.sh start)");
    // `cargo test --all-targets` runs this binary without `--bench`: a one-hour smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let hours: i64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if full { 24 } else { 1 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(brokers, hours));
}

async fn bench(brokers: String, hours: i64) {
    let prefix = format!(
        "bench-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let (mentions, complaints) = (format!("{prefix}.mentions"), format!("{prefix}.complaints"));
    let (anomalies, dead) = (
        format!("{prefix}.anomalies"),
        format!("{prefix}.dead-letters"),
    );
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let new: Vec<NewTopic<'_>> = [&mentions, &complaints, &anomalies, &dead]
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    for r in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }

    // Input: the demo from day 16 00:00 (an outage at 14:10 that day).
    let s = Scenario::demo();
    let from = s.start_ms + 16 * 24 * HOUR_MS;
    let to = from + hours * HOUR_MS;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut n: u64 = 0;
    let t0 = Instant::now();
    s.generate(|t, service, geo, signal, count| {
        if t < from || t >= to {
            return;
        }
        for ev in sim::expand_events(&mut rng, t, s.bucket_ms, service, geo, signal, count) {
            let (topic, payload) = match &ev {
                InputEvent::Mention(m) => (&mentions, serde_json::to_vec(m).unwrap()),
                InputEvent::Complaint(c) => (&complaints, serde_json::to_vec(c).unwrap()),
            };
            let mut rec = FutureRecord::to(topic).key(service).payload(&payload);
            loop {
                match producer.send_result(rec) {
                    Ok(_) => break,
                    Err((_, r)) => {
                        rec = r;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }
            n += 1;
        }
    });
    producer.flush(Duration::from_secs(120)).unwrap();
    let produce_s = t0.elapsed().as_secs_f64();
    println!(
        "produced {n} messages ({hours} h of demo traffic) in {produce_s:.1} s: {:.0} msg/s",
        n as f64 / produce_s
    );

    // 1. Bare consumer.
    let bare: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{prefix}.bare"))
        .set("enable.auto.commit", "false")
        .set("fetch.queue.backoff.ms", "10") // as spikewatch's consumer
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for t in [&mentions, &complaints] {
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(t, p, Offset::Beginning).unwrap();
        }
    }
    bare.assign(&tpl).unwrap();
    let mut got = 0u64;
    let mut first = None;
    while got < n {
        let m = bare.recv().await.unwrap();
        std::hint::black_box(&m);
        first.get_or_insert_with(Instant::now);
        got += 1;
    }
    let bare_s = first.unwrap().elapsed().as_secs_f64();
    let bare_rate = n as f64 / bare_s;
    println!("bare consumer: {n} messages in {bare_s:.2} s: {bare_rate:.0} msg/s");
    drop(bare);

    // 2. The pipeline.
    let mut config = Config::default();
    let k = &mut config.kafka;
    k.brokers = brokers.clone();
    k.group_id = format!("{prefix}.pipeline");
    k.topics.mentions = mentions.clone();
    k.topics.complaints = complaints.clone();
    k.topics.anomalies = anomalies.clone();
    k.topics.dead_letters = dead.clone();
    k.topics.changelog = format!("{prefix}.state");
    k.session_timeout = Secs(6);
    k.heartbeat_interval = Secs(1);
    k.summary_interval = Secs(0);
    // The input topics exist; this creates the (compacted) changelog topic.
    k.create_topics = true;
    let counters = Arc::new(Counters::default());
    let (tx, rx) = tokio::sync::broadcast::channel(1);
    let handle = tokio::spawn(spikewatch::kafka::run_pipeline_with(
        config,
        rx,
        counters.clone(),
    ));
    let seen = || {
        let c = counters.snapshot();
        c.mentions_in + c.complaints_in
    };
    while seen() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = Instant::now();
    while seen() < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let run_s = start.elapsed().as_secs_f64();
    let run_rate = n as f64 / run_s;
    // Let the last checkpoints publish and acknowledge what the data closed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    tx.send(()).unwrap();
    let report = handle.await.unwrap().expect("pipeline ran");
    println!(
        "spikewatch run: {n} messages in {run_s:.2} s: {run_rate:.0} msg/s = {:.0}% of the bare consumer",
        100.0 * run_rate / bare_rate
    );
    println!("  {}", report.counters);
    let mut h = Histogram::<u64>::new(3).unwrap();
    for &us in &report.ack_latencies_us {
        h.record(us.max(1)).unwrap();
    }
    if h.is_empty() {
        println!("no anomaly events (is the outage inside the published hours?)");
    } else {
        println!(
            "bucket close -> anomaly event acked ({} events): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            h.len(),
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
    }
}
