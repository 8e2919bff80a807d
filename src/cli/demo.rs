//! `spikewatch demo`: generated weeks of traffic with real-world-shaped outages, detected and
//! printed as a timeline, plus a plot. The work is done by [`spikewatch::demo`].

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;

use super::DemoArgs;
use spikewatch::config::Config;
use spikewatch::demo::{self, RunOptions, Style};
use spikewatch::engine::{EngineSink, EngineStats};
use spikewatch::event::Timestamp;
use spikewatch::http::{self, AppState};
use spikewatch::kafka::Counters;
use spikewatch::sim::{Scenario, HOUR_MS};
use spikewatch::status::StatusBoard;

/// File name of the demo's plot inside `--out-dir`.
pub(crate) const PLOT_FILE: &str = "spikewatch-demo.svg";

pub(crate) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let mut scenario = if args.realistic {
        Scenario::realistic_demo()
    } else {
        Scenario::demo()
    };
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    scenario.days = args.weeks * 7;
    let all = scenario.outages.len();
    let original: Vec<i64> = scenario.outages.iter().map(|o| o.start_ms()).collect();
    let mut scenario = demo::fit_outages(scenario);
    let moved = scenario
        .outages
        .iter()
        .filter(|o| !original.contains(&o.start_ms()))
        .count();
    if scenario.outages.len() - moved < all {
        eprintln!(
            "note: {} of the {all} injected outages fall after week {}{}; --weeks 6 shows them all",
            all - (scenario.outages.len() - moved),
            args.weeks,
            if moved > 0 {
                "; the first one is moved into this shorter demo"
            } else {
                ""
            }
        );
    }
    let until_ms = match (args.until, args.until_outage) {
        (Some(t), _) => Some(t),
        (None, Some(n)) => {
            let Some(o) = scenario.outages.get(n as usize - 1) else {
                anyhow::bail!(
                    "--until-outage {n}: this scenario has {} injected outage(s)",
                    scenario.outages.len()
                );
            };
            let into = (HOUR_MS).min((o.end_ms() - o.start_ms()) / 2);
            Some(o.start_ms() + into)
        }
        (None, None) => None,
    };
    if let Some(until) = until_ms {
        if until <= scenario.start_ms {
            anyhow::bail!(
                "--until {}: the generated stream starts at {}",
                Timestamp(until),
                Timestamp(scenario.start_ms)
            );
        }
        let before = scenario.outages.len();
        scenario.outages.retain(|o| o.start_ms() < until);
        eprintln!(
            "stopping the stream at {}{}",
            demo::fmt_when(until),
            match before - scenario.outages.len() {
                0 => String::new(),
                n => format!(" ({n} later injected outage(s) left out)"),
            }
        );
    }

    let mut jsonl = match &args.write_jsonl {
        Some(p) => Some(BufWriter::with_capacity(
            1 << 20,
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let services: Vec<&str> = scenario.services.iter().map(|s| s.name).collect();
    eprintln!(
        "spikewatch demo: {} weeks of generated{} traffic (seed {}) for {} from {}, {} injected outage(s)…",
        args.weeks,
        if args.realistic { " realistic" } else { "" },
        scenario.seed,
        services.join(", "),
        demo::fmt_when(scenario.start_ms),
        scenario.outages.len()
    );
    let mut board = StatusBoard::default();
    let run = demo::run_scenario_with(
        &scenario,
        config,
        jsonl.as_mut().map(|w| w as &mut dyn Write),
        RunOptions {
            until_ms,
            tee: args
                .serve
                .is_some()
                .then_some(&mut board as &mut dyn EngineSink),
        },
    )
    .context("writing the generated events")?;
    drop(jsonl);
    let st = &run.stats;
    eprintln!(
        "scored {} bucket counts over {} series ({} buckets) in {:.2} s: {} incidents, {} anomaly events\n",
        run.observations,
        st.series_created,
        st.buckets_closed,
        run.elapsed.as_secs_f64(),
        st.incidents_opened,
        st.anomaly_events
    );

    let style = Style {
        colour: std::io::stdout().is_terminal(),
    };
    let mut stdout = std::io::stdout().lock();
    write!(
        stdout,
        "{}",
        demo::render_timeline(&scenario, &run.evaluation, style)
    )?;
    stdout.flush()?;
    drop(stdout);

    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let panels: Vec<_> = run
        .panels
        .into_iter()
        .filter(|p| !p.points.is_empty())
        .collect();
    if panels.is_empty() {
        eprintln!("plot: no injected outage in this scenario, nothing to plot");
    } else {
        let path = args.out_dir.join(PLOT_FILE);
        spikewatch::plot::write_svg(&path, &panels, 1200, 300)?;
        eprintln!(
            "\nplot: {} ({} panel(s): observed vs expected, band, incident spans)",
            path.display(),
            panels.len()
        );
    }
    if let Some(p) = &args.write_known_outages {
        std::fs::write(p, demo::known_outages_csv(&scenario))
            .with_context(|| format!("cannot write {}", p.display()))?;
        eprintln!(
            "wrote the {} injected outage(s) to {}",
            scenario.outages.len(),
            p.display()
        );
    }
    if let Some(p) = &args.write_jsonl {
        let known = args
            .write_known_outages
            .as_ref()
            .map(|k| format!(" --known-outages {}", k.display()))
            .unwrap_or_default();
        eprintln!(
            "wrote {} wire events to {}; try:\n  spikewatch replay --input {} --output scores.csv --incidents incidents.jsonl{known}",
            run.wire_events_written,
            p.display(),
            p.display()
        );
    }
    if let Some(addr) = args.serve {
        let mut state = AppState::new("demo");
        *state.board.lock().unwrap_or_else(|e| e.into_inner()) = board;
        state.readiness.set_ready();
        let exposition = spikewatch::metrics::Exposition::demo(
            Arc::new(demo_counters(&run.stats, &run.gauges)),
            state.readiness.clone(),
        );
        state.metrics = Arc::new(move || exposition.render());
        serve(addr, state)?;
    }
    Ok(())
}

/// Serves the status page until Ctrl-C (or SIGTERM), then shuts down gracefully.
fn serve(addr: SocketAddr, state: AppState) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--http-addr {addr}: cannot listen"))?;
        let local = listener.local_addr()?;
        eprintln!(
            "\nstatus page: http://{local}/  (API: /api/incidents, /api/series?service=S&geo=G&signal=X, /healthz, /metrics); Ctrl-C stops"
        );
        http::serve_on(listener, state, shutdown_signal())
            .await
            .context("HTTP server")?;
        eprintln!("stopped");
        Ok(())
    })
}

/// Completes on Ctrl-C or (Unix) SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    eprintln!("shutting down…");
}

/// The engine counters of the finished demo run, as `run` counts them (one engine: partition
/// 0), for the same `/metrics` families.
fn demo_counters(st: &EngineStats, gauges: &spikewatch::demo::EngineGauges) -> Counters {
    let c = Counters::default();
    c.observe_engine(0, st);
    for (counter, v) in [
        (&c.decoded, st.events),
        (&c.late, st.late),
        (&c.rejected, st.rejected),
    ] {
        Counters::add(counter, v);
    }
    for (gauge, v) in [
        (&c.series, gauges.series),
        (&c.open_incidents, gauges.open_incidents),
        (&c.engine_state_bytes, gauges.state_bytes),
    ] {
        gauge.store(v, std::sync::atomic::Ordering::Relaxed);
    }
    c
}

/// `--until`: an RFC 3339 time, as epoch milliseconds.
pub(crate) fn parse_until(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("expected an RFC 3339 time such as 2024-01-17T15:10:00Z: {e}"))
}
