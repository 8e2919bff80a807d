//! The seasonal baseline of one series: what a bucket is expected to hold, and how much it
//! normally varies.
//!
//! expected = level × factor(time of week)
//!
//! * `factor` is a multiplicative profile learned per hour of day (fast, from one day of data)
//!   and per hour of week (from one week on, so Monday 09:00 differs from Sunday 09:00),
//!   interpolated between hour centres so a steep morning rise is followed smoothly. The
//!   hours are those of the geo's clock: its summer-time shift (`summer_time`,
//!   [`crate::calendar`]) is added before a slot is chosen, so the profile does not have to
//!   re-learn every morning after a clock change.
//! * `level` is the recent deseasonalised level (EWMA, `level_half_life`), so trends, growth
//!   and unusual days are followed. Before a profile exists the factor is 1 and the level
//!   follows a short recent window: the detector works from the first hours. Until the
//!   first day is complete, its hourly means so far are the levels the series has held
//!   (`levels_before_profile`): a bucket within their range, give or take `close_z` scales,
//!   is not an anomaly.
//! * The daily profile is bootstrapped from the first full day (each hour's mean over the
//!   day's mean); after that factors are learned against `base`, a slow (one-day half-life)
//!   level: learning against the fast level would let it absorb the very seasonality being
//!   learned, and learning against a running mean on day one would bias the early hours.
//! * The scale comes from an EWMA of absolute residuals, floored by the Poisson variance for
//!   count signals, a fraction of the expected value and an absolute minimum, so series that
//!   are mostly zeros, quantised or flat never turn +1 into an enormous z.
//!
//! Buckets inside an open incident, or anomalous enough to open one, are not learned from
//! (contamination guard); all other buckets are winsorised before learning.
//!
//! An incident open for `max_incident_duration` is accepted as the new normal: the level is
//! re-seeded at the current value, and the level from before the incident is held for as long
//! again, so that a series that comes back to it has recovered rather than shifted anew. While
//! it is held the profile does not learn: its hours measured against a level still moving
//! between the two would teach the shift, not the day.

use super::settings::Thresholds;
use super::state::{BaselineState, StateError};
use crate::calendar::SummerTime;
use crate::event::BaselineKind;

const HOURS_PER_DAY: usize = 24;
const HOURS_PER_WEEK: usize = 168;
const MS_PER_HOUR: f64 = 3_600_000.0;
/// σ ≈ 1.2533 · E|X − μ| for a normal distribution.
const MAD_TO_SIGMA: f64 = 1.253_314_137_315_500_3;
/// Residuals beyond this many scales are clipped before they are learned from.
const WINSOR_Z: f64 = 3.0;
/// Smallest per-hour update weights once a slot has history: ~4 days / ~3 weeks of memory.
const DAILY_GAMMA_MIN: f64 = 0.25;
const WEEKLY_GAMMA_MIN: f64 = 1.0 / 3.0;
const COLD_LEVEL_HALF_LIFE_MS: f64 = 15.0 * 60_000.0;
const BASE_HALF_LIFE_MS: f64 = 24.0 * 3_600_000.0;
const DISPERSION_HALF_LIFE_MS: f64 = 6.0 * 3_600_000.0;
/// How often a series is 0, and its size when it is not, are remembered for about a week.
const INTERMITTENCY_HALF_LIFE_MS: f64 = 7.0 * 24.0 * 3_600_000.0;
/// An hour of the day that was anomalous on at least this many of the previous
/// `RECURRENCE_DAYS` days is the series' daily pattern, not an outage: its buckets teach the
/// profile even inside an incident. Four, as `max_incident_duration` accepts a four-day-old
/// incident as the new normal: a two-day outage never teaches the profile, a morning rise
/// the profile had not learned (or a nightly batch job) stops paging after four mornings.
const RECURRING_ON_DAYS: u32 = 4;
const RECURRENCE_DAYS: u32 = 7;
/// Days one hour's bits hold: today and the `RECURRENCE_DAYS` before it (a `u8` each).
const RECORDED_DAYS: i64 = RECURRENCE_DAYS as i64 + 1;
const _: () = assert!(RECORDED_DAYS <= u8::BITS as i64);
const MS_PER_DAY: i64 = 86_400_000;
/// Learned factors are kept within this range of the slow level.
const FACTOR_MIN: f64 = 0.02;
const FACTOR_MAX: f64 = 50.0;

