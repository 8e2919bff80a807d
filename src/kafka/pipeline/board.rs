//! What the pipeline tells the status board: closed buckets and events (through [`Tee`]),
//! when input last arrived, restored outages of adopted partitions, and which services to
//! forget when their partitions move to another instance.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::partition::PartitionState;
use crate::engine::{BucketReport, EngineSink};
use crate::event::{AnomalyEvent, OutageEvent};
use crate::status::{RestoredIncident, RestoredOutage, StatusBoard};

pub(super) struct BoardLink {
    /// Where closed buckets and anomaly events also go, for the status page.
    pub(super) board: Option<Arc<Mutex<StatusBoard>>>,
    /// Wall-clock time (ms) of the last input message, and whether the board has it.
    last_input_ms: Option<i64>,
    input_on_board: bool,
    /// Services on the status board of partitions revoked (when, which), until it is known
    /// whether they come back: the eager protocol revokes every partition at each rebalance
    /// and assigns most of them again at once, and their live views are worth keeping.
    revoked_on_board: BTreeMap<i32, (Instant, Vec<String>)>,
}

impl BoardLink {
    pub(super) fn new() -> Self {
        Self {
            board: None,
            last_input_ms: None,
            input_on_board: true,
            revoked_on_board: BTreeMap::new(),
        }
    }

    /// The board, locked. Lock order: the state, then the board; HTTP handlers take only the
    /// board.
    pub(super) fn lock(&self) -> Option<MutexGuard<'_, StatusBoard>> {
        self.board
            .as_ref()
            .map(|b| b.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Input arrived at wall-clock time `ms` (told to the board by [`Self::input_to_board`]).
    pub(super) fn input_seen(&mut self, ms: i64) {
        self.last_input_ms = Some(ms);
        self.input_on_board = false;
    }

    /// Tells the status board when input last arrived (once per checkpoint tick, not per
    /// batch: the board's lock is shared with the HTTP handlers).
    pub(super) fn input_to_board(&mut self) {
        if self.input_on_board {
            return;
        }
        if let (Some(b), Some(ms)) = (&self.board, self.last_input_ms) {
            b.lock().unwrap_or_else(|e| e.into_inner()).input_seen(ms);
        }
        self.input_on_board = true;
    }

    /// Shows the open outages and incidents restored with an adopted partition.
    pub(super) fn show_restored(
        &self,
        partition: i32,
        restored: &(Vec<RestoredOutage>, Vec<RestoredIncident>),
    ) {
        if let Some(b) = &self.board {
            let (outages, incidents) = restored.clone();
            if !outages.is_empty() || !incidents.is_empty() {
                tracing::info!(
                    partition,
                    outages = outages.len(),
                    incidents = incidents.len(),
                    "restored open outages and incidents shown on the status board"
                );
            }
            b.lock()
                .unwrap_or_else(|e| e.into_inner())
                .record_restored(outages, incidents);
        }
    }

    /// Partition `p`, which put `services` on the board, was revoked at `now`: unless it
    /// comes back, its new owner shows these from now on, and nothing here would ever
    /// resolve them (see [`Self::forget_moved`]).
    pub(super) fn revoked(&mut self, p: i32, now: Instant, services: Vec<String>) {
        self.revoked_on_board.insert(p, (now, services));
    }

    /// Forgets on the status board the services of revoked partitions that were not assigned
    /// again: after an assignment (`assigned`: what it gave), or once they have been gone for
    /// `grace` (no assignment came: a broker outage).
    pub(super) fn forget_moved(
        &mut self,
        assigned: Option<&[i32]>,
        now: Instant,
        grace: Duration,
        partitions: &mut BTreeMap<i32, PartitionState>,
    ) {
        let mut moved: Vec<String> = Vec::new();
        self.revoked_on_board.retain(|p, (at, services)| {
            let back = assigned.is_some_and(|a| a.contains(p));
            let gone = assigned.is_some() || now.saturating_duration_since(*at) > grace;
            if back {
                // Its views stay, still tied to the partition for its next revoke.
                if let Some(part) = partitions.get_mut(p) {
                    part.board_services.extend(services.drain(..));
                }
            } else if gone {
                moved.append(services);
            }
            !(back || gone)
        });
        if moved.is_empty() {
            return;
        }
        tracing::info!(
            services = moved.len(),
            "status board: forgetting services of partitions now owned elsewhere"
        );
        if let Some(mut b) = self.lock() {
            b.forget_services(moved.iter().map(String::as_str));
        }
    }
}

/// The engines' output at a checkpoint: anomaly events to produce, and everything to the
/// status board if there is one.
pub(super) struct Tee<'a> {
    pub(super) events: &'a mut Vec<AnomalyEvent>,
    pub(super) outages: &'a mut Vec<OutageEvent>,
    pub(super) board: Option<&'a mut StatusBoard>,
    /// Services of the partition with events on the board.
    pub(super) services: &'a mut ahash::AHashSet<String>,
}

