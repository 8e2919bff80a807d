//! Backtest on history: the library side of `spikewatch replay`.
//!
//! Two inputs:
//!
//! * **JSONL** of mention/complaint events (the messages the Kafka topics carry), streamed line
//!   by line; the watermark follows the newest event time seen, so memory stays bounded.
//!   Output: one row per series and closed bucket.
//! * **CSV count series** (`timestamp`, `value`, optional `service`, `geo`, `signal`), one row
//!   per bucket. Each series gets its own bucket width (inferred from its timestamps unless
//!   given) and is fed through [`Engine::set_bucket_value`], so missing rows are missing data;
//!   rows that fall into one bucket (a width coarser than the data) are summed. A series whose
//!   values are not all whole numbers is scored as a gauge ([`ValueKind`]).
//!   Output: exactly one row per input row, in input order.
//!
//! Malformed lines never abort a run: each is reported as `file:line: reason`, counted by kind
//! and skipped (a CSV row still gets its output row, with empty numeric fields).
//!
//! Nothing here touches the terminal: progress is a callback, the summary a value.
//!
//! `jsonl` and `csv_series` hold the two replays, `summary` what a run reports at its end;
//! `tests` (`replay/tests.rs`) the unit tests.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, NaiveDateTime};

use crate::config::{Config, Overrides, Secs, Thresholds, MAX_LATENESS_BUCKETS};
use crate::engine::{BucketReport, Engine, EngineConfig, EngineSink, Ingest};
use crate::event::{decode_any_core, AnomalyEvent, OutageEvent, Timestamp};
use crate::plot::{Panel, PlotPoint};

mod csv_series;
mod jsonl;
pub mod labels;
mod summary;

pub use csv_series::replay_csv;
pub use jsonl::{jsonl_engine, replay_jsonl, replay_jsonl_with, OutputNames, ReplayOutput};
pub use summary::{SeriesSetup, Summary};

/// Header of the output for a CSV series input: one row per input row.
pub const SERIES_HEADER: &str = "timestamp,value,expected,zscore,anomaly_score,alert";
/// Header of the output for a JSONL event input: one row per series and bucket.
pub const EVENTS_HEADER: &str =
    "timestamp,service,geo,signal,value,expected,zscore,anomaly_score,alert";

/// Series names a CSV without `service`/`geo`/`signal` columns gets.
pub(crate) const DEFAULT_SERVICE: &str = "series";
pub(crate) const DEFAULT_GEO: &str = "*";
pub(crate) const DEFAULT_SIGNAL: &str = "complaints";

/// How many malformed-line reports a summary keeps in full; the rest are only counted.
pub(crate) const MAX_REPORTED_LINES: usize = 20;

/// Which input reader to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Csv,
    Jsonl,
}

impl InputFormat {
    /// From the file extension: `.csv` → CSV; `.jsonl`, `.ndjson`, `.json` → JSONL.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" | "json" => Some(Self::Jsonl),
            _ => None,
        }
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputFormat::Csv => "csv",
            InputFormat::Jsonl => "jsonl",
        })
    }
}

/// A run that cannot go on (as opposed to a malformed line, which is counted and skipped).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{file}: cannot tell the input format from the extension (use .csv, .jsonl, .ndjson or .json, or --format)")]
    UnknownFormat { file: String },
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: io::Error },
    #[error("{file}: cannot write: {source}")]
    Write { file: String, source: io::Error },
    #[error("{file}:{line}: {reason}")]
    Header {
        file: String,
        line: u64,
        reason: String,
    },
    #[error("{file}: series {series}: {reason}")]
    BucketWidth {
        file: String,
        series: String,
        reason: String,
    },
    #[error("invalid series {spec:?}: expected SERVICE/GEO/SIGNAL, e.g. telegram/IT/complaints")]
    SeriesSpec { spec: String },
}

/// A malformed or rejected line: where, what kind, why. Displays as `file:line: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub file: String,
    pub line: u64,
    /// Short stable label (`json`, `timestamp`, `value`, `too_far_ahead`, …).
    pub kind: &'static str,
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// A series name: service, geo, signal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesName {
    pub service: String,
    pub geo: String,
    pub signal: String,
}

impl SeriesName {
    pub(crate) fn new(service: &str, geo: &str, signal: &str) -> Self {
        Self {
            service: service.to_string(),
            geo: geo.to_string(),
            signal: signal.to_string(),
        }
    }

    /// Parses `service/geo/signal`.
    pub fn parse(spec: &str) -> Result<Self, ReplayError> {
        let parts: Vec<&str> = spec.split('/').collect();
        match parts.as_slice() {
            [s, g, x] if !s.is_empty() && !g.is_empty() && !x.is_empty() => Ok(Self::new(s, g, x)),
            _ => Err(ReplayError::SeriesSpec {
                spec: spec.to_string(),
            }),
        }
    }

    fn is(&self, service: &str, geo: &str, signal: &str) -> bool {
        self.service == service && self.geo == geo && self.signal == signal
    }
}

impl fmt::Display for SeriesName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.service, self.geo, self.signal)
    }
}

