//! The readable incident timeline, with optional ANSI colours.

use std::fmt::Write as _;

use chrono::DateTime;

use super::{fmt_duration, DemoEvaluation, IncidentGroup};
use crate::event::Severity;
use crate::sim::Scenario;

/// ANSI styling, or none.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn red(&self, s: &str) -> String {
        self.paint("1;31", s)
    }
    fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}

/// `Wed 17 Jan 14:10 UTC`.
pub fn fmt_when(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%a %d %b %H:%M UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// `14:10` on the same day as `since`, else the full date.
fn fmt_when_after(ms: i64, since: i64) -> String {
    let day = |t: i64| t.div_euclid(86_400_000);
    if day(ms) == day(since) {
        DateTime::from_timestamp_millis(ms)
            .map(|d| d.format("%H:%M").to_string())
            .unwrap_or_default()
    } else {
        fmt_when(ms)
    }
}

fn write_group(out: &mut String, g: &IncidentGroup, end_ms: i64, st: Style) {
    let i = &g.top;
    let sev = i.severity.as_str();
    let sev = match i.severity {
        Severity::Critical => st.red(sev),
        Severity::Major => st.yellow(sev),
        Severity::Minor => sev.to_string(),
    };
    let until = match i.resolved_at_ms {
        Some(r) => format!(
            "resolved {} ({})",
            fmt_when_after(r, i.opened_at_ms),
            fmt_duration(r - i.opened_at_ms)
        ),
        None => format!(
            "still open at the end ({}+)",
            fmt_duration(end_ms - i.opened_at_ms)
        ),
    };
    let _ = writeln!(
        out,
        "  {} {}/{} {:<10} opened {}, {until}, {sev}",
        st.bold("●"),
        st.bold(&i.service),
        st.bold(&i.geo),
        i.signal,
        fmt_when(i.opened_at_ms),
    );
    let updates = i
        .events
        .saturating_sub(1 + i.resolved_at_ms.is_some() as usize);
    let _ = writeln!(
        out,
        "      peak z {:.1} at {} ({:.0} observed vs {:.0} expected); {updates} update(s), {} reopen(s)",
        i.peak_zscore,
        fmt_when_after(i.peak_at_ms, i.opened_at_ms),
        i.peak_observed,
        i.expected_at_peak,
        i.reopened
    );
    if !g.children.is_empty() {
        let kids: Vec<&str> = g.children.iter().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "      {}",
            st.dim(&format!("geos: {}", kids.join(", ")))
        );
    }
    if !g.recovered_later.is_empty() {
        let mut later: Vec<(&String, &Option<i64>)> = g.recovered_later.iter().collect();
        later.sort_by_key(|(_, end)| end.unwrap_or(i64::MAX));
        let list: Vec<String> = later
            .iter()
            .map(|(geo, end)| match end {
                Some(t) => format!("{geo} {}", fmt_when_after(*t, i.opened_at_ms)),
                None => format!("{geo} still open"),
            })
            .collect();
        let _ = writeln!(
            out,
            "      {}",
            st.yellow(&format!("recovered later: {}", list.join(", ")))
        );
    }
    if !i.concurrent_services.is_empty() {
        let others: Vec<&str> = i.concurrent_services.iter().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "      {}",
            st.yellow(&format!("same time, same geo: {}", others.join(", ")))
        );
    }
}

/// The readable incident timeline: per injected outage its incidents (city-level ones folded
/// under their roll-up), missed outages and false alarms marked, and a summary line.
pub fn render_timeline(scenario: &Scenario, ev: &DemoEvaluation, st: Style) -> String {
    let mut out = String::new();
    let end = ev.end_ms.min(scenario.end_ms());
    let bucket = ev.bucket_ms.max(1);
    for (i, r) in ev.outages.iter().enumerate() {
        let o = &r.report;
        let _ = writeln!(
            out,
            "{}",
            st.bold(&format!(
                "▶ {} — injected {} → {} ({})",
                o.label,
                fmt_when(o.start_ms),
                fmt_when_after(o.end_ms, o.start_ms),
                fmt_duration(o.end_ms - o.start_ms)
            ))
        );
        match r.delay_ms {
            Some(d) => {
                let _ = writeln!(
                    out,
                    "  {}",
                    st.green(&format!(
                        "✓ detected {} after onset ({} bucket(s))",
                        fmt_duration(d),
                        d.div_euclid(bucket)
                    ))
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  {}",
                    st.red("✗ MISSED: no incident opened for this outage")
                );
            }
        }
        if let Some((_, found)) = ev.grouping.as_ref().and_then(|g| g.per_outage.get(i)) {
            match found.as_slice() {
                [] => {}
                [x] => {
                    let _ = writeln!(
                        out,
                        "  {}",
                        st.bold(&format!(
                            "one outage incident {}: {} event(s), {} in {}, {}{}",
                            x.outage_id,
                            x.events,
                            x.signals.join(" + "),
                            x.geos.join(", "),
                            match x.resolved_at_ms {
                                Some(t) =>
                                    format!("resolved {}", fmt_when_after(t, x.opened_at_ms)),
                                None => "open at the end".to_string(),
                            },
                            if x.reopened > 0 {
                                format!(", came back {} time(s)", x.reopened)
                            } else {
                                String::new()
                            }
                        ))
                    );
                }
                many => {
                    let ids: Vec<&str> = many.iter().map(|x| x.outage_id.as_str()).collect();
                    let _ = writeln!(
                        out,
                        "  {}",
                        st.red(&format!(
                            "⚠ split into {} outage incidents: {}",
                            many.len(),
                            ids.join(", ")
                        ))
                    );
                }
            }
            let _ = writeln!(out, "  the series incidents behind it:");
        }
        for g in &r.groups {
            write_group(&mut out, g, end, st);
        }
        out.push('\n');
    }
    if ev.false_alarms.is_empty() {
        let _ = writeln!(out, "{}", st.green("No false alarms."));
    } else {
        let _ = writeln!(
            out,
            "{}",
            st.red(&format!(
                "⚠ {} false alarm(s): incidents matching no injected outage{}",
                ev.false_alarm_incidents,
                if ev.false_alarms.len() < ev.false_alarm_incidents {
                    format!(
                        " (shown as {} after folding child geos)",
                        ev.false_alarms.len()
                    )
                } else {
                    String::new()
                }
            ))
        );
        for g in &ev.false_alarms {
            write_group(&mut out, g, end, st);
        }
    }
    out.push('\n');
    if let Some(g) = &ev.grouping {
        let minor = g
            .false_outages
            .iter()
            .filter(|o| o.severity == Severity::Minor)
            .count();
        let _ = writeln!(
            out,
            "{}",
            st.bold(&format!(
                "Outage incidents: {} for {} injected outage(s) (split: {}, merged: {}); {} matching no injected outage ({minor} of them minor: one signal only)",
                g.per_outage.iter().map(|(_, v)| v.len()).sum::<usize>(),
                g.per_outage.len(),
                g.split().len(),
                g.merged().len(),
                g.false_outages.len(),
            ))
        );
    }
    let median = ev.median_delay_ms().map_or("n/a".to_string(), fmt_duration);
    let _ = writeln!(
        out,
        "{}",
        st.bold(&format!(
            "Summary: outages detected {}/{}, median detection delay {median}, false alarms {}",
            ev.detected(),
            ev.outages.len(),
            ev.false_alarm_incidents
        ))
    );
    out
}
