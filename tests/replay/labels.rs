//! A CSV with a `label` column is scored against it: the backtest an operator runs on their
//! own history before trusting a configuration.

use spikewatch::event::Severity;
use spikewatch::replay::ReplayOptions;

use crate::{run_csv, series_csv};

/// `series_csv` with a `label` column: 1 on `labelled` rows.
pub(crate) fn with_labels(csv: &str, labelled: std::ops::Range<usize>) -> String {
    let mut out = String::from("timestamp,value,label\n");
    for (i, line) in csv.lines().skip(1).enumerate() {
        out.push_str(&format!("{line},{}\n", u8::from(labelled.contains(&i))));
    }
    out
}

#[test]
fn a_labelled_csv_reports_events_found_false_alerts_and_delay() {
    // Two surges of +300 on ~100, 15 hours apart (beyond the 12-hour re-open gap, so two
    // incidents): only the second is a known event.
    let mut csv = series_csv(3000, 60, 1500..1520, 300.0);
    let second = series_csv(3000, 60, 2400..2430, 300.0);
    // Merge: the second surge's rows from `second`.
    let lines: Vec<&str> = csv.lines().collect();
    let seconds: Vec<&str> = second.lines().collect();
    let merged: Vec<&str> = (0..lines.len())
        .map(|i| {
            if (2401..2431).contains(&i) {
                seconds[i]
            } else {
                lines[i]
            }
        })
        .collect();
    csv = merged.join("\n") + "\n";
    let (_, incidents, outcome) =
        run_csv(&with_labels(&csv, 2400..2430), &ReplayOptions::default());
    assert_eq!(outcome.summary.incidents_opened, 2, "{incidents:?}");

    let labels = &outcome.summary.labels;
    assert_eq!(labels.len(), 1);
    let l = &labels[0].1;
    assert_eq!((l.windows, l.found), (1, 1), "{l:?}");
    assert_eq!((l.incidents, l.false_alerts), (2, 1), "{l:?}");
    let t0_ms = crate::T0 * 1000;
    assert_eq!(
        l.false_at_ms,
        vec![t0_ms + 1500 * 60_000],
        "the unlabelled surge"
    );
    assert!(l.delays_min[0] <= 3.0, "announced within 3 minutes: {l:?}");
    assert!((l.days - 3000.0 / 1440.0).abs() < 1e-9);

    let text = outcome.summary.to_string();
    assert!(text.contains("labelled events:    1 of 1 found"), "{text}");
    assert!(
        text.contains("false alerts:       1 of 2 incidents"),
        "{text}"
    );

    // Without the column there is nothing to score against.
    let (_, _, outcome) = run_csv(&csv, &ReplayOptions::default());
    assert!(outcome.summary.labels.is_empty());
    assert!(!outcome.summary.to_string().contains("labelled events"));
}

#[test]
fn a_label_that_is_not_0_or_1_is_a_malformed_row_with_its_reason() {
    let csv = with_labels(&series_csv(200, 60, 0..0, 0.0), 0..0).replacen(",0\n", ",yes\n", 1);
    let (lines, _, outcome) = run_csv(&csv, &ReplayOptions::default());
    assert_eq!(outcome.summary.malformed.get("label"), Some(&1));
    let e = &outcome.summary.reported[0];
    assert_eq!(e.line, 2);
    assert!(
        e.reason.contains("column `label`") && e.reason.contains("\"yes\""),
        "{e:?}"
    );
    assert_eq!(
        lines.len(),
        201,
        "one output row per input row, the bad one too"
    );
}

fn replay_with_known(known: &str) -> spikewatch::replay::ReplayOutcome {
    let known = spikewatch::replay::labels::parse_known_outages(known).expect("known outages");
    spikewatch::replay::replay_jsonl(
        "events.jsonl",
        crate::complaints_jsonl(420, &[]).as_bytes(),
        &spikewatch::config::Config::default(),
        &ReplayOptions {
            known_outages: known,
            ..ReplayOptions::default()
        },
        spikewatch::replay::ReplayOutput::new(&mut std::io::sink()),
    )
    .expect("replay")
}

#[test]
fn jsonl_history_is_scored_against_known_outages_per_service() {
    // The spike is minutes 300–330 after 2024-01-01T00:00:00Z (05:00–05:30).
    let found = replay_with_known(
        "service,start,end,note\n\
         telegram,2024-01-01T05:00:00Z,2024-01-01T05:30:00Z,postmortem 17\n\
         spotify,2024-01-01 02:00:00,2024-01-01 03:00:00,\n",
    );
    let by: std::collections::BTreeMap<_, _> =
        found.summary.known_outages.iter().cloned().collect();
    let tg = &by["telegram"];
    assert_eq!((tg.windows, tg.found, tg.false_alerts), (1, 1, 0), "{tg:?}");
    assert!(tg.delays_min[0] <= 3.0, "{tg:?}");
    // A known outage the input shows nothing of is missed, not an error.
    let sp = &by["spotify"];
    assert_eq!((sp.windows, sp.found, sp.incidents), (1, 0, 0), "{sp:?}");
    let text = found.summary.to_string();
    assert!(text.contains("known outages:      1 of 2 found"), "{text}");
    assert!(
        text.contains("false alerts:       0 of 1 outages"),
        "{text}"
    );

    // The same outage unknown: a false alert of its service.
    let unknown = replay_with_known("service,start,end\nspotify,1704081600,1704085200\n");
    let by: std::collections::BTreeMap<_, _> =
        unknown.summary.known_outages.iter().cloned().collect();
    assert_eq!(by["telegram"].false_alerts, 1);
    assert_eq!(
        by["telegram"].false_at_ms,
        vec![(crate::T0 + 300 * 60) * 1000]
    );
}

