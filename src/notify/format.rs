//! What each output format sends for an outage event.
//!
//! - `json`: the [`OutageEvent`] as on the anomaly topic.
//! - `alertmanager`: an array of Alertmanager API v2 alerts (`POST /api/v2/alerts`), one
//!   alert per outage.
//! - `slack`: an incoming-webhook message, `{"text": …, "blocks": […]}`.
//!
//! The human-readable lines (`headline`, `details`) are shared by the last two.

use chrono::DateTime;
use serde_json::{json, Value};

use crate::event::{IncidentState, OutageChange, OutageEvent, Severity, Timestamp};

/// `alertname` of every alert spikewatch sends to Alertmanager.
pub(crate) const ALERT_NAME: &str = "SpikewatchOutage";

/// Countries named in a headline before "and N more".
const MAX_COUNTRIES: usize = 6;

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Countries strongest first (the order of `affected`), then any not listed there.
fn countries_by_strength(ev: &OutageEvent) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let top = |geo: &str| crate::domain::country_of(geo).to_string();
    for c in std::iter::once(top(&ev.strongest_geo))
        .chain(ev.affected.iter().map(|a| top(&a.geo)))
        .chain(ev.countries.iter().cloned())
    {
        if ev.countries.contains(&c) && !out.contains(&c) {
            out.push(c);
        }
    }
    // `*` is the service-wide series: worth naming only when no country is.
    if out.len() > 1 {
        out.retain(|c| c != "*");
    }
    out
}

/// `in IT, DE and FR`, `in IT, DE, … and 4 more countries`, or `service-wide`.
fn where_text(ev: &OutageEvent) -> String {
    let c = countries_by_strength(ev);
    if c.is_empty() || c == ["*"] {
        return "service-wide".into();
    }
    if c.len() > MAX_COUNTRIES {
        let more = c.len() - MAX_COUNTRIES;
        return format!(
            "in {} and {more} more {}",
            c[..MAX_COUNTRIES].join(", "),
            if more == 1 { "country" } else { "countries" }
        );
    }
    format!("in {}", c.join(", "))
}

/// `13:24` when `t` is on the same UTC day as `now`, else `Mon 01 Jan 13:24`.
fn clock(t: Timestamp, now: Timestamp) -> String {
    let day = |t: Timestamp| t.0.div_euclid(86_400_000);
    let fmt = if day(t) == day(now) {
        "%H:%M"
    } else {
        "%a %d %b %H:%M"
    };
    DateTime::from_timestamp_millis(t.0)
        .map(|d| d.format(fmt).to_string())
        .unwrap_or_else(|| t.to_string())
}

/// `confirmed by complaints and mentions`, or `mentions only, not confirmed`.
fn evidence(ev: &OutageEvent) -> String {
    if ev.confirmed {
        format!("confirmed by {}", and_list(&ev.signals))
    } else {
        format!("{} only, not confirmed", and_list(&ev.signals))
    }
}

/// One line an on-call engineer reads first:
/// `telegram: problems in IT, DE since 13:24 UTC (major, confirmed by complaints and mentions)`,
/// or on `resolved`: `telegram: resolved: problems in IT, DE from 13:24 to 14:10 UTC (46m, …)`.
pub(crate) fn headline(ev: &OutageEvent) -> String {
    let sev = ev.severity.as_str();
    match (ev.state, ev.resolved_at) {
        (IncidentState::Resolved, end) => {
            let end = end.unwrap_or(ev.as_of);
            format!(
                "{}: resolved: problems {} from {} to {} UTC ({}, {sev}, {})",
                ev.service,
                where_text(ev),
                clock(ev.opened_at, end),
                clock(end, end),
                crate::domain::fmt_duration(end.0 - ev.opened_at.0),
                evidence(ev)
            )
        }
        _ => format!(
            "{}: problems {} since {} UTC ({sev}, {})",
            ev.service,
            where_text(ev),
            clock(ev.opened_at, ev.as_of),
            evidence(ev)
        ),
    }
}

