//! Restore time of a changelog partition: `cargo bench --bench restore`.
//!
//! Builds one engine with ~100k series, writes its changelog checkpoint and measures how long
//! rebuilding the engine takes: decoding and choosing the records (`changelog::restore`) plus
//! importing them (`Engine::restore_layout`). With `SPIKEWATCH_BENCH_BROKERS=HOST:PORT` it also
//! produces the records to a fresh topic and measures the whole restore an assigned partition
//! goes through: reading the partition from the broker, then the same rebuild.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use spikewatch::config::Config;
use spikewatch::engine::{Engine, Observation};
use spikewatch::event::AnomalyEvent;
use spikewatch::kafka::changelog::{self, ChangelogWriter, Record};
use spikewatch::kafka::KafkaSettings;

const T0: i64 = 1_704_067_200_000;

fn config() -> Config {
    let mut cfg = Config::default();
    cfg.engine.max_series = 2_000_000;
    cfg.engine.max_series_per_service = 2_000_000;
    cfg.engine.max_geos = 2_000_000;
    cfg
}

/// ~100k series: 99,000 cities in 100 countries, one service, one signal, a day of buckets.
fn engine() -> Engine {
    let mut e = Engine::new(config());
    let mut sink: Vec<AnomalyEvent> = Vec::new();
    for minute in 0..30 {
        for i in 0..99_000usize {
            let geo = format!("C{:02}-G{i}", i % 100);
            e.observe(Observation {
                service: "svc",
                geo: &geo,
                signal: "complaints",
                ts_ms: T0 + minute * 60_000,
                amount: 1.0 + (i % 7) as f64,
            })
            .expect("valid observation");
        }
        e.advance(T0 + minute * 60_000, &mut sink);
    }
    e
}

fn rebuild(records: Vec<Record>) -> (Engine, Duration, Duration) {
    let t = Instant::now();
    let mut r = changelog::restore(records);
    let decode = t.elapsed();
    let t = Instant::now();
    let mut e = Engine::new(config());
    let commit = r.commit.take().expect("a commit");
    let report = e.restore_layout(commit.layout, std::mem::take(&mut r.series));
    assert!(report.skipped.is_empty());
    (e, decode, t.elapsed())
}

fn main() {
    let mut e = engine();
    let series = e.series_count();
    let mut w = ChangelogWriter::default();
    let t = Instant::now();
    let out = w.checkpoint(
        e.take_changes(),
        &["m".to_string(), "c".to_string()],
        [Some(1), Some(1)],
        [None, None],
        series as u64,
    );
    let encode = t.elapsed();
    let mut records = out.records;
    records.push((out.commit_key, Some(out.commit)));
    println!(
        "{series} series: checkpoint {} records, {:.1} MB, encoded in {:.0} ms",
        records.len(),
        out.bytes as f64 / 1e6,
        encode.as_secs_f64() * 1e3
    );
    for run in 1..=3 {
        let (restored, decode, import) = rebuild(records.clone());
        assert_eq!(restored.series_count(), series);
        println!(
            "run {run}: rebuild from records: decode+choose {:.0} ms, import {:.0} ms, total {:.0} ms",
            decode.as_secs_f64() * 1e3,
            import.as_secs_f64() * 1e3,
            (decode + import).as_secs_f64() * 1e3
        );
    }

    let Ok(brokers) = std::env::var("SPIKEWATCH_BENCH_BROKERS") else {
        println!("(set SPIKEWATCH_BENCH_BROKERS=HOST:PORT to include reading from a broker)");
        return;
    };
    let topic = format!(
        "bench-restore-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .set("message.max.bytes", "20000000")
        .create()
        .unwrap();
    let settings = KafkaSettings {
        brokers: brokers.clone(),
        group_id: "bench-restore".into(),
        ..KafkaSettings::default()
    };
    rt.block_on(async {
        let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
            ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .create()
                .unwrap();
        admin
            .create_topics(
                &[rdkafka::admin::NewTopic::new(
                    &topic,
                    1,
                    rdkafka::admin::TopicReplication::Fixed(1),
                )],
                &rdkafka::admin::AdminOptions::new(),
            )
            .await
            .unwrap();
        let mut futs = Vec::new();
        for (k, v) in &records {
            let mut rec = FutureRecord::<[u8], [u8]>::to(&topic).partition(0).key(k);
            if let Some(v) = v {
                rec = rec.payload(v);
            }
            loop {
                match producer.send_result(rec) {
                    Ok(f) => break futs.push(f),
                    Err((_, r)) => {
                        rec = r;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }
        }
        for f in futs {
            f.await.unwrap().unwrap();
        }
    });
    for run in 1..=3 {
        let t = Instant::now();
        let read = changelog::read_partition(&settings, &topic, 0, Duration::from_secs(120))
            .expect("read the changelog partition");
        let reading = t.elapsed();
        assert_eq!(read.len(), records.len(), "every record read back");
        let (restored, decode, import) = rebuild(read);
        assert_eq!(restored.series_count(), series);
        println!(
            "run {run}: restore through the broker: read {:.0} ms + decode {:.0} ms + import {:.0} ms = {:.2} s",
            reading.as_secs_f64() * 1e3,
            decode.as_secs_f64() * 1e3,
            import.as_secs_f64() * 1e3,
            (reading + decode + import).as_secs_f64()
        );
    }
}
