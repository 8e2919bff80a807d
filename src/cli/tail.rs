//! `spikewatch tail`: the subscriber side. Reads the anomaly topic (one line per outage event;
//! `--series`: the per-series incident events behind them), drops duplicates by id + `seq`
//! (at-least-once delivery may repeat an event after a crash), and prints them readably, or
//! as JSON lines exactly as on the topic. Partitions are assigned directly: no consumer group
//! to join (or to leave behind), and `--idle-exit` counts from the moment they are assigned.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use spikewatch::event::{AnomalyEvent, IncidentState, OutageChange, OutageEvent};
use spikewatch::kafka::LogContext;

#[derive(Debug, clap::Args)]
pub(crate) struct TailArgs {
    /// Config file (anomaly topic name, `[kafka.consumer]` security settings).
    #[arg(long, short)]
    pub(crate) config: Option<PathBuf>,
    /// Bootstrap servers `HOST:PORT,…`; overrides `kafka.brokers`.
    #[arg(long)]
    pub(crate) brokers: Option<String>,
    /// Print the events as JSON lines exactly as on the topic.
    #[arg(long)]
    pub(crate) json: bool,
    /// The per-series incident events (`topics.series_anomalies`) instead of outages.
    #[arg(long)]
    pub(crate) series: bool,
    /// Read the topic from its start (default: only new events).
    #[arg(long)]
    pub(crate) from_beginning: bool,
    /// Exit after this many distinct events.
    #[arg(long)]
    pub(crate) max_events: Option<u64>,
    /// Exit after this long without a new event (e.g. "30s"); default: run until stopped.
    #[arg(long, value_parser = spikewatch::config::parse_duration)]
    pub(crate) idle_exit: Option<spikewatch::config::Secs>,
}

/// One readable line per event.
pub(crate) fn describe(e: &AnomalyEvent) -> String {
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

fn hhmm(t: spikewatch::event::Timestamp) -> String {
    let s = t.to_rfc3339();
    s.get(..16).unwrap_or(&s).replace('T', " ")
}

/// One readable line per outage event.
pub(crate) fn describe_outage(e: &OutageEvent) -> String {
    let state = match e.state {
        IncidentState::Opened => "OPENED  ",
        IncidentState::Updated => "UPDATED ",
        IncidentState::Resolved => "RESOLVED",
    };
    let places: Vec<&str> = e
        .countries
        .iter()
        .map(|c| if c == "*" { "all geos" } else { c.as_str() })
        .collect();
    let mut s = format!(
        "{}  {state}  {}: problems in {} since {} ({}{}), {:?}, peak z {:.1} in {}",
        hhmm(e.as_of),
        e.service,
        places.join(", "),
        hhmm(e.opened_at),
        e.signals.join(" + "),
        if e.confirmed { ", confirmed" } else { "" },
        e.severity,
        e.peak_zscore,
        e.strongest_geo,
    );
    for x in &e.above_baseline {
        s.push_str(&format!(
            "; {:.0} {} above normal",
            x.above_baseline, x.signal
        ));
    }
    if let Some(c) = e.top_categories.first() {
        s.push_str(&format!("; top problem: {}", c.category));
    }
    if let Some(r) = e.resolved_at {
        s.push_str(&format!("; resolved at {}", hhmm(r)));
    }
    let why: Vec<&str> = e
        .changes
        .iter()
        .filter_map(|c| match c {
            OutageChange::NewCountry => Some("new country"),
            OutageChange::Severity => Some("severity up"),
            OutageChange::Peak => Some("peak grew"),
            OutageChange::SignalJoined => Some("signals agree"),
            OutageChange::Reopened => Some("came back"),
            OutageChange::Opened | OutageChange::Resolved => None,
        })
        .collect();
    if !why.is_empty() {
        s.push_str(&format!(" ({})", why.join(", ")));
    }
    if !e.concurrent_services.is_empty() {
        s.push_str(&format!(
            "; also down in the same places: {}",
            e.concurrent_services.join(" ")
        ));
    }
    s.push_str(&format!("  [{} #{}]", e.outage_id, e.seq));
    s
}

pub(crate) fn run(args: &TailArgs) -> anyhow::Result<()> {
    let config = super::run::load_config(args.config.as_deref(), args.brokers.as_deref())?;
    let k = &config.kafka;
    let topic = if args.series {
        if k.topics.series_anomalies.is_empty() {
            anyhow::bail!(
                "--series: topics.series_anomalies is empty (series events are not published)"
            );
        }
        &k.topics.series_anomalies
    } else {
        &k.topics.anomalies
    };
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &k.brokers)
        .set("group.id", "spikewatch-tail")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    for (key, v) in &k.consumer {
        cc.set(key, v);
    }
    let consumer: BaseConsumer<LogContext> = cc.create_with_context(LogContext::new("tail"))?;
    // Assign every partition directly (no group join: nothing to wait for, nothing left
    // behind on the broker).
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .with_context(|| format!("cannot read the partitions of {topic} from {}", k.brokers))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        anyhow::bail!(
            "topic {topic} has no partitions on {} (does it exist?)",
            k.brokers
        );
    }
    let mut tpl = TopicPartitionList::new();
    let start = if args.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    for &p in &partitions {
        tpl.add_partition_offset(topic, p, start)?;
    }
    consumer.assign(&tpl)?;
    eprintln!(
        "tailing {topic} ({} partition(s)) on {}",
        partitions.len(),
        k.brokers
    );
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
        let parsed = if args.series {
            serde_json::from_slice::<AnomalyEvent>(payload)
                .map(|e| ((e.incident_id.clone(), e.seq), describe(&e)))
        } else {
            serde_json::from_slice::<OutageEvent>(payload)
                .map(|e| ((e.outage_id.clone(), e.seq), describe_outage(&e)))
        };
        let (key, line) = match parsed {
            Ok(x) => x,
            Err(err) => {
                tracing::warn!(
                    partition = m.partition(),
                    offset = m.offset(),
                    "not an {} event: {err}",
                    if args.series { "anomaly" } else { "outage" }
                );
                continue;
            }
        };
        if !seen.insert(key) {
            continue; // a duplicate from an at-least-once redelivery
        }
        idle = std::time::Instant::now();
        if args.json {
            out.write_all(payload)?;
            out.write_all(b"\n")?;
        } else {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        if args.max_events.is_some_and(|n| seen.len() as u64 >= n) {
            return Ok(());
        }
    }
}
