//! Deterministic traffic generator: weeks of realistic mention and complaint counts for a few
//! services over Italian and European geos, with injected outages shaped like real incidents.
//! Drives the demo, the scenario tests, the benchmarks and `produce-demo`.
//!
//! Rates follow local time of day (low at 03:00–05:00, a steep rise from 06:30, an evening
//! shoulder), the day of week (weekends lower and later) and slow growth; counts are
//! over-dispersed (gamma-Poisson). An outage multiplies the rate of its service in its geos,
//! ramping up within a couple of minutes, so during a multi-day outage reports still dip at
//! night and rise again when people wake up.
//!
//! That world is tame next to real social data; [`Realism`] (module `realistic`) adds the
//! heavier noise, retweet bursts, news bumps, input gaps and daylight saving time that real
//! series have. Its default adds nothing, so existing scenarios draw the same counts as ever.

use std::borrow::Cow;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma, Poisson};

use crate::engine::{Engine, EngineSink, Observation, ObserveError};
use crate::event::{
    AnomalyEvent, ComplaintEvent, IncidentState, InputEvent, MentionEvent, Severity, Timestamp,
};
use crate::event::{SIGNAL_COMPLAINTS, SIGNAL_MENTIONS};

mod realistic;
pub use realistic::{eu_summer_time, observes_eu_dst, Bursts, News, Realism};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;
pub const WEEK_MS: i64 = 7 * DAY_MS;
/// Monday 2024-01-01T00:00:00Z.
pub const DEMO_START_MS: i64 = 1_704_067_200_000;
/// Monday 2024-03-04T00:00:00Z: the realistic demo spans the start of EU summer time.
pub const REALISTIC_START_MS: i64 = DEMO_START_MS + 63 * DAY_MS;

/// Gamma shape of the noise: variance = λ + λ²/k.
const NOISE_SHAPE: f64 = 12.0;

/// A leaf geo and how its users' clocks relate to UTC.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoSpec {
    pub code: &'static str,
    pub utc_offset_hours: f64,
}

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

/// Peak per-minute rates of one service in one leaf geo.
#[derive(Debug, Clone, PartialEq)]
pub struct Presence {
    pub geo: &'static str,
    pub mentions_peak: f64,
    pub complaints_peak: f64,
    /// No traffic before this time: a geo seen for the first time mid-stream.
    pub since_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub name: &'static str,
    pub presence: Vec<Presence>,
}

/// An injected outage: the service's rate in each geo is multiplied from `start` to `end`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    pub label: &'static str,
    pub service: &'static str,
    /// Per geo: (geo, start ms, end ms). Geos recover at different times.
    pub geos: Vec<(&'static str, i64, i64)>,
    pub complaints_factor: f64,
    pub mentions_factor: f64,
}

impl Outage {
    /// Multiplier at `t` for `geo` (1 outside the outage), ramping over two minutes.
    fn factor(&self, geo: &str, signal: Signal, t: i64) -> f64 {
        let full = match signal {
            Signal::Mentions => self.mentions_factor,
            Signal::Complaints => self.complaints_factor,
        };
        for &(g, start, end) in &self.geos {
            if g == geo && t >= start && t < end {
                let ramp = (((t - start) as f64 / (2 * MINUTE_MS) as f64) + 0.5).min(1.0);
                let fade = (((end - t) as f64 / (2 * MINUTE_MS) as f64) + 0.5).min(1.0);
                return 1.0 + (full - 1.0) * ramp.min(fade);
            }
        }
        1.0
    }

    /// Earliest onset over its geos.
    pub fn start_ms(&self) -> i64 {
        self.geos.iter().map(|g| g.1).min().unwrap_or(0)
    }

    /// Latest recovery over its geos.
    pub fn end_ms(&self) -> i64 {
        self.geos.iter().map(|g| g.2).max().unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Mentions,
    Complaints,
}

impl Signal {
    pub const ALL: [Signal; 2] = [Signal::Mentions, Signal::Complaints];
    pub fn name(self) -> &'static str {
        match self {
            Signal::Mentions => SIGNAL_MENTIONS,
            Signal::Complaints => SIGNAL_COMPLAINTS,
        }
    }
}

/// A whole generated world: when, how long, who, and what breaks.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub start_ms: i64,
    pub days: u32,
    pub seed: u64,
    pub bucket_ms: i64,
    pub services: Vec<ServiceSpec>,
    pub outages: Vec<Outage>,
    /// Departures from the tame generator; the default is none.
    pub realism: Realism,
}

