//! Durable engine state: what a series has learned, as a versioned, checksummed record.
//!
//! A seasonal baseline takes weeks to learn; these records let it survive restarts,
//! rebalances (the Kafka changelog, keyed by series) and be bootstrapped from history
//! (`replay --save-state`). A record restores *exactly*: the restored engine continues
//! bit-for-bit as if it had never stopped.
//!
//! Wire form of one record: `MAGIC` (4 bytes), format version (u16 LE), CRC-32 of the payload
//! (u32 LE), payload (postcard). The payload is a plain data mirror of the in-memory state,
//! decoupled from its layout so that the layout can change without breaking old records.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::event::{BaselineKind, Severity};

/// First bytes of a state file (a sequence of length-prefixed records).
pub(crate) const FILE_MAGIC: [u8; 4] = *b"SWSF";
/// First bytes of every state record.
pub(crate) const MAGIC: [u8; 4] = *b"SWST";
/// Version of the record payloads this build writes.
pub(crate) const STATE_FORMAT_VERSION: u16 = 6;
/// Oldest version this build reads. Format 3 added the open outages to the engine layout;
/// format 4 added what a baseline knows of how often its series is 0, format 5 the hours of
/// day in which its anomalies began over the last week, format 6 the level a baseline held
/// from before a shift it accepted (see [`decode_series`]). Older records are converted, so
/// an upgrade keeps what every series learned.
pub(crate) const OLDEST_READABLE_VERSION: u16 = 2;
const HEADER_LEN: usize = 10;

/// A state record that cannot be used. The series it held is rebuilt from new input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    #[error("not a spikewatch state record (bad magic bytes)")]
    BadMagic,
    #[error("state format version {found} is newer than this build understands ({supported})")]
    NewerVersion { found: u16, supported: u16 },
    #[error("state format version {found} is no longer supported (this build reads {supported})")]
    OlderVersion { found: u16, supported: u16 },
    #[error("state record is corrupt: checksum mismatch")]
    Checksum,
    #[error("state record is truncated ({len} bytes)")]
    Truncated { len: usize },
    #[error("state record cannot be decoded: {0}")]
    Decode(String),
    #[error("state record is inconsistent: {0}")]
    Invalid(String),
}

impl StateError {
    /// Short machine-readable reason, for counters and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            StateError::BadMagic => "bad_magic",
            StateError::NewerVersion { .. } => "newer_version",
            StateError::OlderVersion { .. } => "older_version",
            StateError::Checksum => "checksum",
            StateError::Truncated { .. } => "truncated",
            StateError::Decode(_) => "decode",
            StateError::Invalid(_) => "invalid",
        }
    }
}

/// Encodes a value as a state record.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    encode_as(value, STATE_FORMAT_VERSION)
}

/// Encodes a value as a record of format `version` (tests write older formats with it).
pub(crate) fn encode_as<T: Serialize>(value: &T, version: u16) -> Vec<u8> {
    let payload = postcard::to_stdvec(value).expect("state types always serialize");
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Decodes a state record, checking magic, version and checksum. For types whose payload is
/// the same in every readable version (see `record_version` for the others).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StateError> {
    record_version(bytes)?;
    let (value, rest) = postcard::take_from_bytes(&bytes[HEADER_LEN..])
        .map_err(|e| StateError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(StateError::Decode(format!(
            "{} trailing bytes after the record",
            rest.len()
        )));
    }
    Ok(value)
}

/// Decodes a [`SeriesState`] record of any readable format.
pub(crate) fn decode_series(bytes: &[u8]) -> Result<SeriesState, StateError> {
    match record_version(bytes)? {
        ..=3 => decode::<SeriesStateV3>(bytes).map(|s| s.map_baseline(Into::into)),
        4 => decode::<SeriesStateV4>(bytes).map(|s| s.map_baseline(Into::into)),
        5 => decode::<SeriesStateV5>(bytes).map(|s| s.map_baseline(Into::into)),
        _ => decode(bytes),
    }
}

