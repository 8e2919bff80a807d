//! An anomaly that begins at the same hour day after day is the series' daily pattern (a
//! nightly batch job, a morning rise sharper than the profile has learned); an outage, however
//! long, is not.

use super::*;

const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// Feeds `days` of one complaint count per minute on `IT`: `normal`, or `surge(minute)`.
fn feed(e: &mut Engine, c: &mut Collect, days: i64, surge: impl Fn(i64) -> Option<f64>) {
    for m in 0..days * 24 * 60 {
        let ts = T0 + m * MIN;
        // A deterministic wobble of ±5 % keeps the spread realistic.
        let normal = 200.0 * (1.0 + 0.05 * ((m * 7919 % 13) as f64 / 6.0 - 1.0));
        let amount = surge(m).unwrap_or(normal);
        e.observe(Observation {
            service: "libero.it",
            geo: "IT",
            signal: "complaints",
            ts_ms: ts + 30_000,
            amount,
        })
        .unwrap();
        e.advance(ts + 30_000, c);
    }
    e.finish(c);
}

/// Days (since `T0`) on which an incident of `IT` opened.
fn opening_days(c: &Collect) -> Vec<i64> {
    c.anomalies
        .iter()
        .filter(|a| a.geo == "IT" && a.state == IncidentState::Opened)
        .map(|a| (a.opened_at.millis() - T0) / DAY)
        .collect()
}

#[test]
fn a_nightly_batch_job_stops_opening_incidents_after_four_nights() {
    let mut e = Engine::new(EngineConfig::default());
    let mut c = Collect::default();
    // From the second night on, 22:00–23:30 holds twice the traffic: far above `open_z`,
    // below `open_z_single`.
    let nightly = |m: i64| {
        let (day, minute) = (m / (24 * 60), m % (24 * 60));
        (day >= 1 && (22 * 60..23 * 60 + 30).contains(&minute)).then_some(400.0)
    };
    feed(&mut e, &mut c, 15, nightly);
    let days = opening_days(&c);
    assert_eq!(days, [1, 2, 3, 4], "nights on which an incident opened");
}

#[test]
fn a_two_day_outage_does_not_teach_its_hours_and_the_next_outage_at_that_hour_opens() {
    let mut e = Engine::new(EngineConfig::default());
    let mut c = Collect::default();
    let outage = |m: i64| {
        let t = m * MIN;
        let first = (2 * DAY + 10 * HOUR..4 * DAY + 10 * HOUR).contains(&t);
        let second = (8 * DAY + 10 * HOUR..8 * DAY + 12 * HOUR).contains(&t);
        (first || second).then_some(2000.0)
    };
    feed(&mut e, &mut c, 10, outage);
    let opened: Vec<i64> = c
        .anomalies
        .iter()
        .filter(|a| a.geo == "IT" && a.state == IncidentState::Opened)
        .map(|a| a.opened_at.millis() - T0)
        .collect();
    assert_eq!(opened, vec![2 * DAY + 10 * HOUR, 8 * DAY + 10 * HOUR]);
    let second = c
        .anomalies
        .iter()
        .find(|a| a.geo == "IT" && a.opened_at.millis() == T0 + 8 * DAY + 10 * HOUR)
        .unwrap();
    assert!(second.bucket_start.millis() <= T0 + 8 * DAY + 10 * HOUR + 3 * MIN);
}

/// Feeds `days` to an engine watching `libero.it` in both directions: traffic all but stops
/// from day 2 10:00 to day 6 22:00, past the four days after which the outage is accepted
/// as the new normal, and is then `back(minutes since 22:00)` for as long as that gives one.
fn accepted_outage_then(days: i64, back: impl Fn(i64) -> Option<f64>) -> Collect {
    let mut cfg = EngineConfig::default();
    cfg.services.insert(
        "libero.it".into(),
        Overrides {
            direction: Some(crate::domain::Direction::Both),
            ..Default::default()
        },
    );
    let mut e = Engine::new(cfg);
    let mut c = Collect::default();
    let returns_at = 6 * DAY + 22 * HOUR;
    let outage = |m: i64| {
        let t = m * MIN;
        if (2 * DAY + 10 * HOUR..returns_at).contains(&t) {
            Some(5.0)
        } else if t >= returns_at {
            back((t - returns_at) / MIN)
        } else {
            None
        }
    };
    feed(&mut e, &mut c, days, outage);
    c
}

/// WSD series 029/047/059/122/128/140/146 (Baidu KPIs): a four-and-a-half-day outage was accepted
/// as the new normal after `max_incident_duration`, and the service's return the next morning
/// opened a "rise" lasting four more days; the hours learned against the outage's level then
/// paged every day at 11:00 for a week.
#[test]
fn the_return_after_an_outage_accepted_as_the_new_normal_is_not_a_new_incident() {
    // Back over three hours.
    let ramp = |m: i64| (m < 180).then(|| 5.0 + 195.0 * m as f64 / 180.0);
    let c = accepted_outage_then(14, ramp);
    // One incident, accepted as the new normal at day 6 10:00; the return is not reported.
    let it: Vec<_> = c.anomalies.iter().filter(|a| a.geo == "IT").collect();
    assert!(it
        .iter()
        .all(|a| a.opened_at.millis() == T0 + 2 * DAY + 10 * HOUR));
    let last = it.last().unwrap();
    assert_eq!(last.state, IncidentState::Resolved);
    assert_eq!(last.bucket_start.millis(), T0 + 6 * DAY + 10 * HOUR);
    // Back at its old level, the series is expected there at every hour: the outage taught
    // the profile nothing.
    let last_day = c
        .buckets
        .iter()
        .filter(|(_, geo, _, start, ..)| geo == "IT" && *start >= T0 + 13 * DAY);
    for (.., z, _) in last_day {
        assert!(z.abs() < 3.0, "z {z}");
    }
}

/// The same return, overshooting: a service back at 130 % of its old traffic (clients
/// retrying) has recovered too, and is scored against its old level, not the outage's.
#[test]
fn a_return_past_the_level_before_an_accepted_outage_restores_it() {
    let c = accepted_outage_then(9, |m| (m < 60).then_some(260.0));
    assert_eq!(opening_days(&c), [2], "days on which an incident opened");
    let last = c.anomalies.iter().rfind(|a| a.geo == "IT").unwrap();
    assert_eq!(last.bucket_start.millis(), T0 + 6 * DAY + 10 * HOUR);
}
