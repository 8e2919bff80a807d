//! Scenario tests on realistic traffic (issue 11, "Detection that holds on real data"):
//! heavier noise, retweet bursts, news bumps, daylight saving time and input gaps
//! ([`spikewatch::sim::Realism`]), run through the engine with default settings.
//!
//! The assertions are the behaviour the issue demands; each test first prints what the engine
//! does today (`cargo test --test realistic_scenarios -- --nocapture`).

use std::sync::OnceLock;

use spikewatch::calendar::SummerTime;
use spikewatch::config::Config;
use spikewatch::engine::{Engine, EngineSink};
use spikewatch::event::{AnomalyEvent, OutageEvent};
use spikewatch::sim::{self, Evaluation, Scenario, Signal, DAY_MS, HOUR_MS, MINUTE_MS, WEEK_MS};

/// One scenario driven through a default engine.
struct Outcome {
    scenario: Scenario,
    events: Vec<AnomalyEvent>,
    outages: Vec<OutageEvent>,
    eval: Evaluation,
    /// Series the engine tracked (leaf and roll-up), for per-series rates.
    series: usize,
    /// Observations the engine rejected (after a long gap: too far ahead, until it follows).
    rejected: u64,
}

#[derive(Default)]
struct Both {
    events: Vec<AnomalyEvent>,
    outages: Vec<OutageEvent>,
}

impl EngineSink for Both {
    fn anomaly(&mut self, e: AnomalyEvent) {
        self.events.push(e);
    }
    fn outage(&mut self, e: OutageEvent) {
        self.outages.push(e);
    }
}

fn run(name: &str, scenario: Scenario) -> Outcome {
    let mut engine = Engine::new(Config::default());
    let mut out = Both::default();
    sim::drive(&scenario, &mut engine, &mut out);
    let eval = sim::evaluate(&scenario, &out.events);
    let o = Outcome {
        series: engine.series_count(),
        rejected: engine.stats().rejected,
        scenario,
        events: out.events,
        outages: out.outages,
        eval,
    };
    print_metrics(name, &o);
    o
}

fn median(mut v: Vec<i64>) -> Option<f64> {
    v.sort_unstable();
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2] as f64),
        _ => Some((v[n / 2 - 1] + v[n / 2]) as f64 / 2.0),
    }
}

fn print_metrics(name: &str, o: &Outcome) {
    let s = &o.scenario;
    let bucket_min = s.bucket_ms / MINUTE_MS;
    let detected = o.eval.outages.iter().filter(|r| r.detected()).count();
    let delays: Vec<i64> = o
        .eval
        .outages
        .iter()
        .filter_map(|r| r.delay_buckets)
        .map(|d| d * bucket_min)
        .collect();
    let false_n = o.eval.false_alarms.len();
    let months = s.days as f64 / 30.0;
    let weeks = s.days as f64 / 7.0;
    let incidents = sim::summarize(&o.events).len();
    eprintln!(
        "[{name}] {} days: outages detected {detected}/{}, median delay {} (delays {delays:?} min); \
         incidents {incidents}, false incidents {false_n} = {:.2} per service per week, \
         {:.4} per series per month over {} series; {} observations rejected",
        s.days,
        o.eval.outages.len(),
        median(delays.clone()).map_or("n/a".to_string(), |m| format!("{m} min")),
        false_n as f64 / s.services.len() as f64 / weeks,
        false_n as f64 / o.series as f64 / months,
        o.series,
        o.rejected,
    );
    for svc in &s.services {
        let mine: Vec<_> = o
            .eval
            .false_alarms
            .iter()
            .filter(|i| i.service == svc.name)
            .collect();
        let on = |sig: &str| mine.iter().filter(|i| i.signal == sig).count();
        let leaves = mine
            .iter()
            .filter(|i| i.geo != "IT" && i.geo != "*")
            .count();
        eprintln!(
            "[{name}]   {}: {} false ({} mentions, {} complaints; {leaves} on leaf geos)",
            svc.name,
            mine.len(),
            on("mentions"),
            on("complaints"),
        );
    }
}

/// The demo's services and seven outages over six weeks of realistic traffic (EU summer time
/// starts on day 27).
fn realistic_demo() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| run("realistic demo", Scenario::realistic_demo()))
}

/// Four weeks of realistic traffic without outages (EU summer time starts on day 27).
fn realistic_normal() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| run("realistic normal 4 weeks", Scenario::realistic_normal(4)))
}

