//! Detection quality on real, public, labelled series: `cargo bench --bench realdata`.
//!
//! The data is not in the repository (its licences differ and it is large): fetch it with
//! `scripts/realdata/fetch.sh DIR` (README "Detection quality on real data") and point
//! `SPIKEWATCH_REALDATA` at `DIR`. Layout: `DIR/<dataset>/*.csv`, each file one series with
//! the header `timestamp,value,label` (label 1 inside a labelled anomaly window).
//!
//! Every series is replayed exactly as `spikewatch replay --input FILE.csv` does (in process,
//! through [`replay_csv`]), with the configuration `benches/realdata/<dataset>.toml` when it
//! exists, else the embedded defaults. Reported per data set, then over all of them, also
//! split by how `replay` scored each series (count, or gauge: fractional values):
//!
//! * **events found**: labelled windows (runs of label 1) that an incident overlaps or opens
//!   within `SLACK` of;
//! * **false alerts per series-month**: incidents that overlap no labelled window (± `SLACK`),
//!   per 30 days of series;
//! * **detection delay**: from a found window's start to the end of the bucket whose `opened`
//!   (or re-`opened`) event announced it; 0 when an incident was already open.
//!
//! `SPIKEWATCH_REALDATA_CONFIG=FILE` replaces every data set's configuration (to compare
//! settings); `SPIKEWATCH_REALDATA_VERBOSE=1` prints one line per series.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use spikewatch::config::Config;
use spikewatch::event::{AnomalyEvent, IncidentState};
use spikewatch::replay::{replay_csv, IncidentEvents, ReplayOptions, ReplayOutput};

/// Incidents this close to a labelled window still count as finding it (labels mark the core
/// of an event; the rise before and the tail after are the same event).
const SLACK_MS: i64 = 3_600_000;

#[derive(Default, Clone)]
struct Tally {
    series: usize,
    days: f64,
    windows: usize,
    found: usize,
    incidents: usize,
    false_alerts: usize,
    delays_min: Vec<f64>,
    /// Start of each false alert, in days since the series' first bucket (verbose output).
    false_at_days: Vec<f64>,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.series += o.series;
        self.days += o.days;
        self.windows += o.windows;
        self.found += o.found;
        self.incidents += o.incidents;
        self.false_alerts += o.false_alerts;
        self.delays_min.extend_from_slice(&o.delays_min);
    }

    fn false_per_month(&self) -> f64 {
        if self.days > 0.0 {
            self.false_alerts as f64 / (self.days / 30.0)
        } else {
            0.0
        }
    }

    fn median_delay(&self) -> Option<f64> {
        let mut d = self.delays_min.clone();
        if d.is_empty() {
            return None;
        }
        d.sort_by(f64::total_cmp);
        Some(d[d.len() / 2])
    }
}

/// One incident: its span and when it was announced (each open or re-open).
struct Span {
    start: i64,
    end: i64,
    announced: Vec<i64>,
}

