//! The detection engine: a pure library (no I/O, no clock; time is passed in).
//!
//! Data flow: [`Engine::observe`] adds an event to the open bucket of its series and of every
//! ancestor geo; [`Engine::advance`] moves the watermark, closes every bucket whose end plus
//! allowed lateness has passed, scores it against the series' [`SeasonalBaseline`], feeds the
//! [`IncidentTracker`], and hands bucket reports and anomaly events to an [`EngineSink`].
//!
//! Layout for speed: the hot path touches only the interners, a route cache (leaf series key →
//! the series of its whole geo chain) and a dense ring of open-bucket sums; the cold per-series
//! state (baseline, incident) is touched once per closed bucket.

pub mod baseline;
pub mod calibration;
pub mod geo;
pub mod incident;
mod routes;
pub mod score;
pub mod state;

use std::collections::BTreeSet;

use ahash::AHashMap;

pub use baseline::{BaselineParams, Expectation, Learn, SeasonalBaseline};
pub use calibration::{TailCalibration, TailMap};
pub use geo::{GeoId, GeoTable};
pub use incident::{BucketVerdict, Incident, IncidentTracker, Transition};
pub use score::Score;
pub use state::{ClockState, EngineLayout, RestoreReport, SeriesState, StateDelta, StateError};

use crate::config::{Config, Direction, Secs, Thresholds};
use crate::event::{
    self, AnomalyEvent, DecodeError, IncidentState, InputEvent, ThresholdsInForce, Timestamp,
    ANOMALY_SCHEMA_VERSION,
};

/// One input to the engine: `amount` is added to the bucket of `ts_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation<'a> {
    pub service: &'a str,
    pub geo: &'a str,
    pub signal: &'a str,
    pub ts_ms: i64,
    pub amount: f64,
}

/// What happened to an accepted observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingest {
    Counted,
    /// Its bucket had already closed (older than the allowed lateness): counted in
    /// [`EngineStats::late`], not applied.
    Late,
}

/// Why the engine refused an observation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObserveError {
    #[error("amount {0} is not a finite number in 0 ..= {max:e}", max = event::MAX_AMOUNT)]
    InvalidAmount(f64),
    #[error("value {0} is not a finite number in 0 ..= {max:e}", max = MAX_BUCKET_VALUE)]
    InvalidValue(f64),
    #[error(transparent)]
    Invalid(#[from] DecodeError),
    #[error("timestamp {ts} is more than {skew} ahead of the newest event time {newest}")]
    TooFarAhead {
        ts: Timestamp,
        newest: Timestamp,
        skew: Secs,
    },
    /// Beyond the wall clock the driver passed in ([`Engine::set_wall_clock`]) plus
    /// `engine.max_future_skew`: no event of the real world can be dated there, however many
    /// of them arrive.
    #[error(
        "timestamp {ts} is more than {skew} ahead of the wall clock {now} (engine.max_future_skew)"
    )]
    AheadOfWallClock {
        ts: Timestamp,
        now: Timestamp,
        skew: Secs,
    },
    #[error("{what} {name:?} is new, but the limit of {limit} {what}s is reached ({setting})")]
    Capacity {
        what: &'static str,
        name: String,
        limit: usize,
        setting: &'static str,
    },
}

impl ObserveError {
    pub fn kind(&self) -> &'static str {
        match self {
            ObserveError::InvalidAmount(_) => "invalid_amount",
            ObserveError::InvalidValue(_) => "invalid_value",
            ObserveError::Invalid(e) => e.kind(),
            ObserveError::TooFarAhead { .. } => "too_far_ahead",
            ObserveError::AheadOfWallClock { .. } => "ahead_of_wall_clock",
            ObserveError::Capacity { .. } => "capacity",
        }
    }
}

/// Counters of what the engine did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub events: u64,
    pub late: u64,
    pub rejected: u64,
    /// Events whose own series could not be created because of `engine.max_series` (or whose
    /// geo did not fit under `engine.max_geos`); they still count toward ancestors that exist.
    pub capped: u64,
    /// Rejected events (included in `rejected`) whose new service, geo or signal did not fit
    /// under `engine.max_services` / `engine.max_geos` / the signal limit.
    pub capacity_rejected: u64,
    pub series_created: u64,
    /// New series that started from a seed baseline (`run --initial-state`).
    pub series_seeded: u64,
    pub series_expired: u64,
    pub buckets_closed: u64,
    /// Closed buckets of count series without events that were read as missing data (an `up`
    /// series whose silence was improbable: `no_data_expected`).
    pub no_data_buckets: u64,
    pub incidents_opened: u64,
    pub incidents_resolved: u64,
    pub anomaly_events: u64,
}

/// One closed bucket of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketReport<'a> {
    pub service: &'a str,
    pub geo: &'a str,
    pub signal: &'a str,
    pub start_ms: i64,
    pub end_ms: i64,
    /// `None`: no data for this bucket (pre-aggregated series only).
    pub observed: Option<f64>,
    pub expected: f64,
    pub scale: f64,
    pub zscore: f64,
    pub anomaly_score: f64,
    /// An incident is open on this series after this bucket.
    pub alert: bool,
    pub warming_up: bool,
}

/// Receives what the engine produces.
pub trait EngineSink {
    fn bucket(&mut self, _report: &BucketReport<'_>) {}
    fn anomaly(&mut self, event: AnomalyEvent);
}

impl EngineSink for Vec<AnomalyEvent> {
    fn anomaly(&mut self, event: AnomalyEvent) {
        self.push(event);
    }
}

#[derive(Debug, Default)]
struct Interner {
    ids: AHashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
    fn insert(&mut self, s: &str) -> u32 {
        if let Some(id) = self.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(s.into(), id);
        self.names.push(s.into());
        id
    }
    fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}

type SeriesKey = (u32, GeoId, u32);

/// The series an event of one leaf key counts toward, leaf first.
/// Fixed size so the hot path copies it without a call.
#[derive(Debug, Clone, Copy)]
struct Route {
    slots: [u32; geo::MAX_DEPTH],
    len: u8,
    /// The leaf's own series could not be created (series cap): only ancestors count it.
    leaf_capped: bool,
}

/// Events this far ahead of the stream (beyond `engine.max_future_skew`), close together and
/// with no normal event between them, that make the engine accept the stream has moved on.
/// They must also come from a quorum of the engine's services (see [`FarAhead`]).
pub const FUTURE_JUMP_CONFIRMATIONS: u32 = 32;

/// A run of far-ahead events (see `Engine::check_time`).
#[derive(Debug, Clone, PartialEq)]
struct FarAhead {
    /// Time of the first one: the run holds events within `max_future_skew` of it.
    first: i64,
    count: u32,
    /// Distinct known services (ids with live series) among them, at most the quorum. Not
    /// saved in checkpoints: after a restore the quorum is collected again.
    services: Vec<u32>,
}

/// Largest value a bucket holds: sums saturate here, and a pre-aggregated value above it is
/// rejected. Far below `f64::MAX`, so that expected values, scales, scores and their cubes in
/// `anomaly_score` all stay finite: an anomaly event never carries `null` for a number.
pub const MAX_BUCKET_VALUE: f64 = 1e15;

/// Distinct signal names an engine accepts (mentions, complaints, and CSV series' names).
const MAX_SIGNALS: usize = 256;

/// Open buckets kept inline per series: the current one plus the allowed lateness at the
/// default settings. Buckets further ahead wait in the engine's overflow map.
const RING: usize = 4;

/// Hot per-series bucketing state: exactly one cache line, so an event touches one line per
/// series it counts toward.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
struct Window {
    /// Sums of the open buckets `next_close .. next_close + RING`, at index `bucket % RING`;
    /// NaN marks "no value" in pre-aggregated series.
    ring: [f64; RING],
    /// Index (ts / width) of the oldest bucket still open.
    next_close: i64,
    /// First bucket that received data: earlier buckets are not part of the series, so the
    /// result does not depend on which event happened to arrive first.
    first_data: i64,
    /// Newest event time seen, for idle expiry (kept here: the hot path must not touch the
    /// cold state).
    last_event_ms: i64,
    width_ms: u32,
    lateness_ms: u32,
}

impl Window {
    /// Bit-for-bit equality (NaN marks "no value" and must compare equal to itself).
    fn same_as(&self, o: &Window) -> bool {
        self.ring
            .iter()
            .zip(&o.ring)
            .all(|(a, b)| a.to_bits() == b.to_bits())
            && self.next_close == o.next_close
            && self.first_data == o.first_data
            && self.last_event_ms == o.last_event_ms
            && self.width_ms == o.width_ms
            && self.lateness_ms == o.lateness_ms
    }

