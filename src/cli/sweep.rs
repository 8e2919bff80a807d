//! `spikewatch replay --set KEY=VALUE` and `--sweep KEY=V1,V2,...`: a backtest of the same
//! history under several values of one setting, printed as a table, so an operator picks a
//! threshold from their own labelled history (a `label` column, or `--known-outages`)
//! instead of guessing it.

use std::path::Path;

use spikewatch::config::Config;
use spikewatch::replay::labels::LabelScore;
use spikewatch::replay::{InputFormat, ReplayOptions, ReplayOutput, Summary};

use super::ReplayArgs;

/// One setting varied over values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sweep {
    pub(crate) key: String,
    pub(crate) values: Vec<String>,
}

/// `--set KEY=VALUE`. The key is checked when the configuration is loaded, where a wrong one
/// is reported with the config's own error.
pub(crate) fn parse_setting(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected KEY=VALUE, e.g. detection.open_z=7"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("`{s}`: the key before `=` is empty"));
    }
    Ok((key.to_string(), value.trim().to_string()))
}

/// `--sweep KEY=V1,V2,...`: at least one value, none empty.
pub(crate) fn parse_sweep(s: &str) -> Result<Sweep, String> {
    let (key, values) = parse_setting(s)
        .map_err(|_| format!("`{s}`: expected KEY=V1,V2,..., e.g. detection.open_z=5,6,7"))?;
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
    if values.iter().any(String::is_empty) {
        return Err(format!("`{s}`: an empty value in the list"));
    }
    Ok(Sweep { key, values })
}

/// What one value gave.
struct Row {
    value: String,
    incidents: u64,
    labels: Option<LabelScore>,
    known: Option<LabelScore>,
}

fn total<'a>(scores: impl Iterator<Item = &'a LabelScore>) -> Option<LabelScore> {
    let mut t: Option<LabelScore> = None;
    for s in scores {
        t.get_or_insert_with(LabelScore::default).add(s);
    }
    t
}

impl Row {
    fn new(value: &str, s: &Summary) -> Self {
        Row {
            value: value.to_string(),
            incidents: s.incidents_opened,
            labels: total(s.labels.iter().map(|(_, l)| l)),
            known: total(s.known_outages.iter().map(|(_, l)| l)),
        }
    }
}

/// Replays `args.input` once per value of `sweep` (over `args.settings`) and prints the table
/// on standard output; the input's problems are reported once, on the first pass.
pub(crate) fn run(
    args: &ReplayArgs,
    sweep: &Sweep,
    format: InputFormat,
    opts: &ReplayOptions,
) -> anyhow::Result<()> {
    let mut rows = Vec::with_capacity(sweep.values.len());
    for (i, value) in sweep.values.iter().enumerate() {
        let mut settings = args.settings.clone();
        settings.push((sweep.key.clone(), value.clone()));
        let config =
            Config::load_with_settings(args.config.as_deref(), std::env::vars(), &settings)?;
        let first = i == 0;
        let started = std::time::Instant::now();
        let outcome = super::replay::run_once(
            format,
            &args.input,
            None,
            &config,
            opts,
            ReplayOutput::new(&mut std::io::sink()),
            first,
        )?;
        if first {
            print_input(&args.input, &outcome.summary);
        }
        // Later passes draw no progress bar: say that each one ended.
        eprintln!(
            "sweep: {}={value} done ({} of {}, {:.1} s)",
            sweep.key,
            i + 1,
            sweep.values.len(),
            started.elapsed().as_secs_f64()
        );
        rows.push(Row::new(value, &outcome.summary));
    }
    print!("{}", table(&sweep.key, &rows));
    Ok(())
}

fn print_input(path: &Path, s: &Summary) {
    eprintln!(
        "sweep over {}: {} rows or lines, {} accepted, {} late, {} rejected, {} malformed; {} series",
        path.display(),
        s.lines,
        s.accepted,
        s.late,
        s.rejected.values().sum::<u64>(),
        s.malformed_total(),
        s.series
    );
}

fn delay(l: &LabelScore) -> String {
    l.median_delay_min()
        .map_or_else(|| "-".to_string(), |d| format!("{d:.0} min"))
}

/// The table: one row per value; the label and known-outage columns only when the input
/// has them.
fn table(key: &str, rows: &[Row]) -> String {
    let labels = rows.iter().any(|r| r.labels.is_some());
    let known = rows.iter().any(|r| r.known.is_some());
    let mut header = vec![key.to_string(), "incidents".to_string()];
    if labels {
        header.extend(
            [
                "events found",
                "false alerts",
                "false / 30 d",
                "median delay",
            ]
            .map(String::from),
        );
    }
    if known {
        header.extend(
            [
                "known outages found",
                "outages matching none",
                "median delay",
            ]
            .map(String::from),
        );
    }
    let mut lines = vec![header];
    for r in rows {
        let mut line = vec![r.value.clone(), r.incidents.to_string()];
        if labels {
            let l = r.labels.clone().unwrap_or_default();
            line.extend([
                format!("{} / {}", l.found, l.windows),
                l.false_alerts.to_string(),
                format!("{:.2}", l.false_per_month()),
                delay(&l),
            ]);
        }
        if known {
            let k = r.known.clone().unwrap_or_default();
            line.extend([
                format!("{} / {}", k.found, k.windows),
                k.false_alerts.to_string(),
                delay(&k),
            ]);
        }
        lines.push(line);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                if c == 0 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_sweeps_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse_setting("detection.open_z = 7").unwrap(),
            ("detection.open_z".to_string(), "7".to_string())
        );
        // Only the first `=` splits: the value may hold more (so a key cannot hold one).
        assert_eq!(
            parse_setting("services.\"a\".notes=x=y").unwrap().1,
            "x=y".to_string()
        );
        assert!(parse_setting("open_z").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_setting("=7").unwrap_err().contains("empty"));
        let s = parse_sweep("detection.open_z=5, 6,7").unwrap();
        assert_eq!((s.key.as_str(), s.values.len()), ("detection.open_z", 3));
        assert!(parse_sweep("detection.open_z=5,,7")
            .unwrap_err()
            .contains("empty value"));
        assert!(parse_sweep("detection.open_z")
            .unwrap_err()
            .contains("V1,V2"));
    }

    #[test]
    fn the_table_has_label_columns_only_when_the_input_has_labels() {
        let plain = Row {
            value: "6".into(),
            incidents: 3,
            labels: None,
            known: None,
        };
        let t = table("detection.open_z", &[plain]);
        assert_eq!(t.lines().count(), 2);
        assert!(!t.contains("events found"), "{t}");
        let labelled = Row {
            value: "7".into(),
            incidents: 2,
            labels: Some(LabelScore {
                series: 1,
                days: 30.0,
                windows: 4,
                found: 3,
                incidents: 2,
                false_alerts: 1,
                delays_min: vec![1.0, 5.0, 3.0],
                false_at_ms: vec![0],
                windows_ms: Vec::new(),
            }),
            known: None,
        };
        let t = table("detection.open_z", &[labelled]);
        let row = t.lines().nth(1).unwrap();
        for cell in ["7", "3 / 4", "1.00", "3 min"] {
            assert!(row.contains(cell), "{cell}: {t}");
        }
    }
}
