//! Scoring against ground truth: anomaly events folded into incidents, outage events into
//! outage incidents, both matched to a scenario's injected outages.

use super::{Scenario, MINUTE_MS};
use crate::event::{AnomalyEvent, IncidentState, Severity, Timestamp};

/// One incident as a reader sees it: every anomaly event of one `incident_id`, folded.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentSummary {
    pub incident_id: String,
    pub service: String,
    pub geo: String,
    pub signal: String,
    /// Start of the first anomalous bucket.
    pub opened_at_ms: i64,
    /// End of the bucket whose event opened it: when a subscriber first heard of it.
    pub announced_at_ms: i64,
    /// End of the last anomalous bucket, if it resolved.
    pub resolved_at_ms: Option<i64>,
    pub peak_at_ms: i64,
    pub peak_zscore: f64,
    pub peak_observed: f64,
    /// Expected value at the bucket of the latest event that carried the peak.
    pub expected_at_peak: f64,
    pub severity: Severity,
    pub events: usize,
    pub reopened: u32,
    pub child_geos: Vec<String>,
    pub concurrent_services: Vec<String>,
}

/// Folds anomaly events into one summary per incident, in order of opening.
pub fn summarize(events: &[AnomalyEvent]) -> Vec<IncidentSummary> {
    let mut out: Vec<IncidentSummary> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for e in events {
        let i = *index.entry(&e.incident_id).or_insert_with(|| {
            out.push(IncidentSummary {
                incident_id: e.incident_id.clone(),
                service: e.service.clone(),
                geo: e.geo.clone(),
                signal: e.signal.clone(),
                opened_at_ms: e.opened_at.millis(),
                announced_at_ms: e.bucket_end.millis(),
                resolved_at_ms: None,
                peak_at_ms: e.peak_at.millis(),
                peak_zscore: e.peak_zscore,
                peak_observed: e.peak_observed,
                expected_at_peak: e.expected,
                severity: e.severity,
                events: 0,
                reopened: 0,
                child_geos: Vec::new(),
                concurrent_services: Vec::new(),
            });
            out.len() - 1
        });
        let s = &mut out[i];
        s.events += 1;
        s.resolved_at_ms = match e.state {
            IncidentState::Resolved => e.resolved_at.map(Timestamp::millis),
            _ => None,
        };
        if e.peak_zscore >= s.peak_zscore {
            s.peak_zscore = e.peak_zscore;
            s.peak_at_ms = e.peak_at.millis();
            s.peak_observed = e.peak_observed;
            if e.bucket_start == e.peak_at {
                s.expected_at_peak = e.expected;
            }
        }
        s.severity = s.severity.max(e.severity);
        s.reopened = s.reopened.max(e.reopened);
        for g in &e.child_geos {
            if !s.child_geos.contains(g) {
                s.child_geos.push(g.clone());
            }
        }
        for c in &e.concurrent_services {
            if !s.concurrent_services.contains(c) {
                s.concurrent_services.push(c.clone());
            }
        }
    }
    out
}

/// How long after an outage's end an incident opening still belongs to it.
const MATCH_SLACK_MS: i64 = 30 * MINUTE_MS;

/// `geo` is `leaf` or one of its roll-ups (`IT-RM` → `IT` → `*`).
fn covers(geo: &str, leaf: &str) -> bool {
    crate::engine::settings::GeoSettings::default().covers(geo, leaf)
}

/// What the engine made of one injected outage.
#[derive(Debug, Clone, PartialEq)]
pub struct OutageReport {
    pub label: &'static str,
    pub service: &'static str,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Incidents of the outage's service, in its geos or their roll-ups, opened during it.
    pub incidents: Vec<IncidentSummary>,
    /// Buckets from the outage's onset to the end of the bucket whose event first announced it.
    pub delay_buckets: Option<i64>,
}

impl OutageReport {
    pub fn detected(&self) -> bool {
        !self.incidents.is_empty()
    }
}

/// The engine's incidents held against a scenario's ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub outages: Vec<OutageReport>,
    /// Incidents that belong to no injected outage.
    pub false_alarms: Vec<IncidentSummary>,
}

/// Matches incidents to the injected outages they belong to; the rest are false alarms.
pub fn evaluate(scenario: &Scenario, events: &[AnomalyEvent]) -> Evaluation {
    let mut unmatched = summarize(events);
    let outages = scenario
        .outages
        .iter()
        .map(|o| {
            let belongs = |i: &IncidentSummary| {
                i.service == o.service
                    && o.geos.iter().any(|&(g, from, to)| {
                        covers(&i.geo, g)
                            && i.opened_at_ms >= from - scenario.bucket_ms
                            && i.opened_at_ms < to + MATCH_SLACK_MS
                    })
            };
            let (incidents, rest): (Vec<_>, Vec<_>) = unmatched.drain(..).partition(belongs);
            unmatched = rest;
            let delay_buckets = incidents
                .iter()
                .map(|i| i.announced_at_ms)
                .min()
                .map(|t| (t - o.start_ms() + scenario.bucket_ms - 1) / scenario.bucket_ms);
            OutageReport {
                label: o.label,
                service: o.service,
                start_ms: o.start_ms(),
                end_ms: o.end_ms(),
                incidents,
                delay_buckets,
            }
        })
        .collect();
    Evaluation {
        outages,
        false_alarms: unmatched,
    }
}