/// What changed, in words (`now major`, `now also in FR`), for updates.
pub(crate) fn changes_text(ev: &OutageEvent) -> Vec<String> {
    ev.changes
        .iter()
        .filter_map(|c| match c {
            OutageChange::Opened | OutageChange::Resolved => None,
            OutageChange::NewCountry => Some("spread to more countries".to_string()),
            OutageChange::Severity => Some(format!("now {}", ev.severity.as_str())),
            OutageChange::Peak => Some(format!("stronger (peak z {:.1})", ev.peak_zscore)),
            OutageChange::SignalJoined => Some(format!("confirmed by {}", and_list(&ev.signals))),
            OutageChange::Reopened => Some("back after it had gone quiet".to_string()),
        })
        .collect()
}

/// The rest of what the event says, a few short lines.
pub(crate) fn details(ev: &OutageEvent) -> String {
    let mut lines = Vec::new();
    let changes = changes_text(ev);
    if !changes.is_empty() {
        lines.push(format!("Update: {}.", changes.join(", ")));
    }
    lines.push(format!(
        "Strongest in {} (peak z {:.1} at {} UTC).",
        ev.strongest_geo,
        ev.peak_zscore,
        clock(ev.peak_at, ev.as_of)
    ));
    if !ev.above_baseline.is_empty() {
        let parts: Vec<String> = ev
            .above_baseline
            .iter()
            .map(|s| format!("{} +{:.0}", s.signal, s.above_baseline))
            .collect();
        lines.push(format!("Above baseline: {}.", parts.join(", ")));
    }
    if !ev.top_categories.is_empty() {
        let parts: Vec<String> = ev
            .top_categories
            .iter()
            .take(5)
            .map(|c| format!("{} ({:.0})", c.category, c.count))
            .collect();
        lines.push(format!("Top complaints: {}.", parts.join(", ")));
    }
    if !ev.concurrent_services.is_empty() {
        lines.push(format!(
            "Also down in the same places: {} (a shared cause?).",
            ev.concurrent_services.join(", ")
        ));
    }
    lines.push(format!("Outage {} (event {}).", ev.outage_id, ev.seq));
    lines.join("\n")
}

/// Body of the `json` format.
pub(crate) fn json_body(ev: &OutageEvent) -> Value {
    serde_json::to_value(ev).expect("an outage event always serializes")
}

fn alert(ev: &OutageEvent, severity: Severity, ends_at: Option<Timestamp>) -> Value {
    let mut a = json!({
        "labels": {
            "alertname": ALERT_NAME,
            "service": ev.service,
            "severity": severity.as_str(),
            "outage_id": ev.outage_id,
        },
        "annotations": {
            "summary": headline(ev),
            "description": details(ev),
            "countries": ev.countries.join(","),
            "strongest_geo": ev.strongest_geo,
            "peak_zscore": format!("{:.1}", ev.peak_zscore),
            "confirmed": ev.confirmed.to_string(),
        },
        "startsAt": ev.opened_at.to_rfc3339(),
    });
    if let Some(t) = ends_at {
        a["endsAt"] = Value::String(t.to_rfc3339());
    }
    a
}

/// Body of the `alertmanager` format: the outage's alert (with `endsAt` once resolved).
///
/// Alertmanager identifies an alert by its labels, and `severity` is one: when the outage's
/// severity changed since `previous` (the severity last sent for it), the alert under the old
/// label set is ended in the same request, or it would stay firing beside the new one.
pub(crate) fn alertmanager_body(ev: &OutageEvent, previous: Option<Severity>) -> Value {
    let ends = (ev.state == IncidentState::Resolved).then(|| ev.resolved_at.unwrap_or(ev.as_of));
    let mut alerts = Vec::with_capacity(2);
    if let Some(p) = previous.filter(|&p| p != ev.severity) {
        alerts.push(alert(ev, p, Some(ev.as_of)));
    }
    alerts.push(alert(ev, ev.severity, ends));
    Value::Array(alerts)
}