impl Tee<'_> {
    fn on_board(&mut self, service: &str) {
        if self.board.is_some() && !self.services.contains(service) {
            self.services.insert(service.to_string());
        }
    }
}

impl EngineSink for Tee<'_> {
    fn bucket(&mut self, r: &BucketReport<'_>) {
        if let Some(b) = self.board.as_deref_mut() {
            b.record_bucket(r);
        }
    }
    fn anomaly(&mut self, e: AnomalyEvent) {
        self.on_board(&e.service);
        if let Some(b) = self.board.as_deref_mut() {
            b.record_anomaly(&e);
        }
        self.events.push(e);
    }
    fn outage(&mut self, e: OutageEvent) {
        self.on_board(&e.service);
        if let Some(b) = self.board.as_deref_mut() {
            b.record_outage(&e);
        }
        self.outages.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::test_state as state;
    use super::*;
    use crate::engine::EngineConfig;

    #[test]
    fn the_board_shows_restored_outages_of_an_adopted_partition_and_forgets_them_on_revoke() {
        let mut st = state();
        let board = Arc::new(Mutex::new(StatusBoard::default()));
        st.status.board = Some(board.clone());
        let mut part = PartitionState::new(&EngineConfig::default(), None, Instant::now());
        part.restored_open.0.push(RestoredOutage {
            outage_id: "telegram/2026-06-14T07:00:00.000Z".into(),
            service: "telegram".into(),
            opened_at: crate::event::Timestamp(1_781_420_400_000),
            severity: crate::event::Severity::Major,
            countries: vec!["IT".into()],
            signals: vec!["complaints".into()],
            peak_zscore: 12.0,
            peak_at: crate::event::Timestamp(1_781_420_400_000),
            peak_geo: "IT".into(),
        });
        // A service with live events on the board from this partition.
        part.board_services.insert("whatsapp".into());
        st.adopt(3, part);
        assert_eq!(board.lock().unwrap().incidents().restored.len(), 1);

        // Eager rebalance: revoked, then assigned again: kept.
        let p3 = [(st.topic_names[0].clone(), 3)];
        st.drop_partitions(&p3);
        st.assign(&p3);
        assert_eq!(board.lock().unwrap().incidents().restored.len(), 1);

        // Revoked, and the next assignment does not include it: forgotten.
        st.drop_partitions(&p3);
        assert_eq!(
            board.lock().unwrap().incidents().restored.len(),
            1,
            "not before it is known"
        );
        st.assign(&[(st.topic_names[0].clone(), 1)]);
        assert!(board.lock().unwrap().incidents().restored.is_empty());
    }

    #[test]
    fn the_board_forgets_a_revoked_partition_when_no_assignment_follows() {
        let mut st = state();
        let board = Arc::new(Mutex::new(StatusBoard::default()));
        st.status.board = Some(board.clone());
        let mut part = PartitionState::new(&EngineConfig::default(), None, Instant::now());
        part.restored_open.1.push(crate::status::RestoredIncident {
            incident_id: "telegram/IT/complaints/x".into(),
            service: "telegram".into(),
            geo: "IT".into(),
            signal: "complaints".into(),
            opened_at: crate::event::Timestamp(0),
            severity: crate::event::Severity::Minor,
            peak_zscore: 7.0,
        });
        st.adopt(3, part);
        st.drop_partitions(&[(st.topic_names[0].clone(), 3)]);
        st.forget_moved(None, Instant::now());
        assert_eq!(board.lock().unwrap().incidents().restored_series.len(), 1);
        let later = Instant::now() + st.readiness_grace() + Duration::from_secs(1);
        st.forget_moved(None, later);
        assert!(board.lock().unwrap().incidents().restored_series.is_empty());
    }
}
