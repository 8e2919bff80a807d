//! `spikewatch replay`: the library API (`spikewatch::replay`) and the built binary. One test
//! binary (`cargo test --test replay`; `cargo test --test replay scoring::` runs one module), a
//! module per concern:
//!
//! * `csv_input`: reading CSV rows: timestamp formats, one output row per input row, malformed,
//!   missing, rejected and far-future rows.
//! * `scoring`: how CSV series are scored: bucket widths, one series per `service,geo,signal`,
//!   steps and surges that alert, counts and gauges, the anomaly score's scale.
//! * `jsonl`: JSONL events through the library: rolled-up series and incident events.
//! * `binary`: the built binary, with JSONL and CSV input.
//!
//! The inputs they share and the library runner are here.

mod binary;
mod csv_input;
mod jsonl;
mod labels;
mod scoring;

use spikewatch::config::Config;
use spikewatch::event::AnomalyEvent;
use spikewatch::replay::{replay_csv, IncidentEvents, ReplayOptions, ReplayOutcome, ReplayOutput};

pub(crate) const T0: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z, epoch seconds

/// Runs a CSV through the library; returns the output lines and the outcome.
pub(crate) fn run_csv(
    text: &str,
    opts: &ReplayOptions,
) -> (Vec<String>, Vec<AnomalyEvent>, ReplayOutcome) {
    let mut out = Vec::new();
    let mut inc = Vec::new();
    let opts = &ReplayOptions {
        incident_events: IncidentEvents::Series,
        ..opts.clone()
    };
    let outcome = replay_csv(
        "series.csv",
        text.as_bytes(),
        &Config::default(),
        opts,
        ReplayOutput::new(&mut out).with_incidents(&mut inc),
    )
    .expect("replay runs");
    let lines = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let incidents = String::from_utf8(inc)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("incident line parses as AnomalyEvent"))
        .collect();
    (lines, incidents, outcome)
}

pub(crate) fn fields(line: &str) -> Vec<&str> {
    line.split(',').collect()
}

/// Deterministic noise in [-1, 1].
pub(crate) fn noise(i: u64) -> f64 {
    let x = i
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    ((x >> 33) % 2001) as f64 / 1000.0 - 1.0
}

/// `rows` buckets of `width_s` seconds: a daily wave around 100, plus `step` added on `step_rows`.
pub(crate) fn series_csv(
    rows: usize,
    width_s: i64,
    step_rows: std::ops::Range<usize>,
    step: f64,
) -> String {
    let mut s = String::from("timestamp,value\n");
    for i in 0..rows {
        let ts = T0 + i as i64 * width_s;
        let phase = (ts % 86_400) as f64 / 86_400.0 * std::f64::consts::TAU;
        let mut v = 100.0 + 15.0 * phase.sin() + 3.0 * noise(i as u64);
        if step_rows.contains(&i) {
            v += step;
        }
        s.push_str(&format!("{ts},{v:.3}\n"));
    }
    s
}

/// Complaint counts per minute for one city: ~20, with a spike of ~200 from minute 300 to 330.
pub(crate) fn complaints_jsonl(minutes: i64, bad: &[(usize, &str)]) -> String {
    let mut lines: Vec<String> = (0..minutes)
        .map(|m| {
            let ts = chrono::DateTime::from_timestamp(T0 + m * 60 + 30, 0)
                .unwrap()
                .to_rfc3339();
            let c = if (300..330).contains(&m) {
                200.0
            } else {
                20.0 + 4.0 * noise(m as u64)
            };
            format!(r#"{{"ts":"{ts}","service":"telegram","geo":"IT-RM","count":{c:.1}}}"#)
        })
        .collect();
    for &(at, text) in bad {
        lines.insert(at - 1, text.to_string());
    }
    lines.join("\n") + "\n"
}
