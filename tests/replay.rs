//! `spikewatch replay`: the library API (`spikewatch::replay`) and the built binary.

use std::path::Path;
use std::process::Command;

use spikewatch::config::{Config, Secs};
use spikewatch::engine::score;
use spikewatch::event::{AnomalyEvent, IncidentState};
use spikewatch::replay::{
    infer_bucket_width, parse_timestamp, replay_csv, replay_jsonl, IncidentEvents, ReplayOptions,
    ReplayOutcome, ReplayOutput, ValueKind, SERIES_HEADER,
};

const T0: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z, epoch seconds

/// Runs a CSV through the library; returns the output lines and the outcome.
fn run_csv(text: &str, opts: &ReplayOptions) -> (Vec<String>, Vec<AnomalyEvent>, ReplayOutcome) {
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

fn fields(line: &str) -> Vec<&str> {
    line.split(',').collect()
}

/// Deterministic noise in [-1, 1].
fn noise(i: u64) -> f64 {
    let x = i
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    ((x >> 33) % 2001) as f64 / 1000.0 - 1.0
}

/// `rows` buckets of `width_s` seconds: a daily wave around 100, plus `step` added on `step_rows`.
fn series_csv(rows: usize, width_s: i64, step_rows: std::ops::Range<usize>, step: f64) -> String {
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

#[test]
fn csv_timestamps_in_all_three_formats_parse_to_the_same_instant_and_echo_as_given() {
    let want = (T0 + 300) * 1000;
    for s in [
        "2024-01-01 00:05:00",
        "2024-01-01T00:05:00Z",
        "2024-01-01T01:05:00+01:00",
        "1704067500",
        "1704067500.0",
    ] {
        assert_eq!(parse_timestamp(s), Ok(want), "{s}");
    }
    assert!(parse_timestamp("01/01/2024").is_err());

    // One file mixing the formats: every row is scored and keeps its own spelling.
    let mut csv = String::from("timestamp,value\n");
    let mut given = Vec::new();
    for i in 0..90i64 {
        let ts = T0 + i * 60;
        let dt = chrono::DateTime::from_timestamp(ts, 0).unwrap();
        let spelled = match i % 3 {
            0 => dt.format("%Y-%m-%d %H:%M:%S").to_string(),
            1 => dt.to_rfc3339(),
            _ => ts.to_string(),
        };
        csv.push_str(&format!("{spelled},{}\n", 20 + i % 4));
        given.push(spelled);
    }
    let (lines, _, outcome) = run_csv(&csv, &ReplayOptions::default());
    assert_eq!(lines[0], SERIES_HEADER);
    assert_eq!(lines.len(), 91);
    for (line, spelled) in lines[1..].iter().zip(&given) {
        let f: Vec<&str> = fields(line);
        assert_eq!(f[0], spelled.as_str());
        assert!(!f[2].is_empty(), "row {line} has an expected value");
    }
    assert_eq!(outcome.summary.malformed_total(), 0);
    assert_eq!(outcome.summary.series_setup[0].bucket, Secs(60));
}

#[test]
fn csv_output_has_one_row_per_input_row_in_order_including_malformed_and_missing_rows() {
    let mut csv = String::from("timestamp,value\n");
    let mut spelled = Vec::new();
    for i in 0..120i64 {
        let ts = T0 + i * 60;
        let row = match i {
            10 => "not-a-time,12".to_string(),
            11 => format!("{ts},"),        // missing value: missing data
            12 => format!("{ts},twelve"),  // unparseable value
            13 => format!("{ts},5,extra"), // ragged row
            14 => format!("{ts},NaN"),     // NaN is an error, not missing data (issue 13)
            15 => format!("{ts},-3"),      // so is a negative count
            16 => format!("{ts},inf"),     // and an infinite one
            _ => format!("{ts},{}", 30 + i % 5),
        };
        if i == 40 {
            continue; // a missing row: a gap, not a zero
        }
        spelled.push(row.split(',').next().unwrap().to_string());
        csv.push_str(&row);
        csv.push('\n');
    }
    // Out of order rows are fine too: the output keeps the input order.
    csv.push_str(&format!("{},33\n", T0 + 40 * 60));
    spelled.push((T0 + 40 * 60).to_string());

    let (lines, _, outcome) = run_csv(&csv, &ReplayOptions::default());
    assert_eq!(
        lines.len() - 1,
        spelled.len(),
        "one output row per input row"
    );
    for (line, ts) in lines[1..].iter().zip(&spelled) {
        assert_eq!(fields(line)[0], ts.as_str(), "same order as the input");
        assert_eq!(fields(line).len(), 6);
    }
    let row = |i: usize| {
        fields(&lines[1 + i])
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    // Malformed rows: timestamp echoed, numeric fields empty, alert 0.
    for i in [10, 12, 13, 14, 15, 16] {
        let r = row(i);
        assert_eq!(&r[1..], ["", "", "", "", "0"], "row {i}: {r:?}");
    }
    // A missing value: no value and no score, but the expected value is known.
    let r = row(11);
    assert_eq!(r[1], "");
    assert!(!r[2].is_empty(), "row 11: {r:?}");
    assert_eq!((r[3].as_str(), r[4].as_str()), ("", ""));
    let s = &outcome.summary;
    assert_eq!(s.malformed_total(), 6);
    assert_eq!(s.malformed.get("timestamp"), Some(&1));
    assert_eq!(s.malformed.get("value"), Some(&4));
    assert_eq!(s.malformed.get("csv"), Some(&1));
    assert_eq!(
        s.reported[0]
            .to_string()
            .split(':')
            .take(2)
            .collect::<Vec<_>>(),
        ["series.csv", "12"]
    );
    assert_eq!(s.rows_written as usize, spelled.len());
}

/// Regression (issue 13, item 2): `NaN`, negative and infinite CSV values were read as missing
/// data or accepted. Each is now an error naming the row, the column and why.
#[test]
fn csv_nan_negative_and_infinite_values_are_per_row_errors_naming_row_and_column() {
    let mut csv = String::from("timestamp,value\n");
    for i in 0..30i64 {
        let v = match i {
            5 => "NaN".to_string(),
            6 => "-1".to_string(),
            7 => "-inf".to_string(),
            8 => "1e308".to_string(),
            _ => "10".to_string(),
        };
        csv.push_str(&format!("{},{v}\n", T0 + i * 60));
    }
    let (lines, _, outcome) = run_csv(&csv, &ReplayOptions::default());
    let s = &outcome.summary;
    assert_eq!(s.malformed.get("value"), Some(&4), "{:?}", s.reported);
    let reasons: Vec<String> = s.reported.iter().map(|e| e.to_string()).collect();
    for (row, why) in [
        (7, "not a number"),
        (8, "negative"),
        (9, "not a finite number"),
        (10, "above the limit"),
    ] {
        let r = reasons
            .iter()
            .find(|r| r.starts_with(&format!("series.csv:{row}:")))
            .unwrap_or_else(|| panic!("no report for line {row}: {reasons:?}"));
        assert!(r.contains("column `value`") && r.contains(why), "{r}");
    }
    for l in &lines[1..] {
        assert!(!l.contains("NaN") && !l.contains("inf"), "{l}");
    }
}

/// Regression (issue 13, item 8): a row the engine rejected still moved the watermark, which
/// expired the series before its previous (valid) row was scored: that row's score was blank.
#[test]
fn a_rejected_csv_row_does_not_blank_the_previous_rows_score() {
    let mut csv = String::from("timestamp,value\n");
    for i in 0..80i64 {
        csv.push_str(&format!("{},{}\n", T0 + i * 60, 10 + i % 3));
    }
    // 2150: outside the accepted 2000–2100, rejected by the engine.
    csv.push_str("2150-01-01 00:00:00,5\n");
    let (lines, _, outcome) = run_csv(&csv, &ReplayOptions::default());
    assert_eq!(
        outcome.summary.rejected.get("timestamp_out_of_range"),
        Some(&1)
    );
    let last_valid = fields(&lines[80]);
    assert!(
        !last_valid[3].is_empty() && !last_valid[4].is_empty(),
        "{last_valid:?}"
    );
}

/// Regression (issue 13, item 8): one row dated 2099 among 100 rows of 2024 made replay close
/// every minute bucket in between and keep a report of each (4.9 GB). With the wall clock
/// (what the CLI passes) the row is an error of its own; without it, the reports kept follow
/// the rows, not the time span.
#[test]
fn one_far_future_csv_row_costs_neither_memory_nor_the_other_rows() {
    let mut csv = String::from("timestamp,value\n");
    for i in 0..100i64 {
        csv.push_str(&format!("{},{}\n", T0 + i * 60, 10 + i % 3));
    }
    csv.push_str("2099-01-01 00:00:00,5\n");
    let opts = ReplayOptions {
        wall_clock_ms: Some((T0 + 86_400) * 1000),
        ..ReplayOptions::default()
    };
    let (lines, _, outcome) = run_csv(&csv, &opts);
    assert_eq!(
        outcome.summary.malformed.get("ahead_of_wall_clock"),
        Some(&1)
    );
    assert!(outcome.summary.reported[0]
        .to_string()
        .contains("wall clock"));
    assert_eq!(lines.len(), 102);
    assert!(!fields(&lines[100])[3].is_empty(), "{}", lines[100]);

    // Without the wall clock (the library default) the row is scored, and the 39M missing
    // minute buckets in between are skipped, not closed (nor kept) one by one.
    let (lines, _, outcome) = run_csv(&csv, &ReplayOptions::default());
    assert_eq!(outcome.summary.rows_written, 101);
    assert!(
        outcome.summary.buckets < 1000,
        "{} buckets closed",
        outcome.summary.buckets
    );
    assert!(!fields(&lines[101])[1].is_empty(), "{}", lines[101]);
    assert!(!fields(&lines[100])[3].is_empty(), "{}", lines[100]);
}

#[test]
fn bucket_width_is_inferred_as_the_most_common_step_for_1m_5m_and_1h() {
    for width in [60i64, 300, 3600] {
        let mut ts: Vec<i64> = (0..200).map(|i| (T0 + i * width) * 1000).collect();
        // Gaps, a duplicate and disorder do not change the answer.
        ts.retain(|t| (t / 1000 - T0) / width % 17 != 3);
        ts.push(ts[5]);
        ts.swap(0, 50);
        assert_eq!(
            infer_bucket_width(&ts),
            Some(Secs(width as u64)),
            "{width}s"
        );

        let csv = series_csv(200, width, 0..0, 0.0);
        let (_, _, outcome) = run_csv(&csv, &ReplayOptions::default());
        let s = &outcome.summary.series_setup[0];
        assert_eq!((s.bucket, s.bucket_inferred), (Secs(width as u64), true));
    }
    assert_eq!(infer_bucket_width(&[T0 * 1000]), None);

    // --bucket overrides the inference.
    let csv = series_csv(50, 60, 0..0, 0.0);
    let opts = ReplayOptions {
        bucket: Some(Secs(300)),
        ..ReplayOptions::default()
    };
    let (lines, _, outcome) = run_csv(&csv, &opts);
    assert_eq!(outcome.summary.series_setup[0].bucket, Secs(300));
    assert!(!outcome.summary.series_setup[0].bucket_inferred);
    // Five 1-minute rows of ~100 make one 5-minute bucket of ~500.
    let last: f64 = fields(&lines[50]).get(2).unwrap().parse().unwrap();
    assert!(
        (400.0..600.0).contains(&last),
        "expected of the 5m bucket sum: {last}"
    );
}

#[test]
fn csv_with_service_geo_signal_columns_scores_each_series_with_its_own_width() {
    // Two interleaved series: telegram/IT every minute, libero-mail/IT every 5 minutes.
    let mut csv = String::from("timestamp,service,geo,signal,value\n");
    let mut order = Vec::new();
    for i in 0..300i64 {
        let ts = T0 + i * 60;
        csv.push_str(&format!("{ts},telegram,IT,complaints,{}\n", 40 + i % 7));
        order.push(ts.to_string());
        if i % 5 == 0 {
            csv.push_str(&format!("{ts},libero-mail,IT,complaints,{}\n", 12 + i % 3));
            order.push(ts.to_string());
        }
    }
    let (lines, _, outcome) = run_csv(&csv, &ReplayOptions::default());
    assert_eq!(lines.len() - 1, order.len());
    for (l, ts) in lines[1..].iter().zip(&order) {
        assert_eq!(fields(l)[0], ts.as_str());
        assert!(!fields(l)[2].is_empty(), "scored: {l}");
    }
    let mut widths: Vec<(String, Secs)> = outcome
        .summary
        .series_setup
        .iter()
        .map(|s| (s.name.to_string(), s.bucket))
        .collect();
    widths.sort();
    assert_eq!(
        widths,
        [
            ("libero-mail/IT/complaints".to_string(), Secs(300)),
            ("telegram/IT/complaints".to_string(), Secs(60))
        ]
    );
    assert_eq!(outcome.summary.series, 2, "a CSV series does not roll up");
}

#[test]
fn csv_series_with_an_injected_step_alerts_on_the_step_rows_and_not_on_the_normal_part() {
    // Three days of 5-minute buckets; a 2-hour step of +150 on day 3.
    let step = 700..724;
    let csv = series_csv(864, 300, step.clone(), 150.0);
    let (lines, incidents, outcome) = run_csv(&csv, &ReplayOptions::default());
    assert_eq!(lines.len(), 865);
    let alert = |i: usize| fields(&lines[1 + i])[5] == "1";
    let score = |i: usize| fields(&lines[1 + i])[4].parse::<f64>().unwrap();
    for i in 0..step.start {
        assert!(!alert(i), "normal row {i} must not alert: {}", lines[1 + i]);
    }
    // The incident opens on the second anomalous bucket (open_k = 2 of open_n = 3).
    for i in step.start + 1..step.end {
        assert!(alert(i), "step row {i} must alert: {}", lines[1 + i]);
        assert!(
            score(i) > 0.5,
            "step row {i} scores above the open threshold"
        );
    }
    // Hysteresis: resolves after close_m quiet buckets, then the normal part is quiet again.
    for i in step.end + 20..864 {
        assert!(!alert(i), "normal row {i} after the step: {}", lines[1 + i]);
    }
    assert_eq!(outcome.summary.incidents_opened, 1);
    assert_eq!(
        incidents.first().map(|e| e.state),
        Some(IncidentState::Opened)
    );
    assert_eq!(
        incidents.last().map(|e| e.state),
        Some(IncidentState::Resolved)
    );
}

/// Three weeks of an hourly crash *rate* around 0.002 (a measurement, not a count), with a
/// daily wave, and a 10× surge for 4 hours on day 18.
fn rate_csv(surge: std::ops::Range<usize>) -> String {
    let mut s = String::from("timestamp,value\n");
    for i in 0..21 * 24 {
        let ts = T0 + i as i64 * 3600;
        let phase = (i % 24) as f64 / 24.0 * std::f64::consts::TAU;
        let mut v = 0.002 * (1.0 + 0.3 * phase.sin()) * (1.0 + 0.2 * noise(i as u64));
        if surge.contains(&i) {
            v *= 10.0;
        }
        s.push_str(&format!("{ts},{v:.6}\n"));
    }
    s
}

#[test]
fn a_csv_rate_of_fractions_is_scored_as_a_gauge_and_alerts_on_its_surge() {
    // Regression (issue 11): scored as a count, a rate of 0.002 could never reach
    // `min_count = 5` and its scale sat on the Poisson floor, so no surge ever alerted and
    // every score meant nothing.
    let surge = 18 * 24 + 8..18 * 24 + 12;
    let csv = rate_csv(surge.clone());
    let (lines, incidents, outcome) = run_csv(&csv, &ReplayOptions::default());
    let setup = &outcome.summary.series_setup[0];
    assert!(setup.gauge && setup.gauge_inferred, "{setup:?}");
    assert!(
        outcome.summary.to_string().contains("gauge (inferred"),
        "{}",
        outcome.summary
    );
    let alert = |i: usize| fields(&lines[1 + i])[5] == "1";
    let score = |i: usize| fields(&lines[1 + i])[4].parse::<f64>().unwrap();
    assert!(surge.clone().any(alert), "the surge alerts");
    assert_eq!(outcome.summary.incidents_opened, 1, "{incidents:?}");
    let opened = &incidents[0];
    assert!(
        opened.bucket_start.0 >= (T0 + surge.start as i64 * 3600) * 1000,
        "opened in the surge, not before: {opened:?}"
    );
    // Ordinary buckets after the warm-up score near zero ("how unusual for this series"),
    // none anywhere near paging; the surge near one.
    let mut ordinary: Vec<f64> = (3 * 24..surge.start).map(score).collect();
    ordinary.sort_by(f64::total_cmp);
    let (median, max) = (ordinary[ordinary.len() / 2], ordinary[ordinary.len() - 1]);
    assert!(median < 0.05 && max < 0.3, "median {median}, max {max}");
    assert!(surge.clone().all(|i| score(i) > 0.99));

    // The same rows declared counts keep the count rules: nothing reaches min_count.
    let opts = ReplayOptions {
        values: ValueKind::Count,
        ..ReplayOptions::default()
    };
    let (_, _, outcome) = run_csv(&csv, &opts);
    assert!(!outcome.summary.series_setup[0].gauge);
    assert_eq!(outcome.summary.incidents_opened, 0);
}

#[test]
fn a_csv_series_of_whole_numbers_stays_a_count() {
    let csv = series_csv(300, 60, 0..0, 0.0).replace(".000", "");
    let mut whole = String::from("timestamp,value\n");
    for (i, line) in csv.lines().skip(1).enumerate() {
        let ts = line.split(',').next().unwrap();
        whole.push_str(&format!("{ts},{}\n", 100 + i % 7));
    }
    let (_, _, outcome) = run_csv(&whole, &ReplayOptions::default());
    let setup = &outcome.summary.series_setup[0];
    assert!(!setup.gauge && setup.gauge_inferred, "{setup:?}");
    assert!(!outcome.summary.to_string().contains("gauge"));
}

#[test]
fn anomaly_score_is_in_unit_interval_and_keeps_z8_and_z30_apart_at_six_decimals() {
    let open_z = Config::default().detection.open_z;
    let s = |z: f64| {
        score::score(
            100.0 + z * 10.0,
            100.0,
            10.0,
            spikewatch::config::Direction::Up,
            open_z,
        )
        .anomaly_score
    };
    let (a, b) = (format!("{:.6}", s(8.0)), format!("{:.6}", s(30.0)));
    assert_ne!(a, b);
    assert!(s(8.0) < s(30.0) && s(30.0) < s(1000.0) && s(1000.0) < 1.0);
    assert_eq!(format!("{:.6}", s(open_z)), "0.500000");
    assert_eq!(s(-3.0), 0.0);
    assert_eq!(a, "0.703297");
    assert_eq!(b, "0.992063");
    // Ordinary buckets score about 0: "how unusual for this series".
    assert!(s(1.0) < 0.01 && s(2.0) < 0.04);
}

/// Complaint counts per minute for one city: ~20, with a spike of ~200 from minute 300 to 330.
fn complaints_jsonl(minutes: i64, bad: &[(usize, &str)]) -> String {
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

#[test]
fn jsonl_incidents_parse_back_into_anomaly_events() {
    let input = complaints_jsonl(420, &[]);
    let mut out = Vec::new();
    let mut inc = Vec::new();
    let outcome = replay_jsonl(
        "events.jsonl",
        input.as_bytes(),
        &Config::default(),
        &ReplayOptions {
            incident_events: IncidentEvents::Series,
            ..ReplayOptions::default()
        },
        ReplayOutput::new(&mut out).with_incidents(&mut inc),
    )
    .unwrap();
    let events: Vec<AnomalyEvent> = String::from_utf8(inc)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("AnomalyEvent"))
        .collect();
    assert!(!events.is_empty());
    let opened: Vec<&AnomalyEvent> = events
        .iter()
        .filter(|e| e.state == IncidentState::Opened)
        .collect();
    let geos: Vec<&str> = opened.iter().map(|e| e.geo.as_str()).collect();
    assert!(
        geos.contains(&"IT-RM") && geos.contains(&"IT") && geos.contains(&"*"),
        "{geos:?}"
    );
    assert!(events.iter().any(|e| e.state == IncidentState::Resolved));
    // Output: one row per series (IT-RM, IT, *) and bucket.
    let text = String::from_utf8(out).unwrap();
    let mut rows = text.lines();
    assert_eq!(rows.next(), Some(spikewatch::replay::EVENTS_HEADER));
    let rows: Vec<&str> = rows.collect();
    assert_eq!(rows.len(), 3 * 420);
    assert!(rows
        .iter()
        .any(|r| r.contains(",telegram,IT,complaints,") && r.ends_with(",1")));
    assert_eq!(outcome.summary.accepted, 420);
    assert_eq!(outcome.summary.series, 3);
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spikewatch"))
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn jsonl_malformed_lines_are_reported_as_file_line_reason_and_the_run_goes_on() {
    let dir = tmp();
    let input = dir.path().join("events.jsonl");
    let bad = [
        (3, "{not json"),
        (
            7,
            r#"{"ts":"2024-01-01T00:05:00Z","service":"telegram","geo":"IT RM","count":3}"#,
        ),
        (
            9,
            r#"{"ts":"9999-01-01T00:00:00Z","service":"telegram","geo":"IT-RM"}"#,
        ),
        (12, ""),
    ];
    std::fs::write(&input, complaints_jsonl(420, &bad)).unwrap();
    let output = dir.path().join("scores.csv");
    let incidents = dir.path().join("incidents.jsonl");
    let plot = dir.path().join("plot.svg");
    let r = bin()
        .args(["replay", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .arg("--incidents")
        .arg(&incidents)
        .arg("--plot")
        .arg(&plot)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{stderr}");
    let name = input.display().to_string();
    assert!(
        stderr.contains(&format!("{name}:3: invalid JSON")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{name}:7: field `geo` is invalid")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{name}:9: timestamp")), "{stderr}");
    assert!(stderr.contains("malformed lines:"), "{stderr}");
    assert!(
        stderr.contains("3 (invalid_field: 1, json: 1, timestamp_out_of_range: 1)"),
        "{stderr}"
    );
    assert!(stderr.contains("accepted:           420"), "{stderr}");
    let scores = std::fs::read_to_string(&output).unwrap();
    assert_eq!(scores.lines().count(), 1 + 3 * 420);
    for line in std::fs::read_to_string(&incidents).unwrap().lines() {
        serde_json::from_str::<spikewatch::event::OutageEvent>(line).unwrap();
    }
    // The plot shows the series with the most alert buckets, with its incident shaded.
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"));
    assert!(svg.contains(spikewatch::plot::INCIDENT_FILL_SVG));
    assert!(stderr.contains("plot:"), "{stderr}");
}

#[test]
fn binary_replays_a_csv_series_with_forced_format_and_bucket() {
    let dir = tmp();
    let input = dir.path().join("series.txt");
    std::fs::write(&input, series_csv(300, 60, 200..230, 150.0)).unwrap();
    let output = dir.path().join("out.csv");
    let run = |extra: &[&str]| {
        bin()
            .args(["replay", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .args(extra)
            .output()
            .unwrap()
    };
    // Unknown extension without --format: a clear error.
    let r = run(&[]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("cannot tell the input format"));
    let r = run(&["--format", "csv", "--bucket", "1m"]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{stderr}");
    assert!(stderr.contains("bucket 1m (given)"), "{stderr}");
    let out = std::fs::read_to_string(&output).unwrap();
    assert_eq!(out.lines().count(), 301);
    assert!(out
        .lines()
        .skip(1 + 201)
        .take(29)
        .all(|l| l.ends_with(",1")));
    assert!(Path::new(&output).exists());
}
