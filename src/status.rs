//! What the operator-facing views show: incidents (open first, then recently resolved) and a
//! short history of observed vs expected for the series worth looking at. Pure data, fed from
//! the engine's sink by whichever driver runs it; the HTTP layer only reads it.
//!
//! Memory is bounded: history is kept only for roll-up geos (countries, groups, `*`: few) and
//! for series that have had an incident, at most [`BoardLimits::max_series`] of them, each a
//! ring of [`BoardLimits::history_buckets`] buckets.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;

use ahash::AHashMap;
use serde::Serialize;

use crate::engine::BucketReport;
use crate::event::{AnomalyEvent, IncidentState, OutageEvent, Timestamp};

#[derive(Debug, Clone, Copy)]
pub struct BoardLimits {
    /// Buckets of history per series (360 one-minute buckets: the last six hours).
    pub history_buckets: usize,
    /// Series with history at most; beyond it new roll-up series get none (incident series
    /// always do, displacing the roll-up series seen longest ago).
    pub max_series: usize,
    /// Resolved incidents kept for display.
    pub resolved_kept: usize,
}

impl Default for BoardLimits {
    fn default() -> Self {
        Self {
            history_buckets: 360,
            max_series: 2_000,
            resolved_kept: 200,
        }
    }
}

/// One bucket as the charts need it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BucketPoint {
    pub start: Timestamp,
    /// `None`: missing data.
    pub observed: Option<f64>,
    pub expected: f64,
    /// Expected ± this is the normal band (open_z scales).
    pub scale: f64,
    pub zscore: f64,
    pub alert: bool,
}

/// History of one series.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesView {
    pub service: String,
    pub geo: String,
    pub signal: String,
    pub buckets: Vec<BucketPoint>,
}

/// An incident as the status page shows it: its latest event plus what it went through.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentView {
    pub incident_id: String,
    pub open: bool,
    pub events: u64,
    /// The newest anomaly event of this incident.
    pub latest: AnomalyEvent,
    /// How many times the observed value exceeded the expected at the peak.
    pub peak_ratio: Option<f64>,
}

/// An outage as the status page shows it: its latest event.
#[derive(Debug, Clone, Serialize)]
pub struct OutageView {
    pub outage_id: String,
    pub open: bool,
    pub events: u64,
    /// The newest outage event.
    pub latest: OutageEvent,
}

/// The per-series incidents behind the outages.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SeriesIncidentsView {
    pub open: Vec<IncidentView>,
    pub resolved: Vec<IncidentView>,
}

/// Everything the views read (`/api/incidents`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct IncidentsView {
    /// Open outages, most severe and then most recently opened first.
    pub open: Vec<OutageView>,
    /// Resolved outages, most recently resolved first.
    pub resolved: Vec<OutageView>,
    pub series: SeriesIncidentsView,
}

