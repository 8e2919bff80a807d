//! Detection quality on real, public, labelled series: `cargo bench --bench realdata`.
//!
//! By default it reads `tests/data/` (the Microsoft Cloud Monitoring Dataset, MIT, which
//! `tests/real_data.rs` holds to the README's numbers). `scripts/realdata/fetch.sh DIR` fetches
//! and converts the full set (with the AIOps KPI sample, whose licence allows no copy here);
//! point `SPIKEWATCH_REALDATA` at `DIR` for it. Layout: `DIR/<dataset>/*.csv`, each file one
//! series with the header `timestamp,value,label` (label 1 inside a labelled anomaly window).
//!
//! Every series is replayed exactly as `spikewatch replay --input FILE.csv` does (in process,
//! through [`replay_csv`]), with the configuration `benches/realdata/<dataset>.toml` when it
//! exists, else the embedded defaults, and scored against its labels as `replay` scores any
//! CSV with a `label` column (`spikewatch::replay::labels`). Reported per data set, then over
//! all of them, also split by how `replay` scored each series (count, or gauge: fractional
//! values):
//!
//! * **events found**: labelled windows (runs of label 1) that an incident overlaps or opens
//!   within `LABEL_SLACK_MS` (1 h) of;
//! * **false alerts per series-month**: incidents that overlap no labelled window (± 1 h),
//!   per 30 days of series;
//! * **detection delay**: from a found window's start to the end of the bucket whose `opened`
//!   (or re-`opened`) event announced it; 0 when an incident was already open.
//!
//! Then, per data set, a check of the labels themselves: how many false alerts start within
//! `COINCIDENCE_MS` (15 min) of a window labelled in *another* series of the same data set
//! (several KPIs of one service, several services of one site), against the same alerts moved
//! by whole days (same time of day, so the daily rhythm of labelling is kept). A false alert
//! that coincides far more often than its shifted copies is most likely a real event that its
//! own series left unlabelled. And how the data set labels short collapses (1–5 buckets at or
//! under 2 % of the series' median, between normal buckets): where it labels nearly all of
//! them, a false alert at an unlabelled one is most likely a missing label.
//!
//! `SPIKEWATCH_REALDATA_CONFIG=FILE` replaces every data set's configuration (to compare
//! settings); `SPIKEWATCH_REALDATA_VERBOSE=1` prints one line per series.

use std::path::{Path, PathBuf};

use spikewatch::config::Config;
use spikewatch::event::Severity;
use spikewatch::replay::labels::LabelScore;
use spikewatch::replay::{replay_csv, IncidentEvents, ReplayOptions, ReplayOutput};

/// One series' score against its labels (as `replay`'s summary reports it), and whether
/// `replay` scored it as a gauge; with `page_on`, of the incidents reaching that severity.
fn evaluate(path: &Path, config: &Config, page_on: Option<Severity>) -> (LabelScore, bool) {
    let text = std::fs::read_to_string(path).expect("read series");
    let outcome = replay_csv(
        &path.display().to_string(),
        text.as_bytes(),
        config,
        &ReplayOptions {
            incident_events: IncidentEvents::Series,
            page_on,
            ..ReplayOptions::default()
        },
        ReplayOutput::new(&mut std::io::sink()),
    )
    .expect("replay");
    let gauge = outcome.summary.series_setup.iter().any(|s| s.gauge);
    let mut score = LabelScore::default();
    for (_, l) in &outcome.summary.labels {
        score.add(l);
    }
    (score, gauge)
}

/// How close (either side of a labelled window of another series) a false alert must start to
/// count as coinciding with it.
const COINCIDENCE_MS: i64 = 15 * 60_000;

/// Whole-day shifts for the control: what coincidence the labelling's daily rhythm alone gives.
const CONTROL_SHIFT_DAYS: [i64; 8] = [-7, -3, -2, -1, 1, 2, 3, 7];

/// Whether `t` is within [`COINCIDENCE_MS`] of a span that `spans` gives for a series of the
/// data set other than the `own`th.
fn near_another_series(series: &[SeriesAudit], own: usize, t: i64, spans: Spans) -> bool {
    series.iter().enumerate().any(|(j, other)| {
        j != own
            && spans(other)
                .iter()
                .any(|&(s, e)| s - COINCIDENCE_MS <= t && t <= e + COINCIDENCE_MS)
    })
}

/// False alerts (moved by `shift_ms`) near a span that `spans` gives for another series.
fn coinciding_false_alerts(series: &[SeriesAudit], shift_ms: i64, spans: Spans) -> usize {
    series
        .iter()
        .enumerate()
        .map(|(i, own)| {
            own.score
                .false_at_ms
                .iter()
                .filter(|&&at| near_another_series(series, i, at + shift_ms, spans))
                .count()
        })
        .sum()
}

/// Which spans of another series a false alert is checked against.
type Spans = fn(&SeriesAudit) -> &[(i64, i64)];

/// Labelled windows of a series.
fn labelled(s: &SeriesAudit) -> &[(i64, i64)] {
    &s.score.windows_ms
}

