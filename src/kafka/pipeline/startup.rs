//! Starting: the topics exist (created if configured) and are co-partitioned, retried with
//! backoff while the broker is unreachable.

use std::time::Duration;

use tokio::sync::broadcast;

use crate::kafka::{admin, KafkaSettings};

/// Creates topics (if configured) and checks co-partitioning, retrying with backoff while the
/// broker is unreachable. `Ok(false)`: told to stop first.
pub(super) async fn prepare(
    settings: &KafkaSettings,
    shutdown: &mut broadcast::Receiver<()>,
) -> anyhow::Result<bool> {
    let t = &settings.topics;
    let mut backoff = Duration::from_millis(250);
    loop {
        let attempt = async {
            if settings.create_topics {
                let mut outputs: Vec<&str> =
                    vec![&t.mentions, &t.complaints, &t.anomalies, &t.dead_letters];
                if !t.series_anomalies.is_empty() {
                    outputs.push(&t.series_anomalies);
                }
                admin::create_topics(settings, &outputs, settings.partitions).await?;
            }
            let s = settings.clone();
            let (m, c) = tokio::task::spawn_blocking(move || {
                Ok::<_, rdkafka::error::KafkaError>((
                    admin::partition_count(&s, &s.topics.mentions)?,
                    admin::partition_count(&s, &s.topics.complaints)?,
                ))
            })
            .await
            .expect("metadata task")?;
            if settings.changelog && m > 0 && c > 0 {
                if settings.create_topics {
                    admin::create_changelog_topic(settings, m.max(c) as i32).await?;
                }
                let s = settings.clone();
                let n = tokio::task::spawn_blocking(move || {
                    admin::partition_count(&s, &s.topics.changelog)
                })
                .await
                .expect("metadata task")?;
                return Ok::<_, rdkafka::error::KafkaError>((m, c, Some(n)));
            }
            Ok((m, c, None))
        };
        let result = tokio::select! {
            r = attempt => r,
            _ = shutdown.recv() => return Ok(false),
        };
        match result {
            Ok((m, c, Some(n))) if m > 0 && c > 0 && n < m.max(c) => {
                anyhow::bail!(
                    "changelog topic {} has {n} partitions, fewer than the input topics ({}): \
                     it must have one per input partition (create it with as many, \
                     cleanup.policy=compact), or set [kafka] changelog = false",
                    t.changelog,
                    m.max(c)
                );
            }
            Ok((m, c, _)) if m > 0 && c > 0 => {
                if m != c {
                    tracing::warn!(
                        mentions = m,
                        complaints = c,
                        "input topics have different partition counts: partition p of both \
                         feeds one engine, so a service's mentions and complaints may be split"
                    );
                }
                tracing::info!(
                    brokers = %settings.brokers,
                    mentions_partitions = m,
                    complaints_partitions = c,
                    "broker reachable, input topics present"
                );
                return Ok(true);
            }
            Ok(_) => tracing::warn!(
                "input topics {} / {} do not exist yet; retrying in {backoff:?}",
                t.mentions,
                t.complaints
            ),
            Err(e) => tracing::warn!(
                brokers = %settings.brokers,
                "broker not reachable or not ready: {e}; retrying in {backoff:?}"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.recv() => return Ok(false),
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
