//! The bounded queue in front of one output.
//!
//! Not a plain `mpsc` channel: when the receiver is slow or down, what to give up matters. An
//! `updated` event is superseded by the next event of its outage, so the oldest `updated` is
//! dropped first; `opened` and `resolved` are what an on-call tool must see to open and close
//! an alert, so they are never dropped while an `updated` can be dropped instead. Once the
//! queue holds only those and is full, they may take up to `capacity` more places; beyond that
//! the oldest is dropped after all, because memory must stay bounded whatever the receiver
//! does (every drop is counted and logged).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::event::{IncidentState, OutageEvent};

/// What [`Queue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued with room to spare.
    Queued,
    /// Queued; the oldest queued `updated` event was dropped to make room.
    DroppedOldestUpdate,
    /// The new event is an `updated` one and the queue is full of `opened` / `resolved`:
    /// the new one was dropped.
    DroppedNew,
    /// Queued beyond the capacity and past the headroom for `opened` / `resolved` events: the
    /// oldest of those was dropped.
    DroppedOldestLifecycle,
    /// The queue is closed (shutting down): dropped.
    Closed,
}

impl Pushed {
    pub(crate) fn dropped(self) -> bool {
        !matches!(self, Pushed::Queued)
    }
}

/// A queued outage event and the input partition whose engine produced it (`None` when the
/// notifier is fed directly, not by the pipeline).
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub event: Arc<OutageEvent>,
    pub partition: Option<i32>,
}

impl std::ops::Deref for Queued {
    type Target = OutageEvent;
    fn deref(&self) -> &OutageEvent {
        &self.event
    }
}

struct Inner {
    items: VecDeque<Queued>,
    closed: bool,
}

/// A bounded FIFO of outage events with the drop policy above; one consumer.
pub(crate) struct Queue {
    capacity: usize,
    inner: Mutex<Inner>,
    ready: tokio::sync::Notify,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                closed: false,
            }),
            ready: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `ev` (never waits).
    pub(crate) fn push(&self, ev: Queued) -> Pushed {
        let mut q = self.lock();
        if q.closed {
            return Pushed::Closed;
        }
        let mut result = Pushed::Queued;
        if q.items.len() >= self.capacity {
            if let Some(i) = q
                .items
                .iter()
                .position(|e| e.state == IncidentState::Updated)
            {
                q.items.remove(i);
                result = Pushed::DroppedOldestUpdate;
            } else if ev.state == IncidentState::Updated {
                return Pushed::DroppedNew;
            } else if q.items.len() >= self.capacity * 2 {
                q.items.pop_front();
                result = Pushed::DroppedOldestLifecycle;
            }
        }
        q.items.push_back(ev);
        drop(q);
        // One consumer: a stored permit wakes it even if it is not waiting yet.
        self.ready.notify_one();
        result
    }

    /// The next event; `None` once closed and empty.
    pub(crate) async fn pop(&self) -> Option<Queued> {
        loop {
            {
                let mut q = self.lock();
                if let Some(e) = q.items.pop_front() {
                    return Some(e);
                }
                if q.closed {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }

    /// No more pushes; [`Self::pop`] returns what is left, then `None`.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, state: IncidentState) -> Queued {
        let mut e: OutageEvent = serde_json::from_value(serde_json::json!({
            "schema_version": 2, "outage_id": "svc/2024-01-01T00:00:00.000Z", "state": "opened",
            "seq": 1, "changes": ["opened"], "service": "svc",
            "as_of": "2024-01-01T00:05:00.000Z", "opened_at": "2024-01-01T00:00:00.000Z",
            "severity": "minor", "confirmed": false, "signals": ["mentions"],
            "countries": ["IT"], "geos": ["IT"], "strongest_geo": "IT", "peak_zscore": 9.0,
            "peak_at": "2024-01-01T00:01:00.000Z", "affected": [], "unlisted_series": 0,
            "above_baseline": [], "top_categories": [], "concurrent_services": [],
            "reopened": 0
        }))
        .unwrap();
        e.seq = seq;
        e.state = state;
        Queued {
            event: Arc::new(e),
            partition: None,
        }
    }

    fn seqs(q: &Queue) -> Vec<u64> {
        q.lock().items.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn full_queue_drops_the_oldest_update_first_and_never_lifecycle_events_for_updates() {
        use IncidentState::*;
        let q = Queue::new(3);
        assert_eq!(q.push(ev(1, Opened)), Pushed::Queued);
        assert_eq!(q.push(ev(2, Updated)), Pushed::Queued);
        assert_eq!(q.push(ev(3, Updated)), Pushed::Queued);
        assert_eq!(q.push(ev(4, Updated)), Pushed::DroppedOldestUpdate);
        assert_eq!(seqs(&q), [1, 3, 4]);
        assert_eq!(q.push(ev(5, Resolved)), Pushed::DroppedOldestUpdate);
        assert_eq!(q.push(ev(6, Opened)), Pushed::DroppedOldestUpdate);
        assert_eq!(seqs(&q), [1, 5, 6]);
        // Only lifecycle events left: a new update is the one dropped...
        assert_eq!(q.push(ev(7, Updated)), Pushed::DroppedNew);
        // ...and lifecycle events use the headroom, then the oldest goes.
        for s in 8..=10 {
            assert_eq!(q.push(ev(s, Opened)), Pushed::Queued);
        }
        assert_eq!(q.push(ev(11, Resolved)), Pushed::DroppedOldestLifecycle);
        assert_eq!(seqs(&q), [5, 6, 8, 9, 10, 11]);
    }

    #[tokio::test]
    async fn close_delivers_what_is_left_then_ends() {
        let q = Queue::new(4);
        q.push(ev(1, IncidentState::Opened));
        q.close();
        assert_eq!(q.push(ev(2, IncidentState::Resolved)), Pushed::Closed);
        assert_eq!(q.pop().await.map(|e| e.seq), Some(1));
        assert!(q.pop().await.is_none());
    }
}
