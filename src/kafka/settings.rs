//! `[kafka]` settings: typed, with defaults, unknown keys rejected. Anything librdkafka
//! understands can be passed through in `[kafka.consumer]` and `[kafka.producer]`; a value of
//! the form `"${env:NAME}"` is read from the environment at startup (for secrets) and never
//! printed: [`KafkaSettings`]' `Debug` and `KafkaSettings::redacted` hide it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::Secs;
use crate::engine::EngineConfig;

/// What the pipeline reads of the application configuration: the engine's settings and
/// `[kafka]`. The application `config::Config` converts into it (`Into<PipelineConfig>`), so
/// the pipeline never sees HTTP or alert settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineConfig {
    pub engine: EngineConfig,
    pub kafka: KafkaSettings,
}

/// Topic names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Input: one social mention per message.
    pub mentions: String,
    /// Input: complaint counts.
    pub complaints: String,
    /// Output: outage events (schema version 2), keyed by service.
    pub anomalies: String,
    /// Output: per-series incident events (schema version 1), keyed `service/geo`; empty: not
    /// published.
    pub series_anomalies: String,
    /// Output: input messages that could not be used, with the reason in headers.
    pub dead_letters: String,
    /// Engine state (compacted, one partition per input partition), see `[kafka] changelog`.
    pub changelog: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            mentions: "spikewatch.mentions".into(),
            complaints: "spikewatch.complaints".into(),
            anomalies: "spikewatch.anomalies".into(),
            series_anomalies: "spikewatch.series-anomalies".into(),
            dead_letters: "spikewatch.dead-letters".into(),
            changelog: "spikewatch.state".into(),
        }
    }
}

/// The `[kafka]` section.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    /// Bootstrap servers, `host:port,host:port` (`--brokers` overrides).
    pub brokers: String,
    /// Consumer group id: instances with the same id split the input partitions.
    pub group_id: String,
    pub topics: Topics,
    /// Consumer `session.timeout.ms`: how fast a dead instance's partitions move on. Also how
    /// long a brand-new group waits before its first assignment (about half of it).
    pub session_timeout: Secs,
    /// Consumer `heartbeat.interval.ms`; must be well below `session_timeout`.
    pub heartbeat_interval: Secs,
    /// An input topic-partition with no message for this long (wall clock; dead letters do
    /// not count) no longer holds the watermark of its partition back.
    pub idle_timeout: Secs,
    /// Upper bound on shutdown: drain, flush the producer, final commit.
    pub drain_timeout: Secs,
    /// How often in-flight results are checked and offsets stored (milliseconds).
    pub checkpoint_interval_ms: u64,
    /// Keep engine state in the changelog topic: restored on assignment, so restarts and
    /// rebalances lose nothing and every input event is counted exactly once. Off: state is
    /// rebuilt from new input after a restart or rebalance.
    pub changelog: bool,
    /// How often changed series are written to the changelog (milliseconds); also the most
    /// input a crash makes the next owner read again.
    pub changelog_interval_ms: u64,
    /// Upper bound on reading one changelog partition when it is assigned.
    pub restore_timeout: Secs,
    /// How often a one-line summary of the counters is logged (0: only at shutdown).
    pub summary_interval: Secs,
    /// How often librdkafka reports consumer statistics, the source of the consumer lag in
    /// `/metrics` (milliseconds; 0: off, no lag metric).
    pub statistics_interval_ms: u64,
    /// Input messages larger than this are dead-lettered unread.
    pub max_message_bytes: usize,
    /// Dead-letter payloads are cut to this many bytes (header `spikewatch.truncated_from`).
    pub dead_letter_max_bytes: usize,
    /// Create missing topics at startup (AdminClient) with `partitions` partitions.
    pub create_topics: bool,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Pass-through librdkafka consumer properties (e.g. `"security.protocol"`).
    pub consumer: BTreeMap<String, String>,
    /// Pass-through librdkafka producer properties.
    pub producer: BTreeMap<String, String>,
    /// `section.key` of every pass-through value [`Self::resolve_env`] read from the
    /// environment: redacted whatever the key's name (the value is no longer `${env:…}`).
    #[serde(skip)]
    pub env_resolved: std::collections::BTreeSet<String>,
}

impl KafkaSettings {
    pub(crate) const DEFAULT_SESSION_TIMEOUT: Secs = Secs(10);
    pub(crate) const DEFAULT_HEARTBEAT_INTERVAL: Secs = Secs(3);
    pub(crate) const DEFAULT_IDLE_TIMEOUT: Secs = Secs(30);
    pub(crate) const DEFAULT_DRAIN_TIMEOUT: Secs = Secs(30);

