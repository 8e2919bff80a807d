//! `spikewatch replay`: backtest on a file of history. The work is done by
//! [`spikewatch::replay`]; this file opens files, draws the progress bar and prints the summary.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use super::{ReplayArgs, ReplayFormat};
use spikewatch::config::Config;
use spikewatch::engine::{Engine, RestoreReport};
use spikewatch::event::Timestamp;
use spikewatch::replay::{
    self, InputFormat, LineError, OutputNames, Progress, ReplayError, ReplayOptions, ReplayOutcome,
    ReplayOutput, SeriesName,
};
use spikewatch::state_file::{read_state_file, write_state_file};

/// `--bucket`: a duration such as `90s`, `5m`, `1h`; at least one second.
pub(crate) fn parse_bucket(s: &str) -> Result<spikewatch::config::Secs, String> {
    let d = spikewatch::config::parse_duration(s)?;
    if d.0 == 0 {
        return Err("must be at least 1s".into());
    }
    Ok(d)
}

/// `-` as an output path: standard output (the summary and progress go to standard error).
fn is_stdout(p: &Path) -> bool {
    p.as_os_str() == "-"
}

/// Files smaller than this finish before a progress bar would help.
const PROGRESS_MIN_BYTES: u64 = 4 << 20;

/// One pass over the input; `output`'s progress is this command's own (a bar on a terminal,
/// bad lines as they are found, when `show_progress`).
pub(super) fn run_once(
    format: InputFormat,
    path: &Path,
    engine: Option<&mut Engine>,
    config: &Config,
    opts: &ReplayOptions,
    output: ReplayOutput<'_>,
    show_progress: bool,
) -> Result<ReplayOutcome, ReplayError> {
    let file = path.display().to_string();
    let f = File::open(path).map_err(|source| ReplayError::Read {
        file: file.clone(),
        source,
    })?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = (show_progress && len >= PROGRESS_MIN_BYTES && std::io::stderr().is_terminal())
        .then(|| {
            let pb = ProgressBar::new(len);
            pb.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            pb
        });
    let mut progress = Reporter {
        bar,
        print_issues: show_progress,
    };
    let input = BufReader::with_capacity(1 << 20, f);
    let ReplayOutput {
        scores,
        incidents,
        names,
        ..
    } = output;
    // Rebuilt rather than updated: the output's lifetime must shrink to `progress`'s.
    let output = ReplayOutput {
        scores: &mut *scores,
        incidents: incidents.map(|w| w as &mut dyn Write),
        names,
        progress: Some(&mut progress),
    };
    let r = match format {
        InputFormat::Csv => replay::replay_csv(&file, input, config, opts, output),
        InputFormat::Jsonl => match engine {
            Some(engine) => replay::replay_jsonl_with(engine, &file, input, opts, output),
            None => replay::replay_jsonl(&file, input, config, opts, output),
        },
    };
    if let Some(pb) = progress.bar {
        pb.finish_and_clear();
    }
    r
}

/// Progress bar (on a terminal) and malformed-line reports as they are found.
struct Reporter {
    bar: Option<ProgressBar>,
    print_issues: bool,
}

impl Progress for Reporter {
    fn bytes(&mut self, read: u64) {
        if let Some(pb) = &self.bar {
            pb.set_position(read);
        }
    }

    fn issue(&mut self, line: &LineError) {
        match (&self.bar, self.print_issues) {
            (Some(pb), _) => pb.println(line.to_string()),
            (None, true) => eprintln!("{line}"),
            (None, false) => {}
        }
    }
}