pub fn presence(geo: &'static str, mentions_peak: f64, complaints_peak: f64) -> Presence {
    Presence {
        geo,
        mentions_peak,
        complaints_peak,
        since_ms: i64::MIN,
    }
}

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

impl Scenario {
    /// Six weeks (42 days) from Monday 2024-01-01 with the demo's outages.
    pub fn demo() -> Self {
        Self {
            start_ms: DEMO_START_MS,
            days: 42,
            seed: 20_230_614,
            bucket_ms: MINUTE_MS,
            services: demo_services(),
            outages: demo_outages(DEMO_START_MS),
            realism: Realism::default(),
        }
    }

    /// The demo's services and outages over six weeks of realistic traffic
    /// ([`Realism::realistic`]) from Monday 2024-03-04, so EU summer time starts in the middle
    /// (Sunday 2024-03-31, day 27), after the first outages and before the others.
    pub fn realistic_demo() -> Self {
        Self {
            start_ms: REALISTIC_START_MS,
            outages: demo_outages(REALISTIC_START_MS),
            realism: Realism::realistic(),
            ..Self::demo()
        }
    }

    /// [`Scenario::realistic_demo`] without outages: what false alarms look like on real data.
    pub fn realistic_normal(weeks: u32) -> Self {
        Self {
            days: weeks * 7,
            outages: Vec::new(),
            ..Self::realistic_demo()
        }
    }

    /// The same world with input gaps: `[from, to)` intervals (ms) in which no bucket of any
    /// series is emitted.
    pub fn with_gaps(mut self, gaps: &[(i64, i64)]) -> Self {
        self.realism.gaps.extend_from_slice(gaps);
        self
    }

    /// The demo's services with no outages at all: what false alarms look like.
    pub fn normal(weeks: u32) -> Self {
        Self {
            days: weeks * 7,
            outages: Vec::new(),
            ..Self::demo()
        }
    }

    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.days as i64 * DAY_MS
    }

    /// Expected rate (per bucket) of one service, geo and signal at `t`, outages included.
    pub fn rate(&self, service: &str, p: &Presence, signal: Signal, t: i64) -> f64 {
        let (hour, weekend) = self.local_clock(p.geo, t);
        let peak = match signal {
            Signal::Mentions => p.mentions_peak,
            Signal::Complaints => p.complaints_peak,
        };
        let weeks_in = (t - self.start_ms) as f64 / WEEK_MS as f64;
        let growth = 1.0 + 0.01 * weeks_in.max(0.0);
        let mut r = peak * daily_shape(hour, weekend) * growth;
        for o in self.outages.iter().filter(|o| o.service == service) {
            r *= o.factor(p.geo, signal, t);
        }
        r * self.bucket_ms as f64 / MINUTE_MS as f64
    }

    /// Local hour of day and whether it is a weekend in `geo` at `t` (summer time included
    /// if the scenario's realism has it).
    pub fn local_clock(&self, geo: &str, t: i64) -> (f64, bool) {
        let mut offset = GEOS
            .iter()
            .find(|g| g.code == geo)
            .map_or(0.0, |g| g.utc_offset_hours);
        if self.realism.dst && observes_eu_dst(geo) {
            offset += realistic::dst_shift_hours(t);
        }
        let local = t as f64 + offset * HOUR_MS as f64;
        let day = (local / DAY_MS as f64).floor();
        // 1970-01-01 was a Thursday: day 0 → weekday 3 (Monday = 0).
        let weekday = ((day as i64 + 3).rem_euclid(7)) as u32;
        let hour = (local - day * DAY_MS as f64) / HOUR_MS as f64;
        (hour, weekday >= 5)
    }

    /// Calls `f(bucket_start, service, geo, signal, count)` for every bucket in time order,
    /// and every service, leaf geo and signal within a bucket. Deterministic for a seed.
    /// Buckets inside one of the realism's gaps are drawn but not passed to `f`.
    pub fn generate(&self, mut f: impl FnMut(i64, &str, &str, Signal, u64)) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut fx = realistic::Effects::new(self);
        let mut t = self.start_ms;
        while t < self.end_ms() {
            let mid = t + self.bucket_ms / 2;
            let silent = fx.begin_bucket(t);
            let mut series = 0;
            for (si, s) in self.services.iter().enumerate() {
                for p in &s.presence {
                    for signal in Signal::ALL {
                        series += 1;
                        if t < p.since_ms {
                            continue;
                        }
                        let lambda = self.rate(s.name, p, signal, mid)
                            * fx.factor(self, series - 1, si, p.geo, signal, mid);
                        let count = sample_count_shaped(&mut rng, lambda, fx.shape(signal));
                        if !silent {
                            f(t, s.name, p.geo, signal, count);
                        }
                    }
                }
            }
            t += self.bucket_ms;
        }
    }
}

