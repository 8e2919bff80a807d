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

/// A line that is not a JSON object says what it is instead, or where it stops being JSON.
#[test]
fn a_message_that_is_not_an_object_says_what_it_is() {
    let cases: &[(&[u8], &str)] = &[
        (b"not json", "expected ident at line 1 column 2"),
        (b"[1, 2]", "not an array"),
        (br#""telegram down""#, "not a string"),
        (b" 42", "not a number"),
        (b"null", "not null"),
        (b"true", "not a boolean"),
        (b"[1, 2", "not an array"),
    ];
    for (line, want) in cases {
        let err = decode_any(line).unwrap_err();
        assert_eq!(err.kind(), "json");
        assert!(
            err.to_string().contains(want),
            "{} -> {err}",
            String::from_utf8_lossy(line)
        );
    }
}

/// Regression: the first line of a JSONL file saved with a UTF-8 byte order mark was
/// rejected as "not a JSON object", losing its event.
#[test]
fn a_leading_byte_order_mark_is_ignored_on_every_decoder_path() {
    let line = b"\xEF\xBB\xBF{\"ts\":\"2023-06-14T07:00:00Z\",\"service\":\"libero\",\"geo\":\"IT\",\"count\":3}";
    let plain = &line[3..];
    assert_eq!(decode_any(line).unwrap(), decode_any(plain).unwrap());
    assert_eq!(
        decode_any_core(line).unwrap(),
        decode_any_core(plain).unwrap()
    );
    assert_eq!(
        decode(InputKind::Complaint, line).unwrap(),
        decode(InputKind::Complaint, plain).unwrap()
    );
    assert_eq!(
        decode_core(InputKind::Complaint, line).unwrap(),
        decode_core(InputKind::Complaint, plain).unwrap()
    );
    // Only at the start: a byte order mark inside a message is still an error.
    assert!(decode_any(b" \xEF\xBB\xBF{}").is_err());
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
