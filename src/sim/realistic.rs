//! Realistic traffic: the effects that make real social series harder than the tame
//! gamma-Poisson of [`Scenario::generate`] with [`Realism::default`]. The detector passed every
//! scenario test yet paged every few days on real data (issue 11); each effect below is one
//! reason why, and each can be switched on alone.
//!
//! - **Overdispersion** ([`Realism::mentions_shape`], [`Realism::complaints_shape`]): real
//!   counts vary far more than Poisson; a smaller gamma shape `k` gives variance `λ + λ²/k`.
//! - **Self-exciting bursts** ([`Bursts`]): a retweet or a viral post multiplies mentions for a
//!   minute or three, and one burst makes the next more likely (a Hawkes process with branching
//!   ratio < 1 and an exponential kernel). Bursts are drawn independently per service × leaf
//!   geo × signal, a few per day, more when people are awake; the multiplier is heavy-tailed.
//!   Complaints get rarer, smaller ones: people complain when something is broken, not when a
//!   post goes viral.
//! - **News bumps** ([`News`]): a press story about a service lifts its mentions in every geo
//!   of one country at once, rising over 30–120 minutes and fading over hours; complaints rise
//!   a little too. Spatially coherent and slow: it looks like a small outage to a roll-up.
//! - **Input gaps** ([`Realism::gaps`]): collectors die, APIs throttle; for a while no event at
//!   all arrives for any series. The generator draws the world as usual (the traffic after the
//!   gap is the same as without it) but calls back nothing for buckets inside a gap, so a
//!   driver neither observes nor advances event time then.
//! - **Daylight saving time** ([`Realism::dst`]): European users' clocks move one hour ahead
//!   from the last Sunday of March to the last Sunday of October (01:00 UTC both times), so the
//!   morning rise comes an hour earlier in UTC overnight. Russia, Turkey and Iran keep theirs.
//!
//! Everything is deterministic for a scenario's seed: bursts and news draw from their own
//! [`ChaCha8Rng`] streams, so the noise stream is the one of the tame generator.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};

use super::{daily_shape, Scenario, Signal, DAY_MS, HOUR_MS, MINUTE_MS, NOISE_SHAPE};
use crate::calendar::SummerTime;
use crate::domain::country_of;

/// How far generated traffic departs from the tame generator. The default departs not at all:
/// scenarios built without realism draw exactly the counts they always drew.
#[derive(Debug, Clone, PartialEq)]
pub struct Realism {
    /// Gamma shape of the mentions noise (variance `λ + λ²/k`).
    pub mentions_shape: f64,
    /// Gamma shape of the complaints noise.
    pub complaints_shape: f64,
    pub mention_bursts: Option<Bursts>,
    pub complaint_bursts: Option<Bursts>,
    pub news: Option<News>,
    /// `[from, to)` intervals (ms) during which no bucket is emitted for any series.
    pub gaps: Vec<(i64, i64)>,
    /// European geos follow EU summer time.
    pub dst: bool,
}

impl Default for Realism {
    fn default() -> Self {
        Self {
            mentions_shape: NOISE_SHAPE,
            complaints_shape: NOISE_SHAPE,
            mention_bursts: None,
            complaint_bursts: None,
            news: None,
            gaps: Vec::new(),
            dst: false,
        }
    }
}

impl Realism {
    /// Every effect on, with parameters in the range seen on real social series; no gaps.
    pub(crate) fn realistic() -> Self {
        Self {
            mentions_shape: 4.0,
            complaints_shape: 8.0,
            mention_bursts: Some(Bursts {
                per_day: 3.0,
                min_factor: 1.5,
                max_factor: 6.0,
                tail_alpha: 1.3,
                max_hold_buckets: 3,
                decay_per_bucket: 0.5,
                branching: 0.4,
                trigger_minutes: 20.0,
            }),
            complaint_bursts: Some(Bursts {
                per_day: 0.7,
                min_factor: 1.2,
                max_factor: 2.5,
                tail_alpha: 1.5,
                max_hold_buckets: 2,
                decay_per_bucket: 0.5,
                branching: 0.2,
                trigger_minutes: 20.0,
            }),
            news: Some(News {
                per_month: 3.0,
                rise_minutes: (30.0, 120.0),
                peak_factor: (1.3, 2.0),
                decay_hours: (2.0, 5.0),
                complaints_share: 0.2,
            }),
            gaps: Vec::new(),
            dst: true,
        }
    }

    fn shape(&self, signal: Signal) -> f64 {
        match signal {
            Signal::Mentions => self.mentions_shape,
            Signal::Complaints => self.complaints_shape,
        }
    }

