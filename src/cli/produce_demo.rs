//! `spikewatch produce-demo`: publishes the demo's generated traffic (the same scenario as
//! `spikewatch demo`) to the input topics, paced at a chosen speed-up, keyed by service.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rdkafka::producer::Producer as _;

use spikewatch::event::{InputEvent, Timestamp};
use spikewatch::kafka::producer::{create_producer, send_blocking};
use spikewatch::sim::{self, Scenario, DAY_MS, HOUR_MS};

#[derive(Debug, clap::Args)]
pub(crate) struct ProduceDemoArgs {
    /// Config file (topic names and `[kafka.producer]` settings); defaults without it.
    #[arg(long, short)]
    pub(crate) config: Option<PathBuf>,
    /// Bootstrap servers `HOST:PORT,…`; overrides `kafka.brokers`.
    #[arg(long)]
    pub(crate) brokers: Option<String>,
    /// Event time per wall-clock time: 600 = ten minutes of traffic per second. 0: as fast as
    /// possible.
    #[arg(long, default_value_t = 600.0)]
    pub(crate) speedup: f64,
    /// Where in the six-week demo to start, in hours from its start (default: day 16 10:00,
    /// four hours before "Telegram down across Italy, western Europe, Russia and Turkey").
    #[arg(long, default_value_t = 16 * 24 + 10)]
    pub(crate) from_hour: u64,
    /// How many hours of traffic to publish (default 8: the first outage and the hours
    /// around it, under a minute at 600x; `--hours 0`: to the end of the demo).
    #[arg(long, default_value_t = 8)]
    pub(crate) hours: u64,
}

pub(crate) fn run(args: &ProduceDemoArgs) -> anyhow::Result<()> {
    let config = super::run::load_config(args.config.as_deref(), args.brokers.as_deref())?;
    let k = config.kafka.clone();
    let scenario = Scenario::demo();
    let from = scenario.start_ms + args.from_hour as i64 * HOUR_MS;
    let to = match args.hours {
        0 => scenario.end_ms(),
        h => (from + h as i64 * HOUR_MS).min(scenario.end_ms()),
    };
    anyhow::ensure!(
        from < to,
        "--from-hour is past the end of the demo ({} days)",
        scenario.days
    );
    let rt = super::run::runtime()?;
    if k.create_topics {
        rt.block_on(spikewatch::kafka::admin::create_topics(
            &k,
            &[
                k.topics.mentions.as_str(),
                &k.topics.complaints,
                &k.topics.anomalies,
                &k.topics.series_anomalies,
                &k.topics.dead_letters,
            ]
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect::<Vec<&str>>(),
            k.partitions,
        ))
        .map_err(|e| anyhow::anyhow!("cannot create topics on {}: {e}", k.brokers))?;
    }
    let _guard = rt.enter();
    let producer = create_producer(&k)?;
    for o in scenario
        .outages
        .iter()
        .filter(|o| o.end_ms() > from && o.start_ms() < to)
    {
        eprintln!(
            "outage ahead at {}: {}",
            Timestamp(o.start_ms()).to_rfc3339(),
            o.label
        );
    }
    eprintln!(
        "publishing {} .. {} at {}x to {} / {} on {}",
        Timestamp(from).to_rfc3339(),
        Timestamp(to).to_rfc3339(),
        args.speedup,
        k.topics.mentions,
        k.topics.complaints,
        k.brokers
    );
    let wall0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x5eed);
    let mut sent: u64 = 0;
    let mut last_hour = from / HOUR_MS;
    let mut error: Option<anyhow::Error> = None;
    scenario.generate(|t, service, geo, signal, count| {
        if t < from || t >= to || error.is_some() {
            return;
        }
        if args.speedup > 0.0 {
            let due = Duration::from_secs_f64((t - from) as f64 / 1000.0 / args.speedup);
            if let Some(wait) = due.checked_sub(wall0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if t / HOUR_MS != last_hour {
            last_hour = t / HOUR_MS;
            eprintln!("{}  {sent} messages", Timestamp(t).to_rfc3339());
        }
        for ev in sim::expand_events(&mut rng, t, scenario.bucket_ms, service, geo, signal, count) {
            let (topic, payload) = match &ev {
                InputEvent::Mention(m) => (&k.topics.mentions, serde_json::to_vec(m)),
                InputEvent::Complaint(c) => (&k.topics.complaints, serde_json::to_vec(c)),
            };
            let payload = payload.expect("events serialise");
            // Keyed by service: all of a service's geos on one partition (README).
            match send_blocking(&producer, topic, Some(service.as_bytes()), &payload, None) {
                Ok(_) => sent += 1,
                Err(e) => error = Some(anyhow::anyhow!("cannot enqueue: {e}")),
            }
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| anyhow::anyhow!("flush: {e}"))?;
    eprintln!(
        "published {sent} messages ({:.1} days of traffic) in {:.1?}",
        (to - from) as f64 / DAY_MS as f64,
        wall0.elapsed()
    );
    Ok(())
}