/// Checks a record's magic, version and checksum; returns its format version.
pub(crate) fn record_version(bytes: &[u8]) -> Result<u16, StateError> {
    if bytes.len() < HEADER_LEN {
        return Err(if bytes.len() >= 4 && bytes[..4] != MAGIC {
            StateError::BadMagic
        } else {
            StateError::Truncated { len: bytes.len() }
        });
    }
    if bytes[..4] != MAGIC {
        return Err(StateError::BadMagic);
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version > STATE_FORMAT_VERSION {
        return Err(StateError::NewerVersion {
            found: version,
            supported: STATE_FORMAT_VERSION,
        });
    }
    if version < OLDEST_READABLE_VERSION {
        return Err(StateError::OlderVersion {
            found: version,
            supported: OLDEST_READABLE_VERSION,
        });
    }
    let crc = u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
    if crc32fast::hash(&bytes[HEADER_LEN..]) != crc {
        return Err(StateError::Checksum);
    }
    Ok(version)
}

/// Everything one series has learned and is in the middle of.
pub type SeriesState = SeriesStateOf<BaselineState>;

/// A series' state with the baseline of one format (older formats differ only there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesStateOf<B> {
    pub service: String,
    pub geo: String,
    pub signal: String,
    /// Pre-aggregated series (buckets without a value are missing data, not zero).
    pub missing_is_gap: bool,
    /// Bucketing the series was created with; it keeps it across config changes.
    pub bucket_ms: i64,
    pub lateness_ms: i64,
    pub window: WindowState,
    pub baseline: B,
    pub tracker: TrackerState,
    /// Format 2 on.
    pub calibration: CalibrationState,
    /// Events expected over the current run of silent buckets (see `no_data_expected`).
    pub silent_expected: f64,
}

impl SeriesState {
    /// The changelog key of this series.
    pub fn key(&self) -> String {
        series_key(&self.service, &self.geo, &self.signal)
    }
}

/// Key of a series in the changelog and in state files: `service/geo/signal`.
pub(crate) fn series_key(service: &str, geo: &str, signal: &str) -> String {
    format!("{service}/{geo}/{signal}")
}

impl<B> SeriesStateOf<B> {
    /// The same state with its baseline converted (between formats).
    pub(crate) fn map_baseline<C>(self, f: impl FnOnce(B) -> C) -> SeriesStateOf<C> {
        SeriesStateOf {
            service: self.service,
            geo: self.geo,
            signal: self.signal,
            missing_is_gap: self.missing_is_gap,
            bucket_ms: self.bucket_ms,
            lateness_ms: self.lateness_ms,
            window: self.window,
            baseline: f(self.baseline),
            tracker: self.tracker,
            calibration: self.calibration,
            silent_expected: self.silent_expected,
        }
    }
}

/// A [`SeriesState`] of format 5 (its baseline holds no level from before an accepted shift).
pub(crate) type SeriesStateV5 = SeriesStateOf<BaselineStateV5>;
/// A [`SeriesState`] of format 4 (its baseline has no record of anomalous hours).
pub(crate) type SeriesStateV4 = SeriesStateOf<BaselineStateV4>;
/// A [`SeriesState`] of formats 2 and 3 (its baseline has no intermittency).
pub(crate) type SeriesStateV3 = SeriesStateOf<BaselineStateV3>;

/// Open buckets of a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    /// Index (ts / width) of the oldest open bucket.
    pub next_close: i64,
    pub first_data: i64,
    pub last_event_ms: i64,
    /// Sums of the open buckets, oldest first (NaN: no value yet in a pre-aggregated series).
    pub open: Vec<f64>,
    /// Buckets further ahead: (bucket index, sum).
    pub ahead: Vec<(i64, f64)>,
}

/// A [`super::SeasonalBaseline`] as data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineState {
    pub level: f64,
    pub base: f64,
    pub dispersion: f64,
    /// Format 4 on: fraction of learned buckets that were not 0.
    pub nonzero_frac: f64,
    /// Format 4 on: their mean absolute value.
    pub nonzero_mean: f64,
    pub learned_buckets: u32,
    pub bootstrapped: bool,
    pub last_kind: BaselineKind,
    pub last_factor: f64,
    pub borrowed: bool,
    pub daily: Vec<f32>,
    pub weekly: Vec<f32>,
    pub daily_n: Vec<u8>,
    pub weekly_n: Vec<u8>,
    pub acc_hour: i64,
    pub acc_x: f64,
    pub acc_base: f64,
    pub acc_n: u32,
    /// Format 5 on: per hour of day, the days (bit `d`: `d` days before `anomalous_day`)
    /// on which an anomaly began in that hour.
    pub anomalous_hours: Vec<u8>,
    pub anomalous_day: i64,
    /// Format 6 on: the level before the last shift accepted as the new normal, and when it
    /// was accepted.
    pub held_level: Option<f64>,
    pub held_at_ms: i64,
}

