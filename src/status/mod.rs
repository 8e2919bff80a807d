//! What the operator-facing views show: incidents (open first, then recently resolved) and a
//! short history of observed vs expected for the series worth looking at. Pure data, fed from
//! the engine's sink by whichever driver runs it; the HTTP layer only reads it.
//!
//! Memory is bounded: history is kept only for roll-up geos (countries, groups, `*`: few) and
//! for series that have had an incident, at most `BoardLimits::max_series` of them, each a
//! ring of `BoardLimits::history_buckets` buckets.
//!
//! The unit tests are in `tests` (`status/tests.rs`).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;

use ahash::AHashMap;
use serde::Serialize;

use crate::engine::{BucketReport, OutageState, SeriesState};
use crate::event::{AnomalyEvent, IncidentState, OutageEvent, Severity, Timestamp};

/// Input is stale (the page says "no data since …", never "all systems normal") once none
/// arrived for this many of the widest buckets seen.
pub(crate) const STALE_AFTER_BUCKETS: i64 = 5;

#[derive(Debug, Clone, Copy)]
pub(crate) struct BoardLimits {
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
pub(crate) struct BucketPoint {
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
pub(crate) struct SeriesView {
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

/// An open outage an engine restored from the changelog (at a start or a rebalance) whose
/// events went out before the restart: the board knows it only from the restored state until
/// its next event replaces it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoredOutage {
    pub outage_id: String,
    pub service: String,
    pub opened_at: Timestamp,
    pub severity: Severity,
    pub countries: Vec<String>,
    pub signals: Vec<String>,
    pub peak_zscore: f64,
    pub peak_at: Timestamp,
    pub peak_geo: String,
}

/// An open series incident restored from the changelog (see [`RestoredOutage`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoredIncident {
    pub incident_id: String,
    pub service: String,
    pub geo: String,
    pub signal: String,
    pub opened_at: Timestamp,
    pub severity: Severity,
    pub peak_zscore: f64,
}

/// Whether input is arriving, for a board fed by a live pipeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputView {
    /// Wall-clock time the last input message arrived; `None`: none since `watching_since`.
    pub last_input: Option<Timestamp>,
    pub watching_since: Timestamp,
    /// No input for `STALE_AFTER_BUCKETS` buckets: what the board shows may be out of date.
    pub stale: bool,
}

/// Everything the views read (`/api/incidents`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct IncidentsView {
    /// Open outages, most severe and then most recently opened first.
    pub open: Vec<OutageView>,
    /// Resolved outages, most recently resolved first.
    pub resolved: Vec<OutageView>,
    pub series: SeriesIncidentsView,
    /// Open outages restored from the changelog and not yet updated by an event, most severe
    /// first. They are open as much as those in `open`.
    pub restored: Vec<RestoredOutage>,
    /// Open series incidents restored from the changelog and not yet updated by an event.
    pub restored_series: Vec<RestoredIncident>,
    /// Input freshness (`spikewatch run` only; absent for replay and the demo).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<InputView>,
}

impl IncidentsView {
    /// Open outages, live and restored.
    pub(crate) fn open_outages(&self) -> usize {
        self.open.len() + self.restored.len()
    }
}

/// When input was last seen, for a board fed by a live pipeline (wall-clock milliseconds).
#[derive(Debug, Clone, Copy)]
struct InputClock {
    since_ms: i64,
    last_ms: Option<i64>,
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
    restored_outages: BTreeMap<String, RestoredOutage>,
    restored_incidents: BTreeMap<String, RestoredIncident>,
    input: Option<InputClock>,
    /// Widest bucket seen (ms), the unit of staleness.
    bucket_ms: i64,
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

/// The open outages and series incidents in a restored state, as the status board shows
/// them until their next event. Their events went out before the restart, so without this a
/// page restarted mid-outage said "All systems normal" while the engine held them open.
pub fn restored_open<'a>(
    outages: &[OutageState],
    series: impl IntoIterator<Item = &'a SeriesState>,
) -> (Vec<RestoredOutage>, Vec<RestoredIncident>) {
    let outages = outages
        .iter()
        .filter(|o| o.open)
        .map(|o| RestoredOutage {
            outage_id: crate::event::outage_id(&o.service, o.onset_ms),
            service: o.service.clone(),
            opened_at: Timestamp(o.onset_ms),
            severity: o.severity,
            countries: o.countries.clone(),
            signals: o.signals.clone(),
            peak_zscore: o.peak_z,
            peak_at: Timestamp(o.peak_at_ms),
            peak_geo: o.peak_geo.clone(),
        })
        .collect();
    let incidents = series
        .into_iter()
        .filter_map(|st| {
            let i = st.tracker.open.as_ref()?;
            Some(RestoredIncident {
                incident_id: crate::engine::incident_id(
                    &st.service,
                    &st.geo,
                    &st.signal,
                    i.onset_ms,
                ),
                service: st.service.clone(),
                geo: st.geo.clone(),
                signal: st.signal.clone(),
                opened_at: Timestamp(i.opened_at_ms),
                severity: i.severity,
                peak_zscore: i.peak_z,
            })
        })
        .collect();
    (outages, incidents)
}

/// Wall-clock milliseconds since the epoch.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A geo with no `-` is a country, a configured group or `*`: a roll-up worth charting.
fn is_rollup(geo: &str) -> bool {
    !geo.contains('-')
}

