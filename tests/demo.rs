//! `spikewatch demo` logic on a shortened scenario (debug builds are slow: 3 days, one service).

use spikewatch::config::Config;
use spikewatch::demo::{self, Style};
use spikewatch::event::decode_any;
use spikewatch::sim::{Outage, Scenario, DAY_MS, HOUR_MS};

const LABEL: &str = "Test outage: Telegram down in Rome and Milan";

fn short_scenario() -> Scenario {
    let base = Scenario::demo();
    let start = base.start_ms;
    let from = start + 2 * DAY_MS + 10 * HOUR_MS;
    let to = from + 2 * HOUR_MS;
    Scenario {
        days: 3,
        services: base
            .services
            .into_iter()
            .filter(|s| s.name == "telegram")
            .collect(),
        outages: vec![Outage {
            label: LABEL,
            service: "telegram",
            geos: vec![("IT-RM", from, to), ("IT-MI", from, to)],
            complaints_factor: 12.0,
            mentions_factor: 10.0,
        }],
        ..base
    }
}

#[test]
fn demo_timeline_names_the_injected_outage_as_detected_and_the_plot_is_an_svg_with_its_span() {
    let scenario = short_scenario();
    let mut jsonl = Vec::new();
    let run = demo::run_scenario(&scenario, Config::default(), Some(&mut jsonl)).unwrap();

    let timeline = demo::render_timeline(&scenario, &run.evaluation, Style { colour: false });
    assert!(timeline.contains(LABEL), "{timeline}");
    assert!(timeline.contains("✓ detected"), "{timeline}");
    assert!(!timeline.contains("MISSED"), "{timeline}");
    // City incidents are folded under the roll-up that covers them.
    assert!(
        timeline.contains("complaints opened Wed 03 Jan 10:"),
        "{timeline}"
    );
    assert!(timeline.contains("IT-MI, IT-RM"), "{timeline}");
    assert!(!timeline.contains("telegram/IT-RM"), "{timeline}");
    assert!(
        timeline.contains("Summary: outages detected 1/1"),
        "{timeline}"
    );
    assert!(!timeline.contains('\x1b'), "no colour when asked for none");
    let r = &run.evaluation.outages[0];
    let delay = r.delay_ms.expect("detected");
    assert!(
        delay <= 10 * 60_000,
        "detected within 10 minutes, took {delay} ms"
    );

    // One panel for the outage: telegram/IT/complaints around it, with the incident span.
    assert_eq!(run.panels.len(), 1);
    let panel = &run.panels[0];
    assert!(
        panel.title.contains("telegram/IT/complaints"),
        "{}",
        panel.title
    );
    let (from, to) = (r.report.start_ms, r.report.end_ms);
    assert!(
        panel.spans.iter().any(|&(a, b)| a < to && b > from),
        "incident span overlaps the outage: {:?}",
        panel.spans
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spikewatch-demo.svg");
    spikewatch::plot::write_svg(&path, &run.panels, 1000, 300).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(
        svg.contains(spikewatch::plot::INCIDENT_FILL_SVG),
        "incident span shaded"
    );
    assert!(
        svg.contains(spikewatch::plot::TRUTH_FILL_SVG),
        "injected outage marked"
    );
    assert!(svg.contains(LABEL));

    // The generated traffic as wire events: every line decodes.
    let text = String::from_utf8(jsonl).unwrap();
    let mut n = 0u64;
    for line in text.lines() {
        decode_any(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
        n += 1;
    }
    assert_eq!(n, run.wire_events_written);
    assert!(n > 10_000);
}

#[test]
fn a_quiet_scenario_shows_no_outages_and_lists_false_alarms_if_any() {
    let scenario = Scenario {
        outages: Vec::new(),
        ..short_scenario()
    };
    let run = demo::run_scenario(&scenario, Config::default(), None).unwrap();
    let timeline = demo::render_timeline(&scenario, &run.evaluation, Style { colour: false });
    let n = run.evaluation.false_alarms.len();
    assert!(
        timeline.contains(&format!(
            "outages detected 0/0, median detection delay n/a, false alarms {n}"
        )),
        "{timeline}"
    );
    if n > 0 {
        assert!(timeline.contains("false alarm(s): incidents matching no injected outage"));
    } else {
        assert!(timeline.contains("No false alarms."));
    }
}

#[test]
fn outage_geos_roll_up_to_their_lowest_common_geo() {
    let s = Scenario::demo();
    let tops: Vec<String> = s.outages.iter().map(demo::outage_top_geo).collect();
    assert_eq!(tops[0], "*"); // Italy and other countries
    assert_eq!(tops[2], "IT"); // Italian cities only
    assert!(demo::geo_covers("IT", "IT-RM"));
    assert!(!demo::geo_covers("IT", "ITA"));
    assert!(demo::geo_covers("*", "DE"));
}

#[test]
fn replaying_the_demo_traffic_written_as_jsonl_finds_the_same_incidents() {
    let scenario = short_scenario();
    let mut jsonl = Vec::new();
    let run = demo::run_scenario(&scenario, Config::default(), Some(&mut jsonl)).unwrap();
    let mut out = Vec::new();
    let mut inc = Vec::new();
    let outcome = spikewatch::replay::replay_jsonl(
        "demo.jsonl",
        jsonl.as_slice(),
        &Config::default(),
        &spikewatch::replay::ReplayOptions::default(),
        spikewatch::replay::ReplayOutput::new(&mut out).with_incidents(&mut inc),
    )
    .unwrap();
    assert_eq!(outcome.summary.accepted, run.wire_events_written);
    assert_eq!(outcome.summary.malformed_total(), 0);
    // The replay writes outage events, the same outages the demo found.
    let ids = |events: &mut dyn Iterator<Item = spikewatch::event::OutageEvent>| {
        let mut v: Vec<String> = events
            .filter(|e| e.state == spikewatch::event::IncidentState::Opened)
            .map(|e| e.outage_id)
            .collect();
        v.sort();
        v
    };
    let replayed = ids(&mut String::from_utf8(inc)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect::<Vec<_>>()
        .into_iter());
    let demoed = ids(&mut run.outages.clone().into_iter());
    assert!(!demoed.is_empty());
    assert_eq!(replayed, demoed);
}

fn summary(geo: &str, opened: i64, resolved: Option<i64>) -> spikewatch::sim::IncidentSummary {
    spikewatch::sim::IncidentSummary {
        incident_id: format!("telegram/{geo}/complaints/{opened}"),
        service: "telegram".into(),
        geo: geo.into(),
        signal: "complaints".into(),
        opened_at_ms: opened,
        announced_at_ms: opened + 120_000,
        resolved_at_ms: resolved,
        peak_at_ms: opened,
        peak_zscore: 20.0,
        peak_observed: 100.0,
        expected_at_peak: 10.0,
        severity: spikewatch::event::Severity::Critical,
        events: 2,
        reopened: 0,
        child_geos: Vec::new(),
        concurrent_services: Vec::new(),
    }
}

#[test]
fn timeline_shows_geos_that_recover_hours_after_their_roll_up() {
    let t = 1_706_076_000_000; // 2024-01-24T06:00Z
    let incidents = [
        summary("*", t, Some(t + 14 * HOUR_MS)),
        summary("IT", t, Some(t + 12 * HOUR_MS)),
        summary("TR", t, Some(t + 14 * HOUR_MS + 10 * 60_000)),
        summary("IR", t, Some(t + 17 * HOUR_MS + 30 * 60_000)),
        summary("RU", t, None),
    ];
    let groups = demo::collapse(&incidents, t + DAY_MS);
    assert_eq!(groups.len(), 1, "all folded under *");
    let later: Vec<_> = groups[0].recovered_later.iter().collect();
    assert_eq!(
        later,
        [
            (&"IR".to_string(), &Some(t + 17 * HOUR_MS + 30 * 60_000)),
            (&"RU".to_string(), &None)
        ],
        "TR recovered with the roll-up, IT before it"
    );
}

/// Issue 15: every demo length shows an outage; a one-week demo gets the first one moved in,
/// and detects it.
#[test]
fn a_one_week_demo_still_shows_and_detects_an_outage() {
    let s = demo::fit_outages(spikewatch::sim::Scenario {
        days: 7,
        ..spikewatch::sim::Scenario::demo()
    });
    assert_eq!(s.outages.len(), 1);
    assert!(s.outages[0].end_ms() < s.end_ms());
    let run = demo::run_scenario(&s, Config::default(), None).unwrap();
    assert_eq!(run.evaluation.detected(), 1, "{:?}", run.evaluation.outages);
    let g = run.evaluation.grouping.as_ref().unwrap();
    assert_eq!(g.per_outage[0].1.len(), 1, "one outage incident");
}