/// A [`BaselineState`] of format 5. Each older baseline converts to the next format (3 → 4 →
/// 5 → current), so a new format adds one conversion instead of touching every older one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BaselineStateV5 {
    pub level: f64,
    pub base: f64,
    pub dispersion: f64,
    pub nonzero_frac: f64,
    pub nonzero_mean: f64,
    pub learned_buckets: u32,
    pub bootstrapped: bool,
    pub last_kind: BaselineKind,
    pub last_factor: f64,
    pub borrowed: bool,
    pub daily: Vec<f32>,
    pub weekly: Vec<f32>,
    pub daily_n: Vec<u8>,
    pub weekly_n: Vec<u8>,
    pub acc_hour: i64,
    pub acc_x: f64,
    pub acc_base: f64,
    pub acc_n: u32,
    pub anomalous_hours: Vec<u8>,
    pub anomalous_day: i64,
}

impl From<BaselineStateV5> for BaselineState {
    /// As if no shift had been accepted: the format-5 build kept no level from before one.
    fn from(b: BaselineStateV5) -> Self {
        Self {
            level: b.level,
            base: b.base,
            dispersion: b.dispersion,
            nonzero_frac: b.nonzero_frac,
            nonzero_mean: b.nonzero_mean,
            learned_buckets: b.learned_buckets,
            bootstrapped: b.bootstrapped,
            last_kind: b.last_kind,
            last_factor: b.last_factor,
            borrowed: b.borrowed,
            daily: b.daily,
            weekly: b.weekly,
            daily_n: b.daily_n,
            weekly_n: b.weekly_n,
            acc_hour: b.acc_hour,
            acc_x: b.acc_x,
            acc_base: b.acc_base,
            acc_n: b.acc_n,
            anomalous_hours: b.anomalous_hours,
            anomalous_day: b.anomalous_day,
            held_level: None,
            held_at_ms: 0,
        }
    }
}

/// The baseline the format-5 build wrote (tests write old files with it).
#[cfg(test)]
impl From<BaselineState> for BaselineStateV5 {
    fn from(b: BaselineState) -> Self {
        Self {
            level: b.level,
            base: b.base,
            dispersion: b.dispersion,
            nonzero_frac: b.nonzero_frac,
            nonzero_mean: b.nonzero_mean,
            learned_buckets: b.learned_buckets,
            bootstrapped: b.bootstrapped,
            last_kind: b.last_kind,
            last_factor: b.last_factor,
            borrowed: b.borrowed,
            daily: b.daily,
            weekly: b.weekly,
            daily_n: b.daily_n,
            weekly_n: b.weekly_n,
            acc_hour: b.acc_hour,
            acc_x: b.acc_x,
            acc_base: b.acc_base,
            acc_n: b.acc_n,
            anomalous_hours: b.anomalous_hours,
            anomalous_day: b.anomalous_day,
        }
    }
}

/// A [`BaselineState`] of format 4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BaselineStateV4 {
    pub level: f64,
    pub base: f64,
    pub dispersion: f64,
    pub nonzero_frac: f64,
    pub nonzero_mean: f64,
    pub learned_buckets: u32,
    pub bootstrapped: bool,
    pub last_kind: BaselineKind,
    pub last_factor: f64,
    pub borrowed: bool,
    pub daily: Vec<f32>,
    pub weekly: Vec<f32>,
    pub daily_n: Vec<u8>,
    pub weekly_n: Vec<u8>,
    pub acc_hour: i64,
    pub acc_x: f64,
    pub acc_base: f64,
    pub acc_n: u32,
}

impl From<BaselineStateV4> for BaselineStateV5 {
    /// As if no anomaly had begun in the last week: the format-4 build had no daily pattern
    /// of anomalies, and a series relearns one within days.
    fn from(b: BaselineStateV4) -> Self {
        Self {
            level: b.level,
            base: b.base,
            dispersion: b.dispersion,
            nonzero_frac: b.nonzero_frac,
            nonzero_mean: b.nonzero_mean,
            learned_buckets: b.learned_buckets,
            bootstrapped: b.bootstrapped,
            last_kind: b.last_kind,
            last_factor: b.last_factor,
            borrowed: b.borrowed,
            daily: b.daily,
            weekly: b.weekly,
            daily_n: b.daily_n,
            weekly_n: b.weekly_n,
            acc_hour: b.acc_hour,
            acc_x: b.acc_x,
            acc_base: b.acc_base,
            acc_n: b.acc_n,
            anomalous_hours: vec![0; 24],
            anomalous_day: 0,
        }
    }
}

impl From<BaselineStateV4> for BaselineState {
    fn from(b: BaselineStateV4) -> Self {
        BaselineStateV5::from(b).into()
    }
}

