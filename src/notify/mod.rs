//! Alert delivery: outage events pushed to the tools on-call teams already use.
//!
//! Every `[[notify.webhook]]` entry is one *output*: an HTTP endpoint and the body format it
//! takes (the outage event as JSON, Prometheus Alertmanager's `POST /api/v2/alerts`, or a
//! Slack-compatible incoming-webhook message, see [`format`]). A [`Notifier`] runs one tokio
//! task per output, fed through a bounded queue ([`queue`]); [`NotifyHandle::notify`] only
//! takes a lock and pushes, so a slow or dead receiver never holds up the pipeline. Delivery is
//! at-least-once within the retry budget (exponential backoff with jitter) and each process
//! sends an `(outage_id, seq)` to an output at most once ([`output`]).
//!
//! URLs are secrets (a Slack webhook URL is a credential): they are registered with
//! [`crate::secrets`], `Debug` shows the host only, and logs name the host only.

pub mod format;
mod output;
pub mod queue;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::Secs;
use crate::event::{OutageEvent, Severity};

pub use output::{OutputStats, OutputStatsSnapshot};

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
    pub fn name(self) -> &'static str {
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
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `host[:port]`, what logs and errors show; `?` if the URL does not parse.
    pub fn host(&self) -> String {
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
    pub fn env_ref(&self) -> Option<&str> {
        self.0.strip_prefix("${env:")?.strip_suffix('}')
    }

    /// Parses and checks the URL; the reason never quotes it.
    pub fn parse(&self) -> Result<reqwest::Url, String> {
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
    pub fn names(&self) -> Vec<String> {
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
    pub fn register_secrets(&self) {
        for o in &self.webhook {
            if o.url.env_ref().is_none() {
                crate::secrets::register(o.url.as_str());
            }
        }
    }
}

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notify output {name}: {source}")]
    Settings {
        name: String,
        source: NotifySettingsError,
    },
    #[error("notify output {name} (host {host}): cannot build its HTTP client: {source}")]
    Client {
        name: String,
        host: String,
        source: reqwest::Error,
    },
}

/// A counter family: name (without `_total`), help, and its value in a snapshot.
type Counter = (&'static str, &'static str, fn(&OutputStatsSnapshot) -> u64);

/// Delivery counters of every output, for `/metrics`.
#[derive(Debug, Default)]
pub struct NotifyStats {
    outputs: Mutex<Vec<(String, Format, Arc<OutputStats>)>>,
}

impl NotifyStats {
    fn register(&self, name: &str, format: Format) -> Arc<OutputStats> {
        let s = Arc::new(OutputStats::default());
        self.outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.to_string(), format, s.clone()));
        s
    }

    /// Per output: (name, format, counters now).
    pub fn snapshot(&self) -> Vec<(String, Format, OutputStatsSnapshot)> {
        self.outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, f, s)| (n.clone(), *f, s.snapshot()))
            .collect()
    }

    /// Encodes the `spikewatch_notify_*` families (labels `output`, `format`). The families
    /// are written with no output configured too, so that rules and dashboards can name them.
    pub fn encode_metrics(
        &self,
        e: &mut prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        let snap = self.snapshot();
        let labels = |output: &str, format: Format| {
            [
                ("output", output.to_string()),
                ("format", format.name().to_string()),
            ]
        };
        let counters: [Counter; 5] = [
            (
                "notify_sent",
                "outage events delivered (answered 2xx), per output",
                |s| s.sent,
            ),
            (
                "notify_failed",
                "outage events given up after the retries, or refused with a 4xx, per output",
                |s| s.failed,
            ),
            (
                "notify_dropped",
                "outage events dropped because the output's queue was full, per output",
                |s| s.dropped,
            ),
            (
                "notify_retries",
                "failed delivery attempts that were retried, per output",
                |s| s.retries,
            ),
            (
                "notify_deduplicated",
                "outage events not sent again: this process had delivered them already, per output",
                |s| s.deduplicated,
            ),
        ];
        for (name, help, get) in counters {
            crate::prom::counter_family(
                e,
                name,
                help,
                snap.iter().map(|(o, f, s)| (labels(o, *f), get(s))),
            )?;
        }
        crate::prom::gauge_family(
            e,
            "notify_queued",
            "outage events waiting for delivery, per output",
            snap.iter().map(|(o, f, s)| (labels(o, *f), s.queued)),
        )
    }
}

/// The `/metrics` families of the outputs alone (for tests and tools).
impl prometheus_client::collector::Collector for NotifyStats {
    fn encode(&self, mut e: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        self.encode_metrics(&mut e)
    }
}

/// Runs the outputs: one task and queue each. Start it inside a tokio runtime.
pub struct Notifier {
    handle: NotifyHandle,
    stats: Arc<NotifyStats>,
    tasks: Vec<(String, tokio::task::JoinHandle<()>)>,
}

