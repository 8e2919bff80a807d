//! Command-line drivers. Each subcommand lives in its own file and drives the same engine.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub mod produce_demo;
pub mod run;
pub mod tail;

/// spikewatch: tells you a service is going down, minutes after its users start complaining,
/// and where.
#[derive(Debug, Parser)]
#[command(name = "spikewatch", version, about, long_about = None)]
pub struct Cli {
    /// Log format: human-readable text or JSON lines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config file and print the effective thresholds for a service/geo/signal.
    CheckConfig(CheckConfigArgs),
    /// Run the Kafka pipeline: consume mentions and complaints, publish anomaly events.
    Run(run::RunArgs),
    /// Publish the demo's generated traffic to the input topics at a chosen speed-up.
    ProduceDemo(produce_demo::ProduceDemoArgs),
    /// Print incidents from the anomaly topic (de-duplicated by incident_id + seq).
    Tail(tail::TailArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The config file (TOML).
    pub file: PathBuf,
    /// Service to resolve thresholds for.
    #[arg(long, default_value = "example")]
    pub service: String,
    /// Geo to resolve thresholds for.
    #[arg(long, default_value = "*")]
    pub geo: String,
    /// Signal to resolve thresholds for.
    #[arg(long, default_value = "complaints")]
    pub signal: String,
}

/// Sets up `tracing` on stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckConfig(args) => check_config(&args),
        Command::Run(args) => run::run(&args),
        Command::ProduceDemo(args) => produce_demo::run(&args),
        Command::Tail(args) => tail::run(&args),
    }
}

fn check_config(args: &CheckConfigArgs) -> anyhow::Result<()> {
    let config = crate::config::Config::load(Some(&args.file))?;
    let t = config.resolve(&args.service, &args.geo, &args.signal);
    println!(
        "{}: OK\n\n# effective thresholds for service={} geo={} signal={}\n{}",
        args.file.display(),
        args.service,
        args.geo,
        args.signal,
        toml::to_string_pretty(&t)?
    );
    Ok(())
}