/// One outage incident (schema version 2) as its events describe it, folded.
#[derive(Debug, Clone, PartialEq)]
pub struct OutageSummary {
    pub outage_id: String,
    pub service: String,
    pub opened_at_ms: i64,
    /// When its opening event was emitted (end of the bucket that announced it).
    pub announced_at_ms: i64,
    /// End of its last anomalous bucket, if its last event resolved it.
    pub resolved_at_ms: Option<i64>,
    pub geos: Vec<String>,
    pub signals: Vec<String>,
    pub severity: Severity,
    /// When an event first said two signals agree (`confirmed`), if one did.
    pub confirmed_at_ms: Option<i64>,
    pub events: usize,
    pub opened_events: usize,
    pub reopened: u32,
}

/// Folds outage events into one summary per outage, in order of opening.
pub fn summarize_outages(events: &[crate::event::OutageEvent]) -> Vec<OutageSummary> {
    let mut out: Vec<OutageSummary> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for e in events {
        let i = *index.entry(&e.outage_id).or_insert_with(|| {
            out.push(OutageSummary {
                outage_id: e.outage_id.clone(),
                service: e.service.clone(),
                opened_at_ms: e.opened_at.millis(),
                announced_at_ms: e.as_of.millis(),
                resolved_at_ms: None,
                geos: Vec::new(),
                signals: Vec::new(),
                severity: e.severity,
                confirmed_at_ms: None,
                events: 0,
                opened_events: 0,
                reopened: 0,
            });
            out.len() - 1
        });
        let s = &mut out[i];
        s.events += 1;
        s.opened_events += usize::from(e.state == IncidentState::Opened);
        s.resolved_at_ms = e.resolved_at.map(Timestamp::millis);
        s.opened_at_ms = s.opened_at_ms.min(e.opened_at.millis());
        s.geos.clone_from(&e.geos);
        s.signals.clone_from(&e.signals);
        s.severity = s.severity.max(e.severity);
        s.reopened = s.reopened.max(e.reopened);
        if e.confirmed && s.confirmed_at_ms.is_none() {
            s.confirmed_at_ms = Some(e.as_of.millis());
        }
    }
    out
}

/// The engine's outage incidents held against a scenario's injected outages.
#[derive(Debug, Clone, PartialEq)]
pub struct OutageGrouping {
    /// Per injected outage (label): the outage incidents that belong to it.
    pub per_outage: Vec<(&'static str, Vec<OutageSummary>)>,
    /// Outage incidents that belong to no injected outage.
    pub false_outages: Vec<OutageSummary>,
}

impl OutageGrouping {
    /// Injected outages announced as more than one outage incident.
    pub fn split(&self) -> Vec<&'static str> {
        self.per_outage
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(l, _)| *l)
            .collect()
    }

    /// Outage incidents that cover more than one injected outage.
    pub fn merged(&self) -> Vec<String> {
        let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (_, v) in &self.per_outage {
            for o in v {
                *seen.entry(&o.outage_id).or_default() += 1;
            }
        }
        let mut m: Vec<String> = seen
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(id, _)| id.to_string())
            .collect();
        m.sort();
        m
    }
}

/// Matches outage incidents to the injected outages of their service whose time they overlap
/// (from a bucket before onset to the slack after the end) in a geo they cover.
pub fn group_outages(scenario: &Scenario, events: &[crate::event::OutageEvent]) -> OutageGrouping {
    let all = summarize_outages(events);
    let end_of = |o: &OutageSummary| o.resolved_at_ms.unwrap_or(i64::MAX);
    let mut matched = vec![false; all.len()];
    let per_outage = scenario
        .outages
        .iter()
        .map(|inj| {
            let v: Vec<OutageSummary> = all
                .iter()
                .enumerate()
                .filter(|(_, o)| {
                    o.service == inj.service
                        && inj.geos.iter().any(|&(g, from, to)| {
                            o.geos.iter().any(|og| covers(og, g))
                                && o.opened_at_ms < to + MATCH_SLACK_MS
                                && end_of(o) > from - scenario.bucket_ms
                        })
                })
                .map(|(i, o)| {
                    matched[i] = true;
                    o.clone()
                })
                .collect();
            (inj.label, v)
        })
        .collect();
    let false_outages = all
        .into_iter()
        .zip(matched)
        .filter(|(_, m)| !m)
        .map(|(o, _)| o)
        .collect();
    OutageGrouping {
        per_outage,
        false_outages,
    }
}
