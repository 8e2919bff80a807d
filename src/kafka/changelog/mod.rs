//! Durable engine state: a compacted changelog topic, co-partitioned with the input.
//!
//! Changelog partition `p` holds the state of engine `p` (fed by partition `p` of both input
//! topics) as records keyed by series, plus one commit record per partition. A checkpoint
//! writes every series that changed since the previous one ([`crate::engine::Engine::take_changes`]), then
//! the commit record: checkpoint number, the input offsets the state reflects, the engine's
//! layout and clock. The commit is written only after every record before it and every
//! anomaly event and dead letter the state already accounts for are acknowledged, so a
//! commit names a complete, consistent cut.
//!
//! A crash can leave a checkpoint half written: some series records of checkpoint `K + 1`
//! after the last commit `K`. A compacted topic keeps only the newest record per key, which
//! may then be a version the commit does not cover. So every series has two keys (`s0/…` and
//! `s1/…`) and each write goes to the one not holding its newest version: the newest version
//! with a checkpoint number `≤ K` always survives. On restore the engine gets exactly the
//! state as of commit `K` and input resumes from the offsets in it; every input event is
//! counted once.
//!
//! Fencing. Each owner of a partition (each restore) writes under its own **epoch**: keys
//! `e<N>/s0/…`, `e<N>/s1/…`, `e<N>/commit`, with `N` one more than any epoch in the
//! partition. (Epoch 0 is the unprefixed keys of changelogs written before epochs.) A
//! restore trusts only the newest epoch that has a commit record, and within it only the
//! records that commit covers. An old owner that was paused past its session timeout (a
//! zombie) and wakes up still writing its checkpoints therefore cannot change what the next
//! restore sees: its keys are of an older epoch, so they can neither overwrite the new
//! owner's records under compaction nor outrank its commit. (Its input offset commits are
//! fenced by the group coordinator's generation; its duplicate anomaly events are the
//! at-least-once contract.) For that, the first checkpoint of an epoch writes the whole
//! state, and once its commit is acknowledged every key of the earlier epochs (the zombie's
//! included) is tombstoned, so a changelog holds one epoch's state plus what was written
//! since the last restore.
//!
//! Nothing here does I/O except [`read_partition`]; the bookkeeping is plain data, tested
//! without a broker.
//!
//! Here: the keys and the record types. `writer` turns engine deltas into checkpoints
//! ([`ChangelogWriter`]); `restore` rebuilds a partition's state from its records
//! ([`RestoreReader`]); `read` reads a changelog partition from the broker; `tests` holds the
//! unit tests.

mod read;
mod restore;
mod writer;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::engine::state::{self, EngineLayout, SeriesState, StateError};

pub use read::{read_partition, read_partition_with, restore_partition};
pub use restore::{restore, ReadError, RestoreReader, Restored, Unusable};
pub use writer::{ChangelogWriter, Outgoing, MAX_FREE_SLOTS_IN_COMMIT};

/// Key of the commit record of epoch 0 (changelogs written before epochs).
const LEGACY_COMMIT_KEY: &[u8] = b"commit";

/// Key of the commit record of `epoch`.
pub(crate) fn commit_key(epoch: u64) -> Vec<u8> {
    if epoch == 0 {
        LEGACY_COMMIT_KEY.to_vec()
    } else {
        format!("e{epoch}/commit").into_bytes()
    }
}

/// The key is a commit record's, of any epoch.
pub fn is_commit_key(key: &[u8]) -> bool {
    matches!(parse_key(key), Some((_, KeyKind::Commit)))
}

/// The commit record: what a complete checkpoint covers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub checkpoint: u64,
    /// The input topics (mentions, complaints) the offsets refer to.
    pub input_topics: [String; 2],
    /// Per input topic (mentions, complaints): the next offset to read; `None`: nothing read
    /// yet (resume from the group's committed offset).
    pub offsets: [Option<i64>; 2],
    /// Per input topic: the newest event time seen (the partition watermark's inputs).
    pub max_event_ms: [Option<i64>; 2],
    /// Its free list is cut to the slots reused next (see [`MAX_FREE_SLOTS_IN_COMMIT`]).
    pub layout: EngineLayout,
    /// Live series at this checkpoint.
    pub series: u64,
}

