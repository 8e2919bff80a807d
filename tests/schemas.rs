//! The JSON Schemas in `schemas/` are the contract with producers and subscribers: they must
//! accept exactly what the decoder accepts, and every event the engine emits must conform.

use std::sync::OnceLock;

use jsonschema::Validator;
use proptest::prelude::*;
use serde_json::{json, Value};

use spikewatch::config::Config;
use spikewatch::engine::Engine;
use spikewatch::event::{decode_any, AnomalyEvent, OutageEvent};
use spikewatch::sim::{self, Scenario};

fn load(name: &str) -> Validator {
    let path = format!("{}/schemas/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let schema: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    jsonschema::meta::validate(&schema)
        .unwrap_or_else(|e| panic!("{path} is no valid schema: {e}"));
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Schemas {
    mention: Validator,
    complaint: Validator,
    anomaly: Validator,
    outage: Validator,
}

fn schemas() -> &'static Schemas {
    static S: OnceLock<Schemas> = OnceLock::new();
    S.get_or_init(|| Schemas {
        mention: load("mention.v1.json"),
        complaint: load("complaint.v1.json"),
        anomaly: load("anomaly.v1.json"),
        outage: load("anomaly.v2.json"),
    })
}

fn errors(v: &Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

/// A JSONL input line is valid if it is a valid mention or a valid complaint.
fn input_valid(line: &Value) -> bool {
    let s = schemas();
    s.mention.is_valid(line) || s.complaint.is_valid(line)
}

#[test]
fn readme_samples_are_valid() {
    let s = schemas();
    let mention = json!({"ts": "2023-06-14T07:02:11Z", "service": "telegram", "geo": "IT-RM",
        "source": "x", "lang": "it", "text": "telegram down?", "tags": ["telegramdown"]});
    let complaint = json!({"ts": 1686726000000_i64, "service": "libero-mail", "geo": "IT",
        "count": 42, "category": "login"});
    assert_eq!(errors(&s.mention, &mention), Vec::<String>::new());
    assert_eq!(errors(&s.complaint, &complaint), Vec::<String>::new());
    assert!(!s.complaint.is_valid(&mention));
    assert!(!s.mention.is_valid(&complaint));
}

#[test]
fn schemas_reject_what_the_decoder_rejects() {
    let bad = [
        json!({"ts": "2023-06-14T07:00:00Z", "geo": "IT"}),
        json!({"ts": "2023-06-14T07:00:00Z", "service": "t", "geo": "IT", "bogus": 1}),
        json!({"ts": "9999-01-01T00:00:00Z", "service": "t", "geo": "IT"}),
        json!({"ts": 253402300799000_i64, "service": "t", "geo": "IT"}),
        json!({"ts": 1.5, "service": "t", "geo": "IT"}),
        json!({"ts": "yesterday", "service": "t", "geo": "IT"}),
        json!({"ts": "2023-06-14T07:00:00Z", "service": "t", "geo": "IT", "count": -1}),
        json!({"ts": "2023-06-14T07:00:00Z", "service": "t", "geo": "I T"}),
        json!({"ts": "2023-06-14T07:00:00Z", "service": "t", "geo": "IT--RM"}),
        json!({"ts": "2023-06-14T07:00:00Z", "service": "", "geo": "IT"}),
        json!({"type": "tweet", "ts": "2023-06-14T07:00:00Z", "service": "t", "geo": "IT"}),
        json!({"ts": "2023-06-14T07:00:00Z", "service": "t", "geo": "IT", "count": 1, "weight": 1}),
        json!({"ts": "2023-06-14T07:00:00Z", "service": "t", "geo": "IT", "count": "3"}),
        json!(["not", "an", "object"]),
    ];
    for line in &bad {
        let bytes = serde_json::to_vec(line).unwrap();
        assert!(decode_any(&bytes).is_err(), "decoder accepted {line}");
        assert!(!input_valid(line), "schemas accepted {line}");
    }
}

fn field_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(json!("2023-06-14T07:00:00Z"))),
        Just(Some(json!("2023-06-14T09:00:00.250+02:00"))),
        Just(Some(json!("1999-12-31T23:59:59Z"))),
        Just(Some(json!("2023-06-14 07:00:00Z"))),
        Just(Some(json!("2023-06-14t07:00:00z"))),
        Just(Some(json!("2023-06-14T07:00:00"))),
        Just(Some(json!("2023-06-14T25:00:00Z"))),
        Just(Some(json!("2100-01-01T00:00:00Z"))),
        Just(Some(json!(1_686_726_000_000_i64))),
        Just(Some(json!(946_684_799_999_i64))),
        Just(Some(json!(-5))),
        Just(Some(json!(12.5))),
        Just(Some(json!(0))),
        Just(Some(json!("telegram"))),
        Just(Some(json!("IT-RM"))),
        Just(Some(json!("*"))),
        Just(Some(json!("a b"))),
        Just(Some(json!(""))),
        Just(Some(json!(null))),
        Just(Some(json!(true))),
        Just(Some(json!(["telegramdown"]))),
        Just(Some(json!({"nested": 1}))),
        "[A-Za-z0-9_*-]{0,70}".prop_map(|s| Some(json!(s))),
    ]
}

