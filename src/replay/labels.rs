//! A replay scored against what is known to have happened: the known events found, the
//! incidents that match no event (false alerts) and how long after an event's start it was
//! announced. Two sources of "known": a CSV series' `label` column (1 inside a known event,
//! 0 outside), scored against that series' incidents; and a file of known outages per service
//! (`service,start,end`, e.g. from postmortems) for JSONL history, scored against the outage
//! events. This is how an operator backtests thresholds on their own history, and what
//! `benches/realdata.rs` reports on public labelled data.

use std::collections::{BTreeMap, BTreeSet};

use crate::event::{AnomalyEvent, IncidentState, OutageEvent, Severity};

/// An incident this close to a labelled window still finds it: labels mark the core of an
/// event; the rise before and the tail after are the same event.
pub const LABEL_SLACK_MS: i64 = 3_600_000;

/// What a series' incidents did against its labelled windows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelScore {
    /// Series scored (1 for one series; more once added up).
    pub series: usize,
    /// Time the series spans, in days.
    pub days: f64,
    /// Labelled windows (runs of label 1).
    pub windows: usize,
    /// Windows an incident overlaps, or opens within [`LABEL_SLACK_MS`] of.
    pub found: usize,
    pub incidents: usize,
    /// Incidents that overlap no labelled window (± [`LABEL_SLACK_MS`]).
    pub false_alerts: usize,
    /// Per found window: minutes from its start to the end of the bucket whose `opened` (or
    /// re-`opened`) event announced it; 0 when an incident was already announced.
    pub delays_min: Vec<f64>,
    /// Start (epoch ms) of each false alert.
    pub false_at_ms: Vec<i64>,
    /// The labelled windows themselves, `[start, end)` in epoch ms (the real-data bench asks
    /// whether a false alert coincides with an event labelled in another series).
    pub windows_ms: Vec<(i64, i64)>,
}

impl LabelScore {
    /// Adds another series' score to this total.
    pub fn add(&mut self, o: &LabelScore) {
        self.series += o.series;
        self.days += o.days;
        self.windows += o.windows;
        self.found += o.found;
        self.incidents += o.incidents;
        self.false_alerts += o.false_alerts;
        self.delays_min.extend_from_slice(&o.delays_min);
        self.false_at_ms.extend_from_slice(&o.false_at_ms);
        self.windows_ms.extend_from_slice(&o.windows_ms);
    }

    /// False alerts per 30 days of series.
    pub fn false_per_month(&self) -> f64 {
        if self.days > 0.0 {
            self.false_alerts as f64 / (self.days / 30.0)
        } else {
            0.0
        }
    }

    pub fn median_delay_min(&self) -> Option<f64> {
        let mut d = self.delays_min.clone();
        if d.is_empty() {
            return None;
        }
        d.sort_by(f64::total_cmp);
        Some(d[d.len() / 2])
    }
}

/// Labelled windows `[start, end)` of one series from its `(timestamp, label)` rows in time
/// order; a window still open at the last row ends one `step_ms` after it.
pub(crate) fn label_windows(rows: &[(i64, bool)], step_ms: i64) -> Vec<(i64, i64)> {
    let mut windows = Vec::new();
    let mut open: Option<i64> = None;
    for &(ts, label) in rows {
        match (label, open) {
            (true, None) => open = Some(ts),
            (false, Some(s)) => {
                windows.push((s, ts));
                open = None;
            }
            _ => {}
        }
    }
    if let (Some(s), Some(&(last, _))) = (open, rows.last()) {
        windows.push((s, last + step_ms));
    }
    windows
}

/// One incident or outage: its span and when it was announced (each open or re-open).
struct Span {
    start: i64,
    end: i64,
    announced: Vec<i64>,
}

/// What folding needs of one incident or outage event.
struct Transition<'a> {
    id: &'a str,
    state: IncidentState,
    reopened: u32,
    opened_at: i64,
    /// End of the newest bucket the event accounts for.
    at: i64,
    resolved_at: Option<i64>,
    /// The incident's (outage's) severity so far.
    severity: Severity,
}

