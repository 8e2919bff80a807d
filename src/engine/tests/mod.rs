use super::*;
use crate::event::IncidentState;

const MIN: i64 = 60_000;
/// 2024-01-01T00:00:00Z, a Monday.
const T0: i64 = 1_704_067_200_000;

/// service, geo, signal, bucket start, observed, z, alert
type Row = (String, String, String, i64, Option<f64>, f64, bool);

#[derive(Default)]
struct Collect {
    buckets: Vec<Row>,
    anomalies: Vec<AnomalyEvent>,
}

impl EngineSink for Collect {
    fn bucket(&mut self, r: &BucketReport<'_>) {
        self.buckets.push((
            r.service.to_string(),
            r.geo.to_string(),
            r.signal.to_string(),
            r.start_ms,
            r.observed,
            r.zscore,
            r.alert,
        ));
    }
    fn anomaly(&mut self, e: AnomalyEvent) {
        self.anomalies.push(e);
    }
}

fn obs<'a>(geo: &'a str, ts_ms: i64, amount: f64) -> Observation<'a> {
    Observation {
        service: "telegram",
        geo,
        signal: "mentions",
        ts_ms,
        amount,
    }
}

fn observed(c: &Collect, geo: &str, start: i64) -> Option<f64> {
    c.buckets
        .iter()
        .find(|b| b.1 == geo && b.3 == start)
        .and_then(|b| b.4)
}

#[test]
fn events_roll_up_to_country_and_global() {
    let mut e = Engine::new(EngineConfig::default());
    e.observe(obs("IT-RM", T0 + 1000, 1.0)).unwrap();
    e.observe(obs("IT-MI", T0 + 2000, 2.0)).unwrap();
    e.observe(obs("DE", T0 + 3000, 4.0)).unwrap();
    let mut c = Collect::default();
    e.finish(&mut c);
    assert_eq!(observed(&c, "IT-RM", T0), Some(1.0));
    assert_eq!(observed(&c, "IT-MI", T0), Some(2.0));
    assert_eq!(observed(&c, "IT", T0), Some(3.0));
    assert_eq!(observed(&c, "DE", T0), Some(4.0));
    assert_eq!(observed(&c, "*", T0), Some(7.0));
    assert_eq!(e.series_count(), 5);
}

#[test]
fn buckets_without_events_close_as_zero_while_the_input_flows() {
    let mut e = Engine::new(EngineConfig::default());
    e.observe(obs("IT", T0, 1.0)).unwrap();
    for i in 0..6 {
        e.observe(obs("DE", T0 + i * MIN, 1.0)).unwrap();
    }
    e.observe(obs("IT", T0 + 5 * MIN, 1.0)).unwrap();
    let mut c = Collect::default();
    e.finish(&mut c);
    for i in 1..5 {
        assert_eq!(observed(&c, "IT", T0 + i * MIN), Some(0.0));
    }
}

/// A series that stops while others go on: once silence is improbable (`no_data_expected`
/// events expected over it) an `up` series has no data; a `down` series sees the collapse.
#[test]
fn improbable_silence_is_no_data_for_spikes_and_a_collapse_for_drops() {
    let mut cfg = EngineConfig::default();
    cfg.services.insert(
        "drops".into(),
        Overrides {
            direction: Some(crate::domain::Direction::Down),
            ..Default::default()
        },
    );
    let mut e = Engine::new(cfg);
    let mut c = Collect::default();
    let feed = |e: &mut Engine, svc: &str, i: i64| {
        e.observe(Observation {
            service: svc,
            geo: "IT",
            signal: "complaints",
            ts_ms: T0 + i * MIN,
            amount: 100.0,
        })
        .unwrap();
    };
    for i in 0..300 {
        feed(&mut e, "other", i);
        if i < 240 {
            feed(&mut e, "spikes", i);
            feed(&mut e, "drops", i);
        }
        e.advance(T0 + i * MIN, &mut c);
    }
    let after = |svc: &str| {
        c.buckets
            .iter()
            .filter(|b| b.0 == svc && b.1 == "IT" && b.3 >= T0 + 240 * MIN)
            .map(|b| b.4)
            .collect::<Vec<_>>()
    };
    let spikes = after("spikes");
    assert!(
        !spikes.is_empty() && spikes.iter().all(|v| v.is_none()),
        "{spikes:?}"
    );
    let drops = after("drops");
    assert!(
        !drops.is_empty() && drops.iter().all(|v| *v == Some(0.0)),
        "{drops:?}"
    );
    assert!(c
        .anomalies
        .iter()
        .any(|a| a.service == "drops" && a.state == crate::event::IncidentState::Opened));
    assert!(c.anomalies.iter().all(|a| a.service == "drops"));
}