/// The baseline the format-4 build wrote (tests write old files with it).
#[cfg(test)]
impl From<BaselineStateV5> for BaselineStateV4 {
    fn from(b: BaselineStateV5) -> Self {
        Self {
            level: b.level,
            base: b.base,
            dispersion: b.dispersion,
            nonzero_frac: b.nonzero_frac,
            nonzero_mean: b.nonzero_mean,
            learned_buckets: b.learned_buckets,
            bootstrapped: b.bootstrapped,
            last_kind: b.last_kind,
            last_factor: b.last_factor,
            borrowed: b.borrowed,
            daily: b.daily,
            weekly: b.weekly,
            daily_n: b.daily_n,
            weekly_n: b.weekly_n,
            acc_hour: b.acc_hour,
            acc_x: b.acc_x,
            acc_base: b.acc_base,
            acc_n: b.acc_n,
        }
    }
}

#[cfg(test)]
impl From<BaselineState> for BaselineStateV4 {
    fn from(b: BaselineState) -> Self {
        BaselineStateV5::from(b).into()
    }
}

/// A [`BaselineState`] of formats 2 and 3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BaselineStateV3 {
    pub level: f64,
    pub base: f64,
    pub dispersion: f64,
    pub learned_buckets: u32,
    pub bootstrapped: bool,
    pub last_kind: BaselineKind,
    pub last_factor: f64,
    pub borrowed: bool,
    pub daily: Vec<f32>,
    pub weekly: Vec<f32>,
    pub daily_n: Vec<u8>,
    pub weekly_n: Vec<u8>,
    pub acc_hour: i64,
    pub acc_x: f64,
    pub acc_base: f64,
    pub acc_n: u32,
}

impl From<BaselineStateV3> for BaselineStateV4 {
    /// As if the series had never been 0: no intermittency floor until it learns otherwise,
    /// which is how the format-3 build scored it.
    fn from(b: BaselineStateV3) -> Self {
        Self {
            level: b.level,
            base: b.base,
            dispersion: b.dispersion,
            nonzero_frac: 1.0,
            nonzero_mean: b.base.abs(),
            learned_buckets: b.learned_buckets,
            bootstrapped: b.bootstrapped,
            last_kind: b.last_kind,
            last_factor: b.last_factor,
            borrowed: b.borrowed,
            daily: b.daily,
            weekly: b.weekly,
            daily_n: b.daily_n,
            weekly_n: b.weekly_n,
            acc_hour: b.acc_hour,
            acc_x: b.acc_x,
            acc_base: b.acc_base,
            acc_n: b.acc_n,
        }
    }
}

impl From<BaselineStateV3> for BaselineState {
    fn from(b: BaselineStateV3) -> Self {
        BaselineStateV4::from(b).into()
    }
}

/// The baseline the format-3 build wrote (tests write old files with it).
#[cfg(test)]
impl From<BaselineStateV4> for BaselineStateV3 {
    fn from(b: BaselineStateV4) -> Self {
        Self {
            level: b.level,
            base: b.base,
            dispersion: b.dispersion,
            learned_buckets: b.learned_buckets,
            bootstrapped: b.bootstrapped,
            last_kind: b.last_kind,
            last_factor: b.last_factor,
            borrowed: b.borrowed,
            daily: b.daily,
            weekly: b.weekly,
            daily_n: b.daily_n,
            weekly_n: b.weekly_n,
            acc_hour: b.acc_hour,
            acc_x: b.acc_x,
            acc_base: b.acc_base,
            acc_n: b.acc_n,
        }
    }
}

#[cfg(test)]
impl From<BaselineState> for BaselineStateV3 {
    fn from(b: BaselineState) -> Self {
        BaselineStateV4::from(b).into()
    }
}

/// A [`super::calibration::TailCalibration`] as data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CalibrationState {
    pub buckets: f32,
    pub exceedances: f32,
    pub excess: f32,
    pub held_excess: f32,
    pub held_n: u8,
    pub held_age: u8,
}

/// An [`super::IncidentTracker`] as data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerState {
    /// Low 16 bits: which of the last `open_n` buckets reached `open_z`; high 16 bits: which
    /// of the last `sustain_n` counted toward the sustained rule (none before it existed).
    pub recent_above: u32,
    pub quiet_run: u32,
    pub open: Option<IncidentSnapshot>,
    pub last_resolved: Option<IncidentSnapshot>,
}

