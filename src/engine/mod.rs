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
//!
//! # Map
//!
//! This file holds the types ([`Engine`] and its per-series `Window` / `Series` slots, the
//! inputs [`Observation`] and outputs [`BucketReport`] / [`EngineSink`], [`EngineStats`]),
//! [`Engine::new`], small accessors and the slot table. `impl Engine` continues by concern:
//!
//! - **What it reads**: [`settings`] ([`EngineConfig`]: caps, geo hierarchy, threshold layers
//!   resolved per series into [`Thresholds`]). The application's `Config` converts into it; the
//!   engine imports nothing but [`crate::domain`] and [`crate::event`] from the rest of the
//!   crate.
//! - **Where data enters**: `admission.rs` ([`Engine::observe`], [`Engine::observe_event`],
//!   [`Engine::set_bucket_value`]): amount and time checks (the far-ahead quorum), interning of
//!   names under the caps, the route of a leaf key to the series of its geo chain, creation of
//!   series, and adding to open buckets.
//! - **Where it is decided**: `close.rs` ([`Engine::advance`], [`Engine::finish`]): closing due
//!   buckets, scoring each against its baseline ([`baseline`], [`calibration`], [`score`]),
//!   feeding the incident state machine ([`incident`]), what a bucket teaches, idle expiry.
//! - **Where it leaves**: `emit.rs`: after every series closed a bucket, incident events go to
//!   the [`EngineSink`] with their child geos and concurrent services, and the [`outage`]
//!   tracker groups a service's incidents into outage events.
//! - **What survives a restart**: `snapshot.rs` ([`Engine::save_state`],
//!   [`Engine::take_changes`], [`Engine::restore_layout`], [`BaselineSeed`]), in the record
//!   formats of [`state`].
//! - Support: `intern.rs` (names as ids), [`geo`] (the geo hierarchy), `routes.rs` (the route
//!   cache).

mod admission;
pub mod baseline;
pub mod calibration;
mod close;
mod emit;
pub mod geo;
pub mod incident;
mod intern;
pub mod outage;
mod routes;
pub mod score;
pub mod settings;
mod snapshot;
pub mod state;

use std::collections::BTreeSet;

use ahash::AHashMap;

pub use baseline::{BaselineParams, Expectation, Learn, SeasonalBaseline};
pub use calibration::{TailCalibration, TailMap};
pub use geo::{GeoId, GeoTable};
pub use incident::{BucketVerdict, Incident, IncidentTracker, Transition};
use intern::Interner;
pub use outage::{OutageState, OutageTracker};
pub use score::Score;
pub use settings::{EngineConfig, EngineSettings, GeoSettings, Overrides, Thresholds};
pub use snapshot::BaselineSeed;
pub use state::{ClockState, EngineLayout, RestoreReport, SeriesState, StateDelta, StateError};

use crate::domain::Secs;
use crate::event::{self, AnomalyEvent, DecodeError, OutageEvent, Timestamp};

/// One input to the engine: `amount` is added to the bucket of `ts_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation<'a> {
    pub service: &'a str,
    pub geo: &'a str,
    pub signal: &'a str,
    pub ts_ms: i64,
    pub amount: f64,
}

/// The conversion lives here, not in `event`: the engine depends on the wire types, not the
/// other way round.
impl event::EventCore<'_> {
    /// What the engine observes: the same as [`Engine::observe_event`] of the whole event.
    pub fn observation(&self) -> Observation<'_> {
        Observation {
            service: &self.service,
            geo: &self.geo,
            signal: self.signal(),
            ts_ms: self.ts.millis(),
            amount: self.amount,
        }
    }
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
    /// Beyond the wall clock the driver passed in (`Engine::set_wall_clock`) plus
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
    /// Outages (per service, grouping its series incidents) opened, and their events.
    pub outages_opened: u64,
    pub outage_events: u64,
    /// Outage events that resolved their outage (among `outage_events`).
    pub outages_resolved: u64,
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
    /// A per-series incident event (schema version 1).
    fn anomaly(&mut self, event: AnomalyEvent);
    /// An outage event (schema version 2): one outage of a service over all its series.
    fn outage(&mut self, _event: OutageEvent) {}
}

impl EngineSink for Vec<AnomalyEvent> {
    fn anomaly(&mut self, event: AnomalyEvent) {
        self.push(event);
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
pub(crate) const FUTURE_JUMP_CONFIRMATIONS: u32 = 32;

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
pub(crate) const MAX_BUCKET_VALUE: f64 = 1e15;

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
    config: EngineConfig,
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
    outages: OutageTracker,
    stats: EngineStats,
    /// Per slot: the series and window as of the last [`Engine::take_changes`] (empty until
    /// the first call). A series' cold state only changes when its window does (a bucket
    /// closes), so comparing windows finds every changed series.
    exported: Vec<Option<(SeriesKey, Window)>>,
    /// Baselines learned from history that new series start from (see [`BaselineSeed`]).
    seed: Option<std::sync::Arc<BaselineSeed>>,
}

impl Engine {
    /// An engine with these settings: an [`EngineConfig`], or the application's `Config`
    /// (which converts into one).
    pub fn new(config: impl Into<EngineConfig>) -> Self {
        let config = config.into();
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
            outages: OutageTracker::default(),
            stats: EngineStats::default(),
            exported: Vec::new(),
            seed: None,
        }
    }

    pub fn config(&self) -> &EngineConfig {
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
        slots + incidents + index + routes + self.geos.heap_bytes() + self.outages.heap_bytes()
    }

    /// Applies a new configuration without losing state: thresholds of every live series are
    /// re-resolved and apply from the next bucket. A series keeps its bucket width and
    /// lateness (changing them would re-cut history); new series get the new ones.
    pub(crate) fn reconfigure(&mut self, config: impl Into<EngineConfig>) {
        let config = config.into();
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

/// Deterministic incident id: the series and the start of its first anomalous bucket.
pub(crate) fn incident_id(service: &str, geo: &str, signal: &str, onset_ms: i64) -> String {
    format!("{service}/{geo}/{signal}/{}", Timestamp(onset_ms))
}

#[cfg(test)]
mod tests;