/// Start of the input gaps: Monday of week 3 at 10:00 UTC (11:00 in Italy), after two weeks
/// of history.
fn gap_start(s: &Scenario) -> i64 {
    s.start_ms + 14 * DAY_MS + 10 * HOUR_MS
}

/// Eighteen days of realistic traffic, no outage: the world of the gap scenarios.
fn gap_world() -> Scenario {
    Scenario {
        days: 18,
        ..Scenario::realistic_normal(3)
    }
}

/// The gap scenarios' world without a gap: tells incidents the gap causes from those the
/// realistic noise causes anyway.
fn no_gap() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| run("gap world without a gap", gap_world()))
}

/// [`gap_world`] in which all input stops at `gap_start` for `hours`.
fn gap_scenario(hours: i64) -> Scenario {
    let s = gap_world();
    let from = gap_start(&s);
    s.with_gaps(&[(from, from + hours * HOUR_MS)])
}

fn gap_6h() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| run("6 h input gap", gap_scenario(6)))
}

fn gap_46h() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| run("46 h input gap", gap_scenario(46)))
}

#[test]
fn realistic_demo_detects_every_outage_with_a_median_delay_of_at_most_5_minutes() {
    let o = realistic_demo();
    assert_eq!(o.eval.outages.len(), 7);
    let missed: Vec<_> = o
        .eval
        .outages
        .iter()
        .filter(|r| !r.detected())
        .map(|r| r.label)
        .collect();
    assert!(missed.is_empty(), "missed: {missed:#?}");
    let delays = o
        .eval
        .outages
        .iter()
        .filter_map(|r| r.delay_buckets)
        .map(|d| d * o.scenario.bucket_ms / MINUTE_MS)
        .collect();
    let m = median(delays).unwrap();
    assert!(m <= 5.0, "median detection delay {m} min");
}

/// Issue 12: each injected outage is one outage incident, over all its geos and signals.
#[test]
fn realistic_demo_each_outage_is_exactly_one_outage_incident() {
    let o = realistic_demo();
    let g = sim::group_outages(&o.scenario, &o.outages);
    let all = sim::summarize_outages(&o.outages);
    let delays: Vec<i64> = g
        .per_outage
        .iter()
        .filter_map(|(_, v)| v.first())
        .map(|x| x.announced_at_ms)
        .zip(&o.scenario.outages)
        .map(|(at, inj)| (at - inj.start_ms()) / MINUTE_MS)
        .collect();
    let lone: Vec<_> = g
        .false_outages
        .iter()
        .filter(|x| x.signals.len() < 2)
        .collect();
    println!(
        "[realistic demo] outage incidents {} (series incidents {}); injected {}; split {:?}; \
         merged {:?}; false outages {} ({} of a lone signal: minor); delays (min) {delays:?}",
        all.len(),
        sim::summarize(&o.events).len(),
        o.scenario.outages.len(),
        g.split(),
        g.merged(),
        g.false_outages.len(),
        lone.len(),
    );
    for (label, v) in &g.per_outage {
        assert_eq!(v.len(), 1, "{label}: {v:#?}");
    }
    assert!(g.merged().is_empty(), "{:?}", g.merged());

    // Issue 12 item 2, agreement of signals: every real outage is confirmed by both signals
    // within minutes; a lone signal stays `minor`, so a subscriber paging only on confirmed
    // (or major) outages gets no false page here.
    let confirm_delays: Vec<i64> = g
        .per_outage
        .iter()
        .zip(&o.scenario.outages)
        .map(|((label, v), inj)| {
            let at = v[0]
                .confirmed_at_ms
                .unwrap_or_else(|| panic!("{label}: never confirmed: {v:#?}"));
            (at - inj.start_ms()) / MINUTE_MS
        })
        .collect();
    let false_confirmed = g
        .false_outages
        .iter()
        .filter(|x| x.confirmed_at_ms.is_some())
        .count();
    let false_major = g
        .false_outages
        .iter()
        .filter(|x| x.severity > spikewatch::event::Severity::Minor)
        .count();
    println!(
        "[realistic demo] confirmed by both signals after (min) {confirm_delays:?}; false outages \
         confirmed {false_confirmed}, above minor {false_major} (of {})",
        g.false_outages.len()
    );
    assert!(median(confirm_delays).unwrap() <= 5.0);
    assert_eq!(false_confirmed, 0);
    // 14 false outages while the tail calibration could not discount a heavy tail below a
    // slope of 0.3 (README, "Realistic generated traffic"); 3 since 0.2.
    assert!(
        g.false_outages.len() <= 3,
        "{} false outages",
        g.false_outages.len()
    );
}