/// Relative activity at a local hour: ~0.08 at night, a steep rise from 06:30, a plateau,
/// an evening shoulder; weekends start ~1.5 h later and are 25% quieter.
pub fn daily_shape(hour: f64, weekend: bool) -> f64 {
    let x = if weekend { hour - 1.5 } else { hour };
    let morning = 1.0 / (1.0 + (-(x - 7.5) * 1.8).exp());
    let night = 1.0 / (1.0 + ((x - 22.5) * 1.3).exp());
    let evening = 0.15 * (-(x - 20.5).powi(2) / 3.0).exp();
    let v = 0.08 + 0.92 * morning * night + evening;
    if weekend {
        0.75 * v
    } else {
        v
    }
}

/// Gamma-Poisson (negative binomial) draw with mean `lambda`.
pub fn sample_count(rng: &mut ChaCha8Rng, lambda: f64) -> u64 {
    sample_count_shaped(rng, lambda, NOISE_SHAPE)
}

/// Gamma-Poisson draw with mean `lambda` and gamma shape `shape` (variance λ + λ²/shape).
pub fn sample_count_shaped(rng: &mut ChaCha8Rng, lambda: f64, shape: f64) -> u64 {
    if lambda <= 0.0 {
        return 0;
    }
    let g = Gamma::new(shape, lambda / shape)
        .map(|d| d.sample(rng))
        .unwrap_or(lambda);
    if g <= 0.0 {
        return 0;
    }
    Poisson::new(g).map(|d| d.sample(rng) as u64).unwrap_or(0)
}

/// Turns one bucket's count into wire events: `count` mentions spread over the bucket, or one
/// complaint-count event at the bucket's middle.
pub fn expand_events<'a>(
    rng: &mut ChaCha8Rng,
    bucket_start: i64,
    bucket_ms: i64,
    service: &'a str,
    geo: &'a str,
    signal: Signal,
    count: u64,
) -> Vec<InputEvent<'a>> {
    match signal {
        Signal::Mentions => (0..count)
            .map(|_| {
                InputEvent::Mention(MentionEvent {
                    kind: None,
                    ts: Timestamp(bucket_start + rng.random_range(0..bucket_ms)),
                    service: Cow::Borrowed(service),
                    geo: Cow::Borrowed(geo),
                    source: Some(Cow::Borrowed("demo")),
                    lang: None,
                    text: None,
                    tags: Some(vec![Cow::Owned(format!(
                        "{}down",
                        service.replace('-', "")
                    ))]),
                    weight: None,
                    id: None,
                })
            })
            .collect(),
        Signal::Complaints if count == 0 => Vec::new(),
        Signal::Complaints => vec![InputEvent::Complaint(ComplaintEvent {
            kind: None,
            ts: Timestamp(bucket_start + bucket_ms / 2),
            service: Cow::Borrowed(service),
            geo: Cow::Borrowed(geo),
            count: count as f64,
            category: Some(Cow::Borrowed("login")),
            id: None,
        })],
    }
}

/// Feeds a scenario to the engine as a live stream would: every leaf bucket's count as one
/// observation, the watermark advanced as event time moves on, then `finish`. During an input
/// gap nothing is observed and the watermark stays put; the first bucket after it moves event
/// time on.
pub fn drive<S: EngineSink + ?Sized>(scenario: &Scenario, engine: &mut Engine, sink: &mut S) {
    drive_until(scenario, engine, sink, scenario.end_ms());
    engine.finish(sink);
}

