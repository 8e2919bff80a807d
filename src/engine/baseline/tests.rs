use super::*;
use crate::domain::Secs;

fn params(bucket_secs: u64) -> BaselineParams {
    let t = Thresholds {
        bucket: Secs(bucket_secs),
        ..Thresholds::default()
    };
    BaselineParams::new(&t)
}

fn feed(b: &mut SeasonalBaseline, p: &BaselineParams, start: i64, x: f64) -> Expectation {
    let e = b.expect(start, x, p);
    b.learn(start, x, &e, Learn::Yes, p);
    e
}

#[test]
fn alpha_halves_influence_per_half_life() {
    let a = alpha(60_000, 60.0 * 60_000.0);
    let remaining = (1.0 - a).powi(60);
    assert!((remaining - 0.5).abs() < 1e-9);
}

#[test]
fn constant_series_expects_its_value_with_poisson_scale() {
    let p = params(60);
    let mut b = SeasonalBaseline::new();
    for i in 0..600 {
        feed(&mut b, &p, i * 60_000, 100.0);
    }
    let e = b.expect(600 * 60_000, 100.0, &p);
    assert!((e.expected - 100.0).abs() < 1e-6, "{e:?}");
    // Poisson floor sqrt(100) = 10 beats the relative floor 5 and min_scale 1.
    assert!((e.scale - 10.0).abs() < 1e-6, "{e:?}");
}

#[test]
fn mostly_zero_series_never_gets_a_tiny_scale() {
    let p = params(60);
    let mut b = SeasonalBaseline::new();
    for i in 0..2000 {
        let x = if i % 97 == 0 { 1.0 } else { 0.0 };
        feed(&mut b, &p, i * 60_000, x);
    }
    let e = b.expect(2000 * 60_000, 1.0, &p);
    assert!(e.scale >= 1.0, "{e:?}");
    assert!((1.0 - e.expected) / e.scale < 1.5, "{e:?}");
}

#[test]
fn flat_gauge_is_floored_by_fraction_of_level() {
    let t = Thresholds {
        poisson_floor: false,
        min_scale: 1e-3,
        rel_scale_floor: 0.05,
        ..Thresholds::default()
    };
    let p = BaselineParams::new(&t);
    let mut b = SeasonalBaseline::new();
    for i in 0..500 {
        feed(&mut b, &p, i * 60_000, 40.0);
    }
    let e = b.expect(500 * 60_000, 41.0, &p);
    assert!((e.scale - 2.0).abs() < 1e-6, "{e:?}");
}

/// A dependency latency that is 0 in every hour without calls (`outbound-23` of the
/// labelled real data: about 100 ms at 10:00, 0 otherwise). Without the intermittency
/// floor its expectation and spread collapse to ~0 and an ordinary value at another hour
/// scored z ≈ 10¹⁰.
#[test]
fn an_intermittent_gauge_scores_its_usual_value_as_ordinary_at_any_hour() {
    let gauge = |floor: f64| {
        BaselineParams::new(&Thresholds {
            bucket: Secs(3600),
            poisson_floor: false,
            min_scale: 1e-9,
            rel_scale_floor: 0.05,
            intermittent_scale_floor: floor,
            ..Thresholds::default()
        })
    };
    let hour = 3_600_000;
    let z_at_3am = |floor: f64, value: f64| {
        let p = gauge(floor);
        let mut b = SeasonalBaseline::new();
        for h in 0..(14 * 24) {
            let x = if h % 24 == 10 { 100.0 } else { 0.0 };
            feed(&mut b, &p, h * hour, x);
        }
        let e = b.expect(14 * 24 * hour + 3 * hour, value, &p);
        (value - e.expected) / e.scale
    };
    assert!(z_at_3am(0.0, 100.0) > 1e3, "the bug this pins");
    let usual = z_at_3am(1.0, 100.0);
    assert!(usual < 6.0, "usual value at 03:00 scores {usual}");
    let tenfold = z_at_3am(1.0, 1000.0);
    assert!(tenfold > 20.0, "ten times the usual scores {tenfold}");
}

fn daily_shape(ms: i64) -> f64 {
    let hour = (ms / 60_000 % 1440) as f64 / 60.0;
    // Night 20, day peak 200 around 13:00.
    20.0 + 180.0 * (0.5 - 0.5 * (std::f64::consts::TAU * (hour - 1.0) / 24.0).cos())
}

#[test]
fn learns_a_daily_profile_and_follows_the_morning_rise() {
    let p = params(60);
    let mut b = SeasonalBaseline::new();
    let day = 1440;
    for i in 0..(3 * day) {
        let t = i * 60_000;
        feed(&mut b, &p, t, daily_shape(t));
    }
    // On day 4 the rise from 06:00 to 10:00 is expected within a few percent.
    for minute in (360..600).step_by(10) {
        let t = (3 * day + minute) * 60_000;
        let e = b.expect(t, daily_shape(t), &p);
        assert_eq!(e.kind, BaselineKind::Seasonal);
        let rel = (e.expected - daily_shape(t)).abs() / daily_shape(t);
        assert!(
            rel < 0.06,
            "minute {minute}: expected {} got {}",
            e.expected,
            daily_shape(t)
        );
    }
}

