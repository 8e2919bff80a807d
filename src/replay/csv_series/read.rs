//! Pass 1 of a CSV replay: every row read and checked, a bad one reported and kept.

use super::*;

fn header_index(headers: &csv::ByteRecord, name: &str) -> Option<usize> {
    headers
        .iter()
        .position(|h| header_is(&String::from_utf8_lossy(h), name))
}

/// Pass 1: reads and checks every row (the header names the columns); a bad row is reported
/// and kept (its output row says nothing), so output rows match input rows one to one.
pub(super) fn read_rows(
    ctx: Ctx<'_>,
    input: impl Read,
    summary: &mut Summary,
    progress: &mut dyn Progress,
) -> Result<(Vec<SeriesName>, Vec<CsvRow>, bool), ReplayError> {
    let (file, opts) = (ctx.file, ctx.opts);
    let read_err = |source: io::Error| ReplayError::Read {
        file: file.to_string(),
        source,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let headers = rdr
        .byte_headers()
        .map_err(|e| ReplayError::Header {
            file: file.to_string(),
            line: 1,
            reason: format!("cannot read the header: {e}"),
        })?
        .clone();
    let col = |name: &str| header_index(&headers, name);
    let (Some(ts_col), Some(val_col)) = (col("timestamp"), col("value")) else {
        let found: Vec<String> = headers
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect();
        // A spreadsheet export in a comma-decimal locale separates with `;` (or a tab): the
        // whole header is then one column, and saying so saves a puzzled look at it.
        let hint = match found.as_slice() {
            [one] if one.contains(';') => {
                " (the file looks separated by `;`: spikewatch reads comma-separated values)"
            }
            [one] if one.contains('\t') => {
                " (the file looks tab-separated: spikewatch reads comma-separated values)"
            }
            _ => "",
        };
        return Err(ReplayError::Header {
            file: file.to_string(),
            line: 1,
            reason: format!(
                "the header must name `timestamp` and `value` columns (optional: service, geo, signal, label); found {found:?}{hint}"
            ),
        });
    };
    let (svc_col, geo_col, sig_col) = (col("service"), col("geo"), col("signal"));
    let label_col = col("label");

    let skew = ctx.config.engine.max_future_skew;
    // Pass 1: parse every row.
    let mut series: Vec<SeriesName> = Vec::new();
    let mut series_ix: HashMap<SeriesName, usize> = HashMap::new();
    let mut rows: Vec<CsvRow> = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let line = rdr.position().line() + 1;
        match rdr.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                if let csv::ErrorKind::Io(_) = e.kind() {
                    let csv::ErrorKind::Io(io) = e.into_kind() else {
                        unreachable!()
                    };
                    return Err(read_err(io));
                }
                summary.lines += 1;
                summary.issue(
                    LineError {
                        file: file.to_string(),
                        line,
                        kind: "csv",
                        reason: e.to_string(),
                    },
                    true,
                    progress,
                );
                rows.push(CsvRow {
                    line,
                    ts_raw: String::new(),
                    ts_ms: None,
                    value: None,
                    label: false,
                    series: 0,
                    ok: false,
                });
                continue;
            }
        }
        let line = record.position().map_or(line, |p| p.line());
        summary.lines += 1;
        if summary.lines % 65_536 == 0 {
            progress.bytes(record.position().map_or(0, |p| p.byte()));
        }
        let field = |i: Option<usize>| -> Result<Option<&str>, String> {
            match i.and_then(|i| record.get(i)) {
                None => Ok(None),
                Some(b) => std::str::from_utf8(b)
                    .map(|s| Some(s.trim()))
                    .map_err(|_| "field is not valid UTF-8".to_string()),
            }
        };
        let mut problem: Option<(&'static str, String)> = None;
        let ts_raw = match field(Some(ts_col)) {
            Ok(s) => s.unwrap_or("").to_string(),
            Err(e) => {
                problem = Some(("utf8", format!("timestamp: {e}")));
                String::from_utf8_lossy(record.get(ts_col).unwrap_or_default()).into_owned()
            }
        };
        let mut ts_ms = None;
        if problem.is_none() {
            match parse_timestamp(&ts_raw) {
                Ok(t) => match opts.wall_clock_ms {
                    // Checked here, per row: one row dated decades ahead would otherwise make
                    // its series span decades, bucket by bucket.
                    Some(now) if t > now.saturating_add(skew.millis()) => {
                        problem = Some((
                            "ahead_of_wall_clock",
                            format!(
                                "column `timestamp`: {} is more than {skew} ahead of the wall clock {} (engine.max_future_skew)",
                                Timestamp(t),
                                Timestamp(now)
                            ),
                        ))
                    }
                    _ => ts_ms = Some(t),
                },
                Err(e) => problem = Some(("timestamp", format!("column `timestamp`: {e}"))),
            }
        }
        let mut value = None;
        if problem.is_none() {
            if record.len() != headers.len() {
                problem = Some((
                    "csv",
                    format!(
                        "row has {} fields, the header has {}",
                        record.len(),
                        headers.len()
                    ),
                ));
            } else {
                match field(Some(val_col)).and_then(|v| parse_value(v.unwrap_or(""))) {
                    Ok(v) => value = v,
                    Err(e) => problem = Some(("value", format!("column `value`: {e}"))),
                }
            }
        }
        let mut label = false;
        if problem.is_none() && label_col.is_some() {
            match field(label_col).map(|v| parse_label(v.unwrap_or(""))) {
                Ok(Ok(l)) => label = l,
                Ok(Err(e)) => problem = Some(("label", format!("column `label`: {e}"))),
                Err(e) => problem = Some(("utf8", format!("label: {e}"))),
            }
        }
        let mut name = SeriesName::new(DEFAULT_SERVICE, DEFAULT_GEO, DEFAULT_SIGNAL);
        if problem.is_none() {
            for (c, slot) in [
                (svc_col, &mut name.service),
                (geo_col, &mut name.geo),
                (sig_col, &mut name.signal),
            ] {
                match field(c) {
                    Ok(Some(s)) if !s.is_empty() => *slot = s.to_string(),
                    Ok(_) => {}
                    Err(e) => problem = Some(("utf8", e)),
                }
            }
        }
        let ok = problem.is_none();
        if let Some((kind, reason)) = problem {
            summary.issue(
                LineError {
                    file: file.to_string(),
                    line,
                    kind,
                    reason,
                },
                true,
                progress,
            );
        }
        let ix = if ok {
            match series_ix.get(&name) {
                Some(&i) => i,
                None => {
                    series.push(name.clone());
                    series_ix.insert(name, series.len() - 1);
                    series.len() - 1
                }
            }
        } else {
            0
        };
        rows.push(CsvRow {
            line,
            ts_raw,
            ts_ms: if ok { ts_ms } else { None },
            value: if ok { value } else { None },
            label,
            series: ix,
            ok,
        });
    }
    progress.bytes(rdr.position().byte());
    Ok((series, rows, label_col.is_some()))
}

/// A `label` cell: 1 inside a known event, 0 (or empty) outside.
fn parse_label(v: &str) -> Result<bool, String> {
    match v {
        "1" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(format!("expected 0 or 1, got {other:?}")),
    }
}
