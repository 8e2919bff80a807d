//! A compact language of traffic, silences, late and far-ahead events and checkpoints, run on
//! an engine that never stops and on one saved and restored at every checkpoint. The
//! `engine_restore` fuzz target (`fuzz/`) feeds it any bytes; regression tests replay what it
//! found. A restored engine must publish what the uninterrupted one publishes and end with the
//! same state: the Kafka changelog and `--initial-state` rely on it.

use crate::engine::{Engine, EngineConfig, EngineSink, Observation, ObserveError, SeriesState};
use crate::event::{AnomalyEvent, OutageEvent};

use super::MINUTE_MS;

const T0: i64 = 1_704_067_200_000;
const SERVICES: [&str; 3] = ["telegram", "libero-mail", "spotify"];
const GEOS: [&str; 6] = ["IT", "IT-RM", "IT-MI", "DE", "*", "RU"];
const SIGNALS: [&str; 2] = ["mentions", "complaints"];

/// What one engine published and ended with, in an order a restart cannot change: events in
/// (bucket, id, seq) order (within a bucket, events of different series come in slot order,
/// which a state file does not keep) and series by name.
#[derive(Debug, Default, PartialEq)]
pub struct Published {
    pub anomalies: Vec<AnomalyEvent>,
    pub outages: Vec<OutageEvent>,
    pub series: Vec<SeriesState>,
}

impl EngineSink for Published {
    fn anomaly(&mut self, event: AnomalyEvent) {
        self.anomalies.push(event);
    }
    fn outage(&mut self, event: OutageEvent) {
        self.outages.push(event);
    }
}

/// The two runs of [`run_with_checkpoints`].
#[derive(Debug)]
pub struct RestartRuns {
    pub uninterrupted: Published,
    pub restarted: Published,
    /// The engines parted on a far-ahead event, and the runs stopped there: a run of far-ahead
    /// events still being confirmed (a clock jump needs 32) is not saved, so after a restart
    /// it starts again. By design (README, "Checkpoints").
    pub parted_on_far_ahead: bool,
}

/// Runs `ops`, 4 bytes each (kind, series, length, level; a trailing partial op is ignored):
/// kind % 8 in 0..=3 sends `level` per minute (20 times that if kind ≥ 128) to a series for
/// `length` × 10 minutes; 4 is `length` × 10 minutes of silence; 5 a late event up to 4
/// minutes back; 6 a lone event `length` hours ahead; 7 a checkpoint of the restarted engine.
pub fn run_with_checkpoints(ops: &[u8]) -> RestartRuns {
    let mut engines = [
        Engine::new(EngineConfig::default()),
        Engine::new(EngineConfig::default()),
    ];
    let mut out = [Published::default(), Published::default()];
    let mut t = T0;
    let mut parted = false;
    // Whether the two engines parted on the event.
    let observe = |engines: &mut [Engine; 2], series: u8, ts_ms: i64, amount: f64| {
        let obs = Observation {
            service: SERVICES[usize::from(series) % SERVICES.len()],
            geo: GEOS[usize::from(series / 3) % GEOS.len()],
            signal: SIGNALS[usize::from(series / 18) % SIGNALS.len()],
            ts_ms,
            amount,
        };
        let [a, b] = [engines[0].observe(obs), engines[1].observe(obs)];
        if a.is_ok() == b.is_ok() {
            return false;
        }
        let far = |r: &Result<_, ObserveError>| matches!(r, Err(ObserveError::TooFarAhead { .. }));
        assert!(far(&a) || far(&b), "{a:?} vs {b:?}");
        true
    };
    for op in ops.chunks_exact(4) {
        let (series, n, level) = (op[1], i64::from(op[2]), op[3]);
        match op[0] % 8 {
            0..=3 => {
                let amount = f64::from(level) * if op[0] & 0x80 != 0 { 20.0 } else { 1.0 };
                for _ in 0..n * 10 {
                    t += MINUTE_MS;
                    parted |= observe(&mut engines, series, t + i64::from(level) * 100, amount);
                    for (e, o) in engines.iter_mut().zip(&mut out) {
                        e.advance(t, o);
                    }
                }
            }
            4 => {
                t += n * 10 * MINUTE_MS;
                for (e, o) in engines.iter_mut().zip(&mut out) {
                    e.advance(t, o);
                }
            }
            5 => parted |= observe(&mut engines, series, t - n * 1_000, f64::from(level)),
            6 => parted |= observe(&mut engines, series, t + n * 3_600_000, 1.0),
            _ => {
                let bytes = engines[1].save_state();
                engines[1] = Engine::new(EngineConfig::default());
                let report = engines[1].restore_state(&bytes).expect("restore");
                assert!(report.skipped.is_empty(), "{:?}", report.skipped);
            }
        }
        if parted {
            break;
        }
    }
    for (e, o) in engines.iter_mut().zip(&mut out) {
        if !parted {
            e.finish(o);
        }
        o.anomalies.sort_by(|a, b| {
            (a.bucket_end, &a.incident_id, a.seq).cmp(&(b.bucket_end, &b.incident_id, b.seq))
        });
        o.outages
            .sort_by(|a, b| (a.as_of, &a.outage_id, a.seq).cmp(&(b.as_of, &b.outage_id, b.seq)));
        o.series = e.export_series();
        o.series
            .sort_by(|a, b| (&a.service, &a.geo, &a.signal).cmp(&(&b.service, &b.geo, &b.signal)));
    }
    let [uninterrupted, restarted] = out;
    RestartRuns {
        uninterrupted,
        restarted,
        parted_on_far_ahead: parted,
    }
}
