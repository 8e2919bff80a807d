//! `spikewatch demo`: generated weeks of traffic with real-world-shaped outages, detected and
//! printed as a timeline, plus a plot. The work is done by [`crate::demo`].

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};

use anyhow::Context;

use super::DemoArgs;
use crate::config::Config;
use crate::demo::{self, Style};
use crate::sim::Scenario;

/// File name of the demo's plot inside `--out-dir`.
pub const PLOT_FILE: &str = "spikewatch-demo.svg";

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let mut scenario = Scenario::demo();
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    scenario.days = args.weeks * 7;
    let all = scenario.outages.len();
    let scenario = demo::fit_outages(scenario);
    if scenario.outages.len() < all {
        eprintln!(
            "note: {} of the {all} injected outages fall after week {}; --weeks 6 shows them all",
            all - scenario.outages.len(),
            args.weeks
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
        "spikewatch demo: {} weeks of generated traffic (seed {}) for {} from {}, {} injected outage(s)…",
        args.weeks,
        scenario.seed,
        services.join(", "),
        demo::fmt_when(scenario.start_ms),
        scenario.outages.len()
    );
    let run = demo::run_scenario(
        &scenario,
        config,
        jsonl.as_mut().map(|w| w as &mut dyn Write),
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
        crate::plot::write_svg(&path, &panels, 1200, 300)?;
        eprintln!(
            "\nplot: {} ({} panel(s): observed vs expected, band, incident spans)",
            path.display(),
            panels.len()
        );
    }
    if let Some(p) = &args.write_jsonl {
        eprintln!(
            "wrote {} wire events to {}; try:\n  spikewatch replay --input {} --output scores.csv --incidents incidents.jsonl",
            run.wire_events_written,
            p.display(),
            p.display()
        );
    }
    Ok(())
}
