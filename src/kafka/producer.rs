//! The producer: anomaly events and dead letters, idempotent, acknowledged by all in-sync
//! replicas, never timing out on its own (an unreachable broker delays, never drops).

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use super::settings::KafkaSettings;
use super::LogContext;
use crate::event::{AnomalyEvent, OutageEvent};

/// The librdkafka producer configuration: spikewatch's settings, then the pass-through
/// `[kafka.producer]` table (managed keys are refused by validation).
pub fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        // 0 = never give up: while the broker is unreachable messages wait and are retried.
        .set("message.timeout.ms", "0")
        .set("client.id", "spikewatch");
    for (k, v) in &settings.producer {
        c.set(k, v);
    }
    c
}

pub(crate) type Producer = FutureProducer<LogContext>;

pub fn create_producer(settings: &KafkaSettings) -> Result<Producer, KafkaError> {
    producer_config(settings).create_with_context(LogContext::new("producer"))
}

/// Enqueues one record; waits (briefly, repeatedly) while librdkafka's local queue is full
/// instead of failing.
pub fn send_blocking(
    producer: &Producer,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    headers: Option<OwnedHeaders>,
) -> Result<DeliveryFuture, KafkaError> {
    let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(payload);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(h) = headers {
        record = record.headers(h);
    }
    enqueue(producer, record)
}

/// Enqueues `record`, waiting (briefly, repeatedly) while librdkafka's local queue is full.
fn enqueue(
    producer: &Producer,
    mut record: FutureRecord<'_, [u8], [u8]>,
) -> Result<DeliveryFuture, KafkaError> {
    loop {
        match producer.send_result(record) {
            Ok(f) => return Ok(f),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Enqueues one record to a given partition; `payload: None` is a tombstone (compacted
/// topics delete the key). Waits while the local queue is full, like [`send_blocking`].
pub(crate) fn send_to_partition(
    producer: &Producer,
    topic: &str,
    partition: i32,
    key: &[u8],
    payload: Option<&[u8]>,
) -> Result<DeliveryFuture, KafkaError> {
    let mut record = FutureRecord::<[u8], [u8]>::to(topic)
        .partition(partition)
        .key(key);
    if let Some(p) = payload {
        record = record.payload(p);
    }
    enqueue(producer, record)
}

/// Enqueues an outage event keyed by service (all events of a service's outages in order).
pub(crate) fn send_outage(
    producer: &Producer,
    topic: &str,
    event: &OutageEvent,
) -> Result<DeliveryFuture, KafkaError> {
    send_json(producer, topic, event.key(), event)
}

/// Enqueues an anomaly event keyed `service/geo` (all events of one incident in order).
pub(crate) fn send_anomaly(
    producer: &Producer,
    topic: &str,
    event: &AnomalyEvent,
) -> Result<DeliveryFuture, KafkaError> {
    send_json(producer, topic, &event.key(), event)
}

fn send_json(
    producer: &Producer,
    topic: &str,
    key: &str,
    event: &impl serde::Serialize,
) -> Result<DeliveryFuture, KafkaError> {
    // Plain data types with finite numbers: serialising cannot fail.
    let payload = serde_json::to_vec(event).expect("events always serialise");
    send_blocking(producer, topic, Some(key.as_bytes()), &payload, None)
}
