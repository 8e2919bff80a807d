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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::settings::KafkaSettings;
use super::LogContext;
use crate::engine::state::{self, EngineLayout, SeriesState, StateDelta, StateError};

/// Key of the commit record of epoch 0 (changelogs written before epochs).
const LEGACY_COMMIT_KEY: &[u8] = b"commit";

/// Key of the commit record of `epoch`.
pub fn commit_key(epoch: u64) -> Vec<u8> {
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesRecord {
    pub checkpoint: u64,
    pub slot: u32,
    pub state: Option<SeriesState>,
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
    epoch: u64,
    /// Number of the last checkpoint started (committed or not).
    checkpoint: u64,
    /// Where the newest record of each series of this epoch is.
    slots: HashMap<String, Slot>,
    /// Series dropped in a checkpoint not yet committed: (checkpoint, key).
    dropped: Vec<(u64, String)>,
    /// Dropped series whose drop is committed: both keys get tombstones next time.
    tombstones_due: Vec<String>,
    /// Keys of earlier epochs the restore read: tombstoned by the first checkpoint after this
    /// epoch's first commit is acknowledged (from then on this epoch holds the whole state).
    retire: Vec<Vec<u8>>,
    retire_due: bool,
}

impl ChangelogWriter {
    /// This writer's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The next checkpoint has tombstones to write (of an older epoch's keys once this one
    /// committed, or of dropped series): worth writing even if no series changed, or an idle
    /// partition would keep the garbage until its next change.
    pub fn has_tombstones_due(&self) -> bool {
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
    pub fn committed(&mut self, checkpoint: u64) {
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
    pub fn push(&mut self, (key, value): Record) {
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

    /// Key and value bytes held (the newest record of every live key).
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The state as of the last commit.
    pub fn finish(self) -> Restored {
        self.finish_unless(&AtomicBool::new(false))
            .expect("never cancelled")
    }

    /// [`Self::finish`], giving up as soon as `cancel` is set.
    pub fn finish_unless(self, cancel: &AtomicBool) -> Result<Restored, ReadError> {
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
                    let rec = state::decode::<SeriesRecord>(&v);
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

/// Reads changelog partition `partition` of `topic` from its start to its current end: every
/// record, in log order.
pub fn read_partition(
    settings: &KafkaSettings,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Vec<Record>, KafkaError> {
    let mut out = Vec::new();
    match read_partition_with(
        settings,
        topic,
        partition,
        timeout,
        &AtomicBool::new(false),
        |r| out.push(r),
    ) {
        Ok(()) => Ok(out),
        Err(ReadError::Kafka(e)) => Err(e),
        Err(ReadError::Cancelled) => Err(KafkaError::Canceled),
    }
}

/// Restores changelog partition `partition` of `topic` as of its last commit, keeping only
/// the newest record per key while reading (see [`RestoreReader`]). Gives up as soon as
/// `cancel` is set: a shutdown must not wait for a restore (the next owner restores again).
pub fn restore_partition(
    settings: &KafkaSettings,
    topic: &str,
    partition: i32,
    timeout: Duration,
    cancel: &AtomicBool,
) -> Result<Restored, ReadError> {
    let mut reader = RestoreReader::default();
    read_partition_with(settings, topic, partition, timeout, cancel, |r| {
        reader.push(r)
    })?;
    reader.finish_unless(cancel)
}

/// Reads changelog partition `partition` of `topic` from its start to its current end, handing
/// each record to `sink` as it arrives, unless `cancel` is set first.
pub fn read_partition_with(
    settings: &KafkaSettings,
    topic: &str,
    partition: i32,
    timeout: Duration,
    cancel: &AtomicBool,
    sink: impl FnMut(Record),
) -> Result<(), ReadError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.brokers)
        .set("group.id", format!("{}.restore", settings.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.queue.backoff.ms", "10")
        // The end of the partition is known from an empty fetch: do not wait long for one.
        .set("fetch.wait.max.ms", "100")
        .set("client.id", "spikewatch-restore");
    for (k, v) in super::admin::security_settings(settings) {
        c.set(k, v);
    }
    let consumer: BaseConsumer<LogContext> = c.create_with_context(LogContext::new("restore"))?;
    if cancel.load(Ordering::Relaxed) {
        return Err(ReadError::Cancelled);
    }
    // In steps (1 s, doubling up to 8 s: a slow broker still answers one): a shutdown must
    // not wait out `timeout` (minutes) with the broker away.
    let started = Instant::now();
    let mut step = Duration::from_secs(1);
    let (low, high) = loop {
        let left = timeout.saturating_sub(started.elapsed());
        match consumer.fetch_watermarks(topic, partition, left.min(step)) {
            Ok(w) => break w,
            Err(KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut))
                if !left.is_zero() =>
            {
                if cancel.load(Ordering::Relaxed) {
                    return Err(ReadError::Cancelled);
                }
                step = (step * 2).min(Duration::from_secs(8));
            }
            Err(e) => return Err(e.into()),
        }
    };
    if high <= low {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(low))?;
    consumer.assign(&tpl)?;
    read_records(
        || match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => Polled::Record((
                m.key().unwrap_or_default().to_vec(),
                m.payload().map(<[u8]>::to_vec),
            )),
            // The fetch position reached the broker's high watermark: everything is read
            // (offsets may have gaps: compaction, control records).
            Some(Err(KafkaError::PartitionEOF(_))) => Polled::End,
            Some(Err(e)) => Polled::Failed(e),
            None => Polled::Nothing,
        },
        timeout,
        cancel,
        sink,
    )
}

/// One poll of the changelog consumer.
enum Polled {
    /// A record.
    Record(Record),
    /// The end of the partition.
    End,
    /// Nothing within the poll's wait.
    Nothing,
    Failed(KafkaError),
}

/// The read loop of [`read_partition_with`], apart from the consumer: records up to the end
/// of the partition (librdkafka's partition EOF) go to `sink`. Not up to the high watermark
/// listed before the read: some Kafka-protocol brokers (tansu 0.6) list one past the first
/// offset of the last record batch, which cut restores short by all but one record of that
/// batch. The partition EOF comes from the fetch position itself; the cancel flag is looked at before every poll, so a
/// shutdown waits at most one poll (100 ms), never for the rest of the partition.
fn read_records(
    mut poll: impl FnMut() -> Polled,
    timeout: Duration,
    cancel: &AtomicBool,
    mut sink: impl FnMut(Record),
) -> Result<(), ReadError> {
    let mut last_progress = Instant::now();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(ReadError::Cancelled);
        }
        match poll() {
            Polled::Record(record) => {
                last_progress = Instant::now();
                sink(record);
            }
            Polled::End => return Ok(()),
            Polled::Failed(e) => return Err(e.into()),
            Polled::Nothing => {}
        }
        if last_progress.elapsed() > timeout {
            return Err(KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut).into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Secs};
    use crate::engine::{Engine, Observation};

    const T0: i64 = 1_704_067_200_000;

    fn inputs() -> [String; 2] {
        ["m".into(), "c".into()]
    }
    const MIN: i64 = 60_000;

    fn observe(e: &mut Engine, geo: &str, minute: i64, n: f64) {
        e.observe(Observation {
            service: "mail",
            geo,
            signal: "complaints",
            ts_ms: T0 + minute * MIN,
            amount: n,
        })
        .unwrap();
        e.advance(T0 + minute * MIN, &mut Vec::new());
    }

    /// Appends a whole checkpoint (records, then commit) to `log`.
    fn write(log: &mut Vec<Record>, w: &mut ChangelogWriter, e: &mut Engine, offset: i64) -> u64 {
        let out = w.checkpoint(
            e.take_changes(),
            &inputs(),
            [Some(offset), None],
            [None, None],
            0,
        );
        log.extend(out.records);
        log.push((out.commit_key, Some(out.commit)));
        w.committed(out.checkpoint);
        out.checkpoint
    }

    fn rebuilt(log: &[Record], config: &Config) -> (Engine, Restored) {
        let mut r = restore(log.iter().cloned());
        let mut e = Engine::new(config.clone());
        if let Some(c) = &r.commit {
            let report = e.restore_layout(c.layout.clone(), std::mem::take(&mut r.series));
            assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        }
        (e, r)
    }

    #[test]
    fn a_half_written_checkpoint_restores_the_last_committed_one() {
        let config = Config::default();
        let mut e = Engine::new(config.clone());
        let mut w = ChangelogWriter::default();
        let mut log = Vec::new();
        for m in 0..30 {
            observe(&mut e, "IT-RM", m, 5.0);
            observe(&mut e, "IT-MI", m, 3.0);
        }
        write(&mut log, &mut w, &mut e, 100);
        let at_commit = e.export_series();
        for m in 30..40 {
            observe(&mut e, "IT-RM", m, 50.0);
        }
        // Crash after the series records of the next checkpoint, before its commit.
        let out = w.checkpoint(
            e.take_changes(),
            &inputs(),
            [Some(200), None],
            [None, None],
            0,
        );
        assert!(out.series_written > 0);
        log.extend(out.records);

        let (restored, r) = rebuilt(&log, &config);
        assert_eq!(r.commit.as_ref().unwrap().offsets[0], Some(100));
        assert_eq!(restored.export_series(), at_commit);
        assert!(r.unusable.is_empty());
    }

    #[test]
    fn records_of_an_incarnation_that_died_before_committing_never_become_valid() {
        let config = Config::default();
        let mut e = Engine::new(config.clone());
        let mut w = ChangelogWriter::default();
        let mut log = Vec::new();
        for m in 0..20 {
            observe(&mut e, "IT-RM", m, 5.0);
        }
        write(&mut log, &mut w, &mut e, 100);
        let mut doomed = Engine::new(config.clone());
        doomed.restore_layout(
            restore(log.iter().cloned()).commit.unwrap().layout,
            restore(log.iter().cloned()).series,
        );
        for m in 20..25 {
            observe(&mut doomed, "IT-RM", m, 500.0);
        }
        // The doomed incarnation writes records of checkpoint 2 and dies.
        let mut w2 = restore(log.iter().cloned()).writer;
        log.extend(
            w2.checkpoint(
                doomed.take_changes(),
                &inputs(),
                [Some(150), None],
                [None, None],
                0,
            )
            .records,
        );

        // A new incarnation restores checkpoint 1, sees no new input for IT-RM (only a new
        // city), and commits: the doomed records of IT-RM must not become valid.
        let (mut e3, r) = rebuilt(&log, &config);
        let mut w3 = r.writer;
        let before = e3.export_series();
        e3.observe(Observation {
            service: "spotify",
            geo: "DE",
            signal: "complaints",
            ts_ms: T0 + 20 * MIN,
            amount: 1.0,
        })
        .unwrap();
        let expected: Vec<_> = e3.export_series();
        write(&mut log, &mut w3, &mut e3, 160);
        let (e4, r4) = rebuilt(&log, &config);
        assert!(r4.unusable.is_empty());
        assert_eq!(e4.export_series(), expected);
        assert!(before.iter().all(|s| expected.contains(s)));
    }

    #[test]
    fn a_corrupt_record_costs_its_series_and_is_cleared() {
        let config = Config::default();
        let mut e = Engine::new(config.clone());
        let mut w = ChangelogWriter::default();
        let mut log = Vec::new();
        for m in 0..20 {
            observe(&mut e, "IT-RM", m, 5.0);
            observe(&mut e, "DE", m, 5.0);
        }
        write(&mut log, &mut w, &mut e, 100);
        let victim = log
            .iter_mut()
            .find(|(k, _)| k.ends_with(b"mail/DE/complaints"))
            .unwrap();
        let v = victim.1.as_mut().unwrap();
        *v.last_mut().unwrap() ^= 0xff;

        let (mut e2, r) = rebuilt(&log, &config);
        assert_eq!(r.unusable.len(), 1);
        assert_eq!(r.unusable[0].key, "mail/DE/complaints");
        assert_eq!(r.unusable[0].error.kind(), "checksum");
        assert!(e2.export_series().iter().all(|s| s.geo != "DE"));
        assert!(e2.export_series().iter().any(|s| s.geo == "IT-RM"));

        let mut w2 = r.writer;
        write(&mut log, &mut w2, &mut e2, 120);
        let (_, r3) = rebuilt(&log, &config);
        assert!(r3.unusable.is_empty(), "the damaged record was cleared");
    }

    #[test]
    fn dropped_series_leave_tombstones_once_their_drop_is_committed() {
        let mut config = Config::default();
        config.detection.series_ttl = Secs(600);
        let mut e = Engine::new(config.clone());
        let mut w = ChangelogWriter::default();
        let mut log = Vec::new();
        for m in 0..5 {
            observe(&mut e, "IT-RM", m, 5.0);
        }
        write(&mut log, &mut w, &mut e, 10);
        // IT-RM and its roll-ups go idle past their TTL; only DE stays.
        for m in 5..40 {
            observe(&mut e, "DE", m, 5.0);
        }
        let gone = e.stats().series_expired;
        assert!(gone >= 2, "{gone}");
        write(&mut log, &mut w, &mut e, 20);
        let before = log.len();
        write(&mut log, &mut w, &mut e, 30);
        let tombstones = log[before..].iter().filter(|(_, v)| v.is_none()).count();
        assert_eq!(
            tombstones as u64,
            2 * gone,
            "both keys of every dropped series"
        );
        let (e2, r) = rebuilt(&log, &config);
        assert!(r.unusable.is_empty());
        assert_eq!(e2.export_series(), e.export_series());
    }

    #[test]
    fn commit_records_stay_small_with_a_million_free_slots_and_restore_a_working_engine() {
        let config = Config::default();
        let mut e = Engine::new(config.clone());
        for m in 0..30 {
            observe(&mut e, "IT-RM", m, 5.0);
        }
        let before = e.export_series();
        let mut delta = e.take_changes();
        // As after a million series expired: the slot table keeps its length, their slots
        // are free (the lowest reused first, as the engine pops the list from its end).
        const FREED: u32 = 1_000_000;
        let live = delta.layout.slots;
        delta.layout.slots = live + FREED;
        delta.layout.free = (live..live + FREED).rev().collect();
        let full = state::encode(&CommitRecord {
            layout: delta.layout.clone(),
            ..CommitRecord::default()
        });
        assert!(
            full.len() > 1 << 20,
            "the whole list alone: {} bytes",
            full.len()
        );

        let mut w = ChangelogWriter::default();
        let out = w.checkpoint(delta, &inputs(), [Some(7), None], [None, None], 3);
        assert!(
            out.commit.len() < 64 * 1024,
            "commit record of {} bytes",
            out.commit.len()
        );
        let mut log = out.records;
        log.push((out.commit_key, Some(out.commit)));
        let (mut restored, r) = rebuilt(&log, &config);
        assert!(r.unusable.is_empty());
        assert_eq!(restored.export_series(), before);
        let layout = restored.layout();
        assert_eq!(layout.slots, live + FREED);
        assert_eq!(
            layout.free.len(),
            FREED as usize,
            "every empty slot is free"
        );
        assert_eq!(
            layout.free[layout.free.len() - MAX_FREE_SLOTS_IN_COMMIT..],
            (live..live + MAX_FREE_SLOTS_IN_COMMIT as u32)
                .rev()
                .collect::<Vec<_>>()[..],
            "the slots reused next are reused in the writer's order"
        );

        // It keeps working: a new series takes the next free slot, and its checkpoint
        // restores again.
        observe(&mut restored, "DE", 30, 5.0);
        let changed = restored.take_changes();
        let new_slots: Vec<u32> = changed
            .changed
            .iter()
            .filter(|(_, s)| s.geo == "DE")
            .map(|(slot, _)| *slot)
            .collect();
        assert_eq!(new_slots, vec![live], "{:?}", changed.changed);
        let mut w2 = r.writer;
        let out = w2.checkpoint(changed, &inputs(), [Some(8), None], [None, None], 4);
        assert!(out.commit.len() < 64 * 1024);
        log.extend(out.records);
        log.push((out.commit_key, Some(out.commit)));
        let (again, r) = rebuilt(&log, &config);
        assert!(r.unusable.is_empty());
        assert_eq!(again.export_series(), restored.export_series());

        // Records written before the bound (the whole list) are still read.
        let old = CommitRecord::decode(&full).unwrap();
        assert_eq!(old.layout.free.len(), FREED as usize);
    }

    #[test]
    fn reading_a_changelog_stops_at_the_next_record_once_cancelled() {
        // An endless partition (its end is never reached): only the cancel flag stops it.
        let cancel = AtomicBool::new(false);
        let mut polled = 0u64;
        let mut sunk = 0u64;
        let result = read_records(
            || {
                polled += 1;
                if polled == 1000 {
                    cancel.store(true, Ordering::Relaxed);
                }
                Polled::Record((b"s0/a/b/c".to_vec(), Some(vec![0; 8])))
            },
            Duration::from_secs(3600),
            &cancel,
            |_| sunk += 1,
        );
        assert!(matches!(result, Err(ReadError::Cancelled)), "{result:?}");
        assert_eq!(polled, 1000, "no poll after the flag was set");
        assert_eq!(sunk, 1000);
    }

    #[test]
    fn reading_a_stalled_changelog_stops_once_cancelled_not_at_its_timeout() {
        let cancel = AtomicBool::new(false);
        let mut polled = 0;
        let result = read_records(
            || {
                polled += 1;
                assert!(polled <= 3, "polled after cancel");
                if polled == 3 {
                    cancel.store(true, Ordering::Relaxed);
                }
                Polled::Nothing
            },
            Duration::from_secs(3600),
            &cancel,
            |_| {},
        );
        assert!(matches!(result, Err(ReadError::Cancelled)), "{result:?}");
    }

    #[test]
    fn rebuilding_a_read_changelog_stops_once_cancelled() {
        let config = Config::default();
        let mut e = Engine::new(config.clone());
        let mut w = ChangelogWriter::default();
        let mut log = Vec::new();
        for m in 0..5 {
            observe(&mut e, "IT-RM", m, 5.0);
        }
        write(&mut log, &mut w, &mut e, 10);
        let mut reader = RestoreReader::default();
        for r in log.iter().cloned() {
            reader.push(r);
        }
        let cancel = AtomicBool::new(true);
        assert!(matches!(
            reader.finish_unless(&cancel),
            Err(ReadError::Cancelled)
        ));
        // Not cancelled: the same records restore.
        let mut reader = RestoreReader::default();
        for r in log.iter().cloned() {
            reader.push(r);
        }
        let r = reader.finish_unless(&AtomicBool::new(false)).unwrap();
        assert_eq!(r.commit.unwrap().offsets[0], Some(10));
        assert!(!r.series.is_empty());
    }

    #[test]
    fn restore_holds_only_the_newest_record_per_key_while_reading() {
        let config = Config::default();
        let mut e = Engine::new(config.clone());
        let mut w = ChangelogWriter::default();
        let mut log = Vec::new();
        // Many checkpoints of the same few series, as an uncompacted changelog holds them.
        for m in 0..200 {
            observe(&mut e, "IT-RM", m, 5.0 + (m % 7) as f64);
            write(&mut log, &mut w, &mut e, m);
        }
        let total: usize = log
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        let mut newest: HashMap<&[u8], usize> = HashMap::new();
        for (k, v) in &log {
            match v {
                Some(v) => newest.insert(k, k.len() + v.len()),
                None => newest.remove(k.as_slice()),
            };
        }
        let live: usize = newest.values().sum();
        let mut reader = RestoreReader::default();
        let mut peak = 0;
        for r in log.iter().cloned() {
            reader.push(r);
            peak = peak.max(reader.held_bytes());
        }
        assert_eq!(reader.held_bytes(), live);
        assert!(
            peak * 20 < total,
            "held at most {peak} bytes of the {total} read"
        );
        assert_eq!(reader.records(), log.len() as u64);
        let (expected, _) = rebuilt(&log, &config);
        let mut r = reader.finish();
        let mut again = Engine::new(config);
        again.restore_layout(r.commit.take().unwrap().layout, r.series);
        assert_eq!(again.export_series(), expected.export_series());
        assert_eq!(again.export_series(), e.export_series());
    }

    #[test]
    fn no_commit_means_a_fresh_start_that_retires_old_records_once_it_commits() {
        let config = Config::default();
        let mut e = Engine::new(config.clone());
        let mut w = ChangelogWriter::default();
        observe(&mut e, "IT-RM", 0, 5.0);
        let out = w.checkpoint(
            e.take_changes(),
            &inputs(),
            [Some(1), None],
            [None, None],
            0,
        );
        let mut log: Vec<Record> = out.records;
        let old = log.len();
        let r = restore(log.iter().cloned());
        assert!(r.commit.is_none() && r.series.is_empty());
        let mut w2 = r.writer;
        assert_eq!(w2.epoch(), 1);
        let mut fresh = Engine::new(config.clone());
        observe(&mut fresh, "DE", 1, 5.0);
        assert!(!w2.has_tombstones_due());
        write(&mut log, &mut w2, &mut fresh, 2);
        assert!(w2.has_tombstones_due(), "an idle partition still retires");
        let before = log.len();
        write(&mut log, &mut w2, &mut fresh, 3);
        let tombstones: Vec<&Record> = log[before..].iter().filter(|(_, v)| v.is_none()).collect();
        assert_eq!(
            tombstones.len(),
            old,
            "every old key, once the new epoch committed"
        );
        assert!(tombstones.iter().all(|(k, _)| !k.starts_with(b"e1/")));
        let (again, r) = rebuilt(&log, &config);
        assert_eq!(r.commit_epoch, 1);
        assert_eq!(again.export_series(), fresh.export_series());
    }

    /// Keys a compacted topic would keep: the newest record per key, tombstones removing
    /// theirs.
    fn compacted(log: &[Record]) -> usize {
        let mut keys = std::collections::HashSet::new();
        for (k, v) in log {
            if v.is_some() {
                keys.insert(k.clone());
            } else {
                keys.remove(k);
            }
        }
        keys.len()
    }

    /// Issue 13 item 9: an owner paused past its session timeout wakes up and goes on
    /// writing its checkpoints (series records, then a commit) after the new owner restored,
    /// before and after the new owner's first commit. Whatever it writes, the next restore
    /// returns the new owner's state and offsets.
    #[test]
    fn a_zombie_owner_writing_after_a_new_owner_restored_cannot_change_the_next_restore() {
        let config = Config::default();
        let mut a = Engine::new(config.clone());
        let mut log = Vec::new();
        // Owner A (restored from an empty changelog: epoch 1).
        let mut wa = restore(log.iter().cloned()).writer;
        for m in 0..30 {
            observe(&mut a, "IT-RM", m, 5.0);
            observe(&mut a, "IT-MI", m, 3.0);
        }
        write(&mut log, &mut wa, &mut a, 100);

        // A is paused; B gets the partition and restores A's commit (epoch 2).
        let (mut b, r) = rebuilt(&log, &config);
        let mut wb = r.writer;
        assert_eq!((r.commit_epoch, wb.epoch()), (1, 2));

        // Input for minutes `from..to` of one geo, then a whole checkpoint.
        let step = |log: &mut Vec<Record>,
                    w: &mut ChangelogWriter,
                    e: &mut Engine,
                    (geo, from, to, n): (&str, i64, i64, f64),
                    offset: i64| {
            for m in from..to {
                observe(e, geo, m, n);
            }
            write(log, w, e, offset);
        };
        // A wakes up and writes a checkpoint with a rise in Rome that B never sees; B
        // checkpoints its own input (Milan); A again, over keys B has written meanwhile; B
        // again (retiring epoch 1); a last zombie checkpoint after the retirement.
        step(&mut log, &mut wa, &mut a, ("IT-RM", 30, 40, 80.0), 160);
        step(&mut log, &mut wb, &mut b, ("IT-MI", 30, 40, 4.0), 150);
        step(&mut log, &mut wa, &mut a, ("IT-MI", 40, 45, 90.0), 170);
        step(&mut log, &mut wb, &mut b, ("DE", 40, 45, 2.0), 155);
        step(&mut log, &mut wa, &mut a, ("IT-RM", 45, 50, 99.0), 180);

        let (c, r) = rebuilt(&log, &config);
        assert_eq!(r.commit_epoch, 2);
        assert_eq!(r.commit.as_ref().unwrap().offsets[0], Some(155));
        assert!(r.unusable.is_empty());
        assert_eq!(c.export_series(), b.export_series());
        assert_ne!(c.export_series(), a.export_series());
        // The next owner (epoch 3) retires everything else; a compacted topic then holds its
        // state only, about one record per series.
        let mut wc = r.writer;
        let mut c = c;
        assert_eq!(wc.epoch(), 3);
        write(&mut log, &mut wc, &mut c, 156);
        write(&mut log, &mut wc, &mut c, 157);
        assert!(
            compacted(&log) <= c.series_count() + 1,
            "{} keys for {} series",
            compacted(&log),
            c.series_count()
        );
    }

    #[test]
    fn a_restore_reads_a_changelog_written_before_epochs() {
        // Epoch 0 is the unprefixed keys of state format 3.
        let config = Config::default();
        let mut e = Engine::new(config.clone());
        let mut w = ChangelogWriter::default();
        let mut log = Vec::new();
        for m in 0..20 {
            observe(&mut e, "IT-RM", m, 5.0);
        }
        write(&mut log, &mut w, &mut e, 42);
        assert!(log.iter().any(|(k, _)| k == b"commit"));
        assert!(log.iter().any(|(k, _)| k.starts_with(b"s0/mail/")));
        let (restored, r) = rebuilt(&log, &config);
        assert_eq!((r.commit_epoch, r.writer.epoch()), (0, 1));
        assert_eq!(restored.export_series(), e.export_series());
        assert!(is_commit_key(b"commit") && is_commit_key(b"e12/commit"));
        assert!(!is_commit_key(b"e0/commit") && !is_commit_key(b"s0/commit"));
    }
}