pub(crate) fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    let config =
        Config::load_with_settings(args.config.as_deref(), std::env::vars(), &args.settings)?;
    let format = match args.format {
        Some(ReplayFormat::Csv) => InputFormat::Csv,
        Some(ReplayFormat::Jsonl) => InputFormat::Jsonl,
        None => InputFormat::from_path(&args.input).ok_or_else(|| ReplayError::UnknownFormat {
            file: args.input.display().to_string(),
        })?,
    };
    let wanted = args.series.as_deref().map(SeriesName::parse).transpose()?;
    let known_outages = match &args.known_outages {
        None => Vec::new(),
        Some(_) if format == InputFormat::Csv => anyhow::bail!(
            "--known-outages needs JSONL event input: a CSV series is scored against its own \
             `label` column"
        ),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            replay::labels::parse_known_outages(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
    };
    let opts = ReplayOptions {
        bucket: args.bucket,
        capture: if args.plot.is_some() {
            wanted.clone()
        } else {
            None
        },
        rank_series: args.plot.is_some() && wanted.is_none(),
        wall_clock_ms: Some(wall_clock_ms()),
        incident_events: args.incident_events,
        values: args.values,
        known_outages,
        page_on: args.page_on.map(Into::into),
    };
    let warm = args.initial_state.is_some() || args.save_state.is_some();
    if warm && format == InputFormat::Csv {
        anyhow::bail!(
            "--initial-state and --save-state need JSONL event input: a CSV count series is \
             scored by one engine per series, each with its own bucket width"
        );
    }
    if let Some(sweep) = &args.sweep {
        if args.initial_state.is_some() {
            anyhow::bail!("--sweep starts every pass from nothing: it takes no --initial-state");
        }
        return super::sweep::run(args, sweep, format, &opts);
    }
    let output = args
        .output
        .as_deref()
        .expect("clap requires --output without --sweep");
    if is_stdout(output) && args.incidents.as_deref().is_some_and(is_stdout) {
        anyhow::bail!("--output - and --incidents -: only one of them can go to standard output");
    }
    let name = |p: &Path| {
        if is_stdout(p) {
            "standard output".to_string()
        } else {
            p.display().to_string()
        }
    };
    let names = OutputNames {
        output: name(output),
        incidents: args.incidents.as_deref().map(name).unwrap_or_default(),
    };
    let create = |p: &Path| -> anyhow::Result<BufWriter<Box<dyn Write>>> {
        let w: Box<dyn Write> = if is_stdout(p) {
            Box::new(std::io::stdout().lock())
        } else {
            Box::new(File::create(p).with_context(|| format!("cannot create {}", p.display()))?)
        };
        Ok(BufWriter::with_capacity(1 << 20, w))
    };
    let mut out = create(output)?;
    let mut incidents = args.incidents.as_deref().map(create).transpose()?;
    // With a state file to read or write, the engine is made here so that it outlives the run.
    let new_engine = |report: bool| -> anyhow::Result<Engine> {
        let mut engine = replay::jsonl_engine(&config, &opts);
        if let Some(path) = &args.initial_state {
            let started = Instant::now();
            let r = read_state_file(path, &mut engine)?;
            if report {
                print_restore(path, &engine, &r, started.elapsed());
            }
        }
        Ok(engine)
    };
    let mut engine = warm.then(|| new_engine(true)).transpose()?;
    let outcome = run_once(
        format,
        &args.input,
        engine.as_mut(),
        &config,
        &opts,
        ReplayOutput {
            scores: &mut out,
            incidents: incidents.as_mut().map(|w| w as &mut dyn Write),
            names: names.clone(),
            progress: None,
        },
        true,
    )?;
    // Flushed here, not on drop, so that a write error (a full disk, a closed pipe) is
    // reported instead of lost.
    out.flush()
        .with_context(|| format!("cannot write {}", names.output))?;
    if let Some(w) = incidents.as_mut() {
        w.flush()
            .with_context(|| format!("cannot write {}", names.incidents))?;
    }
    drop(out);
    drop(incidents);

    // Malformed lines were reported as they were found; now the summary.
    eprintln!("{}", outcome.summary);

    if let (Some(path), Some(engine)) = (&args.save_state, &engine) {
        let started = Instant::now();
        let bytes = write_state_file(path, engine)?;
        let series = engine.series_count();
        eprintln!(
            "saved engine state to {}: {series} series, {bytes} bytes ({} bytes/series), {} open incident(s), event time up to {}, in {:.1} ms",
            path.display(),
            bytes / series.max(1) as u64,
            engine.open_incidents(),
            engine
                .clock()
                .newest_ts
                .map_or("-".to_string(), |t| Timestamp(t).to_string()),
            started.elapsed().as_secs_f64() * 1e3
        );
    }

    if let Some(plot) = &args.plot {
        let panel = match (&wanted, outcome.captured, outcome.top_series) {
            (Some(_), Some(p), _) => Some(p),
            (Some(w), None, _) => anyhow::bail!("--series {w}: no such series in the input"),
            (None, _, Some(top)) => {
                // Second pass that keeps only the chosen series: cheaper than holding the
                // history of every series through the first.
                let opts = ReplayOptions {
                    bucket: args.bucket,
                    capture: Some(top),
                    rank_series: false,
                    wall_clock_ms: opts.wall_clock_ms,
                    incident_events: opts.incident_events,
                    values: opts.values,
                    known_outages: Vec::new(),
                    page_on: None,
                };
                let mut engine = engine.is_some().then(|| new_engine(false)).transpose()?;
                run_once(
                    format,
                    &args.input,
                    engine.as_mut(),
                    &config,
                    &opts,
                    ReplayOutput::new(&mut std::io::sink()),
                    false,
                )?
                .captured
            }
            (None, _, None) => None,
        };
        match panel {
            Some(p) if !p.points.is_empty() => {
                let title = p.title.clone();
                spikewatch::plot::write_svg(plot, &[p], 1200, 420)?;
                eprintln!("plot: {} ({title})", plot.display());
            }
            _ => match &wanted {
                Some(w) => anyhow::bail!("--series {w}: no bucket of this series in the input"),
                None => eprintln!("plot: nothing to plot (no scored buckets)"),
            },
        }
    }
    Ok(())
}

/// Now, for the engine's bound on event time (the engine itself has no clock).
fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What `--initial-state` restored, and every record it had to skip and why.
fn print_restore(path: &Path, engine: &Engine, r: &RestoreReport, took: Duration) {
    let clock = engine.clock();
    eprintln!(
        "initial state: restored {} series from {} in {:.1} ms ({} open incident(s), event time up to {}){}",
        r.restored,
        path.display(),
        took.as_secs_f64() * 1e3,
        engine.open_incidents(),
        clock
            .newest_ts
            .map_or("-".to_string(), |t| Timestamp(t).to_string()),
        if r.skipped.is_empty() {
            String::new()
        } else {
            format!("; {} record(s) skipped:", r.skipped.len())
        }
    );
    for (key, reason) in &r.skipped {
        eprintln!(
            "  skipped {}: {reason} (that series starts afresh)",
            key.as_deref().unwrap_or("a record of unknown series")
        );
    }
    if let Some(newest) = clock.newest_ts {
        let skew = engine.config().engine.max_future_skew;
        eprintln!(
            "  note: events more than {skew} after {} are rejected as too far ahead (engine.max_future_skew)",
            Timestamp(newest)
        );
    }
}
