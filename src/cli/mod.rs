//! Command-line drivers. Each subcommand lives in its own file and drives the same engine.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub(crate) mod demo;
pub(crate) mod healthcheck;
pub(crate) mod produce_demo;
pub(crate) mod replay;
pub(crate) mod run;
pub(crate) mod sweep;
pub(crate) mod tail;

/// spikewatch: tells you a service is going down, minutes after its users start complaining,
/// and where.
#[derive(Debug, Parser)]
#[command(name = "spikewatch", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Log format: human-readable text or JSON lines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Validate a config file as `run` would (Kafka properties, `${env:…}` secrets, geo
    /// codes, HTTP address included) and print the effective thresholds for a
    /// service/geo/signal.
    CheckConfig(CheckConfigArgs),
    /// Backtest on history: run the engine over a JSONL file of events or a CSV count series
    /// and write per-bucket scores (and incidents), to tune thresholds before deploying.
    Replay(ReplayArgs),
    /// Generate weeks of traffic with real-world-shaped outages, detect them and print a
    /// timeline and a plot. No Kafka, no arguments needed.
    Demo(DemoArgs),
    /// Run the Kafka pipeline: consume mentions and complaints, publish anomaly events.
    Run(run::RunArgs),
    /// Publish the demo's generated traffic to the input topics at a chosen speed-up.
    ProduceDemo(produce_demo::ProduceDemoArgs),
    /// Print incidents from the anomaly topic (de-duplicated by incident_id + seq).
    Tail(tail::TailArgs),
    /// Probe the HTTP server of a running instance (for container healthchecks: the image has
    /// no curl): exit 0 on a 2xx answer, 1 otherwise.
    Healthcheck(healthcheck::HealthcheckArgs),
}

/// Input format of `replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReplayFormat {
    /// A count series: `timestamp`, `value` (optional `service`, `geo`, `signal`).
    Csv,
    /// One mention or complaint event per line.
    Jsonl,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// Input file: `.csv` count series or `.jsonl`/`.ndjson`/`.json` events.
    #[arg(long, short)]
    pub(crate) input: PathBuf,
    /// Output CSV of per-bucket scores; `-` writes it to standard output.
    #[arg(long, short, required_unless_present = "sweep")]
    pub(crate) output: Option<PathBuf>,
    /// Config file (TOML); defaults plus `SPIKEWATCH_…` variables otherwise.
    #[arg(long, short)]
    pub(crate) config: Option<PathBuf>,
    /// Set one configuration key for this run, over the config file and the environment: a
    /// dotted TOML key and its value, e.g. `--set detection.open_z=7` or
    /// `--set 'services."libero.it".close_after=30m'`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = sweep::parse_setting)]
    pub(crate) settings: Vec<(String, String)>,
    /// Replay once per value of one configuration key and print, per value, the incidents and
    /// (with a `label` column or `--known-outages`) the events found, false alerts and delay:
    /// e.g. `--sweep detection.open_z=5,6,7,8`. Writes no scores, so needs no `--output`.
    #[arg(
        long,
        value_name = "KEY=V1,V2,...",
        value_parser = sweep::parse_sweep,
        conflicts_with_all = ["output", "incidents", "plot", "save_state"]
    )]
    pub(crate) sweep: Option<sweep::Sweep>,
    /// Write the incidents here, one JSON event per line: outage events (as on the anomaly
    /// topic), or per-series events with `--incident-events series`; `-` writes them to
    /// standard output (then `--output` must name a file).
    #[arg(long)]
    pub(crate) incidents: Option<PathBuf>,
    /// What `--incidents` holds.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) incident_events: spikewatch::replay::IncidentEvents,
    /// Input format, instead of guessing from the extension.
    #[arg(long, value_enum)]
    pub(crate) format: Option<ReplayFormat>,
    /// Bucket width (e.g. `5m`); for CSV instead of the width inferred from the timestamps.
    #[arg(long, value_parser = replay::parse_bucket)]
    pub(crate) bucket: Option<spikewatch::config::Secs>,
    /// CSV: what the values are. `auto` scores a series whose values are not all whole
    /// numbers >= 0 as a gauge (no Poisson floor, no minimum count, calibrated to its own
    /// tail; README "Gauges"), every other series as a count.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) values: spikewatch::replay::ValueKind,
    /// Write an SVG plot of one series: observed vs expected, band and incident spans.
    #[arg(long)]
    pub(crate) plot: Option<PathBuf>,
    /// Series to plot as SERVICE/GEO/SIGNAL (default: the most alert buckets, else the busiest).
    #[arg(long, requires = "plot")]
    pub(crate) series: Option<String>,
    /// Start from this engine state file (written by `--save-state`): every series continues
    /// with the baseline and incidents learned from earlier history. JSONL input only.
    #[arg(long, value_name = "FILE")]
    pub(crate) initial_state: Option<PathBuf>,
    /// After the run, write the engine state to this file (atomically: temporary file and
    /// rename), for `--initial-state` of a later run. JSONL input only.
    #[arg(long, value_name = "FILE")]
    pub(crate) save_state: Option<PathBuf>,
    /// Outages known to have happened (CSV: `service,start,end`, e.g. from postmortems): the
    /// summary says which the replay's outages found, how soon, and which outages match none.
    /// JSONL input only (a CSV series takes a `label` column instead).
    #[arg(long, value_name = "FILE")]
    pub(crate) known_outages: Option<PathBuf>,
    /// With labels or `--known-outages`: score only the incidents (outages) that reach this
    /// severity, as announced when they reach it, i.e. what paging on that severity would
    /// have done.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub(crate) page_on: Option<PageOn>,
}