    const fn default_checkpoint_interval_ms() -> u64 {
        200
    }
    const fn default_changelog_interval_ms() -> u64 {
        5_000
    }
    pub(crate) const DEFAULT_RESTORE_TIMEOUT: Secs = Secs(300);
    const fn default_statistics_interval_ms() -> u64 {
        5000
    }
    const fn default_max_message_bytes() -> usize {
        1 << 20
    }
    const fn default_dead_letter_max_bytes() -> usize {
        900_000
    }

    /// A copy safe to log: secret-looking and `${env:…}` pass-through values replaced.
    pub(crate) fn redacted(&self) -> Self {
        let mut s = self.clone();
        for (section, map) in [("consumer", &mut s.consumer), ("producer", &mut s.producer)] {
            for (k, v) in map.iter_mut() {
                if is_secret(k, v) || self.env_resolved.contains(&format!("{section}.{k}")) {
                    *v = "<redacted>".into();
                }
            }
        }
        s
    }

    /// Replaces every `"${env:NAME}"` pass-through value with the variable's value, and
    /// registers it as a secret (never printed, see [`crate::secrets`]).
    pub fn resolve_env(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), SettingsError> {
        for (section, map) in [
            ("consumer", &mut self.consumer),
            ("producer", &mut self.producer),
        ] {
            for (k, v) in map.iter_mut() {
                if let Some(name) = env_ref(v) {
                    let name = name.to_string();
                    *v = env(&name).ok_or_else(|| SettingsError {
                        key: format!("kafka.{section}.{k}"),
                        reason: format!("refers to environment variable {name}, which is not set"),
                    })?;
                    crate::secrets::register(v);
                    self.env_resolved.insert(format!("{section}.{k}"));
                }
            }
        }
        Ok(())
    }