/// False alerts of a series, as instants.
fn false_alerts(s: &SeriesAudit) -> &[(i64, i64)] {
    &s.false_alerts
}

/// The count at the data, and at each whole-day shift of the false alerts.
fn with_control(series: &[SeriesAudit], spans: Spans) -> (usize, Vec<usize>) {
    let shifted = CONTROL_SHIFT_DAYS
        .iter()
        .map(|d| coinciding_false_alerts(series, d * 86_400_000, spans))
        .collect();
    (coinciding_false_alerts(series, 0, spans), shifted)
}

/// One series' score and its short collapses, for the checks of the labels.
struct SeriesAudit {
    score: LabelScore,
    /// The starts of its false alerts, as `(start, start)` spans.
    false_alerts: Vec<(i64, i64)>,
    collapses: Vec<(i64, i64, bool)>,
}

/// What the checks of the labels count for one data set (or the sum of several).
#[derive(Default)]
struct LabelAudit {
    false_alerts: usize,
    /// Near a window labelled in another series, at the data and at each control shift.
    at_labelled: (usize, Vec<usize>),
    /// Near a false alert of another series, likewise. Weaker than it looks: a fault of the
    /// engine that every series shares (a gap read as zero traffic) also pages many series at
    /// once.
    at_false: (usize, Vec<usize>),
    collapses: usize,
    collapses_labelled: usize,
    /// False alerts that start within 5 minutes of one of their own series' short collapses.
    at_collapse: usize,
    /// False alerts at a short collapse or another series' false alert: the two checks that
    /// the shifted controls (or the data set's own labelling) leave little to chance.
    strong: usize,
    /// False alerts with at least one of the three.
    any: usize,
}

impl LabelAudit {
    fn of(series: &[SeriesAudit]) -> Self {
        const NEAR_MS: i64 = 5 * 60_000;
        let at_collapse = |s: &SeriesAudit, at: i64| {
            s.collapses
                .iter()
                .any(|&(b, e, _)| b - NEAR_MS <= at && at <= e + NEAR_MS)
        };
        let (mut any, mut strong, mut at_c) = (0, 0, 0);
        for (i, s) in series.iter().enumerate() {
            for &at in &s.score.false_at_ms {
                let c = at_collapse(s, at);
                let f = near_another_series(series, i, at, false_alerts);
                at_c += usize::from(c);
                strong += usize::from(c || f);
                any += usize::from(c || f || near_another_series(series, i, at, labelled));
            }
        }
        LabelAudit {
            false_alerts: series.iter().map(|s| s.score.false_alerts).sum(),
            at_labelled: with_control(series, labelled),
            at_false: with_control(series, false_alerts),
            collapses: series.iter().map(|s| s.collapses.len()).sum(),
            collapses_labelled: series
                .iter()
                .map(|s| s.collapses.iter().filter(|c| c.2).count())
                .sum(),
            at_collapse: at_c,
            strong,
            any,
        }
    }

    fn add(&mut self, o: &LabelAudit) {
        let add = |a: &mut (usize, Vec<usize>), b: &(usize, Vec<usize>)| {
            a.0 += b.0;
            a.1.resize(b.1.len(), 0);
            a.1.iter_mut().zip(&b.1).for_each(|(x, y)| *x += y);
        };
        self.false_alerts += o.false_alerts;
        add(&mut self.at_labelled, &o.at_labelled);
        add(&mut self.at_false, &o.at_false);
        self.collapses += o.collapses;
        self.collapses_labelled += o.collapses_labelled;
        self.at_collapse += o.at_collapse;
        self.strong += o.strong;
        self.any += o.any;
    }

    fn print(&self, name: &str) {
        let control = |(at, shifted): &(usize, Vec<usize>)| {
            format!(
                "{at} (moved by {CONTROL_SHIFT_DAYS:?} days: {shifted:?}, mean {:.1})",
                mean(shifted)
            )
        };
        println!("  {name}: {} false alerts", self.false_alerts);
        println!(
            "    within 15 min of an event labelled in another series: {}",
            control(&self.at_labelled)
        );
        println!(
            "    within 15 min of a false alert of another series: {}",
            control(&self.at_false)
        );
        println!(
            "    within 5 min of a short collapse of their own series: {} (the data set labels {} of its {} short collapses)",
            self.at_collapse, self.collapses_labelled, self.collapses
        );
        println!(
            "    at a short collapse or another series' false alert: {}; any of the three: {}",
            self.strong, self.any
        );
    }
}

/// Longest run of low buckets that is a short collapse, not an outage.
const COLLAPSE_MAX_BUCKETS: usize = 5;

