//! Where it leaves: incident events of a closed bucket (with child geos and concurrent
//! services), and the outage round that groups them per service.

use std::collections::BTreeSet;

use ahash::AHashMap;

use super::geo::{self, GeoId, GeoTable};
use super::incident::{IncidentTracker, Transition};
use super::intern::Interner;
use super::outage;
use super::{incident_id, Engine, EngineSink, Pending, Series, SeriesKey};
use crate::event::{
    AnomalyEvent, IncidentState, ThresholdsInForce, Timestamp, ANOMALY_SCHEMA_VERSION,
};

impl Engine {
    /// Emits incident events for this bucket, now that every series has closed it, so a
    /// rolled-up geo sees which child geos opened in the same bucket.
    pub(super) fn emit_pending<S: EngineSink + ?Sized>(&mut self, sink: &mut S) {
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
        let mut now_ms = i64::MIN;
        for p in &pending {
            now_ms = now_ms.max(p.end_ms);
            let excess = self.excess_of(p);
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
            self.outages.member(&outage::MemberBucket {
                service: self.services.name(key.0),
                geo: self.geos.name(key.1),
                signal: self.signals.name(key.2),
                transition: p.transition,
                incident: inc,
                open: state != IncidentState::Resolved,
                start_ms: p.start_ms,
                end_ms: p.end_ms,
                observed: p.observed,
                expected: p.expected,
                z: p.score.z,
                excess,
                reopen_gap_ms: s.thresholds.reopen_gap.millis(),
            });
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
        let view = ServiceIndex {
            services: &self.services,
            signals: &self.signals,
            geos: &self.geos,
            index: &self.index,
            series: &self.series,
            open_set: &self.open_set,
        };
        let stats = &mut self.stats;
        self.outages.end_round(now_ms, &view, hint, |e| {
            stats.outage_events += 1;
            stats.outages_opened += u64::from(e.state == IncidentState::Opened);
            stats.outages_resolved += u64::from(e.state == IncidentState::Resolved);
            sink.outage(e);
        });
    }

    /// What an alert bucket adds to its outage's reports above baseline: counted at the
    /// highest open geo of its lineage only (a city inside an affected country is already in
    /// the country's count).
    fn excess_of(&self, p: &Pending) -> f64 {
        let s = self.series[p.series as usize]
            .as_ref()
            .expect("pending series");
        let excess = p.observed - p.expected;
        if !s.tracker.is_open() || excess.is_nan() || excess <= 0.0 {
            return 0.0;
        }
        let (svc, g, sig) = s.key;
        let ancestor_open = self.geos.chain(g)[1..].iter().any(|&anc| {
            self.index
                .get(&(svc, anc, sig))
                .and_then(|&a| self.series[a as usize].as_ref())
                .is_some_and(|a| a.tracker.is_open())
        });
        if ancestor_open {
            0.0
        } else {
            excess
        }
    }
}

/// The engine's answers to the outage tracker's questions about services.
struct ServiceIndex<'a> {
    services: &'a Interner,
    signals: &'a Interner,
    geos: &'a GeoTable,
    index: &'a AHashMap<SeriesKey, u32>,
    series: &'a [Option<Series>],
    open_set: &'a BTreeSet<u32>,
}

impl outage::ServiceView for ServiceIndex<'_> {
    fn has_open_incident(&self, service: &str) -> bool {
        let Some(id) = self.services.get(service) else {
            return false;
        };
        self.open_set.iter().any(|&slot| {
            self.series[slot as usize]
                .as_ref()
                .is_some_and(|s| s.key.0 == id)
        })
    }

    fn live_signals(&self, service: &str) -> usize {
        let (Some(id), Some(global)) = (self.services.get(service), self.geos.get(geo::GLOBAL))
        else {
            return 0;
        };
        (0..self.signals.names.len() as u32)
            .filter(|&sig| self.index.contains_key(&(id, global, sig)))
            .count()
    }
}