/// A [`CommitRecord`] of state format 2 (its layout has no outages).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct CommitRecordV2 {
    checkpoint: u64,
    input_topics: [String; 2],
    offsets: [Option<i64>; 2],
    max_event_ms: [Option<i64>; 2],
    layout: state::EngineLayoutV2,
    series: u64,
}

impl CommitRecord {
    /// Decodes a commit record of any readable format.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        if state::record_version(bytes)? == 2 {
            let c = state::decode::<CommitRecordV2>(bytes)?;
            return Ok(Self {
                checkpoint: c.checkpoint,
                input_topics: c.input_topics,
                offsets: c.offsets,
                max_event_ms: c.max_event_ms,
                layout: c.layout.into(),
                series: c.series,
            });
        }
        state::decode(bytes)
    }
}

/// A series record. `state: None` records that the series was dropped at `checkpoint`.
pub type SeriesRecord = SeriesRecordOf<SeriesState>;

/// A series record with the series state of one format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesRecordOf<S> {
    pub checkpoint: u64,
    pub slot: u32,
    pub state: Option<S>,
}

/// A [`SeriesRecord`] of state formats 2 and 3.
type SeriesRecordV3 = SeriesRecordOf<state::SeriesStateV3>;
/// A [`SeriesRecord`] of state format 4.
type SeriesRecordV4 = SeriesRecordOf<state::SeriesStateV4>;
/// A [`SeriesRecord`] of state format 5.
type SeriesRecordV5 = SeriesRecordOf<state::SeriesStateV5>;

impl SeriesRecord {
    /// Decodes a series record of any readable format.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let (checkpoint, slot, state) = match state::record_version(bytes)? {
            ..=3 => {
                let r = state::decode::<SeriesRecordV3>(bytes)?;
                (
                    r.checkpoint,
                    r.slot,
                    r.state.map(|s| s.map_baseline(Into::into)),
                )
            }
            4 => {
                let r = state::decode::<SeriesRecordV4>(bytes)?;
                (
                    r.checkpoint,
                    r.slot,
                    r.state.map(|s| s.map_baseline(Into::into)),
                )
            }
            5 => {
                let r = state::decode::<SeriesRecordV5>(bytes)?;
                (
                    r.checkpoint,
                    r.slot,
                    r.state.map(|s| s.map_baseline(Into::into)),
                )
            }
            _ => return state::decode(bytes),
        };
        Ok(Self {
            checkpoint,
            slot,
            state,
        })
    }
}

/// One record to produce to the changelog partition: key and value (`None`: a tombstone).
pub type Record = (Vec<u8>, Option<Vec<u8>>);

fn series_record_key(epoch: u64, parity: u8, key: &str) -> Vec<u8> {
    if epoch == 0 {
        format!("s{parity}/{key}").into_bytes()
    } else {
        format!("e{epoch}/s{parity}/{key}").into_bytes()
    }
}

/// What a changelog key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind<'a> {
    Commit,
    /// A series record: parity and series key.
    Series(u8, &'a str),
}

/// The epoch and kind of a key; `None` for a key this build does not know.
fn parse_key(k: &[u8]) -> Option<(u64, KeyKind<'_>)> {
    let (epoch, rest) = match k.strip_prefix(b"e") {
        Some(r) => {
            let slash = r.iter().position(|&b| b == b'/')?;
            let epoch: u64 = std::str::from_utf8(&r[..slash]).ok()?.parse().ok()?;
            if epoch == 0 {
                return None;
            }
            (epoch, &r[slash + 1..])
        }
        None => (0, k),
    };
    if rest == LEGACY_COMMIT_KEY {
        return Some((epoch, KeyKind::Commit));
    }
    let parity = match rest.get(..3)? {
        b"s0/" => 0,
        b"s1/" => 1,
        _ => return None,
    };
    let key = std::str::from_utf8(&rest[3..]).ok()?;
    Some((epoch, KeyKind::Series(parity, key)))
}
