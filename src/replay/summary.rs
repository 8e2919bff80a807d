//! The end-of-run summary of a replay: what was read, accepted, rejected and scored, and how
//! each CSV series was set up (bucket width, count or gauge).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::labels::{LabelScore, LABEL_SLACK_MS};
use super::{InputFormat, LineError, Progress, SeriesName, MAX_REPORTED_LINES};
use crate::config::Secs;

/// How one CSV series was scored (the end-of-run summary lists them).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSetup {
    pub name: SeriesName,
    pub bucket: Secs,
    /// The bucket width came from the timestamps, not from `--bucket` or the configuration.
    pub bucket_inferred: bool,
    /// Scored as a gauge (`Overrides::gauge`).
    pub gauge: bool,
    /// That came from the values, not from `--values`.
    pub gauge_inferred: bool,
}

/// What a run did. `Display` is the end-of-run summary.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub input: String,
    pub format: Option<InputFormat>,
    /// Lines (JSONL) or data rows (CSV) read.
    pub lines: u64,
    pub blank_lines: u64,
    /// Events (JSONL) or values (CSV) the engine accepted.
    pub accepted: u64,
    pub late: u64,
    /// Decoded but refused by the engine, by kind.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Could not be parsed, by kind.
    pub malformed: BTreeMap<&'static str, u64>,
    /// The first `MAX_REPORTED_LINES` malformed or rejected lines, in full.
    pub reported: Vec<LineError>,
    /// CSV: rows at the same time as an earlier row of their series (their values are summed).
    pub repeated_times: u64,
    /// The first of them: which lines, which series, when.
    pub repeated_example: Option<String>,
    pub series: u64,
    /// Series the engine already had when the run started (restored from a state file).
    pub series_restored: u64,
    pub buckets: u64,
    pub rows_written: u64,
    pub incidents_opened: u64,
    pub incidents_resolved: u64,
    pub anomaly_events: u64,
    /// CSV: bucket width and kind of values per series.
    pub series_setup: Vec<SeriesSetup>,
    /// CSV with a `label` column: each series' incidents scored against its labels.
    pub labels: Vec<(SeriesName, LabelScore)>,
    /// JSONL with `--known-outages`: each service's outages scored against the known ones.
    pub known_outages: Vec<(String, LabelScore)>,
    /// Only incidents (outages) reaching this severity were scored ([`ReplayOptions::page_on`]).
    ///
    /// [`ReplayOptions::page_on`]: super::ReplayOptions::page_on
    pub page_on: Option<crate::event::Severity>,
    pub elapsed: Duration,
}

impl Summary {
    pub fn malformed_total(&self) -> u64 {
        self.malformed.values().sum()
    }

    pub(crate) fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Counts a malformed (or rejected) line; keeps the first ones in full and tells
    /// `progress` about those.
    pub(super) fn issue(&mut self, e: LineError, malformed: bool, progress: &mut dyn Progress) {
        let map = if malformed {
            &mut self.malformed
        } else {
            &mut self.rejected
        };
        *map.entry(e.kind).or_insert(0) += 1;
        if self.reported.len() < MAX_REPORTED_LINES {
            progress.issue(&e);
            self.reported.push(e);
        }
    }