#[derive(Debug)]
struct History {
    service: String,
    geo: String,
    signal: String,
    points: VecDeque<BucketPoint>,
    /// Last bucket start seen, to evict the stalest roll-up series first.
    last_ms: i64,
    incident: bool,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct StatusBoard {
    limits: BoardLimits,
    open: BTreeMap<String, IncidentView>,
    resolved: VecDeque<IncidentView>,
    open_outages: BTreeMap<String, OutageView>,
    resolved_outages: VecDeque<OutageView>,
    /// By `service/geo/signal` (`/` appears in none of the names).
    history: AHashMap<String, History>,
    scratch: String,
}

/// A board is fed straight from the engine: every bucket report and anomaly event.
impl crate::engine::EngineSink for StatusBoard {
    fn bucket(&mut self, r: &BucketReport<'_>) {
        self.record_bucket(r);
    }
    fn anomaly(&mut self, event: AnomalyEvent) {
        self.record_anomaly(&event);
    }
    fn outage(&mut self, event: OutageEvent) {
        self.record_outage(&event);
    }
}

/// A geo with no `-` is a country, a configured group or `*`: a roll-up worth charting.
fn is_rollup(geo: &str) -> bool {
    !geo.contains('-')
}

impl StatusBoard {
    pub fn new(limits: BoardLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Feeds one closed bucket (from [`crate::engine::EngineSink::bucket`]).
    pub fn record_bucket(&mut self, r: &BucketReport<'_>) {
        let point = BucketPoint {
            start: Timestamp(r.start_ms),
            observed: r.observed,
            expected: r.expected,
            scale: r.scale,
            zscore: r.zscore,
            alert: r.alert,
        };
        // Most buckets belong to series that are not charted: look up without allocating.
        self.scratch.clear();
        let _ = write!(self.scratch, "{}/{}/{}", r.service, r.geo, r.signal);
        if let Some(h) = self.history.get_mut(self.scratch.as_str()) {
            h.last_ms = r.start_ms;
            h.points.push_back(point);
            while h.points.len() > self.limits.history_buckets {
                h.points.pop_front();
            }
            return;
        }
        if is_rollup(r.geo) && self.make_room(false) {
            let mut points = VecDeque::with_capacity(self.limits.history_buckets.min(64));
            points.push_back(point);
            self.history.insert(
                self.scratch.clone(),
                History {
                    service: r.service.into(),
                    geo: r.geo.into(),
                    signal: r.signal.into(),
                    points,
                    last_ms: r.start_ms,
                    incident: false,
                },
            );
        }
    }

    /// Frees a history slot if the board is full. Incident series may displace roll-ups.
    fn make_room(&mut self, for_incident: bool) -> bool {
        if self.history.len() < self.limits.max_series {
            return true;
        }
        if !for_incident {
            return false;
        }
        let stalest = self
            .history
            .iter()
            .filter(|(_, h)| !h.incident)
            .min_by_key(|(_, h)| h.last_ms)
            .map(|(k, _)| k.clone());
        match stalest {
            Some(k) => {
                self.history.remove(&k);
                true
            }
            None => false,
        }
    }

    /// Feeds one anomaly event (from [`crate::engine::EngineSink::anomaly`]).
    pub fn record_anomaly(&mut self, e: &AnomalyEvent) {
        let key = crate::engine::state::series_key(&e.service, &e.geo, &e.signal);
        if !self.history.contains_key(&key) && self.make_room(true) {
            self.history.insert(
                key.clone(),
                History {
                    service: e.service.clone(),
                    geo: e.geo.clone(),
                    signal: e.signal.clone(),
                    points: VecDeque::new(),
                    last_ms: e.bucket_start.millis(),
                    incident: true,
                },
            );
        }
        if let Some(h) = self.history.get_mut(&key) {
            h.incident = true;
        }
        let peak_ratio =
            (e.expected > 0.0 && e.bucket_start == e.peak_at).then(|| e.peak_observed / e.expected);
        let mut view = match self.open.remove(&e.incident_id) {
            Some(mut v) => {
                v.events += 1;
                if peak_ratio.is_some() {
                    v.peak_ratio = peak_ratio;
                }
                v.latest = e.clone();
                v
            }
            None => IncidentView {
                incident_id: e.incident_id.clone(),
                open: true,
                events: 1,
                latest: e.clone(),
                peak_ratio,
            },
        };
        if e.state == IncidentState::Resolved {
            view.open = false;
            self.resolved.push_front(view);
            self.resolved.truncate(self.limits.resolved_kept);
        } else {
            // A re-opened incident leaves the resolved list.
            self.resolved.retain(|r| r.incident_id != e.incident_id);
            self.open.insert(e.incident_id.clone(), view);
        }
    }

    /// Feeds one outage event (from [`crate::engine::EngineSink::outage`]).
    pub fn record_outage(&mut self, e: &OutageEvent) {
        let mut view = match self.open_outages.remove(&e.outage_id) {
            Some(mut v) => {
                v.events += 1;
                v.latest = e.clone();
                v
            }
            None => OutageView {
                outage_id: e.outage_id.clone(),
                open: true,
                events: 1,
                latest: e.clone(),
            },
        };
        // A re-opened outage leaves the resolved list.
        self.resolved_outages.retain(|r| r.outage_id != e.outage_id);
        if e.state == IncidentState::Resolved {
            view.open = false;
            self.resolved_outages.push_front(view);
            self.resolved_outages.truncate(self.limits.resolved_kept);
        } else {
            self.open_outages.insert(e.outage_id.clone(), view);
        }
    }

    /// Open outages, most severe and then most recently opened first; then resolved ones,
    /// most recently resolved first; and the same for the series incidents behind them.
    pub fn incidents(&self) -> IncidentsView {
        let mut open: Vec<OutageView> = self.open_outages.values().cloned().collect();
        open.sort_by(|a, b| {
            b.latest
                .severity
                .cmp(&a.latest.severity)
                .then(b.latest.opened_at.cmp(&a.latest.opened_at))
                .then(a.outage_id.cmp(&b.outage_id))
        });
        let mut series: Vec<IncidentView> = self.open.values().cloned().collect();
        series.sort_by(|a, b| {
            b.latest
                .severity
                .cmp(&a.latest.severity)
                .then(b.latest.opened_at.cmp(&a.latest.opened_at))
                .then(a.incident_id.cmp(&b.incident_id))
        });
        IncidentsView {
            open,
            resolved: self.resolved_outages.iter().cloned().collect(),
            series: SeriesIncidentsView {
                open: series,
                resolved: self.resolved.iter().cloned().collect(),
            },
        }
    }

    /// The open incident of one series, if any.
    pub fn open_series_incident(
        &self,
        service: &str,
        geo: &str,
        signal: &str,
    ) -> Option<&IncidentView> {
        self.open.values().find(|i| {
            i.latest.service == service && i.latest.geo == geo && i.latest.signal == signal
        })
    }

    /// Recent buckets of one series, if it is charted.
    pub fn series(&self, service: &str, geo: &str, signal: &str) -> Option<SeriesView> {
        let key = crate::engine::state::series_key(service, geo, signal);
        self.history.get(&key).map(|h| SeriesView {
            service: h.service.clone(),
            geo: h.geo.clone(),
            signal: h.signal.clone(),
            buckets: h.points.iter().copied().collect(),
        })
    }

    /// Number of series with history.
    pub fn charted_series(&self) -> usize {
        self.history.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::Engine;
    use crate::sim::{self, Scenario};

    fn report<'a>(geo: &'a str, start_ms: i64) -> BucketReport<'a> {
        BucketReport {
            service: "telegram",
            geo,
            signal: "complaints",
            start_ms,
            end_ms: start_ms + 60_000,
            observed: Some(3.0),
            expected: 2.0,
            scale: 1.0,
            zscore: 1.0,
            anomaly_score: 0.1,
            alert: false,
            warming_up: false,
        }
    }