    fn bursts(&self, signal: Signal) -> Option<&Bursts> {
        match signal {
            Signal::Mentions => self.mention_bursts.as_ref(),
            Signal::Complaints => self.complaint_bursts.as_ref(),
        }
    }
}

/// A Hawkes process of rate bursts on one signal, per service × leaf geo.
#[derive(Debug, Clone, PartialEq)]
pub struct Bursts {
    /// Background (immigrant) bursts per series per day on average; the instantaneous rate
    /// follows the geo's local daily shape, so most land in the daytime.
    pub per_day: f64,
    /// A burst multiplies the rate by a truncated-Pareto factor on `[min_factor, max_factor]`.
    pub min_factor: f64,
    pub max_factor: f64,
    /// Tail index of that Pareto: smaller is heavier.
    pub tail_alpha: f64,
    /// Buckets a burst holds its full factor: uniform in `1..=max_hold_buckets`.
    pub max_hold_buckets: u32,
    /// After the hold, the burst's excess is multiplied by this every bucket.
    pub decay_per_bucket: f64,
    /// Expected follow-up bursts triggered by one burst (< 1 or the process explodes).
    pub branching: f64,
    /// Mean delay of a follow-up (exponential kernel), minutes.
    pub trigger_minutes: f64,
}

/// News-driven bumps: per service, in all geos of one country.
#[derive(Debug, Clone, PartialEq)]
pub struct News {
    /// Bumps per service per 30 days.
    pub per_month: f64,
    /// Time to the peak, uniform in the range.
    pub rise_minutes: (f64, f64),
    /// Multiplier of mentions at the peak, uniform in the range.
    pub peak_factor: (f64, f64),
    /// Exponential decay time after the peak, uniform in the range.
    pub decay_hours: (f64, f64),
    /// Fraction of the mentions' excess that complaints get.
    pub complaints_share: f64,
}

/// Geos whose clocks follow EU summer time (Italy, the EU countries and the UK): the rule the
/// engine's `summer_time = "auto"` applies, so the generated world and the detector agree on
/// which clocks move.
pub fn observes_eu_dst(geo: &str) -> bool {
    SummerTime::Auto.for_geo(geo) == SummerTime::Eu
}

/// Hours European clocks are ahead of their winter offset at `t`.
pub(super) fn dst_shift_hours(t: i64) -> f64 {
    SummerTime::Eu.shift_ms(t) as f64 / HOUR_MS as f64
}

/// One news story about a service in one country.
#[derive(Debug, Clone)]
struct Bump {
    service: usize,
    country: &'static str,
    start: i64,
    rise_ms: f64,
    excess: f64,
    decay_ms: f64,
    end: i64,
}

impl Bump {
    /// Excess multiplier of mentions at `t` (0 outside the bump).
    fn excess_at(&self, t: i64) -> f64 {
        let s = (t - self.start) as f64;
        if s < 0.0 || t >= self.end {
            0.0
        } else if s < self.rise_ms {
            let x = s / self.rise_ms;
            self.excess * x * x * (3.0 - 2.0 * x)
        } else {
            self.excess * (-(s - self.rise_ms) / self.decay_ms).exp()
        }
    }
}

/// Burst state of one series.
#[derive(Debug, Clone, Default)]
struct SeriesBursts {
    /// Rate of triggered follow-ups, per minute.
    excitation: f64,
    /// Active bursts: (excess over 1, buckets left at full strength).
    active: Vec<(f64, u32)>,
}

/// Poisson draw for the small means of burst arrivals (inversion; cheap).
fn poisson_small(rng: &mut ChaCha8Rng, mean: f64) -> u32 {
    if mean <= 0.0 {
        return 0;
    }
    let u: f64 = rng.random();
    let mut k = 0;
    let mut p = (-mean).exp();
    let mut cdf = p;
    while u > cdf && k < 64 {
        k += 1;
        p *= mean / k as f64;
        cdf += p;
    }
    k
}

/// Truncated Pareto on `[lo, hi]` with tail index `alpha`.
fn truncated_pareto(rng: &mut ChaCha8Rng, lo: f64, hi: f64, alpha: f64) -> f64 {
    let u: f64 = rng.random();
    let span = 1.0 - (lo / hi).powf(alpha);
    (lo * (1.0 - u * span).powf(-1.0 / alpha)).min(hi)
}

fn uniform(rng: &mut ChaCha8Rng, (lo, hi): (f64, f64)) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// The random, stateful part of realism while a scenario is generated, bucket by bucket.
pub(super) struct Effects<'a> {
    realism: &'a Realism,
    rng: ChaCha8Rng,
    bumps: Vec<Bump>,
    /// Indices into `bumps` live in the current bucket.
    live: Vec<usize>,
    series: Vec<SeriesBursts>,
    /// Mean of the daily shape over a week: normalises the burst background rate.
    shape_mean: f64,
    bucket_minutes: f64,
}

