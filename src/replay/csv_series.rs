//! Replay of a CSV count series: one engine per series, rows scored in time order, one output
//! row per input row in input order.

use super::*;

mod read;

#[derive(Debug)]
struct CsvRow {
    line: u64,
    ts_raw: String,
    ts_ms: Option<i64>,
    value: Option<f64>,
    /// The `label` column, when the file has one: inside a known event.
    label: bool,
    series: usize,
    /// Parsed cleanly (a malformed row gets empty numeric fields).
    ok: bool,
}

#[derive(Debug, Clone, Copy)]
struct Rep {
    observed: Option<f64>,
    expected: f64,
    scale: f64,
    zscore: f64,
    anomaly_score: f64,
    alert: bool,
    end_ms: i64,
}

#[derive(Default)]
struct SeriesSink {
    reps: HashMap<i64, Rep>,
    /// Start of every bucket that has a row; `None`: keep every bucket (a plotted series).
    /// Memory follows the rows, not the time span: rows years apart close every bucket in
    /// between, and keeping those reports cost gigabytes.
    wanted: Option<ahash::AHashSet<i64>>,
    anomalies: Vec<AnomalyEvent>,
    outages: Vec<OutageEvent>,
}

impl EngineSink for SeriesSink {
    fn bucket(&mut self, r: &BucketReport<'_>) {
        if self
            .wanted
            .as_ref()
            .is_some_and(|w| !w.contains(&r.start_ms))
        {
            return;
        }
        self.reps.insert(
            r.start_ms,
            Rep {
                observed: r.observed,
                expected: r.expected,
                scale: r.scale,
                zscore: r.zscore,
                anomaly_score: r.anomaly_score,
                alert: r.alert,
                end_ms: r.end_ms,
            },
        );
    }
    fn anomaly(&mut self, event: AnomalyEvent) {
        self.anomalies.push(event);
    }
    fn outage(&mut self, event: OutageEvent) {
        self.outages.push(event);
    }
}

/// What scoring one series produced.
struct Scored {
    reps: HashMap<i64, Rep>,
    width_ms: i64,
    anomalies: Vec<AnomalyEvent>,
    outages: Vec<OutageEvent>,
    open_z: f64,
}

/// What every pass reads.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    file: &'a str,
    config: &'a Config,
    opts: &'a ReplayOptions,
}

/// Pass 2 for one series: infers its bucket width and runs an engine over its rows (`idx`,
/// sorted here) in time order.
fn score_series(
    ctx: Ctx<'_>,
    name: &SeriesName,
    idx: &mut [usize],
    rows: &[CsvRow],
    summary: &mut Summary,
    progress: &mut dyn Progress,
) -> Result<Scored, ReplayError> {
    let (width, inferred) = match ctx.opts.bucket {
        Some(b) => (b, false),
        None => {
            // Only times the engine accepts: one row dated 1970 next to a valid one would
            // otherwise make the width 54 years.
            let ts: Vec<i64> = idx
                .iter()
                .filter_map(|&i| rows[i].ts_ms)
                .filter(|&t| crate::event::is_accepted_time(t))
                .collect();
            match infer_bucket_width(&ts) {
                Some(w) => (w, true),
                None => (
                    ctx.config
                        .resolve(&name.service, &name.geo, &name.signal)
                        .bucket,
                    false,
                ),
            }
        }
    };
    if width.0 > 7 * 86_400 {
        return Err(ReplayError::BucketWidth {
            file: ctx.file.to_string(),
            series: name.to_string(),
            reason: format!("bucket width {width} is more than 7d"),
        });
    }
    let (gauge, gauge_inferred) = match ctx.opts.values {
        ValueKind::Count => (false, false),
        ValueKind::Gauge => (true, false),
        ValueKind::Auto => (
            idx.iter()
                .filter_map(|&i| rows[i].value)
                .any(|v| v < 0.0 || v.fract() != 0.0),
            true,
        ),
    };
    summary.series_setup.push(SeriesSetup {
        name: name.clone(),
        bucket: width,
        bucket_inferred: inferred,
        gauge,
        gauge_inferred,
    });
    // Rows are fed in time order, so no lateness is needed; the series may have gaps of
    // any length, so the future-skew guard must not reject them.
    let mut cfg = config_with_bucket(ctx.config, width, Some(Secs(0)));
    if gauge {
        // Under the configuration's own signal layer, so what it sets for this signal (or
        // geo, or service) still wins.
        let layer = cfg.signals.remove(&name.signal).unwrap_or_default();
        cfg.signals
            .insert(name.signal.clone(), layer.over(&Overrides::gauge()));
    }
    cfg.engine.max_future_skew = Secs(200 * 365 * 86_400);
    let open_z = cfg.resolve(&name.service, &name.geo, &name.signal).open_z;
    let mut engine = Engine::new(cfg);
    let width_ms = width.millis();
    let plotted = ctx.opts.capture.as_ref() == Some(name);
    let mut sink = SeriesSink {
        wanted: (!plotted).then(|| {
            idx.iter()
                .filter_map(|&i| rows[i].ts_ms)
                .map(|ts| ts.div_euclid(width_ms) * width_ms)
                .collect()
        }),
        ..SeriesSink::default()
    };
    idx.sort_by_key(|&i| rows[i].ts_ms);
    note_repeated_times(name, idx, rows, summary);
    // Rows that fall into one bucket (e.g. 1-minute data with `--bucket 5m`) are summed.
    let mut bucket_sum: Option<(i64, f64)> = None;
    let mut prev_ts: Option<i64> = None;
    for &i in idx.iter() {
        let r = &rows[i];
        let Some(ts) = r.ts_ms else { continue };
        // Close the previous row's bucket (lateness is 0 here), then skip the missing
        // buckets up to this row's in one step rather than one by one.
        if let Some(prev) = prev_ts {
            let end = (prev.div_euclid(width_ms) + 1) * width_ms;
            if end <= ts {
                engine.advance(end, &mut sink);
            }
        }
        engine.skip_missing_buckets(ts);
        if let Some(v) = r.value {
            let b = ts.div_euclid(width_ms);
            let sum = match bucket_sum {
                Some((cur, s)) if cur == b => (s + v).min(crate::engine::MAX_BUCKET_VALUE),
                _ => v,
            };
            match engine.set_bucket_value(&name.service, &name.geo, &name.signal, ts, sum) {
                Ok(ingest) => {
                    bucket_sum = Some((b, sum));
                    match ingest {
                        Ingest::Counted => summary.accepted += 1,
                        Ingest::Late => summary.late += 1,
                    }
                }
                Err(e) => {
                    summary.issue(
                        LineError {
                            file: ctx.file.to_string(),
                            line: r.line,
                            kind: e.kind(),
                            reason: e.to_string(),
                        },
                        false,
                        progress,
                    );
                    // A rejected row is not used at all: its time must not move the
                    // watermark either (that closed, or expired, the previous row's
                    // bucket before its score was taken).
                    continue;
                }
            }
        }
        prev_ts = Some(ts);
        engine.advance(ts, &mut sink);
    }
    engine.finish(&mut sink);
    let st = engine.stats();
    summary.series += st.series_created;
    summary.buckets += st.buckets_closed;
    summary.incidents_opened += st.incidents_opened;
    summary.incidents_resolved += st.incidents_resolved;
    summary.anomaly_events += st.anomaly_events;
    Ok(Scored {
        reps: sink.reps,
        width_ms: width.millis(),
        anomalies: sink.anomalies,
        outages: sink.outages,
        open_z,
    })
}

