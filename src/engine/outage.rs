//! One outage, one incident: the series incidents of a service that overlap in time, over
//! every geo level and signal, grouped into the outage a reader means ("Telegram: problems in
//! Italy, Germany, Russia since 13:24").
//!
//! * a series incident that opens while its service has no outage opens one; the onset of
//!   that first series incident names it (deterministic id);
//! * every series incident of the service that opens while the outage is open, or within
//!   the re-open gap after it went quiet, belongs to it: the 07:00 wave of a multi-day outage
//!   is the same outage (`reopened`), a failure a day later is another;
//! * it resolves in the bucket where the last of its series incidents resolves;
//! * `updated` only when a reader would care: a new country, severity up, peak ×1.5, a
//!   second signal agrees, or it came back.
//!
//! Plain bookkeeping over what the engine's series report at each bucket. What other services
//! do never changes when an outage emits: Kafka partitions hold different sets of services,
//! and a restored engine must emit exactly what an uninterrupted one would.

use std::collections::BTreeMap;

use ahash::AHashMap;
use serde::{Deserialize, Serialize};

use super::incident::{Incident, Transition};
use super::incident_id;
use crate::domain::country_of;
use crate::event::{
    outage_id, AffectedSeries, CategoryCount, IncidentState, OutageChange, OutageEvent, Severity,
    SignalExcess, Timestamp, OUTAGE_SCHEMA_VERSION,
};

/// Series listed per outage; further ones are counted in `unlisted_series`. Bounds the size of
/// the outage state saved at every checkpoint.
pub(crate) const MAX_LISTED_SERIES: usize = 64;
/// Distinct complaint categories kept per service; further ones count as `other`.
pub(crate) const MAX_CATEGORIES: usize = 16;
/// Categories named in an event.
const TOP_CATEGORIES: usize = 5;
/// How far before an outage opens its complaint categories are counted.
const CATEGORY_LOOKBACK_MS: i64 = 3_600_000;
/// Peak growth that warrants an `updated` event.
const PEAK_GROWTH: f64 = 1.5;
const OTHER: &str = "other";
/// Countries of one outage that are remembered (a bound against junk geos).
const MAX_COUNTRIES: usize = 256;

/// One series inside an outage, as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberState {
    pub geo: String,
    pub signal: String,
    pub onset_ms: i64,
    pub peak_at_ms: i64,
    pub peak_z: f64,
    pub peak_observed: f64,
    pub severity: Severity,
    pub open: bool,
    pub bucket_start_ms: i64,
    pub observed: f64,
    pub expected: f64,
    pub z: f64,
}

/// One outage of a service, as saved with the engine's layout at every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutageState {
    pub service: String,
    pub onset_ms: i64,
    /// Events emitted so far (0: the opening event is still to come).
    pub seq: u64,
    pub reopened: u32,
    pub open: bool,
    /// End of the last bucket in which one of its series was anomalous.
    pub last_active_end_ms: i64,
    pub reopen_gap_ms: i64,
    pub members: Vec<MemberState>,
    pub unlisted: u32,
    pub countries: Vec<String>,
    pub signals: Vec<String>,
    pub severity: Severity,
    pub peak_z: f64,
    pub peak_at_ms: i64,
    pub peak_geo: String,
    /// (signal, sum of observed − expected).
    pub above_baseline: Vec<(String, f64)>,
    /// (category, reports).
    pub categories: Vec<(String, f64)>,
    pub emitted_countries: u32,
    pub emitted_signals: u32,
    pub emitted_severity: Severity,
    pub emitted_peak_z: f64,
}

/// What one closed bucket of a series inside an incident tells the outage of its service.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemberBucket<'a> {
    pub service: &'a str,
    pub geo: &'a str,
    pub signal: &'a str,
    pub transition: Transition,
    /// The series incident: open, or the one this bucket resolved.
    pub incident: &'a Incident,
    /// The series incident is open after this bucket.
    pub open: bool,
    pub start_ms: i64,
    pub end_ms: i64,
    pub observed: f64,
    pub expected: f64,
    pub z: f64,
    /// What this bucket adds to the outage's `above_baseline` of its signal (0 when an
    /// ancestor geo of the same signal already counts it).
    pub excess: f64,
    pub reopen_gap_ms: i64,
}

/// What the engine knows about a service when its outage emits.
pub(crate) trait ServiceView {
    /// One of the service's series has an open incident.
    fn has_open_incident(&self, service: &str) -> bool;
    /// Signals the service has live series of.
    fn live_signals(&self, service: &str) -> usize;
}

