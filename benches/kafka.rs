//! Throughput and latency of `spikewatch run` through a real broker.
//!
//!   scripts/kafka-broker.sh start        # prints 127.0.0.1:PORT
//!   SPIKEWATCH_BENCH_BROKERS=127.0.0.1:PORT cargo bench --bench kafka [-- HOURS [ROUNDS]]
//!
//! Publishes HOURS (default 24) of the demo's traffic to fresh topics, then ROUNDS times
//! (default 5), alternating:
//! 1. a bare rdkafka consumer reads both input topics doing nothing (events/s);
//! 2. the pipeline (consume, decode, engine, dead letters, anomaly events, state changelog,
//!    offset commits) reads the same messages in a new group (events/s, measured from its
//!    first to its last message);
//!
//! and reports the median ratio of the two, and over all rounds the delay from a bucket's close (the advance that closed it) to its anomaly event's broker
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
use spikewatch::kafka::{Counters, RunReport};
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
    let numbers: Vec<i64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let hours = numbers
        .first()
        .copied()
        .unwrap_or(if full { 24 } else { 1 });
    let rounds = numbers.get(1).copied().unwrap_or(if full { 5 } else { 1 }) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(brokers, hours, rounds));
}

async fn bench(brokers: String, hours: i64, rounds: usize) {
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

    // Rounds alternate the bare consumer and the pipeline over the same messages, so that
    // drift in the machine's load hits both; the median ratio is the result.
    let mut ratios = Vec::new();
    let mut latencies = Vec::new();
    let mut cpu = Vec::new();
    for round in 0..rounds {
        let (bare_rate, bare_cpu) = bare_consumer(
            &brokers,
            &format!("{prefix}.bare.{round}"),
            [&mentions, &complaints],
            n,
        )
        .await;
        let (run_rate, run_cpu, report) = pipeline(
            &brokers,
            &format!("{prefix}.{round}"),
            [&mentions, &complaints, &anomalies, &dead],
            n,
        )
        .await;
        let ratio = 100.0 * run_rate / bare_rate;
        println!(
            "round {}: bare consumer {bare_rate:.0} msg/s ({bare_cpu:.2} µs CPU/msg), \
             spikewatch run {run_rate:.0} msg/s ({run_cpu:.2} µs CPU/msg) = {ratio:.0}%",
            round + 1
        );
        cpu.push((bare_cpu, run_cpu));
        println!("  {}", report.counters);
        ratios.push(ratio);
        latencies.extend(report.ack_latencies_us);
    }
    ratios.sort_by(f64::total_cmp);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // The process's CPU (every thread, librdkafka's included; the broker's not) per message:
    // on a machine whose cores the broker and both consumers keep busy, this decides the
    // ratio more than anything.
    println!(
        "CPU per message, median: bare consumer {:.2} µs, spikewatch run {:.2} µs",
        median(cpu.iter().map(|c| c.0).collect()),
        median(cpu.iter().map(|c| c.1).collect())
    );
    println!(
        "spikewatch run / bare consumer over {rounds} rounds: median {:.0}% (min {:.0}%, max {:.0}%)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    let mut h = Histogram::<u64>::new(3).unwrap();
    for &us in &latencies {
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

/// A bare rdkafka consumer reading both input topics from the start, doing nothing: msg/s
/// from its first message to its `n`th, and this process's CPU µs per message meanwhile.
async fn bare_consumer(brokers: &str, group: &str, topics: [&str; 2], n: u64) -> (f64, f64) {
    let bare: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("fetch.queue.backoff.ms", "10") // as spikewatch's consumer
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(t, p, Offset::Beginning).unwrap();
        }
    }
    bare.assign(&tpl).unwrap();
    let mut got = 0u64;
    let mut first = None;
    let cpu = process_cpu_s();
    while got < n {
        let m = bare.recv().await.unwrap();
        std::hint::black_box(&m);
        first.get_or_insert_with(Instant::now);
        got += 1;
    }
    let rate = n as f64 / first.unwrap().elapsed().as_secs_f64();
    (rate, (process_cpu_s() - cpu) / n as f64 * 1e6)
}

/// CPU seconds this process has used (every thread, user and system), from /proc.
fn process_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 12th, stime 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // Clock ticks: 100 per second on Linux.
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// `spikewatch run`'s pipeline in a new group with a new changelog topic, reading the `n`
/// input messages: msg/s from its first message to its `n`th, this process's CPU µs per
/// message meanwhile, and its report after a drain.
async fn pipeline(brokers: &str, name: &str, topics: [&str; 4], n: u64) -> (f64, f64, RunReport) {
    let mut config = Config::default();
    let k = &mut config.kafka;
    k.brokers = brokers.to_string();
    k.group_id = format!("{name}.pipeline");
    k.topics.mentions = topics[0].to_string();
    k.topics.complaints = topics[1].to_string();
    k.topics.anomalies = topics[2].to_string();
    k.topics.dead_letters = topics[3].to_string();
    k.topics.changelog = format!("{name}.state");
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
    let cpu = process_cpu_s();
    while seen() < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let cpu_us = (process_cpu_s() - cpu) / n as f64 * 1e6;
    // Let the last checkpoints publish and acknowledge what the data closed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    tx.send(()).unwrap();
    (rate, cpu_us, handle.await.unwrap().expect("pipeline ran"))
}