/// What the pipeline holds: cheap to clone, never blocks.
#[derive(Clone, Default)]
pub struct NotifyHandle {
    outputs: Arc<[output::Input]>,
    owned: output::Owned,
}

impl fmt::Debug for NotifyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyHandle")
            .field("outputs", &self.outputs.len())
            .finish()
    }
}

impl NotifyHandle {
    /// Offers an outage event to every output. Returns at once: the event is filtered,
    /// queued (or an older `updated` one dropped to make room) and sent by the output's task.
    pub fn notify(&self, event: &OutageEvent) {
        self.notify_from(event, None);
    }

    /// [`Self::notify`] for an event of the engine of input `partition` (see
    /// [`Self::set_partitions`]).
    pub fn notify_from(&self, event: &OutageEvent, partition: Option<i32>) {
        if self.outputs.is_empty() {
            return;
        }
        let item = queue::Queued {
            event: Arc::new(event.clone()),
            partition,
        };
        for o in self.outputs.iter() {
            o.offer(&item);
        }
    }

    /// The input partitions this instance owns now. Alertmanager outputs stop re-sending the
    /// open alerts of partitions no longer among them (their new owner reports them). Cheap
    /// when nothing changed: the pipeline calls it at every checkpoint.
    pub fn set_partitions(&self, partitions: impl Iterator<Item = i32>) {
        if self.outputs.is_empty() {
            return;
        }
        let now: Vec<i32> = partitions.collect();
        let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        if owned.as_ref() != Some(&now) {
            *owned = Some(now);
        }
    }

    /// Whether any output is configured.
    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }
}

