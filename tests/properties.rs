//! Property tests: invariants that must hold for any input.

use proptest::prelude::*;

use spikewatch::config::Config;
use spikewatch::engine::{BucketReport, Engine, EngineSink, Observation};
use spikewatch::event::{decode_any, AnomalyEvent};

const T0: i64 = 1_704_067_200_000;
const LATENESS_MS: i64 = 120_000; // the default allowed lateness

#[derive(Default, PartialEq, Debug)]
struct Reports {
    rows: Vec<(String, i64, Option<u64>)>,
    anomalies: Vec<AnomalyEvent>,
}

impl EngineSink for Reports {
    fn bucket(&mut self, r: &BucketReport<'_>) {
        self.rows
            .push((r.geo.to_string(), r.start_ms, r.observed.map(f64::to_bits)));
    }
    fn anomaly(&mut self, e: AnomalyEvent) {
        self.anomalies.push(e);
    }
}

const GEOS: [&str; 4] = ["IT-RM", "IT-MI", "DE", "IT"];

/// Feeds events in the given arrival order, advancing the watermark to the newest event time
/// seen after each one, as the drivers do.
fn run(events: &[(i64, usize, u32)]) -> Reports {
    let mut e = Engine::new(Config::default());
    let mut out = Reports::default();
    let mut newest = i64::MIN;
    for &(ts, g, amount) in events {
        e.observe(Observation {
            service: "telegram",
            geo: GEOS[g],
            signal: "mentions",
            ts_ms: ts,
            amount: amount as f64,
        })
        .expect("valid observation");
        newest = newest.max(ts);
        e.advance(newest, &mut out);
    }
    e.finish(&mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any arrival order in which no event is later than the allowed lateness gives the same
    /// buckets, values and incidents as time order.
    #[test]
    fn bucketing_is_order_insensitive_within_lateness(
        raw in prop::collection::vec((0i64..30 * 60_000, 0usize..4, 0u32..50, 0i64..LATENESS_MS), 1..300)
    ) {
        let mut in_time: Vec<(i64, usize, u32)> = raw.iter().map(|&(t, g, a, _)| (T0 + t, g, a)).collect();
        in_time.sort_by_key(|e| e.0);
        // Arrival order: each event delayed by less than the lateness.
        let mut arrival: Vec<(i64, (i64, usize, u32))> =
            raw.iter().map(|&(t, g, a, d)| (T0 + t + d, (T0 + t, g, a))).collect();
        arrival.sort_by_key(|e| e.0);
        let shuffled: Vec<(i64, usize, u32)> = arrival.into_iter().map(|e| e.1).collect();
        // Bucket values and incidents are the same; report order may interleave differently
        // across series, so compare as sorted sets.
        let mut a = run(&in_time);
        let mut b = run(&shuffled);
        a.rows.sort();
        b.rows.sort();
        prop_assert_eq!(a.rows, b.rows);
        prop_assert_eq!(a.anomalies, b.anomalies);
    }

    /// No input line panics the decoder or the engine.
    #[test]
    fn no_panic_on_any_input_line(line in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut e = Engine::new(Config::default());
        if let Ok(ev) = decode_any(&line) {
            let _ = e.observe_event(&ev);
        }
        let mut sink: Vec<AnomalyEvent> = Vec::new();
        e.finish(&mut sink);
    }

    /// Lines that look like events but carry arbitrary values never panic either.
    #[test]
    fn no_panic_on_arbitrary_event_values(
        ts in prop_oneof![any::<i64>().prop_map(|v| v.to_string()), "\\PC{0,30}".prop_map(|s| format!("{s:?}"))],
        service in "\\PC{0,80}",
        geo in "\\PC{0,80}",
        count in prop_oneof![any::<f64>().prop_map(|v| v.to_string()), Just("1e400".to_string()), Just("-0".to_string())],
    ) {
        let line = format!(r#"{{"ts":{ts},"service":{service:?},"geo":{geo:?},"count":{count}}}"#);
        let mut e = Engine::new(Config::default());
        if let Ok(ev) = decode_any(line.as_bytes()) {
            let _ = e.observe_event(&ev);
        }
        let mut sink: Vec<AnomalyEvent> = Vec::new();
        e.advance(i64::MAX / 4, &mut sink);
        e.finish(&mut sink);
    }

    /// Arbitrary observations straight into the engine: rejected or counted, never a panic,
    /// and the counters add up.
    #[test]
    fn engine_counts_every_observation(
        obs in prop::collection::vec((any::<i64>(), "[A-Z]{1,3}(-[A-Z0-9]{1,3}){0,2}", any::<f64>()), 1..50)
    ) {
        let mut e = Engine::new(Config::default());
        let mut sink: Vec<AnomalyEvent> = Vec::new();
        for (i, (ts, geo, amount)) in obs.iter().enumerate() {
            let ts = if i % 2 == 0 { T0 + ts.rem_euclid(86_400_000) } else { *ts };
            let _ = e.observe(Observation { service: "s", geo, signal: "complaints", ts_ms: ts, amount: *amount });
            e.advance(ts, &mut sink);
        }
        e.finish(&mut sink);
        let s = e.stats();
        prop_assert_eq!(s.events + s.late + s.rejected, obs.len() as u64);
    }
}
