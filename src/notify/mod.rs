//! Alert delivery: outage events pushed to the tools on-call teams already use.
//!
//! Every `[[notify.webhook]]` entry is one *output*: an HTTP endpoint and the body format it
//! takes (the outage event as JSON, Prometheus Alertmanager's `POST /api/v2/alerts`, or a
//! Slack-compatible incoming-webhook message, see `format`). A [`Notifier`] runs one tokio
//! task per output, fed through a bounded queue ([`queue`]); [`NotifyHandle::notify`] only
//! takes a lock and pushes, so a slow or dead receiver never holds up the pipeline. Delivery is
//! at-least-once within the retry budget (exponential backoff with jitter) and each process
//! sends an `(outage_id, seq)` to an output at most once (`output`).
//!
//! URLs are secrets (a Slack webhook URL is a credential): they are registered with
//! [`crate::secrets`], `Debug` shows the host only, and logs name the host only.
//!
//! Here: the notifier, its handle and its counters. `settings` holds the `[notify]` settings
//! and their checks, `tests` the unit tests.

pub mod format;
mod output;
pub mod queue;
mod settings;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::event::OutageEvent;

pub use output::{OutputStats, OutputStatsSnapshot};
pub use settings::{Format, NotifySettings, NotifySettingsError, NotifyUrl, OutputSettings};

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
    pub(crate) fn encode_metrics(
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
