//! `spikewatch tail`: the subscriber side. Reads the anomaly topic, drops duplicates by
//! `incident_id` + `seq` (at-least-once delivery may repeat an event after a crash), and
//! prints incidents readably, or the events as JSON lines exactly as on the topic.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

use crate::event::{AnomalyEvent, IncidentState};
use crate::kafka::LogContext;

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Config file (anomaly topic name, `[kafka.consumer]` security settings).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Bootstrap servers `HOST:PORT,…`; overrides `kafka.brokers`.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Print the anomaly events as JSON lines exactly as on the topic.
    #[arg(long)]
    pub json: bool,
    /// Read the topic from its start (default: only new events).
    #[arg(long)]
    pub from_beginning: bool,
    /// Exit after this many distinct events.
    #[arg(long)]
    pub max_events: Option<u64>,
    /// Exit after this long without a new event (e.g. "30s"); default: run until stopped.
    #[arg(long, value_parser = crate::config::parse_duration)]
    pub idle_exit: Option<crate::config::Secs>,
}

/// One readable line per event.
pub fn describe(e: &AnomalyEvent) -> String {
    let when = e.bucket_start.to_rfc3339();
    let when = when.get(..16).unwrap_or(&when).replace('T', " ");
    let state = match e.state {
        IncidentState::Opened => "OPENED  ",
        IncidentState::Updated => "UPDATED ",
        IncidentState::Resolved => "RESOLVED",
    };
    let mut s = format!(
        "{when}  {state}  {} down in {} ({}): observed {:.0} vs expected {:.1}, z {:.1}, {:?}",
        e.service, e.geo, e.signal, e.observed, e.expected, e.zscore, e.severity
    );
    if let Some(r) = e.resolved_at {
        s.push_str(&format!(", resolved at {}", r.to_rfc3339()));
    }
    if !e.child_geos.is_empty() {
        s.push_str(&format!(", in {}", e.child_geos.join(" ")));
    }
    if !e.concurrent_services.is_empty() {
        s.push_str(&format!(
            ", also down here: {}",
            e.concurrent_services.join(" ")
        ));
    }
    s.push_str(&format!("  [{} #{}]", e.incident_id, e.seq));
    s
}

pub fn run(args: &TailArgs) -> anyhow::Result<()> {
    let config = super::run::load_config(args.config.as_deref(), args.brokers.as_deref())?;
    let k = &config.kafka;
    let group = format!(
        "spikewatch-tail-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &k.brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set(
            "auto.offset.reset",
            if args.from_beginning {
                "earliest"
            } else {
                "latest"
            },
        );
    for (key, v) in &k.consumer {
        cc.set(key, v);
    }
    let consumer: BaseConsumer<LogContext> = cc.create_with_context(LogContext::new("tail"))?;
    consumer.subscribe(&[&k.topics.anomalies])?;
    eprintln!("tailing {} on {}", k.topics.anomalies, k.brokers);
    let mut seen: HashSet<(String, u64)> = HashSet::new();
    let mut out = std::io::stdout().lock();
    let mut idle = std::time::Instant::now();
    loop {
        if let Some(limit) = args.idle_exit {
            if idle.elapsed() >= Duration::from_secs(limit.0) {
                return Ok(());
            }
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("consumer error (retrying): {e}");
                continue;
            }
        };
        let payload = m.payload().unwrap_or_default();
        let e: AnomalyEvent = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(err) => {
                tracing::warn!(
                    partition = m.partition(),
                    offset = m.offset(),
                    "not an anomaly event: {err}"
                );
                continue;
            }
        };
        if !seen.insert((e.incident_id.clone(), e.seq)) {
            continue; // a duplicate from an at-least-once redelivery
        }
        idle = std::time::Instant::now();
        if args.json {
            out.write_all(payload)?;
            out.write_all(b"\n")?;
        } else {
            writeln!(out, "{}", describe(&e))?;
        }
        out.flush()?;
        if args.max_events.is_some_and(|n| seen.len() as u64 >= n) {
            return Ok(());
        }
    }
}
