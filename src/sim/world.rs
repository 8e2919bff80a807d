//! The demo's world: its leaf geos, its services with their peak rates, and the outages
//! injected into them.

use super::{presence, GeoSpec, Outage, ServiceSpec, DAY_MS, HOUR_MS, MINUTE_MS};

/// The leaf geos of the demo: Italian cities (they roll up to `IT`) and countries.
pub const GEOS: &[GeoSpec] = &[
    GeoSpec {
        code: "IT-RM",
        utc_offset_hours: 1.0,
    },
    GeoSpec {
        code: "IT-MI",
        utc_offset_hours: 1.0,
    },
    GeoSpec {
        code: "IT-VE",
        utc_offset_hours: 1.0,
    },
    GeoSpec {
        code: "IT-NA",
        utc_offset_hours: 1.0,
    },
    GeoSpec {
        code: "IT-CT",
        utc_offset_hours: 1.0,
    },
    GeoSpec {
        code: "IT-BO",
        utc_offset_hours: 1.0,
    },
    GeoSpec {
        code: "DE",
        utc_offset_hours: 1.0,
    },
    GeoSpec {
        code: "FR",
        utc_offset_hours: 1.0,
    },
    GeoSpec {
        code: "ES",
        utc_offset_hours: 1.0,
    },
    GeoSpec {
        code: "NL",
        utc_offset_hours: 1.0,
    },
    GeoSpec {
        code: "GB",
        utc_offset_hours: 0.0,
    },
    GeoSpec {
        code: "RU",
        utc_offset_hours: 3.0,
    },
    GeoSpec {
        code: "TR",
        utc_offset_hours: 3.0,
    },
    GeoSpec {
        code: "IR",
        utc_offset_hours: 3.5,
    },
];

/// The services of the demo with plausible peak per-minute rates.
pub fn demo_services() -> Vec<ServiceSpec> {
    let italy = |m: f64, c: f64| {
        vec![
            presence("IT-RM", 6.0 * m, 4.0 * c),
            presence("IT-MI", 7.0 * m, 4.5 * c),
            presence("IT-VE", 1.5 * m, 1.2 * c),
            presence("IT-NA", 4.0 * m, 3.0 * c),
            presence("IT-CT", 1.8 * m, 1.4 * c),
        ]
    };
    let europe = |m: f64, c: f64| {
        vec![
            presence("DE", 30.0 * m, 14.0 * c),
            presence("FR", 25.0 * m, 12.0 * c),
            presence("ES", 18.0 * m, 9.0 * c),
            presence("NL", 8.0 * m, 4.0 * c),
            presence("GB", 28.0 * m, 13.0 * c),
        ]
    };
    let mut telegram = italy(1.0, 1.0);
    telegram.extend(europe(1.0, 1.0));
    telegram.extend([
        presence("RU", 45.0, 20.0),
        presence("TR", 15.0, 7.0),
        presence("IR", 20.0, 9.0),
    ]);
    let libero = italy(0.8, 1.5);
    let mut spotify = italy(0.6, 0.5);
    spotify.extend(europe(0.7, 0.6));
    let mut google = italy(1.2, 0.8);
    google.extend(europe(1.2, 0.9));
    vec![
        ServiceSpec {
            name: "telegram",
            presence: telegram,
        },
        ServiceSpec {
            name: "libero-mail",
            presence: libero,
        },
        ServiceSpec {
            name: "spotify",
            presence: spotify,
        },
        ServiceSpec {
            name: "google",
            presence: google,
        },
    ]
}

const ITALIAN_CITIES: [&str; 5] = ["IT-RM", "IT-MI", "IT-VE", "IT-NA", "IT-CT"];

/// Outages shaped like the incidents spikewatch was conceived from, relative to `start`
/// (a Monday 00:00 UTC). The first two weeks are normal so baselines can learn.
pub fn demo_outages(start: i64) -> Vec<Outage> {
    let at = |day: i64, h: i64, m: i64| start + day * DAY_MS + h * HOUR_MS + m * MINUTE_MS;
    let same = |geos: &[&'static str], from: i64, to: i64| -> Vec<(&'static str, i64, i64)> {
        geos.iter().map(|&g| (g, from, to)).collect()
    };
    // (a) Telegram down across Italy and much of western Europe, Russia and Turkey: ~3 hours.
    let a_from = at(16, 14, 10);
    let a_to = at(16, 17, 10);
    let mut a_geos = same(&ITALIAN_CITIES, a_from, a_to);
    a_geos.extend(same(
        &["DE", "FR", "ES", "NL", "GB", "RU", "TR"],
        a_from,
        a_to,
    ));
    // (b) Telegram down 12+ hours (data-centre power failure): Europe recovers first, Russia
    // and Turkey later, Iran hours later.
    let b_from = at(23, 6, 0);
    let mut b_geos = same(&ITALIAN_CITIES, b_from, at(23, 18, 0));
    b_geos.extend(same(&["DE", "FR", "ES", "NL", "GB"], b_from, at(23, 18, 0)));
    b_geos.extend([
        ("RU", b_from, at(23, 19, 30)),
        ("TR", b_from, at(23, 20, 0)),
        ("IR", b_from, at(23, 23, 30)),
    ]);
    vec![
        Outage {
            label: "Telegram down across Italy, western Europe, Russia and Turkey (~3 h, #telegramdown)",
            service: "telegram",
            geos: a_geos,
            complaints_factor: 15.0,
            mentions_factor: 12.0,
        },
        Outage {
            label: "Telegram down 12+ h (data-centre power failure); Iran recovers hours after Europe",
            service: "telegram",
            geos: b_geos,
            complaints_factor: 12.0,
            mentions_factor: 8.0,
        },
        Outage {
            label: "Libero/Virgilio mail down 48+ h across Italy",
            service: "libero-mail",
            geos: same(&ITALIAN_CITIES, at(29, 7, 40), at(31, 9, 0)),
            complaints_factor: 10.0,
            mentions_factor: 6.0,
        },
        Outage {
            label: "Libero mail down again for 3 days in waves: night dip, renewed rise at 07:00",
            service: "libero-mail",
            geos: same(&ITALIAN_CITIES, at(36, 9, 30), at(38, 17, 0)),
            complaints_factor: 6.0,
            mentions_factor: 4.0,
        },
        Outage {
            label: "Same day, several services: Google down in Italy and Europe",
            service: "google",
            geos: same(&["IT-RM", "IT-MI", "IT-NA", "DE", "FR", "GB", "ES"], at(40, 8, 5), at(40, 9, 35)),
            complaints_factor: 12.0,
            mentions_factor: 10.0,
        },
        Outage {
            label: "Same day, several services: Spotify down in Italy, Spain and the UK, overlapping Google",
            service: "spotify",
            geos: same(&["IT-RM", "IT-MI", "IT-NA", "ES", "GB"], at(40, 9, 0), at(40, 11, 0)),
            complaints_factor: 12.0,
            mentions_factor: 10.0,
        },
        Outage {
            label: "Same day, several services: Telegram down in Rome, Milan and Russia",
            service: "telegram",
            geos: same(&["IT-RM", "IT-MI", "RU"], at(40, 15, 0), at(40, 16, 30)),
            complaints_factor: 12.0,
            mentions_factor: 10.0,
        },
    ]
}
