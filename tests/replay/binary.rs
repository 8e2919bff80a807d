//! The built binary, `spikewatch replay`: malformed JSONL lines reported as `file:line: reason`
//! while the run goes on (scores, incidents and a plot written), a CSV whose extension does
//! not tell its format, replayed with `--format` and `--bucket`, and `--set` / `--sweep`.

use std::path::Path;
use std::process::Command;

use crate::{complaints_jsonl, series_csv};

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

#[test]
fn known_outages_are_scored_in_the_summary_and_refused_for_csv_input() {
    let dir = tmp();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, complaints_jsonl(420, &[])).unwrap();
    let known = dir.path().join("known.csv");
    std::fs::write(
        &known,
        "service,start,end\ntelegram,2024-01-01T05:00:00Z,2024-01-01T05:30:00Z\n",
    )
    .unwrap();
    let r = bin()
        .args(["replay", "--output", "-", "--input"])
        .arg(&input)
        .arg("--known-outages")
        .arg(&known)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(err.contains("known outages:      1 of 1 found"), "{err}");

    let csv = dir.path().join("series.csv");
    std::fs::write(&csv, series_csv(100, 60, 0..0, 0.0)).unwrap();
    let r = bin()
        .args(["replay", "--output", "-", "--input"])
        .arg(&csv)
        .arg("--known-outages")
        .arg(&known)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(
        err.contains("--known-outages needs JSONL") && err.contains("`label`"),
        "{err}"
    );
}

#[test]
fn sweep_prints_one_row_per_value_and_set_overrides_the_config() {
    let dir = tmp();
    let input = dir.path().join("labelled.csv");
    std::fs::write(
        &input,
        crate::labels::with_labels(&series_csv(3000, 60, 1500..1530, 300.0), 1500..1530),
    )
    .unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[detection]\nopen_z = 1000.0\nopen_z_single = 0.0\n",
    )
    .unwrap();
    let r = bin()
        .args(["replay", "--input"])
        .arg(&input)
        .arg("--config")
        .arg(&config)
        .args(["--sweep", "detection.open_z=6,1000"])
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr),
    );
    assert!(r.status.success(), "{err}");
    assert!(
        err.contains("3000 accepted") && err.contains("0 malformed"),
        "{err}"
    );
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert_eq!(
        rows[0][..3],
        ["detection.open_z", "incidents", "events found"],
        "{out}"
    );
    // The swept value wins over the file's; the file's other setting still applies.
    assert_eq!(rows[1][..4], ["6", "1", "1 / 1", "0"], "{out}");
    assert_eq!(rows[2][..4], ["1000", "0", "0 / 1", "0"], "{out}");

    // `--set` is a one-off override of the same kind, over the file.
    let scores = dir.path().join("scores.csv");
    let r = bin()
        .args(["replay", "--input"])
        .arg(&input)
        .arg("--config")
        .arg(&config)
        .args(["--set", "detection.open_z=6", "--output"])
        .arg(&scores)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(err.contains("1 of 1 found"), "{err}");

    // A key the config does not have is refused, naming it.
    let r = bin()
        .args(["replay", "--input"])
        .arg(&input)
        .args(["--sweep", "detection.open_zz=6,7"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(err.contains("open_zz"), "{err}");
}
