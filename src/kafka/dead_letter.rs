//! Dead letters: input messages that cannot be used go, with their original bytes, to the
//! dead-letter topic; headers name where they came from and why they were refused.

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::DeliveryFuture;

use super::producer::{send_blocking, Producer};

pub(crate) const H_TOPIC: &str = "spikewatch.source.topic";
pub(crate) const H_PARTITION: &str = "spikewatch.source.partition";
pub(crate) const H_OFFSET: &str = "spikewatch.source.offset";
pub(crate) const H_ERROR: &str = "spikewatch.error";
pub(crate) const H_ERROR_KIND: &str = "spikewatch.error.kind";
/// Present when the payload was cut: the original length in bytes.
pub(crate) const H_TRUNCATED_FROM: &str = "spikewatch.truncated_from";

/// Why a message was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reason {
    /// Stable label (`json`, `invalid_field`, `timestamp_out_of_range`, `too_large`, …).
    pub kind: &'static str,
    pub message: String,
}

/// Where a message came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
}

/// Enqueues `payload` (cut to `max_bytes`) to the dead-letter topic.
pub(crate) fn send(
    producer: &Producer,
    dead_letter_topic: &str,
    src: Source<'_>,
    payload: &[u8],
    reason: &Reason,
    max_bytes: usize,
) -> Result<DeliveryFuture, KafkaError> {
    let partition = src.partition.to_string();
    let offset = src.offset.to_string();
    let mut headers = OwnedHeaders::new()
        .insert(Header {
            key: H_TOPIC,
            value: Some(src.topic),
        })
        .insert(Header {
            key: H_PARTITION,
            value: Some(&partition),
        })
        .insert(Header {
            key: H_OFFSET,
            value: Some(&offset),
        })
        .insert(Header {
            key: H_ERROR_KIND,
            value: Some(reason.kind),
        })
        .insert(Header {
            key: H_ERROR,
            value: Some(&reason.message),
        });
    let body = if payload.len() > max_bytes {
        let len = payload.len().to_string();
        headers = headers.insert(Header {
            key: H_TRUNCATED_FROM,
            value: Some(&len),
        });
        &payload[..max_bytes]
    } else {
        payload
    };
    send_blocking(producer, dead_letter_topic, src.key, body, Some(headers))
}