impl<'a> Effects<'a> {
    pub(super) fn new(s: &'a Scenario) -> Self {
        let realism = &s.realism;
        let mut shape_sum = 0.0;
        for q in 0..7 * 96 {
            shape_sum += daily_shape((q % 96) as f64 / 4.0, q / 96 >= 5);
        }
        let n_series: usize = s.services.iter().map(|x| x.presence.len() * 2).sum();
        let mut fx = Self {
            realism,
            rng: ChaCha8Rng::seed_from_u64(s.seed ^ 0x6275_7273_7473),
            bumps: Vec::new(),
            live: Vec::new(),
            series: vec![SeriesBursts::default(); n_series],
            shape_mean: shape_sum / (7 * 96) as f64,
            bucket_minutes: s.bucket_ms as f64 / MINUTE_MS as f64,
        };
        if let Some(news) = &realism.news {
            fx.bumps = draw_news(s, news);
        }
        fx
    }

    /// Starts a bucket; true if it lies in an input gap (nothing is emitted for it).
    pub(super) fn begin_bucket(&mut self, t: i64) -> bool {
        if !self.bumps.is_empty() {
            self.live.clear();
            self.live.extend(
                self.bumps
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.start <= t && t < b.end)
                    .map(|(i, _)| i),
            );
        }
        self.realism
            .gaps
            .iter()
            .any(|&(from, to)| (from..to).contains(&t))
    }

    pub(super) fn shape(&self, signal: Signal) -> f64 {
        self.realism.shape(signal)
    }

    /// Rate multiplier of one series in the current bucket (bursts × news); advances the
    /// series' burst state by one bucket. Call once per series and bucket.
    pub(super) fn factor(
        &mut self,
        scenario: &Scenario,
        series: usize,
        service: usize,
        geo: &str,
        signal: Signal,
        t: i64,
    ) -> f64 {
        let mut factor = 1.0;
        if !self.live.is_empty() {
            let c = country_of(geo);
            let share = match signal {
                Signal::Mentions => 1.0,
                Signal::Complaints => self
                    .realism
                    .news
                    .as_ref()
                    .map_or(0.0, |n| n.complaints_share),
            };
            let excess: f64 = self
                .live
                .iter()
                .map(|&i| &self.bumps[i])
                .filter(|b| b.service == service && b.country == c)
                .map(|b| b.excess_at(t))
                .sum();
            factor *= 1.0 + share * excess;
        }
        if let Some(b) = self.realism.bursts(signal) {
            let (hour, weekend) = scenario.local_clock(geo, t);
            let background =
                b.per_day / (24.0 * 60.0) * daily_shape(hour, weekend) / self.shape_mean;
            let st = &mut self.series[series];
            let arrivals = poisson_small(
                &mut self.rng,
                (background + st.excitation) * self.bucket_minutes,
            );
            st.excitation *= (-self.bucket_minutes / b.trigger_minutes).exp();
            for _ in 0..arrivals {
                st.excitation += b.branching / b.trigger_minutes;
                let f = truncated_pareto(&mut self.rng, b.min_factor, b.max_factor, b.tail_alpha);
                let hold = self.rng.random_range(1..=b.max_hold_buckets.max(1));
                st.active.push((f - 1.0, hold));
            }
            factor *= 1.0 + st.active.iter().map(|a| a.0).sum::<f64>();
            for a in &mut st.active {
                if a.1 > 1 {
                    a.1 -= 1;
                } else {
                    a.1 = 0;
                    a.0 *= b.decay_per_bucket;
                }
            }
            st.active.retain(|a| a.0 > 0.02);
        }
        factor
    }
}