impl StatusBoard {
    #[cfg(test)]
    /// Number of series with history.
    pub(crate) fn charted_series(&self) -> usize {
        self.history.len()
    }

    #[cfg(test)]
    pub(crate) fn new(limits: BoardLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Feeds one closed bucket (from [`crate::engine::EngineSink::bucket`]).
    pub(crate) fn record_bucket(&mut self, r: &BucketReport<'_>) {
        let point = BucketPoint {
            start: Timestamp(r.start_ms),
            observed: r.observed,
            expected: r.expected,
            scale: r.scale,
            zscore: r.zscore,
            alert: r.alert,
        };
        self.bucket_ms = self.bucket_ms.max(r.end_ms - r.start_ms);
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
    pub(crate) fn record_anomaly(&mut self, e: &AnomalyEvent) {
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
        // Its events from now on tell more than the restored state.
        self.restored_incidents.remove(&e.incident_id);
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
        self.restored_outages.remove(&e.outage_id);
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

    /// Open outages and series incidents an engine restored from the changelog: shown as open
    /// until their next event (or until their services move to another instance). One the
    /// board already shows from a live event is left as it is.
    pub fn record_restored(
        &mut self,
        outages: impl IntoIterator<Item = RestoredOutage>,
        incidents: impl IntoIterator<Item = RestoredIncident>,
    ) {
        for o in outages {
            if !self.open_outages.contains_key(&o.outage_id) {
                self.restored_outages.insert(o.outage_id.clone(), o);
            }
        }
        for i in incidents {
            if !self.open.contains_key(&i.incident_id) {
                self.restored_incidents.insert(i.incident_id.clone(), i);
            }
        }
    }

    /// Forgets what the board shows of `services`: their open outages and incidents (live and
    /// restored) and their charts. Called when the partition holding them is revoked: its
    /// new owner reports them from now on, and nothing here would ever resolve them. Resolved
    /// ones stay: they are history, and true.
    pub fn forget_services<'a>(&mut self, services: impl IntoIterator<Item = &'a str>) {
        let gone: ahash::AHashSet<&str> = services.into_iter().collect();
        if gone.is_empty() {
            return;
        }
        self.open_outages
            .retain(|_, o| !gone.contains(o.latest.service.as_str()));
        self.open
            .retain(|_, i| !gone.contains(i.latest.service.as_str()));
        self.restored_outages
            .retain(|_, o| !gone.contains(o.service.as_str()));
        self.restored_incidents
            .retain(|_, i| !gone.contains(i.service.as_str()));
        self.history
            .retain(|_, h| !gone.contains(h.service.as_str()));
    }

    /// From now on the board expects input (a live pipeline): without any for
    /// `STALE_AFTER_BUCKETS` buckets it is stale. `now_ms`: wall clock.
    pub fn watch_input(&mut self, now_ms: i64) {
        self.input.get_or_insert(InputClock {
            since_ms: now_ms,
            last_ms: None,
        });
    }

    /// Input arrived at `now_ms` (wall clock).
    pub fn input_seen(&mut self, now_ms: i64) {
        let c = self.input.get_or_insert(InputClock {
            since_ms: now_ms,
            last_ms: None,
        });
        c.last_ms = Some(c.last_ms.map_or(now_ms, |l| l.max(now_ms)));
    }

    /// Input freshness at `now_ms` (wall clock), if the board watches input.
    pub(crate) fn input_status(&self, now_ms: i64) -> Option<InputView> {
        let c = self.input?;
        let bucket = if self.bucket_ms > 0 {
            self.bucket_ms
        } else {
            60_000
        };
        let since = c.last_ms.unwrap_or(c.since_ms);
        Some(InputView {
            last_input: c.last_ms.map(Timestamp),
            watching_since: Timestamp(c.since_ms),
            stale: now_ms - since > STALE_AFTER_BUCKETS * bucket,
        })
    }

    /// `Self::incidents_at` the current wall-clock time.
    pub fn incidents(&self) -> IncidentsView {
        self.incidents_at(wall_ms())
    }

    /// Open outages, most severe and then most recently opened first; then resolved ones,
    /// most recently resolved first; and the same for the series incidents behind them; what
    /// was restored; input freshness at `now_ms` (wall clock).
    pub(crate) fn incidents_at(&self, now_ms: i64) -> IncidentsView {
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
        let mut restored: Vec<RestoredOutage> = self.restored_outages.values().cloned().collect();
        restored.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(b.opened_at.cmp(&a.opened_at))
                .then(a.outage_id.cmp(&b.outage_id))
        });
        IncidentsView {
            open,
            resolved: self.resolved_outages.iter().cloned().collect(),
            series: SeriesIncidentsView {
                open: series,
                resolved: self.resolved.iter().cloned().collect(),
            },
            restored,
            restored_series: self.restored_incidents.values().cloned().collect(),
            input: self.input_status(now_ms),
        }
    }

    /// The open incident of one series, if any.
    pub(crate) fn open_series_incident(
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
    pub(crate) fn series(&self, service: &str, geo: &str, signal: &str) -> Option<SeriesView> {
        let key = crate::engine::state::series_key(service, geo, signal);
        self.history.get(&key).map(|h| SeriesView {
            service: h.service.clone(),
            geo: h.geo.clone(),
            signal: h.signal.clone(),
            buckets: h.points.iter().copied().collect(),
        })
    }
}

#[cfg(test)]
mod tests;
