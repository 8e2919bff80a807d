//! Detection quality on real, labelled service metrics, held by CI.
//!
//! `tests/data/cloud_monitoring/` is the Microsoft Cloud Monitoring Dataset (MIT; see its
//! `SOURCE.md` and `LICENSE`): 60 production series, 1-minute and hourly, with windows
//! labelled by domain experts. Each is replayed exactly as `spikewatch replay` does and scored
//! against its labels (`spikewatch::replay::labels`). The totals README "Detection quality on
//! real data" reports are the bounds here: a change that finds fewer labelled events or raises
//! more false alerts fails, and one that does better should move the bounds and the README
//! together. `cargo bench --bench realdata` prints the same numbers per series.

use std::path::{Path, PathBuf};

use spikewatch::config::Config;
use spikewatch::event::Severity;
use spikewatch::replay::labels::LabelScore;
use spikewatch::replay::{replay_csv, ReplayOptions, ReplayOutput};

fn series_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cloud_monitoring");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/data/cloud_monitoring")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    files
}

fn score(path: &Path) -> LabelScore {
    score_paging_on(path, None)
}

/// The score of the incidents reaching `page_on` (`replay --page-on`), or of all.
fn score_paging_on(path: &Path, page_on: Option<Severity>) -> LabelScore {
    let text = std::fs::read_to_string(path).expect("read series");
    let outcome = replay_csv(
        &path.display().to_string(),
        text.as_bytes(),
        &Config::default(),
        &ReplayOptions {
            page_on,
            ..ReplayOptions::default()
        },
        ReplayOutput::new(&mut std::io::sink()),
    )
    .expect("replay");
    assert_eq!(outcome.summary.malformed_total(), 0, "{}", outcome.summary);
    let mut total = LabelScore::default();
    for (_, l) in &outcome.summary.labels {
        total.add(l);
    }
    total
}

#[test]
fn labelled_real_series_keep_their_events_found_and_false_alerts() {
    let files = series_files();
    assert_eq!(files.len(), 60);
    let mut total = LabelScore::default();
    let mut by_name = std::collections::BTreeMap::new();
    for f in &files {
        let s = score(f);
        total.add(&s);
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        by_name.insert(name, s);
    }
    let series = |suffix: &str| {
        by_name
            .iter()
            .find(|(n, _)| n.ends_with(suffix))
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("no series {suffix}"))
    };
    eprintln!(
        "cloud_monitoring: {} of {} labelled events found, {} of {} incidents false ({:.2} per series-month), median delay {:?} min",
        total.found,
        total.windows,
        total.false_alerts,
        total.incidents,
        total.false_per_month(),
        total.median_delay_min()
    );
    assert_eq!(total.windows, 299);
    // 105 and 6 since series with buckets under an hour are calibrated (115 and 8 before):
    // all of the difference is `machine-01` (below), and on WSD the same change removes 45
    // of 113 false alerts with as many events found (README "Detection quality on real
    // data"). 106 since sub-hour series open at 7.3 and a young series' outage minutes are
    // held from its tail (`engine::calibration::HOLD_EFFECT`).
    assert!(total.found >= 106, "events found fell to {}", total.found);
    assert!(
        total.false_alerts <= 6,
        "false alerts rose to {}",
        total.false_alerts
    );

    // The data set's own "false-positive tests" (SOURCE.md): their spikes are normal.
    for quiet in [
        "purchase-01",
        "mongo-01",
        "unavail-01",
        "ingress-03",
        "outbound-16",
        // Regression: its 2–4× minute-spikes, several a day, opened 3 incidents while the
        // tail calibration could not discount a heavy tail below a slope of 0.3.
        "mongo-04",
    ] {
        assert_eq!(series(quiet).incidents, 0, "{quiet} is normal throughout");
    }
    // Regression: a latency that is 0 in most hours scored its usual ~100 ms at another hour
    // as z ≈ 10¹⁰ (two false alerts) before `intermittent_scale_floor`.
    assert_eq!(series("outbound-23").false_alerts, 0);
    // Its 25 labelled events are 1–3-minute doublings, about one a day. Calibrated (a
    // 1-minute count), it learns them as its ordinary bursts, as `mongo-04` learns its
    // spikes, which the data set labels normal: 1 found and no false alert (11 found, each
    // within a minute, and 2 false alerts while counts were scored raw).
    let blips = series("machine-01");
    assert_eq!((blips.found, blips.false_alerts), (1, 0), "{blips:?}");
}

/// What a team paging only on `major` or `critical` incidents would have been woken for
/// (`replay --page-on major`; README "Detection quality on real data").
#[test]
fn paging_on_major_keeps_its_events_found_and_false_pages() {
    let mut total = LabelScore::default();
    for f in &series_files() {
        total.add(&score_paging_on(f, Some(Severity::Major)));
    }
    eprintln!(
        "cloud_monitoring, paging on major: {} of {} found, {} false of {} incidents",
        total.found, total.windows, total.false_alerts, total.incidents
    );
    // 97 since sub-hour series are calibrated (102 before; `machine-01`'s blips), 98 since
    // they open at 7.3.
    assert!(total.found >= 98, "events found fell to {}", total.found);
    assert!(
        total.false_alerts <= 2,
        "false pages rose to {}",
        total.false_alerts
    );
}
