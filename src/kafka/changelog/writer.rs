//! The changelog writer: engine deltas to the records of a checkpoint, two keys per series,
//! tombstones for dropped series and for the keys of earlier epochs.

use std::collections::HashMap;

use super::{commit_key, series_record_key, CommitRecord, Record, SeriesRecord};
use crate::engine::state::{self, StateDelta};

/// Where the newest record of a series is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    parity: u8,
    /// The newest record says the series was dropped.
    dropped: bool,
}

/// What to produce for one checkpoint of one partition.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub checkpoint: u64,
    /// Series records and tombstones, in order; they may be sent at once.
    pub records: Vec<Record>,
    /// The commit record and its key (of the writer's epoch): send only once `records` and
    /// everything the state accounts for are acknowledged.
    pub commit: Vec<u8>,
    pub commit_key: Vec<u8>,
    /// Total bytes of keys and values.
    pub bytes: usize,
    /// Series records among `records` (tombstones excluded).
    pub series_written: usize,
}

/// Free slots a commit record lists at most: the ones the engine reuses next (the end of its
/// free list). The whole list grows with every series that ever expired (600k expired series
/// made commit records pass librdkafka's 1 MB message limit and `run` crash-looped);
/// [`crate::engine::Engine::restore_layout`] treats every empty slot the record does not list
/// as free, so the restored engine stays correct and reuses these slots in the same order as
/// the one that wrote it, and the rest in slot order. 4096 slots take at most 20 kB.
pub const MAX_FREE_SLOTS_IN_COMMIT: usize = 4096;

/// Keeps only the [`MAX_FREE_SLOTS_IN_COMMIT`] slots reused first (the list is popped from
/// its end), in order.
fn bound_free_list(free: &mut Vec<u32>) {
    let excess = free.len().saturating_sub(MAX_FREE_SLOTS_IN_COMMIT);
    free.drain(..excess);
}

/// Per-partition bookkeeping of the changelog writer.
#[derive(Debug, Default)]
pub struct ChangelogWriter {
    /// The epoch this writer's keys belong to (see the module documentation).
    pub(super) epoch: u64,
    /// Number of the last checkpoint started (committed or not).
    pub(super) checkpoint: u64,
    /// Where the newest record of each series of this epoch is.
    slots: HashMap<String, Slot>,
    /// Series dropped in a checkpoint not yet committed: (checkpoint, key).
    dropped: Vec<(u64, String)>,
    /// Dropped series whose drop is committed: both keys get tombstones next time.
    tombstones_due: Vec<String>,
    /// Keys of earlier epochs the restore read: tombstoned by the first checkpoint after this
    /// epoch's first commit is acknowledged (from then on this epoch holds the whole state).
    pub(super) retire: Vec<Vec<u8>>,
    retire_due: bool,
}

impl ChangelogWriter {
    /// This writer's epoch.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The next checkpoint has tombstones to write (of an older epoch's keys once this one
    /// committed, or of dropped series): worth writing even if no series changed, or an idle
    /// partition would keep the garbage until its next change.
    pub(crate) fn has_tombstones_due(&self) -> bool {
        self.retire_due || !self.tombstones_due.is_empty()
    }

    /// Turns an engine delta into the records of the next checkpoint. The first delta after
    /// a restore must hold every series ([`crate::engine::Engine::take_changes`] after
    /// [`crate::engine::Engine::restore_layout`] does): a new epoch starts with no records.
    pub fn checkpoint(
        &mut self,
        delta: StateDelta,
        input_topics: &[String; 2],
        offsets: [Option<i64>; 2],
        max_event_ms: [Option<i64>; 2],
        live_series: u64,
    ) -> Outgoing {
        self.checkpoint += 1;
        let k = self.checkpoint;
        let epoch = self.epoch;
        let mut out = Outgoing {
            checkpoint: k,
            ..Outgoing::default()
        };
        let push = |out: &mut Outgoing, key: Vec<u8>, value: Option<Vec<u8>>| {
            out.bytes += key.len() + value.as_ref().map_or(0, Vec::len);
            if value.is_some() {
                out.series_written += 1;
            }
            out.records.push((key, value));
        };

        if self.retire_due {
            self.retire_due = false;
            for key in std::mem::take(&mut self.retire) {
                push(&mut out, key, None);
            }
        }

        // Dropped series whose drop is committed: remove their keys for good. The key that
        // still holds a live version goes first, so a crash in between leaves "dropped".
        for key in std::mem::take(&mut self.tombstones_due) {
            match self.slots.get(&key) {
                Some(s) if s.dropped => {
                    push(&mut out, series_record_key(epoch, 1 - s.parity, &key), None);
                    push(&mut out, series_record_key(epoch, s.parity, &key), None);
                    self.slots.remove(&key);
                }
                _ => {} // came back meanwhile
            }
        }

        for key in delta.removed {
            let Some(s) = self.slots.get(&key).copied() else {
                continue; // never written: nothing to drop
            };
            if s.dropped {
                continue;
            }
            let parity = 1 - s.parity;
            let rec = state::encode(&SeriesRecord {
                checkpoint: k,
                slot: 0,
                state: None,
            });
            push(&mut out, series_record_key(epoch, parity, &key), Some(rec));
            self.slots.insert(
                key.clone(),
                Slot {
                    parity,
                    dropped: true,
                },
            );
            self.dropped.push((k, key));
        }

        for (slot, st) in delta.changed {
            let key = st.key();
            let parity = self.slots.get(&key).map_or(0, |s| 1 - s.parity);
            let rec = state::encode(&SeriesRecord {
                checkpoint: k,
                slot,
                state: Some(st),
            });
            push(&mut out, series_record_key(epoch, parity, &key), Some(rec));
            self.slots.insert(
                key,
                Slot {
                    parity,
                    dropped: false,
                },
            );
        }

        let mut layout = delta.layout;
        bound_free_list(&mut layout.free);
        out.commit = state::encode(&CommitRecord {
            checkpoint: k,
            input_topics: input_topics.clone(),
            offsets,
            max_event_ms,
            layout,
            series: live_series,
        });
        out.commit_key = commit_key(epoch);
        out.bytes += out.commit_key.len() + out.commit.len();
        out
    }

    /// The commit record of `checkpoint` is acknowledged.
    pub(crate) fn committed(&mut self, checkpoint: u64) {
        let (done, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.dropped)
            .into_iter()
            .partition(|(k, _)| *k <= checkpoint);
        self.dropped = later;
        self.tombstones_due
            .extend(done.into_iter().map(|(_, key)| key));
        // This epoch now holds a whole committed state: the older ones are garbage.
        if !self.retire.is_empty() {
            self.retire_due = true;
        }
    }
}
