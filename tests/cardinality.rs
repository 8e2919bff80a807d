//! A flood of new geo or service values (typos, an attacker, a bug upstream) must not exhaust
//! memory, and must not blind the detector to a real outage in the same stream.

use spikewatch::config::Config;
use spikewatch::engine::{Engine, Observation, ObserveError};
use spikewatch::event::AnomalyEvent;
use spikewatch::sim::{self, Scenario, HOUR_MS, MINUTE_MS};

fn obs<'a>(service: &'a str, geo: &'a str, ts_ms: i64) -> Observation<'a> {
    Observation {
        service,
        geo,
        signal: "complaints",
        ts_ms,
        amount: 1.0,
    }
}

#[test]
fn million_junk_geos_stay_under_the_caps_and_the_real_outage_is_still_detected() {
    let mut config = Config::default();
    config.engine.max_geos = 2_000;
    config.engine.max_series_per_service = 1_000;
    let mut s = Scenario {
        days: 17,
        ..Scenario::demo()
    };
    s.services.retain(|x| x.name == "libero-mail");
    let from = s.start_ms + 16 * sim::DAY_MS + 10 * HOUR_MS;
    s.outages = vec![sim::Outage {
        label: "mail down in Italy while junk floods in",
        service: "libero-mail",
        geos: ["IT-RM", "IT-MI", "IT-VE", "IT-NA", "IT-CT"]
            .iter()
            .map(|&g| (g, from, from + 3 * HOUR_MS))
            .collect(),
        complaints_factor: 8.0,
        mentions_factor: 6.0,
    }];

    const JUNK: u64 = 1_000_000;
    let buckets = (s.days as u64 * 24 * 60).max(1);
    let per_bucket = JUNK.div_ceil(buckets);
    let mut engine = Engine::new(config);
    let mut events: Vec<AnomalyEvent> = Vec::new();
    let mut current = i64::MIN;
    let mut junk = 0u64;
    let mut geo = String::new();
    s.generate(|t, service, g, signal, count| {
        if t != current {
            engine.advance(t, &mut events);
            current = t;
            // Half look like Italian cities (they roll into IT), half like new countries.
            for _ in 0..per_bucket.min(JUNK - junk) {
                geo.clear();
                if junk % 2 == 0 {
                    geo.push_str("IT-");
                }
                geo.push_str(&format!("Z{junk}"));
                engine.observe(obs("libero-mail", &geo, t + 1)).unwrap();
                junk += 1;
            }
        }
        if count > 0 {
            engine
                .observe(Observation {
                    service,
                    geo: g,
                    signal: signal.name(),
                    ts_ms: t,
                    amount: count as f64,
                })
                .unwrap();
        }
    });
    engine.finish(&mut events);
    assert_eq!(junk, JUNK);

    assert!(engine.geo_count() <= 2_000, "{} geos", engine.geo_count());
    assert!(
        engine.series_count() <= 1_000,
        "{} series",
        engine.series_count()
    );
    assert!(engine.stats().capped >= JUNK - 2_000);
    let bytes = engine.state_bytes();
    assert!(bytes < 8 << 20, "state grew to {bytes} bytes");

    let eval = sim::evaluate(&s, &events);
    let o = &eval.outages[0];
    let italy = o
        .incidents
        .iter()
        .find(|i| i.geo == "IT" && i.signal == "complaints")
        .expect("the outage is detected in Italy");
    assert!(italy.opened_at_ms <= from + 3 * MINUTE_MS);
}

#[test]
fn new_services_beyond_the_cap_are_rejected_with_a_reason() {
    let mut config = Config::default();
    config.engine.max_services = 3;
    let mut engine = Engine::new(config);
    let t = 1_704_067_200_000;
    for svc in ["a", "b", "c"] {
        engine.observe(obs(svc, "IT", t)).unwrap();
    }
    let err = engine.observe(obs("d", "IT", t)).unwrap_err();
    assert_eq!(err.kind(), "capacity");
    assert!(
        matches!(&err, ObserveError::Capacity { what: "service", name, .. } if name == "d"),
        "{err}"
    );
    assert!(err.to_string().contains("engine.max_services"), "{err}");
    // Known services still work.
    engine.observe(obs("a", "IT-RM", t)).unwrap();
    assert_eq!(engine.stats().rejected, 1);
    assert_eq!(engine.stats().capacity_rejected, 1);
    // Other rejections are not capacity ones.
    engine.observe(obs("a", "IT", -5)).unwrap_err();
    assert_eq!(engine.stats().rejected, 2);
    assert_eq!(engine.stats().capacity_rejected, 1);
}

#[test]
fn one_noisy_service_cannot_crowd_out_the_others() {
    let mut config = Config::default();
    config.engine.max_series_per_service = 10;
    let mut engine = Engine::new(config);
    let t = 1_704_067_200_000;
    for i in 0..100 {
        engine
            .observe(obs("noisy", &format!("IT-C{i}"), t))
            .unwrap();
    }
    assert!(engine.series_count() <= 10);
    engine.observe(obs("quiet", "DE-BE", t)).unwrap();
    assert_eq!(
        engine.series_count(),
        10 + 3,
        "DE-BE, DE and * of the quiet service"
    );
}
