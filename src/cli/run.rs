//! `spikewatch run`: the Kafka pipeline.

use std::path::PathBuf;

use tokio::sync::broadcast;

use spikewatch::config::Config;

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Config file (TOML); without it, defaults apply.
    #[arg(long, short)]
    pub(crate) config: Option<PathBuf>,
    /// Bootstrap servers `HOST:PORT,…`; overrides `kafka.brokers`.
    #[arg(long)]
    pub(crate) brokers: Option<String>,
    /// Consumer group id; overrides `kafka.group_id`.
    #[arg(long)]
    pub(crate) group_id: Option<String>,
    /// Serve the status page, API, `/metrics`, `/healthz` and `/readyz` on `HOST:PORT`;
    /// overrides `http.addr`.
    // `--serve`, demo's name for it before the flags were made one, is a hidden alias.
    #[arg(long, alias = "serve", value_name = "ADDR")]
    pub(crate) http_addr: Option<String>,
    /// State file from `replay --save-state`: new series start from the baselines it learned
    /// from history instead of warming up (series the changelog has keep their own state).
    #[arg(long, value_name = "FILE")]
    pub(crate) initial_state: Option<PathBuf>,
    /// At exit, write the run's final counters as JSON to FILE (`-`: standard output): the
    /// numbers of the `final summary` log line and more, for scripts and tests.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
}

/// Loads the config for a Kafka command (and `check-config`, so that a file it accepts does
/// not fail at startup): file, environment, `--brokers`, `${env:…}` secrets resolved (never
/// logged), then what would otherwise only fail once running: librdkafka properties, geo
/// codes that cannot match, the HTTP address.
pub(crate) fn load_config(
    path: Option<&std::path::Path>,
    brokers: Option<&str>,
) -> anyhow::Result<Config> {
    let origin = path.map_or("built-in defaults".into(), |p| p.display().to_string());
    let mut config = Config::load(path)?;
    if let Some(b) = brokers {
        config.kafka.brokers = b.to_string();
    }
    config
        .kafka
        .resolve_env(|name| std::env::var(name).ok())
        .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    config.kafka.validate()?;
    config
        .notify
        .resolve_env(|name| std::env::var(name).ok())
        .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    check_client_properties(&config.kafka).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    check_geo_case(&config).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
    if let Some(a) = &config.http.addr {
        parse_http_addr(a).map_err(|e| anyhow::anyhow!("{origin}: `http.addr` {e}"))?;
    }
    Ok(config)
}

fn parse_http_addr(a: &str) -> anyhow::Result<std::net::SocketAddr> {
    a.parse()
        .map_err(|e| anyhow::anyhow!("{a:?}: {e} (expected HOST:PORT, e.g. 0.0.0.0:8080)"))
}

/// Hands the consumer and producer configurations to librdkafka without creating a client
/// (no broker needed): unknown properties and invalid values (including TLS settings in a
/// build without TLS) are found here instead of at startup. The message names the key and
/// librdkafka's reason, with the value blanked out: it may be a secret from `${env:…}`.
fn check_client_properties(k: &spikewatch::kafka::KafkaSettings) -> Result<(), String> {
    let sections = [
        ("consumer", spikewatch::kafka::consumer::consumer_config(k)),
        ("producer", spikewatch::kafka::producer::producer_config(k)),
    ];
    for (section, cc) in sections {
        if let Err(e) = cc.create_native_config() {
            return Err(match e {
                rdkafka::error::KafkaError::ClientConfig(_, desc, key, value) => {
                    let desc = if value.is_empty() {
                        desc
                    } else {
                        desc.replace(&value, "…")
                    };
                    format!("`kafka.{section}.{key}` is rejected by librdkafka: {desc}")
                }
                other => format!("[kafka.{section}]: librdkafka: {other}"),
            });
        }
    }
    Ok(())
}

