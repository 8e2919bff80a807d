//! Tests of the fast path: it agrees with the full decoder on generated, mutated and usual
//! messages, and with chrono on timestamps.

use chrono::DateTime;
use proptest::prelude::*;

use super::*;

fn chrono_millis(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

proptest! {
    /// The word-at-a-time search finds what a byte-at-a-time one finds.
    #[test]
    fn plain_len_is_the_first_stop_byte(
        b in prop::collection::vec(prop_oneof![any::<u8>(), 0x20u8..0x7f, Just(b'"'), Just(b'\\')], 0..40)
    ) {
        prop_assert_eq!(plain_len(&b), b.iter().position(|&c| c < 0x20 || c == b'"' || c == b'\\'));
    }
}

#[test]
fn rfc3339_fast_path_matches_chrono_on_samples() {
    for s in [
        "2023-06-14T07:00:00Z",
        "2023-06-14T07:00:00.1Z",
        "2023-06-14T07:00:00.12Z",
        "2023-06-14T07:00:00.123Z",
        "2023-06-14T07:00:00.123456789Z",
        "2000-02-29T23:59:59.999Z",
        "1900-02-29T00:00:00Z",
        "2024-02-29T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "0000-01-01T00:00:00.5Z",
        "1969-12-31T23:59:59.250Z",
        "9999-12-31T23:59:59.999Z",
    ] {
        if let Some(ms) = rfc3339_utc_millis(s.as_bytes()) {
            assert_eq!(Some(ms), chrono_millis(s), "{s}");
        } else {
            assert_eq!(chrono_millis(s), None, "{s}");
        }
    }
    for s in [
        "2023-06-14T07:00:00+00:00",
        "2023-06-14t07:00:00z",
        "2023-06-14T07:00:60Z",
        "2023-06-14T07:00:00.1234567891Z",
        "2023-06-14T07:00:00.Z",
        "2023-06-14 07:00:00Z",
        "2023-6-14T07:00:00Z",
    ] {
        assert_eq!(rfc3339_utc_millis(s.as_bytes()), None, "{s}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// Wherever the fast path gives an answer, chrono gives the same one.
    #[test]
    fn rfc3339_fast_path_agrees_with_chrono(
        y in 0u32..10000, mo in 0u32..14, d in 0u32..33, h in 0u32..26, mi in 0u32..61,
        s in 0u32..62, frac in "(\\.[0-9]{0,11})?", z in prop_oneof![Just("Z"), Just("z"), Just("+00:00"), Just("")],
    ) {
        let t = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{z}");
        if let Some(ms) = rfc3339_utc_millis(t.as_bytes()) {
            prop_assert_eq!(Some(ms), chrono_millis(&t), "{}", t);
        }
    }
}

#[test]
fn fast_path_answers_the_usual_messages() {
    let lines: [&[u8]; 4] = [
        br#"{"ts":"2024-01-01T00:00:12.345Z","service":"telegram","geo":"IT-RM","source":"demo","tags":["telegramdown"]}"#,
        br#"{"ts":1704067200000,"service":"s","geo":"C01-X001","count":3,"category":"login"}"#,
        br#" { "type" : "complaint" , "ts" : "2024-01-01T00:00:00Z" , "service" : "s" , "geo" : "*" , "count" : 2.5 , "id" : null } "#,
        br#"{"ts":1704067200000,"service":"s","geo":"IT","weight":0.5,"tags":[],"text":"down?","lang":"it","id":"x"}"#,
    ];
    for line in lines {
        let text = String::from_utf8_lossy(line);
        assert!(parse(None, line).is_some(), "{text}");
        assert!(matches!(core(None, line), Some(Ok(_))), "{text}");
        assert_decoders_agree(line);
    }
}

const KEYS: [&str; 14] = [
    "type", "ts", "service", "geo", "count", "weight", "source", "lang", "text", "tags", "id",
    "category", "extra", "ts",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"2023-06-14T07:00:00Z\"".to_string()),
        Just("\"2023-06-14T07:00:00.5Z\"".to_string()),
        Just("\"2023-06-14T09:00:00.250+02:00\"".to_string()),
        Just("\"1999-12-31T23:59:59Z\"".to_string()),
        Just("\"2023-06-14 07:00:00Z\"".to_string()),
        Just("\"2023-06-14T25:00:00Z\"".to_string()),
        Just("1686726000000".to_string()),
        Just("946684799999".to_string()),
        Just("-5".to_string()),
        Just("-0".to_string()),
        Just("0".to_string()),
        Just("01".to_string()),
        Just("12.5".to_string()),
        Just("1e3".to_string()),
        Just("1E400".to_string()),
        Just("1686726000000.0".to_string()),
        Just("18446744073709551616".to_string()),
        Just("\"mention\"".to_string()),
        Just("\"complaint\"".to_string()),
        Just("\"telegram\"".to_string()),
        Just("\"IT-RM\"".to_string()),
        Just("\"*\"".to_string()),
        Just("\"a\\u0062c\"".to_string()),
        Just("\"caf\u{e9}\"".to_string()),
        Just("null".to_string()),
        Just("nul".to_string()),
        Just("true".to_string()),
        Just("[\"down\", \"x\"]".to_string()),
        Just("[]".to_string()),
        Just("[null]".to_string()),
        Just("[\"a\",]".to_string()),
        Just("{\"a\":1}".to_string()),
        any::<f64>().prop_map(|v| v.to_string()),
        any::<u64>().prop_map(|v| v.to_string()),
        "[ -~]{0,12}".prop_map(|s| format!("{s:?}")),
        "[0-9eE.+-]{1,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20000))]

    /// Objects of known, unknown and repeated keys with good and bad values, with odd
    /// whitespace: the fast path never disagrees with the full decoder.
    #[test]
    fn fast_path_agrees_with_the_full_decoder(
        fields in prop::collection::vec((0usize..KEYS.len(), value()), 0..8),
        ws in prop::collection::vec(prop_oneof![Just(""), Just(" "), Just("\n\t"), Just("\r")], 8),
        tail in prop_oneof![Just(""), Just(" "), Just("x"), Just("}"), Just(",")],
    ) {
        let mut line = format!("{}{{", ws[0]);
        for (n, (k, v)) in fields.iter().enumerate() {
            if n > 0 {
                line.push(',');
            }
            line.push_str(&format!("{}\"{}\"{}:{}{}{}", ws[1], KEYS[*k], ws[2], ws[3], v, ws[4]));
        }
        line.push_str(&format!("}}{}{}", ws[5], tail));
        assert_decoders_agree(line.as_bytes());
    }

    /// Mostly valid objects (every key at most once, usually a fitting value) in any order:
    /// here the fast path answers often, and must agree.
    #[test]
    fn fast_path_agrees_on_near_valid_objects(
        order in Just((0..12).collect::<Vec<usize>>()).prop_shuffle(),
        fields in prop::collection::vec((prop::bool::weighted(0.3), prop::bool::weighted(0.9), value(), any::<prop::sample::Index>()), 12),
    ) {
        const NAMES: [&str; 12] = [
            "type", "ts", "service", "geo", "count", "weight", "source", "lang", "text",
            "tags", "id", "category",
        ];
        let mut parts = Vec::new();
        for k in order {
            let (present, fitting, odd, pick) = &fields[k];
            // Required keys nearly always, the rest sometimes.
            if !(*present || (1..=3).contains(&k)) {
                continue;
            }
            let good: &[&str] = match NAMES[k] {
                "type" => &["\"mention\"", "\"complaint\"", "null"],
                "ts" => &["\"2024-02-29T13:14:15.678Z\"", "1704067200000", "\"2024-01-01T00:00:00+01:00\""],
                "service" => &["\"telegram\"", "\"a.b_c-d\""],
                "geo" => &["\"IT-RM\"", "\"*\"", "\"US-CA-SF\""],
                "count" | "weight" => &["3", "0", "2.5", "1e2", "null", "-0"],
                "tags" => &["[\"x\"]", "[]", "null", "[ \"a\" , \"b\" ]"],
                _ => &["\"x\"", "null", "\"\""],
            };
            let v = if *fitting { good[pick.index(good.len())] } else { odd.as_str() };
            parts.push(format!("\"{}\":{}", NAMES[k], v));
        }
        assert_decoders_agree(format!("{{{}}}", parts.join(",")).as_bytes());
    }

    /// Valid messages with one byte changed.
    #[test]
    fn fast_path_agrees_on_mutated_messages(
        which in 0usize..3, at in any::<prop::sample::Index>(), byte in any::<u8>(),
    ) {
        let base: [&[u8]; 3] = [
            br#"{"ts":"2024-01-01T00:00:12.345Z","service":"telegram","geo":"IT-RM","source":"demo","tags":["telegramdown"]}"#,
            br#"{"ts":1704067200000,"service":"s","geo":"C01-X001","count":3,"category":"login"}"#,
            br#"{"type":"mention","ts":1704067200000,"service":"s","geo":"IT","weight":0.5,"id":null}"#,
        ];
        let mut line = base[which].to_vec();
        let i = at.index(line.len());
        line[i] = byte;
        assert_decoders_agree(&line);
    }
}