/// Draws every news bump of a scenario up front, mostly in the local daytime.
fn draw_news(s: &Scenario, news: &News) -> Vec<Bump> {
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed ^ 0x6e65_7773);
    let span = s.end_ms() - s.start_ms;
    let mut out = Vec::new();
    for (si, svc) in s.services.iter().enumerate() {
        let mut countries: Vec<(&'static str, &'static str)> = Vec::new();
        for p in &svc.presence {
            let c = country_of(p.geo);
            if !countries.iter().any(|&(x, _)| x == c) {
                countries.push((c, p.geo));
            }
        }
        if countries.is_empty() || span <= 0 {
            continue;
        }
        let mean = news.per_month * span as f64 / (30 * DAY_MS) as f64;
        let n = Poisson::new(mean).map_or(0, |d| d.sample(&mut rng) as u64);
        for _ in 0..n {
            let (c, geo) = countries[rng.random_range(0..countries.len())];
            // Stories break while people are awake: accept a start with the local activity.
            let mut start = s.start_ms + rng.random_range(0..span);
            for _ in 0..100 {
                let (hour, weekend) = s.local_clock(geo, start);
                if rng.random::<f64>() < daily_shape(hour, weekend) {
                    break;
                }
                start = s.start_ms + rng.random_range(0..span);
            }
            let rise_ms = uniform(&mut rng, news.rise_minutes) * MINUTE_MS as f64;
            let excess = uniform(&mut rng, news.peak_factor) - 1.0;
            let decay_ms = uniform(&mut rng, news.decay_hours) * HOUR_MS as f64;
            out.push(Bump {
                service: si,
                country: c,
                start,
                rise_ms,
                excess,
                decay_ms,
                end: start + (rise_ms + 6.0 * decay_ms) as i64,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::DEMO_START_MS;

    const MAR_31_2024: i64 = 1_711_843_200_000;

    #[test]
    fn european_clocks_move_at_the_eu_summer_time_switch() {
        // The calendar itself is tested in `calendar`; here, that the generator uses it.
        assert_eq!(
            crate::calendar::days_from_civil(2024, 1, 1) * DAY_MS,
            DEMO_START_MS
        );
        assert_eq!(dst_shift_hours(MAR_31_2024 + HOUR_MS - 1), 0.0);
        assert_eq!(dst_shift_hours(MAR_31_2024 + HOUR_MS), 1.0);
        assert_eq!(dst_shift_hours(DEMO_START_MS), 0.0);
        assert!(observes_eu_dst("IT-RM") && observes_eu_dst("GB"));
        assert!(!observes_eu_dst("RU") && !observes_eu_dst("TR") && !observes_eu_dst("IR"));
    }

    fn one_day() -> Scenario {
        Scenario {
            days: 1,
            ..Scenario::realistic_demo()
        }
    }

    fn collect(s: &Scenario) -> Vec<(i64, String, String, Signal, u64)> {
        let mut v = Vec::new();
        s.generate(|t, svc, g, sig, c| v.push((t, svc.to_string(), g.to_string(), sig, c)));
        v
    }

    #[test]
    fn realistic_traffic_is_deterministic_and_differs_from_tame_traffic() {
        let a = collect(&one_day());
        assert_eq!(a, collect(&one_day()));
        let tame = Scenario {
            realism: Realism::default(),
            ..one_day()
        };
        assert_ne!(a, collect(&tame));
    }

    #[test]
    fn gaps_emit_nothing_and_leave_the_traffic_around_them_unchanged() {
        let s = one_day();
        let (from, to) = (s.start_ms + 10 * HOUR_MS, s.start_ms + 16 * HOUR_MS);
        let all = collect(&s);
        let gapped = collect(&s.clone().with_gaps(&[(from, to)]));
        assert!(gapped.iter().all(|e| !(from..to).contains(&e.0)));
        let outside: Vec<_> = all
            .into_iter()
            .filter(|e| !(from..to).contains(&e.0))
            .collect();
        assert_eq!(outside, gapped);
    }

    #[test]
    fn summer_time_moves_european_clocks_but_not_russian_ones() {
        let s = Scenario::realistic_demo();
        let before = MAR_31_2024 - 2 * DAY_MS + 5 * HOUR_MS;
        let after = MAR_31_2024 + 2 * DAY_MS + 5 * HOUR_MS;
        assert_eq!(s.local_clock("DE", before).0, 6.0);
        assert_eq!(s.local_clock("DE", after).0, 7.0);
        assert_eq!(s.local_clock("IT-RM", after).0, 7.0);
        assert_eq!(s.local_clock("GB", after).0, 6.0);
        assert_eq!(s.local_clock("RU", before).0, 8.0);
        assert_eq!(s.local_clock("RU", after).0, 8.0);
        // The tame generator keeps winter time all year.
        assert_eq!(Scenario::demo().local_clock("DE", after).0, 6.0);
        // The realistic demo spans the change.
        assert!(s.start_ms < MAR_31_2024 && MAR_31_2024 < s.end_ms());
    }

    #[test]
    fn pareto_factors_stay_in_range_and_have_a_heavy_tail() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let v: Vec<f64> = (0..20_000)
            .map(|_| truncated_pareto(&mut rng, 1.5, 6.0, 1.3))
            .collect();
        assert!(v.iter().all(|&x| (1.5..=6.0).contains(&x)));
        let big = v.iter().filter(|&&x| x > 4.0).count() as f64 / v.len() as f64;
        assert!((0.03..0.2).contains(&big), "{big}");
    }

    #[test]
    fn small_poisson_has_the_right_mean() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let n = 100_000;
        let sum: u32 = (0..n).map(|_| poisson_small(&mut rng, 0.3)).sum();
        assert!((sum as f64 / n as f64 - 0.3).abs() < 0.01);
    }
}