/// The target: an input gap raises no incident. Realistic noise could raise some in
/// the same world (printed, and held to the false-alarm bar by the normal-weeks test), so
/// this counts the incidents the gap adds: opened from the gap's start on and absent from the
/// same world without the gap. Since the calibration's minimum slope is 0.2 the noise raises
/// none in these 18 days (4 before), so the whole run holds no incident either.
fn assert_gap_raises_no_incident(o: &Outcome, hours: i64) {
    let s = &o.scenario;
    let (from, to) = s.realism.gaps[0];
    assert_eq!(to - from, hours * HOUR_MS);
    let without: std::collections::HashSet<String> = sim::summarize(&no_gap().events)
        .into_iter()
        .map(|i| i.incident_id)
        .collect();
    let incidents = sim::summarize(&o.events);
    let since_gap: Vec<_> = incidents
        .iter()
        .filter(|i| i.opened_at_ms >= from - s.bucket_ms)
        .collect();
    let added: Vec<_> = since_gap
        .iter()
        .filter(|i| !without.contains(&i.incident_id))
        .collect();
    let in_gap = added.iter().filter(|i| i.opened_at_ms < to).count();
    let first_day = added
        .iter()
        .filter(|i| (to..to + sim::DAY_MS).contains(&i.opened_at_ms))
        .count();
    eprintln!(
        "[{hours} h input gap] incidents {} in all, {} opened from the gap's start on; \
         {} of those not in the same world without the gap ({in_gap} opened in the gap, \
         {first_day} in the day after it)",
        incidents.len(),
        since_gap.len(),
        added.len(),
    );
    assert!(
        added.is_empty(),
        "{} incidents raised by a {hours} h input gap: {:#?}",
        added.len(),
        added.iter().take(5).collect::<Vec<_>>()
    );
    assert!(incidents.is_empty(), "{incidents:#?}");
}

#[test]
fn six_hour_input_gap_raises_no_incident() {
    assert_gap_raises_no_incident(gap_6h(), 6);
}

#[test]
fn forty_six_hour_input_gap_raises_no_incident() {
    assert_gap_raises_no_incident(gap_46h(), 46);
}

#[test]
fn four_realistic_normal_weeks_give_at_most_one_false_incident_per_service_per_week() {
    let o = realistic_normal();
    let s = &o.scenario;
    let incidents = sim::summarize(&o.events);
    let mut over = Vec::new();
    for svc in &s.services {
        for week in 0..4 {
            let from = s.start_ms + week * WEEK_MS;
            let n = incidents
                .iter()
                .filter(|i| i.service == svc.name)
                .filter(|i| (from..from + WEEK_MS).contains(&i.opened_at_ms))
                .count();
            if n > 1 {
                over.push(format!("{} week {week}: {n}", svc.name));
            }
        }
    }
    assert!(
        over.is_empty(),
        "more than one false incident per service per week: {over:?}"
    );
    // 6 with a minimum calibration slope of 0.3, 2 since 0.2.
    assert!(incidents.len() <= 2, "{} false incidents", incidents.len());
    let outages = sim::summarize_outages(&o.outages);
    let confirmed = outages
        .iter()
        .filter(|x| x.confirmed_at_ms.is_some())
        .count();
    println!(
        "[realistic normal] {} series incidents → {} outage incidents ({confirmed} confirmed by \
         both signals, {} above minor)",
        incidents.len(),
        outages.len(),
        outages
            .iter()
            .filter(|x| x.severity > spikewatch::event::Severity::Minor)
            .count()
    );
    assert!(outages.len() <= incidents.len());
}

/// Counts of one series with their expected rate, from a scenario reduced to that series.
fn one_series(s: &Scenario, service: &str, geo: &str) -> Vec<(u64, f64)> {
    let mut s = s.clone();
    s.services.retain(|x| x.name == service);
    s.services[0].presence.retain(|p| p.geo == geo);
    let p = s.services[0].presence[0].clone();
    let mut out = Vec::new();
    s.generate(|t, _, _, signal, count| {
        if signal == Signal::Mentions {
            out.push((count, s.rate(service, &p, signal, t + s.bucket_ms / 2)));
        }
    });
    out
}

