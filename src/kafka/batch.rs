//! Input messages copied out of librdkafka, so that decoding and the engines run on their own
//! thread while the consumer's thread goes on polling (librdkafka's messages borrow the
//! consumer and cannot leave its thread).
//!
//! Each message carries the *assignment generation* current when it was polled: the
//! rebalance callbacks bump it, and a partition state remembers the generation it was
//! created in. A message polled before its partition was (re)assigned belongs to the previous
//! owner's cut of the input and is skipped: the new state starts from its own offsets, and
//! applying the old message as well would count it twice.

use std::ops::Range;
use std::time::Instant;

/// Messages polled together, in poll order.
#[derive(Debug)]
pub(crate) struct InputBatch {
    /// When the first message was received (its input's "last seen" time).
    pub(crate) received: Instant,
    entries: Vec<Entry>,
    /// Keys and payloads, back to back.
    bytes: Vec<u8>,
}

#[derive(Debug)]
struct Entry {
    topic: u8,
    partition: i32,
    offset: i64,
    generation: u64,
    key: Option<Range<usize>>,
    payload: Option<Range<usize>>,
}

/// One message of an [`InputBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InputMessage<'a> {
    /// Index of the input topic (0 mentions, 1 complaints).
    pub(crate) topic: usize,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) generation: u64,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) payload: Option<&'a [u8]>,
}

impl InputBatch {
    pub(crate) fn with_capacity(messages: usize, received: Instant) -> Self {
        Self {
            received,
            entries: Vec::with_capacity(messages),
            bytes: Vec::with_capacity(messages * 160),
        }
    }

    pub(crate) fn push(&mut self, m: InputMessage<'_>) {
        let mut copy = |b: Option<&[u8]>| {
            b.map(|b| {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(b);
                start..self.bytes.len()
            })
        };
        let key = copy(m.key);
        let payload = copy(m.payload);
        self.entries.push(Entry {
            topic: m.topic as u8,
            partition: m.partition,
            offset: m.offset,
            generation: m.generation,
            key,
            payload,
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = InputMessage<'_>> {
        let bytes = &self.bytes;
        self.entries.iter().map(move |e| InputMessage {
            topic: e.topic as usize,
            partition: e.partition,
            offset: e.offset,
            generation: e.generation,
            key: e.key.clone().map(|r| &bytes[r]),
            payload: e.payload.clone().map(|r| &bytes[r]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_back_as_pushed_including_absent_and_empty_parts() {
        let msgs = [
            InputMessage {
                topic: 0,
                partition: 3,
                offset: 7,
                generation: 1,
                key: Some(b"telegram"),
                payload: Some(br#"{"a":1}"#),
            },
            InputMessage {
                topic: 1,
                partition: 0,
                offset: 8,
                generation: 2,
                key: None,
                payload: Some(b""),
            },
            InputMessage {
                topic: 1,
                partition: 0,
                offset: 9,
                generation: 2,
                key: Some(b""),
                payload: None,
            },
        ];
        let mut b = InputBatch::with_capacity(1, Instant::now());
        assert!(b.is_empty());
        for m in msgs {
            b.push(m);
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.iter().collect::<Vec<_>>(), msgs);
    }
}
