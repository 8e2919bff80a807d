//! Unit tests of the wire types: timestamps, decoding and validation.

use super::*;

#[test]
fn timestamp_accepts_rfc3339_and_epoch_millis() {
    let a: Timestamp = serde_json::from_str("\"2023-06-14T07:00:00Z\"").unwrap();
    let b: Timestamp = serde_json::from_str("1686726000000").unwrap();
    let c: Timestamp = serde_json::from_str("\"2023-06-14T09:00:00+02:00\"").unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a.to_rfc3339(), "2023-06-14T07:00:00.000Z");
}

#[test]
fn timestamp_rejects_fractional_epoch_and_garbage() {
    assert!(serde_json::from_str::<Timestamp>("1.5").is_err());
    assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    assert!(serde_json::from_str::<Timestamp>("true").is_err());
}

#[test]
fn decode_any_tells_kinds_apart() {
    let m = decode_any(br#"{"ts":"2023-06-14T07:00:00Z","service":"telegram","geo":"IT-RM","tags":["telegramdown"]}"#).unwrap();
    assert!(matches!(m, InputEvent::Mention(_)));
    assert_eq!(m.amount(), 1.0);
    let c = decode_any(br#"{"ts":1686726000000,"service":"libero-mail","geo":"IT","count":12.5}"#)
        .unwrap();
    assert!(matches!(c, InputEvent::Complaint(_)));
    assert_eq!(c.amount(), 12.5);
}

#[test]
fn decode_rejects_bad_input_with_reasons() {
    let cases: &[(&[u8], &str)] = &[
        (b"{not json", "json"),
        (br#"{"ts":"2023-06-14T07:00:00Z","geo":"IT"}"#, "json"),
        (
            br#"{"ts":"2023-06-14T07:00:00Z","service":"t","geo":"IT","bogus":1}"#,
            "json",
        ),
        (
            br#"{"ts":"9999-01-01T00:00:00Z","service":"t","geo":"IT"}"#,
            "timestamp_out_of_range",
        ),
        (
            br#"{"ts":"2023-06-14T07:00:00Z","service":"t","geo":"IT","count":-1}"#,
            "invalid_field",
        ),
        (
            br#"{"ts":"2023-06-14T07:00:00Z","service":"t","geo":"I T"}"#,
            "invalid_field",
        ),
        (
            br#"{"ts":"2023-06-14T07:00:00Z","service":"","geo":"IT"}"#,
            "invalid_field",
        ),
        (
            br#"{"type":"tweet","ts":"2023-06-14T07:00:00Z","service":"t","geo":"IT"}"#,
            "wrong_type",
        ),
        (
            br#"{"ts":"2023-06-14T07:00:00Z","service":"t","geo":"IT","count":1,"weight":1}"#,
            "ambiguous",
        ),
    ];
    for (line, kind) in cases {
        let err = decode_any(line).unwrap_err();
        assert_eq!(
            err.kind(),
            *kind,
            "{} -> {err}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn decode_for_topic_refuses_the_other_kind() {
    let err = decode(
        InputKind::Mention,
        br#"{"type":"complaint","ts":1686726000000,"service":"t","geo":"IT"}"#,
    )
    .unwrap_err();
    assert_eq!(err.kind(), "wrong_type");
}