/// An [`super::Incident`] as data; child geos and services by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentSnapshot {
    pub onset_ms: i64,
    pub seq: u64,
    pub opened_at_ms: i64,
    pub peak_at_ms: i64,
    pub peak_z: f64,
    pub peak_observed: f64,
    pub severity: Severity,
    pub reopened: u32,
    pub last_active_end_ms: i64,
    pub emitted_peak_z: f64,
    pub reported_children: Vec<String>,
    pub reported_services: Vec<String>,
}

/// Engine-wide event-time progress, saved with the series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ClockState {
    pub watermark: Option<i64>,
    pub newest_ts: Option<i64>,
}

/// First record of a state file (format 3; format 2 files start with a bare [`ClockState`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct FileHead {
    pub clock: ClockState,
    /// Open outages, and resolved ones still inside their re-open gap.
    pub outages: Vec<super::OutageState>,
}

/// What an engine holds besides its series: event-time progress, which slot each series
/// occupies and which slots are free (slot order decides the order in which series close a
/// bucket, so a restore that keeps it continues exactly), and the far-ahead detector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineLayout {
    pub clock: ClockState,
    /// Length of the slot table.
    pub slots: u32,
    /// Free slots, in the order the engine reuses them (last first).
    pub free: Vec<u32>,
    /// Far-ahead events seen in a row: (first one's time, count).
    pub far_ahead: Option<(i64, u32)>,
    /// Format 3 on: open outages, and resolved ones still inside their re-open gap.
    pub outages: Vec<super::OutageState>,
}

/// An [`EngineLayout`] of format 2 (no outages).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct EngineLayoutV2 {
    pub clock: ClockState,
    pub slots: u32,
    pub free: Vec<u32>,
    pub far_ahead: Option<(i64, u32)>,
}

impl From<EngineLayoutV2> for EngineLayout {
    fn from(l: EngineLayoutV2) -> Self {
        Self {
            clock: l.clock,
            slots: l.slots,
            free: l.free,
            far_ahead: l.far_ahead,
            outages: Vec::new(),
        }
    }
}

/// What changed in an engine since the previous [`super::Engine::take_changes`]: the
/// incremental checkpoint a changelog writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateDelta {
    pub layout: EngineLayout,
    /// (slot, state) of every series created or changed since the previous delta.
    pub changed: Vec<(u32, SeriesState)>,
    /// Keys (`series_key`) of series that no longer exist (expired or replaced).
    pub removed: Vec<String>,
}

/// What a restore did: records that could not be used are counted, and their series start
/// afresh from new input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoreReport {
    pub restored: usize,
    /// (series key if known, reason) of every record that was skipped.
    pub skipped: Vec<(Option<String>, StateError)>,
}

/// Frames fuzz input as a state file whose records all pass the magic, version and checksum
/// checks, so that `cargo fuzz` reaches the decoding and validation behind them (random bytes
/// would stop at the checksum). The input is a sequence of `len` (u16 LE), `version` (u16
/// LE, taken modulo the readable range), payload (`len − 2` bytes). A seed is a real state
/// file's records (after `FILE_MAGIC`) rewritten in that form.
#[cfg(fuzzing)]
pub fn seal_state_file(input: &[u8]) -> Vec<u8> {
    let mut out = FILE_MAGIC.to_vec();
    let mut rest = input;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).clamp(2, rest.len() - 2);
        let (rec, tail) = rest[2..].split_at(len);
        rest = tail;
        let span = STATE_FORMAT_VERSION - OLDEST_READABLE_VERSION + 1;
        let version = OLDEST_READABLE_VERSION + u16::from_le_bytes([rec[0], rec[1]]) % span;
        let payload = &rec[2..];
        let n = u32::try_from(HEADER_LEN + payload.len()).expect("under 64 KiB");
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        out.extend_from_slice(payload);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_rejects_damage() {
        let clock = ClockState {
            watermark: Some(42),
            newest_ts: Some(43),
        };
        let bytes = encode(&clock);
        assert_eq!(decode::<ClockState>(&bytes), Ok(clock));

        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 0x55;
        assert_eq!(decode::<ClockState>(&flipped), Err(StateError::Checksum));

        let mut newer = bytes.clone();
        newer[4..6].copy_from_slice(&(STATE_FORMAT_VERSION + 1).to_le_bytes());
        assert!(matches!(
            decode::<ClockState>(&newer),
            Err(StateError::NewerVersion { .. })
        ));

        assert_eq!(
            decode::<ClockState>(b"{\"json\":1}"),
            Err(StateError::BadMagic)
        );
        assert_eq!(
            decode::<ClockState>(&bytes[..7]),
            Err(StateError::Truncated { len: 7 })
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode::<ClockState>(&longer), Err(StateError::Checksum));
    }
}