#[test]
fn a_known_outages_file_with_a_bad_row_is_refused_with_its_line() {
    use spikewatch::replay::labels::parse_known_outages;
    let e =
        parse_known_outages("service,start,end\ntelegram,2024-01-01T05:00:00Z,soon\n").unwrap_err();
    assert!(e.contains("line 2") && e.contains("column `end`"), "{e}");
    let e = parse_known_outages("service,from,to\n").unwrap_err();
    assert!(
        e.contains("line 1") && e.contains("`service`, `start` and `end`"),
        "{e}"
    );
    let e = parse_known_outages(
        "service,start,end\ntelegram,2024-01-01T05:00:00Z,2024-01-01T04:00:00Z\n",
    )
    .unwrap_err();
    assert!(e.contains("line 2") && e.contains("not after"), "{e}");
}

/// `spikewatch demo --write-jsonl … --write-known-outages …` then `replay --known-outages`:
/// the generator's own outages are the known ones, and the replay finds them.
#[test]
fn a_generated_scenario_replayed_finds_its_injected_outages_and_nothing_else() {
    // Telegram in Italian cities for 3 days, down in Rome and Milan on day 3; a comma in the
    // label is quoted in the file.
    let mut scenario = spikewatch::sim::Scenario::telegram_italy_3_days();
    scenario.outages[0].label = "Telegram down in Rome, Milan";
    let known = spikewatch::demo::known_outages_csv(&scenario);
    assert!(
        known.ends_with(",\"Telegram down in Rome, Milan\"\n"),
        "{known}"
    );
    let mut jsonl = Vec::new();
    spikewatch::demo::run_scenario(
        &scenario,
        spikewatch::config::Config::default(),
        Some(&mut jsonl),
    )
    .unwrap();
    let outcome = spikewatch::replay::replay_jsonl(
        "scenario.jsonl",
        jsonl.as_slice(),
        &spikewatch::config::Config::default(),
        &ReplayOptions {
            known_outages: spikewatch::replay::labels::parse_known_outages(&known).unwrap(),
            ..ReplayOptions::default()
        },
        spikewatch::replay::ReplayOutput::new(&mut std::io::sink()),
    )
    .unwrap();
    let scores = &outcome.summary.known_outages;
    assert_eq!(scores.len(), 1, "{scores:?}");
    let (service, s) = &scores[0];
    assert_eq!(service, "telegram");
    assert_eq!((s.windows, s.found, s.false_alerts), (1, 1, 0), "{s:?}");
    assert!(s.delays_min[0] <= 5.0, "{s:?}");
}

/// `--page-on major`: an incident that stays `minor` (a 1.6× rise) is not counted at all, not
/// even as a false alert; one that reaches `critical` (16×) is, announced when it got there.
#[test]
fn paging_on_a_severity_scores_only_the_incidents_that_reach_it() {
    let small = series_csv(3000, 60, 1500..1520, 60.0);
    let big = series_csv(3000, 60, 2400..2430, 1500.0);
    let merged: Vec<&str> = small
        .lines()
        .zip(big.lines())
        .enumerate()
        .map(|(i, (s, b))| if (2401..2431).contains(&i) { b } else { s })
        .collect();
    let csv = with_labels(&(merged.join("\n") + "\n"), 2400..2430);
    let (_, incidents, all) = run_csv(&csv, &ReplayOptions::default());
    let l = &all.summary.labels[0].1;
    assert_eq!(
        (l.found, l.incidents, l.false_alerts),
        (1, 2, 1),
        "{incidents:?}"
    );
    let minor = incidents
        .iter()
        .filter(|e| e.opened_at.0 < crate::T0 * 1000 + 2000 * 60_000)
        .map(|e| e.severity)
        .max();
    assert_eq!(minor, Some(Severity::Minor), "the small rise stays minor");

    let paged = |sev| {
        let opts = ReplayOptions {
            page_on: Some(sev),
            ..ReplayOptions::default()
        };
        run_csv(&csv, &opts).2.summary
    };
    let major = paged(Severity::Major);
    let l = &major.labels[0].1;
    assert_eq!((l.found, l.incidents, l.false_alerts), (1, 1, 0), "{l:?}");
    assert!(l.delays_min[0] <= 5.0, "{l:?}");
    assert!(
        major
            .to_string()
            .contains("paging on:          incidents that reach major"),
        "{major}"
    );
    // Minor is every incident, as without the option.
    assert_eq!(paged(Severity::Minor).labels, all.summary.labels);
}