const FIELDS: [&str; 13] = [
    "type", "ts", "service", "geo", "count", "weight", "source", "lang", "text", "tags", "id",
    "category", "extra",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// For any object built from known and unknown fields with good and bad values, the
    /// schemas and the decoder agree on whether it is a valid input event.
    #[test]
    fn schemas_and_decoder_agree_on_any_input_line(
        values in prop::collection::vec(field_value(), FIELDS.len()),
        kind in prop_oneof![Just(None), Just(Some("mention")), Just(Some("complaint")), Just(Some("other"))],
    ) {
        let mut obj = serde_json::Map::new();
        for (name, v) in FIELDS.iter().zip(values) {
            if let Some(v) = v {
                obj.insert(name.to_string(), v);
            }
        }
        match kind {
            Some(k) => { obj.insert("type".into(), json!(k)); }
            None => { obj.remove("type"); }
        }
        // Most random objects are invalid; make half of them start from a valid core.
        let line = Value::Object(obj);
        let bytes = serde_json::to_vec(&line).unwrap();
        let decoded = decode_any(&bytes);
        prop_assert_eq!(decoded.is_ok(), input_valid(&line), "{} -> {:?}", line, decoded.err());
    }

    #[test]
    fn schemas_and_decoder_agree_on_near_valid_lines(
        drop in prop::option::of(0usize..3),
        extra in prop::option::of(field_value()),
        which in 0usize..2,
        ts in field_value(),
        geo in field_value(),
    ) {
        let mut obj = match which {
            0 => json!({"ts": "2023-06-14T07:00:00Z", "service": "telegram", "geo": "IT-RM"}),
            _ => json!({"ts": 1_686_726_000_000_i64, "service": "libero-mail", "geo": "IT", "count": 3.5}),
        };
        let o = obj.as_object_mut().unwrap();
        if let Some(i) = drop {
            o.remove(["ts", "service", "geo"][i]);
        }
        if let Some(v) = ts { o.insert("ts".into(), v); }
        if let Some(v) = geo { o.insert("geo".into(), v); }
        if let Some(Some(v)) = extra { o.insert(["weight", "category"][which].into(), v); }
        let bytes = serde_json::to_vec(&obj).unwrap();
        let decoded = decode_any(&bytes);
        prop_assert_eq!(decoded.is_ok(), input_valid(&obj), "{} -> {:?}", obj, decoded.err());
    }
}

#[test]
fn every_anomaly_event_of_the_demo_conforms_and_round_trips() {
    // The first outage (day 16) with its learning weeks, and the 12-hour one (day 23).
    let scenario = Scenario {
        days: 24,
        ..Scenario::demo()
    };
    let mut engine = Engine::new(Config::default());
    let mut events: Vec<AnomalyEvent> = Vec::new();
    sim::drive(&scenario, &mut engine, &mut events);
    let states: std::collections::BTreeSet<_> =
        events.iter().map(|e| format!("{:?}", e.state)).collect();
    assert_eq!(
        states.len(),
        3,
        "opened, updated and resolved all seen: {states:?}"
    );
    let s = schemas();
    for e in &events {
        let value = serde_json::to_value(e).unwrap();
        let errs = errors(&s.anomaly, &value);
        assert!(errs.is_empty(), "{value}\n{errs:#?}");
        let back: AnomalyEvent = serde_json::from_value(value).unwrap();
        assert_eq!(&back, e);
    }
}