    fn due_ms(&self) -> i64 {
        (self.next_close + 1) * self.width_ms as i64 + self.lateness_ms as i64
    }
}

/// Cold per-series state.
#[derive(Debug, Clone)]
struct Series {
    key: SeriesKey,
    thresholds: Thresholds,
    params: BaselineParams,
    baseline: SeasonalBaseline,
    tracker: IncidentTracker,
    calibration: TailCalibration,
    /// Events expected over the current run of silent buckets (see `no_data_expected`).
    silent_expected: f64,
    /// Buckets never given a value are missing data (pre-aggregated series), not zero.
    missing_is_gap: bool,
}

/// Something to emit after all series closed the current bucket.
#[derive(Debug, Clone, Copy)]
struct Pending {
    series: u32,
    transition: Transition,
    start_ms: i64,
    end_ms: i64,
    observed: f64,
    expected: f64,
    score: Score,
    kind: event::BaselineKind,
}

/// The detection engine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    services: Interner,
    signals: Interner,
    geos: GeoTable,
    index: AHashMap<SeriesKey, u32>,
    /// Leaf series key → live series of its geo chain. Cleared when series expire.
    routes: routes::RouteCache,
    windows: Vec<Window>,
    series: Vec<Option<Series>>,
    free: Vec<u32>,
    live: usize,
    /// Live series per service id.
    per_service: Vec<u32>,
    /// Sums for buckets beyond a series' ring (events far ahead of the watermark, or lateness
    /// longer than the ring).
    overflow: AHashMap<(u32, i64), f64>,
    watermark: Option<i64>,
    newest_ts: Option<i64>,
    /// Far-ahead events seen in a row: see `check_time`.
    far_ahead: Option<FarAhead>,
    /// Services with at least one live series (the electorate of the far-ahead quorum).
    active_services: u32,
    /// Wall clock the driver passed in (see [`Self::set_wall_clock`]).
    wall_clock_ms: Option<i64>,
    /// Earliest time any live series has a bucket due.
    next_due: i64,
    open_set: BTreeSet<u32>,
    /// Per series key: open incidents among its descendant geos (no entry: none). Such a series
    /// does not learn either, or a parent would absorb a child's outage as soon as its own
    /// incident resolved.
    open_descendants: AHashMap<SeriesKey, u32>,
    pending: Vec<Pending>,
    stats: EngineStats,
    /// Per slot: the series and window as of the last [`Engine::take_changes`] (empty until
    /// the first call). A series' cold state only changes when its window does (a bucket
    /// closes), so comparing windows finds every changed series.
    exported: Vec<Option<(SeriesKey, Window)>>,
    /// Baselines learned from history that new series start from (see [`BaselineSeed`]).
    seed: Option<std::sync::Arc<BaselineSeed>>,
}

/// What a replay of history learned, per series key: a new series whose key is here starts
/// with that baseline (seasonal profile, level, dispersion) instead of warming up, with fresh
/// buckets and no incident. Built from a state file (`replay --save-state`); the history's
/// clock does not matter, so live input may start any time after it.
#[derive(Debug, Default)]
pub struct BaselineSeed {
    baselines: AHashMap<String, state::BaselineState>,
}

impl BaselineSeed {
    /// Reads the baselines of a state file. Damaged series records are skipped and reported.
    pub fn from_state_file(bytes: &[u8]) -> Result<(Self, RestoreReport), StateError> {
        let (_, records) = Records::of_state_file(bytes)?;
        let mut seed = Self::default();
        let mut report = RestoreReport::default();
        for rec in records {
            match rec.and_then(state::decode::<SeriesState>) {
                Ok(st) => match SeasonalBaseline::from_state(st.baseline.clone()) {
                    Ok(_) => {
                        seed.baselines.insert(st.key(), st.baseline);
                        report.restored += 1;
                    }
                    Err(e) => report.skipped.push((Some(st.key()), e)),
                },
                Err(e) => {
                    let stop = matches!(e, StateError::Truncated { .. });
                    report.skipped.push((None, e));
                    if stop {
                        break;
                    }
                }
            }
        }
        Ok((seed, report))
    }

    pub fn len(&self) -> usize {
        self.baselines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.baselines.is_empty()
    }
}

