//! `[notify]`: the outputs (`[[notify.webhook]]`), their URLs (secrets) and their checks.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::Secs;
use crate::event::Severity;

/// `[notify]`: where outage events are delivered besides the anomaly topic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// `[[notify.webhook]]`, one per output.
    pub webhook: Vec<OutputSettings>,
}

/// What an output's receiver takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The outage event itself (schema `anomaly.v2`), one per POST.
    #[default]
    Json,
    /// Prometheus Alertmanager's API v2: `url` is the Alertmanager's base URL
    /// (`/api/v2/alerts` is appended unless the path already ends with it).
    Alertmanager,
    /// A Slack incoming-webhook message (`text` and `blocks`); Mattermost, Rocket.Chat and
    /// others take the same.
    Slack,
}

impl Format {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Alertmanager => "alertmanager",
            Format::Slack => "slack",
        }
    }
}

/// One `[[notify.webhook]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSettings {
    /// Label of the output in logs and metrics; default `FORMAT-N` (N counts from 1 in file
    /// order), never the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `http://` or `https://`; `"${env:NAME}"` reads it from the environment at startup.
    pub url: NotifyUrl,
    #[serde(default)]
    pub format: Format,
    /// Outages are delivered from their first event at or above this severity on, through to
    /// their `resolved` event.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Outages are delivered from their first confirmed event on (two signals agree).
    #[serde(default)]
    pub only_confirmed: bool,
    /// Per request, connecting included.
    #[serde(default = "default_timeout")]
    pub timeout: Secs,
    /// Retries after the first attempt before an event is given up (and counted as failed).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Backoff before the first retry; doubled each retry up to `max_retry_backoff_ms`, and
    /// each wait is drawn between half and all of it (jitter: outputs that failed together do
    /// not retry in lockstep).
    #[serde(default = "default_retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    #[serde(default = "default_max_retry_backoff_ms")]
    pub max_retry_backoff_ms: u64,
    /// Events waiting for delivery; when full, the oldest `updated` event is dropped (and
    /// counted), never an `opened` or `resolved` one while there is an `updated` to drop.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// `alertmanager` only: open alerts are sent again this often, as Prometheus does, so that
    /// Alertmanager does not resolve them on its own after its `resolve_timeout`; `0`: never.
    #[serde(default = "default_resend_interval")]
    pub resend_interval: Secs,
}

fn default_min_severity() -> Severity {
    Severity::Minor
}
fn default_timeout() -> Secs {
    Secs(5)
}
fn default_max_retries() -> u32 {
    8
}
fn default_retry_backoff_ms() -> u64 {
    500
}
fn default_max_retry_backoff_ms() -> u64 {
    60_000
}
fn default_queue() -> usize {
    1024
}
fn default_resend_interval() -> Secs {
    Secs(60)
}

impl OutputSettings {
    /// An output of `format` to `url` with every other setting at its default.
    pub fn new(url: &str, format: Format) -> Self {
        Self {
            name: None,
            url: NotifyUrl(url.to_string()),
            format,
            min_severity: default_min_severity(),
            only_confirmed: false,
            timeout: default_timeout(),
            max_retries: default_max_retries(),
            retry_backoff_ms: default_retry_backoff_ms(),
            max_retry_backoff_ms: default_max_retry_backoff_ms(),
            queue: default_queue(),
            resend_interval: default_resend_interval(),
        }
    }
}

/// A webhook URL. It may carry a credential (Slack's do, in the path), so `Debug` shows only
/// scheme and host; the full value is registered with [`crate::secrets`] at config load.
#[derive(Clone, PartialEq, Eq)]
pub struct NotifyUrl(pub String);

impl NotifyUrl {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// `host[:port]`, what logs and errors show; `?` if the URL does not parse.
    pub(crate) fn host(&self) -> String {
        match reqwest::Url::parse(&self.0) {
            Ok(u) => match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                _ => "?".into(),
            },
            Err(_) => "?".into(),
        }
    }

    /// `NAME` of a `"${env:NAME}"` value.
    pub(crate) fn env_ref(&self) -> Option<&str> {
        self.0.strip_prefix("${env:")?.strip_suffix('}')
    }

    /// Parses and checks the URL; the reason never quotes it.
    pub(crate) fn parse(&self) -> Result<reqwest::Url, String> {
        let u = reqwest::Url::parse(&self.0)
            .map_err(|e| format!("is not a valid URL ({e}; the value is not shown)"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!(
                "must be an http:// or https:// URL, not {}://",
                u.scheme()
            ));
        }
        if u.host_str().is_none_or(str::is_empty) {
            return Err("has no host".into());
        }
        Ok(u)
    }
}

