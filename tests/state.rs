//! Engine checkpoints: a restored engine continues exactly as if it had never stopped, and a
//! damaged record costs only its own series.

use spikewatch::config::Config;
use spikewatch::engine::{Engine, EngineSink, Observation, StateError};
use spikewatch::event::AnomalyEvent;
use spikewatch::sim::{Scenario, DAY_MS, HOUR_MS};

/// Drives `scenario` like `sim::drive`, but at each of `checkpoints` (bucket start times) the
/// engine is saved, dropped, and a fresh one restored from the bytes.
fn run_with_restarts(scenario: &Scenario, checkpoints: &[i64]) -> (Engine, Vec<AnomalyEvent>) {
    let mut engine = Engine::new(Config::default());
    let mut events: Vec<AnomalyEvent> = Vec::new();
    let mut current = i64::MIN;
    scenario.generate(|t, service, geo, signal, count| {
        if t != current {
            engine.advance(t, &mut events);
            current = t;
            if checkpoints.contains(&t) {
                let bytes = engine.save_state();
                engine = Engine::new(Config::default());
                let report = engine.restore_state(&bytes).expect("restore");
                assert!(report.skipped.is_empty(), "{:?}", report.skipped);
                assert!(report.restored > 0);
            }
        }
        if count > 0 {
            engine
                .observe(Observation {
                    service,
                    geo,
                    signal: signal.name(),
                    ts_ms: t,
                    amount: count as f64,
                })
                .unwrap();
        }
    });
    engine.finish(&mut events);
    (engine, events)
}

#[test]
fn restored_engine_continues_exactly_like_an_uninterrupted_one() {
    let s = Scenario {
        days: 24,
        ..Scenario::demo()
    };
    let (plain, plain_events) = run_with_restarts(&s, &[]);
    // Before seasonality exists, in the middle of a normal week, and twice inside the 12-hour
    // outage while incidents are open (one of them with some geos already recovered).
    let outage = s.start_ms + 23 * DAY_MS + 6 * HOUR_MS;
    let checkpoints = [
        s.start_ms + 17 * HOUR_MS + 13 * 60_000,
        s.start_ms + 9 * DAY_MS + 3 * HOUR_MS,
        outage + 2 * HOUR_MS + 7 * 60_000,
        outage + 12 * HOUR_MS + 30 * 60_000,
    ];
    let (restarted, restarted_events) = run_with_restarts(&s, &checkpoints);
    assert!(plain_events.len() > 50);
    assert_eq!(plain_events.len(), restarted_events.len());
    for (a, b) in plain_events.iter().zip(&restarted_events) {
        assert_eq!(a, b);
    }
    // Every baseline, window and tracker is bit-for-bit the same.
    assert_eq!(plain.export_series(), restarted.export_series());
    assert_eq!(plain.clock(), restarted.clock());
}

#[test]
fn damaged_records_cost_only_their_own_series() {
    let s = Scenario {
        days: 2,
        ..Scenario::demo()
    };
    let (engine, _) = run_with_restarts(&s, &[]);
    let n = engine.series_count();
    let bytes = engine.save_state();

    // Walk the length-prefixed records to damage the 2nd and 3rd series records.
    let mut offsets = Vec::new();
    assert_eq!(&bytes[..4], b"SWSF");
    let mut at = 4;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        offsets.push((at + 4, len));
        at += 4 + len;
    }
    assert_eq!(offsets.len(), n + 1, "clock + one record per series");
    let mut damaged = bytes.clone();
    let (flip_at, flip_len) = offsets[2];
    damaged[flip_at + flip_len - 1] ^= 0xff; // payload byte: checksum mismatch
    let (newer_at, _) = offsets[3];
    damaged[newer_at + 4] = 0xee; // version field: from the future

    let mut restored = Engine::new(Config::default());
    let report = restored.restore_state(&damaged).unwrap();
    assert_eq!(report.restored, n - 2);
    let kinds: Vec<_> = report.skipped.iter().map(|(_, e)| e.kind()).collect();
    assert_eq!(kinds, ["checksum", "newer_version"]);
    assert_eq!(restored.series_count(), n - 2);

    // A truncated file keeps everything before the cut.
    let (cut_at, _) = offsets[5];
    let mut restored = Engine::new(Config::default());
    let report = restored.restore_state(&bytes[..cut_at + 3]).unwrap();
    assert_eq!(report.restored, 4, "the 4 series records before the cut");
    assert!(matches!(
        report.skipped.as_slice(),
        [(None, StateError::Truncated { .. })]
    ));

    // Not a state file at all: a clear error, nothing restored.
    let mut restored = Engine::new(Config::default());
    let err = restored.restore_state(b"{\"hello\": 1}").unwrap_err();
    assert_eq!(err.kind(), "bad_magic");
    assert_eq!(restored.series_count(), 0);
}

