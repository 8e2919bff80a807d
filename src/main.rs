#![warn(clippy::unwrap_used)]

use clap::Parser;

mod cli;

use cli::Cli;

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
        Err(e) if is_broken_pipe(&e) => {
            // `spikewatch replay --output - | head`: the reader has all it wanted.
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            // Configured secrets masked: an error may quote a value (librdkafka's do).
            eprintln!("{}", spikewatch::secrets::redact(&error_report(&e)));
            std::process::ExitCode::from(2)
        }
    }
}

/// What failed and every cause beneath it, each once: most errors already end with their
/// cause's text (`cannot read x.toml: No such file or directory`), so a cause is listed only
/// when it says something not printed yet.
fn error_report(e: &anyhow::Error) -> String {
    let mut out = format!("error: {e}");
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(&format!("\n  caused by: {text}"));
        }
    }
    out
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
