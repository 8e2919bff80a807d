//! Checkpoints: the slot layout, incremental deltas, state files, and the baseline seed of a
//! warm start (see [`state`] for the record formats).

use ahash::AHashMap;

use super::baseline::{BaselineParams, SeasonalBaseline};
use super::calibration::TailCalibration;
use super::incident::{self, IncidentTracker};
use super::outage::OutageTracker;
use super::settings::MAX_LATENESS_BUCKETS;
use super::state::{
    self, ClockState, EngineLayout, RestoreReport, SeriesState, StateDelta, StateError,
};
use super::{Engine, FarAhead, Series, SeriesKey, Window, RING};
use crate::domain::Secs;
use crate::event;

/// What a replay of history learned, per series key: a new series whose key is here starts
/// with that baseline (seasonal profile, level, dispersion) instead of warming up, with fresh
/// buckets and no incident. Built from a state file (`replay --save-state`); the history's
/// clock does not matter, so live input may start any time after it.
#[derive(Debug, Default)]
pub struct BaselineSeed {
    pub(super) baselines: AHashMap<String, state::BaselineState>,
}

impl BaselineSeed {
    /// Reads the baselines of a state file. Damaged series records are skipped and reported.
    pub fn from_state_file(bytes: &[u8]) -> Result<(Self, RestoreReport), StateError> {
        let (_, records) = Records::of_state_file(bytes)?;
        let mut seed = Self::default();
        let mut report = RestoreReport::default();
        for rec in records {
            match rec.and_then(state::decode_series) {
                Ok(st) => match SeasonalBaseline::from_state(st.baseline.clone()) {
                    Ok(_) => {
                        seed.baselines.insert(st.key(), st.baseline);
                        report.restored += 1;
                    }
                    Err(e) => report.skipped.push((Some(st.key()), e)),
                },
                Err(e) => {
                    let stop = matches!(e, StateError::Truncated { .. });
                    report.skipped.push((None, e));
                    if stop {
                        break;
                    }
                }
            }
        }
        Ok((seed, report))
    }

    pub fn len(&self) -> usize {
        self.baselines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.baselines.is_empty()
    }
}

/// Checkpoints: export and import of what every series has learned (see [`state`]).
impl Engine {
    /// Event-time progress, saved alongside the series.
    pub fn clock(&self) -> ClockState {
        ClockState {
            watermark: self.watermark,
            newest_ts: self.newest_ts,
        }
    }

    /// Restores event-time progress; call before importing series.
    pub(crate) fn set_clock(&mut self, clock: ClockState) {
        self.watermark = clock.watermark;
        self.newest_ts = clock.newest_ts;
    }

    /// The state of every live series, in slot order (import in this order to continue
    /// exactly, including the order of events within a bucket).
    pub fn export_series(&self) -> Vec<SeriesState> {
        let mut ahead = self.overflow_by_slot();
        (0..self.series.len() as u32)
            .filter(|&slot| self.series[slot as usize].is_some())
            .map(|slot| self.series_state(slot, ahead.remove(&slot).unwrap_or_default()))
            .collect()
    }

    /// Overflow buckets per slot, oldest first.
    fn overflow_by_slot(&self) -> AHashMap<u32, Vec<(i64, f64)>> {
        let mut ahead: AHashMap<u32, Vec<(i64, f64)>> = AHashMap::new();
        for (&(slot, b), &v) in &self.overflow {
            ahead.entry(slot).or_default().push((b, v));
        }
        for a in ahead.values_mut() {
            a.sort_by_key(|&(b, _)| b);
        }
        ahead
    }

    fn series_state(&self, slot: u32, ahead: Vec<(i64, f64)>) -> SeriesState {
        let s = self.series[slot as usize].as_ref().expect("live series");
        let w = &self.windows[slot as usize];
        let (svc, g, sig) = s.key;
        SeriesState {
            service: self.services.name(svc).to_string(),
            geo: self.geos.name(g).to_string(),
            signal: self.signals.name(sig).to_string(),
            missing_is_gap: s.missing_is_gap,
            bucket_ms: w.width_ms as i64,
            lateness_ms: w.lateness_ms as i64,
            window: state::WindowState {
                next_close: w.next_close,
                first_data: w.first_data,
                last_event_ms: w.last_event_ms,
                open: (w.next_close..w.next_close + RING as i64)
                    .map(|b| w.ring[b.rem_euclid(RING as i64) as usize])
                    .collect(),
                ahead,
            },
            baseline: s.baseline.to_state(),
            tracker: s.tracker.to_state(|id| match id {
                incident::Id::Geo(g) => self.geos.name(g).to_string(),
                incident::Id::Service(x) => self.services.name(x).to_string(),
            }),
            calibration: s.calibration.to_state(),
            silent_expected: s.silent_expected,
        }
    }

