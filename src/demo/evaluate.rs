//! The demo's verdict: incidents matched to the injected outages, child geos folded in.

use std::collections::{BTreeMap, BTreeSet};

use crate::engine::settings::GeoSettings;
use crate::event::AnomalyEvent;
use crate::sim::{self, IncidentSummary, Outage, OutageReport, Scenario};

/// End of an incident, or `end_ms` if it was still open.
fn end_or(i: &IncidentSummary, end_ms: i64) -> i64 {
    i.resolved_at_ms.unwrap_or(end_ms)
}

/// `*` is 0, `IT` 1, `IT-RM` 2 (the default hierarchy: scenarios configure no parents).
pub fn geo_depth(geo: &str) -> usize {
    GeoSettings::default().depth(geo)
}

/// Whether `a` is `b` or one of its ancestors by the default roll-up (`IT` ⊃ `IT-RM`, `*` ⊃ all).
pub fn geo_covers(a: &str, b: &str) -> bool {
    GeoSettings::default().covers(a, b)
}

/// The geo a plot or a summary of an outage looks at: the lowest common roll-up of its geos.
pub fn outage_top_geo(o: &Outage) -> String {
    let geo = GeoSettings::default();
    let Some(first) = o.geos.first() else {
        return "*".into();
    };
    geo.lineage(first.0)
        .into_iter()
        .find(|top| o.geos.iter().all(|g| geo.covers(top, g.0)))
        .unwrap_or("*")
        .to_string()
}

/// A displayed incident with the incidents of its child geos folded in.
#[derive(Debug, Clone)]
pub struct IncidentGroup {
    pub top: IncidentSummary,
    /// Child geos that had their own incident in the same period.
    pub children: BTreeSet<String>,
    /// Child geos whose own incident resolved well after this one (`None`: still open at
    /// the end), by geo: geographies recover at different times.
    pub recovered_later: BTreeMap<String, Option<i64>>,
}

/// A child resolving within this long of its roll-up recovered "at the same time".
const LATER_RECOVERY_MS: i64 = 30 * 60_000;

/// Collapses city- and country-level incidents under an overlapping incident of a higher geo
/// of the same service and signal.
pub fn collapse(incidents: &[IncidentSummary], end_ms: i64) -> Vec<IncidentGroup> {
    let mut order: Vec<&IncidentSummary> = incidents.iter().collect();
    order.sort_by_key(|i| (geo_depth(&i.geo), i.opened_at_ms));
    let mut groups: Vec<IncidentGroup> = Vec::new();
    for inc in order {
        let parent = groups.iter_mut().find(|g| {
            g.top.service == inc.service
                && g.top.signal == inc.signal
                && g.top.geo != inc.geo
                && geo_covers(&g.top.geo, &inc.geo)
                && inc.opened_at_ms < end_or(&g.top, end_ms)
                && end_or(inc, end_ms) > g.top.opened_at_ms
        });
        match parent {
            Some(g) => {
                g.children.insert(inc.geo.clone());
                if let Some(top_end) = g.top.resolved_at_ms {
                    let later = match inc.resolved_at_ms {
                        Some(end) if end > top_end + LATER_RECOVERY_MS => Some(Some(end)),
                        Some(_) => None,
                        None => Some(None),
                    };
                    if let Some(end) = later {
                        let e = g.recovered_later.entry(inc.geo.clone()).or_insert(end);
                        *e = match (*e, end) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            _ => None,
                        };
                    }
                }
            }
            None => groups.push(IncidentGroup {
                top: inc.clone(),
                children: inc.child_geos.iter().cloned().collect(),
                recovered_later: BTreeMap::new(),
            }),
        }
    }
    groups.sort_by_key(|g| (g.top.opened_at_ms, g.top.geo.clone(), g.top.signal.clone()));
    groups
}

/// What became of one injected outage, for display.
#[derive(Debug, Clone)]
pub struct OutageResult {
    pub report: OutageReport,
    /// Its incidents, city-level ones folded under their roll-up.
    pub groups: Vec<IncidentGroup>,
    /// From the onset to the end of the bucket whose event first announced it.
    pub delay_ms: Option<i64>,
}

/// The demo's verdict: [`sim::evaluate`]'s matching, grouped for display.
#[derive(Debug, Clone)]
pub struct DemoEvaluation {
    pub outages: Vec<OutageResult>,
    pub false_alarms: Vec<IncidentGroup>,
    /// False alarms before folding child geos (what the summary line counts).
    pub false_alarm_incidents: usize,
    pub bucket_ms: i64,
    /// End of the generated stream (incidents still open are open "at the end").
    pub end_ms: i64,
    /// The outage incidents held against the injected outages (when outage events are known).
    pub grouping: Option<sim::OutageGrouping>,
}

impl DemoEvaluation {
    pub fn detected(&self) -> usize {
        self.outages.iter().filter(|o| o.report.detected()).count()
    }

    /// Median detection delay over detected outages.
    pub(crate) fn median_delay_ms(&self) -> Option<i64> {
        let mut d: Vec<i64> = self.outages.iter().filter_map(|o| o.delay_ms).collect();
        if d.is_empty() {
            return None;
        }
        d.sort_unstable();
        let n = d.len();
        Some(if n % 2 == 1 {
            d[n / 2]
        } else {
            (d[n / 2 - 1] + d[n / 2]) / 2
        })
    }
}

/// Matches incidents to the scenario's outages ([`sim::evaluate`]) and folds child geos.
pub fn evaluate(scenario: &Scenario, events: &[AnomalyEvent]) -> DemoEvaluation {
    evaluate_until(scenario, events, scenario.end_ms())
}

/// [`evaluate`] for a stream stopped at `end_ms` (see
/// [`RunOptions::until_ms`](super::RunOptions::until_ms)).
pub fn evaluate_until(scenario: &Scenario, events: &[AnomalyEvent], end_ms: i64) -> DemoEvaluation {
    let end = end_ms;
    let ev = sim::evaluate(scenario, events);
    let outages = ev
        .outages
        .into_iter()
        .map(|r| OutageResult {
            groups: collapse(&r.incidents, end),
            delay_ms: r.delay_buckets.map(|b| b * scenario.bucket_ms),
            report: r,
        })
        .collect();
    DemoEvaluation {
        outages,
        false_alarms: collapse(&ev.false_alarms, end),
        false_alarm_incidents: ev.false_alarms.len(),
        bucket_ms: scenario.bucket_ms,
        end_ms: end,
        grouping: None,
    }
}