#[test]
fn late_events_within_lateness_count_and_beyond_are_counted_as_late() {
    let mut e = Engine::new(EngineConfig::default()); // 1-minute buckets, 2 minutes lateness
    let mut c = Collect::default();
    e.observe(obs("IT", T0 + 10 * MIN, 1.0)).unwrap();
    e.advance(T0 + 10 * MIN, &mut c);
    // Bucket 9 ends at 10 min; still open until 12 min.
    assert_eq!(
        e.observe(obs("IT", T0 + 9 * MIN + 5, 1.0)).unwrap(),
        Ingest::Counted
    );
    e.advance(T0 + 13 * MIN, &mut c);
    assert_eq!(
        e.observe(obs("IT", T0 + 9 * MIN + 5, 1.0)).unwrap(),
        Ingest::Late
    );
    assert_eq!(e.stats().late, 1);
    e.finish(&mut c);
    assert_eq!(observed(&c, "IT", T0 + 9 * MIN), Some(1.0));
}

#[test]
fn absurd_timestamps_are_rejected_with_reasons() {
    let mut e = Engine::new(EngineConfig::default());
    let err = e.observe(obs("IT", 253_402_300_799_000, 1.0)).unwrap_err();
    assert_eq!(err.kind(), "timestamp_out_of_range");
    e.observe(obs("IT", T0, 1.0)).unwrap();
    let err = e
        .observe(obs("IT", T0 + 400 * 86_400_000, 1.0))
        .unwrap_err();
    assert_eq!(err.kind(), "too_far_ahead");
    assert!(err.to_string().contains("ahead of the newest event time"));
    assert_eq!(
        e.observe(obs("IT", T0, f64::NAN)).unwrap_err().kind(),
        "invalid_amount"
    );
    assert_eq!(
        e.observe(obs("I T", T0, 1.0)).unwrap_err().kind(),
        "invalid_field"
    );
    assert_eq!(e.stats().rejected, 4);
}

#[test]
fn far_ahead_events_wait_in_overflow_until_their_bucket() {
    let mut e = Engine::new(EngineConfig::default());
    let mut c = Collect::default();
    e.observe(obs("IT", T0, 1.0)).unwrap();
    e.advance(T0, &mut c);
    // 30 minutes ahead of the watermark: beyond the ring.
    e.observe(obs("IT", T0 + 30 * MIN, 5.0)).unwrap();
    e.finish(&mut c);
    assert_eq!(observed(&c, "IT", T0 + 30 * MIN), Some(5.0));
    assert_eq!(observed(&c, "IT", T0 + 29 * MIN), Some(0.0));
}

#[test]
fn pre_aggregated_series_report_missing_buckets_as_missing() {
    let mut e = Engine::new(EngineConfig::default());
    let mut c = Collect::default();
    e.set_bucket_value("svc", "*", "value", T0, 3.5).unwrap();
    e.set_bucket_value("svc", "*", "value", T0 + 2 * MIN, 4.5)
        .unwrap();
    e.finish(&mut c);
    assert_eq!(observed(&c, "*", T0), Some(3.5));
    assert_eq!(observed(&c, "*", T0 + MIN), None);
    assert_eq!(observed(&c, "*", T0 + 2 * MIN), Some(4.5));
}

#[test]
fn series_cap_rolls_new_geos_into_existing_parents() {
    let mut cfg = EngineConfig::default();
    cfg.engine.max_series = 3;
    let mut e = Engine::new(cfg);
    e.observe(obs("IT-RM", T0, 1.0)).unwrap(); // IT-RM, IT, *
    e.observe(obs("IT-MI", T0, 2.0)).unwrap(); // capped: counts toward IT and *
    assert_eq!(e.series_count(), 3);
    assert_eq!(e.stats().capped, 1);
    let mut c = Collect::default();
    e.finish(&mut c);
    assert_eq!(observed(&c, "IT", T0), Some(3.0));
    assert_eq!(observed(&c, "*", T0), Some(3.0));
}