impl fmt::Debug for NotifyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.env_ref().is_some() {
            return write!(f, "{:?}", self.0);
        }
        match reqwest::Url::parse(&self.0) {
            Ok(u) => write!(f, "\"{}://{}/…\"", u.scheme(), self.host()),
            Err(_) => f.write_str("\"<invalid URL>\""),
        }
    }
}

impl Serialize for NotifyUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NotifyUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(NotifyUrl)
    }
}

/// A `[notify]` setting that cannot work; `key` is the full config key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` {reason}")]
pub struct NotifySettingsError {
    pub key: String,
    pub reason: String,
}

impl NotifySettings {
    /// Every output's label: its `name`, or `FORMAT-N`.
    pub(crate) fn names(&self) -> Vec<String> {
        self.webhook
            .iter()
            .enumerate()
            .map(|(i, o)| {
                o.name
                    .clone()
                    .unwrap_or_else(|| format!("{}-{}", o.format.name(), i + 1))
            })
            .collect()
    }

    /// Checks every output. URLs still of the form `"${env:NAME}"` are checked by
    /// [`Self::resolve_env`] once read.
    pub fn validate(&self) -> Result<(), NotifySettingsError> {
        let names = self.names();
        for (i, o) in self.webhook.iter().enumerate() {
            let err = |field: &str, reason: String| NotifySettingsError {
                key: format!("notify.webhook[{i}].{field}"),
                reason,
            };
            if o.url.env_ref().is_none() {
                o.url.parse().map_err(|r| err("url", r))?;
            }
            if let Some(n) = &o.name {
                if n.trim().is_empty() {
                    return Err(err("name", "must not be empty".into()));
                }
            }
            if names[..i].contains(&names[i]) {
                return Err(err(
                    "name",
                    format!(
                        "{:?} is used by another output (names label metrics)",
                        names[i]
                    ),
                ));
            }
            if o.timeout.0 == 0 || o.timeout.0 > 300 {
                return Err(err(
                    "timeout",
                    format!("must be 1s..=5m, got {}", o.timeout),
                ));
            }
            if o.max_retries > 100 {
                return Err(err(
                    "max_retries",
                    format!("must be at most 100, got {}", o.max_retries),
                ));
            }
            if o.retry_backoff_ms == 0 || o.retry_backoff_ms > o.max_retry_backoff_ms {
                return Err(err(
                    "retry_backoff_ms",
                    format!(
                        "must be > 0 and at most max_retry_backoff_ms ({}), got {}",
                        o.max_retry_backoff_ms, o.retry_backoff_ms
                    ),
                ));
            }
            if o.max_retry_backoff_ms > 3_600_000 {
                return Err(err(
                    "max_retry_backoff_ms",
                    format!(
                        "must be at most 1h (3600000), got {}",
                        o.max_retry_backoff_ms
                    ),
                ));
            }
            if o.queue == 0 || o.queue > 1_000_000 {
                return Err(err(
                    "queue",
                    format!("must be 1..=1000000, got {}", o.queue),
                ));
            }
            if o.resend_interval > crate::domain::MAX_DURATION {
                return Err(err("resend_interval", "is too long".into()));
            }
        }
        Ok(())
    }

    /// Reads every `"${env:NAME}"` URL from the environment, registers it as a secret and
    /// checks it.
    pub fn resolve_env(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), NotifySettingsError> {
        for (i, o) in self.webhook.iter_mut().enumerate() {
            let Some(name) = o.url.env_ref().map(str::to_string) else {
                continue;
            };
            let key = format!("notify.webhook[{i}].url");
            let value = env(&name).ok_or_else(|| NotifySettingsError {
                key: key.clone(),
                reason: format!("refers to environment variable {name}, which is not set"),
            })?;
            crate::secrets::register(&value);
            o.url = NotifyUrl(value);
            o.url.parse().map_err(|reason| NotifySettingsError {
                key,
                reason: format!("(from environment variable {name}) {reason}"),
            })?;
        }
        Ok(())
    }

    /// Registers every literal URL with [`crate::secrets`]: no log line or error shows it.
    pub(crate) fn register_secrets(&self) {
        for o in &self.webhook {
            if o.url.env_ref().is_none() {
                crate::secrets::register(o.url.as_str());
            }
        }
    }
}