/// Short collapses of one series: `(start_ms, end_ms, labelled)`, each a run of at most
/// [`COLLAPSE_MAX_BUCKETS`] buckets at or under 2 % of the series' median between higher
/// buckets, labelled when a label 1 is on it or on a bucket next to it. Series with a median
/// of 20 or less have none (their zeros are ordinary).
fn short_collapses(path: &Path) -> Vec<(i64, i64, bool)> {
    let mut rdr = csv::Reader::from_path(path).expect("series");
    let h = rdr.headers().expect("header").clone();
    let col = |name: &str| h.iter().position(|x| x == name).expect("column");
    let (ts, value, label) = (col("timestamp"), col("value"), col("label"));
    // An empty value is a missing bucket, not a collapse.
    let points: Vec<(i64, f64, bool)> = rdr
        .records()
        .flatten()
        .filter_map(|r| {
            let t = r.get(ts)?.parse::<f64>().ok()?;
            let v = r.get(value)?.trim().parse::<f64>().ok()?;
            Some(((t * 1000.0) as i64, v, r.get(label)?.trim() == "1"))
        })
        .collect();
    let mut sorted: Vec<f64> = points.iter().map(|p| p.1).collect();
    sorted.sort_by(f64::total_cmp);
    let Some(&median) = sorted.get(sorted.len() / 2) else {
        return Vec::new();
    };
    if median <= 20.0 {
        return Vec::new();
    }
    let low = 0.02 * median;
    let mut out = Vec::new();
    let mut i = 0;
    while i < points.len() {
        if points[i].1 > low {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < points.len() && points[j].1 <= low {
            j += 1;
        }
        if j - i <= COLLAPSE_MAX_BUCKETS && i > 0 && j < points.len() {
            let labelled = points[i - 1..=j].iter().any(|p| p.2);
            out.push((points[i].0, points[j - 1].0, labelled));
        }
        i = j;
    }
    out
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
    // The copy in the repository (cloud_monitoring, which tests/real_data.rs holds to its
    // numbers) unless a directory made by scripts/realdata/fetch.sh is given.
    let dir = std::env::var_os("SPIKEWATCH_REALDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data"));
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
    let mut total = LabelScore::default();
    // By how `replay` scored each series (README "Gauges").
    let (mut counts, mut gauges) = (LabelScore::default(), LabelScore::default());
    // What a subscriber paging only on `major` or `critical` incidents would have seen.
    let mut paged = LabelScore::default();
    // Per data set, every series' score (the label check compares series with each other).
    let mut by_dataset: Vec<(String, Vec<SeriesAudit>)> = Vec::new();
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
        let mut tally = LabelScore::default();
        let mut series = Vec::with_capacity(files.len());
        for f in &files {
            let (t, gauge) = evaluate(f, &config, None);
            paged.add(&evaluate(f, &config, Some(Severity::Major)).0);
            if verbose {
                let first = first_timestamp_ms(f);
                let false_at_days: Vec<f64> = t
                    .false_at_ms
                    .iter()
                    .map(|&ms| (ms - first) as f64 / 86_400_000.0)
                    .collect();
                println!(
                    "  {:<40} found {}/{} incidents {} false {} (at day {:.1?}) delay {:?}",
                    f.file_name().unwrap().to_string_lossy(),
                    t.found,
                    t.windows,
                    t.incidents,
                    t.false_alerts,
                    false_at_days,
                    t.delays_min
                );
            }
            tally.add(&t);
            if gauge {
                gauges.add(&t);
            } else {
                counts.add(&t);
            }
            series.push(SeriesAudit {
                false_alerts: t.false_at_ms.iter().map(|&at| (at, at)).collect(),
                collapses: short_collapses(f),
                score: t,
            });
        }
        print_row(&name, &tally);
        total.add(&tally);
        by_dataset.push((name, series));
    }
    print_row("all", &total);
    print_row("  of which counts", &counts);
    print_row("  of which gauges", &gauges);
    print_row("all, paging on major+", &paged);
    // Checks of the labels: false alerts that are most likely real events left unlabelled.
    println!("false alerts, checked against the labels (COINCIDENCE_MS = 15 min):");
    let mut all = LabelAudit::default();
    for (name, series) in &by_dataset {
        let audit = LabelAudit::of(series);
        audit.print(name);
        all.add(&audit);
    }
    all.print("all");
}

fn mean(xs: &[usize]) -> f64 {
    xs.iter().sum::<usize>() as f64 / xs.len().max(1) as f64
}

/// The first row's timestamp (the verbose output says when false alerts were, in days).
fn first_timestamp_ms(path: &Path) -> i64 {
    let mut rdr = csv::Reader::from_path(path).expect("series");
    let ts = rdr
        .headers()
        .expect("header")
        .iter()
        .position(|h| h == "timestamp");
    rdr.records()
        .flatten()
        .find_map(|r| r.get(ts?)?.parse::<f64>().ok())
        .map_or(0, |secs| (secs * 1000.0) as i64)
}

fn print_row(name: &str, t: &LabelScore) {
    println!(
        "{:<22} {:>6} {:>7.1} {:>12} {:>10} {:>9} {:>14.2} {:>12}",
        name,
        t.series,
        t.days / 30.0,
        format!("{}/{}", t.found, t.windows),
        t.incidents,
        t.false_alerts,
        t.false_per_month(),
        t.median_delay_min()
            .map_or("-".to_string(), |d| format!("{d:.0} min")),
    );
}