impl Notifier {
    /// Starts one task per output of `settings` (which must be validated, with `${env:…}`
    /// URLs resolved).
    pub fn start(settings: &NotifySettings) -> Result<Self, NotifyError> {
        // Every client first: an output that cannot start leaves no task of the others behind.
        let mut clients = Vec::new();
        for (o, name) in settings.webhook.iter().zip(settings.names()) {
            let url = o.url.parse().map_err(|reason| NotifyError::Settings {
                name: name.clone(),
                source: NotifySettingsError {
                    key: "url".into(),
                    reason,
                },
            })?;
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(o.timeout.0))
                .connect_timeout(Duration::from_secs(o.timeout.0))
                .user_agent(concat!("spikewatch/", env!("CARGO_PKG_VERSION")))
                // A redirected POST turns into a GET (or re-sends the body elsewhere): a
                // receiver that redirects is misconfigured, reported as a failed delivery.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|source| NotifyError::Client {
                    name: name.clone(),
                    host: o.url.host(),
                    source,
                })?;
            clients.push((o, name, url, client));
        }
        let stats = Arc::new(NotifyStats::default());
        let owned = output::Owned::default();
        let mut inputs = Vec::new();
        let mut tasks = Vec::new();
        for (o, name, url, client) in clients {
            let output_stats = stats.register(&name, o.format);
            let (input, task) =
                output::spawn(name.clone(), o, url, client, output_stats, owned.clone());
            tracing::info!(
                output = %name, format = o.format.name(), host = %o.url.host(),
                min_severity = ?o.min_severity, only_confirmed = o.only_confirmed,
                "alert delivery output started"
            );
            inputs.push(input);
            tasks.push((name, task));
        }
        Ok(Self {
            handle: NotifyHandle {
                outputs: inputs.into(),
                owned,
            },
            stats,
            tasks,
        })
    }

    /// The handle to give the pipeline.
    pub fn handle(&self) -> NotifyHandle {
        self.handle.clone()
    }

    pub fn stats(&self) -> Arc<NotifyStats> {
        self.stats.clone()
    }

    /// Stops taking events and gives the outputs up to `grace` to deliver what is queued;
    /// what is left then is logged as undelivered.
    pub async fn shutdown(self, grace: Duration) {
        for o in self.handle.outputs.iter() {
            o.close();
        }
        let deadline = tokio::time::Instant::now() + grace;
        for (name, mut task) in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                let left = self
                    .handle
                    .outputs
                    .iter()
                    .find(|o| o.name() == name)
                    .map_or(0, |o| o.queued());
                tracing::warn!(
                    output = %name, undelivered = left,
                    "alert delivery output stopped before its queue was delivered"
                );
            }
        }
        for (name, _, s) in self.stats.snapshot() {
            tracing::info!(
                output = %name, sent = s.sent, failed = s.failed, dropped = s.dropped,
                retries = s.retries, deduplicated = s.deduplicated,
                "alert delivery summary"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const EXAMPLE: &str = r#"
        [[notify.webhook]]
        url = "https://hooks.example.com/services/T000/B000/notify-unit-canary"
        format = "slack"
        min_severity = "major"
        only_confirmed = true

        [[notify.webhook]]
        name = "alertmanager"
        url = "http://alertmanager:9093"
        format = "alertmanager"
        timeout = "10s"
        max_retries = 3
    "#;

    #[test]
    fn webhooks_parse_with_defaults_and_names() {
        let c = Config::from_toml_str(EXAMPLE, "x.toml").unwrap();
        let w = &c.notify.webhook;
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].format, Format::Slack);
        assert_eq!(w[0].min_severity, Severity::Major);
        assert!(w[0].only_confirmed);
        assert_eq!(
            (w[0].timeout, w[0].max_retries, w[0].queue),
            (Secs(5), 8, 1024)
        );
        assert_eq!(w[1].timeout, Secs(10));
        assert_eq!(c.notify.names(), ["slack-1", "alertmanager"]);
        assert_eq!(Config::default().notify.webhook.len(), 0);
    }

    #[test]
    fn urls_are_secrets_shown_by_host_only() {
        let c = Config::from_toml_str(EXAMPLE, "x.toml").unwrap();
        let url = &c.notify.webhook[0].url;
        let debug = format!("{:?}", c.notify);
        assert!(!debug.contains("notify-unit-canary"), "{debug}");
        assert!(debug.contains("hooks.example.com"), "{debug}");
        assert_eq!(url.host(), "hooks.example.com");
        assert_eq!(
            crate::secrets::redact(&format!("posting to {}", url.as_str())),
            "posting to ***"
        );
    }

    #[test]
    fn bad_webhooks_are_rejected_naming_the_key() {
        for (text, key) in [
            ("[[notify.webhook]]\nurl = \"not a url\"\n", "notify.webhook[0].url"),
            ("[[notify.webhook]]\nurl = \"ftp://h/x\"\n", "notify.webhook[0].url"),
            (
                "[[notify.webhook]]\nurl = \"http://h\"\n[[notify.webhook]]\nurl = \"http://h:1/secret-path\"\nformat = \"slack\"\nmax_retries = 1000\n",
                "notify.webhook[1].max_retries",
            ),
            (
                "[[notify.webhook]]\nurl = \"http://a\"\nname = \"x\"\n[[notify.webhook]]\nurl = \"http://b\"\nname = \"x\"\n",
                "notify.webhook[1].name",
            ),
            ("[[notify.webhook]]\nurl = \"http://h\"\ntimeout = 0\n", "notify.webhook[0].timeout"),
            ("[[notify.webhook]]\nurl = \"http://h\"\nqueue = 0\n", "notify.webhook[0].queue"),
        ] {
            let e = Config::from_toml_str(text, "x.toml").unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("x.toml"), "{text}: {e}");
            assert!(!e.contains("secret-path"), "{e}");
        }
        for text in [
            "[[notify.webhook]]\nurl = \"http://h\"\nformat = \"teams\"\n",
            "[[notify.webhook]]\nurl = \"http://h\"\nretries = 3\n",
            "[[notify.webhook]]\nformat = \"json\"\n",
            "[notify]\nwebhooks = []\n",
        ] {
            assert!(Config::from_toml_str(text, "x.toml").is_err(), "{text}");
        }
    }

    #[test]
    fn env_urls_are_read_registered_and_checked() {
        let text = "[[notify.webhook]]\nurl = \"${env:SW_NOTIFY_URL}\"\n";
        let mut c = Config::from_toml_str(text, "x.toml").unwrap();
        let e = c.notify.clone().resolve_env(|_| None).unwrap_err();
        assert!(e.to_string().contains("SW_NOTIFY_URL"), "{e}");
        let e = c
            .notify
            .clone()
            .resolve_env(|_| Some("nonsense-env-canary".into()))
            .unwrap_err();
        assert!(!e.to_string().contains("nonsense-env-canary"), "{e}");
        c.notify
            .resolve_env(|_| Some("https://h.example/env-url-canary".into()))
            .unwrap();
        assert_eq!(
            c.notify.webhook[0].url.as_str(),
            "https://h.example/env-url-canary"
        );
        assert_eq!(
            crate::secrets::redact("https://h.example/env-url-canary"),
            "***"
        );
    }

    #[test]
    fn metrics_name_every_output() {
        let s = Arc::new(NotifyStats::default());
        let empty = crate::prom::render_collector(s.clone());
        assert!(empty.contains("# TYPE spikewatch_notify_sent_total counter"));
        assert!(empty.contains("# TYPE spikewatch_notify_queued gauge"));
        let o = s.register("pager \"duty\"", Format::Json);
        OutputStats::add(&o.dropped, 3);
        let text = crate::prom::render_collector(s);
        assert!(
            text.contains(
                "spikewatch_notify_dropped_total{output=\"pager \\\"duty\\\"\",format=\"json\"} 3"
            ),
            "{text}"
        );
    }
}