/// Like [`drive`], but the stream stops before the bucket starting at `until_ms` and the
/// engine is left as a live one would be then (open buckets, open incidents; no `finish`).
pub fn drive_until<S: EngineSink + ?Sized>(
    scenario: &Scenario,
    engine: &mut Engine,
    sink: &mut S,
    until_ms: i64,
) {
    let mut current = i64::MIN;
    scenario.generate(|t, service, geo, signal, count| {
        if t >= until_ms {
            return;
        }
        if t != current {
            engine.advance(t, sink);
            current = t;
        }
        if count == 0 {
            return;
        }
        let observed = engine.observe(Observation {
            service,
            geo,
            signal: signal.name(),
            ts_ms: t,
            amount: count as f64,
        });
        match observed {
            // After a long input gap the first events are far ahead of the last ones seen: a
            // live stream dead-letters them until the engine accepts that time moved on.
            Ok(_) | Err(ObserveError::TooFarAhead { .. }) => {}
            Err(e) => panic!("generated traffic is valid: {e}"),
        }
    });
}

/// One incident as a reader sees it: every anomaly event of one `incident_id`, folded.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentSummary {
    pub incident_id: String,
    pub service: String,
    pub geo: String,
    pub signal: String,
    /// Start of the first anomalous bucket.
    pub opened_at_ms: i64,
    /// End of the bucket whose event opened it: when a subscriber first heard of it.
    pub announced_at_ms: i64,
    /// End of the last anomalous bucket, if it resolved.
    pub resolved_at_ms: Option<i64>,
    pub peak_at_ms: i64,
    pub peak_zscore: f64,
    pub peak_observed: f64,
    /// Expected value at the bucket of the latest event that carried the peak.
    pub expected_at_peak: f64,
    pub severity: Severity,
    pub events: usize,
    pub reopened: u32,
    pub child_geos: Vec<String>,
    pub concurrent_services: Vec<String>,
}

/// Folds anomaly events into one summary per incident, in order of opening.
pub fn summarize(events: &[AnomalyEvent]) -> Vec<IncidentSummary> {
    let mut out: Vec<IncidentSummary> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for e in events {
        let i = *index.entry(&e.incident_id).or_insert_with(|| {
            out.push(IncidentSummary {
                incident_id: e.incident_id.clone(),
                service: e.service.clone(),
                geo: e.geo.clone(),
                signal: e.signal.clone(),
                opened_at_ms: e.opened_at.millis(),
                announced_at_ms: e.bucket_end.millis(),
                resolved_at_ms: None,
                peak_at_ms: e.peak_at.millis(),
                peak_zscore: e.peak_zscore,
                peak_observed: e.peak_observed,
                expected_at_peak: e.expected,
                severity: e.severity,
                events: 0,
                reopened: 0,
                child_geos: Vec::new(),
                concurrent_services: Vec::new(),
            });
            out.len() - 1
        });
        let s = &mut out[i];
        s.events += 1;
        s.resolved_at_ms = match e.state {
            IncidentState::Resolved => e.resolved_at.map(Timestamp::millis),
            _ => None,
        };
        if e.peak_zscore >= s.peak_zscore {
            s.peak_zscore = e.peak_zscore;
            s.peak_at_ms = e.peak_at.millis();
            s.peak_observed = e.peak_observed;
            if e.bucket_start == e.peak_at {
                s.expected_at_peak = e.expected;
            }
        }
        s.severity = s.severity.max(e.severity);
        s.reopened = s.reopened.max(e.reopened);
        for g in &e.child_geos {
            if !s.child_geos.contains(g) {
                s.child_geos.push(g.clone());
            }
        }
        for c in &e.concurrent_services {
            if !s.concurrent_services.contains(c) {
                s.concurrent_services.push(c.clone());
            }
        }
    }
    out
}

/// How long after an outage's end an incident opening still belongs to it.
const MATCH_SLACK_MS: i64 = 30 * MINUTE_MS;

/// `geo` is `leaf` or one of its roll-ups (`IT-RM` → `IT` → `*`).
fn covers(geo: &str, leaf: &str) -> bool {
    crate::engine::settings::GeoSettings::default().covers(geo, leaf)
}

/// What the engine made of one injected outage.
#[derive(Debug, Clone, PartialEq)]
pub struct OutageReport {
    pub label: &'static str,
    pub service: &'static str,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Incidents of the outage's service, in its geos or their roll-ups, opened during it.
    pub incidents: Vec<IncidentSummary>,
    /// Buckets from the outage's onset to the end of the bucket whose event first announced it.
    pub delay_buckets: Option<i64>,
}

impl OutageReport {
    pub fn detected(&self) -> bool {
        !self.incidents.is_empty()
    }
}

/// The engine's incidents held against a scenario's ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub outages: Vec<OutageReport>,
    /// Incidents that belong to no injected outage.
    pub false_alarms: Vec<IncidentSummary>,
}

