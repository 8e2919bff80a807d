//! One output: its filter and queue (the pipeline's side) and its sender task.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::format;
use super::queue::{Queue, Queued};
use super::{Format, OutputSettings};
use crate::event::{IncidentState, OutageEvent, Severity};

/// Outage ids remembered as delivered (for de-duplication) beyond which the oldest resolved
/// ones are forgotten: a replay that old within one process is not expected, and the map must
/// not grow forever in a long-running process.
const DELIVERED_MEMORY: usize = 10_000;

/// Longest wait a `Retry-After` header can impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The input partitions this instance owns, as the pipeline last said (`None`: never said).
pub(crate) type Owned = Arc<Mutex<Option<Vec<i32>>>>;

/// Delivery counters of one output.
#[derive(Debug, Default)]
pub struct OutputStats {
    sent: AtomicU64,
    failed: AtomicU64,
    pub(super) dropped: AtomicU64,
    retries: AtomicU64,
    deduplicated: AtomicU64,
    queued: AtomicU64,
}

/// A copy of [`OutputStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutputStatsSnapshot {
    /// Events delivered (2xx).
    pub sent: u64,
    /// Events given up: retries exhausted, or refused with a non-retryable status.
    pub failed: u64,
    /// Events dropped because the queue was full (or closed).
    pub dropped: u64,
    /// Attempts that failed and were retried.
    pub retries: u64,
    /// Events not sent again: this process already delivered them (same outage, seq not newer).
    pub deduplicated: u64,
    /// Waiting in the queue now.
    pub queued: u64,
}

impl OutputStats {
    pub(crate) fn snapshot(&self) -> OutputStatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        OutputStatsSnapshot {
            sent: g(&self.sent),
            failed: g(&self.failed),
            dropped: g(&self.dropped),
            retries: g(&self.retries),
            deduplicated: g(&self.deduplicated),
            queued: g(&self.queued),
        }
    }

    pub(super) fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

/// The pipeline's side of an output: filter, then queue.
pub(crate) struct Input {
    name: String,
    min_severity: Severity,
    only_confirmed: bool,
    /// Open outages that passed the filter once: every later event of theirs is delivered,
    /// so that a receiver that saw an outage open also sees it resolve.
    admitted: Mutex<HashSet<String>>,
    queue: Arc<Queue>,
    stats: Arc<OutputStats>,
}

impl Input {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn close(&self) {
        self.queue.close();
    }

    pub(crate) fn offer(&self, ev: &Queued) {
        {
            let mut admitted = self.admitted.lock().unwrap_or_else(|e| e.into_inner());
            let passes = ev.severity >= self.min_severity && (ev.confirmed || !self.only_confirmed);
            let known = if ev.state == IncidentState::Resolved {
                admitted.remove(&ev.outage_id)
            } else {
                admitted.contains(&ev.outage_id)
            };
            if !known && !passes {
                return;
            }
            if !known && ev.state != IncidentState::Resolved {
                admitted.insert(ev.outage_id.clone());
            }
        }
        let pushed = self.queue.push(ev.clone());
        self.stats
            .queued
            .store(self.queue.len() as u64, Ordering::Relaxed);
        if pushed.dropped() {
            OutputStats::add(&self.stats.dropped, 1);
            // At most one line per 100 drops: a dead receiver must not flood the log.
            let n = self.stats.dropped.load(Ordering::Relaxed);
            if n == 1 || n % 100 == 0 {
                tracing::warn!(
                    output = %self.name, dropped_total = n, how = ?pushed,
                    "alert delivery queue full: dropping outage events"
                );
            }
        }
    }
}

/// Why one delivery failed.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("HTTP {status}")]
    Status {
        status: reqwest::StatusCode,
        retry_after: Option<Duration>,
    },
    /// Connection, TLS or timeout; the URL is stripped from the error (it may be a secret).
    #[error("{}", error_chain(source))]
    Request { source: reqwest::Error },
}

impl DeliveryError {
    fn retryable(&self) -> bool {
        match self {
            DeliveryError::Status { status, .. } => {
                status.is_server_error()
                    || *status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || *status == reqwest::StatusCode::REQUEST_TIMEOUT
            }
            DeliveryError::Request { source } => !source.is_builder(),
        }
    }
}

/// `error sending request: connection refused (os error 111)`, without the URL, redacted.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let part = c.to_string();
        if !s.contains(&part) {
            s.push_str(": ");
            s.push_str(&part);
        }
        cur = c.source();
    }
    crate::secrets::redact(&s).into_owned()
}