    /// New series whose key the seed knows start from its baseline.
    pub fn set_seed(&mut self, seed: std::sync::Arc<BaselineSeed>) {
        self.seed = Some(seed);
    }

    /// Slot table, free list, clock and far-ahead detector (see [`EngineLayout`]).
    pub fn layout(&self) -> EngineLayout {
        EngineLayout {
            clock: self.clock(),
            slots: self.series.len() as u32,
            free: self.free.clone(),
            far_ahead: self.far_ahead.as_ref().map(|f| (f.first, f.count)),
            outages: self.outages.to_state(),
        }
    }

    fn key_name(&self, (svc, g, sig): SeriesKey) -> String {
        state::series_key(
            self.services.name(svc),
            self.geos.name(g),
            self.signals.name(sig),
        )
    }

    /// Every series created or changed since the previous call (all of them on the first
    /// call), and the keys of series gone since: an incremental checkpoint. Replaying the
    /// deltas in order through [`Self::restore_layout`] rebuilds this engine exactly.
    pub fn take_changes(&mut self) -> StateDelta {
        let mut ahead = self.overflow_by_slot();
        self.exported.resize(self.series.len(), None);
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        for slot in 0..self.series.len() {
            let now = self.series[slot]
                .as_ref()
                .map(|s| (s.key, self.windows[slot]));
            let over = ahead.remove(&(slot as u32));
            match (now, self.exported[slot]) {
                (None, None) => {}
                (None, Some((old, _))) => removed.push(self.key_name(old)),
                (Some((key, w)), prev) => {
                    let same = prev.is_some_and(|(k, pw)| k == key && pw.same_as(&w));
                    if same && over.is_none() {
                        continue;
                    }
                    if let Some((old, _)) = prev.filter(|(k, _)| *k != key) {
                        removed.push(self.key_name(old));
                    }
                    let a = over.unwrap_or_default();
                    changed.push((slot as u32, self.series_state(slot as u32, a)));
                }
            }
            self.exported[slot] = now;
        }
        if !removed.is_empty() {
            // A series that moved to another slot is changed, not gone.
            let live: ahash::AHashSet<String> = changed.iter().map(|(_, s)| s.key()).collect();
            removed.retain(|k| !live.contains(k));
        }
        StateDelta {
            layout: self.layout(),
            changed,
            removed,
        }
    }

    /// Rebuilds a fresh engine from a layout and the series at their slots (the last
    /// checkpoint of a changelog). A series that cannot be imported is reported and left out
    /// (its slot becomes free); it starts afresh from new input. Afterwards
    /// [`Self::take_changes`] reports every series once, then what changes: the changelog's
    /// new epoch starts by writing the whole state (see `kafka::changelog`, fencing).
    pub fn restore_layout(
        &mut self,
        layout: EngineLayout,
        mut series: Vec<(u32, SeriesState)>,
    ) -> RestoreReport {
        self.set_clock(layout.clock);
        self.far_ahead = layout.far_ahead.map(|(first, count)| FarAhead {
            first,
            count,
            services: Vec::new(),
        });
        self.outages = OutageTracker::from_state(layout.outages);
        let slots = layout
            .slots
            .max(series.iter().map(|(s, _)| s + 1).max().unwrap_or(0));
        while (self.series.len() as u32) < slots {
            self.alloc_slot();
        }
        series.sort_by_key(|(slot, _)| *slot);
        let mut report = RestoreReport::default();
        for (slot, st) in series {
            let key = st.key();
            match self.install_series(st, Some(slot)) {
                Ok(()) => report.restored += 1,
                Err(e) => report.skipped.push((Some(key), e)),
            }
        }
        let mut free: Vec<u32> = layout
            .free
            .into_iter()
            .filter(|&s| s < slots && self.series[s as usize].is_none())
            .collect();
        let listed: ahash::AHashSet<u32> = free.iter().copied().collect();
        let unlisted: Vec<u32> = (0..slots)
            .filter(|&s| self.series[s as usize].is_none() && !listed.contains(&s))
            .collect();
        // Slots of series that could not be restored are reused last.
        free.splice(0..0, unlisted);
        self.free = free;
        self.exported.clear();
        report
    }

    /// Imports one series' state, replacing the series if it exists. Thresholds come from
    /// the current configuration; bucketing stays as the series was created.
    pub(crate) fn import_series(&mut self, st: SeriesState) -> Result<(), StateError> {
        self.install_series(st, None)
    }

