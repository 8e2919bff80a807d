//! Where it is decided: moving the watermark, closing due buckets, scoring them against the
//! baseline and feeding the incident tracker; idle expiry and the lineage of open incidents.

use super::baseline::Learn;
use super::calibration::HOLD_EFFECT;
use super::incident::{BucketVerdict, IncidentTracker, Transition};
use super::score;
use super::{BucketReport, Engine, EngineSink, Pending, SeriesKey, RING};
use crate::domain::Direction;

/// How long into an incident its anomalous hours are still recorded as the day's pattern.
const RECURRENCE_SPAN_MS: i64 = 86_400_000;

impl Engine {
    /// Pre-aggregated series ([`Self::set_bucket_value`]) whose open buckets hold no value
    /// move straight on to the bucket of `ts_ms`, instead of closing every bucket in between
    /// as missing data one by one: what the engine does and keeps then follows the values, not
    /// the time span between them (one row dated decades after the others cost 39M bucket
    /// closes). Nothing changes but the reports of those missing buckets: a missing bucket
    /// neither learns nor moves an incident. Call it before feeding a value at `ts_ms` (CSV
    /// replay does, row by row).
    pub(crate) fn skip_missing_buckets(&mut self, ts_ms: i64) {
        for slot in 0..self.series.len() {
            if !self.series[slot].as_ref().is_some_and(|s| s.missing_is_gap) {
                continue;
            }
            let w = &mut self.windows[slot];
            let target = ts_ms.div_euclid(w.width_ms as i64);
            if target <= w.next_close || w.ring.iter().any(|v| !v.is_nan()) {
                continue;
            }
            // Values waiting further ahead must enter the ring in order: do not skip past them.
            let slot32 = slot as u32;
            if self
                .overflow
                .keys()
                .any(|&(s, b)| s == slot32 && b < target + RING as i64)
            {
                continue;
            }
            w.next_close = target;
        }
    }

    /// Whether advancing to `watermark_ms` closes at least one bucket.
    pub(crate) fn closes_buckets_at(&self, watermark_ms: i64) -> bool {
        self.next_due <= watermark_ms
    }

    /// Moves the watermark to `watermark_ms` (it never goes back) and closes every bucket whose
    /// end plus allowed lateness is at or before it.
    pub fn advance<S: EngineSink + ?Sized>(&mut self, watermark_ms: i64, sink: &mut S) {
        if self.watermark.is_some_and(|w| watermark_ms <= w) {
            return;
        }
        self.watermark = Some(watermark_ms);
        while self.next_due <= watermark_ms {
            let due = self.next_due;
            self.close_due(due, sink);
        }
    }

    /// End of input: closes every bucket that could still hold data.
    pub fn finish<S: EngineSink + ?Sized>(&mut self, sink: &mut S) {
        let Some(newest) = self.newest_ts else {
            return;
        };
        let end = self
            .windows
            .iter()
            .zip(&self.series)
            .filter(|(_, s)| s.is_some())
            .map(|(w, _)| {
                let width = w.width_ms as i64;
                (newest.div_euclid(width) + 1) * width + w.lateness_ms as i64
            })
            .max()
            .unwrap_or(newest);
        self.advance(end, sink);
    }

