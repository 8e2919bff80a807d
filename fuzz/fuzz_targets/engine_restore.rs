//! Any stream of traffic, silences, late and far-ahead events, with checkpoints: an engine
//! saved and restored at every checkpoint emits exactly the events of one that never stopped,
//! and ends with the same state. The Kafka changelog and `--initial-state` rely on it.
//!
//! One difference is by design: a run of far-ahead events still being confirmed (a jump needs
//! 32) is not saved, so after a restart it starts again. Where the two engines part on a
//! far-ahead event the comparison of that input ends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spikewatch::config::Config;
use spikewatch::engine::{Engine, EngineSink, Observation, ObserveError};
use spikewatch::event::{AnomalyEvent, OutageEvent};

const T0: i64 = 1_704_067_200_000;
const MIN: i64 = 60_000;
const SERVICES: [&str; 3] = ["telegram", "libero-mail", "spotify"];
const GEOS: [&str; 6] = ["IT", "IT-RM", "IT-MI", "DE", "*", "RU"];
const SIGNALS: [&str; 2] = ["mentions", "complaints"];

/// What subscribers see: the series anomaly topic and the outage topic.
#[derive(Default)]
struct Published {
    anomalies: Vec<AnomalyEvent>,
    outages: Vec<OutageEvent>,
}

impl EngineSink for Published {
    fn anomaly(&mut self, event: AnomalyEvent) {
        self.anomalies.push(event);
    }
    fn outage(&mut self, event: OutageEvent) {
        self.outages.push(event);
    }
}

struct Pair {
    /// The engines parted on a far-ahead event (see the module docs).
    parted: bool,
    plain: Engine,
    restarted: Engine,
    plain_events: Published,
    restarted_events: Published,
}

impl Pair {
    fn observe(&mut self, series: u8, ts_ms: i64, amount: f64) {
        let obs = Observation {
            service: SERVICES[usize::from(series) % SERVICES.len()],
            geo: GEOS[usize::from(series / 3) % GEOS.len()],
            signal: SIGNALS[usize::from(series / 18) % SIGNALS.len()],
            ts_ms,
            amount,
        };
        let a = self.plain.observe(obs);
        let b = self.restarted.observe(obs);
        if a.is_ok() != b.is_ok() {
            let far =
                |r: &Result<_, ObserveError>| matches!(r, Err(ObserveError::TooFarAhead { .. }));
            assert!(far(&a) || far(&b), "{a:?} vs {b:?}");
            self.parted = true;
        }
    }

    fn advance(&mut self, ts_ms: i64) {
        self.plain.advance(ts_ms, &mut self.plain_events);
        self.restarted.advance(ts_ms, &mut self.restarted_events);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut p = Pair {
        parted: false,
        plain: Engine::new(Config::default()),
        restarted: Engine::new(Config::default()),
        plain_events: Published::default(),
        restarted_events: Published::default(),
    };
    let mut t = T0;
    for op in data.chunks_exact(4) {
        if p.parted {
            return;
        }
        let (series, n, level) = (op[1], i64::from(op[2]), op[3]);
        match op[0] % 8 {
            // Traffic: `level` per minute (doubled, as an outage's reports are) for up to
            // 42 hours.
            0..=3 => {
                let amount = f64::from(level) * if op[0] & 0x80 != 0 { 20.0 } else { 1.0 };
                for _ in 0..n * 10 {
                    t += MIN;
                    p.observe(series, t + i64::from(level) * 100, amount);
                    p.advance(t);
                }
            }
            // Silence: time passes with no input.
            4 => {
                t += n * 10 * MIN;
                p.advance(t);
            }
            // A late event, up to 4 minutes back.
            5 => p.observe(series, t - n * 1_000, f64::from(level)),
            // A lone event far ahead (rejected, or a jump if enough services follow).
            6 => p.observe(series, t + n * 3_600_000, 1.0),
            // Checkpoint: save, drop, restore.
            _ => {
                let bytes = p.restarted.save_state();
                p.restarted = Engine::new(Config::default());
                let report = p.restarted.restore_state(&bytes).expect("restore");
                assert!(report.skipped.is_empty(), "{:?}", report.skipped);
            }
        }
    }
    if p.parted {
        return;
    }
    p.plain.finish(&mut p.plain_events);
    p.restarted.finish(&mut p.restarted_events);
    // Within one bucket, events of different series come in slot order, which a state file
    // does not keep: the events are compared in (bucket, incident, seq) order.
    let in_order = |p: &mut Published| {
        p.anomalies.sort_by(|a, b| {
            (a.bucket_end, &a.incident_id, a.seq).cmp(&(b.bucket_end, &b.incident_id, b.seq))
        });
        p.outages
            .sort_by(|a, b| (a.as_of, &a.outage_id, a.seq).cmp(&(b.as_of, &b.outage_id, b.seq)));
    };
    in_order(&mut p.plain_events);
    in_order(&mut p.restarted_events);
    assert_eq!(p.plain_events.anomalies, p.restarted_events.anomalies);
    assert_eq!(p.plain_events.outages, p.restarted_events.outages);
    // Nor are the series in the same slots (those that expired leave the uninterrupted
    // engine's free slots in another order): they are compared by name.
    let by_name = |e: &Engine| {
        let mut s = e.export_series();
        s.sort_by(|a, b| (&a.service, &a.geo, &a.signal).cmp(&(&b.service, &b.geo, &b.signal)));
        s
    };
    assert_eq!(by_name(&p.plain), by_name(&p.restarted));
    assert_eq!(p.plain.clock(), p.restarted.clock());
});
