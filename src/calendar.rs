//! Civil-calendar arithmetic and the summer-time rules of the regions spikewatch knows, with
//! no dependencies inside the crate (like `domain`, a leaf that every layer may use).
//!
//! People complain at 09:00 *their* time. Twice a year most of Europe and North America move
//! their clocks, and a daily profile learned in UTC is then an hour off: the morning rise
//! comes an hour "early" and, until the profile has re-learned it over several days, scores
//! as an anomaly every morning. The baseline therefore indexes its profile by the hour of
//! the geo's winter-time clock plus the summer-time shift (`SummerTime::shift_ms`): the hour
//! a person's alarm clock shows, up to a constant offset that a profile does not care about.

use serde::{Deserialize, Serialize};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Year of a day number since 1970-01-01.
pub(crate) fn year_of(days: i64) -> i64 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(m <= 2)
}

/// Day of the week of a day number: Sunday = 0 … Saturday = 6 (1970-01-01 was a Thursday).
fn weekday_sun0(days: i64) -> i64 {
    (days + 4).rem_euclid(7)
}

/// Day number of the `n`-th (1-based) Sunday of a month.
fn nth_sunday(year: i64, month: i64, n: i64) -> i64 {
    let first = days_from_civil(year, month, 1);
    first + (7 - weekday_sun0(first)) % 7 + 7 * (n - 1)
}

/// Day number of the last Sunday of a month.
fn last_sunday(year: i64, month: i64) -> i64 {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let last = days_from_civil(y, m, 1) - 1;
    last - weekday_sun0(last)
}

/// EU summer time `[start, end)` of a year, epoch ms: the last Sundays of March and October
/// at 01:00 UTC (the whole EU, the UK, EEA and most of the rest of Europe switch together).
pub fn eu_summer_time(year: i64) -> (i64, i64) {
    (
        last_sunday(year, 3) * DAY_MS + HOUR_MS,
        last_sunday(year, 10) * DAY_MS + HOUR_MS,
    )
}

/// North American daylight saving time `[start, end)` of a year, epoch ms: the second Sunday
/// of March to the first Sunday of November, at 02:00 Eastern time (07:00 and 06:00 UTC).
/// Each time zone switches at its own 02:00, up to 5 hours later; for a profile of the hours
/// of the day the difference is a few night hours once a year.
pub fn north_american_summer_time(year: i64) -> (i64, i64) {
    (
        nth_sunday(year, 3, 2) * DAY_MS + 7 * HOUR_MS,
        nth_sunday(year, 11, 1) * DAY_MS + 6 * HOUR_MS,
    )
}

/// Countries (ISO 3166-1 alpha-2) that follow EU summer time.
const EU_SUMMER_TIME: &[&str] = &[
    "AD", "AL", "AT", "BA", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FO", "FR",
    "GB", "GG", "GI", "GR", "HR", "HU", "IE", "IM", "IT", "JE", "LI", "LT", "LU", "LV", "MC", "MD",
    "ME", "MK", "MT", "NL", "NO", "PL", "PT", "RO", "RS", "SE", "SI", "SK", "SM", "UA", "VA", "XK",
];

/// Subdivisions of the United States and Canada that keep standard time all year.
const NO_NORTH_AMERICAN_SUMMER_TIME: &[&str] = &["US-AZ", "US-HI", "US-PR", "CA-SK", "CA-YT"];

/// Which clock changes a series' daily profile follows (`summer_time` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SummerTime {
    /// From the geo code's country: EU summer time for European countries that observe it
    /// (`IT`, `IT-RM`, `GB`, …), North American for `US`/`CA` (but Arizona, Hawaii,
    /// Saskatchewan, …), none elsewhere and for `*`. Resolved per series.
    #[default]
    Auto,
    /// No clock change: the profile follows UTC (Russia, Turkey, Iran, most of Asia, the
    /// global `*` series, a service metric on UTC).
    None,
    /// EU summer time.
    Eu,
    /// United States and Canada daylight saving time.
    NorthAmerica,
}

impl SummerTime {
    /// `Auto` made concrete for a geo code (other rules are returned as they are).
    pub fn for_geo(self, geo: &str) -> SummerTime {
        if self != SummerTime::Auto {
            return self;
        }
        let country = geo.split('-').next().unwrap_or(geo);
        if EU_SUMMER_TIME.contains(&country) {
            SummerTime::Eu
        } else if matches!(country, "US" | "CA") && !NO_NORTH_AMERICAN_SUMMER_TIME.contains(&geo) {
            SummerTime::NorthAmerica
        } else {
            SummerTime::None
        }
    }

