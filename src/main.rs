use clap::Parser;

use spikewatch::cli::{self, Cli};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli::init_logging(cli.log_format);
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<cli::healthcheck::Unhealthy>().is_some() => {
            // Docker and Kubernetes exec probes read 1 as "unhealthy"; Docker reserves 2.
            eprintln!("{e}");
            std::process::ExitCode::from(1)
        }
        Err(e) => {
            // The whole chain: what failed, and every cause beneath it.
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::from(2)
        }
    }
}
