//! Replay of a JSONL file of events: every line decoded and fed to one engine, in file order.

use super::*;

struct EventsSink<'a, 'b> {
    out: &'a mut dyn Write,
    incidents: Option<&'b mut dyn Write>,
    incident_events: IncidentEvents,
    error: Option<(bool, io::Error)>,
    rows: u64,
    capture: Option<Capture>,
    ranker: Option<Ranker>,
    line: String,
    /// Kept when there are known outages to score against.
    scoring: Option<OutageLog>,
}

/// The outage events of a run and the span of the buckets it closed.
#[derive(Default)]
struct OutageLog {
    events: Vec<OutageEvent>,
    span: Option<(i64, i64)>,
}

impl EngineSink for EventsSink<'_, '_> {
    fn bucket(&mut self, r: &BucketReport<'_>) {
        if let Some(log) = &mut self.scoring {
            let (lo, hi) = log.span.get_or_insert((r.start_ms, r.end_ms));
            *lo = (*lo).min(r.start_ms);
            *hi = (*hi).max(r.end_ms);
        }
        if let Some(c) = &mut self.capture {
            c.add(r);
        }
        if let Some(k) = &mut self.ranker {
            k.add(r);
        }
        if self.error.is_some() {
            return;
        }
        use std::fmt::Write as _;
        let line = &mut self.line;
        line.clear();
        let _ = write!(
            line,
            "{},{},{},{},",
            Timestamp(r.start_ms),
            r.service,
            r.geo,
            r.signal
        );
        match r.observed {
            Some(v) => {
                let _ = write!(
                    line,
                    "{v:.6},{:.6},{:.6},{:.6},{}",
                    r.expected, r.zscore, r.anomaly_score, r.alert as u8
                );
            }
            None => {
                let _ = write!(line, ",{:.6},,,{}", r.expected, r.alert as u8);
            }
        }
        line.push('\n');
        match self.out.write_all(line.as_bytes()) {
            Ok(()) => self.rows += 1,
            Err(e) => self.error = Some((false, e)),
        }
    }

    fn anomaly(&mut self, event: AnomalyEvent) {
        if self.incident_events == IncidentEvents::Series {
            self.write_incident(&event);
        }
    }

    fn outage(&mut self, event: OutageEvent) {
        if self.incident_events == IncidentEvents::Outages {
            self.write_incident(&event);
        }
        if let Some(log) = &mut self.scoring {
            log.events.push(event);
        }
    }
}

impl EventsSink<'_, '_> {
    fn write_incident(&mut self, event: &impl serde::Serialize) {
        if self.error.is_some() {
            return;
        }
        if let Some(w) = self.incidents.as_deref_mut() {
            let r = serde_json::to_writer(&mut *w, event)
                .map_err(io::Error::from)
                .and_then(|()| w.write_all(b"\n"));
            if let Err(e) = r {
                self.error = Some((true, e));
            }
        }
    }
}

/// Where a replay writes, and who hears of its progress.
pub struct ReplayOutput<'a> {
    /// Per-bucket scores, CSV with a header.
    pub scores: &'a mut dyn Write,
    /// Incident events, one JSON object per line ([`ReplayOptions::incident_events`]).
    pub incidents: Option<&'a mut dyn Write>,
    /// What to call the two in error messages.
    pub names: OutputNames,
    /// Told of the bytes read and of the first bad lines; `None`: nobody.
    pub progress: Option<&'a mut dyn Progress>,
}

impl<'a> ReplayOutput<'a> {
    /// Scores to `scores`; no incidents, default names, no progress.
    pub fn new(scores: &'a mut dyn Write) -> Self {
        Self {
            scores,
            incidents: None,
            names: OutputNames::default(),
            progress: None,
        }
    }

    /// Incident events to `incidents` too.
    pub fn with_incidents(mut self, incidents: &'a mut dyn Write) -> Self {
        self.incidents = Some(incidents);
        self
    }

    /// What a replay writes to and reports to, with `silent` standing in for no progress.
    pub(crate) fn into_parts<'s>(
        self,
        silent: &'s mut NoProgress,
    ) -> (
        &'a mut dyn Write,
        Option<&'a mut dyn Write>,
        OutputNames,
        &'s mut dyn Progress,
    )
    where
        'a: 's,
    {
        let progress: &'s mut dyn Progress = match self.progress {
            Some(p) => p,
            None => silent,
        };
        (self.scores, self.incidents, self.names, progress)
    }
}

/// Names used in error messages for the output files.
#[derive(Debug, Clone)]
pub struct OutputNames {
    pub output: String,
    pub incidents: String,
}

impl Default for OutputNames {
    fn default() -> Self {
        Self {
            output: "output".into(),
            incidents: "incidents".into(),
        }
    }
}

/// The engine [`replay_jsonl`] runs: `config`, with [`ReplayOptions::bucket`] applied to every
/// series. Restore a state file into it before [`replay_jsonl_with`] to continue from there.
pub fn jsonl_engine(config: &Config, opts: &ReplayOptions) -> Engine {
    Engine::new(match opts.bucket {
        Some(b) => config_with_bucket(config, b, None),
        None => config.clone(),
    })
}

