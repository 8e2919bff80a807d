//! A series' first day: no daily profile yet, so the level is only the last few minutes'.
//! Found on WSD series that start in the afternoon of a service whose traffic is high all day
//! and low from 17:00 to 22:00: the return to the daytime level at 22:00 opened an incident that
//! stayed open for up to four days, as nothing is learned inside one.

use super::*;

const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// One minute of a service with 1,000 complaints a minute, except 300 from 17:00 to 22:00, and
/// a deterministic wobble of ±5 %.
fn daily_trough(t: i64) -> f64 {
    let m = t / MIN;
    let level = if (17 * HOUR..22 * HOUR).contains(&(t % DAY)) {
        300.0
    } else {
        1000.0
    };
    level * (1.0 + 0.05 * ((m * 7919 % 13) as f64 / 6.0 - 1.0))
}

/// Feeds minutes `from..to` (since `T0`) of `amount(t)` and returns when incidents opened.
fn openings(from: i64, to: i64, amount: impl Fn(i64) -> f64) -> Vec<i64> {
    let mut e = Engine::new(EngineConfig::default());
    let mut c = Collect::default();
    for t in (from..to).step_by(MIN as usize) {
        e.observe(Observation {
            service: "libero.it",
            geo: "IT",
            signal: "complaints",
            ts_ms: T0 + t + 30_000,
            amount: amount(t),
        })
        .unwrap();
        e.advance(T0 + t + 30_000, &mut c);
    }
    e.finish(&mut c);
    c.anomalies
        .iter()
        .filter(|a| a.geo == "IT" && a.state == IncidentState::Opened)
        .map(|a| a.opened_at.millis() - T0)
        .collect()
}

#[test]
fn a_series_first_seen_in_its_evening_trough_does_not_page_on_its_daytime_level() {
    // Watched from 09:00: the daytime level, the trough, then the daytime level again at 22:00,
    // until the first day is complete. (Later nights are the profile's: an hourly profile
    // follows a step at a fixed minute only to within its hour.)
    let opened = openings(9 * HOUR, 9 * HOUR + DAY, daily_trough);
    assert_eq!(opened, Vec::<i64>::new(), "incidents opened (ms since T0)");
}

#[test]
fn on_its_first_day_a_series_still_pages_beyond_the_levels_it_has_shown() {
    // The same series, with an outage at 13:00 on its first day: three times the daytime level.
    let outage = |t: i64| {
        if (13 * HOUR..14 * HOUR).contains(&t) {
            3000.0
        } else {
            daily_trough(t)
        }
    };
    let opened = openings(9 * HOUR, 9 * HOUR + DAY, outage);
    assert_eq!(opened, vec![13 * HOUR], "incidents opened (ms since T0)");
}