impl Engine {
    pub fn new(config: Config) -> Self {
        Self {
            geos: GeoTable::new(config.geo.clone()),
            config,
            services: Interner::default(),
            signals: Interner::default(),
            index: AHashMap::new(),
            routes: routes::RouteCache::default(),
            windows: Vec::new(),
            series: Vec::new(),
            free: Vec::new(),
            live: 0,
            per_service: Vec::new(),
            overflow: AHashMap::new(),
            watermark: None,
            newest_ts: None,
            far_ahead: None,
            active_services: 0,
            wall_clock_ms: None,
            next_due: i64::MAX,
            open_set: BTreeSet::new(),
            open_descendants: AHashMap::new(),
            pending: Vec::new(),
            stats: EngineStats::default(),
            exported: Vec::new(),
            seed: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn series_count(&self) -> usize {
        self.live
    }

    /// Distinct geo codes remembered (bounded by `engine.max_geos`).
    pub fn geo_count(&self) -> usize {
        self.geos.len()
    }

    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// Number of incidents open right now.
    pub fn open_incidents(&self) -> usize {
        self.open_set.len()
    }

    /// Approximate bytes of state held (series, rings, indexes, names).
    pub fn state_bytes(&self) -> usize {
        let per_slot = std::mem::size_of::<Option<Series>>() + std::mem::size_of::<Window>();
        let slots = self.series.len() * per_slot;
        let incidents: usize = self
            .series
            .iter()
            .flatten()
            .map(|s| s.tracker.heap_bytes())
            .sum();
        // Hash map entries: key + value + control byte, at the maps' load factor.
        let index = self.index.capacity() * (std::mem::size_of::<SeriesKey>() + 4 + 1);
        let routes = self.routes.heap_bytes();
        slots + incidents + index + routes + self.geos.heap_bytes()
    }

    /// Applies a new configuration without losing state: thresholds of every live series are
    /// re-resolved and apply from the next bucket. A series keeps its bucket width and
    /// lateness (changing them would re-cut history); new series get the new ones.
    pub fn reconfigure(&mut self, config: Config) {
        self.geos.set_settings(config.geo.clone());
        self.routes.clear();
        for s in self.series.iter_mut().flatten() {
            let (svc, g, sig) = s.key;
            let mut t = config.resolve(
                self.services.name(svc),
                self.geos.name(g),
                self.signals.name(sig),
            );
            t.bucket = s.thresholds.bucket;
            t.allowed_lateness = s.thresholds.allowed_lateness;
            s.params = BaselineParams::new(&t);
            s.thresholds = t;
        }
        self.config = config;
    }

    /// Feeds a decoded input event.
    pub fn observe_event(&mut self, ev: &InputEvent<'_>) -> Result<Ingest, ObserveError> {
        self.observe(Observation {
            service: ev.service(),
            geo: ev.geo(),
            signal: ev.signal(),
            ts_ms: ev.ts().millis(),
            amount: ev.amount(),
        })
    }

    /// Bounds event time by the wall clock: events more than `engine.max_future_skew` after
    /// `now_ms` are rejected ([`ObserveError::AheadOfWallClock`]) and never count toward a
    /// far-ahead jump, so no producer can move the clock past what is real. The engine has no
    /// clock of its own: drivers that read live input (the Kafka pipeline, replay) pass it in;
    /// `None` (the default) leaves event time unbounded except by 2000–2100.
    pub fn set_wall_clock(&mut self, now_ms: Option<i64>) {
        self.wall_clock_ms = now_ms;
    }

    /// Services needed to confirm a far-ahead jump: a strict majority of those with live
    /// series (1 of 1, 2 of 2, 2 of 3, 3 of 4, …), so one producer (whatever service names it
    /// uses: unknown names have no series) cannot move the clock, while a real input gap, after
    /// which the partition's services resume together, still does.
    fn jump_quorum(&self) -> usize {
        self.active_services as usize / 2 + 1
    }

    fn check_time(&mut self, ts_ms: i64, service: &str) -> Result<(), ObserveError> {
        if !(event::MIN_EVENT_TS_MS..event::MAX_EVENT_TS_MS).contains(&ts_ms) {
            return Err(DecodeError::TimestampOutOfRange { ts: ts_ms }.into());
        }
        let skew = self.config.engine.max_future_skew;
        if let Some(now) = self.wall_clock_ms {
            if ts_ms > now.saturating_add(skew.millis()) {
                return Err(ObserveError::AheadOfWallClock {
                    ts: Timestamp(ts_ms),
                    now: Timestamp(now),
                    skew,
                });
            }
        }
        match self.newest_ts {
            Some(newest) if ts_ms > newest.saturating_add(skew.millis()) => {
                // A lone event far ahead is an absurd timestamp. Many close together, from a
                // quorum of the services, with no normal event between them, mean the stream
                // itself moved on (a gap in the input, a restored older state): follow it
                // rather than reject it forever.
                let known = self
                    .services
                    .get(service)
                    .filter(|&id| self.per_service.get(id as usize).is_some_and(|&n| n > 0));
                let quorum = self.jump_quorum();
                let mut run = match self.far_ahead.take() {
                    Some(mut f) if (ts_ms - f.first).abs() <= skew.millis() => {
                        f.count += 1;
                        f
                    }
                    _ => FarAhead {
                        first: ts_ms,
                        count: 1,
                        services: Vec::new(),
                    },
                };
                if let Some(id) = known {
                    if run.services.len() < quorum && !run.services.contains(&id) {
                        run.services.push(id);
                    }
                }
                if run.count >= FUTURE_JUMP_CONFIRMATIONS && run.services.len() >= quorum {
                    self.newest_ts = Some(ts_ms);
                    return Ok(());
                }
                self.far_ahead = Some(run);
                Err(ObserveError::TooFarAhead {
                    ts: Timestamp(ts_ms),
                    newest: Timestamp(newest),
                    skew,
                })
            }
            Some(newest) if ts_ms <= newest => {
                self.far_ahead = None;
                Ok(())
            }
            _ => {
                self.far_ahead = None;
                self.newest_ts = Some(ts_ms);
                Ok(())
            }
        }
    }

    /// Adds `obs.amount` to the bucket of `obs.ts_ms` of the series and all its ancestor geos.
    pub fn observe(&mut self, obs: Observation<'_>) -> Result<Ingest, ObserveError> {
        let r = self.observe_inner(&obs);
        match &r {
            Ok(Ingest::Counted) => self.stats.events += 1,
            Ok(Ingest::Late) => self.stats.late += 1,
            Err(e) => {
                self.stats.rejected += 1;
                self.stats.capacity_rejected +=
                    u64::from(matches!(e, ObserveError::Capacity { .. }));
            }
        }
        r
    }

    fn observe_inner(&mut self, obs: &Observation<'_>) -> Result<Ingest, ObserveError> {
        if !(obs.amount.is_finite() && (0.0..=event::MAX_AMOUNT).contains(&obs.amount)) {
            return Err(ObserveError::InvalidAmount(obs.amount));
        }
        self.check_time(obs.ts_ms, obs.service)?;
        let hash = self.routes.hash(obs.service, obs.geo, obs.signal);
        let cached = self.routes.get(hash, |(svc, g, sig)| {
            self.signals.name(sig) == obs.signal
                && self.services.name(svc) == obs.service
                && self.geos.name(g) == obs.geo
        });
        let route = match cached {
            Some(route) => route,
            None => {
                let (key, exact) = self.leaf_key(obs.service, obs.geo, obs.signal)?;
                self.build_route(key, exact, obs.ts_ms, hash)
            }
        };
        if route.leaf_capped {
            self.stats.capped += 1;
        }
        let mut outcome = Ingest::Counted;
        for (i, &slot) in route.slots[..route.len as usize].iter().enumerate() {
            let late = self.add(slot, obs.ts_ms, obs.amount, false);
            if i == 0 && late && !route.leaf_capped {
                outcome = Ingest::Late;
            }
        }
        Ok(outcome)
    }

    /// Sets the value of one bucket of a pre-aggregated series (e.g. a CSV count series).
    /// Buckets of such a series that never get a value are missing data. No roll-up: the series
    /// is exactly the one named.
    pub fn set_bucket_value(
        &mut self,
        service: &str,
        geo: &str,
        signal: &str,
        ts_ms: i64,
        value: f64,
    ) -> Result<Ingest, ObserveError> {
        let r = (|| {
            if !(value.is_finite() && (0.0..=MAX_BUCKET_VALUE).contains(&value)) {
                return Err(ObserveError::InvalidValue(value));
            }
            self.check_time(ts_ms, service)?;
            let (key, exact) = self.leaf_key(service, geo, signal)?;
            if !exact {
                self.stats.capped += 1;
                return Ok(Ingest::Counted);
            }
            let slot = match self.index.get(&key) {
                Some(&s) => s,
                None => match self.create_series(key, ts_ms, true) {
                    Some(s) => s,
                    None => {
                        self.stats.capped += 1;
                        return Ok(Ingest::Counted);
                    }
                },
            };
            Ok(if self.add(slot, ts_ms, value, true) {
                Ingest::Late
            } else {
                Ingest::Counted
            })
        })();
        match &r {
            Ok(Ingest::Counted) => self.stats.events += 1,
            Ok(Ingest::Late) => self.stats.late += 1,
            Err(e) => {
                self.stats.rejected += 1;
                self.stats.capacity_rejected +=
                    u64::from(matches!(e, ObserveError::Capacity { .. }));
            }
        }
        r
    }

    /// Interns the names of an event's series. The bool is false when the geo table is full
    /// and the key names the nearest known ancestor instead of the geo itself.
    fn leaf_key(
        &mut self,
        service: &str,
        geo: &str,
        signal: &str,
    ) -> Result<(SeriesKey, bool), ObserveError> {
        let caps = &self.config.engine;
        let svc = match self.services.get(service) {
            Some(id) => id,
            None => {
                event::validate_service(service)?;
                if self.services.names.len() >= caps.max_services {
                    return Err(ObserveError::Capacity {
                        what: "service",
                        name: service.to_string(),
                        limit: caps.max_services,
                        setting: "engine.max_services",
                    });
                }
                self.services.insert(service)
            }
        };
        let sig = match self.signals.get(signal) {
            Some(id) => id,
            None => {
                event::validate_service(signal).map_err(|_| DecodeError::InvalidField {
                    field: "signal",
                    reason: format!("{signal:?} is not a valid signal name"),
                })?;
                if self.signals.names.len() >= MAX_SIGNALS {
                    return Err(ObserveError::Capacity {
                        what: "signal",
                        name: signal.to_string(),
                        limit: MAX_SIGNALS,
                        setting: "a fixed limit",
                    });
                }
                self.signals.insert(signal)
            }
        };
        if let Some(g) = self.geos.get(geo) {
            return Ok(((svc, g, sig), true));
        }
        event::validate_geo(geo)?;
        match self.geos.resolve(geo, caps.max_geos) {
            geo::Resolved::Exact(g) => Ok(((svc, g, sig), true)),
            geo::Resolved::Ancestor(g) => Ok(((svc, g, sig), false)),
            geo::Resolved::Nothing => Err(ObserveError::Capacity {
                what: "geo",
                name: geo.to_string(),
                limit: caps.max_geos,
                setting: "engine.max_geos",
            }),
        }
    }

    /// The series an event of `key` counts toward, creating missing ones. `exact` false: the
    /// key is the nearest known ancestor of a geo that could not be remembered. Routes are
    /// cached only for leaves that have their own series, so junk keys leave no trace.
    fn build_route(&mut self, key: SeriesKey, exact: bool, ts_ms: i64, hash: u64) -> Route {
        let (svc, leaf, sig) = key;
        let chain: Vec<GeoId> = self.geos.chain(leaf).to_vec();
        let mut route = Route {
            slots: [0; geo::MAX_DEPTH],
            len: 0,
            leaf_capped: !exact,
        };
        for (i, g) in chain.into_iter().enumerate() {
            let k = (svc, g, sig);
            let slot = match self.index.get(&k) {
                Some(&s) => Some(s),
                None => self.create_series(k, ts_ms, false),
            };
            match slot {
                Some(s) => {
                    route.slots[route.len as usize] = s;
                    route.len += 1;
                }
                None => route.leaf_capped |= i == 0,
            }
        }
        if !route.leaf_capped {
            self.routes.insert(hash, key, route);
        }
        route
    }

    /// Whether one more series of service `svc` fits under the caps.
    fn has_room(&self, svc: u32) -> bool {
        let caps = &self.config.engine;
        self.live < caps.max_series
            && (self.per_service.get(svc as usize).copied().unwrap_or(0) as usize)
                < caps.max_series_per_service
    }

    fn count_series(&mut self, svc: u32, created: bool) {
        let i = svc as usize;
        if self.per_service.len() <= i {
            self.per_service.resize(i + 1, 0);
        }
        if created {
            self.per_service[i] += 1;
            self.live += 1;
            self.active_services += u32::from(self.per_service[i] == 1);
        } else {
            self.per_service[i] -= 1;
            self.live -= 1;
            self.active_services -= u32::from(self.per_service[i] == 0);
        }
    }

    fn create_series(&mut self, key: SeriesKey, ts_ms: i64, missing_is_gap: bool) -> Option<u32> {
        let (svc, g, sig) = key;
        if !self.has_room(svc) {
            return None;
        }
        let thresholds = self.config.resolve(
            self.services.name(svc),
            self.geos.name(g),
            self.signals.name(sig),
        );
        // Config validation bounds both far below u32::MAX milliseconds.
        let width_ms = thresholds.bucket.millis();
        let lateness_ms = thresholds.allowed_lateness.millis();
        let fill = if missing_is_gap { f64::NAN } else { 0.0 };
        let first_open = match self.watermark {
            Some(wm) => (wm - lateness_ms).div_euclid(width_ms),
            None => ts_ms.div_euclid(width_ms) - lateness_ms.div_euclid(width_ms) - 1,
        };
        let window = Window {
            ring: [fill; RING],
            next_close: first_open,
            first_data: i64::MAX,
            last_event_ms: ts_ms,
            width_ms: width_ms as u32,
            lateness_ms: lateness_ms as u32,
        };
        let mut baseline = SeasonalBaseline::new();
        let seeded = self.seed.as_ref().and_then(|seed| {
            let name = state::series_key(
                self.services.name(svc),
                self.geos.name(g),
                self.signals.name(sig),
            );
            SeasonalBaseline::from_state(seed.baselines.get(&name)?.clone()).ok()
        });
        if let Some(b) = seeded {
            baseline = b;
            self.stats.series_seeded += 1;
        } else if thresholds.seasonality {
            if let Some(parent) = self.parent_series(key) {
                baseline.borrow_profile(&parent.baseline);
            }
        }
        let series = Series {
            key,
            params: BaselineParams::new(&thresholds),
            thresholds,
            baseline,
            tracker: IncidentTracker::default(),
            calibration: TailCalibration::default(),
            silent_expected: 0.0,
            missing_is_gap,
        };
        let slot = self.alloc_slot();
        self.windows[slot as usize] = window;
        self.series[slot as usize] = Some(series);
        self.index.insert(key, slot);
        self.count_series(svc, true);
        self.stats.series_created += 1;
        self.next_due = self.next_due.min(window.due_ms());
        Some(slot)
    }

    /// The series of the parent geo to borrow a seasonal shape from. Not the global geo: its
    /// shape mixes time zones and would put a country's evening in the world's night.
    fn parent_series(&self, (svc, g, sig): SeriesKey) -> Option<&Series> {
        let &parent = self.geos.chain(g).get(1)?;
        if self.geos.name(parent) == geo::GLOBAL {
            return None;
        }
        let &slot = self.index.get(&(svc, parent, sig))?;
        self.series[slot as usize].as_ref()
    }

    /// Adds (or, for `set`, stores) a value in a series' bucket. Returns true if the bucket
    /// had already closed.
    fn add(&mut self, slot: u32, ts_ms: i64, amount: f64, set: bool) -> bool {
        let w = &mut self.windows[slot as usize];
        let b = ts_ms.div_euclid(w.width_ms as i64);
        if b < w.next_close {
            return true;
        }
        w.first_data = w.first_data.min(b);
        w.last_event_ms = w.last_event_ms.max(ts_ms);
        let v = if b - w.next_close < RING as i64 {
            &mut w.ring[b.rem_euclid(RING as i64) as usize]
        } else {
            self.overflow.entry((slot, b)).or_insert(f64::NAN)
        };
        // Saturates: however many events a bucket gets, its sum stays finite.
        *v = if set || v.is_nan() {
            amount
        } else {
            (*v + amount).min(MAX_BUCKET_VALUE)
        };
        false
    }

    /// Pre-aggregated series ([`Self::set_bucket_value`]) whose open buckets hold no value
    /// move straight on to the bucket of `ts_ms`, instead of closing every bucket in between
    /// as missing data one by one: what the engine does and keeps then follows the values, not
    /// the time span between them (one row dated decades after the others cost 39M bucket
    /// closes). Nothing changes but the reports of those missing buckets: a missing bucket
    /// neither learns nor moves an incident. Call it before feeding a value at `ts_ms` (CSV
    /// replay does, row by row).
    pub fn skip_missing_buckets(&mut self, ts_ms: i64) {
        for slot in 0..self.series.len() {
            if !self.series[slot].as_ref().is_some_and(|s| s.missing_is_gap) {
                continue;
            }
            let w = &mut self.windows[slot];
            let target = ts_ms.div_euclid(w.width_ms as i64);
            if target <= w.next_close || w.ring.iter().any(|v| !v.is_nan()) {
                continue;
            }
            // Values waiting further ahead must enter the ring in order: do not skip past them.
            let slot32 = slot as u32;
            if self
                .overflow
                .keys()
                .any(|&(s, b)| s == slot32 && b < target + RING as i64)
            {
                continue;
            }
            w.next_close = target;
        }
    }

    /// Whether advancing to `watermark_ms` closes at least one bucket.
    pub fn closes_buckets_at(&self, watermark_ms: i64) -> bool {
        self.next_due <= watermark_ms
    }

    /// Moves the watermark to `watermark_ms` (it never goes back) and closes every bucket whose
    /// end plus allowed lateness is at or before it.
    pub fn advance<S: EngineSink + ?Sized>(&mut self, watermark_ms: i64, sink: &mut S) {
        if self.watermark.is_some_and(|w| watermark_ms <= w) {
            return;
        }
        self.watermark = Some(watermark_ms);
        while self.next_due <= watermark_ms {
            let due = self.next_due;
            self.close_due(due, sink);
        }
    }

    /// End of input: closes every bucket that could still hold data.
    pub fn finish<S: EngineSink + ?Sized>(&mut self, sink: &mut S) {
        let Some(newest) = self.newest_ts else {
            return;
        };
        let end = self
            .windows
            .iter()
            .zip(&self.series)
            .filter(|(_, s)| s.is_some())
            .map(|(w, _)| {
                let width = w.width_ms as i64;
                (newest.div_euclid(width) + 1) * width + w.lateness_ms as i64
            })
            .max()
            .unwrap_or(newest);
        self.advance(end, sink);
    }

    /// Closes the bucket due at `due` of every series, then emits incident events.
    fn close_due<S: EngineSink + ?Sized>(&mut self, due: i64, sink: &mut S) {
        let mut next_due = i64::MAX;
        let mut expired = false;
        for slot in 0..self.series.len() {
            if self.series[slot].is_none() {
                continue;
            }
            let w = self.windows[slot];
            if w.due_ms() == due {
                // A series already idle past its TTL at the target watermark expires now
                // instead of closing empty buckets one by one across a huge watermark jump.
                let target = self.watermark.unwrap_or(due);
                if self.expire_if_idle(slot as u32, target) {
                    expired = true;
                    continue;
                }
                self.close_bucket(slot as u32, sink);
            }
            next_due = next_due.min(self.windows[slot].due_ms());
        }
        self.next_due = next_due;
        if expired {
            self.routes.clear();
        }
        self.emit_pending(sink);
    }

    fn expire_if_idle(&mut self, slot: u32, now: i64) -> bool {
        let s = self.series[slot as usize].as_ref().expect("live series");
        let w = &self.windows[slot as usize];
        if s.tracker.is_open() || now - w.last_event_ms <= s.thresholds.series_ttl.millis() {
            return false;
        }
        // The bucket of the series' last events is still open: close the buckets up to it
        // first, so a watermark jump past the TTL never loses them; the series expires after.
        if w.last_event_ms.div_euclid(w.width_ms as i64) >= w.next_close {
            return false;
        }
        self.drop_series(slot);
        self.free.push(slot);
        self.stats.series_expired += 1;
        true
    }

    fn close_bucket<S: EngineSink + ?Sized>(&mut self, slot: u32, sink: &mut S) {
        let gap = self.series[slot as usize]
            .as_ref()
            .is_some_and(|s| s.missing_is_gap);
        let fill = if gap { f64::NAN } else { 0.0 };
        let w = &mut self.windows[slot as usize];
        let b = w.next_close;
        w.next_close += 1;
        let (width, first_data) = (w.width_ms as i64, w.first_data);
        let ri = b.rem_euclid(RING as i64) as usize;
        let mut value = std::mem::replace(&mut w.ring[ri], fill);
        if !self.overflow.is_empty() {
            // The bucket that just entered the ring's far end may have overflowed earlier.
            if let Some(v) = self.overflow.remove(&(slot, b + RING as i64)) {
                w.ring[ri] = v;
            }
        }
        if b < first_data {
            return;
        }
        if value.is_nan() && !gap {
            value = 0.0;
        }
        self.stats.buckets_closed += 1;
        let start_ms = b * width;
        let end_ms = start_ms + width;
        let lineage_open = self.lineage_open(slot);
        let s = self.series[slot as usize].as_mut().expect("live series");
        s.tracker.forget_after_gap(start_ms, &s.thresholds);
        let t = &s.thresholds;
        let names = (
            self.services.name(s.key.0),
            self.geos.name(s.key.1),
            self.signals.name(s.key.2),
        );
        let warming_up = s.baseline.learned_buckets() < t.warmup_buckets;
        let exp = s.baseline.expect(
            start_ms,
            if value.is_nan() { 0.0 } else { value },
            &s.params,
        );

        // Silence is missing data, not zero, when it is itself improbable for a spike-watching
        // series: nothing is learned, nothing opens, and the baseline resumes where it was when
        // events return (an input gap, a broken collector). A drop alert (`down`, `both`) sees
        // a series that falls silent as the collapse it may be. Per series on purpose: a rule
        // over the whole input would make a series' result depend on which services share its
        // Kafka partition.
        let no_data = if value == 0.0 && !gap {
            s.silent_expected += exp.expected;
            t.direction == Direction::Up && s.silent_expected >= t.no_data_expected
        } else {
            s.silent_expected = 0.0;
            value.is_nan()
        };
        if no_data {
            if !value.is_nan() {
                self.stats.no_data_buckets += 1;
            }
            sink.bucket(&BucketReport {
                service: names.0,
                geo: names.1,
                signal: names.2,
                start_ms,
                end_ms,
                observed: None,
                expected: exp.expected,
                scale: exp.scale,
                zscore: 0.0,
                anomaly_score: 0.0,
                alert: s.tracker.is_open(),
                warming_up,
            });
            return;
        }

        let raw = score::score(value, exp.expected, exp.scale, t.direction, t.open_z);
        let sc = if t.calibrate {
            raw.calibrated(s.calibration.map(), t.direction, t.open_z)
        } else {
            raw
        };
        let volume_ok = match t.direction {
            Direction::Up => value >= t.min_count,
            Direction::Down => exp.expected >= t.min_count,
            Direction::Both => value.max(exp.expected) >= t.min_count,
        };
        let verdict = BucketVerdict {
            start_ms,
            end_ms,
            observed: value,
            z_dir: sc.z_dir,
            severity: score::severity(value, exp.expected, sc.z_dir, t.open_z, t.direction),
            volume_ok,
            warming_up,
        };
        let was_open = s.tracker.is_open();
        let transition = s.tracker.on_bucket(&verdict, t);
        let above = IncidentTracker::is_above(&verdict, t);
        if t.calibrate && !warming_up && !was_open && !lineage_open {
            match transition {
                Transition::Opened | Transition::Reopened => s.calibration.forget_held(),
                _ => s
                    .calibration
                    .learn(raw.z_dir, above, s.params.tail_decay, t.open_n),
            }
        }
        // Warm-up buckets always teach (nothing to protect yet); afterwards a bucket inside an
        // incident, one that counts toward opening one, or one of a geo whose parent or child
        // is inside an incident must not become the new normal.
        let learn = if !warming_up && (s.tracker.is_open() || lineage_open || above) {
            Learn::Contaminated
        } else {
            Learn::Yes
        };
        if transition == Transition::Expired {
            s.baseline.reseed(value, &exp);
        } else {
            s.baseline.learn(start_ms, value, &exp, learn, &s.params);
        }
        let alert = s.tracker.is_open();
        sink.bucket(&BucketReport {
            service: names.0,
            geo: names.1,
            signal: names.2,
            start_ms,
            end_ms,
            observed: Some(value),
            expected: exp.expected,
            scale: exp.scale,
            zscore: sc.z,
            anomaly_score: sc.anomaly_score,
            alert,
            warming_up,
        });
        let key = s.key;
        match transition {
            Transition::Opened | Transition::Reopened => {
                if transition == Transition::Opened {
                    self.stats.incidents_opened += 1;
                }
                self.open_set.insert(slot);
                self.mark_ancestors(key, true);
            }
            Transition::Resolved | Transition::Expired => {
                self.stats.incidents_resolved += 1;
                self.open_set.remove(&slot);
                self.mark_ancestors(key, false);
            }
            Transition::Grew | Transition::None => {}
        }
        if transition != Transition::None || alert {
            self.pending.push(Pending {
                series: slot,
                transition,
                start_ms,
                end_ms,
                observed: value,
                expected: exp.expected,
                score: sc,
                kind: exp.kind,
            });
        }
    }

    fn mark_ancestors(&mut self, (svc, g, sig): SeriesKey, opened: bool) {
        for &anc in &self.geos.chain(g)[1..] {
            let key = (svc, anc, sig);
            if opened {
                *self.open_descendants.entry(key).or_insert(0) += 1;
            } else if let Some(n) = self.open_descendants.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.open_descendants.remove(&key);
                }
            }
        }
    }

