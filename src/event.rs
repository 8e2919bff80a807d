//! Messages on the wire: input events (mentions, complaint counts) and the anomaly events
//! subscribers receive. The JSON Schemas in `schemas/` describe exactly these types; tests
//! validate both directions.
//!
//! Here: the wire types and their limits. `validate` holds the checks every input event
//! passes; `decoder` the decoders ([`decode`] and friends), whose fast path is `fast`;
//! `outage` the outage events (schema version 2); `tests` the unit tests.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod decoder;
mod fast;
mod outage;
mod validate;

#[cfg(test)]
mod tests;

pub use decoder::{decode, decode_any, decode_any_core, decode_core, EventCore};
pub use outage::{
    outage_id, AffectedSeries, CategoryCount, OutageChange, OutageEvent, SignalExcess,
    OUTAGE_SCHEMA_VERSION,
};
pub use validate::{validate_geo, validate_service};

/// Signal name of mention events.
pub(crate) const SIGNAL_MENTIONS: &str = "mentions";
/// Signal name of complaint-count events.
pub(crate) const SIGNAL_COMPLAINTS: &str = "complaints";

/// Version of the anomaly event format, carried in every anomaly event.
pub(crate) const ANOMALY_SCHEMA_VERSION: u32 = 1;

/// Earliest event time accepted (2000-01-01T00:00:00Z): anything before is a producer bug.
pub(crate) const MIN_EVENT_TS_MS: i64 = 946_684_800_000;
/// Latest event time accepted (2100-01-01T00:00:00Z): "year 9999" is rejected, not bucketed.
pub(crate) const MAX_EVENT_TS_MS: i64 = 4_102_444_800_000;

/// Whether an event time is inside the accepted range (`MIN_EVENT_TS_MS` up to, not
/// including, `MAX_EVENT_TS_MS`).
pub(crate) fn is_accepted_time(ts_ms: i64) -> bool {
    (MIN_EVENT_TS_MS..MAX_EVENT_TS_MS).contains(&ts_ms)
}

/// Largest `count` or `weight` one message may carry. Far above any real complaint count or
/// post weight, and far enough below `f64::MAX` that no number of them summed in one bucket
/// (nor the squares the baseline takes of them) can overflow to infinity: every score and
/// every anomaly event stays finite. The schemas say the same (`maximum`).
pub const MAX_AMOUNT: f64 = 1e9;

/// Longest service name or geo code accepted.
pub(crate) const MAX_NAME_LEN: usize = 64;

/// Event time in milliseconds since the Unix epoch (UTC).
///
/// On input it accepts an RFC 3339 string or an integer number of epoch milliseconds;
/// it always serializes as RFC 3339 with millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn to_rfc3339(self) -> String {
        match Utc.timestamp_millis_opt(self.0).single() {
            Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Millis, true),
            None => self.0.to_string(),
        }
    }

    /// Parses RFC 3339 (`2023-06-14T07:00:00Z`, with offset or fraction). The date and time
    /// must be joined by `T` (or `t`), as JSON Schema's `date-time` requires: the schemas in
    /// `schemas/` and this decoder accept exactly the same strings.
    pub fn parse_rfc3339(s: &str) -> Result<Self, String> {
        if let Some(ms) = fast::rfc3339_utc_millis(s.as_bytes()) {
            return Ok(Timestamp(ms));
        }
        if s.as_bytes().get(10) == Some(&b' ') {
            return Err(format!(
                "invalid RFC 3339 timestamp {s:?}: date and time must be joined by 'T'"
            ));
        }
        DateTime::parse_from_rfc3339(s)
            .map(|dt| Timestamp(dt.timestamp_millis()))
            .map_err(|e| format!("invalid RFC 3339 timestamp {s:?}: {e}"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TsVisitor;
        impl Visitor<'_> for TsVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string or integer epoch milliseconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::custom(format!("epoch milliseconds {v} out of range")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timestamp, E> {
                Err(E::custom(format!(
                    "epoch milliseconds must be an integer, got {v}"
                )))
            }
        }
        d.deserialize_any(TsVisitor)
    }
}

/// A social post about a service: one event each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MentionEvent<'a> {
    /// Optional discriminator; when present it must be `"mention"`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Cow<'a, str>>,
    pub ts: Timestamp,
    #[serde(borrow)]
    pub service: Cow<'a, str>,
    #[serde(borrow)]
    pub geo: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub source: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub lang: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub text: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub tags: Option<Vec<Cow<'a, str>>>,
    /// How much this post counts (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Producer's own id of the post, carried but not used.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub id: Option<Cow<'a, str>>,
}

/// A number of problem reports for one service, geography and interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplaintEvent<'a> {
    /// Optional discriminator; when present it must be `"complaint"`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Cow<'a, str>>,
    pub ts: Timestamp,
    #[serde(borrow)]
    pub service: Cow<'a, str>,
    #[serde(borrow)]
    pub geo: Cow<'a, str>,
    /// Reports in the interval; non-negative, may be a non-integer rate.
    pub count: f64,
    /// What users complain about, e.g. `login`, `send`, `receive`, `app`, `website`.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub category: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub id: Option<Cow<'a, str>>,
}

/// Which of the two input messages a line or topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Mention,
    Complaint,
}

