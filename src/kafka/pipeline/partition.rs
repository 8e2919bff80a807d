//! The state of one input partition: its engine, the two topic-partitions feeding it, and its
//! watermark (see the module docs of [`super`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::EngineConfig;
use crate::engine::{BaselineSeed, Engine};
use crate::kafka::changelog::ChangelogWriter;
use crate::kafka::offsets::OffsetRuns;
use crate::status::{RestoredIncident, RestoredOutage};

pub(super) struct TopicPart {
    pub(super) runs: OffsetRuns,
    pub(super) max_event_ms: Option<i64>,
    /// When the last message with an event time was received (dead letters not counted).
    pub(super) last_msg: Instant,
    /// Offset after the last message handled.
    pub(super) next_offset: Option<i64>,
}

pub(super) struct PartitionState {
    pub(super) engine: Engine,
    /// The assignment generation this state was created in (see [`crate::kafka::batch`]).
    pub(super) generation: u64,
    pub(super) topics: [TopicPart; 2],
    pub(super) writer: ChangelogWriter,
    /// A changelog checkpoint of this partition is not committed yet (at most one is).
    pub(super) changelog_busy: bool,
    pub(super) last_changelog: Instant,
    /// Input offsets and event times of the last checkpoint written.
    pub(super) last_committed: Option<OffsetsAndTimes>,
    /// Services whose events this partition put on the status board: forgotten there when
    /// the partition goes (producers key by service, so a service lives in one partition).
    pub(super) board_services: ahash::AHashSet<String>,
    /// Open outages and series incidents the restore found, for the status board (taken
    /// when the partition is adopted).
    pub(super) restored_open: (Vec<RestoredOutage>, Vec<RestoredIncident>),
}

pub(super) type OffsetsAndTimes = ([Option<i64>; 2], [Option<i64>; 2]);

impl PartitionState {
    pub(super) fn new(
        config: &EngineConfig,
        seed: Option<&Arc<BaselineSeed>>,
        now: Instant,
    ) -> Self {
        let tp = || TopicPart {
            runs: OffsetRuns::default(),
            max_event_ms: None,
            last_msg: now,
            next_offset: None,
        };
        let mut engine = Engine::new(config.clone());
        if let Some(seed) = seed {
            engine.set_seed(seed.clone());
        }
        Self {
            engine,
            generation: 0,
            topics: [tp(), tp()],
            writer: ChangelogWriter::default(),
            changelog_busy: false,
            last_changelog: now,
            last_committed: None,
            board_services: ahash::AHashSet::new(),
            restored_open: (Vec::new(), Vec::new()),
        }
    }

    /// The input offsets to resume from (per topic index; `None`: the group's committed
    /// offset).
    pub(super) fn next_offsets(&self) -> [Option<i64>; 2] {
        [self.topics[0].next_offset, self.topics[1].next_offset]
    }

    /// The services this partition put on the status board, or would (restored ones).
    pub(super) fn services_on_board(&self) -> impl Iterator<Item = &str> {
        self.board_services
            .iter()
            .map(String::as_str)
            .chain(self.restored_open.0.iter().map(|o| o.service.as_str()))
            .chain(self.restored_open.1.iter().map(|i| i.service.as_str()))
    }

    /// See the module docs of [`super`]. `None`: hold (a live topic-partition has no event
    /// time yet).
    pub(super) fn watermark(&self, now: Instant, idle: Duration) -> Option<i64> {
        let mut min: Option<i64> = None;
        let mut any_active = false;
        for tp in &self.topics {
            if now.duration_since(tp.last_msg) < idle {
                any_active = true;
                let m = tp.max_event_ms?;
                min = Some(min.map_or(m, |x| x.min(m)));
            }
        }
        if any_active {
            return min;
        }
        let newest = self.topics.iter().filter_map(|t| t.max_event_ms).max()?;
        let last = self.topics.iter().map(|t| t.last_msg).max()?;
        Some(newest + now.duration_since(last).as_millis() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(now: Instant, ages_s: [u64; 2], max_event: [Option<i64>; 2]) -> PartitionState {
        let mut p = PartitionState::new(&EngineConfig::default(), None, now);
        for i in 0..2 {
            p.topics[i].last_msg = now - Duration::from_secs(ages_s[i]);
            p.topics[i].max_event_ms = max_event[i];
        }
        p
    }

    const IDLE: Duration = Duration::from_secs(30);

    #[test]
    fn watermark_is_the_minimum_of_both_live_topic_partitions() {
        let now = Instant::now();
        let p = part(now, [1, 2], [Some(5_000), Some(3_000)]);
        assert_eq!(p.watermark(now, IDLE), Some(3_000));
    }

    #[test]
    fn a_live_topic_partition_without_events_holds_the_watermark() {
        let now = Instant::now();
        let p = part(now, [1, 1], [Some(5_000), None]);
        assert_eq!(p.watermark(now, IDLE), None);
    }

    #[test]
    fn an_idle_topic_partition_no_longer_holds_the_watermark() {
        let now = Instant::now();
        let p = part(now, [1, 31], [Some(5_000), Some(3_000)]);
        assert_eq!(p.watermark(now, IDLE), Some(5_000));
        let p = part(now, [1, 31], [Some(5_000), None]);
        assert_eq!(p.watermark(now, IDLE), Some(5_000));
    }

    #[test]
    fn when_both_are_idle_the_watermark_moves_with_the_wall_clock() {
        let now = Instant::now();
        let p = part(now, [40, 60], [Some(5_000), Some(3_000)]);
        assert_eq!(p.watermark(now, IDLE), Some(5_000 + 40_000));
    }
}