#[derive(Default)]
struct Values(Vec<(i64, Option<u64>, u64)>);

impl EngineSink for Values {
    fn bucket(&mut self, r: &spikewatch::engine::BucketReport<'_>) {
        self.0.push((
            r.start_ms,
            r.observed.map(f64::to_bits),
            r.expected.to_bits(),
        ));
    }
    fn anomaly(&mut self, _: AnomalyEvent) {}
}

#[test]
fn pre_aggregated_series_with_gaps_restore_exactly() {
    const T0: i64 = 1_704_067_200_000;
    let feed = |e: &mut Engine, from: i64, to: i64, out: &mut Values| {
        for m in from..to {
            // Every 7th bucket is missing data.
            if m % 7 != 3 {
                let v = 10.0 + (m % 5) as f64;
                e.set_bucket_value("mail", "IT", "complaints", T0 + m * 60_000, v)
                    .unwrap();
            }
            e.advance(T0 + m * 60_000, out);
        }
    };
    let mut plain = Engine::new(Config::default());
    let mut a = Values::default();
    feed(&mut plain, 0, 300, &mut a);
    plain.finish(&mut a);

    let mut first = Engine::new(Config::default());
    let mut b = Values::default();
    feed(&mut first, 0, 150, &mut b);
    let mut second = Engine::new(Config::default());
    second.restore_state(&first.save_state()).unwrap();
    feed(&mut second, 150, 300, &mut b);
    second.finish(&mut b);
    assert_eq!(a.0, b.0);
    assert!(
        a.0.iter().any(|r| r.1.is_none()),
        "gaps reported as missing"
    );
}

/// A compacted changelog in memory: the newest (slot, state) per series key, plus the newest
/// layout.
#[derive(Default)]
struct CompactedLog {
    series: std::collections::HashMap<String, (u32, spikewatch::engine::SeriesState)>,
    layout: spikewatch::engine::EngineLayout,
}

impl CompactedLog {
    fn apply(&mut self, d: spikewatch::engine::StateDelta) -> usize {
        for k in &d.removed {
            self.series.remove(k);
        }
        let n = d.changed.len();
        for (slot, st) in d.changed {
            self.series.insert(st.key(), (slot, st));
        }
        self.layout = d.layout;
        n
    }

    fn restore(&self, config: &Config) -> Engine {
        let mut e = Engine::new(config.clone());
        let report = e.restore_layout(self.layout.clone(), self.series.values().cloned().collect());
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        e
    }
}

#[test]
fn incremental_checkpoints_restore_exactly_including_expired_and_reused_slots() {
    let s = Scenario {
        days: 24,
        ..Scenario::demo()
    };
    let mut config = Config::default();
    // Small cities go quiet at night: with a short TTL they expire and come back, so slots are
    // freed and reused in between checkpoints.
    config.detection.series_ttl = Some(spikewatch::config::Secs(3 * 3600));
    let outage = s.start_ms + 23 * DAY_MS + 6 * HOUR_MS;
    let restarts = [
        s.start_ms + 17 * HOUR_MS + 13 * 60_000,
        s.start_ms + 9 * DAY_MS + 3 * HOUR_MS,
        outage + 2 * HOUR_MS + 7 * 60_000,
        outage + 12 * HOUR_MS + 30 * 60_000,
    ];
    let run = |restart_at: &[i64]| {
        let mut engine = Engine::new(config.clone());
        let mut log = CompactedLog::default();
        let mut events: Vec<AnomalyEvent> = Vec::new();
        let mut written = Vec::new();
        let mut current = i64::MIN;
        s.generate(|t, service, geo, signal, count| {
            if t != current {
                engine.advance(t, &mut events);
                current = t;
                // A checkpoint every 7 buckets, and one right before every restart.
                if (t / 60_000) % 7 == 0 || restart_at.contains(&t) {
                    written.push(log.apply(engine.take_changes()));
                }
                if restart_at.contains(&t) {
                    engine = log.restore(&config);
                }
            }
            if count > 0 {
                engine
                    .observe(Observation {
                        service,
                        geo,
                        signal: signal.name(),
                        ts_ms: t,
                        amount: count as f64,
                    })
                    .unwrap();
            }
        });
        engine.finish(&mut events);
        (engine, events, written)
    };
    let (plain, plain_events, _) = run(&[]);
    let (restarted, restarted_events, written) = run(&restarts);
    assert!(
        plain.stats().series_expired > 0,
        "the test exercises expiry"
    );
    assert!(plain_events.len() > 50);
    assert_eq!(plain_events, restarted_events);
    assert_eq!(plain.export_series(), restarted.export_series());
    assert_eq!(plain.layout(), restarted.layout());
    // Incremental: a checkpoint inside a bucket writes nothing, one after a close writes the
    // series that changed, never more than exist.
    let max = *written.iter().max().unwrap();
    assert!(max <= plain.series_count() + 200, "{max}");
}

