//! Memory per series: `cargo bench --bench memory`.
//!
//! Creates 10k, 100k and 1M series and reports the engine's own estimate (`state_bytes`)
//! and the growth of the process's resident memory (from /proc/self/statm, Linux only).

use spikewatch::config::Config;
use spikewatch::engine::{Engine, Observation};
use spikewatch::event::AnomalyEvent;

fn rss_bytes() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    const T0: i64 = 1_704_067_200_000;
    println!(
        "{:>10} {:>14} {:>14} {:>16}",
        "series", "state B/series", "RSS B/series", "RSS total MiB"
    );
    for &n_leaves in &[10_000usize, 100_000, 1_000_000] {
        let before = rss_bytes().unwrap_or(0);
        let mut cfg = Config::default();
        // One service with up to 1M geos: lift every cardinality cap above that.
        cfg.engine.max_series = 2_000_000;
        cfg.engine.max_series_per_service = 2_000_000;
        cfg.engine.max_geos = 2_000_000;
        let mut e = Engine::new(cfg);
        let mut sink: Vec<AnomalyEvent> = Vec::new();
        // Leaves in 100 countries, one service, one signal: series = leaves + countries + 1.
        for i in 0..n_leaves {
            let geo = format!("C{:02}-G{i}", i % 100);
            e.observe(Observation {
                service: "svc",
                geo: &geo,
                signal: "complaints",
                ts_ms: T0 + (i % 60_000) as i64,
                amount: 1.0,
            })
            .expect("valid observation");
        }
        // Close a few buckets so every series holds learned state.
        for m in 1..=3 {
            e.advance(T0 + m * 60_000 + 120_000, &mut sink);
        }
        let after = rss_bytes().unwrap_or(0);
        let series = e.series_count();
        println!(
            "{:>10} {:>14} {:>14} {:>16.1}",
            series,
            e.state_bytes() / series,
            after.saturating_sub(before) / series,
            after as f64 / (1 << 20) as f64
        );
        drop(e);
    }
}