/// The sender task's state.
struct Sender {
    name: String,
    host: String,
    format: Format,
    url: reqwest::Url,
    client: reqwest::Client,
    max_retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    stats: Arc<OutputStats>,
    rng: ChaCha8Rng,
    /// Per outage: the highest seq delivered.
    delivered: HashMap<String, u64>,
    /// Resolved outages in delivery order, the first forgotten from `delivered`.
    resolved: VecDeque<String>,
    /// `alertmanager`: the last event sent (or tried) of each open outage, re-sent
    /// periodically and the source of the severity last sent.
    open_alerts: HashMap<String, Queued>,
    /// Input partitions this instance owns now (`None`: not told, e.g. no pipeline).
    owned: Owned,
}

pub(crate) fn spawn(
    name: String,
    settings: &OutputSettings,
    url: reqwest::Url,
    client: reqwest::Client,
    stats: Arc<OutputStats>,
    owned: Owned,
) -> (Input, tokio::task::JoinHandle<()>) {
    let queue = Arc::new(Queue::new(settings.queue));
    let url = match settings.format {
        Format::Alertmanager => alertmanager_url(url),
        _ => url,
    };
    // A per-process random seed (std's hasher keys are random), so that processes differ.
    let seed = {
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(&name)
    };
    let sender = Sender {
        host: settings.url.host(),
        name: name.clone(),
        format: settings.format,
        url,
        client,
        max_retries: settings.max_retries,
        backoff: Duration::from_millis(settings.retry_backoff_ms),
        max_backoff: Duration::from_millis(settings.max_retry_backoff_ms),
        stats: stats.clone(),
        rng: ChaCha8Rng::seed_from_u64(seed),
        delivered: HashMap::new(),
        resolved: VecDeque::new(),
        open_alerts: HashMap::new(),
        owned,
    };
    let resend = (settings.format == Format::Alertmanager && settings.resend_interval.0 > 0)
        .then(|| Duration::from_secs(settings.resend_interval.0));
    let task = tokio::spawn(sender.run(queue.clone(), resend));
    let input = Input {
        name,
        min_severity: settings.min_severity,
        only_confirmed: settings.only_confirmed,
        admitted: Mutex::new(HashSet::new()),
        queue,
        stats,
    };
    (input, task)
}

/// Alertmanager's base URL with `/api/v2/alerts` appended (unless it is there already).
fn alertmanager_url(mut url: reqwest::Url) -> reqwest::Url {
    let path = url.path().trim_end_matches('/').to_string();
    if !path.ends_with("/api/v2/alerts") {
        url.set_path(&format!("{path}/api/v2/alerts"));
    }
    url
}

