//! Engine throughput benchmarks (criterion): `cargo bench --bench engine`.
//!
//! * `observe/100k_series`: events spread over ~100,000 active series (10 services × 2
//!   signals × 4,800 cities in 20 countries, plus their roll-ups), including the per-minute
//!   bucket close of every series.
//! * `jsonl/decode_only`: JSON line → validated `InputEvent` (`decode_any`).
//! * `jsonl/decode_core_only`: JSON line → validated `EventCore` (`decode_any_core`, what the
//!   replay and the Kafka pipeline use).
//! * `jsonl/decode_and_observe`: the replay path, JSON line → validated event → engine.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use spikewatch::config::Config;
use spikewatch::engine::{Engine, Observation};
use spikewatch::event::{decode_any, decode_any_core, AnomalyEvent};

const T0: i64 = 1_704_067_200_000;
const MIN: i64 = 60_000;
const SERVICES: usize = 10;
const COUNTRIES: usize = 20;
const CITIES_PER_COUNTRY: usize = 240;
const EVENTS_PER_MINUTE: usize = 1_000_000;

struct Universe {
    services: Vec<String>,
    geos: Vec<String>,
}

fn universe() -> Universe {
    let services = (0..SERVICES).map(|i| format!("service-{i}")).collect();
    let mut geos = Vec::new();
    for c in 0..COUNTRIES {
        for city in 0..CITIES_PER_COUNTRY {
            geos.push(format!("C{c:02}-X{city:03}"));
        }
    }
    Universe { services, geos }
}

/// (service index, geo index, signal, second within the minute)
fn batch(rng: &mut ChaCha8Rng, n: usize, u: &Universe) -> Vec<(u16, u16, bool, u16)> {
    (0..n)
        .map(|_| {
            (
                rng.random_range(0..u.services.len()) as u16,
                rng.random_range(0..u.geos.len()) as u16,
                rng.random_bool(0.5),
                rng.random_range(0..60_000u32) as u16,
            )
        })
        .collect()
}

fn feed_minute(
    e: &mut Engine,
    u: &Universe,
    b: &[(u16, u16, bool, u16)],
    minute: i64,
    sink: &mut Vec<AnomalyEvent>,
) {
    let base = T0 + minute * MIN;
    for &(s, g, m, off) in b {
        let _ = e.observe(Observation {
            service: &u.services[s as usize],
            geo: &u.geos[g as usize],
            signal: if m { "mentions" } else { "complaints" },
            ts_ms: base + off as i64,
            amount: 1.0,
        });
    }
    e.advance(base + MIN, sink);
    sink.clear();
}

fn bench_observe(c: &mut Criterion) {
    let u = universe();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let b = batch(&mut rng, EVENTS_PER_MINUTE, &u);
    let mut engine = Engine::new(Config::default());
    let mut sink = Vec::new();
    // Create every series first: the benchmark measures steady state.
    for m in 0..3 {
        feed_minute(&mut engine, &u, &b, m, &mut sink);
    }
    eprintln!(
        "active series: {}, state: {:.1} MiB ({} B/series)",
        engine.series_count(),
        engine.state_bytes() as f64 / (1 << 20) as f64,
        engine.state_bytes() / engine.series_count().max(1)
    );
    let mut minute = 3;
    let mut g = c.benchmark_group("observe");
    g.throughput(Throughput::Elements(EVENTS_PER_MINUTE as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("100k_series", |bench| {
        bench.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                feed_minute(&mut engine, &u, black_box(&b), minute, &mut sink);
                minute += 1;
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn bench_jsonl(c: &mut Criterion) {
    let u = universe();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let n = 200_000;
    let lines: Vec<String> = batch(&mut rng, n, &u)
        .into_iter()
        .map(|(s, g, m, off)| {
            let ts = T0 + off as i64;
            if m {
                format!(
                    r#"{{"ts":{ts},"service":"{}","geo":"{}","source":"social","lang":"it","tags":["down"]}}"#,
                    u.services[s as usize], u.geos[g as usize]
                )
            } else {
                format!(
                    r#"{{"ts":"2024-01-01T00:00:{:02}Z","service":"{}","geo":"{}","count":3,"category":"login"}}"#,
                    off / 1000,
                    u.services[s as usize],
                    u.geos[g as usize]
                )
            }
        })
        .collect();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    eprintln!(
        "jsonl: {n} lines, {:.1} bytes/line",
        bytes as f64 / n as f64
    );
    let mut g = c.benchmark_group("jsonl");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    g.bench_function("decode_only", |bench| {
        bench.iter(|| {
            for l in &lines {
                black_box(decode_any(l.as_bytes()).is_ok());
            }
        })
    });
    g.bench_function("decode_core_only", |bench| {
        bench.iter(|| {
            for l in &lines {
                black_box(decode_any_core(l.as_bytes()).is_ok());
            }
        })
    });
    // Steady state: the series exist already (as in a long replay or a running pipeline);
    // the bucket stays open, so this measures decode + validate + route + add.
    let mut engine = Engine::new(Config::default());
    for l in &lines {
        if let Ok(ev) = decode_any(l.as_bytes()) {
            let _ = engine.observe_event(&ev);
        }
    }
    g.bench_function("decode_and_observe", |bench| {
        bench.iter(|| {
            for l in &lines {
                if let Ok(ev) = decode_any_core(l.as_bytes()) {
                    let _ = black_box(engine.observe(ev.observation()));
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_observe, bench_jsonl);
criterion_main!(benches);