/// Options of one replay run.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Bucket width for every series (CSV: instead of the inferred one).
    pub bucket: Option<Secs>,
    /// Keep the full history of this series for a plot.
    pub capture: Option<SeriesName>,
    /// Count alert buckets and volume per series to pick a series to plot (costs a few map
    /// look-ups per bucket).
    pub rank_series: bool,
    /// The wall clock (epoch ms) when the run started: events (rows) more than
    /// `engine.max_future_skew` after it are rejected as `ahead_of_wall_clock`, so one row
    /// dated decades ahead cannot move the clock past every real event (or make a CSV series
    /// span decades). `None`: no such bound (the engine's 2000–2100 range only).
    pub wall_clock_ms: Option<i64>,
    /// What the incidents output holds: outage events (default) or per-series events.
    pub incident_events: IncidentEvents,
    /// CSV: whether each series counts events or measures something.
    pub values: ValueKind,
    /// JSONL: outages known to have happened (e.g. from postmortems); the summary scores the
    /// replay's outage events against them (`labels::score_outages`).
    pub known_outages: Vec<labels::KnownOutage>,
    /// Score against labels or known outages only the incidents (outages) that reach this
    /// severity, as announced when they reach it: what paging on it would have done. `None`:
    /// every incident.
    pub page_on: Option<crate::event::Severity>,
}

/// What the values of a CSV series are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ValueKind {
    /// A gauge when any value is not a whole number ≥ 0, else a count.
    #[default]
    Auto,
    /// Counts of events: the configuration as it is.
    Count,
    /// Measurements (latency, load, a rate): [`Overrides::gauge`] under the configuration's
    /// signal, geo and service layers.
    Gauge,
}

/// The events written to the incidents output of a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum IncidentEvents {
    /// One outage of a service over all its geos and signals (schema version 2), as on the
    /// anomaly topic.
    #[default]
    Outages,
    /// Per-series incident events (schema version 1), as on the series anomaly topic.
    Series,
}

/// Receives news while a file is replayed (a progress bar, a log).
pub trait Progress {
    /// Bytes of input read so far.
    fn bytes(&mut self, _read: u64) {}
    /// One of the first `MAX_REPORTED_LINES` malformed or rejected lines, when it is found.
    fn issue(&mut self, _line: &LineError) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct NoProgress;

impl Progress for NoProgress {}

/// Result of a run: the summary, and what was asked for plotting.
#[derive(Debug, Clone, Default)]
pub struct ReplayOutcome {
    pub summary: Summary,
    /// The captured series ([`ReplayOptions::capture`]), bucket by bucket.
    pub captured: Option<Panel>,
    /// With [`ReplayOptions::rank_series`]: the series with the most alert buckets, else the
    /// one with the largest total value.
    pub top_series: Option<SeriesName>,
}

// ---------------------------------------------------------------------------------------------
// Parsing helpers.

/// Whether a CSV header cell names `name` (any case; spaces and a byte-order mark around it
/// do not count).
pub(crate) fn header_is(cell: &str, name: &str) -> bool {
    cell.trim_start_matches('\u{feff}')
        .trim()
        .eq_ignore_ascii_case(name)
}

/// Parses a CSV timestamp: `YYYY-MM-DD HH:MM:SS[.fff]` (UTC; `T` separator also accepted),
/// RFC 3339 (any offset), or epoch seconds (integer or decimal; integers of 10^11 and more are
/// taken as epoch milliseconds). Returns epoch milliseconds.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty timestamp".into());
    }
    let body = s.strip_prefix('-').unwrap_or(s);
    if !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && body.bytes().filter(|&b| b == b'.').count() <= 1
        && body.bytes().any(|b| b.is_ascii_digit())
    {
        let v: f64 = s
            .parse()
            .map_err(|_| format!("invalid epoch seconds {s:?}"))?;
        let ms = if v.abs() >= 1e11 { v } else { v * 1000.0 };
        if !ms.is_finite() || ms.abs() > 1e15 {
            return Err(format!("epoch time {s:?} is out of range"));
        }
        return Ok(ms.round() as i64);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Ok(dt.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(dt.and_utc().timestamp_millis());
        }
    }
    Err(format!(
        "cannot parse timestamp {s:?}: expected \"YYYY-MM-DD HH:MM:SS\" (UTC), RFC 3339 or epoch seconds"
    ))
}

/// Parses a CSV value: empty (or `NA`/`null`) is missing data (`Ok(None)`); anything else
/// must be a number in `0 ..= 1e15` ([`crate::engine::MAX_BUCKET_VALUE`]). `NaN`, infinities
/// and negative numbers are errors, not missing data: they are what a broken export writes,
/// and a count is never negative.
pub(crate) fn parse_value(s: &str) -> Result<Option<f64>, String> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("na") || s.eq_ignore_ascii_case("null") {
        return Ok(None);
    }
    let max = crate::engine::MAX_BUCKET_VALUE;
    match s.parse::<f64>() {
        Ok(v) if v.is_nan() => Err(format!(
            "value {s:?} is not a number (leave the field empty for missing data)"
        )),
        Ok(v) if v.is_infinite() => Err(format!("value {s:?} is not a finite number")),
        Ok(v) if v < 0.0 => Err(format!("value {s:?} is negative (counts are >= 0)")),
        Ok(v) if v > max => Err(format!("value {s:?} is above the limit of {max:e}")),
        Ok(v) => Ok(Some(v)),
        Err(_) => Err(format!("cannot parse value {s:?} as a number")),
    }
}

