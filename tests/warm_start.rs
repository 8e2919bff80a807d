//! Warm start from history: `spikewatch replay --save-state` then `--initial-state` continues
//! exactly where the first run stopped, and a bad state file is reported, not a crash.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use spikewatch::config::Config;
use spikewatch::demo;
use spikewatch::event::{decode_any, AnomalyEvent, IncidentState, OutageEvent};
use spikewatch::sim::{Scenario, HOUR_MS};

/// Telegram in Italian cities for 3 days, down in Rome and Milan on day 3.
fn scenario() -> Scenario {
    Scenario::telegram_italy_3_days()
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spikewatch"))
}

/// `replay` writing per-series incident events.
fn run(args: &[&Path]) -> Output {
    run_kind(args, "series")
}

/// `replay` writing `kind` incident events (`series` or `outages`).
fn run_kind(args: &[&Path], kind: &str) -> Output {
    let mut c = bin();
    c.args(["replay", "--incident-events", kind]);
    for a in args {
        c.arg(a);
    }
    c.output().expect("spikewatch runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn events(path: &Path) -> Vec<AnomalyEvent> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn rows(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Writes the scenario's traffic as `full.jsonl`, and split at `split_ms` (a bucket boundary)
/// into `a.jsonl` (before) and `b.jsonl` (from then on).
fn traffic(split_ms: i64) -> Files {
    let mut jsonl = Vec::new();
    demo::run_scenario(&scenario(), Config::default(), Some(&mut jsonl)).unwrap();
    let text = String::from_utf8(jsonl).unwrap();
    // The generator writes bucket after bucket: the first line at or after the split starts b.
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let ts = decode_any(line.trim_end().as_bytes())
            .unwrap()
            .ts()
            .millis();
        if ts >= split_ms {
            break;
        }
        offset += line.len();
    }
    assert!(offset > 0 && offset < text.len());
    let f = Files {
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::write(f.p("full.jsonl"), &text).unwrap();
    std::fs::write(f.p("a.jsonl"), &text[..offset]).unwrap();
    std::fs::write(f.p("b.jsonl"), &text[offset..]).unwrap();
    f
}

/// One hour into the outage: incidents are open when the first half ends.
fn split_ms() -> i64 {
    scenario().outages[0].start_ms() + HOUR_MS
}

fn replay_halves(f: &Files) -> (Output, Output) {
    replay_halves_kind(f, "series")
}

fn replay_halves_kind(f: &Files, kind: &str) -> (Output, Output) {
    let run = |args: &[&Path]| run_kind(args, kind);
    let a = run(&[
        "--input".as_ref(),
        &f.p("a.jsonl"),
        "--output".as_ref(),
        &f.p("a.csv"),
        "--incidents".as_ref(),
        &f.p("a-incidents.jsonl"),
        "--save-state".as_ref(),
        &f.p("history.state"),
    ]);
    assert!(a.status.success(), "{}", stderr(&a));
    let b = run(&[
        "--input".as_ref(),
        &f.p("b.jsonl"),
        "--output".as_ref(),
        &f.p("b.csv"),
        "--incidents".as_ref(),
        &f.p("b-incidents.jsonl"),
        "--initial-state".as_ref(),
        &f.p("history.state"),
    ]);
    assert!(b.status.success(), "{}", stderr(&b));
    (a, b)
}

/// An outage open at the split is carried by the state file: one outage, the same events.
#[test]
fn an_outage_open_across_a_state_file_split_stays_one_outage() {
    let f = traffic(split_ms());
    let full = run_kind(
        &[
            "--input".as_ref(),
            &f.p("full.jsonl"),
            "--output".as_ref(),
            &f.p("full.csv"),
            "--incidents".as_ref(),
            &f.p("full-incidents.jsonl"),
        ],
        "outages",
    );
    assert!(full.status.success(), "{}", stderr(&full));
    replay_halves_kind(&f, "outages");
    let read = |name: &str| -> Vec<OutageEvent> {
        std::fs::read_to_string(f.p(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let whole = read("full-incidents.jsonl");
    let first = read("a-incidents.jsonl");
    let mut halves = first.clone();
    halves.extend(read("b-incidents.jsonl"));
    assert!(
        first.iter().any(|e| e.state == IncidentState::Opened),
        "opened before the split: {first:?}"
    );
    assert_eq!(
        halves
            .iter()
            .filter(|e| e.state == IncidentState::Opened)
            .count(),
        1,
        "{halves:#?}"
    );
    assert_eq!(halves, whole);
}

#[test]
fn replaying_history_in_two_halves_through_a_state_file_equals_one_go() {
    let f = traffic(split_ms());
    let full = run(&[
        "--input".as_ref(),
        &f.p("full.jsonl"),
        "--output".as_ref(),
        &f.p("full.csv"),
        "--incidents".as_ref(),
        &f.p("full-incidents.jsonl"),
    ]);
    assert!(full.status.success(), "{}", stderr(&full));
    let (a, b) = replay_halves(&f);
    let a_err = stderr(&a);
    let b_err = stderr(&b);
    assert!(a_err.contains("saved engine state to"), "{a_err}");
    assert!(b_err.contains("initial state: restored "), "{b_err}");
    assert!(!b_err.contains("skipped"), "{b_err}");
    assert!(b_err.contains("from the initial state"), "{b_err}");

    let whole = events(&f.p("full-incidents.jsonl"));
    let first = events(&f.p("a-incidents.jsonl"));
    let second = events(&f.p("b-incidents.jsonl"));
    let ids_states = |v: &[AnomalyEvent]| -> Vec<(String, IncidentState, u64)> {
        v.iter()
            .map(|e| (e.incident_id.clone(), e.state, e.seq))
            .collect()
    };
    let mut halves = first.clone();
    halves.extend(second.iter().cloned());
    assert_eq!(ids_states(&halves), ids_states(&whole));
    // Not only ids and states: every field of every event, and every scored bucket.
    assert_eq!(halves, whole);
    let mut halves_rows = rows(&f.p("a.csv"));
    halves_rows.extend(rows(&f.p("b.csv")));
    assert_eq!(halves_rows, rows(&f.p("full.csv")));

    // The test means something: incidents were open across the split, and resolved after it
    // by the restored run (same ids, no second `opened`).
    let opened_first: Vec<&str> = first
        .iter()
        .filter(|e| e.state == IncidentState::Opened)
        .map(|e| e.incident_id.as_str())
        .collect();
    assert!(
        opened_first.iter().any(|id| id.starts_with("telegram/IT/")),
        "{opened_first:?}"
    );
    for id in &opened_first {
        assert!(
            second
                .iter()
                .any(|e| e.incident_id == *id && e.state == IncidentState::Resolved),
            "{id} resolved in the second half"
        );
        assert!(!second
            .iter()
            .any(|e| e.incident_id == *id && e.state == IncidentState::Opened));
    }
}

#[test]
fn a_bad_state_file_is_reported_not_a_crash() {
    let f = traffic(split_ms());
    replay_halves(&f);
    let good = std::fs::read(f.p("history.state")).unwrap();
    let with_state = |state: &Path| {
        run(&[
            "--input".as_ref(),
            &f.p("b.jsonl"),
            "--output".as_ref(),
            &f.p("out.csv"),
            "--initial-state".as_ref(),
            state,
        ])
    };

    // Not a state file at all: a clear error that names the file.
    let csv = f.p("scores-not-state.csv");
    std::fs::copy(f.p("a.csv"), &csv).unwrap();
    let o = with_state(&csv);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("scores-not-state.csv") && err.contains("not a spikewatch state file"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // Missing file.
    let o = with_state(&f.p("nope.state"));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nope.state"), "{}", stderr(&o));

    // A damaged byte in the last series record: that series is skipped and reported, the
    // others are restored and the run goes on.
    let mut damaged = good.clone();
    let n = damaged.len();
    damaged[n - 3] ^= 0x5a;
    let p = f.p("damaged.state");
    std::fs::write(&p, &damaged).unwrap();
    let o = with_state(&p);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("1 record(s) skipped"), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");

    // Cut short: the torn record is reported as truncated.
    let p = f.p("truncated.state");
    std::fs::write(&p, &good[..good.len() * 2 / 3]).unwrap();
    let o = with_state(&p);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("truncated"), "{err}");

    // A damaged clock record (the first one) makes the whole file unusable: an error.
    let mut clock = good.clone();
    clock[4 + 4 + 10] ^= 0xff;
    let p = f.p("clock.state");
    std::fs::write(&p, &clock).unwrap();
    let o = with_state(&p);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("clock.state") && err.contains("cannot be used"),
        "{err}"
    );

    // CSV count series have no single engine to save: refused up front.
    let series = f.p("series.csv");
    std::fs::write(&series, "timestamp,value\n2024-01-01 00:00:00,3\n").unwrap();
    let o = run(&[
        "--input".as_ref(),
        &series,
        "--output".as_ref(),
        &f.p("s.csv"),
        "--save-state".as_ref(),
        &f.p("s.state"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("JSONL"), "{}", stderr(&o));
}

/// `run --initial-state`: baselines learned by a replay of history seed new series, so an
/// outage on the first morning of live input alerts while a cold engine is still warming up.
#[test]
fn a_seeded_engine_alerts_on_day_one_where_a_cold_one_is_still_warming_up() {
    use spikewatch::engine::{BaselineSeed, Engine};
    use spikewatch::event::{AnomalyEvent, BaselineKind, IncidentState};
    use spikewatch::sim::{self, Outage, Scenario, DAY_MS, HOUR_MS, MINUTE_MS};

    let history = Scenario {
        days: 14,
        outages: Vec::new(),
        ..Scenario::demo()
    };
    let mut learned = Engine::new(spikewatch::config::Config::default());
    sim::drive(&history, &mut learned, &mut Vec::<AnomalyEvent>::new());
    let (seed, report) = BaselineSeed::from_state_file(&learned.save_state()).unwrap();
    assert!(report.skipped.is_empty());
    assert_eq!(seed.len(), learned.series_count());
    let seed = std::sync::Arc::new(seed);

    // Live input starts three weeks after the history ended (the gap does not matter): at
    // 09:00, Telegram goes down in Rome and Milan 30 minutes in, inside the warm-up.
    let start = history.start_ms + 35 * DAY_MS + 9 * HOUR_MS;
    let onset = start + 30 * MINUTE_MS;
    let live = Scenario {
        start_ms: start,
        days: 1,
        outages: vec![Outage {
            label: "Telegram down in Rome and Milan",
            service: "telegram",
            geos: vec![
                ("IT-RM", onset, onset + 2 * HOUR_MS),
                ("IT-MI", onset, onset + 2 * HOUR_MS),
            ],
            complaints_factor: 10.0,
            mentions_factor: 10.0,
        }],
        ..Scenario::demo()
    };
    let run = |seeded: bool| {
        let mut e = Engine::new(spikewatch::config::Config::default());
        if seeded {
            e.set_seed(seed.clone());
        }
        let mut out: Vec<AnomalyEvent> = Vec::new();
        sim::drive_until(&live, &mut e, &mut out, onset + HOUR_MS);
        (e, out)
    };
    let opened = |out: &[AnomalyEvent]| -> Vec<(String, BaselineKind)> {
        out.iter()
            .filter(|e| e.service == "telegram" && e.state == IncidentState::Opened)
            .map(|e| (e.geo.clone(), e.baseline))
            .collect()
    };
    let (seeded, out) = run(true);
    assert!(seeded.stats().series_seeded > 0);
    let got = opened(&out);
    assert!(
        got.iter().any(|(g, _)| g == "IT-RM") && got.iter().any(|(g, _)| g == "IT-MI"),
        "seeded engine: {got:?}"
    );
    assert!(
        got.iter().all(|(_, k)| *k == BaselineKind::Seasonal),
        "the history's seasonal profile: {got:?}"
    );
    let (_, cold) = run(false);
    assert!(
        opened(&cold).is_empty(),
        "a cold engine is still warming up 30 minutes in: {:?}",
        opened(&cold)
    );
}