/// Fractions of buckets above 2× and 3× the expected rate: all, and those expecting ≥ 10.
fn exceedance(v: &[(u64, f64)]) -> [f64; 4] {
    let frac = |min: f64, k: f64| {
        let sel: Vec<_> = v.iter().filter(|b| b.1 >= min).collect();
        sel.iter().filter(|b| b.0 as f64 > k * b.1).count() as f64 / sel.len() as f64
    };
    [
        frac(0.0, 2.0),
        frac(0.0, 3.0),
        frac(10.0, 2.0),
        frac(10.0, 3.0),
    ]
}

#[test]
fn realistic_mentions_exceed_twice_their_expected_rate_far_more_often_than_tame_ones() {
    let (service, geo) = ("telegram", "DE");
    let tame = exceedance(&one_series(&Scenario::normal(4), service, geo));
    let real = exceedance(&one_series(&Scenario::realistic_normal(4), service, geo));
    for (name, f) in [("tame", tame), ("realistic", real)] {
        eprintln!(
            "[noise {service}/{geo}/mentions, {name}] buckets > 2x expected {:.4}, > 3x {:.4}; \
             where expected >= 10: > 2x {:.4}, > 3x {:.4}",
            f[0], f[1], f[2], f[3]
        );
    }
    assert!(real[2] > 5.0 * tame[2].max(1e-4), "{real:?} vs {tame:?}");
    assert!(real[3] > 0.0);
}

/// Buckets of the European complaint series scoring z ≥ 4 in the morning rise, 06:00–10:00
/// Central European time (05:00–09:00 UTC in winter, 04:00–08:00 in summer), in the week
/// before and the week after the EU clock change of 2024-03-31, on five weeks of the demo
/// world with summer time and no other realism, under `summer_time = rule`.
fn morning_high_scores(rule: &str) -> (usize, usize) {
    struct Morning {
        switch: i64,
        counts: (usize, usize),
    }
    impl EngineSink for Morning {
        fn bucket(&mut self, r: &spikewatch::engine::BucketReport<'_>) {
            let cet = r.start_ms + HOUR_MS + SummerTime::Eu.shift_ms(r.start_ms);
            let hour = cet.rem_euclid(DAY_MS) / HOUR_MS;
            let week = (r.start_ms - self.switch).div_euclid(WEEK_MS);
            if r.signal == "complaints"
                && sim::observes_eu_dst(r.geo)
                && (6..10).contains(&hour)
                && r.zscore >= 4.0
            {
                match week {
                    -1 => self.counts.0 += 1,
                    0 => self.counts.1 += 1,
                    _ => {}
                }
            }
        }
        fn anomaly(&mut self, _: AnomalyEvent) {}
        fn outage(&mut self, _: OutageEvent) {}
    }
    let s = Scenario {
        realism: sim::Realism {
            dst: true,
            ..Scenario::normal(1).realism
        },
        ..Scenario::realistic_normal(5)
    };
    let config =
        Config::from_toml_str(&format!("[detection]\nsummer_time = \"{rule}\"\n"), "test").unwrap();
    let mut engine = Engine::new(config);
    let mut sink = Morning {
        switch: sim::eu_summer_time(2024).0,
        counts: (0, 0),
    };
    sim::drive(&s, &mut engine, &mut sink);
    sink.counts
}

/// Regression: the daily profile was learned in UTC, so from the EU clock change on the
/// morning rise of every European geo came an hour "early" and scored high every morning
/// until the profile had re-learned it, days later. Indexed by the local clock
/// (`summer_time = "auto"`), the week after the change looks like the week before.
#[test]
fn the_morning_rise_after_the_clock_change_scores_as_it_did_before() {
    let (before, after) = morning_high_scores("auto");
    let (utc_before, utc_after) = morning_high_scores("none");
    eprintln!(
        "[summer time] morning buckets at z >= 4, week before / after the change: local clock \
         {before} / {after}, UTC {utc_before} / {utc_after}"
    );
    assert_eq!(before, utc_before, "nothing changes before the switch");
    assert!(4 * after <= 5 * before, "{after} vs {before} before");
    // What the local clock removes: on UTC the same mornings score high twice as often.
    assert!(
        2 * utc_after >= 3 * utc_before,
        "{utc_after} vs {utc_before} before"
    );
}
