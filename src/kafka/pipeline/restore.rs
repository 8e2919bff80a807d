//! Restoring a partition's state from the changelog when it is assigned (see
//! [`crate::kafka::changelog`] for the reader), for the run loop answering an assignment
//! (`rebalance.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::partition::PartitionState;
use crate::engine::BaselineSeed;
use crate::engine::EngineConfig;
use crate::kafka::changelog::{self, Restored};
use crate::kafka::{Counters, KafkaSettings};

impl PartitionState {
    /// A partition as of its last changelog commit. Series that cannot be imported start
    /// afresh (reported in the log).
    pub(super) fn restored(
        config: &EngineConfig,
        seed: Option<&Arc<BaselineSeed>>,
        partition: i32,
        r: Restored,
        now: Instant,
    ) -> Self {
        let mut part = Self::new(config, seed, now);
        let Restored {
            commit,
            series,
            writer,
            unusable,
            ..
        } = r;
        for u in &unusable {
            tracing::warn!(
                partition,
                key = %u.key,
                reason = u.error.kind(),
                "changelog record unusable, its series is rebuilt from new input: {}",
                u.error
            );
        }
        if let Some(c) = commit {
            part.restored_open =
                crate::status::restored_open(&c.layout.outages, series.iter().map(|(_, st)| st));
            let report = part.engine.restore_layout(c.layout, series);
            for (key, e) in &report.skipped {
                let key = key.clone().unwrap_or_default();
                tracing::warn!(partition, %key, "cannot restore series, rebuilding it: {e}");
            }
            for (i, tp) in part.topics.iter_mut().enumerate() {
                tp.max_event_ms = c.max_event_ms[i];
                tp.next_offset = c.offsets[i];
            }
        }
        part.writer = writer;
        part
    }
}

/// Why a partition was not restored.
#[derive(Debug)]
pub(super) enum RestoreFailure {
    /// Shutdown was requested meanwhile.
    Cancelled,
    /// Reading or checking the changelog failed for good: the instance stops.
    Failed(String),
}

/// Reads and rebuilds one partition's state, retrying a few times; gives up as soon as
/// `stopping` is set. Reading the changelog and rebuilding the engine block for seconds to
/// minutes, so they run on the blocking pool; the backoff between attempts is a timer, so no
/// tokio worker is held while waiting either.
pub(super) async fn restore_partition(
    settings: &KafkaSettings,
    config: &EngineConfig,
    seed: Option<&Arc<BaselineSeed>>,
    p: i32,
    counters: &Counters,
    stopping: &Arc<AtomicBool>,
) -> Result<PartitionState, RestoreFailure> {
    let started = Instant::now();
    let timeout = Duration::from_secs(settings.restore_timeout.0);
    let mut attempt = 0;
    let restored = loop {
        let (s, stop) = (settings.clone(), stopping.clone());
        let read = tokio::task::spawn_blocking(move || {
            changelog::restore_partition(&s, &s.topics.changelog, p, timeout, &stop)
        })
        .await
        .map_err(|e| {
            RestoreFailure::Failed(format!(
                "reading partition {p} of changelog topic {} failed: {e}",
                settings.topics.changelog
            ))
        })?;
        match read {
            Ok(r) => break r,
            Err(changelog::ReadError::Cancelled) => return Err(RestoreFailure::Cancelled),
            Err(e) if attempt < 3 => {
                attempt += 1;
                tracing::warn!(
                    partition = p,
                    "reading the changelog failed (retrying): {e}"
                );
                // In steps: a shutdown does not wait for the backoff either.
                let until = tokio::time::Instant::now() + Duration::from_millis(500 << attempt);
                while tokio::time::Instant::now() < until {
                    if stopping.load(Ordering::Relaxed) {
                        return Err(RestoreFailure::Cancelled);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(e) => {
                return Err(RestoreFailure::Failed(format!(
                    "cannot restore partition {p} from changelog topic {}: {e}",
                    settings.topics.changelog
                )))
            }
        }
    };
    if let Some(c) = &restored.commit {
        let ours = [&settings.topics.mentions, &settings.topics.complaints];
        if c.input_topics.iter().zip(ours).any(|(a, b)| a != b) {
            return Err(RestoreFailure::Failed(format!(
                "changelog topic {} holds the state of input topics {} / {}, not {} / {}: \
                 give every deployment its own changelog topic ([kafka.topics] changelog)",
                settings.topics.changelog, c.input_topics[0], c.input_topics[1], ours[0], ours[1]
            )));
        }
    }
    let (records, bytes, series) = (restored.records, restored.bytes, restored.series.len());
    let checkpoint = restored.commit.as_ref().map(|c| c.checkpoint);
    let (from_epoch, epoch) = (restored.commit_epoch, restored.writer.epoch());
    counters.observe_restore(started.elapsed(), series as u64);
    Counters::add(
        &counters.unusable_state_records,
        restored.unusable.len() as u64,
    );
    if stopping.load(Ordering::Relaxed) {
        return Err(RestoreFailure::Cancelled);
    }
    let (config, seed) = (config.clone(), seed.cloned());
    let part = tokio::task::spawn_blocking(move || {
        PartitionState::restored(&config, seed.as_ref(), p, restored, Instant::now())
    })
    .await
    .map_err(|e| RestoreFailure::Failed(format!("rebuilding partition {p} failed: {e}")))?;
    tracing::info!(
        partition = p,
        checkpoint,
        from_epoch,
        epoch,
        series,
        records,
        bytes,
        took_ms = started.elapsed().as_millis() as u64,
        "restored partition state from the changelog"
    );
    Ok(part)
}
