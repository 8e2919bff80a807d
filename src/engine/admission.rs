//! Where data enters: validating an observation's time and names, routing it to the series
//! of its geo chain (creating them under the caps) and adding it to their open buckets.

use super::baseline::{BaselineParams, SeasonalBaseline};
use super::calibration::TailCalibration;
use super::geo::{self, GeoId};
use super::incident::IncidentTracker;
use super::state;
use super::{
    Engine, FarAhead, Ingest, Observation, ObserveError, Route, Series, SeriesKey, Window,
    FUTURE_JUMP_CONFIRMATIONS, MAX_BUCKET_VALUE, MAX_SIGNALS, RING,
};
use crate::event::{self, DecodeError, InputEvent, Timestamp};

impl Engine {
    /// Feeds a decoded input event (a complaint's category counts toward its outage).
    pub fn observe_event(&mut self, ev: &InputEvent<'_>) -> Result<Ingest, ObserveError> {
        let r = self.observe(Observation {
            service: ev.service(),
            geo: ev.geo(),
            signal: ev.signal(),
            ts_ms: ev.ts().millis(),
            amount: ev.amount(),
        })?;
        if let InputEvent::Complaint(c) = ev {
            if let Some(cat) = &c.category {
                self.note_category(&c.service, cat, c.count, c.ts.millis());
            }
        }
        Ok(r)
    }

    /// Counts a complaint category toward the outage of an existing service (the top
    /// categories of an outage event). Unknown services are ignored, so junk input cannot
    /// grow this.
    pub(crate) fn note_category(&mut self, service: &str, category: &str, amount: f64, ts_ms: i64) {
        if self.services.get(service).is_some() {
            self.outages.note_category(service, category, amount, ts_ms);
        }
    }

    /// Bounds event time by the wall clock: events more than `engine.max_future_skew` after
    /// `now_ms` are rejected ([`ObserveError::AheadOfWallClock`]) and never count toward a
    /// far-ahead jump, so no producer can move the clock past what is real. The engine has no
    /// clock of its own: drivers that read live input (the Kafka pipeline, replay) pass it in;
    /// `None` (the default) leaves event time unbounded except by 2000–2100.
    pub(crate) fn set_wall_clock(&mut self, now_ms: Option<i64>) {
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
        if !event::is_accepted_time(ts_ms) {
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
    pub(super) fn leaf_key(
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
    pub(super) fn has_room(&self, svc: u32) -> bool {
        let caps = &self.config.engine;
        self.live < caps.max_series
            && (self.per_service.get(svc as usize).copied().unwrap_or(0) as usize)
                < caps.max_series_per_service
    }

    pub(super) fn count_series(&mut self, svc: u32, created: bool) {
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
}