/// Slack wants `&`, `<` and `>` escaped in message text.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Body of the `slack` format: `text` (the headline: notifications and clients without
/// blocks show it) and `blocks` with the details.
pub(crate) fn slack_body(ev: &OutageEvent) -> Value {
    let text = slack_escape(&headline(ev));
    let mark = match ev.state {
        IncidentState::Opened => "Outage",
        IncidentState::Updated => "Outage update",
        IncidentState::Resolved => "Resolved",
    };
    json!({
        "text": text,
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!("*{mark}* {text}")},
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": slack_escape(&details(ev))},
            },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{AffectedSeries, CategoryCount};

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn series(geo: &str) -> AffectedSeries {
        AffectedSeries {
            geo: geo.into(),
            signal: "complaints".into(),
            incident_id: format!("telegram/{geo}/complaints/x"),
            open: true,
            onset: ts("2024-06-14T13:24:00Z"),
            peak_at: ts("2024-06-14T13:31:00Z"),
            peak_zscore: 20.0,
            peak_observed: 100.0,
            severity: Severity::Major,
            bucket_start: ts("2024-06-14T13:40:00Z"),
            observed: 90.0,
            expected: 5.0,
            zscore: 18.0,
        }
    }

    fn event() -> OutageEvent {
        OutageEvent {
            schema_version: 2,
            outage_id: "telegram/2024-06-14T13:24:00.000Z".into(),
            state: IncidentState::Opened,
            seq: 1,
            changes: vec![OutageChange::Opened],
            service: "telegram".into(),
            as_of: ts("2024-06-14T13:41:00Z"),
            opened_at: ts("2024-06-14T13:24:00Z"),
            resolved_at: None,
            severity: Severity::Major,
            confirmed: true,
            signals: vec!["complaints".into(), "mentions".into()],
            countries: vec!["DE".into(), "IT".into()],
            geos: vec!["DE".into(), "IT".into(), "IT-RM".into()],
            strongest_geo: "IT-RM".into(),
            peak_zscore: 87.6,
            peak_at: ts("2024-06-14T13:31:00Z"),
            affected: vec![series("IT-RM"), series("DE")],
            unlisted_series: 0,
            above_baseline: vec![],
            top_categories: vec![CategoryCount {
                category: "login".into(),
                count: 120.0,
            }],
            concurrent_services: vec!["whatsapp".into()],
            reopened: 0,
        }
    }

    #[test]
    fn headline_names_service_countries_strongest_first_time_severity_and_evidence() {
        let mut e = event();
        assert_eq!(
            headline(&e),
            "telegram: problems in IT, DE since 13:24 UTC (major, confirmed by complaints and mentions)"
        );
        e.confirmed = false;
        e.signals = vec!["mentions".into()];
        e.countries = vec!["*".into()];
        e.strongest_geo = "*".into();
        assert_eq!(
            headline(&e),
            "telegram: problems service-wide since 13:24 UTC (major, mentions only, not confirmed)"
        );
        let mut r = event();
        r.state = IncidentState::Resolved;
        r.resolved_at = Some(ts("2024-06-14T14:10:00Z"));
        assert_eq!(
            headline(&r),
            "telegram: resolved: problems in IT, DE from 13:24 to 14:10 UTC (46m, major, confirmed by complaints and mentions)"
        );
        let mut late = event();
        late.as_of = ts("2024-06-15T01:00:00Z");
        assert!(
            headline(&late).contains("since Fri 14 Jun 13:24 UTC"),
            "{}",
            headline(&late)
        );
    }

    #[test]
    fn details_say_where_it_is_strongest_what_users_report_and_what_else_is_down() {
        let d = details(&event());
        for want in [
            "IT-RM",
            "87.6",
            "login (120)",
            "whatsapp",
            "telegram/2024-06-14",
        ] {
            assert!(d.contains(want), "{want}: {d}");
        }
    }

    #[test]
    fn alertmanager_ends_the_alert_of_the_old_severity_when_it_changes() {
        let mut e = event();
        e.state = IncidentState::Updated;
        e.seq = 2;
        e.severity = Severity::Critical;
        e.changes = vec![OutageChange::Severity];
        let body = alertmanager_body(&e, Some(Severity::Major));
        let alerts = body.as_array().unwrap();
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0]["labels"]["severity"], "major");
        assert_eq!(alerts[0]["endsAt"], e.as_of.to_rfc3339());
        assert_eq!(alerts[1]["labels"]["severity"], "critical");
        assert!(alerts[1].get("endsAt").is_none());
        assert_eq!(alerts[1]["startsAt"], "2024-06-14T13:24:00.000Z");
        assert!(alerts[1]["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("now critical"));
        assert_eq!(
            alertmanager_body(&e, Some(Severity::Critical))
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn slack_text_is_escaped() {
        let mut e = event();
        e.service = "a<b>&c".into();
        let body = slack_body(&e);
        let text = body["text"].as_str().unwrap();
        assert!(text.starts_with("a&lt;b&gt;&amp;c: problems"), "{text}");
    }
}