/// The bucket width of a series: the most common positive difference between consecutive
/// distinct timestamps (ties: the smaller), rounded to whole seconds (at least 1 s).
/// `None` with fewer than two distinct timestamps.
pub fn infer_bucket_width(timestamps_ms: &[i64]) -> Option<Secs> {
    let mut ts = timestamps_ms.to_vec();
    ts.sort_unstable();
    ts.dedup();
    let mut counts: HashMap<i64, u64> = HashMap::new();
    for w in ts.windows(2) {
        *counts.entry(w[1] - w[0]).or_insert(0) += 1;
    }
    let (&diff, _) = counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))?;
    let secs = ((diff + 500) / 1000).max(1);
    Some(Secs(secs as u64))
}

/// A copy of `config` in which every series gets `bucket` (all per-signal/geo/service bucket
/// overrides are dropped) and an allowed lateness of at most `lateness` (and at most the
/// configured maximum number of buckets).
pub(crate) fn config_with_bucket(config: &Config, bucket: Secs, lateness: Option<Secs>) -> Config {
    let mut c = config.clone();
    let max_late = Secs(bucket.0 * MAX_LATENESS_BUCKETS);
    let clamp = |l: Secs| -> Secs {
        let l = lateness.map_or(l, |m| l.min(m));
        l.min(max_late)
    };
    fn fix(o: &mut Overrides, clamp: &dyn Fn(Secs) -> Secs) {
        o.bucket = None;
        o.allowed_lateness = o.allowed_lateness.map(clamp);
        for g in o.geos.iter_mut().flat_map(|m| m.values_mut()) {
            fix(g, clamp);
        }
    }
    c.detection.bucket = Some(bucket);
    c.detection.allowed_lateness = Some(clamp(
        c.detection
            .allowed_lateness
            .unwrap_or(Thresholds::default().allowed_lateness),
    ));
    for o in c
        .signals
        .values_mut()
        .chain(c.geos.values_mut())
        .chain(c.services.values_mut())
    {
        fix(o, &clamp);
    }
    c
}

fn fmt6(v: f64) -> String {
    format!("{v:.6}")
}

/// Quotes a CSV field if it needs it.
fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

// ---------------------------------------------------------------------------------------------
// Series ranking and capture (for the plot).

#[derive(Debug, Default, Clone, Copy)]
struct Rank {
    alert_buckets: u64,
    total: f64,
}

#[derive(Debug, Default)]
struct Ranker {
    by: HashMap<String, HashMap<String, HashMap<String, Rank>>>,
}

impl Ranker {
    fn add(&mut self, r: &BucketReport<'_>) {
        let by_geo = match self.by.get_mut(r.service) {
            Some(m) => m,
            None => self.by.entry(r.service.to_string()).or_default(),
        };
        let by_sig = match by_geo.get_mut(r.geo) {
            Some(m) => m,
            None => by_geo.entry(r.geo.to_string()).or_default(),
        };
        let rank = match by_sig.get_mut(r.signal) {
            Some(m) => m,
            None => by_sig.entry(r.signal.to_string()).or_default(),
        };
        rank.alert_buckets += r.alert as u64;
        rank.total += r.observed.unwrap_or(0.0);
    }

    fn top(&self) -> Option<SeriesName> {
        let mut best: Option<(SeriesName, Rank)> = None;
        for (s, m) in &self.by {
            for (g, m) in m {
                for (x, r) in m {
                    let name = SeriesName::new(s, g, x);
                    let better = match &best {
                        None => true,
                        Some((bn, br)) => {
                            (r.alert_buckets, r.total, std::cmp::Reverse(&name))
                                > (br.alert_buckets, br.total, std::cmp::Reverse(bn))
                        }
                    };
                    if better {
                        best = Some((name, *r));
                    }
                }
            }
        }
        best.map(|b| b.0)
    }
}

/// Full history of one series, for a plot.
#[derive(Debug)]
struct Capture {
    name: SeriesName,
    points: Vec<PlotPoint>,
    open_z: f64,
}

impl Capture {
    fn new(name: SeriesName, config: &EngineConfig) -> Self {
        let open_z = config
            .resolve(&name.service, &name.geo, &name.signal)
            .open_z;
        Self {
            name,
            points: Vec::new(),
            open_z,
        }
    }

    fn add(&mut self, r: &BucketReport<'_>) {
        if self.name.is(r.service, r.geo, r.signal) {
            self.points.push(PlotPoint {
                start_ms: r.start_ms,
                end_ms: r.end_ms,
                observed: r.observed,
                expected: r.expected,
                band: self.open_z * r.scale,
                alert: r.alert,
            });
        }
    }

    fn into_panel(self) -> Panel {
        Panel::new(self.name.to_string(), self.points)
    }
}

#[cfg(test)]
mod tests;