#[test]
fn idle_series_expire_after_ttl() {
    let mut cfg = EngineConfig::default();
    cfg.detection.series_ttl = Some(Secs(600));
    let mut e = Engine::new(cfg);
    let mut c = Collect::default();
    e.observe(obs("IT-RM", T0, 1.0)).unwrap();
    for i in 0..30 {
        e.observe(obs("DE", T0 + i * MIN, 1.0)).unwrap();
        e.advance(T0 + i * MIN, &mut c);
    }
    assert_eq!(
        e.stats().series_expired,
        2,
        "IT-RM and IT expire, * and DE stay"
    );
    assert_eq!(e.series_count(), 2);
    // A returning geo is a new series and still routes correctly.
    e.observe(obs("IT-RM", T0 + 30 * MIN, 1.0)).unwrap();
    assert_eq!(e.series_count(), 4);
}

fn steady_then_spike(e: &mut Engine, c: &mut Collect, geo: &str, spike_from: i64, spike_to: i64) {
    for i in 0..(6 * 60) {
        let ts = T0 + i * MIN;
        let amount = if (spike_from..spike_to).contains(&i) {
            400.0
        } else {
            20.0
        };
        e.observe(obs(geo, ts + 30_000, amount)).unwrap();
        e.advance(ts + 30_000, c);
    }
    e.finish(c);
}

#[test]
fn outage_opens_one_incident_and_resolves_it() {
    let mut e = Engine::new(EngineConfig::default());
    let mut c = Collect::default();
    steady_then_spike(&mut e, &mut c, "IT-RM", 200, 230);
    let rm: Vec<&AnomalyEvent> = c.anomalies.iter().filter(|a| a.geo == "IT-RM").collect();
    assert_eq!(rm.first().unwrap().state, IncidentState::Opened);
    assert_eq!(rm.last().unwrap().state, IncidentState::Resolved);
    let ids: BTreeSet<&str> = rm.iter().map(|a| a.incident_id.as_str()).collect();
    assert_eq!(ids.len(), 1);
    let opened = rm[0];
    assert_eq!(opened.opened_at.millis(), T0 + 200 * MIN);
    assert!(opened.bucket_start.millis() <= T0 + 202 * MIN);
    assert_eq!(
        opened.incident_id,
        "telegram/IT-RM/mentions/2024-01-01T03:20:00.000Z"
    );
    // seq increases by one per event of the incident.
    for (i, a) in rm.iter().enumerate() {
        assert_eq!(a.seq, i as u64 + 1);
    }
    let resolved = rm.last().unwrap();
    assert_eq!(resolved.resolved_at.unwrap().millis(), T0 + 230 * MIN);
}

#[test]
fn parent_incident_lists_child_geos() {
    let mut e = Engine::new(EngineConfig::default());
    let mut c = Collect::default();
    steady_then_spike(&mut e, &mut c, "IT-RM", 200, 230);
    let it = c
        .anomalies
        .iter()
        .find(|a| a.geo == "IT" && a.state == IncidentState::Opened)
        .expect("IT opens too");
    assert_eq!(it.child_geos, vec!["IT-RM".to_string()]);
}

#[test]
fn no_incident_during_warmup() {
    let mut cfg = EngineConfig::default();
    cfg.detection.warmup_buckets = Some(500);
    let mut e = Engine::new(cfg);
    let mut c = Collect::default();
    steady_then_spike(&mut e, &mut c, "IT-RM", 200, 230);
    assert!(c.anomalies.is_empty());
}

#[test]
fn bucketing_is_order_insensitive_within_lateness() {
    let run = |order: &[i64]| {
        let mut e = Engine::new(EngineConfig::default());
        let mut c = Collect::default();
        for &s in order {
            e.observe(obs("IT-RM", T0 + s * 1000, 1.0)).unwrap();
        }
        e.finish(&mut c);
        c.buckets
    };
    let a = run(&[0, 10, 70, 75, 130, 140]);
    let b = run(&[75, 0, 140, 10, 130, 70]);
    assert_eq!(a, b);
}

#[test]
fn incident_id_is_deterministic() {
    assert_eq!(
        incident_id("libero-mail", "IT", "complaints", 1_686_726_000_000),
        "libero-mail/IT/complaints/2023-06-14T07:00:00.000Z"
    );
}

