//! Unit tests of the replay helpers: forced buckets, CSV headers, series names.

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
        ReplayOutput::new(&mut out),
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
