//! Scoring CSV series: the bucket width inferred per series (or given with `--bucket`), one
//! series per `service,geo,signal` key, an injected step alerting on its rows and nowhere
//! else, a rate of fractions scored as a gauge and whole numbers as a count, and the anomaly
//! score's scale.

use spikewatch::config::{Secs, Thresholds};
use spikewatch::engine::score;
use spikewatch::event::IncidentState;
use spikewatch::replay::{infer_bucket_width, ReplayOptions, ValueKind};

use crate::{fields, noise, run_csv, series_csv, T0};

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
    // Hour-wide buckets' `open_z` (6): the values below are those of the formula at it.
    let open_z = Thresholds::default().open_z;
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