    /// [`Self::import_series`] into a given (allocated, empty) slot, or any slot.
    fn install_series(&mut self, st: SeriesState, at: Option<u32>) -> Result<(), StateError> {
        let invalid = |m: String| StateError::Invalid(m);
        let (key, exact) = self
            .leaf_key(&st.service, &st.geo, &st.signal)
            .map_err(|e| invalid(e.to_string()))?;
        if !exact {
            return Err(invalid(format!(
                "geo {:?} does not fit under engine.max_geos",
                st.geo
            )));
        }
        let width = u32::try_from(st.bucket_ms)
            .ok()
            .filter(|&w| w > 0)
            .ok_or_else(|| invalid(format!("bucket width {} ms", st.bucket_ms)))?;
        let lateness = u32::try_from(st.lateness_ms)
            .ok()
            .filter(|&l| (l as u64) <= MAX_LATENESS_BUCKETS * width as u64)
            .ok_or_else(|| invalid(format!("allowed lateness {} ms", st.lateness_ms)))?;
        if width % 1000 != 0 || lateness % 1000 != 0 {
            return Err(invalid(format!(
                "bucket width {width} ms or allowed lateness {lateness} ms is not whole seconds"
            )));
        }
        let wst = &st.window;
        if wst.open.len() > 64 * RING || wst.ahead.len() > 1 << 16 {
            return Err(invalid("too many open buckets".into()));
        }
        check_window_reach(wst, width)?;
        let baseline = SeasonalBaseline::from_state(st.baseline)?;
        let calibration = TailCalibration::from_state(&st.calibration)
            .ok_or_else(|| invalid("calibration holds a non-finite or negative value".into()))?;
        if !(st.silent_expected.is_finite() && st.silent_expected >= 0.0) {
            return Err(invalid(format!("silent_expected {}", st.silent_expected)));
        }
        let mut interned_ok = true;
        let tracker = IncidentTracker::from_state(st.tracker, |n| match n {
            incident::Name::Geo(g) if event::validate_geo(g).is_ok() => self.geos.intern(g),
            incident::Name::Service(x) if event::validate_service(x).is_ok() => {
                self.services.insert(x)
            }
            _ => {
                interned_ok = false;
                0
            }
        });
        if !interned_ok {
            return Err(invalid("incident names an invalid geo or service".into()));
        }

        let slot = match (self.index.get(&key), at) {
            (Some(_), Some(_)) => return Err(invalid("the series appears twice".into())),
            (None, Some(slot)) => {
                if self.series.get(slot as usize).is_none_or(|s| s.is_some()) {
                    return Err(invalid(format!("slot {slot} is taken or out of range")));
                }
                if !self.has_room(key.0) {
                    return Err(invalid(
                        "engine.max_series or engine.max_series_per_service reached".into(),
                    ));
                }
                slot
            }
            (Some(&slot), None) => {
                self.drop_series(slot);
                slot
            }
            (None, None) if !self.has_room(key.0) => {
                return Err(invalid(
                    "engine.max_series or engine.max_series_per_service reached".into(),
                ))
            }
            (None, None) => self.alloc_slot(),
        };
        let (svc, g, sig) = key;
        let mut thresholds = self.config.resolve(
            self.services.name(svc),
            self.geos.name(g),
            self.signals.name(sig),
        );
        thresholds.bucket = Secs(width as u64 / 1000);
        thresholds.allowed_lateness = Secs(lateness as u64 / 1000);
        let fill = if st.missing_is_gap { f64::NAN } else { 0.0 };
        let mut window = Window {
            ring: [fill; RING],
            next_close: wst.next_close,
            first_data: wst.first_data,
            last_event_ms: wst.last_event_ms,
            width_ms: width,
            lateness_ms: lateness,
        };
        for (i, &v) in wst.open.iter().enumerate() {
            let b = wst.next_close + i as i64;
            if i < RING {
                window.ring[b.rem_euclid(RING as i64) as usize] = v;
            } else {
                self.overflow.insert((slot, b), v);
            }
        }
        for &(b, v) in &wst.ahead {
            self.overflow.insert((slot, b), v);
        }
        let open = tracker.is_open();
        let mut params = BaselineParams::new(&thresholds);
        params.bucket_ms = width as i64;
        self.windows[slot as usize] = window;
        self.series[slot as usize] = Some(Series {
            key,
            thresholds,
            params,
            baseline,
            tracker,
            calibration,
            silent_expected: st.silent_expected,
            missing_is_gap: st.missing_is_gap,
        });
        self.index.insert(key, slot);
        if !self.routes.is_empty() {
            self.routes.clear();
        }
        self.count_series(key.0, true);
        self.next_due = self.next_due.min(window.due_ms());
        if open {
            self.open_set.insert(slot);
            self.mark_ancestors(key, true);
        }
        Ok(())
    }