/// Matches incidents to the injected outages they belong to; the rest are false alarms.
pub fn evaluate(scenario: &Scenario, events: &[AnomalyEvent]) -> Evaluation {
    let mut unmatched = summarize(events);
    let outages = scenario
        .outages
        .iter()
        .map(|o| {
            let belongs = |i: &IncidentSummary| {
                i.service == o.service
                    && o.geos.iter().any(|&(g, from, to)| {
                        covers(&i.geo, g)
                            && i.opened_at_ms >= from - scenario.bucket_ms
                            && i.opened_at_ms < to + MATCH_SLACK_MS
                    })
            };
            let (incidents, rest): (Vec<_>, Vec<_>) = unmatched.drain(..).partition(belongs);
            unmatched = rest;
            let delay_buckets = incidents
                .iter()
                .map(|i| i.announced_at_ms)
                .min()
                .map(|t| (t - o.start_ms() + scenario.bucket_ms - 1) / scenario.bucket_ms);
            OutageReport {
                label: o.label,
                service: o.service,
                start_ms: o.start_ms(),
                end_ms: o.end_ms(),
                incidents,
                delay_buckets,
            }
        })
        .collect();
    Evaluation {
        outages,
        false_alarms: unmatched,
    }
}

/// One outage incident (schema version 2) as its events describe it, folded.
#[derive(Debug, Clone, PartialEq)]
pub struct OutageSummary {
    pub outage_id: String,
    pub service: String,
    pub opened_at_ms: i64,
    /// When its opening event was emitted (end of the bucket that announced it).
    pub announced_at_ms: i64,
    /// End of its last anomalous bucket, if its last event resolved it.
    pub resolved_at_ms: Option<i64>,
    pub geos: Vec<String>,
    pub signals: Vec<String>,
    pub severity: Severity,
    /// When an event first said two signals agree (`confirmed`), if one did.
    pub confirmed_at_ms: Option<i64>,
    pub events: usize,
    pub opened_events: usize,
    pub reopened: u32,
}

/// Folds outage events into one summary per outage, in order of opening.
pub fn summarize_outages(events: &[crate::event::OutageEvent]) -> Vec<OutageSummary> {
    let mut out: Vec<OutageSummary> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for e in events {
        let i = *index.entry(&e.outage_id).or_insert_with(|| {
            out.push(OutageSummary {
                outage_id: e.outage_id.clone(),
                service: e.service.clone(),
                opened_at_ms: e.opened_at.millis(),
                announced_at_ms: e.as_of.millis(),
                resolved_at_ms: None,
                geos: Vec::new(),
                signals: Vec::new(),
                severity: e.severity,
                confirmed_at_ms: None,
                events: 0,
                opened_events: 0,
                reopened: 0,
            });
            out.len() - 1
        });
        let s = &mut out[i];
        s.events += 1;
        s.opened_events += usize::from(e.state == IncidentState::Opened);
        s.resolved_at_ms = e.resolved_at.map(Timestamp::millis);
        s.opened_at_ms = s.opened_at_ms.min(e.opened_at.millis());
        s.geos.clone_from(&e.geos);
        s.signals.clone_from(&e.signals);
        s.severity = s.severity.max(e.severity);
        s.reopened = s.reopened.max(e.reopened);
        if e.confirmed && s.confirmed_at_ms.is_none() {
            s.confirmed_at_ms = Some(e.as_of.millis());
        }
    }
    out
}

/// The engine's outage incidents held against a scenario's injected outages.
#[derive(Debug, Clone, PartialEq)]
pub struct OutageGrouping {
    /// Per injected outage (label): the outage incidents that belong to it.
    pub per_outage: Vec<(&'static str, Vec<OutageSummary>)>,
    /// Outage incidents that belong to no injected outage.
    pub false_outages: Vec<OutageSummary>,
}

impl OutageGrouping {
    /// Injected outages announced as more than one outage incident.
    pub fn split(&self) -> Vec<&'static str> {
        self.per_outage
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(l, _)| *l)
            .collect()
    }

    /// Outage incidents that cover more than one injected outage.
    pub fn merged(&self) -> Vec<String> {
        let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (_, v) in &self.per_outage {
            for o in v {
                *seen.entry(&o.outage_id).or_default() += 1;
            }
        }
        let mut m: Vec<String> = seen
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(id, _)| id.to_string())
            .collect();
        m.sort();
        m
    }
}

