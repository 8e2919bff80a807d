//! Topic creation and metadata checks at startup, retried with backoff while the broker is
//! unreachable.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::settings::KafkaSettings;
use super::LogContext;

fn admin_config(settings: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.brokers);
    for (k, v) in security_settings(settings) {
        c.set(k, v);
    }
    c
}

/// Security settings apply to every client: the consumer pass-through table's
/// `security.*`, `sasl.*` and `ssl.*` entries.
pub(crate) fn security_settings(
    settings: &KafkaSettings,
) -> impl Iterator<Item = (&String, &String)> {
    settings.consumer.iter().filter(|(k, _)| {
        k.starts_with("security.") || k.starts_with("sasl.") || k.starts_with("ssl.")
    })
}

/// Creates `topics` with `partitions` partitions; existing topics are left alone.
pub async fn create_topics(
    settings: &KafkaSettings,
    topics: &[&str],
    partitions: i32,
) -> Result<(), KafkaError> {
    create(settings, topics, partitions, &[]).await
}

/// Creates the changelog topic (compacted: only the newest record per key is kept) unless it
/// exists.
pub(crate) async fn create_changelog_topic(
    settings: &KafkaSettings,
    partitions: i32,
) -> Result<(), KafkaError> {
    create(
        settings,
        &[&settings.topics.changelog],
        partitions,
        &[("cleanup.policy", "compact")],
    )
    .await
}

async fn create(
    settings: &KafkaSettings,
    topics: &[&str],
    partitions: i32,
    config: &[(&str, &str)],
) -> Result<(), KafkaError> {
    let admin: AdminClient<LogContext> =
        admin_config(settings).create_with_context(LogContext::new("admin"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            config.iter().fold(
                NewTopic::new(
                    t,
                    partitions,
                    TopicReplication::Fixed(settings.replication_factor),
                ),
                |nt, (k, v)| nt.set(k, v),
            )
        })
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(5)));
    for r in admin.create_topics(&new, &opts).await? {
        match r {
            Ok(t) => tracing::info!(topic = %t, partitions, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => {
                return Err(KafkaError::AdminOp(e)).inspect_err(|_| {
                    tracing::warn!(topic = %t, "cannot create topic: {e}");
                })
            }
        }
    }
    Ok(())
}

/// Number of partitions of `topic`, from cluster metadata.
pub(crate) fn partition_count(settings: &KafkaSettings, topic: &str) -> Result<usize, KafkaError> {
    let admin: AdminClient<LogContext> =
        admin_config(settings).create_with_context(LogContext::new("admin"))?;
    let md = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(5))?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len()))
}