#[test]
fn reconfigure_applies_new_thresholds_without_losing_state() {
    let mut e = Engine::new(EngineConfig::default());
    let mut c = Collect::default();
    for i in 0..120 {
        e.observe(obs("IT-RM", T0 + i * MIN, 20.0)).unwrap();
        e.advance(T0 + i * MIN, &mut c);
    }
    let mut cfg = EngineConfig::default();
    // Nothing can open any more for telegram.
    cfg.services.insert(
        "telegram".into(),
        Overrides {
            open_z: Some(1e9),
            ..Default::default()
        },
    );
    e.reconfigure(cfg);
    assert_eq!(e.series_count(), 3);
    for i in 120..180 {
        e.observe(obs("IT-RM", T0 + i * MIN, 400.0)).unwrap();
        e.advance(T0 + i * MIN, &mut c);
    }
    assert!(c.anomalies.is_empty());
    // The learned level survived: the first 400 is scored against ~20. (Later ones score lower:
    // with nothing able to open, the calibration learns them as this series' tail.)
    let z = c
        .buckets
        .iter()
        .find(|b| b.1 == "IT-RM" && b.3 == T0 + 120 * MIN)
        .unwrap()
        .5;
    assert!(z > 50.0, "z = {z}");
}

/// Regression: after a gap in the input longer than `max_future_skew` (a feed down over a
/// weekend, or a restored older state) every later event was rejected as too far ahead,
/// forever, because rejected events never moved the newest event time.
#[test]
fn input_gap_longer_than_the_future_skew_does_not_stall_the_engine() {
    let mut e = Engine::new(EngineConfig::default());
    let mut c = Collect::default();
    for m in 0..10 {
        e.observe(obs("IT", T0 + m * MIN, 1.0)).unwrap();
    }
    let after_gap = T0 + 3 * 86_400_000;
    let mut rejected = 0;
    for m in 0..200 {
        match e.observe(obs("IT", after_gap + m * 1000, 1.0)) {
            Ok(_) => {}
            Err(err) => {
                assert_eq!(err.kind(), "too_far_ahead");
                rejected += 1;
            }
        }
        e.advance(after_gap + m * 1000, &mut c);
    }
    assert!(rejected < 200, "every event after the gap was rejected");
    assert!(rejected <= FUTURE_JUMP_CONFIRMATIONS as usize);
    e.finish(&mut c);
    assert!(c.buckets.iter().any(|b| b.3 >= after_gap && b.4.is_some()));
}

#[test]
fn lone_far_future_events_among_normal_traffic_never_move_the_clock() {
    let mut e = Engine::new(EngineConfig::default());
    let year = 365 * 86_400_000;
    for m in 0..1000 {
        e.observe(obs("IT", T0 + m * 1000, 1.0)).unwrap();
        if m % 2 == 0 {
            // A buggy producer: every other event a year ahead.
            assert_eq!(
                e.observe(obs("IT", T0 + year + m, 1.0)).unwrap_err().kind(),
                "too_far_ahead"
            );
        }
    }
    assert!(e.clock().newest_ts.unwrap() < T0 + 86_400_000);
}

/// Steady traffic of `services` in one engine for `minutes` minutes from `T0`.
fn steady_services(e: &mut Engine, services: &[&str], minutes: i64) {
    let mut c = Collect::default();
    for m in 0..minutes {
        for svc in services {
            e.observe(Observation {
                service: svc,
                geo: "IT",
                signal: "mentions",
                ts_ms: T0 + m * MIN,
                amount: 5.0,
            })
            .unwrap();
        }
        e.advance(T0 + m * MIN, &mut c);
    }
}

fn at<'a>(service: &'a str, ts_ms: i64) -> Observation<'a> {
    Observation {
        service,
        geo: "IT",
        signal: "mentions",
        ts_ms,
        amount: 1.0,
    }
}

/// 2099-01-01: what a broken or hostile producer sends.
const Y2099: i64 = 4_070_908_800_000;

/// Regression (issue 13, item 1): 32 messages dated 2099 from one producer moved the clock to
/// 2099, after which every real event was late and nothing could open again. Neither one
/// known service's name, nor a flood of made-up names, nor a minority of the services may do
/// it.
#[test]
fn far_future_messages_cannot_move_the_clock() {
    let services = ["a", "b", "c", "d"];
    let mut e = Engine::new(EngineConfig::default());
    steady_services(&mut e, &services, 60);
    let newest = e.clock().newest_ts.unwrap();
    for i in 0..1000 {
        // One known service, made-up names, then two of the four services (no majority).
        let name = format!("x{i}");
        for svc in ["a", name.as_str(), ["a", "b"][i % 2]] {
            let err = e.observe(at(svc, Y2099 + i as i64)).unwrap_err();
            assert_eq!(err.kind(), "too_far_ahead");
        }
    }
    assert_eq!(e.clock().newest_ts, Some(newest), "the clock moved");
    // Real events still count (not late), and no junk service was created.
    for svc in services {
        assert_eq!(
            e.observe(at(svc, T0 + 60 * MIN)).unwrap(),
            Ingest::Counted,
            "{svc}"
        );
    }
    assert_eq!(e.stats().series_created, 8, "4 services x (IT, *)");
}