fn parse_ts(s: &str) -> Option<i64> {
    if let Ok(secs) = s.parse::<f64>() {
        return Some((secs * 1000.0) as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Labelled windows `[start, end)` and the series' first and last timestamps.
fn label_windows(text: &str) -> (Vec<(i64, i64)>, i64, i64) {
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let headers = rdr.headers().expect("header").clone();
    let ix = |n: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(n));
    let (ts_i, label_i) = (ix("timestamp").expect("timestamp"), ix("label"));
    let mut windows = Vec::new();
    let (mut first, mut last, mut step) = (i64::MAX, i64::MIN, i64::MAX);
    let mut open: Option<i64> = None;
    for rec in rdr.records().flatten() {
        let Some(ts) = rec.get(ts_i).and_then(parse_ts) else {
            continue;
        };
        if last != i64::MIN && ts > last {
            step = step.min(ts - last);
        }
        first = first.min(ts);
        let label = label_i.and_then(|i| rec.get(i)).is_some_and(|v| v == "1");
        match (label, open) {
            (true, None) => open = Some(ts),
            (false, Some(s)) => {
                windows.push((s, ts));
                open = None;
            }
            _ => {}
        }
        last = last.max(ts);
    }
    let step = if step == i64::MAX { 60_000 } else { step };
    if let Some(s) = open {
        windows.push((s, last + step));
    }
    (windows, first, last + step)
}

fn incidents(events: &[AnomalyEvent], end_ms: i64) -> Vec<Span> {
    // Per id: the span, and the re-open count of the last event seen.
    let mut by_id: BTreeMap<&str, (Span, u32)> = BTreeMap::new();
    for e in events {
        let (s, reopened) = by_id.entry(&e.incident_id).or_insert((
            Span {
                start: e.opened_at.0,
                end: end_ms,
                announced: Vec::new(),
            },
            0,
        ));
        if e.state == IncidentState::Opened || e.reopened > *reopened {
            s.announced.push(e.bucket_end.0);
            s.end = end_ms;
        }
        *reopened = e.reopened;
        if e.state == IncidentState::Resolved {
            s.end = e.resolved_at.map_or(e.bucket_end.0, |t| t.0);
        }
    }
    by_id.into_values().map(|(s, _)| s).collect()
}

/// One series' tally, and whether `replay` scored it as a gauge.
fn evaluate(path: &Path, config: &Config) -> (Tally, bool) {
    let text = std::fs::read_to_string(path).expect("read series");
    let (windows, first, last) = label_windows(&text);
    let mut out = Vec::new();
    let mut inc_out = Vec::new();
    let outcome = replay_csv(
        &path.display().to_string(),
        text.as_bytes(),
        config,
        &ReplayOptions {
            incident_events: IncidentEvents::Series,
            ..ReplayOptions::default()
        },
        ReplayOutput::new(&mut out).with_incidents(&mut inc_out),
    )
    .expect("replay");
    let gauge = outcome.summary.series_setup.iter().any(|s| s.gauge);
    let events: Vec<AnomalyEvent> = inc_out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("anomaly event"))
        .collect();
    let spans = incidents(&events, last);
    let mut t = Tally {
        series: 1,
        days: (last - first) as f64 / 86_400_000.0,
        windows: windows.len(),
        incidents: spans.len(),
        ..Tally::default()
    };
    for &(ws, we) in &windows {
        let (lo, hi) = (ws - SLACK_MS, we + SLACK_MS);
        let mut delay: Option<i64> = None;
        for s in &spans {
            if s.start < hi && s.end > lo {
                let d = if s.start <= ws && s.end > ws {
                    // Open already, or opened before the window and still open.
                    s.announced
                        .iter()
                        .filter(|&&a| a >= lo)
                        .map(|&a| (a - ws).max(0))
                        .min()
                        .unwrap_or(0)
                } else {
                    s.announced
                        .iter()
                        .filter(|&&a| a >= lo && a < hi)
                        .map(|&a| (a - ws).max(0))
                        .min()
                        .unwrap_or((s.start - ws).max(0))
                };
                delay = Some(delay.map_or(d, |x| x.min(d)));
            }
        }
        if let Some(d) = delay {
            t.found += 1;
            t.delays_min.push(d as f64 / 60_000.0);
        }
    }
    t.false_at_days = spans
        .iter()
        .filter(|s| {
            !windows
                .iter()
                .any(|&(ws, we)| s.start < we + SLACK_MS && s.end > ws - SLACK_MS)
        })
        .map(|s| (s.start - first) as f64 / 86_400_000.0)
        .collect();
    t.false_alerts = t.false_at_days.len();
    (t, gauge)
}

/// A series file has `timestamp`, `value` and `label` columns (a data set may hold others).
fn is_series(path: &Path) -> bool {
    csv::Reader::from_path(path)
        .and_then(|mut r| r.headers().cloned())
        .is_ok_and(|h| {
            ["timestamp", "value", "label"]
                .iter()
                .all(|c| h.iter().any(|x| x == *c))
        })
}

fn config_for(dataset: &str) -> Config {
    let path = std::env::var_os("SPIKEWATCH_REALDATA_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("benches/realdata")
                .join(format!("{dataset}.toml"))
        });
    if path.exists() {
        Config::load(Some(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    } else {
        Config::default()
    }
}

fn main() {
    let Some(dir) = std::env::var_os("SPIKEWATCH_REALDATA") else {
        eprintln!(
            "realdata: set SPIKEWATCH_REALDATA to a directory made by scripts/realdata/fetch.sh DIR; skipped"
        );
        return;
    };
    let verbose = std::env::var_os("SPIKEWATCH_REALDATA_VERBOSE").is_some();
    let mut datasets: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read SPIKEWATCH_REALDATA")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    datasets.sort();
    println!(
        "{:<22} {:>6} {:>7} {:>12} {:>10} {:>9} {:>14} {:>12}",
        "data set",
        "series",
        "months",
        "events found",
        "incidents",
        "false",
        "false/ser-mon",
        "median delay"
    );
    let mut total = Tally::default();
    // By how `replay` scored each series (README "Gauges").
    let (mut counts, mut gauges) = (Tally::default(), Tally::default());
    for ds in &datasets {
        let name = ds.file_name().unwrap().to_string_lossy().into_owned();
        let config = config_for(&name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(ds)
            .expect("read data set")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "csv"))
            .filter(|p| is_series(p))
            .collect();
        files.sort();
        if files.is_empty() {
            continue; // e.g. the fetch script's `raw/` download directory
        }
        let mut tally = Tally::default();
        for f in &files {
            let (t, gauge) = evaluate(f, &config);
            if verbose {
                println!(
                    "  {:<40} found {}/{} incidents {} false {} (at day {:.1?}) delay {:?}",
                    f.file_name().unwrap().to_string_lossy(),
                    t.found,
                    t.windows,
                    t.incidents,
                    t.false_alerts,
                    t.false_at_days,
                    t.delays_min
                );
            }
            tally.add(&t);
            if gauge {
                gauges.add(&t);
            } else {
                counts.add(&t);
            }
        }
        print_row(&name, &tally);
        total.add(&tally);
    }
    print_row("all", &total);
    print_row("  of which counts", &counts);
    print_row("  of which gauges", &gauges);
}

fn print_row(name: &str, t: &Tally) {
    println!(
        "{:<22} {:>6} {:>7.1} {:>12} {:>10} {:>9} {:>14.2} {:>12}",
        name,
        t.series,
        t.days / 30.0,
        format!("{}/{}", t.found, t.windows),
        t.incidents,
        t.false_alerts,
        t.false_per_month(),
        t.median_delay()
            .map_or("-".to_string(), |d| format!("{d:.0} min")),
    );
}