/// `replay --page-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PageOn {
    Minor,
    Major,
    Critical,
}

impl From<PageOn> for spikewatch::event::Severity {
    fn from(p: PageOn) -> Self {
        match p {
            PageOn::Minor => Self::Minor,
            PageOn::Major => Self::Major,
            PageOn::Critical => Self::Critical,
        }
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Directory for the plot (`spikewatch-demo.svg`).
    #[arg(long, default_value = ".")]
    pub(crate) out_dir: PathBuf,
    /// Also write the generated traffic as JSONL wire events (input for `spikewatch replay`).
    #[arg(long)]
    pub(crate) write_jsonl: Option<PathBuf>,
    /// Also write the injected outages as a known-outages file (`service,start,end,label`), for
    /// `spikewatch replay --known-outages` on the `--write-jsonl` traffic.
    #[arg(long, value_name = "FILE")]
    pub(crate) write_known_outages: Option<PathBuf>,
    /// Generate realistic traffic instead (README "Realistic generated traffic"): stronger,
    /// negative-binomial noise, retweet bursts, news bumps and EU summer time, from 2024-03-04
    /// (the clock change falls in week 4), with the same outages.
    #[arg(long)]
    pub(crate) realistic: bool,
    /// Seed of the generator.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Weeks of traffic (the injected outages need 6; fewer keeps only those that fit).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=52))]
    pub(crate) weeks: u32,
    /// Config file (TOML); built-in defaults otherwise.
    #[arg(long, short)]
    pub(crate) config: Option<PathBuf>,
    /// After the run, serve the status page, its API and `/metrics` on this address (e.g.
    /// 127.0.0.1:8080; port 0 picks a free one) until Ctrl-C.
    // The same flag as `run`'s; `--serve`, its name before, is a hidden alias.
    #[arg(long = "http-addr", alias = "serve", value_name = "ADDR")]
    pub(crate) serve: Option<std::net::SocketAddr>,
    /// Stop the generated stream at this time (RFC 3339, e.g. 2024-01-17T15:10:00Z).
    #[arg(long, value_name = "TIME", value_parser = demo::parse_until, conflicts_with = "until_outage")]
    pub(crate) until: Option<i64>,
    /// Stop the generated stream one hour into the N-th injected outage (1 = the first, at
    /// most halfway through it), so that its incidents are still open.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) until_outage: Option<u32>,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["file", "config"])))]
pub(crate) struct CheckConfigArgs {
    /// The config file (TOML), as every other command takes it.
    #[arg(long, short, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The config file, positionally (the older form; same as `--config`).
    #[arg(value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
    /// Service to resolve thresholds for.
    #[arg(long, default_value = "example")]
    pub(crate) service: String,
    /// Geo to resolve thresholds for.
    #[arg(long, default_value = "*")]
    pub(crate) geo: String,
    /// Signal to resolve thresholds for.
    #[arg(long, default_value = "complaints")]
    pub(crate) signal: String,
}

/// Sets up `tracing` on stderr; `RUST_LOG` filters (default `info`).
pub(crate) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Every line is passed through `secrets::redact`: no configured secret is ever
        // printed, whoever writes the line (librdkafka's errors echo property values).
        .with_writer(spikewatch::secrets::RedactingStderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckConfig(args) => check_config(&args),
        Command::Replay(args) => replay::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Run(args) => run::run(&args),
        Command::ProduceDemo(args) => produce_demo::run(&args),
        Command::Tail(args) => tail::run(&args),
        Command::Healthcheck(args) => healthcheck::run(&args),
    }
}

fn check_config(args: &CheckConfigArgs) -> anyhow::Result<()> {
    let file = args
        .config
        .as_ref()
        .or(args.file.as_ref())
        .expect("clap requires one of them");
    // The loader `run` uses, so that a file passing here does not fail at startup.
    let config = run::load_config(Some(file), None)?;
    let t = config.resolve(&args.service, &args.geo, &args.signal);
    println!(
        "{}: OK\n\n# effective thresholds for service={} geo={} signal={}\n{}",
        file.display(),
        args.service,
        args.geo,
        args.signal,
        toml::to_string_pretty(&t)?
    );
    Ok(())
}