    /// Serializes the clock and every series into one byte buffer (a state file).
    ///
    /// Layout: `state::FILE_MAGIC`, then a sequence of `[u32 LE length][record]`; the first
    /// record is the clock, every
    /// other one a series, each with its own header and checksum so that one damaged series
    /// costs only that series.
    pub fn save_state(&self) -> Vec<u8> {
        let mut out = state::FILE_MAGIC.to_vec();
        let mut push = |rec: Vec<u8>| {
            out.extend_from_slice(&(rec.len() as u32).to_le_bytes());
            out.extend_from_slice(&rec);
        };
        push(state::encode(&state::FileHead {
            clock: self.clock(),
            outages: self.outages.to_state(),
        }));
        for s in self.export_series() {
            push(state::encode(&s));
        }
        out
    }

    /// Loads a state file written by [`Self::save_state`] into this (fresh) engine. A damaged
    /// clock record fails the whole restore; a damaged series record is skipped and reported,
    /// and that series starts afresh from new input.
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<RestoreReport, StateError> {
        let (head, records) = Records::of_state_file(bytes)?;
        self.set_clock(head.clock);
        self.outages = OutageTracker::from_state(head.outages);
        let mut report = RestoreReport::default();
        for rec in records {
            let result = rec.and_then(state::decode_series);
            match result {
                Ok(st) => {
                    let key = st.key();
                    match self.import_series(st) {
                        Ok(()) => report.restored += 1,
                        Err(e) => report.skipped.push((Some(key), e)),
                    }
                }
                Err(e) => {
                    let stop = matches!(e, StateError::Truncated { .. });
                    report.skipped.push((None, e));
                    if stop {
                        break;
                    }
                }
            }
        }
        Ok(report)
    }
}

/// Length-prefixed records of a state file.
struct Records<'a> {
    bytes: &'a [u8],
}

/// How far ahead of its oldest open bucket a restored window may hold a bucket or have seen an
/// event. A window reaches ahead only as far as one partition's events run ahead of the
/// engine's watermark (a lagging partition holds it back), which is hours or days; a record
/// reaching further was not written by an engine, and closing the buckets in between one by
/// one would stall the restore (fuzzing found a record that took minutes).
const MAX_WINDOW_REACH_MS: i64 = 2 * 365 * 86_400_000;

/// Checks that a window's times are ones an engine can have written: its oldest open bucket
/// is a representable time, and its newest event and held buckets lie within
/// [`MAX_WINDOW_REACH_MS`] of it.
fn check_window_reach(wst: &state::WindowState, width: u32) -> Result<(), StateError> {
    let width = i64::from(width);
    let max_reach = MAX_WINDOW_REACH_MS / width;
    if wst
        .next_close
        .checked_add(max_reach)
        .and_then(|b| b.checked_mul(width))
        .is_none_or(|ms| ms.unsigned_abs() > 1 << 53)
    {
        return Err(StateError::Invalid(format!(
            "oldest open bucket {} of {width} ms is no representable time",
            wst.next_close
        )));
    }
    let reach = wst
        .ahead
        .iter()
        .map(|&(b, _)| b)
        .chain(std::iter::once(wst.last_event_ms.div_euclid(width)))
        .map(|b| b.saturating_sub(wst.next_close))
        .max()
        .unwrap_or(0);
    if reach > max_reach {
        return Err(StateError::Invalid(format!(
            "window reaches {reach} buckets of {width} ms ahead of its oldest open bucket \
             (at most 2 years)"
        )));
    }
    Ok(())
}

impl<'a> Records<'a> {
    /// The first record of a state file (clock; from format 3 on also the outages), and its
    /// series records after it.
    fn of_state_file(bytes: &'a [u8]) -> Result<(state::FileHead, Self), StateError> {
        let Some(bytes) = bytes.strip_prefix(&state::FILE_MAGIC) else {
            return Err(StateError::BadMagic);
        };
        let mut records = Records { bytes };
        let Some(rec) = records.next() else {
            return Err(StateError::Truncated { len: bytes.len() });
        };
        let rec = rec?;
        let head = if state::record_version(rec)? == 2 {
            state::FileHead {
                clock: state::decode::<ClockState>(rec)?,
                outages: Vec::new(),
            }
        } else {
            state::decode::<state::FileHead>(rec)?
        };
        Ok((head, records))
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<&'a [u8], StateError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.bytes.is_empty() {
            return None;
        }
        let total = self.bytes.len();
        let Some(len) = self.bytes.get(..4) else {
            self.bytes = &[];
            return Some(Err(StateError::Truncated { len: total }));
        };
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        match self.bytes.get(4..4 + len) {
            Some(rec) => {
                self.bytes = &self.bytes[4 + len..];
                Some(Ok(rec))
            }
            None => {
                self.bytes = &[];
                Some(Err(StateError::Truncated { len: total }))
            }
        }
    }
}
