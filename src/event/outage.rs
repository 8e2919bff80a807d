//! Outage events: what subscribers of the anomaly topic, the status page and `tail` see.
//!
//! One outage of a service is one incident however many geographies and signals it shows
//! in: the per-series incidents that overlap in time are its evidence (see
//! [`crate::engine::outage`]). Schema: `schemas/anomaly.v2.json`.

use serde::{Deserialize, Serialize};

use super::{IncidentState, Severity, Timestamp};

/// `schema_version` of [`OutageEvent`].
pub const OUTAGE_SCHEMA_VERSION: u32 = 2;

/// Why an outage event was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutageChange {
    Opened,
    /// Problems appeared in a country (top-level geo) not reported before.
    NewCountry,
    /// Severity went up.
    Severity,
    /// The strongest score grew by half since the last event.
    Peak,
    /// A second signal (mentions / complaints) agrees: the outage is confirmed.
    SignalJoined,
    /// Came back within the re-open gap after every series had gone quiet.
    Reopened,
    Resolved,
}

/// One series (geo × signal) with an incident inside the outage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AffectedSeries {
    pub geo: String,
    pub signal: String,
    /// The per-series incident (schema version 1, on the series topic).
    pub incident_id: String,
    /// Whether the series incident is still open.
    pub open: bool,
    pub onset: Timestamp,
    pub peak_at: Timestamp,
    pub peak_zscore: f64,
    pub peak_observed: f64,
    pub severity: Severity,
    /// Latest closed bucket of the series while its incident was open.
    pub bucket_start: Timestamp,
    pub observed: f64,
    pub expected: f64,
    pub zscore: f64,
}

/// A complaint category (`login`, `send`, ...) and how many reports carried it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryCount {
    pub category: String,
    pub count: f64,
}

/// What one signal shows above its baseline over the outage so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalExcess {
    pub signal: String,
    /// Sum of (observed − expected) over the outage's buckets, counted once per geo lineage
    /// (a city inside an affected country is not counted twice).
    pub above_baseline: f64,
}

/// What subscribers of the anomaly topic receive (schema version 2): one event per outage
/// transition that a reader would care about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageEvent {
    pub schema_version: u32,
    /// Deterministic: `service/onset` (RFC 3339 start of the first anomalous bucket).
    pub outage_id: String,
    pub state: IncidentState,
    /// 1, 2, 3... per outage; drop duplicates by (outage_id, seq).
    pub seq: u64,
    pub changes: Vec<OutageChange>,
    pub service: String,
    /// End of the newest bucket this event accounts for.
    pub as_of: Timestamp,
    pub opened_at: Timestamp,
    /// End of the last anomalous bucket; set on `resolved` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    /// Lone-signal outages of a service that has both signals are `minor` until the other
    /// signal agrees.
    pub severity: Severity,
    /// At least two signals agree.
    pub confirmed: bool,
    pub signals: Vec<String>,
    /// Top-level geos (first code segment; `*` for service-wide), sorted.
    pub countries: Vec<String>,
    /// Every geo with an incident in this outage, sorted.
    pub geos: Vec<String>,
    pub strongest_geo: String,
    pub peak_zscore: f64,
    pub peak_at: Timestamp,
    /// The series behind the outage, strongest first (at most 64 are listed).
    pub affected: Vec<AffectedSeries>,
    /// Series incidents of this outage that are not listed in `affected`.
    pub unlisted_series: u32,
    pub above_baseline: Vec<SignalExcess>,
    /// Most reported complaint categories since shortly before the outage, most first.
    pub top_categories: Vec<CategoryCount>,
    /// Other services with an open outage in one of the same geos (of those this instance
    /// sees: one input partition's services): a hint of a shared cause.
    pub concurrent_services: Vec<String>,
    pub reopened: u32,
}

impl OutageEvent {
    /// Message key on the anomaly topic: every event of a service's outages stays in order.
    pub(crate) fn key(&self) -> &str {
        &self.service
    }
}

/// Deterministic id of the outage of `service` whose first anomalous bucket started at
/// `onset_ms`.
pub fn outage_id(service: &str, onset_ms: i64) -> String {
    format!("{service}/{}", Timestamp(onset_ms))
}