    /// An incident is open on another geo of this series' lineage (same service and signal):
    /// a descendant (a city's outage inflates its country) or an ancestor (during a national
    /// outage a small city's counts are inflated too, even in the hours it looks quiet: if it
    /// learned then, the 07:00 resurgence would look normal).
    fn lineage_open(&self, slot: u32) -> bool {
        if self.open_set.is_empty() {
            return false;
        }
        let (svc, g, sig) = self.series[slot as usize]
            .as_ref()
            .expect("live series")
            .key;
        self.open_descendants.contains_key(&(svc, g, sig))
            || self.geos.chain(g)[1..].iter().any(|&anc| {
                self.index
                    .get(&(svc, anc, sig))
                    .and_then(|&a| self.series[a as usize].as_ref())
                    .is_some_and(|a| a.tracker.is_open())
            })
    }

    /// Emits incident events for this bucket, now that every series has closed it, so a
    /// rolled-up geo sees which child geos opened in the same bucket.
    fn emit_pending<S: EngineSink + ?Sized>(&mut self, sink: &mut S) {
        if self.pending.is_empty() {
            return;
        }
        // Child geos with an open incident, per ancestor series; services open per geo.
        let mut children: AHashMap<SeriesKey, Vec<GeoId>> = AHashMap::new();
        let mut services_by_geo: AHashMap<GeoId, Vec<u32>> = AHashMap::new();
        for &slot in &self.open_set {
            let (svc, g, sig) = self.series[slot as usize]
                .as_ref()
                .expect("open series")
                .key;
            for &anc in &self.geos.chain(g)[1..] {
                children.entry((svc, anc, sig)).or_default().push(g);
            }
            let list = services_by_geo.entry(g).or_default();
            if !list.contains(&svc) {
                list.push(svc);
            }
        }
        let hint = self.config.engine.concurrent_services_hint.max(2);
        let pending = std::mem::take(&mut self.pending);
        for p in &pending {
            let s = self.series[p.series as usize]
                .as_mut()
                .expect("pending series");
            let key = s.key;
            let mut kids = children.remove(&key).unwrap_or_default();
            kids.sort_by(|a, b| self.geos.name(*a).cmp(self.geos.name(*b)));
            let mut others: Vec<u32> = services_by_geo
                .get(&key.1)
                .filter(|l| l.len() >= hint)
                .map(|l| l.iter().copied().filter(|&x| x != key.0).collect())
                .unwrap_or_default();
            others.sort_by(|a, b| self.services.name(*a).cmp(self.services.name(*b)));
            let (state, inc) = match p.transition {
                Transition::Opened => (IncidentState::Opened, s.tracker.open_incident_mut()),
                Transition::Grew | Transition::Reopened | Transition::None => {
                    (IncidentState::Updated, s.tracker.open_incident_mut())
                }
                Transition::Resolved | Transition::Expired => {
                    (IncidentState::Resolved, s.tracker.last_resolved_mut())
                }
            };
            let Some(inc) = inc else { continue };
            let spread = kids.iter().any(|k| !inc.reported_children.contains(k))
                || others.iter().any(|o| !inc.reported_services.contains(o));
            if p.transition == Transition::None && !spread {
                continue;
            }
            inc.reported_children.clone_from(&kids);
            inc.reported_services.clone_from(&others);
            let seq = IncidentTracker::next_seq(inc);
            let inc = inc.clone();
            let t = &s.thresholds;
            let service = self.services.name(key.0);
            let geo = self.geos.name(key.1);
            let signal = self.signals.name(key.2);
            let ev = AnomalyEvent {
                schema_version: ANOMALY_SCHEMA_VERSION,
                incident_id: incident_id(service, geo, signal, inc.onset_ms),
                state,
                seq,
                service: service.to_string(),
                geo: geo.to_string(),
                signal: signal.to_string(),
                bucket_start: Timestamp(p.start_ms),
                bucket_end: Timestamp(p.end_ms),
                observed: p.observed,
                expected: p.expected,
                zscore: p.score.z,
                p_value: Some(p.score.p_value),
                severity: inc.severity,
                opened_at: Timestamp(inc.opened_at_ms),
                peak_at: Timestamp(inc.peak_at_ms),
                peak_zscore: inc.peak_z,
                peak_observed: inc.peak_observed,
                resolved_at: (state == IncidentState::Resolved)
                    .then_some(Timestamp(inc.last_active_end_ms)),
                reopened: inc.reopened,
                child_geos: kids
                    .iter()
                    .map(|&g| self.geos.name(g).to_string())
                    .collect(),
                concurrent_services: others
                    .iter()
                    .map(|&x| self.services.name(x).to_string())
                    .collect(),
                baseline: p.kind,
                thresholds: ThresholdsInForce {
                    open_z: t.open_z,
                    close_z: t.close_z,
                    open_k: t.open_k,
                    open_n: t.open_n,
                    close_m: t.close_m,
                    min_count: t.min_count,
                    direction: t.direction,
                    bucket_secs: t.bucket.0,
                },
            };
            self.stats.anomaly_events += 1;
            sink.anomaly(ev);
        }
        self.pending = pending;
        self.pending.clear();
    }
}

