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
        }
        print_row(&name, &tally);
        total.add(&tally);
    }
    print_row("all", &total);
    print_row("  of which counts", &counts);
    print_row("  of which gauges", &gauges);
    print_row("all, paging on major+", &paged);
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