/// Per-series constants derived from its [`Thresholds`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaselineParams {
    pub bucket_ms: i64,
    alpha_level: f64,
    alpha_cold: f64,
    alpha_base: f64,
    beta_disp: f64,
    alpha_intermittency: f64,
    seasonality: bool,
    poisson_floor: bool,
    rel_scale_floor: f64,
    min_scale: f64,
    intermittent_scale_floor: f64,
    /// Clock changes the profile follows (resolved for the series' geo).
    summer_time: SummerTime,
    /// Per-bucket forgetting of the tail calibration.
    pub tail_decay: f64,
}

/// Smoothing weight that halves an old value's influence every `half_life_ms`.
fn alpha(bucket_ms: i64, half_life_ms: f64) -> f64 {
    1.0 - 0.5f64.powf(bucket_ms as f64 / half_life_ms.max(1.0))
}

impl BaselineParams {
    pub(crate) fn new(t: &Thresholds) -> Self {
        let bucket_ms = t.bucket.millis();
        Self {
            bucket_ms,
            alpha_level: alpha(bucket_ms, t.level_half_life.millis() as f64),
            alpha_cold: alpha(bucket_ms, COLD_LEVEL_HALF_LIFE_MS),
            alpha_base: alpha(bucket_ms, BASE_HALF_LIFE_MS),
            beta_disp: alpha(bucket_ms, DISPERSION_HALF_LIFE_MS),
            alpha_intermittency: alpha(bucket_ms, INTERMITTENCY_HALF_LIFE_MS),
            seasonality: t.seasonality,
            poisson_floor: t.poisson_floor,
            rel_scale_floor: t.rel_scale_floor,
            min_scale: t.min_scale,
            intermittent_scale_floor: t.intermittent_scale_floor,
            summer_time: t.summer_time,
            tail_decay: alpha(bucket_ms, super::calibration::TAIL_HALF_LIFE_MS),
        }
    }

    /// The time the profile is indexed by: UTC plus the geo's summer-time shift, so a slot
    /// is an hour of the local clock all year (up to the geo's constant winter offset).
    fn profile_ms(&self, start_ms: i64) -> i64 {
        start_ms + self.summer_time.shift_ms(start_ms)
    }
}

/// What a bucket is expected to hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expectation {
    pub expected: f64,
    pub scale: f64,
    pub factor: f64,
    pub kind: BaselineKind,
}

/// Whether a closed bucket may teach the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learn {
    /// Normal bucket: learn from it (winsorised).
    Yes,
    /// Inside or opening this series' own incident: skip, so an outage never becomes the
    /// new normal, unless its hour of day is anomalous day after day (the daily pattern, as
    /// `SeasonalBaseline::hour_recurs` answered for the bucket's verdict).
    Anomalous { recurring_hour: bool },
    /// A parent or child geo is inside an incident: skip.
    Contaminated,
}