/// Checkpoints: export and import of what every series has learned (see [`state`]).
impl Engine {
    /// Event-time progress, saved alongside the series.
    pub fn clock(&self) -> ClockState {
        ClockState {
            watermark: self.watermark,
            newest_ts: self.newest_ts,
        }
    }

    /// Restores event-time progress; call before importing series.
    pub fn set_clock(&mut self, clock: ClockState) {
        self.watermark = clock.watermark;
        self.newest_ts = clock.newest_ts;
    }

    /// The state of every live series, in slot order (import in this order to continue
    /// exactly, including the order of events within a bucket).
    pub fn export_series(&self) -> Vec<SeriesState> {
        let mut ahead = self.overflow_by_slot();
        (0..self.series.len() as u32)
            .filter(|&slot| self.series[slot as usize].is_some())
            .map(|slot| self.series_state(slot, ahead.remove(&slot).unwrap_or_default()))
            .collect()
    }

    /// Overflow buckets per slot, oldest first.
    fn overflow_by_slot(&self) -> AHashMap<u32, Vec<(i64, f64)>> {
        let mut ahead: AHashMap<u32, Vec<(i64, f64)>> = AHashMap::new();
        for (&(slot, b), &v) in &self.overflow {
            ahead.entry(slot).or_default().push((b, v));
        }
        for a in ahead.values_mut() {
            a.sort_by_key(|&(b, _)| b);
        }
        ahead
    }