impl Sender {
    async fn run(mut self, queue: Arc<Queue>, resend: Option<Duration>) {
        let mut resend_tick = resend.map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            tokio::select! {
                ev = queue.pop() => {
                    let Some(ev) = ev else { break };
                    self.stats.queued.store(queue.len() as u64, Ordering::Relaxed);
                    self.deliver(ev).await;
                }
                _ = async {
                    match resend_tick.as_mut() {
                        Some(t) => t.tick().await,
                        None => std::future::pending().await,
                    }
                } => self.resend_open_alerts().await,
            }
        }
        tracing::debug!(output = %self.name, "alert delivery output stopped");
    }

    fn already_delivered(&self, ev: &OutageEvent) -> bool {
        self.delivered
            .get(&ev.outage_id)
            .is_some_and(|&seq| seq >= ev.seq)
    }

    fn remember_delivered(&mut self, ev: &OutageEvent) {
        let seq = self.delivered.entry(ev.outage_id.clone()).or_insert(0);
        *seq = (*seq).max(ev.seq);
        if ev.state == IncidentState::Resolved {
            self.resolved.push_back(ev.outage_id.clone());
            while self.delivered.len() > DELIVERED_MEMORY {
                match self.resolved.pop_front() {
                    Some(id) => {
                        self.delivered.remove(&id);
                    }
                    None => break,
                }
            }
        }
    }

    async fn deliver(&mut self, ev: Queued) {
        // One task sends in queue order, so checking here (not at enqueue) is enough for
        // "never twice in one process", and an event that failed can still be sent when the
        // pipeline emits it again (after a rebalance).
        if self.already_delivered(&ev) {
            OutputStats::add(&self.stats.deduplicated, 1);
            return;
        }
        let body = match self.format {
            Format::Json => format::json_body(&ev),
            Format::Slack => format::slack_body(&ev),
            Format::Alertmanager => {
                let previous = self.open_alerts.get(&ev.outage_id).map(|e| e.severity);
                // Re-sent even if this delivery fails: Alertmanager gets it at the next resend.
                if ev.state == IncidentState::Resolved {
                    self.open_alerts.remove(&ev.outage_id);
                } else {
                    self.open_alerts.insert(ev.outage_id.clone(), ev.clone());
                }
                format::alertmanager_body(&ev, previous)
            }
        };
        let key = format!("{}#{}", ev.outage_id, ev.seq);
        match self.send_with_retries(&body, Some(&key)).await {
            Ok(()) => {
                OutputStats::add(&self.stats.sent, 1);
                self.remember_delivered(&ev);
                tracing::debug!(
                    output = %self.name, outage = %ev.outage_id, seq = ev.seq,
                    "outage event delivered"
                );
            }
            Err(e) => {
                OutputStats::add(&self.stats.failed, 1);
                tracing::warn!(
                    output = %self.name, host = %self.host, outage = %ev.outage_id,
                    seq = ev.seq, state = ?ev.state,
                    "alert delivery failed, event given up: {e}"
                );
            }
        }
    }

    /// Alertmanager resolves an alert on its own `resolve_timeout` after the last time it
    /// heard of it: open ones are sent again, as Prometheus does (one attempt; the next
    /// tick is the retry).
    async fn resend_open_alerts(&mut self) {
        // An outage of a partition that moved to another instance (a rebalance) is that
        // instance's to report: re-sending it from here would keep firing, or fire again, an
        // alert the new owner resolves.
        let owned = self.owned.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(owned) = owned {
            let name = &self.name;
            self.open_alerts.retain(|id, e| {
                let keep = e.partition.is_none_or(|p| owned.contains(&p));
                if !keep {
                    tracing::info!(
                        output = %name, outage = %id, partition = e.partition,
                        "partition no longer assigned here: open alert not re-sent any more"
                    );
                }
                keep
            });
        }
        if self.open_alerts.is_empty() {
            return;
        }
        let alerts: Vec<serde_json::Value> = self
            .open_alerts
            .values()
            .flat_map(|ev| match format::alertmanager_body(ev, None) {
                serde_json::Value::Array(a) => a,
                other => vec![other],
            })
            .collect();
        let n = alerts.len();
        if let Err(e) = self.post(&serde_json::Value::Array(alerts), None).await {
            tracing::warn!(
                output = %self.name, host = %self.host, alerts = n,
                "re-sending open alerts failed (tried again next interval): {e}"
            );
        }
    }

    async fn post(
        &self,
        body: &serde_json::Value,
        idempotency_key: Option<&str>,
    ) -> Result<(), DeliveryError> {
        let mut req = self.client.post(self.url.clone()).json(body);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.map_err(|e| DeliveryError::Request {
            source: e.without_url(),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        Err(DeliveryError::Status {
            status,
            retry_after,
        })
    }

    async fn send_with_retries(
        &mut self,
        body: &serde_json::Value,
        idempotency_key: Option<&str>,
    ) -> Result<(), DeliveryError> {
        let mut attempt = 0u32;
        loop {
            let err = match self.post(body, idempotency_key).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if !err.retryable() || attempt >= self.max_retries {
                return Err(err);
            }
            OutputStats::add(&self.stats.retries, 1);
            let wait = match &err {
                DeliveryError::Status {
                    retry_after: Some(d),
                    ..
                } => *d,
                _ => self.backoff(attempt),
            };
            tracing::debug!(
                output = %self.name, host = %self.host, attempt = attempt + 1,
                "alert delivery failed, retrying in {wait:?}: {err}"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// Exponential backoff with "equal jitter": between half and all of
    /// `backoff × 2^attempt` (capped), so that outputs failing together spread out.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let full = self
            .backoff
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        let half = full / 2;
        half + self.rng.random_range(Duration::ZERO..=full - half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alertmanager_path_is_appended_once() {
        for (base, want) in [
            ("http://am:9093", "http://am:9093/api/v2/alerts"),
            ("http://am:9093/", "http://am:9093/api/v2/alerts"),
            ("http://h/am/", "http://h/am/api/v2/alerts"),
            (
                "http://am:9093/api/v2/alerts",
                "http://am:9093/api/v2/alerts",
            ),
        ] {
            let u = alertmanager_url(reqwest::Url::parse(base).unwrap());
            assert_eq!(u.as_str(), want);
        }
    }
}