/// Geo codes are case-sensitive (README "Geography format") and real ones are upper case
/// (ISO 3166): an override or parent written `it-rm` would only ever apply to events whose
/// geo is literally `it-rm`, so it silently does nothing. Rejected like any invalid key.
fn check_geo_case(config: &Config) -> Result<(), String> {
    let mut keys: Vec<(String, &str)> = config
        .geos
        .keys()
        .map(|g| (format!("geos.{g}"), g.as_str()))
        .collect();
    for (svc, o) in &config.services {
        for g in o.geos.iter().flat_map(|m| m.keys()) {
            keys.push((format!("services.{svc}.geos.{g}"), g.as_str()));
        }
    }
    // A parent is a roll-up spikewatch creates itself, so any spelling works; a child is
    // matched against event geos.
    for child in config.geo.parents.keys() {
        keys.push((format!("geo.parents.{child}"), child.as_str()));
    }
    match keys
        .into_iter()
        .find(|(_, g)| g.bytes().any(|b| b.is_ascii_lowercase()))
    {
        Some((key, g)) => Err(format!(
            "`{key}` would never match an event: geo codes are case-sensitive and ISO 3166 \
             codes are upper case; write {:?} instead of {g:?}",
            g.to_ascii_uppercase()
        )),
        None => Ok(()),
    }
}

/// How long `run` waits at exit for alert delivery outputs to send what they have queued.
const NOTIFY_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A multi-threaded runtime with two workers (the consume loop and everything else).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Fires `tx` on SIGINT or SIGTERM.
pub(crate) async fn forward_signals(tx: broadcast::Sender<()>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
                let _ = tx.send(());
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = tx.send(());
}

/// Re-reads the config file on SIGHUP and when it changes (polled every 2 s), and sends every
/// valid one to the pipeline; an invalid file is rejected with its error and the old
/// configuration stays in force.
///
/// `seen` is the file's modification time from before the running config was loaded: taken
/// when this task first runs instead, a change made between the load and that moment (the
/// task may start after the pipeline is busy) would never be applied.
async fn watch_config(
    path: PathBuf,
    mut seen: Option<std::time::SystemTime>,
    (brokers, group_id): (Option<String>, Option<String>),
    notify: spikewatch::notify::NotifySettings,
    tx: tokio::sync::mpsc::Sender<spikewatch::kafka::PipelineConfig>,
    mut stop: broadcast::Receiver<()>,
) {
    let mut poll = tokio::time::interval(std::time::Duration::from_secs(2));
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let why = tokio::select! {
            _ = stop.recv() => return,
            _ = hangup => "SIGHUP",
            _ = poll.tick() => {
                let now = modified_at(&path);
                if now == seen {
                    continue;
                }
                "file changed"
            }
        };
        seen = modified_at(&path);
        match load_config(Some(&path), brokers.as_deref()) {
            Ok(mut c) => {
                if let Some(g) = &group_id {
                    c.kafka.group_id = g.clone();
                }
                tracing::info!(path = %path.display(), "{why}: config file is valid, applying it");
                if c.notify != notify {
                    tracing::warn!(
                        "[notify] settings changed in the config file: they apply after a restart"
                    );
                }
                if tx.send(c.into()).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::error!(
                path = %path.display(),
                "{why}: config rejected, the old one stays in force: {e:#}"
            ),
        }
    }
}