#[derive(Debug, Clone)]
pub struct SeasonalBaseline {
    level: f64,
    base: f64,
    /// EWMA of absolute residuals (in Poisson units for count signals).
    dispersion: f64,
    /// Fraction of the learned buckets that were not 0.
    nonzero_frac: f64,
    /// Mean absolute value of the learned buckets that were not 0.
    nonzero_mean: f64,
    learned_buckets: u32,
    /// Every hour of the day has been seen once and the daily profile is usable.
    bootstrapped: bool,
    /// Regime and factor of the last learned bucket, to keep `expected` continuous when the
    /// profile becomes usable.
    last_kind: BaselineKind,
    last_factor: f64,
    /// The profile was copied from the parent geo and this series has not yet learned a day
    /// of its own.
    borrowed: bool,
    daily: [f32; HOURS_PER_DAY],
    weekly: [f32; HOURS_PER_WEEK],
    daily_n: [u8; HOURS_PER_DAY],
    weekly_n: [u8; HOURS_PER_WEEK],
    acc_hour: i64,
    acc_x: f64,
    acc_base: f64,
    acc_n: u32,
    /// Per hour of the (profile's) day, bit `d` set when that hour held an anomalous bucket
    /// `d` days before `anomalous_day`.
    anomalous_hours: [u8; HOURS_PER_DAY],
    anomalous_day: i64,
    /// The level before the last incident accepted as the new normal, and when it was
    /// accepted (NaN: none held).
    held_level: f64,
    held_at_ms: i64,
}

impl Default for SeasonalBaseline {
    fn default() -> Self {
        Self::new()
    }
}

/// How long a borrowed profile is reported as borrowed.
const BORROWED_FOR_MS: i64 = 7 * 86_400_000;

/// Whether the level of this kind is in deseasonalised units (divided by a profile factor).
fn deseasonalised(kind: BaselineKind) -> bool {
    kind != BaselineKind::Recent
}

fn hour_index(ms: i64) -> i64 {
    ms.div_euclid(3_600_000)
}

impl SeasonalBaseline {
    pub(crate) fn new() -> Self {
        Self {
            level: 0.0,
            base: 0.0,
            dispersion: 1.0,
            nonzero_frac: 1.0,
            nonzero_mean: 0.0,
            learned_buckets: 0,
            bootstrapped: false,
            last_kind: BaselineKind::Recent,
            last_factor: 1.0,
            borrowed: false,
            daily: [1.0; HOURS_PER_DAY],
            weekly: [1.0; HOURS_PER_WEEK],
            daily_n: [0; HOURS_PER_DAY],
            weekly_n: [0; HOURS_PER_WEEK],
            acc_hour: i64::MIN,
            acc_x: 0.0,
            acc_base: 0.0,
            acc_n: 0,
            anomalous_hours: [0; HOURS_PER_DAY],
            anomalous_day: 0,
            held_level: f64::NAN,
            held_at_ms: 0,
        }
    }

    /// Moves the anomalous-hours record to `day`: each hour's bits age by the days passed.
    fn roll_anomalous_hours(&mut self, day: i64) {
        let passed = day - self.anomalous_day;
        if passed > 0 {
            for bits in &mut self.anomalous_hours {
                *bits = if passed >= RECORDED_DAYS {
                    0
                } else {
                    *bits << passed
                };
            }
            self.anomalous_day = day;
        }
    }

    /// Whether the hour of day of `start_ms` was anomalous on enough of the previous days to
    /// be the series' daily pattern.
    pub(crate) fn hour_recurs(&self, start_ms: i64, p: &BaselineParams) -> bool {
        if !p.seasonality || !self.bootstrapped {
            return false;
        }
        let local = p.profile_ms(start_ms);
        let passed = local.div_euclid(MS_PER_DAY) - self.anomalous_day;
        if passed >= RECORDED_DAYS {
            return false;
        }
        let h = hour_index(local).rem_euclid(HOURS_PER_DAY as i64) as usize;
        let bits = u32::from(self.anomalous_hours[h]) << passed.max(0);
        ((bits >> 1) & ((1 << RECURRENCE_DAYS) - 1)).count_ones() >= RECURRING_ON_DAYS
    }

    /// Records that the bucket at `start_ms` was anomalous, in its hour of day. The engine
    /// records only an anomaly's first day: a long outage marks each hour once, a nightly
    /// batch job its hours every night.
    pub(crate) fn mark_anomalous_hour(&mut self, start_ms: i64, p: &BaselineParams) {
        let local = p.profile_ms(start_ms);
        self.roll_anomalous_hours(local.div_euclid(MS_PER_DAY));
        let h = hour_index(local).rem_euclid(HOURS_PER_DAY as i64) as usize;
        self.anomalous_hours[h] |= 1;
    }