    fn series_state(&self, slot: u32, ahead: Vec<(i64, f64)>) -> SeriesState {
        let s = self.series[slot as usize].as_ref().expect("live series");
        let w = &self.windows[slot as usize];
        let (svc, g, sig) = s.key;
        SeriesState {
            service: self.services.name(svc).to_string(),
            geo: self.geos.name(g).to_string(),
            signal: self.signals.name(sig).to_string(),
            missing_is_gap: s.missing_is_gap,
            bucket_ms: w.width_ms as i64,
            lateness_ms: w.lateness_ms as i64,
            window: state::WindowState {
                next_close: w.next_close,
                first_data: w.first_data,
                last_event_ms: w.last_event_ms,
                open: (w.next_close..w.next_close + RING as i64)
                    .map(|b| w.ring[b.rem_euclid(RING as i64) as usize])
                    .collect(),
                ahead,
            },
            baseline: s.baseline.to_state(),
            tracker: s.tracker.to_state(|id| match id {
                incident::Id::Geo(g) => self.geos.name(g).to_string(),
                incident::Id::Service(x) => self.services.name(x).to_string(),
            }),
            calibration: s.calibration.to_state(),
            silent_expected: s.silent_expected,
        }
    }

    /// New series whose key the seed knows start from its baseline.
    pub fn set_seed(&mut self, seed: std::sync::Arc<BaselineSeed>) {
        self.seed = Some(seed);
    }

