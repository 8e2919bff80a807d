use clap::Parser;

use spikewatch::cli::{self, Cli};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli::init_logging(cli.log_format);
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain: what failed, and every cause beneath it.
            // Configured secrets masked: an error may quote a value (librdkafka's do).
            let redact = |s: String| spikewatch::secrets::redact(&s).into_owned();
            eprintln!("error: {}", redact(e.to_string()));
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {}", redact(cause.to_string()));
            }
            std::process::ExitCode::from(2)
        }
    }
}