    /// Closes the bucket due at `due` of every series, then emits incident events.
    fn close_due<S: EngineSink + ?Sized>(&mut self, due: i64, sink: &mut S) {
        let mut next_due = i64::MAX;
        let mut expired = false;
        for slot in 0..self.series.len() {
            if self.series[slot].is_none() {
                continue;
            }
            let w = self.windows[slot];
            if w.due_ms() == due {
                // A series already idle past its TTL at the target watermark expires now
                // instead of closing empty buckets one by one across a huge watermark jump.
                let target = self.watermark.unwrap_or(due);
                if self.expire_if_idle(slot as u32, target) {
                    expired = true;
                    continue;
                }
                self.close_bucket(slot as u32, sink);
            }
            next_due = next_due.min(self.windows[slot].due_ms());
        }
        self.next_due = next_due;
        if expired {
            self.routes.clear();
        }
        // Incidents opened or resolved in this pass count for the lineage from the next bucket
        // on: every series of the pass saw the lineage as it stood before it, whatever the
        // order of their slots (which a state file does not keep).
        for i in 0..self.pending.len() {
            let (slot, transition) = (self.pending[i].series, self.pending[i].transition);
            let key = self.series[slot as usize]
                .as_ref()
                .expect("live series")
                .key;
            match transition {
                Transition::Opened | Transition::Reopened => {
                    self.open_set.insert(slot);
                    self.mark_ancestors(key, true);
                }
                Transition::Resolved | Transition::Expired => {
                    self.open_set.remove(&slot);
                    self.mark_ancestors(key, false);
                }
                Transition::Grew | Transition::None => {}
            }
        }
        self.emit_pending(sink);
    }

    fn expire_if_idle(&mut self, slot: u32, now: i64) -> bool {
        let s = self.series[slot as usize].as_ref().expect("live series");
        let w = &self.windows[slot as usize];
        if s.tracker.is_open() || now - w.last_event_ms <= s.thresholds.series_ttl.millis() {
            return false;
        }
        // The bucket of the series' last events is still open: close the buckets up to it
        // first, so a watermark jump past the TTL never loses them; the series expires after.
        if w.last_event_ms.div_euclid(w.width_ms as i64) >= w.next_close {
            return false;
        }
        self.drop_series(slot);
        self.free.push(slot);
        self.stats.series_expired += 1;
        true
    }

