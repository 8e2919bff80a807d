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
//!   rows that fall into one bucket (a width coarser than the data) are summed.
//!   Output: exactly one row per input row, in input order.
//!
//! Malformed lines never abort a run: each is reported as `file:line: reason`, counted by kind
//! and skipped (a CSV row still gets its output row, with empty numeric fields).
//!
//! Nothing here touches the terminal: progress is a callback, the summary a value.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime};

use crate::config::{Config, Overrides, Secs, MAX_LATENESS_BUCKETS};
use crate::engine::{BucketReport, Engine, EngineConfig, EngineSink, Ingest};
use crate::event::{decode_any_core, AnomalyEvent, OutageEvent, Timestamp};
use crate::plot::{Panel, PlotPoint};

/// Header of the output for a CSV series input: one row per input row.
pub const SERIES_HEADER: &str = "timestamp,value,expected,zscore,anomaly_score,alert";
/// Header of the output for a JSONL event input: one row per series and bucket.
pub const EVENTS_HEADER: &str =
    "timestamp,service,geo,signal,value,expected,zscore,anomaly_score,alert";

/// Series names a CSV without `service`/`geo`/`signal` columns gets.
pub const DEFAULT_SERVICE: &str = "series";
pub const DEFAULT_GEO: &str = "*";
pub const DEFAULT_SIGNAL: &str = "complaints";

/// How many malformed-line reports a summary keeps in full; the rest are only counted.
pub const MAX_REPORTED_LINES: usize = 20;

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
    pub fn new(service: &str, geo: &str, signal: &str) -> Self {
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
    /// The first [`MAX_REPORTED_LINES`] malformed or rejected lines, in full.
    pub reported: Vec<LineError>,
    pub series: u64,
    /// Series the engine already had when the run started (restored from a state file).
    pub series_restored: u64,
    pub buckets: u64,
    pub rows_written: u64,
    pub incidents_opened: u64,
    pub incidents_resolved: u64,
    pub anomaly_events: u64,
    /// CSV: bucket width per series and whether it was inferred.
    pub bucket_widths: Vec<(SeriesName, Secs, bool)>,
    pub elapsed: Duration,
}

