//! Reading CSV input: timestamps in three formats (echoed as given), one output row per input
//! row in input order, malformed and missing rows included; `NaN`, negative and infinite values
//! are errors naming row and column; a row the engine rejects or one dated far ahead costs
//! neither the other rows' scores nor memory.

use spikewatch::config::Secs;
use spikewatch::replay::{parse_timestamp, ReplayOptions, SERIES_HEADER};

use crate::{fields, run_csv, T0};

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

/// Regression: a row dated before 2000 (epoch `1`, a broken export) is rejected by the engine,
/// but its timestamp still went into the series' bucket width and labelled span. Next to one
/// valid row the width came out as 54 years and the whole replay failed; in a labelled file
/// the series spanned 54 years, which made its false alerts per month vanish.
#[test]
fn a_row_dated_1970_neither_sets_the_bucket_width_nor_stretches_the_labelled_span() {
    let csv = format!("timestamp,value\n1,5\n{T0},10\n");
    let (lines, _, outcome) = run_csv(&csv, &ReplayOptions::default());
    assert_eq!(
        outcome.summary.rejected.get("timestamp_out_of_range"),
        Some(&1)
    );
    assert_eq!(lines.len(), 3, "{lines:?}");

    let mut csv = String::from("timestamp,value,label\n1,5,0\n");
    for i in 0..90i64 {
        csv.push_str(&format!("{},{},0\n", T0 + i * 60, 10 + i % 3));
    }
    let (_, _, outcome) = run_csv(&csv, &ReplayOptions::default());
    assert_eq!(outcome.summary.series_setup[0].bucket, Secs(60));
    let days = outcome.summary.labels[0].1.days;
    assert!((days - 90.0 / 1440.0).abs() < 1e-9, "{days} days");
}

/// A header without `timestamp` and `value` is an error naming the columns found; a file
/// separated by `;` (a spreadsheet export in a comma-decimal locale) is told so.
#[test]
fn a_csv_without_timestamp_and_value_columns_names_what_it_found_and_a_semicolon_file_is_told_so() {
    let run = |text: &str| {
        spikewatch::replay::replay_csv(
            "series.csv",
            text.as_bytes(),
            &spikewatch::config::Config::default(),
            &ReplayOptions::default(),
            spikewatch::replay::ReplayOutput::new(&mut std::io::sink()),
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let e = run("ts,v\n2024-01-01 00:00:00,5\n");
    assert!(
        e.contains("series.csv:1") && e.contains(r#"["ts", "v"]"#),
        "{e}"
    );
    assert!(!e.contains("separated"), "{e}");
    let e = run("timestamp;value\n2024-01-01 00:00:00;5,5\n");
    assert!(e.contains("separated by `;`"), "{e}");
    let e = run("timestamp\tvalue\n2024-01-01 00:00:00\t5\n");
    assert!(e.contains("tab-separated"), "{e}");
}

/// An export concatenated twice repeats every time: the values are summed as rows of one
/// bucket always are, and the summary says how many rows repeat a time, and which first.
/// Rows of one bucket at different times (1-minute rows in 5-minute buckets) are not counted.
#[test]
fn rows_repeating_a_time_of_their_series_are_summed_and_reported() {
    let mut csv = String::from("timestamp,value\n");
    for i in 0..30i64 {
        csv.push_str(&format!("{},{}\n", T0 + i * 300, 20 + i % 3));
    }
    // Lines 2..=31 hold the series; line 32 repeats line 12's time, line 33 line 7's.
    csv.push_str(&format!("{},5\n", T0 + 10 * 300));
    csv.push_str(&format!("{},,\n", T0 + 20 * 300));
    csv.push_str(&format!("{},6\n", T0 + 5 * 300));
    let (lines, _, outcome) = run_csv(&csv, &ReplayOptions::default());
    let s = &outcome.summary;
    assert_eq!(s.repeated_times, 2, "an empty value repeats nothing");
    let example = s.repeated_example.as_deref().unwrap();
    assert!(
        example.starts_with("line 34 repeats line 7, ") && example.ends_with("00:25:00.000Z"),
        "{example}"
    );
    assert!(s.to_string().contains("repeated times:     2 rows"), "{s}");
    // Each input row keeps its output row and its own value; both carry the one bucket's score.
    assert_eq!(lines.len(), 34);
    let (first, repeat) = (fields(&lines[6]), fields(&lines[33]));
    assert_eq!((first[1], repeat[1]), ("22.000000", "6.000000"));
    assert_eq!(first[2..], repeat[2..]);
    // Summed: without the repeat, the bucket holds 22 and scores lower.
    let single = csv.lines().take(31).collect::<Vec<_>>().join("\n");
    let (alone, _, _) = run_csv(&single, &ReplayOptions::default());
    let z = |f: &[&str]| f[3].parse::<f64>().unwrap();
    assert!(
        z(&first) > z(&fields(&alone[6])),
        "{first:?} vs {}",
        alone[6]
    );

    let mut minutes = String::from("timestamp,value\n");
    for i in 0..90i64 {
        minutes.push_str(&format!("{},{}\n", T0 + i * 60, 4));
    }
    let opts = ReplayOptions {
        bucket: Some(Secs(300)),
        ..ReplayOptions::default()
    };
    let (_, _, outcome) = run_csv(&minutes, &opts);
    assert_eq!(outcome.summary.repeated_times, 0);
    assert!(!outcome.summary.to_string().contains("repeated"));
}