    /// Slot table, free list, clock and far-ahead detector (see [`EngineLayout`]).
    pub fn layout(&self) -> EngineLayout {
        EngineLayout {
            clock: self.clock(),
            slots: self.series.len() as u32,
            free: self.free.clone(),
            far_ahead: self.far_ahead.as_ref().map(|f| (f.first, f.count)),
        }
    }

    fn key_name(&self, (svc, g, sig): SeriesKey) -> String {
        state::series_key(
            self.services.name(svc),
            self.geos.name(g),
            self.signals.name(sig),
        )
    }

    /// Every series created or changed since the previous call (all of them on the first
    /// call), and the keys of series gone since: an incremental checkpoint. Replaying the
    /// deltas in order through [`Self::restore_layout`] rebuilds this engine exactly.
    pub fn take_changes(&mut self) -> StateDelta {
        let mut ahead = self.overflow_by_slot();
        self.exported.resize(self.series.len(), None);
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        for slot in 0..self.series.len() {
            let now = self.series[slot]
                .as_ref()
                .map(|s| (s.key, self.windows[slot]));
            let over = ahead.remove(&(slot as u32));
            match (now, self.exported[slot]) {
                (None, None) => {}
                (None, Some((old, _))) => removed.push(self.key_name(old)),
                (Some((key, w)), prev) => {
                    let same = prev.is_some_and(|(k, pw)| k == key && pw.same_as(&w));
                    if same && over.is_none() {
                        continue;
                    }
                    if let Some((old, _)) = prev.filter(|(k, _)| *k != key) {
                        removed.push(self.key_name(old));
                    }
                    let a = over.unwrap_or_default();
                    changed.push((slot as u32, self.series_state(slot as u32, a)));
                }
            }
            self.exported[slot] = now;
        }
        if !removed.is_empty() {
            // A series that moved to another slot is changed, not gone.
            let live: ahash::AHashSet<String> = changed.iter().map(|(_, s)| s.key()).collect();
            removed.retain(|k| !live.contains(k));
        }
        StateDelta {
            layout: self.layout(),
            changed,
            removed,
        }
    }

    /// Rebuilds a fresh engine from a layout and the series at their slots (the last
    /// checkpoint of a changelog). A series that cannot be imported is reported and left out
    /// (its slot becomes free); it starts afresh from new input. Afterwards
    /// [`Self::take_changes`] reports only what changes from here on.
    pub fn restore_layout(
        &mut self,
        layout: EngineLayout,
        mut series: Vec<(u32, SeriesState)>,
    ) -> RestoreReport {
        self.set_clock(layout.clock);
        self.far_ahead = layout.far_ahead.map(|(first, count)| FarAhead {
            first,
            count,
            services: Vec::new(),
        });
        let slots = layout
            .slots
            .max(series.iter().map(|(s, _)| s + 1).max().unwrap_or(0));
        while (self.series.len() as u32) < slots {
            self.alloc_slot();
        }
        series.sort_by_key(|(slot, _)| *slot);
        let mut report = RestoreReport::default();
        for (slot, st) in series {
            let key = st.key();
            match self.install_series(st, Some(slot)) {
                Ok(()) => report.restored += 1,
                Err(e) => report.skipped.push((Some(key), e)),
            }
        }
        let mut free: Vec<u32> = layout
            .free
            .into_iter()
            .filter(|&s| s < slots && self.series[s as usize].is_none())
            .collect();
        let listed: ahash::AHashSet<u32> = free.iter().copied().collect();
        let unlisted: Vec<u32> = (0..slots)
            .filter(|&s| self.series[s as usize].is_none() && !listed.contains(&s))
            .collect();
        // Slots of series that could not be restored are reused last.
        free.splice(0..0, unlisted);
        self.free = free;
        self.exported = (0..self.series.len())
            .map(|i| self.series[i].as_ref().map(|s| (s.key, self.windows[i])))
            .collect();
        report
    }

    /// Imports one series' state, replacing the series if it exists. Thresholds come from
    /// the current configuration; bucketing stays as the series was created.
    pub fn import_series(&mut self, st: SeriesState) -> Result<(), StateError> {
        self.install_series(st, None)
    }