#[test]
fn contaminated_buckets_do_not_move_the_baseline() {
    let p = params(60);
    let mut b = SeasonalBaseline::new();
    for i in 0..300 {
        feed(&mut b, &p, i * 60_000, 50.0);
    }
    let before = b.expect(300 * 60_000, 50.0, &p);
    for i in 300..3000 {
        let t = i * 60_000;
        let e = b.expect(t, 5000.0, &p);
        b.learn(t, 5000.0, &e, Learn::Contaminated, &p);
    }
    let after = b.expect(3000 * 60_000, 50.0, &p);
    assert!((after.expected - before.expected).abs() < 1e-9);
}

#[test]
fn winsorised_spikes_barely_move_the_level() {
    let p = params(60);
    let mut b = SeasonalBaseline::new();
    for i in 0..300 {
        feed(&mut b, &p, i * 60_000, 100.0);
    }
    feed(&mut b, &p, 300 * 60_000, 10_000.0);
    let e = b.expect(301 * 60_000, 100.0, &p);
    // Clipped at 3 scales, through the fast cold-start level: well under 2%.
    assert!(e.expected < 102.0, "{e:?}");
}

#[test]
fn a_checkpoint_with_an_impossible_intermittency_is_refused() {
    let p = params(60);
    let mut b = SeasonalBaseline::new();
    for i in 0..100 {
        feed(&mut b, &p, i * 60_000, if i % 3 == 0 { 0.0 } else { 4.0 });
    }
    let good = b.to_state();
    assert!(SeasonalBaseline::from_state(good.clone()).is_ok());
    for bad in [
        BaselineState {
            nonzero_frac: 1.5,
            ..good.clone()
        },
        BaselineState {
            nonzero_mean: -1.0,
            ..good.clone()
        },
        BaselineState {
            nonzero_frac: f64::NAN,
            ..good
        },
    ] {
        assert!(matches!(
            SeasonalBaseline::from_state(bad),
            Err(StateError::Invalid(_))
        ));
    }
}

#[test]
fn an_hour_recurs_when_anomalies_began_in_it_on_four_of_the_last_seven_days() {
    let p = params(60);
    let mut b = SeasonalBaseline::new();
    // A profile exists (the record is only consulted then).
    for i in 0..(26 * 60) {
        feed(&mut b, &p, i * 60_000, 100.0);
    }
    let day = MS_PER_DAY;
    let at = |d: i64| 10 * day + d * day + 22 * 3_600_000 + 5 * 60_000;
    for d in [0, 1, 2] {
        b.mark_anomalous_hour(at(d), &p);
    }
    assert!(!b.hour_recurs(at(3), &p), "three days are not a pattern");
    b.mark_anomalous_hour(at(3), &p);
    assert!(b.hour_recurs(at(4), &p));
    assert!(!b.hour_recurs(at(4) + 3_600_000, &p), "another hour");
    // Today's own anomalies do not count: the previous days do.
    assert!(b.hour_recurs(at(4) + 10 * 60_000, &p));
    // A week later the oldest days have aged out.
    assert!(!b.hour_recurs(at(8), &p));
    assert!(b.hour_recurs(at(7), &p));
    assert!(!b.hour_recurs(at(20), &p));
    // And it survives a checkpoint.
    let restored = SeasonalBaseline::from_state(b.to_state()).unwrap();
    assert!(restored.hour_recurs(at(4), &p));
}

#[test]
fn an_accepted_shift_holds_the_previous_level_for_a_while_and_across_a_checkpoint() {
    let p = params(60);
    let mut b = SeasonalBaseline::new();
    for i in 0..120 {
        feed(&mut b, &p, i * 60_000, 100.0);
    }
    let at = 120 * 60_000;
    let exp = b.expect(at, 5.0, &p);
    b.reseed(at, 5.0, &exp);
    assert!((b.expect(at, 5.0, &p).expected - 5.0).abs() < 1e-9);
    let hold = 3_600_000;
    // Restored from a checkpoint, the held level is still there.
    let mut restored = SeasonalBaseline::from_state(b.to_state()).unwrap();
    let held = restored.held_expectation(at + 60_000, hold, &p).unwrap();
    assert!((held.expected - 100.0).abs() < 1.0, "{held:?}");
    restored.restore_held();
    assert!((restored.expect(at, 100.0, &p).expected - 100.0).abs() < 1.0);
    assert!(restored.held_expectation(at + 60_000, hold, &p).is_none());
    // Past the hold it is let go.
    assert!(b.held_expectation(at + hold + 60_000, hold, &p).is_none());
    assert!(b.held_expectation(at + 60_000, hold, &p).is_none());
}
