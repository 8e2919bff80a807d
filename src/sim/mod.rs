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
//!
//! Here: the world's types, the traffic generator and the drivers that feed it to an engine.
//! `world` holds the demo's geos, services and outages; `evaluate` holds incidents and outage
//! incidents held against a scenario's ground truth; `realistic` the departures from the tame
//! world; `restart` runs with and without checkpoints (the restore fuzz target); `tests` the
//! unit tests.

use std::borrow::Cow;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma, Poisson};

use crate::engine::{Engine, EngineSink, Observation, ObserveError};
use crate::event::{ComplaintEvent, InputEvent, MentionEvent, Timestamp};
use crate::event::{SIGNAL_COMPLAINTS, SIGNAL_MENTIONS};

mod evaluate;
mod realistic;
mod restart;
mod world;

#[cfg(test)]
mod tests;

pub use crate::calendar::eu_summer_time;
pub use evaluate::{
    evaluate, group_outages, summarize, summarize_outages, Evaluation, IncidentSummary,
    OutageGrouping, OutageReport, OutageSummary,
};
pub use realistic::{observes_eu_dst, Bursts, News, Realism};
pub use restart::{run_with_checkpoints, Published, RestartRuns};
pub use world::{demo_outages, demo_services, GEOS};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;
pub const WEEK_MS: i64 = 7 * DAY_MS;
/// Monday 2024-01-01T00:00:00Z.
pub const DEMO_START_MS: i64 = 1_704_067_200_000;
/// Monday 2024-03-04T00:00:00Z: the realistic demo spans the start of EU summer time.
pub(crate) const REALISTIC_START_MS: i64 = DEMO_START_MS + 63 * DAY_MS;

/// Gamma shape of the noise: variance = λ + λ²/k.
const NOISE_SHAPE: f64 = 12.0;

/// A leaf geo and how its users' clocks relate to UTC.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoSpec {
    pub code: &'static str,
    pub utc_offset_hours: f64,
}

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
    pub(crate) const ALL: [Signal; 2] = [Signal::Mentions, Signal::Complaints];
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
    /// (`Realism::realistic`) from Monday 2024-03-04, so EU summer time starts in the middle
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

    /// Telegram in Italian cities for 3 days, down in Rome and Milan on day 3 from 10:00 to
    /// 12:00: small enough (~60k wire events) for tests in a debug build.
    pub fn telegram_italy_3_days() -> Self {
        let base = Self::demo();
        let from = base.start_ms + 2 * DAY_MS + 10 * HOUR_MS;
        let to = from + 2 * HOUR_MS;
        let mut services: Vec<_> = base
            .services
            .into_iter()
            .filter(|s| s.name == "telegram")
            .collect();
        for s in &mut services {
            s.presence.retain(|p| p.geo.starts_with("IT-"));
        }
        Self {
            days: 3,
            services,
            outages: vec![Outage {
                label: "Telegram down in Rome and Milan",
                service: "telegram",
                geos: vec![("IT-RM", from, to), ("IT-MI", from, to)],
                complaints_factor: 12.0,
                mentions_factor: 10.0,
            }],
            ..base
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
    pub(crate) fn local_clock(&self, geo: &str, t: i64) -> (f64, bool) {
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
pub(crate) fn daily_shape(hour: f64, weekend: bool) -> f64 {
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

/// Gamma-Poisson draw with mean `lambda` and gamma shape `shape` (variance λ + λ²/shape).
pub(crate) fn sample_count_shaped(rng: &mut ChaCha8Rng, lambda: f64, shape: f64) -> u64 {
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