    /// Buckets this baseline has learned from.
    pub(crate) fn learned_buckets(&self) -> u32 {
        self.learned_buckets
    }

    /// Seasonal factor for the bucket starting at `start_ms`, and whether it is learned.
    fn factor(&self, start_ms: i64, p: &BaselineParams) -> (f64, BaselineKind) {
        if !p.seasonality || !self.bootstrapped {
            return (1.0, BaselineKind::Recent);
        }
        let mid_hours = (p.profile_ms(start_ms) as f64 + p.bucket_ms as f64 / 2.0) / MS_PER_HOUR;
        let h = mid_hours - 0.5;
        let fl = h.floor();
        let frac = h - fl;
        let w0 = (fl as i64).rem_euclid(HOURS_PER_WEEK as i64) as usize;
        let w1 = (w0 + 1) % HOURS_PER_WEEK;
        let (d0, d1) = (w0 % HOURS_PER_DAY, w1 % HOURS_PER_DAY);
        if self.daily_n[d0] == 0 || self.daily_n[d1] == 0 {
            return (1.0, BaselineKind::Recent);
        }
        let lerp = |a: f32, b: f32| a as f64 * (1.0 - frac) + b as f64 * frac;
        let daily = lerp(self.daily[d0], self.daily[d1]);
        let wn = self.weekly_n[w0].min(self.weekly_n[w1]) as f64;
        let f = if wn >= 1.0 {
            let w = wn / (wn + 1.0);
            w * lerp(self.weekly[w0], self.weekly[w1]) + (1.0 - w) * daily
        } else {
            daily
        };
        let kind = if self.borrowed {
            BaselineKind::Borrowed
        } else {
            BaselineKind::Seasonal
        };
        (f, kind)
    }

    /// Starts a brand-new series from its parent geo's seasonal shape (not its level: that is
    /// learned from the series' own first buckets), so a city seen for the first time expects
    /// the 07:00 rise and can alert on day one. Returns whether there was a shape to borrow.
    pub(crate) fn borrow_profile(&mut self, parent: &SeasonalBaseline) -> bool {
        if self.learned_buckets > 0 || !parent.bootstrapped {
            return false;
        }
        self.daily = parent.daily;
        self.weekly = parent.weekly;
        self.daily_n = parent.daily_n;
        self.weekly_n = parent.weekly_n;
        self.bootstrapped = true;
        self.borrowed = true;
        true
    }

    /// The spread a series has from being 0 part of the time and about `nonzero_mean` the
    /// rest (a Bernoulli mixture's standard deviation): where it is expected to be 0, a value
    /// of its usual size is not an anomaly.
    fn intermittent_scale(&self, expected: f64) -> f64 {
        let p = self.nonzero_frac.clamp(0.0, 1.0);
        // Where the series is expected at its usual size (a daytime hour of a series that is
        // 0 at night) there is no such uncertainty left.
        (self.nonzero_mean - expected.abs()).max(0.0) * (p * (1.0 - p)).sqrt()
    }

    /// The scale of a bucket expected to hold `expected`.
    pub(crate) fn scale(&self, expected: f64, p: &BaselineParams) -> f64 {
        let learned = if p.poisson_floor {
            expected.max(1.0).sqrt() * (MAD_TO_SIGMA * self.dispersion).max(1.0)
        } else {
            MAD_TO_SIGMA * self.dispersion
        };
        learned
            .max(p.rel_scale_floor * expected.abs())
            .max(p.intermittent_scale_floor * self.intermittent_scale(expected))
            .max(p.min_scale)
    }

    /// Expected value and scale of the bucket starting at `start_ms`. With no history at all
    /// the expectation is `observed` itself (nothing to compare with yet).
    pub(crate) fn expect(&self, start_ms: i64, observed: f64, p: &BaselineParams) -> Expectation {
        let (factor, kind) = self.factor(start_ms, p);
        let mut level = self.level;
        if self.learned_buckets == 0 {
            level = observed / factor.max(FACTOR_MIN);
        } else if deseasonalised(kind) != deseasonalised(self.last_kind) {
            // The profile just became usable: re-express the level in deseasonalised units so
            // the expected value stays continuous.
            level *= self.last_factor / factor.max(FACTOR_MIN);
        }
        let expected = (level * factor).max(0.0);
        Expectation {
            expected,
            scale: self.scale(expected, p),
            factor,
            kind,
        }
    }

