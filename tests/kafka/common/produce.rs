//! Writing to the broker: input messages (`produce`) and the far-ahead markers whose committed
//! offsets say that everything before them was processed (`produce_markers`).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::{Msg, Names, PARTITIONS};
use spikewatch::event::InputKind;

pub(crate) fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("message.max.bytes", "20000000")
        .create()
        .unwrap()
}

/// Produces `msgs` to their topics (keyed by service) and waits for every acknowledgement.
pub(crate) fn produce(brokers: &str, n: &Names, msgs: &[Msg]) {
    let p = producer(brokers);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut futs = Vec::with_capacity(msgs.len());
        for m in msgs {
            let mut rec = FutureRecord::to(n.topic(m.kind))
                .key(m.key.as_bytes())
                .payload(&m.payload);
            // Enqueue without waiting; only a full local queue waits.
            loop {
                match p.send_result(rec) {
                    Ok(f) => break futs.push(f),
                    Err((_, r)) => {
                        rec = r;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        }
        for f in futs {
            f.await
                .expect("producer alive")
                .expect("produce acknowledged");
        }
    });
    p.flush(Duration::from_secs(10)).unwrap();
}

/// Produces one far-ahead "marker" message to every partition of both input topics so every
/// partition's watermark passes all earlier messages; returns each marker's offset: once the
/// committed offsets reach them, every earlier message has been processed and acknowledged.
pub(crate) fn produce_markers(
    brokers: &str,
    n: &Names,
    ts_ms: i64,
) -> BTreeMap<(String, i32), i64> {
    let p = producer(brokers);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut out = BTreeMap::new();
    rt.block_on(async {
        for kind in [InputKind::Mention, InputKind::Complaint] {
            for part in 0..PARTITIONS {
                let payload = match kind {
                    InputKind::Mention => {
                        format!(r#"{{"ts":{ts_ms},"service":"zz-marker-{part}","geo":"IT"}}"#)
                    }
                    InputKind::Complaint => format!(
                        r#"{{"ts":{ts_ms},"service":"zz-marker-{part}","geo":"IT","count":1}}"#
                    ),
                };
                let rec = FutureRecord::to(n.topic(kind))
                    .partition(part)
                    .key("marker")
                    .payload(&payload);
                let d = p
                    .send(rec, Duration::from_secs(30))
                    .await
                    .expect("marker produced");
                out.insert((n.topic(kind).to_string(), part), d.offset);
            }
        }
    });
    out
}