    fn close_bucket<S: EngineSink + ?Sized>(&mut self, slot: u32, sink: &mut S) {
        let gap = self.series[slot as usize]
            .as_ref()
            .is_some_and(|s| s.missing_is_gap);
        let fill = if gap { f64::NAN } else { 0.0 };
        let w = &mut self.windows[slot as usize];
        let b = w.next_close;
        w.next_close += 1;
        let (width, first_data) = (w.width_ms as i64, w.first_data);
        let ri = b.rem_euclid(RING as i64) as usize;
        let mut value = std::mem::replace(&mut w.ring[ri], fill);
        if !self.overflow.is_empty() {
            // The bucket that just entered the ring's far end may have overflowed earlier.
            if let Some(v) = self.overflow.remove(&(slot, b + RING as i64)) {
                w.ring[ri] = v;
            }
        }
        if b < first_data {
            return;
        }
        if value.is_nan() && !gap {
            value = 0.0;
        }
        self.stats.buckets_closed += 1;
        let start_ms = b * width;
        let end_ms = start_ms + width;
        let lineage_open = self.lineage_open(slot);
        let s = self.series[slot as usize].as_mut().expect("live series");
        s.tracker.forget_after_gap(start_ms, &s.thresholds);
        let t = &s.thresholds;
        let names = (
            self.services.name(s.key.0),
            self.geos.name(s.key.1),
            self.signals.name(s.key.2),
        );
        let warming_up = s.baseline.learned_buckets() < t.warmup_buckets;
        let mut exp = s.baseline.expect(
            start_ms,
            if value.is_nan() { 0.0 } else { value },
            &s.params,
        );

        // Silence is missing data, not zero, when it is itself improbable for a spike-watching
        // series: nothing is learned, nothing opens, and the baseline resumes where it was when
        // events return (an input gap, a broken collector). A drop alert (`down`, `both`) sees
        // a series that falls silent as the collapse it may be. Per series on purpose: a rule
        // over the whole input would make a series' result depend on which services share its
        // Kafka partition.
        let no_data = if value == 0.0 && !gap {
            s.silent_expected += exp.expected;
            t.direction == Direction::Up && s.silent_expected >= t.no_data_expected
        } else {
            s.silent_expected = 0.0;
            value.is_nan()
        };
        if no_data {
            if !value.is_nan() {
                self.stats.no_data_buckets += 1;
            }
            sink.bucket(&BucketReport {
                service: names.0,
                geo: names.1,
                signal: names.2,
                start_ms,
                end_ms,
                observed: None,
                expected: exp.expected,
                scale: exp.scale,
                zscore: 0.0,
                anomaly_score: 0.0,
                alert: s.tracker.is_open(),
                warming_up,
            });
            return;
        }

        // For as long again after an incident was accepted as the new normal, the level from
        // before it is held: a series back there (or past it) has recovered and is scored
        // against it, and one between the two levels is on its way back. Neither is a new
        // incident; the recovering buckets are scored as expected (and learned from as usual,
        // so a partial recovery is followed).
        let mut expected = exp.expected;
        if !s.tracker.is_open() {
            if let Some(old) =
                s.baseline
                    .held_expectation(start_ms, t.max_incident_duration.millis(), &s.params)
            {
                let near = (value - old.expected).abs() < t.close_z * old.scale;
                let reached = (value - old.expected) * (exp.expected - old.expected) <= 0.0;
                if near || reached {
                    s.baseline.restore_held();
                    exp = old;
                    expected = exp.expected;
                } else if (value - exp.expected) * (value - old.expected) <= 0.0 {
                    expected = value;
                }
            }
        }

        // The tail calibration learns how this series strays from its baseline's expectation,
        // not the scores the rules here lower: a calm first day, learned as it was scored,
        // would make the series page later on what it does every day.
        let modelled = score::score(value, exp.expected, exp.scale, t.direction, t.open_z);
        let calibrate = |raw: score::Score| {
            if t.calibrate {
                raw.calibrated(s.calibration.map(), t.direction, t.open_z)
            } else {
                raw
            }
        };
        let mut sc = calibrate(if expected == exp.expected {
            modelled
        } else {
            score::score(value, expected, exp.scale, t.direction, t.open_z)
        });
        // Before the series has a day of history it has no profile, and its level is only the
        // last few minutes': a series first seen in its evening trough would page on its
        // ordinary daytime level, and stay in that incident for days (nothing is learned
        // inside one). A level it already held for an hour today (give or take `close_z`
        // scales, the usual scatter around it) is not an anomaly. Only a bucket that is not
        // quiet asks, as the question costs a pass over the day's hours.
        if sc.z_dir >= t.close_z {
            if let Some((lo, hi)) = s.baseline.levels_before_profile() {
                let scatter = |level: f64| t.close_z * s.baseline.scale(level, &s.params);
                if (lo - scatter(lo)..=hi + scatter(hi)).contains(&value) {
                    expected = value;
                    sc = calibrate(score::score(
                        value,
                        expected,
                        exp.scale,
                        t.direction,
                        t.open_z,
                    ));
                }
            }
        }
        let volume_ok = match t.direction {
            Direction::Up => value >= t.min_count,
            Direction::Down => expected >= t.min_count,
            Direction::Both => value.max(expected) >= t.min_count,
        };
        let verdict = BucketVerdict {
            start_ms,
            end_ms,
            observed: value,
            z_dir: sc.z_dir,
            severity: score::severity(value, expected, sc.z_dir, t.open_z, t.direction),
            volume_ok,
            warming_up,
            recurring_hour: s.baseline.hour_recurs(start_ms, &s.params),
            falling: value < expected,
            effect: if value < expected {
                expected / value
            } else {
                value / expected
            },
        };
        let was_open = s.tracker.is_open();
        let transition = s.tracker.on_bucket(&verdict, t);
        let above = IncidentTracker::is_above(&verdict, t);
        // The hours an anomaly holds in its first day (all of a nightly job's, one day of a
        // long outage's) are recorded, so a pattern that recurs daily is recognised in all
        // its hours at once.
        let young = s
            .tracker
            .opened_at_ms()
            .is_none_or(|opened| start_ms - opened < RECURRENCE_SPAN_MS);
        if above && !warming_up && young {
            s.baseline.mark_anomalous_hour(start_ms, &s.params);
        }
        if t.calibrate && !warming_up && !was_open && !lineage_open {
            match transition {
                Transition::Opened | Transition::Reopened => s.calibration.forget_held(),
                // Held too: a bucket whose raw score reaches `open_z` at several times its
                // expectation, though calibrated below it. Learned at once, the first minute of
                // an outage teaches a young series' tail that such minutes are ordinary, and
                // the next ones score lower (Bologna, first seen the day before, scored 6.5,
                // then 4.8 for as many complaints, and opened 36 minutes late at `open_z`
                // 7.3).
                _ => {
                    let raw = modelled.tail_z(t.direction);
                    s.calibration.learn(
                        raw,
                        above
                            || (raw >= t.open_z
                                && verdict.effect >= HOLD_EFFECT
                                && verdict.volume_ok),
                        s.params.tail_decay,
                        t.open_n,
                    )
                }
            }
        }
        // Warm-up buckets always teach (nothing to protect yet); afterwards a bucket inside an
        // incident, one that counts toward opening one, or one of a geo whose parent or child
        // is inside an incident must not become the new normal.
        let learn = if warming_up {
            Learn::Yes
        } else if s.tracker.is_open() || above {
            Learn::Anomalous {
                recurring_hour: verdict.recurring_hour,
            }
        } else if lineage_open {
            Learn::Contaminated
        } else {
            Learn::Yes
        };
        if transition == Transition::Expired {
            s.baseline.reseed(start_ms, value, &exp);
        } else {
            s.baseline.learn(start_ms, value, &exp, learn, &s.params);
        }
        let alert = s.tracker.is_open();
        sink.bucket(&BucketReport {
            service: names.0,
            geo: names.1,
            signal: names.2,
            start_ms,
            end_ms,
            observed: Some(value),
            expected,
            scale: exp.scale,
            zscore: sc.z,
            anomaly_score: sc.anomaly_score,
            alert,
            warming_up,
        });
        match transition {
            Transition::Opened => self.stats.incidents_opened += 1,
            Transition::Resolved | Transition::Expired => self.stats.incidents_resolved += 1,
            Transition::Reopened | Transition::Grew | Transition::None => {}
        }
        if transition != Transition::None || alert {
            self.pending.push(Pending {
                series: slot,
                transition,
                start_ms,
                end_ms,
                observed: value,
                expected,
                score: sc,
                kind: exp.kind,
            });
        }
    }