    /// Learns from a closed bucket with its expectation (as returned by [`Self::expect`]).
    pub(crate) fn learn(
        &mut self,
        start_ms: i64,
        observed: f64,
        exp: &Expectation,
        learn: Learn,
        p: &BaselineParams,
    ) {
        let f = exp.factor.max(FACTOR_MIN);
        if self.learned_buckets == 0 {
            self.level = observed / f;
            self.base = self.level;
        } else if deseasonalised(exp.kind) != deseasonalised(self.last_kind) {
            self.level = exp.expected / f;
        }
        self.last_kind = exp.kind;
        self.last_factor = f;
        if learn == Learn::Contaminated {
            return;
        }
        if let Learn::Anomalous { recurring_hour } = learn {
            // What recurs at this hour every day is the daily pattern: the profile learns it
            // as it is (the level and spread still do not), so the same incident does not
            // open every morning forever.
            if recurring_hour && !self.holds_level() {
                self.accumulate_hour(start_ms, observed.max(0.0), p);
            }
            return;
        }
        let lo = exp.expected - WINSOR_Z * exp.scale;
        let hi = exp.expected + WINSOR_Z * exp.scale;
        let x = observed.clamp(lo.max(0.0).min(hi), hi);
        let resid = (x - exp.expected).abs();

        let n = self.learned_buckets as f64;
        let warm = 1.0 / (n + 1.0);
        let a_level = if exp.kind == BaselineKind::Recent {
            p.alpha_cold.max(p.alpha_level)
        } else {
            p.alpha_level
        }
        .max(warm);
        self.level += a_level * (x / f - self.level);
        self.base += p.alpha_base.max(warm) * (x / f - self.base);
        // The raw value, not the winsorised one: winsorised against a scale that has
        // collapsed to ~0 every value of an intermittent series would look like 0.
        let a_int = p.alpha_intermittency.max(warm);
        let nonzero = observed != 0.0;
        self.nonzero_frac += a_int * (f64::from(u8::from(nonzero)) - self.nonzero_frac);
        if nonzero {
            let a_size = if self.nonzero_mean == 0.0 { 1.0 } else { a_int };
            self.nonzero_mean += a_size * (observed.abs() - self.nonzero_mean);
        }

        let unit = if p.poisson_floor {
            exp.expected.max(1.0).sqrt()
        } else {
            1.0
        };
        let b = p.beta_disp.max(warm);
        let d = resid / unit;
        if p.poisson_floor || self.learned_buckets > 0 {
            self.dispersion += b * (d - self.dispersion);
        } else {
            self.dispersion = d;
        }

        // Right after a shift was accepted the level is re-learning: the day's shape measured
        // against it would be the shift's, not the day's.
        if p.seasonality && !self.holds_level() {
            self.accumulate_hour(start_ms, x, p);
        }
        self.learned_buckets = self.learned_buckets.saturating_add(1);
        // Each profile slot moves at least a quarter of the way per own update: after a week
        // the shape is mostly the series' own.
        if self.borrowed && self.learned_buckets as i64 * p.bucket_ms >= BORROWED_FOR_MS {
            self.borrowed = false;
        }
    }

    /// Sums the current hour's buckets against the slow base; a finished hour updates its slot.
    fn accumulate_hour(&mut self, start_ms: i64, x: f64, p: &BaselineParams) {
        let hour = hour_index(p.profile_ms(start_ms));
        if hour != self.acc_hour {
            self.finish_hour(p);
            self.acc_hour = hour;
        }
        self.acc_x += x;
        self.acc_base += self.base;
        self.acc_n += 1;
    }