    /// [`Self::import_series`] into a given (allocated, empty) slot, or any slot.
    fn install_series(&mut self, st: SeriesState, at: Option<u32>) -> Result<(), StateError> {
        let invalid = |m: String| StateError::Invalid(m);
        let (key, exact) = self
            .leaf_key(&st.service, &st.geo, &st.signal)
            .map_err(|e| invalid(e.to_string()))?;
        if !exact {
            return Err(invalid(format!(
                "geo {:?} does not fit under engine.max_geos",
                st.geo
            )));
        }
        let width = u32::try_from(st.bucket_ms)
            .ok()
            .filter(|&w| w > 0)
            .ok_or_else(|| invalid(format!("bucket width {} ms", st.bucket_ms)))?;
        let lateness = u32::try_from(st.lateness_ms)
            .ok()
            .filter(|&l| (l as u64) <= crate::config::MAX_LATENESS_BUCKETS * width as u64)
            .ok_or_else(|| invalid(format!("allowed lateness {} ms", st.lateness_ms)))?;
        let wst = &st.window;
        if wst.open.len() > 64 * RING || wst.ahead.len() > 1 << 16 {
            return Err(invalid("too many open buckets".into()));
        }
        let baseline = SeasonalBaseline::from_state(st.baseline)?;
        let calibration = TailCalibration::from_state(&st.calibration)
            .ok_or_else(|| invalid("calibration holds a non-finite or negative value".into()))?;
        if !(st.silent_expected.is_finite() && st.silent_expected >= 0.0) {
            return Err(invalid(format!("silent_expected {}", st.silent_expected)));
        }
        let mut interned_ok = true;
        let tracker = IncidentTracker::from_state(st.tracker, |n| match n {
            incident::Name::Geo(g) if event::validate_geo(g).is_ok() => self.geos.intern(g),
            incident::Name::Service(x) if event::validate_service(x).is_ok() => {
                self.services.insert(x)
            }
            _ => {
                interned_ok = false;
                0
            }
        });
        if !interned_ok {
            return Err(invalid("incident names an invalid geo or service".into()));
        }

        let slot = match (self.index.get(&key), at) {
            (Some(_), Some(_)) => return Err(invalid("the series appears twice".into())),
            (None, Some(slot)) => {
                if self.series.get(slot as usize).is_none_or(|s| s.is_some()) {
                    return Err(invalid(format!("slot {slot} is taken or out of range")));
                }
                if !self.has_room(key.0) {
                    return Err(invalid(
                        "engine.max_series or engine.max_series_per_service reached".into(),
                    ));
                }
                slot
            }
            (Some(&slot), None) => {
                self.drop_series(slot);
                slot
            }
            (None, None) if !self.has_room(key.0) => {
                return Err(invalid(
                    "engine.max_series or engine.max_series_per_service reached".into(),
                ))
            }
            (None, None) => self.alloc_slot(),
        };
        let (svc, g, sig) = key;
        let mut thresholds = self.config.resolve(
            self.services.name(svc),
            self.geos.name(g),
            self.signals.name(sig),
        );
        thresholds.bucket = Secs(width as u64 / 1000);
        thresholds.allowed_lateness = Secs(lateness as u64 / 1000);
        let fill = if st.missing_is_gap { f64::NAN } else { 0.0 };
        let mut window = Window {
            ring: [fill; RING],
            next_close: wst.next_close,
            first_data: wst.first_data,
            last_event_ms: wst.last_event_ms,
            width_ms: width,
            lateness_ms: lateness,
        };
        for (i, &v) in wst.open.iter().enumerate() {
            let b = wst.next_close + i as i64;
            if i < RING {
                window.ring[b.rem_euclid(RING as i64) as usize] = v;
            } else {
                self.overflow.insert((slot, b), v);
            }
        }
        for &(b, v) in &wst.ahead {
            self.overflow.insert((slot, b), v);
        }
        let open = tracker.is_open();
        let mut params = BaselineParams::new(&thresholds);
        params.bucket_ms = width as i64;
        self.windows[slot as usize] = window;
        self.series[slot as usize] = Some(Series {
            key,
            thresholds,
            params,
            baseline,
            tracker,
            calibration,
            silent_expected: st.silent_expected,
            missing_is_gap: st.missing_is_gap,
        });
        self.index.insert(key, slot);
        if !self.routes.is_empty() {
            self.routes.clear();
        }
        self.count_series(key.0, true);
        self.next_due = self.next_due.min(window.due_ms());
        if open {
            self.open_set.insert(slot);
            self.mark_ancestors(key, true);
        }
        Ok(())
    }

    /// Serializes the clock and every series into one byte buffer (a state file).
    ///
    /// Layout: [`state::FILE_MAGIC`], then a sequence of `[u32 LE length][record]`; the first
    /// record is the clock, every
    /// other one a series, each with its own header and checksum so that one damaged series
    /// costs only that series.
    pub fn save_state(&self) -> Vec<u8> {
        let mut out = state::FILE_MAGIC.to_vec();
        let mut push = |rec: Vec<u8>| {
            out.extend_from_slice(&(rec.len() as u32).to_le_bytes());
            out.extend_from_slice(&rec);
        };
        push(state::encode(&self.clock()));
        for s in self.export_series() {
            push(state::encode(&s));
        }
        out
    }

    /// Loads a state file written by [`Self::save_state`] into this (fresh) engine. A damaged
    /// clock record fails the whole restore; a damaged series record is skipped and reported,
    /// and that series starts afresh from new input.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<RestoreReport, StateError> {
        let (clock, records) = Records::of_state_file(bytes)?;
        self.set_clock(clock);
        let mut report = RestoreReport::default();
        for rec in records {
            let result = rec.and_then(state::decode::<SeriesState>);
            match result {
                Ok(st) => {
                    let key = st.key();
                    match self.import_series(st) {
                        Ok(()) => report.restored += 1,
                        Err(e) => report.skipped.push((Some(key), e)),
                    }
                }
                Err(e) => {
                    let stop = matches!(e, StateError::Truncated { .. });
                    report.skipped.push((None, e));
                    if stop {
                        break;
                    }
                }
            }
        }
        Ok(report)
    }

    fn alloc_slot(&mut self) -> u32 {
        match self.free.pop() {
            Some(s) => s,
            None => {
                self.windows.push(Window {
                    ring: [0.0; RING],
                    next_close: 0,
                    first_data: i64::MAX,
                    last_event_ms: 0,
                    width_ms: 1,
                    lateness_ms: 0,
                });
                self.series.push(None);
                (self.series.len() - 1) as u32
            }
        }
    }

    /// Forgets a live series entirely (its slot is then free or reused by the caller). Routes
    /// may still point at the slot: the caller clears them, once for all series it drops.
    fn drop_series(&mut self, slot: u32) {
        let s = self.series[slot as usize].take().expect("live series");
        if s.tracker.is_open() {
            self.open_set.remove(&slot);
            self.mark_ancestors(s.key, false);
        }
        self.index.remove(&s.key);
        self.overflow.retain(|(x, _), _| *x != slot);
        self.count_series(s.key.0, false);
    }
}

/// Length-prefixed records of a state file.
struct Records<'a> {
    bytes: &'a [u8],
}

impl<'a> Records<'a> {
    /// The clock record of a state file, and its series records after it.
    fn of_state_file(bytes: &'a [u8]) -> Result<(ClockState, Self), StateError> {
        let Some(bytes) = bytes.strip_prefix(&state::FILE_MAGIC) else {
            return Err(StateError::BadMagic);
        };
        let mut records = Records { bytes };
        match records.next() {
            Some(rec) => Ok((state::decode::<ClockState>(rec?)?, records)),
            None => Err(StateError::Truncated { len: bytes.len() }),
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<&'a [u8], StateError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.bytes.is_empty() {
            return None;
        }
        let total = self.bytes.len();
        let Some(len) = self.bytes.get(..4) else {
            self.bytes = &[];
            return Some(Err(StateError::Truncated { len: total }));
        };
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        match self.bytes.get(4..4 + len) {
            Some(rec) => {
                self.bytes = &self.bytes[4 + len..];
                Some(Ok(rec))
            }
            None => {
                self.bytes = &[];
                Some(Err(StateError::Truncated { len: total }))
            }
        }
    }
}

/// Deterministic incident id: the series and the start of its first anomalous bucket.
pub fn incident_id(service: &str, geo: &str, signal: &str, onset_ms: i64) -> String {
    format!("{service}/{geo}/{signal}/{}", Timestamp(onset_ms))
}

#[cfg(test)]
mod tests;
