//! Reading a changelog partition from the broker, start to end (the only I/O of the changelog).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{ReadError, Record, RestoreReader, Restored};
use crate::kafka::settings::KafkaSettings;
use crate::kafka::LogContext;

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
    for (k, v) in crate::kafka::admin::security_settings(settings) {
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
pub(super) enum Polled {
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
pub(super) fn read_records(
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