#[test]
fn anomaly_schema_requires_resolved_at_exactly_on_resolved_events() {
    let s = schemas();
    let scenario = Scenario {
        days: 17,
        ..Scenario::demo()
    };
    let mut engine = Engine::new(Config::default());
    let mut events: Vec<AnomalyEvent> = Vec::new();
    sim::drive(&scenario, &mut engine, &mut events);
    let resolved = events
        .iter()
        .find(|e| e.resolved_at.is_some())
        .expect("a resolved event");
    let mut v = serde_json::to_value(resolved).unwrap();
    assert!(s.anomaly.is_valid(&v));
    v.as_object_mut().unwrap().remove("resolved_at");
    assert!(!s.anomaly.is_valid(&v), "resolved without resolved_at");
    let opened = events.iter().find(|e| e.seq == 1).expect("an opened event");
    let mut v = serde_json::to_value(opened).unwrap();
    v["resolved_at"] = json!("2024-01-17T17:10:00.000Z");
    assert!(!s.anomaly.is_valid(&v), "opened with resolved_at");
}

#[derive(Default)]
struct Outages(Vec<OutageEvent>);

impl spikewatch::engine::EngineSink for Outages {
    fn anomaly(&mut self, _: AnomalyEvent) {}
    fn outage(&mut self, e: OutageEvent) {
        self.0.push(e);
    }
}

#[test]
fn every_outage_event_of_the_demo_conforms_and_round_trips() {
    let scenario = Scenario::demo();
    let mut engine = Engine::new(Config::default());
    let mut out = Outages::default();
    sim::drive(&scenario, &mut engine, &mut out);
    let states: std::collections::BTreeSet<_> =
        out.0.iter().map(|e| format!("{:?}", e.state)).collect();
    assert_eq!(states.len(), 3, "opened, updated and resolved: {states:?}");
    let s = schemas();
    for e in &out.0 {
        let value = serde_json::to_value(e).unwrap();
        let errs = errors(&s.outage, &value);
        assert!(errs.is_empty(), "{value}\n{errs:#?}");
        assert!(!s.anomaly.is_valid(&value), "a v2 event is no v1 event");
        let back: OutageEvent = serde_json::from_value(value).unwrap();
        assert_eq!(&back, e);
    }
    let resolved = out.0.iter().find(|e| e.resolved_at.is_some()).unwrap();
    let mut v = serde_json::to_value(resolved).unwrap();
    v.as_object_mut().unwrap().remove("resolved_at");
    assert!(!s.outage.is_valid(&v), "resolved without resolved_at");
}

/// Amounts a producer might send: ordinary, at and above the documented maximum (1e9), and
/// the values that used to overflow a bucket sum (two of 1e308 made infinity, and anomaly
/// events then carried `null` for `observed`/`zscore`/`peak_zscore`).
fn extreme_amount() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(5e-324),
        Just(1.0),
        Just(400.0),
        Just(1e9),
        Just(1e9 + 1.0),
        Just(1e15),
        Just(1e308),
        Just(f64::MAX),
        Just(f64::INFINITY),
        Just(f64::NAN),
        Just(-1.0),
        (0.0f64..1e9),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Regression (issue 13, item 2): whatever amounts arrive, through the decoder and
    /// straight into the engine, every anomaly event has finite numbers and conforms to
    /// `schemas/anomaly.v1.json`.
    #[test]
    fn extreme_amounts_never_produce_non_finite_or_invalid_anomaly_events(
        bursts in prop::collection::vec((195i64..240, extreme_amount(), 1usize..40), 1..12),
    ) {
        const T0: i64 = 1_704_067_200_000;
        const MIN: i64 = 60_000;
        let mut engine = Engine::new(Config::default());
        let mut events: Vec<AnomalyEvent> = Vec::new();
        for m in 0..360i64 {
            let ts = T0 + m * MIN + 1000;
            // Steady traffic with an outage from minute 200 to 230, so that extreme values
            // also land in an open incident (its `updated` events carried the `null`s).
            let count = if (200..230).contains(&m) { 400 } else { 20 };
            let line = format!(r#"{{"ts":{ts},"service":"svc","geo":"IT-RM","count":{count}}}"#);
            let ev = decode_any(line.as_bytes()).unwrap();
            engine.observe_event(&ev).unwrap();
            for &(at, amount, n) in &bursts {
                if at != m {
                    continue;
                }
                for _ in 0..n {
                    // Through the decoder as a JSON number (non-finite ones cannot be
                    // written in JSON) ...
                    if amount.is_finite() {
                        let line = format!(
                            r#"{{"ts":{ts},"service":"svc","geo":"IT-RM","count":{amount:e}}}"#
                        );
                        if let Ok(ev) = decode_any(line.as_bytes()) {
                            prop_assert!(ev.amount() <= spikewatch::event::MAX_AMOUNT);
                            engine.observe_event(&ev).unwrap();
                        }
                    }
                    // ... and straight into the engine, which must refuse what it cannot sum.
                    let _ = engine.observe(spikewatch::engine::Observation {
                        service: "svc",
                        geo: "IT",
                        signal: "complaints",
                        ts_ms: ts,
                        amount,
                    });
                }
            }
            engine.advance(ts, &mut events);
        }
        engine.finish(&mut events);
        let s = schemas();
        for e in &events {
            for (name, v) in [
                ("observed", e.observed),
                ("expected", e.expected),
                ("zscore", e.zscore),
                ("peak_zscore", e.peak_zscore),
                ("peak_observed", e.peak_observed),
            ] {
                prop_assert!(v.is_finite(), "{} = {} in {:?}", name, v, e);
            }
            let value = serde_json::to_value(e).unwrap();
            let errs = errors(&s.anomaly, &value);
            prop_assert!(errs.is_empty(), "{}\n{:#?}", value, errs);
        }
    }
}