impl Summary {
    pub fn malformed_total(&self) -> u64 {
        self.malformed.values().sum()
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Counts a malformed (or rejected) line; keeps the first ones in full and tells
    /// `progress` about those.
    fn issue(&mut self, e: LineError, malformed: bool, progress: &mut dyn Progress) {
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
    pub fn lines_per_sec(&self) -> f64 {
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
        let series = if self.series_restored > 0 {
            format!(
                "{} new, {} from the initial state",
                self.series, self.series_restored
            )
        } else {
            self.series.to_string()
        };
        row(f, "series:".into(), series)?;
        for (name, w, inferred) in self.bucket_widths.iter().take(10) {
            writeln!(
                f,
                "    {name}: bucket {w} ({})",
                if *inferred { "inferred" } else { "given" }
            )?;
        }
        if self.bucket_widths.len() > 10 {
            writeln!(f, "    ... {} more", self.bucket_widths.len() - 10)?;
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

/// Receives news while a file is replayed (a progress bar, a log).
pub trait Progress {
    /// Bytes of input read so far.
    fn bytes(&mut self, _read: u64) {}
    /// One of the first [`MAX_REPORTED_LINES`] malformed or rejected lines, when it is found.
    fn issue(&mut self, _line: &LineError) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

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
pub fn parse_value(s: &str) -> Result<Option<f64>, String> {
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
pub fn config_with_bucket(config: &Config, bucket: Secs, lateness: Option<Secs>) -> Config {
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
    c.detection.bucket = bucket;
    c.detection.allowed_lateness = clamp(c.detection.allowed_lateness);
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

// ---------------------------------------------------------------------------------------------
// JSONL events.

struct EventsSink<'a, 'b> {
    out: &'a mut dyn Write,
    incidents: Option<&'b mut dyn Write>,
    incident_events: IncidentEvents,
    error: Option<(bool, io::Error)>,
    rows: u64,
    capture: Option<Capture>,
    ranker: Option<Ranker>,
    line: String,
}

impl EngineSink for EventsSink<'_, '_> {
    fn bucket(&mut self, r: &BucketReport<'_>) {
        if let Some(c) = &mut self.capture {
            c.add(r);
        }
        if let Some(k) = &mut self.ranker {
            k.add(r);
        }
        if self.error.is_some() {
            return;
        }
        use std::fmt::Write as _;
        let line = &mut self.line;
        line.clear();
        let _ = write!(
            line,
            "{},{},{},{},",
            Timestamp(r.start_ms),
            r.service,
            r.geo,
            r.signal
        );
        match r.observed {
            Some(v) => {
                let _ = write!(
                    line,
                    "{v:.6},{:.6},{:.6},{:.6},{}",
                    r.expected, r.zscore, r.anomaly_score, r.alert as u8
                );
            }
            None => {
                let _ = write!(line, ",{:.6},,,{}", r.expected, r.alert as u8);
            }
        }
        line.push('\n');
        match self.out.write_all(line.as_bytes()) {
            Ok(()) => self.rows += 1,
            Err(e) => self.error = Some((false, e)),
        }
    }

    fn anomaly(&mut self, event: AnomalyEvent) {
        if self.incident_events == IncidentEvents::Series {
            self.write_incident(&event);
        }
    }

    fn outage(&mut self, event: OutageEvent) {
        if self.incident_events == IncidentEvents::Outages {
            self.write_incident(&event);
        }
    }
}

impl EventsSink<'_, '_> {
    fn write_incident(&mut self, event: &impl serde::Serialize) {
        if self.error.is_some() {
            return;
        }
        if let Some(w) = self.incidents.as_deref_mut() {
            let r = serde_json::to_writer(&mut *w, event)
                .map_err(io::Error::from)
                .and_then(|()| w.write_all(b"\n"));
            if let Err(e) = r {
                self.error = Some((true, e));
            }
        }
    }
}

/// Names used in error messages for the output files.
#[derive(Debug, Clone)]
pub struct OutputNames {
    pub output: String,
    pub incidents: String,
}

impl Default for OutputNames {
    fn default() -> Self {
        Self {
            output: "output".into(),
            incidents: "incidents".into(),
        }
    }
}

/// The engine [`replay_jsonl`] runs: `config`, with [`ReplayOptions::bucket`] applied to every
/// series. Restore a state file into it before [`replay_jsonl_with`] to continue from there.
pub fn jsonl_engine(config: &Config, opts: &ReplayOptions) -> Engine {
    Engine::new(match opts.bucket {
        Some(b) => config_with_bucket(config, b, None),
        None => config.clone(),
    })
}

/// Replays a JSONL file of events. `progress` is called now and then with the bytes read.
#[allow(clippy::too_many_arguments)]
pub fn replay_jsonl(
    file: &str,
    input: impl BufRead,
    config: &Config,
    opts: &ReplayOptions,
    out: &mut dyn Write,
    incidents: Option<&mut dyn Write>,
    names: &OutputNames,
    progress: &mut dyn Progress,
) -> Result<ReplayOutcome, ReplayError> {
    let mut engine = jsonl_engine(config, opts);
    replay_jsonl_with(
        &mut engine,
        file,
        input,
        opts,
        out,
        incidents,
        names,
        progress,
    )
}

/// Like [`replay_jsonl`], on an engine the caller made (see [`jsonl_engine`]) and possibly
/// restored from a state file; [`ReplayOptions::bucket`] is not applied again. At the end of
/// input every bucket is closed ([`Engine::finish`]) and the engine is left as it is, e.g. for
/// [`Engine::save_state`]. The summary counts this run only.
#[allow(clippy::too_many_arguments)]
pub fn replay_jsonl_with(
    engine: &mut Engine,
    file: &str,
    input: impl BufRead,
    opts: &ReplayOptions,
    out: &mut dyn Write,
    incidents: Option<&mut dyn Write>,
    names: &OutputNames,
    progress: &mut dyn Progress,
) -> Result<ReplayOutcome, ReplayError> {
    let started = Instant::now();
    engine.set_wall_clock(opts.wall_clock_ms);
    let config = engine.config().clone();
    let stats_before = engine.stats().clone();
    let series_before = engine.series_count() as u64;
    let mut summary = Summary {
        input: file.to_string(),
        format: Some(InputFormat::Jsonl),
        ..Summary::default()
    };
    let write_err = |names: &OutputNames, inc: bool, source: io::Error| ReplayError::Write {
        file: if inc {
            names.incidents.clone()
        } else {
            names.output.clone()
        },
        source,
    };
    out.write_all(EVENTS_HEADER.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| write_err(names, false, e))?;
    let mut sink = EventsSink {
        out,
        incidents,
        incident_events: opts.incident_events,
        error: None,
        rows: 0,
        capture: opts.capture.clone().map(|n| Capture::new(n, &config)),
        ranker: opts.rank_series.then(Ranker::default),
        line: String::with_capacity(128),
    };
    let mut input = input;
    let mut buf = Vec::with_capacity(512);
    let mut line_no = 0u64;
    let mut bytes = 0u64;
    let mut newest: Option<i64> = None;
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|source| ReplayError::Read {
                file: file.to_string(),
                source,
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        bytes += n as u64;
        if line_no % 65_536 == 0 {
            progress.bytes(bytes);
        }
        let mut line = buf.as_slice();
        while let [rest @ .., b'\n' | b'\r'] = line {
            line = rest;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            summary.blank_lines += 1;
            continue;
        }
        let ev = match decode_any_core(line) {
            Ok(ev) => ev,
            Err(e) => {
                summary.issue(
                    LineError {
                        file: file.to_string(),
                        line: line_no,
                        kind: e.kind(),
                        reason: e.to_string(),
                    },
                    true,
                    progress,
                );
                continue;
            }
        };
        match engine.observe(ev.observation()) {
            Ok(Ingest::Counted) => summary.accepted += 1,
            Ok(Ingest::Late) => summary.late += 1,
            Err(e) => {
                summary.issue(
                    LineError {
                        file: file.to_string(),
                        line: line_no,
                        kind: e.kind(),
                        reason: e.to_string(),
                    },
                    false,
                    progress,
                );
                continue;
            }
        }
        let ts = ev.ts.millis();
        if newest.is_none_or(|n| ts > n) {
            newest = Some(ts);
            engine.advance(ts, &mut sink);
            if let Some((inc, e)) = sink.error.take() {
                return Err(write_err(names, inc, e));
            }
        }
    }
    progress.bytes(bytes);
    engine.finish(&mut sink);
    if let Some((inc, e)) = sink.error.take() {
        return Err(write_err(names, inc, e));
    }
    sink.out.flush().map_err(|e| write_err(names, false, e))?;
    if let Some(w) = sink.incidents.as_deref_mut() {
        w.flush().map_err(|e| write_err(names, true, e))?;
    }
    let st = engine.stats();
    let b = &stats_before;
    summary.lines = line_no;
    summary.series = st.series_created - b.series_created;
    summary.series_restored = series_before;
    summary.buckets = st.buckets_closed - b.buckets_closed;
    summary.rows_written = sink.rows;
    summary.incidents_opened = st.incidents_opened - b.incidents_opened;
    summary.incidents_resolved = st.incidents_resolved - b.incidents_resolved;
    summary.anomaly_events = st.anomaly_events - b.anomaly_events;
    summary.elapsed = started.elapsed();
    Ok(ReplayOutcome {
        summary,
        captured: sink.capture.map(Capture::into_panel),
        top_series: sink.ranker.and_then(|r| r.top()),
    })
}

// ---------------------------------------------------------------------------------------------
// CSV count series.

#[derive(Debug)]
struct CsvRow {
    line: u64,
    ts_raw: String,
    ts_ms: Option<i64>,
    value: Option<f64>,
    series: usize,
    /// Parsed cleanly (a malformed row gets empty numeric fields).
    ok: bool,
}

#[derive(Debug, Clone, Copy)]
struct Rep {
    observed: Option<f64>,
    expected: f64,
    scale: f64,
    zscore: f64,
    anomaly_score: f64,
    alert: bool,
    end_ms: i64,
}

#[derive(Default)]
struct SeriesSink {
    reps: HashMap<i64, Rep>,
    /// Start of every bucket that has a row; `None`: keep every bucket (a plotted series).
    /// Memory follows the rows, not the time span: rows years apart close every bucket in
    /// between, and keeping those reports cost gigabytes.
    wanted: Option<ahash::AHashSet<i64>>,
    anomalies: Vec<AnomalyEvent>,
    outages: Vec<OutageEvent>,
}

impl EngineSink for SeriesSink {
    fn bucket(&mut self, r: &BucketReport<'_>) {
        if self
            .wanted
            .as_ref()
            .is_some_and(|w| !w.contains(&r.start_ms))
        {
            return;
        }
        self.reps.insert(
            r.start_ms,
            Rep {
                observed: r.observed,
                expected: r.expected,
                scale: r.scale,
                zscore: r.zscore,
                anomaly_score: r.anomaly_score,
                alert: r.alert,
                end_ms: r.end_ms,
            },
        );
    }
    fn anomaly(&mut self, event: AnomalyEvent) {
        self.anomalies.push(event);
    }
    fn outage(&mut self, event: OutageEvent) {
        self.outages.push(event);
    }
}

fn header_index(headers: &csv::ByteRecord, name: &str) -> Option<usize> {
    headers.iter().position(|h| {
        String::from_utf8_lossy(h)
            .trim_start_matches('\u{feff}')
            .trim()
            .eq_ignore_ascii_case(name)
    })
}

/// Replays a CSV count series (see the module docs). Writes exactly one output row per input
/// row, in input order.
#[allow(clippy::too_many_arguments)]
pub fn replay_csv(
    file: &str,
    input: impl Read,
    config: &Config,
    opts: &ReplayOptions,
    out: &mut dyn Write,
    incidents: Option<&mut dyn Write>,
    names: &OutputNames,
    progress: &mut dyn Progress,
) -> Result<ReplayOutcome, ReplayError> {
    let started = Instant::now();
    let mut summary = Summary {
        input: file.to_string(),
        format: Some(InputFormat::Csv),
        ..Summary::default()
    };
    let read_err = |source: io::Error| ReplayError::Read {
        file: file.to_string(),
        source,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let headers = rdr
        .byte_headers()
        .map_err(|e| ReplayError::Header {
            file: file.to_string(),
            line: 1,
            reason: format!("cannot read the header: {e}"),
        })?
        .clone();
    let col = |name: &str| header_index(&headers, name);
    let (Some(ts_col), Some(val_col)) = (col("timestamp"), col("value")) else {
        return Err(ReplayError::Header {
            file: file.to_string(),
            line: 1,
            reason: format!(
                "the header must name `timestamp` and `value` columns (optional: service, geo, signal); found {:?}",
                headers
                    .iter()
                    .map(|h| String::from_utf8_lossy(h).into_owned())
                    .collect::<Vec<_>>()
            ),
        });
    };
    let (svc_col, geo_col, sig_col) = (col("service"), col("geo"), col("signal"));

    let skew = config.engine.max_future_skew;
    // Pass 1: parse every row.
    let mut series: Vec<SeriesName> = Vec::new();
    let mut series_ix: HashMap<SeriesName, usize> = HashMap::new();
    let mut rows: Vec<CsvRow> = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let line = rdr.position().line() + 1;
        match rdr.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                if let csv::ErrorKind::Io(_) = e.kind() {
                    let csv::ErrorKind::Io(io) = e.into_kind() else {
                        unreachable!()
                    };
                    return Err(read_err(io));
                }
                summary.lines += 1;
                summary.issue(
                    LineError {
                        file: file.to_string(),
                        line,
                        kind: "csv",
                        reason: e.to_string(),
                    },
                    true,
                    progress,
                );
                rows.push(CsvRow {
                    line,
                    ts_raw: String::new(),
                    ts_ms: None,
                    value: None,
                    series: 0,
                    ok: false,
                });
                continue;
            }
        }
        let line = record.position().map_or(line, |p| p.line());
        summary.lines += 1;
        if summary.lines % 65_536 == 0 {
            progress.bytes(record.position().map_or(0, |p| p.byte()));
        }
        let field = |i: Option<usize>| -> Result<Option<&str>, String> {
            match i.and_then(|i| record.get(i)) {
                None => Ok(None),
                Some(b) => std::str::from_utf8(b)
                    .map(|s| Some(s.trim()))
                    .map_err(|_| "field is not valid UTF-8".to_string()),
            }
        };
        let mut problem: Option<(&'static str, String)> = None;
        let ts_raw = match field(Some(ts_col)) {
            Ok(s) => s.unwrap_or("").to_string(),
            Err(e) => {
                problem = Some(("utf8", format!("timestamp: {e}")));
                String::from_utf8_lossy(record.get(ts_col).unwrap_or_default()).into_owned()
            }
        };
        let mut ts_ms = None;
        if problem.is_none() {
            match parse_timestamp(&ts_raw) {
                Ok(t) => match opts.wall_clock_ms {
                    // Checked here, per row: one row dated decades ahead would otherwise make
                    // its series span decades, bucket by bucket.
                    Some(now) if t > now.saturating_add(skew.millis()) => {
                        problem = Some((
                            "ahead_of_wall_clock",
                            format!(
                                "column `timestamp`: {} is more than {skew} ahead of the wall clock {} (engine.max_future_skew)",
                                Timestamp(t),
                                Timestamp(now)
                            ),
                        ))
                    }
                    _ => ts_ms = Some(t),
                },
                Err(e) => problem = Some(("timestamp", format!("column `timestamp`: {e}"))),
            }
        }
        let mut value = None;
        if problem.is_none() {
            if record.len() != headers.len() {
                problem = Some((
                    "csv",
                    format!(
                        "row has {} fields, the header has {}",
                        record.len(),
                        headers.len()
                    ),
                ));
            } else {
                match field(Some(val_col)).and_then(|v| parse_value(v.unwrap_or(""))) {
                    Ok(v) => value = v,
                    Err(e) => problem = Some(("value", format!("column `value`: {e}"))),
                }
            }
        }
        let mut name = SeriesName::new(DEFAULT_SERVICE, DEFAULT_GEO, DEFAULT_SIGNAL);
        if problem.is_none() {
            for (c, slot) in [
                (svc_col, &mut name.service),
                (geo_col, &mut name.geo),
                (sig_col, &mut name.signal),
            ] {
                match field(c) {
                    Ok(Some(s)) if !s.is_empty() => *slot = s.to_string(),
                    Ok(_) => {}
                    Err(e) => problem = Some(("utf8", e)),
                }
            }
        }
        let ok = problem.is_none();
        if let Some((kind, reason)) = problem {
            summary.issue(
                LineError {
                    file: file.to_string(),
                    line,
                    kind,
                    reason,
                },
                true,
                progress,
            );
        }
        let ix = if ok {
            match series_ix.get(&name) {
                Some(&i) => i,
                None => {
                    series.push(name.clone());
                    series_ix.insert(name, series.len() - 1);
                    series.len() - 1
                }
            }
        } else {
            0
        };
        rows.push(CsvRow {
            line,
            ts_raw,
            ts_ms: if ok { ts_ms } else { None },
            value: if ok { value } else { None },
            series: ix,
            ok,
        });
    }
    progress.bytes(rdr.position().byte());

    // Pass 2: per series, infer the width and run an engine over its rows in time order.
    let mut by_series: Vec<Vec<usize>> = vec![Vec::new(); series.len()];
    for (i, r) in rows.iter().enumerate() {
        if r.ok {
            by_series[r.series].push(i);
        }
    }
    let mut reps: Vec<HashMap<i64, Rep>> = Vec::with_capacity(series.len());
    let mut widths_ms: Vec<i64> = Vec::with_capacity(series.len());
    let mut all_anomalies: Vec<AnomalyEvent> = Vec::new();
    let mut all_outages: Vec<OutageEvent> = Vec::new();
    let mut open_zs = Vec::with_capacity(series.len());
    for (si, idx) in by_series.iter_mut().enumerate() {
        let name = &series[si];
        let (width, inferred) = match opts.bucket {
            Some(b) => (b, false),
            None => {
                let ts: Vec<i64> = idx.iter().filter_map(|&i| rows[i].ts_ms).collect();
                match infer_bucket_width(&ts) {
                    Some(w) => (w, true),
                    None => (
                        config
                            .resolve(&name.service, &name.geo, &name.signal)
                            .bucket,
                        false,
                    ),
                }
            }
        };
        if width.0 > 7 * 86_400 {
            return Err(ReplayError::BucketWidth {
                file: file.to_string(),
                series: name.to_string(),
                reason: format!("bucket width {width} is more than 7d"),
            });
        }
        summary.bucket_widths.push((name.clone(), width, inferred));
        // Rows are fed in time order, so no lateness is needed; the series may have gaps of
        // any length, so the future-skew guard must not reject them.
        let mut cfg = config_with_bucket(config, width, Some(Secs(0)));
        cfg.engine.max_future_skew = Secs(200 * 365 * 86_400);
        open_zs.push(cfg.resolve(&name.service, &name.geo, &name.signal).open_z);
        let mut engine = Engine::new(cfg);
        let width_ms = width.millis();
        let plotted = opts.capture.as_ref() == Some(name);
        let mut sink = SeriesSink {
            wanted: (!plotted).then(|| {
                idx.iter()
                    .filter_map(|&i| rows[i].ts_ms)
                    .map(|ts| ts.div_euclid(width_ms) * width_ms)
                    .collect()
            }),
            ..SeriesSink::default()
        };
        idx.sort_by_key(|&i| rows[i].ts_ms);
        // Rows that fall into one bucket (e.g. 1-minute data with `--bucket 5m`) are summed.
        let mut bucket_sum: Option<(i64, f64)> = None;
        let mut prev_ts: Option<i64> = None;
        for &i in idx.iter() {
            let r = &rows[i];
            let Some(ts) = r.ts_ms else { continue };
            // Close the previous row's bucket (lateness is 0 here), then skip the missing
            // buckets up to this row's in one step rather than one by one.
            if let Some(prev) = prev_ts {
                let end = (prev.div_euclid(width_ms) + 1) * width_ms;
                if end <= ts {
                    engine.advance(end, &mut sink);
                }
            }
            engine.skip_missing_buckets(ts);
            if let Some(v) = r.value {
                let b = ts.div_euclid(width_ms);
                let sum = match bucket_sum {
                    Some((cur, s)) if cur == b => (s + v).min(crate::engine::MAX_BUCKET_VALUE),
                    _ => v,
                };
                match engine.set_bucket_value(&name.service, &name.geo, &name.signal, ts, sum) {
                    Ok(ingest) => {
                        bucket_sum = Some((b, sum));
                        match ingest {
                            Ingest::Counted => summary.accepted += 1,
                            Ingest::Late => summary.late += 1,
                        }
                    }
                    Err(e) => {
                        summary.issue(
                            LineError {
                                file: file.to_string(),
                                line: r.line,
                                kind: e.kind(),
                                reason: e.to_string(),
                            },
                            false,
                            progress,
                        );
                        // A rejected row is not used at all: its time must not move the
                        // watermark either (that closed, or expired, the previous row's
                        // bucket before its score was taken).
                        continue;
                    }
                }
            }
            prev_ts = Some(ts);
            engine.advance(ts, &mut sink);
        }
        engine.finish(&mut sink);
        let st = engine.stats();
        summary.series += st.series_created;
        summary.buckets += st.buckets_closed;
        summary.incidents_opened += st.incidents_opened;
        summary.incidents_resolved += st.incidents_resolved;
        summary.anomaly_events += st.anomaly_events;
        all_anomalies.extend(sink.anomalies);
        all_outages.extend(sink.outages);
        reps.push(sink.reps);
        widths_ms.push(width.millis());
    }
    // Output: one row per input row, in input order.
    let write_err = |inc: bool, source: io::Error| ReplayError::Write {
        file: if inc {
            names.incidents.clone()
        } else {
            names.output.clone()
        },
        source,
    };
    writeln!(out, "{SERIES_HEADER}").map_err(|e| write_err(false, e))?;
    let mut line = String::with_capacity(128);
    for r in &rows {
        use std::fmt::Write as _;
        line.clear();
        line.push_str(&csv_field(&r.ts_raw));
        let rep = match (r.ok, r.ts_ms) {
            (true, Some(ts)) => {
                let w = widths_ms[r.series];
                reps[r.series].get(&(ts.div_euclid(w) * w))
            }
            _ => None,
        };
        match rep {
            Some(p) => {
                let v = r.value.map(fmt6).unwrap_or_default();
                let (z, s) = match (r.value, p.observed) {
                    (Some(_), Some(_)) => (fmt6(p.zscore), fmt6(p.anomaly_score)),
                    _ => (String::new(), String::new()),
                };
                let _ = write!(line, ",{v},{},{z},{s},{}", fmt6(p.expected), p.alert as u8);
            }
            None => {
                let v = r.value.map(fmt6).unwrap_or_default();
                let _ = write!(line, ",{v},,,,0");
            }
        }
        line.push('\n');
        out.write_all(line.as_bytes())
            .map_err(|e| write_err(false, e))?;
        summary.rows_written += 1;
    }
    out.flush().map_err(|e| write_err(false, e))?;
    if let Some(w) = incidents {
        let mut lines: Vec<(Timestamp, Vec<u8>)> = match opts.incident_events {
            IncidentEvents::Series => all_anomalies
                .iter()
                .map(|a| (a.bucket_start, serde_json::to_vec(a)))
                .map(|(t, r)| r.map(|v| (t, v)))
                .collect::<Result<_, _>>(),
            IncidentEvents::Outages => all_outages
                .iter()
                .map(|a| (a.as_of, serde_json::to_vec(a)))
                .map(|(t, r)| r.map(|v| (t, v)))
                .collect::<Result<_, _>>(),
        }
        .map_err(|e| write_err(true, io::Error::from(e)))?;
        lines.sort_by_key(|(t, _)| *t);
        for (_, line) in &lines {
            w.write_all(line)
                .and_then(|()| w.write_all(b"\n"))
                .map_err(|e| write_err(true, e))?;
        }
        w.flush().map_err(|e| write_err(true, e))?;
    }

    // Plot data.
    let mut top_series = None;
    if opts.rank_series {
        top_series = (0..series.len())
            .max_by(|&a, &b| {
                let rank = |i: usize| {
                    let alerts = reps[i].values().filter(|p| p.alert).count();
                    let total: f64 = reps[i].values().filter_map(|p| p.observed).sum();
                    (alerts, total)
                };
                let (aa, at) = rank(a);
                let (ba, bt) = rank(b);
                aa.cmp(&ba).then(at.total_cmp(&bt)).then(b.cmp(&a))
            })
            .map(|i| series[i].clone());
    }
    let captured = opts.capture.as_ref().and_then(|want| {
        let i = series.iter().position(|s| s == want)?;
        let mut pts: Vec<(i64, Rep)> = reps[i].iter().map(|(k, v)| (*k, *v)).collect();
        pts.sort_by_key(|p| p.0);
        let points = pts
            .into_iter()
            .map(|(start, p)| PlotPoint {
                start_ms: start,
                end_ms: p.end_ms,
                observed: p.observed,
                expected: p.expected,
                band: open_zs[i] * p.scale,
                alert: p.alert,
            })
            .collect();
        Some(Panel::new(want.to_string(), points))
    });
    summary.elapsed = started.elapsed();
    Ok(ReplayOutcome {
        summary,
        captured,
        top_series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_bucket_overrides_every_level_and_keeps_lateness_in_bounds() {
        let cfg = Config::from_toml_str(
            r#"
            [detection]
            allowed_lateness = "10m"
            [signals.complaints]
            bucket = "1h"
            [services.telegram]
            bucket = "2m"
            [services.telegram.geos.IT]
            bucket = "3m"
            allowed_lateness = "20m"
            "#,
            "test",
        )
        .unwrap();
        let c = config_with_bucket(&cfg, Secs(5), None);
        for (svc, geo) in [("telegram", "IT"), ("telegram", "DE"), ("x", "*")] {
            let t = c.resolve(svc, geo, "complaints");
            assert_eq!(t.bucket, Secs(5));
            assert!(t.allowed_lateness.0 <= 5 * MAX_LATENESS_BUCKETS);
        }
        let c = config_with_bucket(&cfg, Secs(300), Some(Secs(0)));
        assert_eq!(
            c.resolve("telegram", "IT", "complaints").allowed_lateness,
            Secs(0)
        );
    }

    #[test]
    fn csv_header_with_byte_order_mark_and_odd_case_is_found() {
        let mut out = Vec::new();
        let r = replay_csv(
            "bom.csv",
            "\u{feff}Timestamp, VALUE\n2024-01-01 00:00:00,3\n".as_bytes(),
            &Config::default(),
            &ReplayOptions::default(),
            &mut out,
            None,
            &OutputNames::default(),
            &mut NoProgress,
        )
        .unwrap();
        assert_eq!(r.summary.rows_written, 1);
        assert_eq!(r.summary.malformed_total(), 0);
    }

    #[test]
    fn series_spec_needs_three_parts() {
        assert_eq!(
            SeriesName::parse("telegram/IT/complaints").unwrap(),
            SeriesName::new("telegram", "IT", "complaints")
        );
        assert!(SeriesName::parse("telegram/IT").is_err());
        assert!(SeriesName::parse("a//b").is_err());
    }
}