    /// Checks values that librdkafka would only reject later or not at all.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let err = |key: &str, reason: &str| {
            Err(SettingsError {
                key: format!("kafka.{key}"),
                reason: reason.into(),
            })
        };
        if self.brokers.trim().is_empty() {
            return err("brokers", "must not be empty");
        }
        if self.group_id.trim().is_empty() {
            return err("group_id", "must not be empty");
        }
        let t = &self.topics;
        for (k, v) in [
            ("topics.mentions", &t.mentions),
            ("topics.complaints", &t.complaints),
            ("topics.anomalies", &t.anomalies),
            ("topics.dead_letters", &t.dead_letters),
            ("topics.changelog", &t.changelog),
        ] {
            if v.is_empty() {
                return err(k, "must not be empty");
            }
        }
        if t.mentions == t.complaints {
            return err("topics.complaints", "must differ from topics.mentions");
        }
        if [&t.mentions, &t.complaints, &t.anomalies, &t.dead_letters]
            .contains(&&t.series_anomalies)
        {
            return err(
                "topics.series_anomalies",
                "must be a topic of its own (or empty: not published)",
            );
        }
        if self.session_timeout.0 == 0 || self.heartbeat_interval.0 == 0 {
            return err("session_timeout", "and heartbeat_interval must be > 0");
        }
        if self.heartbeat_interval >= self.session_timeout {
            return err("heartbeat_interval", "must be below session_timeout");
        }
        if [
            &t.mentions,
            &t.complaints,
            &t.anomalies,
            &t.series_anomalies,
            &t.dead_letters,
        ]
        .contains(&&t.changelog)
        {
            return err("topics.changelog", "must be a topic of its own");
        }
        if self.changelog_interval_ms == 0 {
            return err("changelog_interval_ms", "must be > 0");
        }
        if self.checkpoint_interval_ms == 0 {
            return err("checkpoint_interval_ms", "must be > 0");
        }
        if self.partitions < 1 {
            return err("partitions", "must be >= 1");
        }
        for (section, map) in [("consumer", &self.consumer), ("producer", &self.producer)] {
            for k in map.keys() {
                if MANAGED.contains(&k.as_str()) {
                    return Err(SettingsError {
                        key: format!("kafka.{section}.{k}"),
                        reason: "is managed by spikewatch (it decides delivery guarantees or has \
                                 its own setting in [kafka])"
                            .into(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// librdkafka properties spikewatch sets itself; overriding them would break at-least-once or
/// duplicate a typed setting.
pub(crate) const MANAGED: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.offset.store",
    "enable.idempotence",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "enable.partition.eof",
    "statistics.interval.ms",
];

fn env_ref(v: &str) -> Option<&str> {
    v.strip_prefix("${env:")?.strip_suffix('}')
}

fn is_secret(key: &str, value: &str) -> bool {
    env_ref(value).is_some() || crate::secrets::is_secret_key(key)
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".into(),
            group_id: "spikewatch".into(),
            topics: Topics::default(),
            session_timeout: Self::DEFAULT_SESSION_TIMEOUT,
            heartbeat_interval: Self::DEFAULT_HEARTBEAT_INTERVAL,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            drain_timeout: Self::DEFAULT_DRAIN_TIMEOUT,
            checkpoint_interval_ms: Self::default_checkpoint_interval_ms(),
            changelog: true,
            changelog_interval_ms: Self::default_changelog_interval_ms(),
            restore_timeout: Self::DEFAULT_RESTORE_TIMEOUT,
            summary_interval: Secs(30),
            statistics_interval_ms: Self::default_statistics_interval_ms(),
            max_message_bytes: Self::default_max_message_bytes(),
            dead_letter_max_bytes: Self::default_dead_letter_max_bytes(),
            create_topics: true,
            partitions: 4,
            replication_factor: 1,
            consumer: BTreeMap::new(),
            producer: BTreeMap::new(),
            env_resolved: Default::default(),
        }
    }
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.redacted();
        f.debug_struct("KafkaSettings")
            .field("brokers", &r.brokers)
            .field("group_id", &r.group_id)
            .field("topics", &r.topics)
            .field("session_timeout", &r.session_timeout)
            .field("heartbeat_interval", &r.heartbeat_interval)
            .field("idle_timeout", &r.idle_timeout)
            .field("drain_timeout", &r.drain_timeout)
            .field("checkpoint_interval_ms", &r.checkpoint_interval_ms)
            .field("changelog", &r.changelog)
            .field("changelog_interval_ms", &r.changelog_interval_ms)
            .field("restore_timeout", &r.restore_timeout)
            .field("statistics_interval_ms", &r.statistics_interval_ms)
            .field("create_topics", &r.create_topics)
            .field("consumer", &r.consumer)
            .field("producer", &r.producer)
            .finish_non_exhaustive()
    }
}

/// A `[kafka]` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` {reason}")]
pub struct SettingsError {
    pub key: String,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn defaults_name_the_documented_topics() {
        let k = KafkaSettings::default();
        assert_eq!(k.topics.mentions, "spikewatch.mentions");
        assert_eq!(k.topics.complaints, "spikewatch.complaints");
        assert_eq!(k.topics.anomalies, "spikewatch.anomalies");
        assert_eq!(k.topics.dead_letters, "spikewatch.dead-letters");
        k.validate().unwrap();
    }

    #[test]
    fn parses_from_config_and_rejects_unknown_keys() {
        let c = Config::from_toml_str(
            r#"
            [kafka]
            brokers = "b1:9092,b2:9092"
            session_timeout = "6s"
            heartbeat_interval = 1
            [kafka.topics]
            anomalies = "outages"
            [kafka.consumer]
            "security.protocol" = "SASL_PLAINTEXT"
            "sasl.password" = "${env:KAFKA_SASL_PASSWORD}"
            "#,
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.kafka.brokers, "b1:9092,b2:9092");
        assert_eq!(c.kafka.session_timeout, Secs(6));
        assert_eq!(c.kafka.topics.anomalies, "outages");
        assert_eq!(c.kafka.topics.mentions, "spikewatch.mentions");
        let err = Config::from_toml_str("[kafka]\nbrokerz = \"x\"\n", "t.toml").unwrap_err();
        assert!(err.to_string().contains("brokerz"), "{err}");
        let err = Config::from_toml_str("[kafka.topics]\nmention = \"x\"\n", "t.toml").unwrap_err();
        assert!(err.to_string().contains("mention"), "{err}");
    }

    #[test]
    fn secrets_come_from_env_and_are_never_printed() {
        let mut k = KafkaSettings::default();
        k.consumer
            .insert("sasl.password".into(), "${env:KAFKA_SASL_PASSWORD}".into());
        k.producer.insert("sasl.password".into(), "hunter2".into());
        k.producer.insert("client.id".into(), "sw".into());
        k.resolve_env(|n| (n == "KAFKA_SASL_PASSWORD").then(|| "s3cr3t".to_string()))
            .unwrap();
        assert_eq!(k.consumer["sasl.password"], "s3cr3t");
        let shown = format!("{k:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(shown.contains("client.id"), "{shown}");

        let mut missing = KafkaSettings::default();
        missing
            .producer
            .insert("sasl.password".into(), "${env:NOPE_NOT_SET}".into());
        let err = missing.resolve_env(|_| None).unwrap_err();
        assert!(err.to_string().contains("NOPE_NOT_SET"), "{err}");
        assert!(
            err.to_string().contains("kafka.producer.sasl.password"),
            "{err}"
        );
    }

    #[test]
    fn managed_properties_cannot_be_overridden() {
        let mut k = KafkaSettings::default();
        k.consumer
            .insert("enable.auto.offset.store".into(), "true".into());
        let err = k.validate().unwrap_err();
        assert!(err.key.contains("enable.auto.offset.store"), "{err}");
        let k = KafkaSettings {
            heartbeat_interval: Secs(20),
            ..KafkaSettings::default()
        };
        assert!(k.validate().is_err());
    }
}