impl InputKind {
    pub(crate) fn signal(self) -> &'static str {
        match self {
            InputKind::Mention => SIGNAL_MENTIONS,
            InputKind::Complaint => SIGNAL_COMPLAINTS,
        }
    }
}

/// One decoded, validated input event, ready for the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum InputEvent<'a> {
    Mention(MentionEvent<'a>),
    Complaint(ComplaintEvent<'a>),
}

impl InputEvent<'_> {
    pub fn ts(&self) -> Timestamp {
        match self {
            InputEvent::Mention(m) => m.ts,
            InputEvent::Complaint(c) => c.ts,
        }
    }
    pub(crate) fn service(&self) -> &str {
        match self {
            InputEvent::Mention(m) => &m.service,
            InputEvent::Complaint(c) => &c.service,
        }
    }
    pub(crate) fn geo(&self) -> &str {
        match self {
            InputEvent::Mention(m) => &m.geo,
            InputEvent::Complaint(c) => &c.geo,
        }
    }
    pub(crate) fn signal(&self) -> &'static str {
        match self {
            InputEvent::Mention(_) => SIGNAL_MENTIONS,
            InputEvent::Complaint(_) => SIGNAL_COMPLAINTS,
        }
    }
    /// What the event adds to its bucket: a mention's weight or a complaint's count.
    pub fn amount(&self) -> f64 {
        match self {
            InputEvent::Mention(m) => m.weight.unwrap_or(1.0),
            InputEvent::Complaint(c) => c.count,
        }
    }
}

/// Why an input message was rejected. Every variant says what was wrong and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("message is not valid UTF-8")]
    Utf8,
    #[error("message type {found:?} does not belong here (expected {expected:?})")]
    WrongType {
        found: String,
        expected: &'static str,
    },
    #[error("cannot tell a mention from a complaint: {0}")]
    Ambiguous(&'static str),
    #[error("field `{field}` is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error(
        "timestamp {} is outside the accepted range 2000-01-01 .. 2100-01-01",
        Timestamp(*ts)
    )]
    TimestampOutOfRange { ts: i64 },
}

impl DecodeError {
    /// Short stable label for metrics and dead-letter headers.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Json(_) => "json",
            DecodeError::Utf8 => "utf8",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::Ambiguous(_) => "ambiguous",
            DecodeError::InvalidField { .. } => "invalid_field",
            DecodeError::TimestampOutOfRange { .. } => "timestamp_out_of_range",
        }
    }
}

/// Lifecycle state carried by an anomaly event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentState {
    Opened,
    Updated,
    Resolved,
}

/// How far from normal an incident is, from the observed/expected ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Minor,
    Major,
    Critical,
}

impl Severity {
    /// The name on the wire (`minor`, `major`, `critical`), for text that quotes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }
}

/// Which baseline produced `expected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BaselineKind {
    /// Time-of-day / day-of-week profile learned from this series' history.
    Seasonal,
    /// Recent level only: not enough history for a seasonal profile yet.
    Recent,
    /// A new series using its parent geo's time-of-day / day-of-week shape, scaled to its own
    /// level, until it has a week of history of its own.
    Borrowed,
}

/// Thresholds in force for the series when the event was emitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsInForce {
    pub open_z: f64,
    pub close_z: f64,
    pub open_k: u32,
    pub open_n: u32,
    pub close_m: u32,
    pub min_count: f64,
    pub direction: crate::domain::Direction,
    pub bucket_secs: u64,
}

/// What subscribers of the anomaly topic receive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyEvent {
    pub schema_version: u32,
    /// Deterministic: derived from the series and the bucket the incident opened in.
    pub incident_id: String,
    pub state: IncidentState,
    /// Starts at 1 and increases by one per event of this incident.
    pub seq: u64,
    pub service: String,
    pub geo: String,
    pub signal: String,
    pub bucket_start: Timestamp,
    pub bucket_end: Timestamp,
    pub observed: f64,
    pub expected: f64,
    pub zscore: f64,
    /// Normal tail probability of a score at least this extreme; `null` if undefined.
    pub p_value: Option<f64>,
    pub severity: Severity,
    pub opened_at: Timestamp,
    pub peak_at: Timestamp,
    pub peak_zscore: f64,
    pub peak_observed: f64,
    /// End of the last anomalous bucket; set on `resolved` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    /// How often the incident came back within the re-open gap after going quiet.
    pub reopened: u32,
    /// Child geos with an open incident of the same service and signal (for rolled-up geos).
    pub child_geos: Vec<String>,
    /// Other services with an open incident in this geo at this bucket: a hint of a wider problem.
    pub concurrent_services: Vec<String>,
    pub baseline: BaselineKind,
    pub thresholds: ThresholdsInForce,
}

impl AnomalyEvent {
    /// Message key on the anomaly topic: keeps every event of one incident in order.
    pub fn key(&self) -> String {
        format!("{}/{}", self.service, self.geo)
    }
}

/// Panics unless the fast decoder agrees with the reference decoder on `line` (the oracle of
/// the decoder's unit tests), for the fuzz target in `fuzz/`.
#[cfg(fuzzing)]
pub fn assert_decoders_agree(line: &[u8]) {
    fast::assert_decoders_agree(line);
}