/// The legitimate far-ahead jump (issue 13 keeps it): after an input gap longer than the
/// skew, the partition's services resume together and the clock follows them.
#[test]
fn input_gap_after_which_most_services_resume_still_moves_the_clock() {
    let services = ["a", "b", "c", "d"];
    let mut e = Engine::new(EngineConfig::default());
    steady_services(&mut e, &services, 60);
    let after_gap = T0 + 3 * 86_400_000;
    let mut rejected = 0;
    for m in 0..60 {
        // "d" never comes back: three of four is still a majority.
        for svc in &services[..3] {
            match e.observe(at(svc, after_gap + m * 1000)) {
                Ok(_) => {}
                Err(err) => {
                    assert_eq!(err.kind(), "too_far_ahead");
                    rejected += 1;
                }
            }
        }
    }
    assert!(rejected <= FUTURE_JUMP_CONFIRMATIONS as usize, "{rejected}");
    assert!(e.clock().newest_ts.unwrap() >= after_gap);
}

/// With the wall clock passed in (the Kafka pipeline and replay do), nothing dated beyond it
/// plus `max_future_skew` is accepted: not by a quorum of every service, not as the very first
/// event of an engine.
#[test]
fn events_beyond_the_wall_clock_are_rejected_however_many_services_send_them() {
    let services = ["a", "b", "c", "d"];
    let now = T0 + 2 * 3_600_000;
    let mut fresh = Engine::new(EngineConfig::default());
    fresh.set_wall_clock(Some(now));
    let err = fresh.observe(at("a", Y2099)).unwrap_err();
    assert_eq!(err.kind(), "ahead_of_wall_clock");
    assert!(err.to_string().contains("wall clock"), "{err}");
    assert_eq!(fresh.clock().newest_ts, None);

    let mut e = Engine::new(EngineConfig::default());
    e.set_wall_clock(Some(now));
    steady_services(&mut e, &services, 60);
    let newest = e.clock().newest_ts;
    for i in 0..100 {
        for svc in services {
            let err = e.observe(at(svc, Y2099 + i)).unwrap_err();
            assert_eq!(err.kind(), "ahead_of_wall_clock");
        }
    }
    assert_eq!(e.clock().newest_ts, newest);
    // Within the skew of the wall clock is fine.
    assert!(e.observe(at("a", now + 3_600_000)).is_ok());
}

/// Regression (issue 13, item 8): a series' last bucket was lost (its row's score blank in
/// CSV replay) when the watermark jumped past the series TTL before the bucket closed: the
/// series expired first.
#[test]
fn a_watermark_jump_past_the_ttl_still_scores_the_last_bucket() {
    let mut e = Engine::new(EngineConfig::default());
    let mut c = Collect::default();
    for m in 0..10 {
        e.observe(obs("IT", T0 + m * MIN, 3.0)).unwrap();
    }
    e.advance(T0 + 400 * 86_400_000, &mut c);
    assert_eq!(observed(&c, "IT", T0 + 9 * MIN), Some(3.0));
    assert_eq!(e.series_count(), 0, "then the idle series expire");
}

/// Regression (issue 13, item 2): two counts of 1e308 in one bucket summed to infinity and
/// anomaly events carried `null` numbers. Amounts are bounded; sums saturate.
#[test]
fn huge_counts_keep_sums_finite() {
    let mut e = Engine::new(EngineConfig::default());
    let mut c = Collect::default();
    assert_eq!(
        e.observe(obs("IT", T0, 1e308)).unwrap_err().kind(),
        "invalid_amount"
    );
    for _ in 0..10 {
        e.observe(obs("IT", T0, crate::event::MAX_AMOUNT)).unwrap();
    }
    e.finish(&mut c);
    let v = observed(&c, "IT", T0).unwrap();
    assert!(v.is_finite() && v == 10.0 * crate::event::MAX_AMOUNT, "{v}");
    assert!(c.buckets.iter().all(|b| b.5.is_finite()));
    assert_eq!(
        e.set_bucket_value("s", "*", "value", T0, f64::INFINITY)
            .unwrap_err()
            .kind(),
        "invalid_value"
    );
}

mod first_day;
mod recurrence;
mod upgrade;