/// Matches outage incidents to the injected outages of their service whose time they overlap
/// (from a bucket before onset to the slack after the end) in a geo they cover.
pub fn group_outages(scenario: &Scenario, events: &[crate::event::OutageEvent]) -> OutageGrouping {
    let all = summarize_outages(events);
    let end_of = |o: &OutageSummary| o.resolved_at_ms.unwrap_or(i64::MAX);
    let mut matched = vec![false; all.len()];
    let per_outage = scenario
        .outages
        .iter()
        .map(|inj| {
            let v: Vec<OutageSummary> = all
                .iter()
                .enumerate()
                .filter(|(_, o)| {
                    o.service == inj.service
                        && inj.geos.iter().any(|&(g, from, to)| {
                            o.geos.iter().any(|og| covers(og, g))
                                && o.opened_at_ms < to + MATCH_SLACK_MS
                                && end_of(o) > from - scenario.bucket_ms
                        })
                })
                .map(|(i, o)| {
                    matched[i] = true;
                    o.clone()
                })
                .collect();
            (inj.label, v)
        })
        .collect();
    let false_outages = all
        .into_iter()
        .zip(matched)
        .filter(|(_, m)| !m)
        .map(|(o, _)| o)
        .collect();
    OutageGrouping {
        per_outage,
        false_outages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Scenario {
        Scenario {
            days: 1,
            ..Scenario::demo()
        }
    }

    #[test]
    fn same_seed_same_traffic() {
        let collect = |s: &Scenario| {
            let mut v = Vec::new();
            s.generate(|t, svc, g, sig, c| v.push((t, svc.to_string(), g.to_string(), sig, c)));
            v
        };
        assert_eq!(collect(&small()), collect(&small()));
        let other = Scenario { seed: 1, ..small() };
        assert_ne!(collect(&small()), collect(&other));
    }

    #[test]
    fn nights_are_quieter_than_mornings_and_weekends_quieter_than_weekdays() {
        assert!(daily_shape(4.0, false) < 0.15);
        assert!(daily_shape(10.0, false) > 0.9);
        assert!(daily_shape(10.0, true) < daily_shape(10.0, false));
        // The morning rise is steep: 06:00 → 09:00 more than quadruples.
        assert!(daily_shape(9.0, false) > 4.0 * daily_shape(6.0, false));
    }

    #[test]
    fn outages_multiply_only_their_service_geos_and_window() {
        let s = Scenario::demo();
        let o = &s.outages[0];
        let (geo, from, to) = o.geos[0];
        let tg = &s.services[0];
        let p = tg.presence.iter().find(|p| p.geo == geo).unwrap();
        let normal = Scenario::normal(6);
        let mid = from + (to - from) / 2;
        let ratio = s.rate("telegram", p, Signal::Complaints, mid)
            / normal.rate("telegram", p, Signal::Complaints, mid);
        assert!((ratio - o.complaints_factor).abs() < 1e-9);
        let before = from - HOUR_MS;
        assert_eq!(
            s.rate("telegram", p, Signal::Complaints, before),
            normal.rate("telegram", p, Signal::Complaints, before)
        );
        let lib = &s.services[1];
        let lp = lib.presence.iter().find(|p| p.geo == geo).unwrap();
        assert_eq!(
            s.rate("libero-mail", lp, Signal::Complaints, mid),
            normal.rate("libero-mail", lp, Signal::Complaints, mid)
        );
    }

    #[test]
    fn expands_counts_into_valid_wire_events() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let ev = expand_events(
            &mut rng,
            DEMO_START_MS,
            MINUTE_MS,
            "telegram",
            "IT-RM",
            Signal::Mentions,
            5,
        );
        assert_eq!(ev.len(), 5);
        for e in &ev {
            let ts = e.ts().millis();
            assert!((DEMO_START_MS..DEMO_START_MS + MINUTE_MS).contains(&ts));
            let json = match e {
                InputEvent::Mention(m) => serde_json::to_vec(m).unwrap(),
                InputEvent::Complaint(c) => serde_json::to_vec(c).unwrap(),
            };
            crate::event::decode_any(&json).unwrap();
        }
        let c = expand_events(
            &mut rng,
            DEMO_START_MS,
            MINUTE_MS,
            "libero-mail",
            "IT",
            Signal::Complaints,
            7,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].amount(), 7.0);
    }
}