    fn finish_hour(&mut self, p: &BaselineParams) {
        let buckets_per_hour = (3_600_000 / p.bucket_ms.max(1)).max(1) as u32;
        let enough = self.acc_n >= buckets_per_hour.div_ceil(2);
        if self.acc_hour != i64::MIN && enough && !self.bootstrapped {
            let d = self.acc_hour.rem_euclid(HOURS_PER_DAY as i64) as usize;
            self.daily[d] = (self.acc_x / self.acc_n as f64) as f32;
            self.daily_n[d] = 1;
            if self.daily_n.iter().all(|&n| n > 0) {
                let mean = self.daily.iter().map(|&v| v as f64).sum::<f64>() / HOURS_PER_DAY as f64;
                if mean > 1e-9 {
                    for v in &mut self.daily {
                        *v = ((*v as f64 / mean).clamp(FACTOR_MIN, FACTOR_MAX)) as f32;
                    }
                    self.base = mean;
                    self.bootstrapped = true;
                } else {
                    // A silent first day teaches no shape: start over.
                    self.daily_n = [0; HOURS_PER_DAY];
                }
            }
        } else if self.acc_hour != i64::MIN && enough && self.acc_base > 1e-9 {
            let ratio = (self.acc_x / self.acc_base).clamp(FACTOR_MIN, FACTOR_MAX);
            let w = self.acc_hour.rem_euclid(HOURS_PER_WEEK as i64) as usize;
            let d = w % HOURS_PER_DAY;
            update_slot(
                &mut self.daily[d],
                &mut self.daily_n[d],
                ratio,
                DAILY_GAMMA_MIN,
            );
            update_slot(
                &mut self.weekly[w],
                &mut self.weekly_n[w],
                ratio,
                WEEKLY_GAMMA_MIN,
            );
        }
        self.acc_x = 0.0;
        self.acc_base = 0.0;
        self.acc_n = 0;
    }

    /// Accepts the current observation as the new normal (after a very long incident).
    pub(crate) fn reseed(&mut self, start_ms: i64, observed: f64, exp: &Expectation) {
        let f = exp.factor.max(FACTOR_MIN);
        // Inside the incident nothing was learned: the level is still the one before it.
        self.held_level = self.level;
        self.held_at_ms = start_ms;
        self.level = observed / f;
        self.base = self.level;
        self.reset_hour();
    }

    fn holds_level(&self) -> bool {
        !self.held_level.is_nan()
    }

    fn reset_hour(&mut self) {
        self.acc_hour = i64::MIN;
        self.acc_x = 0.0;
        self.acc_base = 0.0;
        self.acc_n = 0;
    }

    /// The expectation under the level held from before the last accepted incident, while
    /// it is younger than `hold_ms`.
    pub(crate) fn held_expectation(
        &mut self,
        start_ms: i64,
        hold_ms: i64,
        p: &BaselineParams,
    ) -> Option<Expectation> {
        if !self.holds_level() {
            return None;
        }
        if start_ms - self.held_at_ms > hold_ms {
            self.held_level = f64::NAN;
            return None;
        }
        let (factor, kind) = self.factor(start_ms, p);
        let expected = (self.held_level * factor).max(0.0);
        Some(Expectation {
            expected,
            scale: self.scale(expected, p),
            factor,
            kind,
        })
    }

    /// Before the daily profile exists, the lowest and the highest hourly mean of the hours
    /// seen so far (the first day's hours are kept as raw means until the day is complete).
    pub(crate) fn levels_before_profile(&self) -> Option<(f64, f64)> {
        if self.bootstrapped {
            return None;
        }
        let mut seen = self.daily.iter().zip(&self.daily_n).filter(|(_, &n)| n > 0);
        let (&first, _) = seen.next()?;
        let (lo, hi) = seen.fold((first, first), |(lo, hi), (&v, _)| (lo.min(v), hi.max(v)));
        Some((f64::from(lo), f64::from(hi)))
    }

