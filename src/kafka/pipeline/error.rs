//! Why the pipeline stops without committing further (the last committed offsets stay; a
//! restart re-reads from there).

use rdkafka::error::KafkaError;

#[derive(Debug, thiserror::Error)]
pub(super) enum PipelineError {
    /// The producer refused a record (`what`: "a dead letter", "an outage event", …).
    #[error("cannot enqueue {what}: {source}")]
    Enqueue {
        what: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("delivery failed: {0}")]
    Delivery(#[source] KafkaError),
    #[error("delivery was cancelled (producer gone)")]
    DeliveryCancelled,
    #[error("changelog commit failed: {0}")]
    ChangelogCommit(#[source] KafkaError),
    #[error("changelog commit cancelled (producer gone)")]
    ChangelogCommitCancelled,
    /// Reading or checking the changelog of an assigned partition failed for good.
    #[error("{0}")]
    Restore(String),
    #[error("the engine thread stopped")]
    EngineThreadStopped,
    #[error("the engine thread panicked")]
    EngineThreadPanicked,
    #[error("the poll thread panicked")]
    PollThreadPanicked,
}

impl PipelineError {
    pub(super) fn enqueue(what: &'static str) -> impl FnOnce(KafkaError) -> Self {
        move |source| Self::Enqueue { what, source }
    }
}