fn modified_at(p: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

pub(crate) fn run(args: &RunArgs) -> anyhow::Result<()> {
    // Before the load: a change made while loading is then seen as one (and applied).
    let config_modified = args.config.as_deref().and_then(modified_at);
    let mut config = load_config(args.config.as_deref(), args.brokers.as_deref())?;
    if let Some(g) = &args.group_id {
        config.kafka.group_id = g.clone();
    }
    if let Some(a) = &args.http_addr {
        config.http.addr = Some(a.clone());
    }
    let http_addr = match &config.http.addr {
        Some(a) => Some(parse_http_addr(a).map_err(|e| anyhow::anyhow!("http address {e}"))?),
        None => None,
    };
    {
        let k = &config.kafka;
        let t = &k.topics;
        tracing::info!(
            brokers = %spikewatch::secrets::redact(&k.brokers),
            group = %k.group_id,
            input = %format_args!("{}, {}", t.mentions, t.complaints),
            outages = %t.anomalies,
            series_events = %if t.series_anomalies.is_empty() { "(off)" } else { &t.series_anomalies },
            dead_letters = %t.dead_letters,
            changelog = %if k.changelog { t.changelog.as_str() } else { "(off)" },
            http = %config.http.addr.as_deref().unwrap_or("(off)"),
            "starting spikewatch run"
        );
        // Every setting (secrets redacted), for debugging a deployment.
        tracing::debug!(settings = ?config.kafka, "kafka settings");
    }
    let seed = match &args.initial_state {
        None => None,
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            let (seed, report) = spikewatch::engine::BaselineSeed::from_state_file(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            for (key, e) in &report.skipped {
                tracing::warn!(
                    key = key.as_deref().unwrap_or("?"),
                    "initial state: skipped: {e}"
                );
            }
            tracing::info!(
                file = %path.display(),
                baselines = seed.len(),
                skipped = report.skipped.len(),
                "initial state: new series start from these baselines"
            );
            Some(std::sync::Arc::new(seed))
        }
    };
    let config_path = args.config.clone();
    let reload_args = (args.brokers.clone(), args.group_id.clone());
    let rt = runtime()?;
    let result = rt.block_on(async move {
        let (tx, rx) = broadcast::channel(1);
        let counters = std::sync::Arc::new(spikewatch::kafka::Counters::default());
        let t = &config.kafka.topics;
        let _ = counters
            .input_topics
            .set([t.mentions.clone(), t.complaints.clone()]);
        let mut observers = spikewatch::kafka::Observers {
            seed,
            ..Default::default()
        };
        if let Some(addr) = http_addr {
            let mut app = spikewatch::http::AppState::new(config.kafka.group_id.clone());
            let exposition =
                spikewatch::metrics::Exposition::run(counters.clone(), app.readiness.clone());
            app.metrics = std::sync::Arc::new(move || exposition.render());
            observers.board = Some(app.board.clone());
            observers.readiness = Some(app.readiness.clone());
            let limits = spikewatch::http::ServerLimits::from(&config.http);
            let mut stop = tx.subscribe();
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop.recv().await;
                };
                if let Err(e) = spikewatch::http::serve_with(listener, app, limits, shutdown).await
                {
                    tracing::error!("HTTP server failed: {e}");
                }
            });
        }
        if let Some(path) = config_path.clone() {
            let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
            observers.reload = Some(reload_rx);
            tokio::spawn(watch_config(
                path,
                config_modified,
                reload_args,
                config.notify.clone(),
                reload_tx,
                tx.subscribe(),
            ));
        }
        let notifier = if config.notify.webhook.is_empty() {
            None
        } else {
            let n = spikewatch::notify::Notifier::start(&config.notify)?;
            let _ = counters.notify.set(n.stats());
            observers.notify = Some(n.handle());
            Some(n)
        };
        tokio::spawn(forward_signals(tx));
        let result =
            spikewatch::kafka::run_pipeline_observed(config, rx, counters, observers).await;
        if let Some(n) = notifier {
            // What is queued still goes out, but a dead receiver does not hold up the exit.
            n.shutdown(NOTIFY_SHUTDOWN_GRACE).await;
        }
        result
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    let report = result?;
    if let Some(path) = &args.report {
        write_report(path, &report.counters)?;
    }
    Ok(())
}

/// The final counters as JSON, to `path` (`-`: standard output).
fn write_report(
    path: &std::path::Path,
    counters: &spikewatch::kafka::CountersSnapshot,
) -> anyhow::Result<()> {
    let mut json = serde_json::to_vec_pretty(counters)?;
    json.push(b'\n');
    if path.as_os_str() == "-" {
        use std::io::Write as _;
        std::io::stdout().write_all(&json)?;
    } else {
        std::fs::write(path, json)
            .map_err(|e| anyhow::anyhow!("cannot write the report to {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the watcher took the file's modification time when its task first ran,
    /// so an edit made after the load but before that moment was never applied (the hot
    /// reload test hung on a loaded machine).
    #[tokio::test]
    async fn a_config_edit_made_before_the_watcher_runs_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[kafka]\nbrokers = \"127.0.0.1:1\"\n").unwrap();
        let loaded = modified_at(&path);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "[kafka]\nbrokers = \"127.0.0.1:2\"\n").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let (stop_tx, stop) = broadcast::channel(1);
        let task = tokio::spawn(watch_config(
            path,
            loaded,
            (None, None),
            spikewatch::notify::NotifySettings::default(),
            tx,
            stop,
        ));
        let got = tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv())
            .await
            .expect("the edit is applied")
            .expect("a config");
        assert_eq!(got.kafka.brokers, "127.0.0.1:2");
        let _ = stop_tx.send(());
        task.await.unwrap();
    }
}