    #[test]
    fn charts_rollups_always_and_cities_only_after_an_incident() {
        let mut b = StatusBoard::new(BoardLimits {
            history_buckets: 3,
            max_series: 10,
            resolved_kept: 5,
        });
        for i in 0..5 {
            b.record_bucket(&report("IT", i * 60_000));
            b.record_bucket(&report("IT-RM", i * 60_000));
        }
        let it = b.series("telegram", "IT", "complaints").unwrap();
        assert_eq!(it.buckets.len(), 3, "a ring of the last buckets");
        assert_eq!(it.buckets[0].start, Timestamp(2 * 60_000));
        assert!(b.series("telegram", "IT-RM", "complaints").is_none());
    }

    #[test]
    fn incidents_move_from_open_to_resolved_and_series_get_charted() {
        // Telegram's 3-hour outage on day 16 of the demo.
        let s = Scenario {
            days: 17,
            ..Scenario::demo()
        };
        let mut engine = Engine::new(Config::default());
        let mut events: Vec<AnomalyEvent> = Vec::new();
        sim::drive(&s, &mut engine, &mut events);
        let mut board = StatusBoard::default();
        let outage_end = s.outages[0].end_ms();
        let mut saw_open = false;
        for e in &events {
            board.record_anomaly(e);
            if e.bucket_end.millis() < outage_end && e.geo == "*" {
                saw_open |= board
                    .incidents()
                    .series
                    .open
                    .iter()
                    .any(|i| i.latest.geo == "*");
            }
        }
        assert!(saw_open, "the outage was shown as open while it lasted");
        let view = board.incidents().series;
        assert!(
            view.open.is_empty(),
            "all resolved at the end: {:?}",
            view.open
        );
        assert!(view.resolved.iter().any(|i| i.latest.geo == "IT-RM"));
        assert!(view.resolved.iter().all(|i| !i.open));
        // Every incident series is charted (its buckets arrive from then on).
        assert!(board.series("telegram", "IT-RM", "complaints").is_some());
    }

    #[test]
    fn incident_series_displace_the_stalest_rollups_when_full() {
        let mut b = StatusBoard::new(BoardLimits {
            history_buckets: 10,
            max_series: 2,
            resolved_kept: 5,
        });
        b.record_bucket(&report("IT", 0));
        b.record_bucket(&report("DE", 60_000));
        b.record_bucket(&report("FR", 120_000));
        assert_eq!(b.charted_series(), 2, "no room for FR");
        let s = Scenario {
            days: 17,
            ..Scenario::demo()
        };
        let mut engine = Engine::new(Config::default());
        let mut events: Vec<AnomalyEvent> = Vec::new();
        sim::drive(&s, &mut engine, &mut events);
        let e = events.iter().find(|e| e.geo == "IT-RM").unwrap();
        b.record_anomaly(e);
        assert_eq!(b.charted_series(), 2);
        assert!(
            b.series("telegram", "IT", "complaints").is_none(),
            "stalest went"
        );
        assert!(b.series(&e.service, "IT-RM", &e.signal).is_some());
    }
}