/// Regression (issue 13, item 8): the Kafka decoder (one known kind per topic) took a JSON
/// array of a message's fields in order, as serde's derive allows; the schemas and replay
/// rejected it. Every path now rejects a top-level array with the same clear error.
#[test]
fn top_level_arrays_are_rejected_by_every_decoder_path() {
    use spikewatch::event::{decode, decode_any_core, decode_core, InputKind};
    let lines: [&[u8]; 4] = [
        br#"[null, "2023-06-14T07:00:00Z", "telegram", "IT"]"#,
        br#"  [null, 1686726000000, "telegram", "IT", 3]"#,
        br#"["2023-06-14T07:00:00Z", "telegram", "IT"]"#,
        b"[]",
    ];
    for line in lines {
        let json: Value = serde_json::from_slice(line).unwrap();
        assert!(!input_valid(&json), "schemas accept {json}");
        let errs = [
            decode(InputKind::Mention, line).map(|_| ()).unwrap_err(),
            decode(InputKind::Complaint, line).map(|_| ()).unwrap_err(),
            decode_core(InputKind::Mention, line)
                .map(|_| ())
                .unwrap_err(),
            decode_core(InputKind::Complaint, line)
                .map(|_| ())
                .unwrap_err(),
            decode_any(line).map(|_| ()).unwrap_err(),
            decode_any_core(line).map(|_| ()).unwrap_err(),
        ];
        for e in errs {
            assert_eq!(e.kind(), "json", "{e}");
            assert!(e.to_string().contains("must be a JSON object"), "{e}");
        }
    }
}

/// Regression (issue 13, item 2): counts and weights above the documented maximum are
/// rejected at decode, naming the field and the limit; the schemas agree.
#[test]
fn counts_and_weights_above_the_limit_are_rejected_naming_field_and_limit() {
    for (line, field) in [
        (
            json!({"ts": 1686726000000_i64, "service": "t", "geo": "IT", "count": 1e308}),
            "count",
        ),
        (
            json!({"ts": 1686726000000_i64, "service": "t", "geo": "IT", "weight": 2e9}),
            "weight",
        ),
    ] {
        let bytes = serde_json::to_vec(&line).unwrap();
        let e = decode_any(&bytes).unwrap_err();
        assert_eq!(e.kind(), "invalid_field");
        let msg = e.to_string();
        assert!(msg.contains(field) && msg.contains("1e9"), "{msg}");
        assert!(!input_valid(&line), "schemas accept {line}");
    }
    let at_limit = json!({"ts": 1686726000000_i64, "service": "t", "geo": "IT", "count": 1e9});
    assert!(decode_any(&serde_json::to_vec(&at_limit).unwrap()).is_ok());
    assert!(input_valid(&at_limit));
}
