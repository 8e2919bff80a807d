//! Which input offsets may be committed.
//!
//! An input message is *done* once the bucket it fell into has closed (the partition's
//! watermark passed the message's *due* time: its bucket's end plus allowed lateness) and
//! every anomaly event that closing produced has been acknowledged by the broker. Only then
//! may its offset be committed, or a crash would lose its contribution.
//!
//! Per topic-partition we keep a deque of *runs* `(first_offset, max_due_ms)`: consecutive
//! messages whose due time is not later than the last run's share that run. Event time mostly
//! increases, so there are a handful of runs (about one per bucket in flight), whatever the
//! message rate. After the watermark reaches `wm`, runs with `max_due_ms <= wm` are popped;
//! the committable offset is the first offset of the front run, or the next offset to read.

use std::collections::VecDeque;

/// Offset bookkeeping of one input topic-partition.
#[derive(Debug, Clone, Default)]
pub struct OffsetRuns {
    runs: VecDeque<Run>,
    /// Offset after the last message seen (Kafka's "next offset to read").
    next: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    first_offset: i64,
    max_due_ms: i64,
}

impl OffsetRuns {
    #[cfg(test)]
    /// Runs in flight (for tests and metrics: stays small at any message rate).
    pub(crate) fn len(&self) -> usize {
        self.runs.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Records message `offset` that is done once the watermark reaches `due_ms`. Messages that
    /// are done as soon as what they produced is acknowledged (dead letters) pass `i64::MIN`.
    pub(crate) fn push(&mut self, offset: i64, due_ms: i64) {
        self.next = Some(self.next.map_or(offset + 1, |n| n.max(offset + 1)));
        match self.runs.back_mut() {
            Some(last) if due_ms <= last.max_due_ms => {}
            _ => self.runs.push_back(Run {
                first_offset: offset,
                max_due_ms: due_ms,
            }),
        }
    }

    /// Drops runs whose messages are done at watermark `wm`.
    pub(crate) fn release(&mut self, wm: i64) {
        while self.runs.front().is_some_and(|r| r.max_due_ms <= wm) {
            self.runs.pop_front();
        }
    }

    /// The offset to commit (next message to read after a restart), if any message was seen.
    pub(crate) fn committable(&self) -> Option<i64> {
        match self.runs.front() {
            Some(r) => Some(r.first_offset),
            None => self.next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_committable_before_anything_is_seen() {
        assert_eq!(OffsetRuns::default().committable(), None);
    }

    #[test]
    fn commits_only_up_to_the_first_message_whose_bucket_is_still_open() {
        let mut r = OffsetRuns::default();
        r.push(10, 100);
        r.push(11, 100);
        r.push(12, 200);
        r.push(13, 150); // out of order: joins the run due at 200
        r.push(14, 300);
        assert_eq!(r.len(), 3);
        assert_eq!(r.committable(), Some(10));
        r.release(99);
        assert_eq!(r.committable(), Some(10));
        r.release(100);
        assert_eq!(r.committable(), Some(12));
        r.release(250);
        assert_eq!(r.committable(), Some(14));
        r.release(300);
        assert_eq!(r.committable(), Some(15));
        assert!(r.is_empty());
    }

    #[test]
    fn a_late_message_never_moves_the_commit_past_an_open_bucket() {
        let mut r = OffsetRuns::default();
        r.push(0, 500);
        r.push(1, i64::MIN); // dead letter: done once acknowledged
        r.release(100);
        assert_eq!(r.committable(), Some(0));
        r.release(500);
        assert_eq!(r.committable(), Some(2));
        r.push(2, i64::MIN);
        r.release(500);
        assert_eq!(r.committable(), Some(3));
    }

    #[test]
    fn stays_small_for_a_million_messages_in_time_order() {
        let mut r = OffsetRuns::default();
        for i in 0..1_000_000i64 {
            // ~1000 messages per bucket of 60 s, due 3 minutes after.
            let bucket = i / 1000;
            r.push(i, (bucket + 3) * 60_000);
            if i % 1000 == 999 {
                r.release(bucket * 60_000);
            }
        }
        assert!(r.len() <= 4, "{}", r.len());
    }
}