#[derive(Debug, Clone, Copy, Default)]
struct Touch {
    as_of_ms: i64,
    reopened: bool,
}

#[derive(Debug, Default)]
struct RecentCategories {
    since_ms: i64,
    counts: Vec<(String, f64)>,
}

/// Per service: its current (or recently resolved) outage.
#[derive(Debug, Default)]
pub struct OutageTracker {
    outages: BTreeMap<String, OutageState>,
    /// Services whose series reported in the current bucket round.
    touched: BTreeMap<String, Touch>,
    /// Complaint categories of services without an open outage, over the last hour; not
    /// saved (a restart forgets at most an hour of categories, never an outage).
    recent: AHashMap<Box<str>, RecentCategories>,
}

impl OutageTracker {
    pub(crate) fn to_state(&self) -> Vec<OutageState> {
        self.outages.values().cloned().collect()
    }

    pub(crate) fn from_state(outages: Vec<OutageState>) -> Self {
        Self {
            outages: outages
                .into_iter()
                .map(|o| (o.service.clone(), o))
                .collect(),
            ..Self::default()
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.outages
            .values()
            .map(|o| {
                std::mem::size_of::<OutageState>()
                    + o.members.capacity() * std::mem::size_of::<MemberState>()
                    + 32 * (o.countries.len() + o.categories.len() + o.signals.len())
            })
            .sum::<usize>()
            + self
                .recent
                .values()
                .map(|r| 48 * r.counts.capacity())
                .sum::<usize>()
    }

    /// Counts a complaint's category toward its service's outage (or the one that may open).
    pub(crate) fn note_category(&mut self, service: &str, category: &str, amount: f64, ts_ms: i64) {
        if !(amount.is_finite() && amount > 0.0) {
            return;
        }
        let category = if category.is_empty()
            || category.len() > crate::event::MAX_NAME_LEN
            || category.chars().any(char::is_control)
        {
            OTHER
        } else {
            category
        };
        if let Some(o) = self.outages.get_mut(service).filter(|o| o.open) {
            add_category(&mut o.categories, category, amount);
            return;
        }
        let r = match self.recent.get_mut(service) {
            Some(r) => r,
            None => self.recent.entry(service.into()).or_default(),
        };
        if ts_ms - r.since_ms > CATEGORY_LOOKBACK_MS {
            r.since_ms = ts_ms;
            r.counts.clear();
        }
        add_category(&mut r.counts, category, amount);
    }

    /// Takes one closed bucket of a series with an incident (open, or resolved by it).
    pub(crate) fn member(&mut self, b: &MemberBucket<'_>) {
        let inc = b.incident;
        let joins = match self.outages.get(b.service) {
            Some(o) if o.open => true,
            Some(o) => b.open && b.start_ms - o.last_active_end_ms <= o.reopen_gap_ms,
            None => false,
        };
        // Looked up first: the entry exists for every bucket after the first of a round.
        if !self.touched.contains_key(b.service) {
            self.touched.insert(b.service.to_string(), Touch::default());
        }
        let touch = self.touched.get_mut(b.service).expect("just ensured");
        touch.as_of_ms = touch.as_of_ms.max(b.end_ms);
        if !joins {
            if !b.open {
                return; // the last word of an incident whose outage is gone
            }
            let mut categories = Vec::new();
            if let Some(r) = self.recent.remove(b.service) {
                if b.end_ms - r.since_ms <= 2 * CATEGORY_LOOKBACK_MS {
                    categories = r.counts;
                }
            }
            self.outages.insert(
                b.service.to_string(),
                OutageState {
                    service: b.service.to_string(),
                    onset_ms: inc.onset_ms,
                    seq: 0,
                    reopened: 0,
                    open: true,
                    last_active_end_ms: inc.last_active_end_ms,
                    reopen_gap_ms: b.reopen_gap_ms,
                    members: Vec::new(),
                    unlisted: 0,
                    countries: Vec::new(),
                    signals: Vec::new(),
                    severity: inc.severity,
                    peak_z: inc.peak_z,
                    peak_at_ms: inc.peak_at_ms,
                    peak_geo: b.geo.to_string(),
                    above_baseline: Vec::new(),
                    categories,
                    emitted_countries: 0,
                    emitted_signals: 0,
                    emitted_severity: Severity::Minor,
                    emitted_peak_z: 0.0,
                },
            );
        }
        let o = self.outages.get_mut(b.service).expect("just ensured");
        if !o.open {
            o.open = true;
            o.reopened += 1;
            touch.reopened = true;
        }
        o.reopen_gap_ms = o.reopen_gap_ms.max(b.reopen_gap_ms);
        o.onset_ms = o.onset_ms.min(inc.onset_ms);
        if b.open {
            o.last_active_end_ms = o.last_active_end_ms.max(inc.last_active_end_ms);
        }
        o.severity = o.severity.max(inc.severity);
        if peak_displaces((inc.peak_z, inc.peak_at_ms, b.geo), o) {
            o.peak_z = inc.peak_z;
            o.peak_at_ms = inc.peak_at_ms;
            o.peak_geo = b.geo.to_string();
        }
        if !o.signals.iter().any(|s| s == b.signal) {
            o.signals.push(b.signal.to_string());
            o.signals.sort();
        }
        let country = country_of(b.geo);
        if o.countries.len() < MAX_COUNTRIES && !o.countries.iter().any(|c| c == country) {
            o.countries.push(country.to_string());
            o.countries.sort();
        }
        if b.excess > 0.0 && b.excess.is_finite() {
            match o.above_baseline.iter_mut().find(|(s, _)| s == b.signal) {
                Some((_, v)) => *v += b.excess,
                None => o.above_baseline.push((b.signal.to_string(), b.excess)),
            }
        }
        let member = MemberState {
            geo: b.geo.to_string(),
            signal: b.signal.to_string(),
            onset_ms: inc.onset_ms,
            peak_at_ms: inc.peak_at_ms,
            peak_z: inc.peak_z,
            peak_observed: inc.peak_observed,
            severity: inc.severity,
            open: b.open,
            bucket_start_ms: b.start_ms,
            observed: b.observed,
            expected: b.expected,
            z: b.z,
        };
        let listed = o.members.len();
        match o
            .members
            .iter_mut()
            .find(|m| m.geo == b.geo && m.signal == b.signal)
        {
            Some(m) => *m = member,
            None if listed < MAX_LISTED_SERIES => o.members.push(member),
            None => {
                if b.transition == Transition::Opened {
                    o.unlisted += 1;
                }
            }
        }
    }

    /// Ends a bucket round: emits what changed for every outage, resolves those whose series
    /// are all quiet and forgets resolved ones past their re-open gap.
    pub(crate) fn end_round(
        &mut self,
        now_ms: i64,
        view: &impl ServiceView,
        concurrent_hint: usize,
        mut emit: impl FnMut(OutageEvent),
    ) {
        let touched = std::mem::take(&mut self.touched);
        let mut events = Vec::new();
        let mut forget = Vec::new();
        for (service, o) in &mut self.outages {
            let touch = touched.get(service).copied();
            if !o.open {
                if touch.is_none() && now_ms - o.last_active_end_ms > o.reopen_gap_ms {
                    forget.push(service.clone());
                }
                continue;
            }
            let severity = if o.signals.len() < 2 && view.live_signals(service) >= 2 {
                Severity::Minor
            } else {
                o.severity
            };
            let mut changes = Vec::new();
            if o.seq == 0 {
                changes.push(OutageChange::Opened);
            } else {
                if touch.is_some_and(|t| t.reopened) {
                    changes.push(OutageChange::Reopened);
                }
                if o.countries.len() as u32 > o.emitted_countries {
                    changes.push(OutageChange::NewCountry);
                }
                if severity > o.emitted_severity {
                    changes.push(OutageChange::Severity);
                }
                if o.peak_z >= PEAK_GROWTH * o.emitted_peak_z {
                    changes.push(OutageChange::Peak);
                }
                if o.signals.len() as u32 > o.emitted_signals && o.signals.len() >= 2 {
                    changes.push(OutageChange::SignalJoined);
                }
            }
            if !view.has_open_incident(service) {
                o.open = false;
                for m in &mut o.members {
                    m.open = false;
                }
                changes.push(OutageChange::Resolved);
            }
            if changes.is_empty() {
                continue;
            }
            o.seq += 1;
            o.emitted_countries = o.countries.len() as u32;
            o.emitted_signals = o.signals.len() as u32;
            o.emitted_severity = severity;
            o.emitted_peak_z = o.peak_z;
            let as_of = touch.map_or(now_ms, |t| t.as_of_ms);
            events.push((service.clone(), changes, severity, as_of));
        }
        for s in forget {
            self.outages.remove(&s);
        }
        for (service, changes, severity, as_of) in events {
            let o = &self.outages[&service];
            emit(self.event(o, changes, severity, as_of, concurrent_hint));
        }
    }

    fn event(
        &self,
        o: &OutageState,
        changes: Vec<OutageChange>,
        severity: Severity,
        as_of_ms: i64,
        concurrent_hint: usize,
    ) -> OutageEvent {
        let resolved = changes.contains(&OutageChange::Resolved);
        let mut affected: Vec<AffectedSeries> = o
            .members
            .iter()
            .map(|m| AffectedSeries {
                geo: m.geo.clone(),
                signal: m.signal.clone(),
                incident_id: incident_id(&o.service, &m.geo, &m.signal, m.onset_ms),
                open: m.open,
                onset: Timestamp(m.onset_ms),
                peak_at: Timestamp(m.peak_at_ms),
                peak_zscore: m.peak_z,
                peak_observed: m.peak_observed,
                severity: m.severity,
                bucket_start: Timestamp(m.bucket_start_ms),
                observed: m.observed,
                expected: m.expected,
                zscore: m.z,
            })
            .collect();
        affected.sort_by(|a, b| {
            b.peak_zscore
                .total_cmp(&a.peak_zscore)
                .then_with(|| a.geo.cmp(&b.geo))
                .then_with(|| a.signal.cmp(&b.signal))
        });
        let mut geos: Vec<String> = o.members.iter().map(|m| m.geo.clone()).collect();
        geos.sort();
        geos.dedup();
        let mut top = o.categories.clone();
        top.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(TOP_CATEGORIES);
        let mut concurrent: Vec<String> = self
            .outages
            .values()
            .filter(|x| x.open && x.service != o.service)
            .filter(|x| {
                x.members
                    .iter()
                    .any(|m| o.members.iter().any(|n| n.geo == m.geo))
            })
            .map(|x| x.service.clone())
            .collect();
        if concurrent.len() + 1 < concurrent_hint {
            concurrent.clear();
        }
        let mut above: Vec<SignalExcess> = o
            .above_baseline
            .iter()
            .map(|(s, v)| SignalExcess {
                signal: s.clone(),
                above_baseline: *v,
            })
            .collect();
        above.sort_by(|a, b| a.signal.cmp(&b.signal));
        OutageEvent {
            schema_version: OUTAGE_SCHEMA_VERSION,
            outage_id: outage_id(&o.service, o.onset_ms),
            state: if resolved {
                IncidentState::Resolved
            } else if o.seq == 1 {
                IncidentState::Opened
            } else {
                IncidentState::Updated
            },
            seq: o.seq,
            changes,
            service: o.service.clone(),
            as_of: Timestamp(as_of_ms),
            opened_at: Timestamp(o.onset_ms),
            resolved_at: resolved.then_some(Timestamp(o.last_active_end_ms)),
            severity,
            confirmed: o.signals.len() >= 2,
            signals: o.signals.clone(),
            countries: o.countries.clone(),
            geos,
            strongest_geo: o.peak_geo.clone(),
            peak_zscore: o.peak_z,
            peak_at: Timestamp(o.peak_at_ms),
            affected,
            unlisted_series: o.unlisted,
            above_baseline: above,
            top_categories: top
                .into_iter()
                .map(|(category, count)| CategoryCount { category, count })
                .collect(),
            concurrent_services: concurrent,
            reopened: o.reopened,
        }
    }
}

fn add_category(counts: &mut Vec<(String, f64)>, category: &str, amount: f64) {
    if let Some((_, n)) = counts.iter_mut().find(|(c, _)| c == category) {
        *n += amount;
        return;
    }
    let category = if counts.len() + 1 >= MAX_CATEGORIES {
        OTHER
    } else {
        category
    };
    match counts.iter_mut().find(|(c, _)| c == category) {
        Some((_, n)) => *n += amount,
        None => counts.push((category.to_string(), amount)),
    }
}

/// Whether a member's peak becomes its outage's: a higher one, or on an exact tie the earlier,
/// then the more specific geo (more segments: `IT` before `*`), then the lower code. A country
/// whose only reporting city is `IT-RM` has the same counts, and so the same peak, at `*`,
/// `IT` and `IT-RM`; without a total order the first visited won, and a restored engine (which
/// visits its series in another order) named another `strongest_geo` than the one that never
/// stopped.
fn peak_displaces((z, at_ms, geo): (f64, i64, &str), o: &OutageState) -> bool {
    use std::cmp::Ordering;
    let segments = |g: &str| if g == "*" { 0 } else { g.split('-').count() };
    match z.partial_cmp(&o.peak_z) {
        Some(Ordering::Greater) => true,
        Some(Ordering::Equal) => o
            .peak_at_ms
            .cmp(&at_ms)
            .then(segments(geo).cmp(&segments(&o.peak_geo)))
            .then(o.peak_geo.as_str().cmp(geo))
            .is_gt(),
        _ => false,
    }
}