/// Counts rows that repeat an earlier row's time in their series (`idx` in time order, stably
/// sorted, so the earlier row comes first). Their values are summed into one bucket like any
/// rows of one bucket, but at one time the likelier cause is an export concatenated twice,
/// which doubles the counts into a spike: the summary says so.
fn note_repeated_times(name: &SeriesName, idx: &[usize], rows: &[CsvRow], summary: &mut Summary) {
    let valued = idx.iter().map(|&i| &rows[i]).filter(|r| r.value.is_some());
    let mut prev: Option<&CsvRow> = None;
    for r in valued {
        if let (Some(p), Some(ts)) = (prev, r.ts_ms) {
            if p.ts_ms == Some(ts) {
                summary.repeated_times += 1;
                summary.repeated_example.get_or_insert_with(|| {
                    format!(
                        "line {} repeats line {}, {name} at {}",
                        r.line,
                        p.line,
                        crate::event::Timestamp(ts)
                    )
                });
                continue;
            }
        }
        prev = Some(r);
    }
}

/// Replays a CSV count series (see the module docs). Writes exactly one output row per input
/// row, in input order.
pub fn replay_csv(
    file: &str,
    input: impl Read,
    config: &Config,
    opts: &ReplayOptions,
    output: ReplayOutput<'_>,
) -> Result<ReplayOutcome, ReplayError> {
    let mut silent = NoProgress;
    let (out, incidents, names, progress) = output.into_parts(&mut silent);
    let names = &names;
    let started = Instant::now();
    let mut summary = Summary {
        input: file.to_string(),
        format: Some(InputFormat::Csv),
        page_on: opts.page_on,
        ..Summary::default()
    };
    let ctx = Ctx { file, config, opts };
    let (series, rows, labelled) = read::read_rows(ctx, input, &mut summary, progress)?;

    // Pass 2: per series, infer the width and run an engine over its rows in time order.
    let mut by_series: Vec<Vec<usize>> = vec![Vec::new(); series.len()];
    for (i, r) in rows.iter().enumerate() {
        if r.ok {
            by_series[r.series].push(i);
        }
    }
    let mut reps: Vec<HashMap<i64, Rep>> = Vec::with_capacity(series.len());
    let mut widths_ms: Vec<i64> = Vec::with_capacity(series.len());
    let mut all_anomalies: Vec<AnomalyEvent> = Vec::new();
    let mut all_outages: Vec<OutageEvent> = Vec::new();
    let mut open_zs = Vec::with_capacity(series.len());
    for (si, idx) in by_series.iter_mut().enumerate() {
        let s = score_series(ctx, &series[si], idx, &rows, &mut summary, progress)?;
        if labelled {
            // `idx` is in time order now.
            let points: Vec<(i64, bool)> = idx
                .iter()
                .filter_map(|&i| rows[i].ts_ms.map(|t| (t, rows[i].label)))
                // A row the engine rejects for its time is not part of the labelled span.
                .filter(|&(t, _)| crate::event::is_accepted_time(t))
                .collect();
            if let (Some(&(first, _)), Some(&(last, _))) = (points.first(), points.last()) {
                let name = &series[si];
                // Only this series' own incidents, not those of geos it rolls up into.
                let own: Vec<AnomalyEvent> = s
                    .anomalies
                    .iter()
                    .filter(|e| {
                        e.service == name.service && e.geo == name.geo && e.signal == name.signal
                    })
                    .cloned()
                    .collect();
                let windows = labels::label_windows(&points, s.width_ms);
                let score = labels::score(&windows, first, last + s.width_ms, &own, opts.page_on);
                summary.labels.push((series[si].clone(), score));
            }
        }
        all_anomalies.extend(s.anomalies);
        all_outages.extend(s.outages);
        reps.push(s.reps);
        widths_ms.push(s.width_ms);
        open_zs.push(s.open_z);
    }
    // Output: one row per input row, in input order.
    let write_err = |inc: bool, source: io::Error| ReplayError::Write {
        file: if inc {
            names.incidents.clone()
        } else {
            names.output.clone()
        },
        source,
    };
    writeln!(out, "{SERIES_HEADER}").map_err(|e| write_err(false, e))?;
    let mut line = String::with_capacity(128);
    for r in &rows {
        use std::fmt::Write as _;
        line.clear();
        line.push_str(&csv_field(&r.ts_raw));
        let rep = match (r.ok, r.ts_ms) {
            (true, Some(ts)) => {
                let w = widths_ms[r.series];
                reps[r.series].get(&(ts.div_euclid(w) * w))
            }
            _ => None,
        };
        match rep {
            Some(p) => {
                let v = r.value.map(fmt6).unwrap_or_default();
                let (z, s) = match (r.value, p.observed) {
                    (Some(_), Some(_)) => (fmt6(p.zscore), fmt6(p.anomaly_score)),
                    _ => (String::new(), String::new()),
                };
                let _ = write!(line, ",{v},{},{z},{s},{}", fmt6(p.expected), p.alert as u8);
            }
            None => {
                let v = r.value.map(fmt6).unwrap_or_default();
                let _ = write!(line, ",{v},,,,0");
            }
        }
        line.push('\n');
        out.write_all(line.as_bytes())
            .map_err(|e| write_err(false, e))?;
        summary.rows_written += 1;
    }
    out.flush().map_err(|e| write_err(false, e))?;
    if let Some(w) = incidents {
        let mut lines: Vec<(Timestamp, Vec<u8>)> = match opts.incident_events {
            IncidentEvents::Series => all_anomalies
                .iter()
                .map(|a| (a.bucket_start, serde_json::to_vec(a)))
                .map(|(t, r)| r.map(|v| (t, v)))
                .collect::<Result<_, _>>(),
            IncidentEvents::Outages => all_outages
                .iter()
                .map(|a| (a.as_of, serde_json::to_vec(a)))
                .map(|(t, r)| r.map(|v| (t, v)))
                .collect::<Result<_, _>>(),
        }
        .map_err(|e| write_err(true, io::Error::from(e)))?;
        lines.sort_by_key(|(t, _)| *t);
        for (_, line) in &lines {
            w.write_all(line)
                .and_then(|()| w.write_all(b"\n"))
                .map_err(|e| write_err(true, e))?;
        }
        w.flush().map_err(|e| write_err(true, e))?;
    }

    // Plot data.
    let mut top_series = None;
    if opts.rank_series {
        top_series = (0..series.len())
            .max_by(|&a, &b| {
                let rank = |i: usize| {
                    let alerts = reps[i].values().filter(|p| p.alert).count();
                    let total: f64 = reps[i].values().filter_map(|p| p.observed).sum();
                    (alerts, total)
                };
                let (aa, at) = rank(a);
                let (ba, bt) = rank(b);
                aa.cmp(&ba).then(at.total_cmp(&bt)).then(b.cmp(&a))
            })
            .map(|i| series[i].clone());
    }
    let captured = opts.capture.as_ref().and_then(|want| {
        let i = series.iter().position(|s| s == want)?;
        let mut pts: Vec<(i64, Rep)> = reps[i].iter().map(|(k, v)| (*k, *v)).collect();
        pts.sort_by_key(|p| p.0);
        let points = pts
            .into_iter()
            .map(|(start, p)| PlotPoint {
                start_ms: start,
                end_ms: p.end_ms,
                observed: p.observed,
                expected: p.expected,
                band: open_zs[i] * p.scale,
                alert: p.alert,
            })
            .collect();
        Some(Panel::new(want.to_string(), points))
    });
    summary.elapsed = started.elapsed();
    Ok(ReplayOutcome {
        summary,
        captured,
        top_series,
    })
}