    pub(super) fn mark_ancestors(&mut self, (svc, g, sig): SeriesKey, opened: bool) {
        for &anc in &self.geos.chain(g)[1..] {
            let key = (svc, anc, sig);
            if opened {
                *self.open_descendants.entry(key).or_insert(0) += 1;
            } else if let Some(n) = self.open_descendants.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.open_descendants.remove(&key);
                }
            }
        }
    }

    /// An incident is open on another geo of this series' lineage (same service and signal):
    /// a descendant (a city's outage inflates its country) or an ancestor (during a national
    /// outage a small city's counts are inflated too, even in the hours it looks quiet: if it
    /// learned then, the 07:00 resurgence would look normal).
    fn lineage_open(&self, slot: u32) -> bool {
        if self.open_set.is_empty() {
            return false;
        }
        let (svc, g, sig) = self.series[slot as usize]
            .as_ref()
            .expect("live series")
            .key;
        // `open_set`, not the trackers: an ancestor closed earlier in this pass may have
        // opened or resolved already, and the lineage is the one from before the pass.
        self.open_descendants.contains_key(&(svc, g, sig))
            || self.geos.chain(g)[1..].iter().any(|&anc| {
                self.index
                    .get(&(svc, anc, sig))
                    .is_some_and(|a| self.open_set.contains(a))
            })
    }
}