    /// The series is back where it was before the accepted incident: that level again.
    pub(crate) fn restore_held(&mut self) {
        self.level = self.held_level;
        self.base = self.held_level;
        self.held_level = f64::NAN;
        self.reset_hour();
    }
}

impl SeasonalBaseline {
    /// The learned state as plain data, for checkpoints.
    pub(crate) fn to_state(&self) -> BaselineState {
        BaselineState {
            level: self.level,
            base: self.base,
            dispersion: self.dispersion,
            nonzero_frac: self.nonzero_frac,
            nonzero_mean: self.nonzero_mean,
            learned_buckets: self.learned_buckets,
            bootstrapped: self.bootstrapped,
            last_kind: self.last_kind,
            last_factor: self.last_factor,
            borrowed: self.borrowed,
            daily: self.daily.to_vec(),
            weekly: self.weekly.to_vec(),
            daily_n: self.daily_n.to_vec(),
            weekly_n: self.weekly_n.to_vec(),
            acc_hour: self.acc_hour,
            acc_x: self.acc_x,
            acc_base: self.acc_base,
            acc_n: self.acc_n,
            anomalous_hours: self.anomalous_hours.to_vec(),
            anomalous_day: self.anomalous_day,
            held_level: self.holds_level().then_some(self.held_level),
            held_at_ms: self.held_at_ms,
        }
    }

    /// Rebuilds a baseline from a checkpoint, refusing anything it could not have written.
    pub(crate) fn from_state(s: BaselineState) -> Result<Self, StateError> {
        fn array<T: Copy, const N: usize>(v: &[T], what: &str) -> Result<[T; N], StateError> {
            v.try_into().map_err(|_| {
                StateError::Invalid(format!("{what} has {} entries, expected {N}", v.len()))
            })
        }
        let floats = [
            s.level,
            s.base,
            s.dispersion,
            s.nonzero_frac,
            s.nonzero_mean,
            s.last_factor,
            s.acc_x,
            s.acc_base,
            s.held_level.unwrap_or(0.0),
        ];
        let profile_ok = s
            .daily
            .iter()
            .chain(&s.weekly)
            .all(|v| v.is_finite() && *v >= 0.0);
        if !floats.iter().all(|v| v.is_finite()) || !profile_ok {
            return Err(StateError::Invalid(
                "baseline holds a non-finite or negative value".into(),
            ));
        }
        if !(0.0..=1.0).contains(&s.nonzero_frac) || s.nonzero_mean < 0.0 {
            return Err(StateError::Invalid(format!(
                "baseline's nonzero fraction {} or mean {} is out of range",
                s.nonzero_frac, s.nonzero_mean
            )));
        }
        Ok(Self {
            level: s.level,
            base: s.base,
            dispersion: s.dispersion,
            nonzero_frac: s.nonzero_frac,
            nonzero_mean: s.nonzero_mean,
            learned_buckets: s.learned_buckets,
            bootstrapped: s.bootstrapped,
            last_kind: s.last_kind,
            last_factor: s.last_factor,
            borrowed: s.borrowed,
            daily: array(&s.daily, "daily profile")?,
            weekly: array(&s.weekly, "weekly profile")?,
            daily_n: array(&s.daily_n, "daily counts")?,
            weekly_n: array(&s.weekly_n, "weekly counts")?,
            acc_hour: s.acc_hour,
            acc_x: s.acc_x,
            acc_base: s.acc_base,
            acc_n: s.acc_n,
            anomalous_hours: array(&s.anomalous_hours, "anomalous hours")?,
            anomalous_day: s.anomalous_day,
            held_level: s.held_level.unwrap_or(f64::NAN),
            held_at_ms: s.held_at_ms,
        })
    }
}

fn update_slot(value: &mut f32, n: &mut u8, ratio: f64, gamma_min: f64) {
    let gamma = (1.0 / (*n as f64 + 1.0)).max(gamma_min);
    *value = (*value as f64 + gamma * (ratio - *value as f64)) as f32;
    *n = n.saturating_add(1);
}

#[cfg(test)]
mod tests;
