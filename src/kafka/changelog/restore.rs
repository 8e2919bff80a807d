//! Restore: the state of a partition as of its last commit, from its records in log order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::error::KafkaError;

use super::{commit_key, parse_key, ChangelogWriter, CommitRecord, KeyKind, Record, SeriesRecord};
use crate::engine::state::{SeriesState, StateError};

/// A record the restore could not use, and why. Its series starts afresh from new input.
#[derive(Debug, Clone, PartialEq)]
pub struct Unusable {
    /// Series key (`service/geo/signal`), or `commit`.
    pub key: String,
    pub error: StateError,
}

/// The state of one partition as of its last commit, and a writer ready to continue.
#[derive(Debug, Default)]
pub struct Restored {
    /// `None`: no usable commit (a new partition, or its commit record is unusable).
    pub commit: Option<CommitRecord>,
    /// The epoch of that commit (0 without one).
    pub commit_epoch: u64,
    /// (slot, state) of every series live at the commit.
    pub series: Vec<(u32, SeriesState)>,
    pub writer: ChangelogWriter,
    pub unusable: Vec<Unusable>,
    pub records: u64,
    pub bytes: u64,
}

/// Rebuilds a partition's state from its changelog records, in log order.
pub fn restore(records: impl IntoIterator<Item = Record>) -> Restored {
    let mut reader = RestoreReader::default();
    for r in records {
        reader.push(r);
    }
    reader.finish()
}

/// Why a restore stopped short.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("cancelled: the instance is shutting down")]
    Cancelled,
}

/// Records that restore reads this many at most between two looks at the cancel flag while
/// decoding (a few milliseconds of work).
const CANCEL_CHECK_EVERY: usize = 1024;

/// A restore fed one record at a time, in log order. Only the newest record per key is kept
/// (a tombstone removes its key), so memory follows the state's size, not the changelog's:
/// an uncompacted changelog holds many versions per series (one per checkpoint in which it
/// changed), and holding them all until the end made restore peaks several times the steady
/// state (3.65 GB for 600k series vs ~1 GB).
#[derive(Debug, Default)]
pub struct RestoreReader {
    newest: HashMap<Vec<u8>, Vec<u8>>,
    /// Key and value bytes in `newest`.
    held: usize,
    records: u64,
    bytes: u64,
}

impl RestoreReader {
    /// The next record of the partition.
    pub(crate) fn push(&mut self, (key, value): Record) {
        self.records += 1;
        self.bytes += (key.len() + value.as_ref().map_or(0, Vec::len)) as u64;
        match value {
            Some(v) => {
                let k = key.len();
                self.held += k + v.len();
                if let Some(old) = self.newest.insert(key, v) {
                    self.held -= k + old.len();
                }
            }
            None => {
                if let Some((k, v)) = self.newest.remove_entry(&key) {
                    self.held -= k.len() + v.len();
                }
            }
        }
    }

    #[cfg(test)]
    /// Key and value bytes held (the newest record of every live key).
    pub(crate) fn held_bytes(&self) -> usize {
        self.held
    }

    #[cfg(test)]
    /// Records read so far.
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    /// The state as of the last commit.
    pub(crate) fn finish(self) -> Restored {
        self.finish_unless(&AtomicBool::new(false))
            .expect("never cancelled")
    }

    /// [`Self::finish`], giving up as soon as `cancel` is set.
    pub(crate) fn finish_unless(self, cancel: &AtomicBool) -> Result<Restored, ReadError> {
        let Self {
            mut newest,
            records,
            bytes,
            ..
        } = self;
        let mut out = Restored {
            records,
            bytes,
            ..Restored::default()
        };
        // The newest epoch of any key (the next owner's is one more), and the newest epoch
        // with a commit: the only one trusted.
        let mut last_epoch = 0;
        let mut commit_epoch: Option<u64> = None;
        for k in newest.keys() {
            if let Some((epoch, kind)) = parse_key(k) {
                last_epoch = last_epoch.max(epoch);
                if kind == KeyKind::Commit {
                    commit_epoch = Some(commit_epoch.map_or(epoch, |e| e.max(epoch)));
                }
            }
        }
        let mut commit = None;
        if let Some(e) = commit_epoch {
            let key = commit_key(e);
            if let Some(bytes) = newest.remove(&key) {
                match CommitRecord::decode(&bytes) {
                    Ok(c) => {
                        commit = Some(c);
                        out.commit_epoch = e;
                    }
                    Err(error) => out.unusable.push(Unusable {
                        key: "commit".into(),
                        error,
                    }),
                }
            }
            out.writer.retire.push(key);
        }
        let committed = commit.as_ref().map_or(0, |c| c.checkpoint);
        let trusted_epoch = commit.as_ref().map(|_| out.commit_epoch);

        // Both versions of every series of the trusted epoch; every key read is retired once
        // the new epoch has committed.
        type Versions = [Option<Result<SeriesRecord, StateError>>; 2];
        let mut by_series: HashMap<String, Versions> = HashMap::new();
        let mut highest = committed;
        // Drained: each raw record is freed once decoded.
        for (i, (k, v)) in newest.drain().enumerate() {
            if i % CANCEL_CHECK_EVERY == 0 && cancel.load(Ordering::Relaxed) {
                return Err(ReadError::Cancelled);
            }
            let Some((epoch, kind)) = parse_key(&k) else {
                continue; // a key this build does not know: left alone
            };
            if let KeyKind::Series(parity, key) = kind {
                if Some(epoch) == trusted_epoch {
                    let rec = SeriesRecord::decode(&v);
                    if let Ok(r) = &rec {
                        highest = highest.max(r.checkpoint);
                    }
                    by_series.entry(key.to_string()).or_default()[parity as usize] = Some(rec);
                }
            }
            out.writer.retire.push(k);
        }
        let mut series = Vec::new();
        for (key, versions) in by_series {
            let mut trusted: Option<SeriesRecord> = None;
            let mut corrupt: Option<StateError> = None;
            for v in versions.into_iter().flatten() {
                match v {
                    Err(e) => corrupt = Some(e),
                    // Written after the commit: not covered by it.
                    Ok(r) if r.checkpoint > committed => {}
                    Ok(r) if trusted.as_ref().is_none_or(|t| r.checkpoint > t.checkpoint) => {
                        trusted = Some(r);
                    }
                    Ok(_) => {}
                }
            }
            if let Some(error) = corrupt {
                // The damaged record may have been the newest covered version: nothing about
                // this series can be trusted; it starts afresh.
                out.unusable.push(Unusable { key, error });
                continue;
            }
            // A dropped series (state `None`) is simply not restored.
            if let Some(SeriesRecord {
                slot,
                state: Some(st),
                ..
            }) = trusted
            {
                series.push((slot, st));
            }
        }
        series.sort_by_key(|(slot, _)| *slot);
        out.series = series;
        out.writer.epoch = last_epoch + 1;
        out.writer.checkpoint = highest;
        out.commit = commit;
        Ok(out)
    }
}