/// Folds events (in time order) into one span per incident or outage; one still open ends at
/// `end_ms`. With `page_on`, only incidents that reach that severity count, announced when
/// they first reach it (and at each re-open after): what a subscriber paging on that
/// severity would have been told.
fn fold_spans<'a>(
    events: impl Iterator<Item = Transition<'a>>,
    end_ms: i64,
    page_on: Option<Severity>,
) -> Vec<Span> {
    // Per id: the span, the re-open count of the last event seen, and whether it has reached
    // `page_on`.
    let mut by_id: BTreeMap<&str, (Span, u32, bool)> = BTreeMap::new();
    for e in events {
        let (s, reopened, reached) = by_id.entry(e.id).or_insert((
            Span {
                start: e.opened_at,
                end: end_ms,
                announced: Vec::new(),
            },
            0,
            false,
        ));
        let reaches = page_on.is_none_or(|min| e.severity >= min);
        let opens = e.state == IncidentState::Opened || e.reopened > *reopened;
        if reaches && (opens || (page_on.is_some() && !*reached)) {
            s.announced.push(e.at);
        }
        *reached |= reaches;
        if opens {
            s.end = end_ms;
        }
        *reopened = e.reopened;
        if e.state == IncidentState::Resolved {
            s.end = e.resolved_at.unwrap_or(e.at);
        }
    }
    by_id
        .into_values()
        .filter(|&(_, _, reached)| reached || page_on.is_none())
        .map(|(s, ..)| s)
        .collect()
}

/// One series' incidents.
fn spans(events: &[AnomalyEvent], end_ms: i64, page_on: Option<Severity>) -> Vec<Span> {
    fold_spans(events.iter().map(anomaly_transition), end_ms, page_on)
}

fn anomaly_transition(e: &AnomalyEvent) -> Transition<'_> {
    Transition {
        id: &e.incident_id,
        state: e.state,
        reopened: e.reopened,
        opened_at: e.opened_at.0,
        at: e.bucket_end.0,
        resolved_at: e.resolved_at.map(|t| t.0),
        severity: e.severity,
    }
}

/// One service's outages.
fn outage_spans<'a>(
    events: impl Iterator<Item = &'a OutageEvent>,
    end_ms: i64,
    page_on: Option<Severity>,
) -> Vec<Span> {
    let view = |e: &'a OutageEvent| Transition {
        id: &e.outage_id,
        state: e.state,
        reopened: e.reopened,
        opened_at: e.opened_at.0,
        at: e.as_of.0,
        resolved_at: e.resolved_at.map(|t| t.0),
        severity: e.severity,
    };
    fold_spans(events.map(view), end_ms, page_on)
}

/// Scores one series' anomaly events (in time order) against its labelled windows; the
/// series spans `[first_ms, end_ms)`. `page_on`: count only incidents reaching it.
pub(crate) fn score(
    windows: &[(i64, i64)],
    first_ms: i64,
    end_ms: i64,
    events: &[AnomalyEvent],
    page_on: Option<Severity>,
) -> LabelScore {
    score_spans(windows, first_ms, end_ms, spans(events, end_ms, page_on))
}