/// Replays a JSONL file of events.
pub fn replay_jsonl(
    file: &str,
    input: impl BufRead,
    config: &Config,
    opts: &ReplayOptions,
    output: ReplayOutput<'_>,
) -> Result<ReplayOutcome, ReplayError> {
    let mut engine = jsonl_engine(config, opts);
    replay_jsonl_with(&mut engine, file, input, opts, output)
}

/// Like [`replay_jsonl`], on an engine the caller made (see [`jsonl_engine`]) and possibly
/// restored from a state file; [`ReplayOptions::bucket`] is not applied again. At the end of
/// input every bucket is closed ([`Engine::finish`]) and the engine is left as it is, e.g. for
/// [`Engine::save_state`]. The summary counts this run only.
pub fn replay_jsonl_with(
    engine: &mut Engine,
    file: &str,
    input: impl BufRead,
    opts: &ReplayOptions,
    output: ReplayOutput<'_>,
) -> Result<ReplayOutcome, ReplayError> {
    let mut silent = NoProgress;
    let (out, incidents, names, progress) = output.into_parts(&mut silent);
    let names = &names;
    let started = Instant::now();
    engine.set_wall_clock(opts.wall_clock_ms);
    let config = engine.config().clone();
    let stats_before = engine.stats().clone();
    let series_before = engine.series_count() as u64;
    let mut summary = Summary {
        input: file.to_string(),
        format: Some(InputFormat::Jsonl),
        page_on: opts.page_on,
        ..Summary::default()
    };
    let write_err = |names: &OutputNames, inc: bool, source: io::Error| ReplayError::Write {
        file: if inc {
            names.incidents.clone()
        } else {
            names.output.clone()
        },
        source,
    };
    out.write_all(EVENTS_HEADER.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| write_err(names, false, e))?;
    let mut sink = EventsSink {
        out,
        incidents,
        incident_events: opts.incident_events,
        error: None,
        rows: 0,
        capture: opts.capture.clone().map(|n| Capture::new(n, &config)),
        ranker: opts.rank_series.then(Ranker::default),
        line: String::with_capacity(128),
        scoring: (!opts.known_outages.is_empty()).then(OutageLog::default),
    };
    let mut input = input;
    let mut buf = Vec::with_capacity(512);
    let mut line_no = 0u64;
    let mut bytes = 0u64;
    let mut newest: Option<i64> = None;
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|source| ReplayError::Read {
                file: file.to_string(),
                source,
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        bytes += n as u64;
        if line_no % 65_536 == 0 {
            progress.bytes(bytes);
        }
        let mut line = buf.as_slice();
        while let [rest @ .., b'\n' | b'\r'] = line {
            line = rest;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            summary.blank_lines += 1;
            continue;
        }
        let ev = match decode_any_core(line) {
            Ok(ev) => ev,
            Err(e) => {
                summary.issue(
                    LineError {
                        file: file.to_string(),
                        line: line_no,
                        kind: e.kind(),
                        reason: e.to_string(),
                    },
                    true,
                    progress,
                );
                continue;
            }
        };
        match engine.observe(ev.observation()) {
            Ok(Ingest::Counted) => summary.accepted += 1,
            Ok(Ingest::Late) => summary.late += 1,
            Err(e) => {
                summary.issue(
                    LineError {
                        file: file.to_string(),
                        line: line_no,
                        kind: e.kind(),
                        reason: e.to_string(),
                    },
                    false,
                    progress,
                );
                continue;
            }
        }
        let ts = ev.ts.millis();
        if newest.is_none_or(|n| ts > n) {
            newest = Some(ts);
            engine.advance(ts, &mut sink);
            if let Some((inc, e)) = sink.error.take() {
                return Err(write_err(names, inc, e));
            }
        }
    }
    progress.bytes(bytes);
    engine.finish(&mut sink);
    if let Some((inc, e)) = sink.error.take() {
        return Err(write_err(names, inc, e));
    }
    sink.out.flush().map_err(|e| write_err(names, false, e))?;
    if let Some(w) = sink.incidents.as_deref_mut() {
        w.flush().map_err(|e| write_err(names, true, e))?;
    }
    let st = engine.stats();
    let b = &stats_before;
    summary.lines = line_no;
    summary.series = st.series_created - b.series_created;
    summary.series_restored = series_before;
    summary.buckets = st.buckets_closed - b.buckets_closed;
    summary.rows_written = sink.rows;
    summary.incidents_opened = st.incidents_opened - b.incidents_opened;
    summary.incidents_resolved = st.incidents_resolved - b.incidents_resolved;
    summary.anomaly_events = st.anomaly_events - b.anomaly_events;
    if let Some(OutageLog {
        events,
        span: Some((first, end)),
    }) = &sink.scoring
    {
        summary.known_outages =
            labels::score_outages(&opts.known_outages, events, *first, *end, opts.page_on);
    }
    summary.elapsed = started.elapsed();
    Ok(ReplayOutcome {
        summary,
        captured: sink.capture.map(Capture::into_panel),
        top_series: sink.ranker.and_then(|r| r.top()),
    })
}