    /// How far the geo's clocks are ahead of their winter time at `t` (epoch ms): 0 or one
    /// hour. `Auto` (not resolved for a geo) is no shift.
    pub fn shift_ms(self, t: i64) -> i64 {
        let bounds = match self {
            SummerTime::Auto | SummerTime::None => return 0,
            SummerTime::Eu => eu_summer_time,
            SummerTime::NorthAmerica => north_american_summer_time,
        };
        let (from, to) = bounds(year_of(t.div_euclid(DAY_MS)));
        if (from..to).contains(&t) {
            HOUR_MS
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, m: i64, d: i64, h: i64) -> i64 {
        days_from_civil(y, m, d) * DAY_MS + h * HOUR_MS
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 1, 1) * DAY_MS, 1_704_067_200_000);
        for days in [-1, 0, 59, 365, 10_957, 19_723, 47_482] {
            let y = year_of(days);
            assert!(days_from_civil(y, 1, 1) <= days && days < days_from_civil(y + 1, 1, 1));
        }
        // 2024-03-31 was a Sunday; 2024-01-01 a Monday.
        assert_eq!(weekday_sun0(days_from_civil(2024, 3, 31)), 0);
        assert_eq!(weekday_sun0(days_from_civil(2024, 1, 1)), 1);
    }

    #[test]
    fn eu_summer_time_runs_between_the_last_sundays_of_march_and_october() {
        assert_eq!(
            eu_summer_time(2024),
            (at(2024, 3, 31, 1), at(2024, 10, 27, 1))
        );
        assert_eq!(
            eu_summer_time(2025),
            (at(2025, 3, 30, 1), at(2025, 10, 26, 1))
        );
        assert_eq!(
            eu_summer_time(2026),
            (at(2026, 3, 29, 1), at(2026, 10, 25, 1))
        );
        let eu = SummerTime::Eu;
        assert_eq!(eu.shift_ms(at(2024, 3, 31, 1) - 1), 0);
        assert_eq!(eu.shift_ms(at(2024, 3, 31, 1)), HOUR_MS);
        assert_eq!(eu.shift_ms(at(2024, 10, 27, 1) - 1), HOUR_MS);
        assert_eq!(eu.shift_ms(at(2024, 10, 27, 1)), 0);
        assert_eq!(eu.shift_ms(at(2024, 1, 15, 12)), 0);
    }

    #[test]
    fn north_american_summer_time_runs_from_the_second_sunday_of_march_to_the_first_of_november() {
        assert_eq!(
            north_american_summer_time(2024),
            (at(2024, 3, 10, 7), at(2024, 11, 3, 6))
        );
        assert_eq!(
            north_american_summer_time(2025),
            (at(2025, 3, 9, 7), at(2025, 11, 2, 6))
        );
        let na = SummerTime::NorthAmerica;
        assert_eq!(na.shift_ms(at(2024, 7, 4, 12)), HOUR_MS);
        assert_eq!(na.shift_ms(at(2024, 12, 25, 12)), 0);
    }

    #[test]
    fn auto_follows_the_geo_codes_country() {
        let auto = SummerTime::Auto;
        for (geo, rule) in [
            ("IT", SummerTime::Eu),
            ("IT-RM", SummerTime::Eu),
            ("GB", SummerTime::Eu),
            ("US", SummerTime::NorthAmerica),
            ("US-CA", SummerTime::NorthAmerica),
            ("US-AZ", SummerTime::None),
            ("CA-SK", SummerTime::None),
            ("RU", SummerTime::None),
            ("TR", SummerTime::None),
            ("IR", SummerTime::None),
            ("*", SummerTime::None),
            ("", SummerTime::None),
        ] {
            assert_eq!(auto.for_geo(geo), rule, "{geo}");
        }
        // A rule given explicitly is kept.
        assert_eq!(SummerTime::None.for_geo("IT"), SummerTime::None);
        assert_eq!(SummerTime::Eu.for_geo("*"), SummerTime::Eu);
        assert_eq!(auto.shift_ms(at(2024, 7, 1, 12)), 0);
    }
}