/// One known outage of a service (`start` inclusive, `end` exclusive, epoch ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownOutage {
    pub service: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Reads a file of known outages: a CSV header naming `service`, `start` and `end` (other
/// columns are ignored), then one outage per row; times as `replay` reads them (RFC 3339,
/// `YYYY-MM-DD HH:MM:SS` UTC or epoch seconds). An error names the line and what is wrong.
pub fn parse_known_outages(text: &str) -> Result<Vec<KnownOutage>, String> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = rdr.headers().map_err(|e| format!("line 1: {e}"))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| super::header_is(h, name))
            .ok_or_else(|| {
                format!(
                    "line 1: the header must name `service`, `start` and `end`; found {headers:?}"
                )
            })
    };
    let (svc, start, end) = (col("service")?, col("start")?, col("end")?);
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| e.to_string())?;
        let line = rec.position().map_or(0, |p| p.line());
        let field = |i: usize, what: &str| {
            rec.get(i)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("line {line}: no `{what}`"))
        };
        let time = |i: usize, what: &str| {
            super::parse_timestamp(field(i, what)?)
                .map_err(|e| format!("line {line}: column `{what}`: {e}"))
        };
        let k = KnownOutage {
            service: field(svc, "service")?.to_string(),
            start_ms: time(start, "start")?,
            end_ms: time(end, "end")?,
        };
        if k.end_ms <= k.start_ms {
            return Err(format!("line {line}: `end` is not after `start`"));
        }
        out.push(k);
    }
    Ok(out)
}

/// Scores a replay's outage events against the known outages, per service: every service
/// that has a known outage or an outage incident, over the replayed span `[first_ms, end_ms)`.
pub(crate) fn score_outages(
    known: &[KnownOutage],
    events: &[OutageEvent],
    first_ms: i64,
    end_ms: i64,
    page_on: Option<Severity>,
) -> Vec<(String, LabelScore)> {
    let services: BTreeSet<&str> = known
        .iter()
        .map(|k| k.service.as_str())
        .chain(events.iter().map(|e| e.service.as_str()))
        .collect();
    services
        .into_iter()
        .map(|svc| {
            let mut windows: Vec<(i64, i64)> = known
                .iter()
                .filter(|k| k.service == svc)
                .map(|k| (k.start_ms, k.end_ms))
                .collect();
            windows.sort_unstable();
            let spans = outage_spans(events.iter().filter(|e| e.service == svc), end_ms, page_on);
            (
                svc.to_string(),
                score_spans(&windows, first_ms, end_ms, spans),
            )
        })
        .collect()
}

fn score_spans(windows: &[(i64, i64)], first_ms: i64, end_ms: i64, spans: Vec<Span>) -> LabelScore {
    let mut t = LabelScore {
        series: 1,
        days: (end_ms - first_ms).max(0) as f64 / 86_400_000.0,
        windows: windows.len(),
        windows_ms: windows.to_vec(),
        incidents: spans.len(),
        ..LabelScore::default()
    };
    for &(ws, we) in windows {
        let (lo, hi) = (ws - LABEL_SLACK_MS, we + LABEL_SLACK_MS);
        let mut delay: Option<i64> = None;
        for s in spans.iter().filter(|s| s.start < hi && s.end > lo) {
            let announced = |upto: i64| {
                s.announced
                    .iter()
                    .filter(|&&a| a >= lo && a < upto)
                    .map(|&a| (a - ws).max(0))
                    .min()
            };
            let d = if s.start <= ws && s.end > ws {
                // Open already, or opened before the window and still open.
                announced(i64::MAX).unwrap_or(0)
            } else {
                announced(hi).unwrap_or((s.start - ws).max(0))
            };
            delay = Some(delay.map_or(d, |x| x.min(d)));
        }
        if let Some(d) = delay {
            t.found += 1;
            t.delays_min.push(d as f64 / 60_000.0);
        }
    }
    t.false_at_ms = spans
        .iter()
        .filter(|s| {
            !windows
                .iter()
                .any(|&(ws, we)| s.start < we + LABEL_SLACK_MS && s.end > ws - LABEL_SLACK_MS)
        })
        .map(|s| s.start)
        .collect();
    t.false_alerts = t.false_at_ms.len();
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_runs_of_label_one_and_one_open_at_the_end_closes_a_step_later() {
        let rows = [
            (0, false),
            (60, true),
            (120, true),
            (180, false),
            (240, true),
        ];
        assert_eq!(label_windows(&rows, 60), vec![(60, 180), (240, 300)]);
        assert!(label_windows(&[], 60).is_empty());
    }
}
