//! Reading a topic back: every record once its writers are done ([`read_all`]), or until a
//! condition holds ([`read_topic`]); decoding anomaly and outage events as a subscriber would.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::PARTITIONS;
use spikewatch::event::AnomalyEvent;

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) payload: Vec<u8>,
    pub(crate) headers: BTreeMap<String, String>,
}

/// Key of the end marker [`read_all`] writes.
const END_OF_READ: &[u8] = b"\0end-of-read";

/// Every record of a topic, once its writers are done: an end marker is produced to each
/// partition and the topic is read until every one of those markers is back. Completeness depends neither on
/// how fast the broker answers (a fixed read time does: on a loaded machine 5 s once read one
/// partition of four) nor on its listed high watermarks (tansu 0.6 lists one past the first
/// offset of the last record batch). A panic names the partitions still short after two minutes.
pub(crate) fn read_all(brokers: &str, topic: &str) -> Vec<Record> {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Where this call's markers landed: a marker of an earlier call (the same topic read again
    // while its writers go on) is no end, records may follow it.
    let marks: Vec<i64> = rt.block_on(async {
        let mut marks = Vec::new();
        for part in 0..PARTITIONS {
            let d = p
                .send(
                    FutureRecord::to(topic)
                        .partition(part)
                        .key(END_OF_READ)
                        .payload("{}"),
                    Duration::from_secs(30),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("end marker to {topic}/{part}: {e}"));
            marks.push(d.offset);
        }
        marks
    });
    // (records looked at, partitions whose marker came back): each record is looked at once.
    let seen = std::cell::RefCell::new((0usize, vec![false; PARTITIONS as usize]));
    let complete = |r: &[Record]| {
        let mut seen = seen.borrow_mut();
        let (n, ended) = &mut *seen;
        for x in &r[*n..] {
            if x.key.as_deref() == Some(END_OF_READ) && x.offset >= marks[x.partition as usize] {
                ended[x.partition as usize] = true;
            }
        }
        *n = r.len();
        ended.iter().all(|&e| e)
    };
    let out = read_topic(brokers, topic, Duration::from_secs(120), complete);
    assert!(
        complete(&out),
        "{topic}: end markers of partitions {:?} not read back in 120 s ({} records)",
        seen.borrow().1,
        out.len()
    );
    out.into_iter()
        .filter(|r| r.key.as_deref() != Some(END_OF_READ))
        .collect()
}

/// Reads a topic from the beginning until `done(records)` or `timeout`.
pub(crate) fn read_topic(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[Record]) -> bool,
) -> Vec<Record> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "20000000")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < timeout && !done(&out) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let mut headers = BTreeMap::new();
            if let Some(h) = m.headers() {
                for i in 0..h.count() {
                    let hh = h.get(i);
                    headers.insert(
                        hh.key.to_string(),
                        String::from_utf8_lossy(hh.value.unwrap_or_default()).into_owned(),
                    );
                }
            }
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
    }
    out
}

pub(crate) fn anomalies(records: &[Record]) -> Vec<AnomalyEvent> {
    records
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).expect("anomaly event JSON"))
        .collect()
}

/// Outage events (schema version 2), de-duplicated by `(outage_id, seq)` as a subscriber
/// would: (id, seq) → (state, end of the newest bucket it accounts for).
pub(crate) fn outages(
    records: &[Record],
) -> BTreeMap<(String, u64), (spikewatch::event::IncidentState, String)> {
    records
        .iter()
        .map(|r| {
            let e: spikewatch::event::OutageEvent =
                serde_json::from_slice(&r.payload).expect("outage event JSON");
            ((e.outage_id, e.seq), (e.state, e.as_of.to_rfc3339()))
        })
        .collect()
}

/// De-duplicated `(incident_id, seq)` set, as a subscriber sees it.
pub(crate) fn dedup(events: &[AnomalyEvent]) -> BTreeMap<(String, u64), AnomalyEvent> {
    events
        .iter()
        .map(|e| ((e.incident_id.clone(), e.seq), e.clone()))
        .collect()
}