#[test]
fn take_changes_reports_only_what_changed() {
    let mut e = Engine::new(Config::default());
    let t0 = 1_704_067_200_000;
    let obs = |geo| Observation {
        service: "mail",
        geo,
        signal: "mentions",
        ts_ms: t0,
        amount: 1.0,
    };
    e.observe(obs("IT-RM")).unwrap();
    let first = e.take_changes();
    // The city, its country and the world roll-up.
    assert_eq!(first.changed.len(), 3, "{:?}", first.changed);
    assert!(
        e.take_changes().changed.is_empty(),
        "nothing happened since"
    );
    e.observe(obs("DE")).unwrap();
    let keys: Vec<String> = e
        .take_changes()
        .changed
        .iter()
        .map(|(_, s)| s.key())
        .collect();
    assert_eq!(keys.len(), 2, "DE is new and the roll-up changed: {keys:?}");
    assert!(keys.contains(&"mail/DE/mentions".to_string()));
}

/// Regression (found by the `engine_restore` fuzz target): whether a geo whose parent or child
/// opened an incident in the same bucket learned from that bucket depended on which of the two
/// had the lower slot. A state file keeps no slots, so an engine restored from one learned
/// one bucket more than the engine that never stopped. The lineage is now the one from before
/// the bucket's pass, for every series of it.
#[test]
fn a_restored_engine_learns_like_an_uninterrupted_one_when_a_lineage_opens_in_one_bucket() {
    let ops: [u8; 80] = [
        0, 1, 255, 30, 1, 1, 255, 22, 250, 250, 250, 250, 250, 254, 50, 250, 0, 0, 0, 250, 250,
        250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 0, 0, 0, 250, 250, 250, 250,
        250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 76,
        250, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 250, 250, 0, 0, 6, 30, 0, 0, 0, 100,
        30,
    ];
    let runs = spikewatch::sim::run_with_checkpoints(&ops);
    assert!(!runs.parted_on_far_ahead);
    let (plain, restarted) = (&runs.uninterrupted, &runs.restarted);
    assert!(!plain.anomalies.is_empty(), "the input opens incidents");
    assert_eq!(plain.anomalies, restarted.anomalies);
    assert_eq!(plain.outages, restarted.outages);
    assert_eq!(plain.series.len(), restarted.series.len());
    for (a, b) in plain.series.iter().zip(&restarted.series) {
        assert_eq!(a, b, "{}/{}/{}", a.service, a.geo, a.signal);
    }
}

/// Found by the `engine_restore` fuzz target: `*` and `IT` fed the same events, so their
/// incidents peaked at the same score in the same bucket, and the outage named as its
/// `strongest_geo` whichever of the two was visited first. A restored engine visits its series
/// in another order, and named the other one. An exact tie now goes to the more specific geo.
#[test]
fn a_restored_engine_names_the_same_strongest_geo_when_two_geos_tie() {
    let ops: [u8; 52] = [
        0, 1, 249, 249, 249, 249, 249, 249, 249, 249, 249, 249, 249, 249, 249, 249, 249, 249, 249,
        249, 249, 249, 249, 249, 249, 249, 249, 249, 249, 249, 249, 249, 249, 30, 251, 6, 100, 255,
        226, 100, 255, 30, 7, 0, 0, 0, 130, 1, 0, 0, 100, 40,
    ];
    let runs = spikewatch::sim::run_with_checkpoints(&ops);
    assert!(!runs.parted_on_far_ahead);
    let (plain, restarted) = (&runs.uninterrupted, &runs.restarted);
    assert!(!plain.outages.is_empty(), "the input opens an outage");
    assert_eq!(plain.outages, restarted.outages);
    assert!(plain.outages.iter().all(|o| o.strongest_geo == "IT"));
}