    /// Lines per second over the whole run.
    pub(crate) fn lines_per_sec(&self) -> f64 {
        self.lines as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn kinds(m: &BTreeMap<&'static str, u64>) -> String {
    if m.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!(" ({})", parts.join(", "))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.format == Some(InputFormat::Csv) {
            "rows"
        } else {
            "lines"
        };
        let bad = self.malformed_total() + self.rejected_total();
        if bad as usize > self.reported.len() {
            writeln!(
                f,
                "... and {} more malformed or rejected {unit} not shown",
                bad as usize - self.reported.len()
            )?;
        }
        writeln!(f, "replay summary: {}", self.input)?;
        let row = |f: &mut fmt::Formatter<'_>, label: String, value: String| {
            writeln!(f, "  {label:<20}{value}")
        };
        let blank = if self.blank_lines > 0 {
            format!(" ({} blank)", self.blank_lines)
        } else {
            String::new()
        };
        row(f, format!("{unit} read:"), format!("{}{blank}", self.lines))?;
        row(f, "accepted:".into(), self.accepted.to_string())?;
        row(f, "late:".into(), self.late.to_string())?;
        row(
            f,
            "rejected:".into(),
            format!("{}{}", self.rejected_total(), kinds(&self.rejected)),
        )?;
        row(
            f,
            format!("malformed {unit}:"),
            format!("{}{}", self.malformed_total(), kinds(&self.malformed)),
        )?;
        if self.repeated_times > 0 {
            row(
                f,
                "repeated times:".into(),
                format!(
                    "{} {unit} at the time of an earlier row of their series, values summed \
                     (an export concatenated twice doubles its counts; first: {})",
                    self.repeated_times,
                    self.repeated_example.as_deref().unwrap_or("-")
                ),
            )?;
        }
        let series = if self.series_restored > 0 {
            format!(
                "{} new, {} from the initial state",
                self.series, self.series_restored
            )
        } else {
            self.series.to_string()
        };
        row(f, "series:".into(), series)?;
        for s in self.series_setup.iter().take(10) {
            let how = |inferred: bool| if inferred { "inferred" } else { "given" };
            let values = match (s.gauge, s.gauge_inferred) {
                (true, true) => ", gauge (inferred: not all whole numbers >= 0)",
                (true, false) => ", gauge (given)",
                (false, _) => "",
            };
            writeln!(
                f,
                "    {}: bucket {} ({}){values}",
                s.name,
                s.bucket,
                how(s.bucket_inferred)
            )?;
        }
        if self.series_setup.len() > 10 {
            writeln!(f, "    ... {} more", self.series_setup.len() - 10)?;
        }
        row(f, "buckets scored:".into(), self.buckets.to_string())?;
        row(f, "rows written:".into(), self.rows_written.to_string())?;
        row(
            f,
            "incidents:".into(),
            format!(
                "{} opened, {} resolved (re-opened ones resolve again; {} anomaly events)",
                self.incidents_opened, self.incidents_resolved, self.anomaly_events
            ),
        )?;
        let scored: Vec<(String, &LabelScore)> = if self.labels.is_empty() {
            self.known_outages
                .iter()
                .map(|(n, l)| (n.clone(), l))
                .collect()
        } else {
            self.labels
                .iter()
                .map(|(n, l)| (n.to_string(), l))
                .collect()
        };
        if !scored.is_empty() {
            let mut total = LabelScore::default();
            for (_, l) in &scored {
                total.add(l);
            }
            let (what, per, noun) = if self.labels.is_empty() {
                ("known outages:", "service", "outage")
            } else {
                ("labelled events:", "series", "incident")
            };
            if let Some(sev) = self.page_on {
                row(
                    f,
                    "paging on:".into(),
                    format!(
                        "{noun}s that reach {}, from when they reach it",
                        sev.as_str()
                    ),
                )?;
            }
            row(
                f,
                what.into(),
                format!(
                    "{} of {} found (an {noun} overlaps them or opens within {} min), median delay {}",
                    total.found,
                    total.windows,
                    LABEL_SLACK_MS / 60_000,
                    total
                        .median_delay_min()
                        .map_or("-".to_string(), |d| format!("{d:.0} min")),
                ),
            )?;
            row(
                f,
                "false alerts:".into(),
                format!(
                    "{} of {} {noun}s match no known event ({:.2} per 30 days of {per})",
                    total.false_alerts,
                    total.incidents,
                    total.false_per_month()
                ),
            )?;
            if scored.len() > 1 {
                for (name, l) in scored.iter().take(10) {
                    writeln!(
                        f,
                        "    {name}: {} of {} found, {} false",
                        l.found, l.windows, l.false_alerts
                    )?;
                }
                if scored.len() > 10 {
                    writeln!(f, "    ... {} more", scored.len() - 10)?;
                }
            }
        }
        write!(
            f,
            "  {:<20}{:.2} s ({:.0} {unit}/s, {:.0} accepted/s)",
            "elapsed:",
            self.elapsed.as_secs_f64(),
            self.lines_per_sec(),
            self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
        )
    }
}
