//! The library side of `spikewatch demo`: run the engine over a generated [`Scenario`], turn
//! its anomaly events into incidents, match them to the injected outages and render a
//! timeline a person can read, plus plot panels of the key series.
//!
//! Here: running a scenario. `evaluate` holds the matching of incidents to the injected outages
//! and the folding of child geos; `timeline` renders the readable timeline.

mod evaluate;
mod timeline;

use std::io::{self, Write};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::Config;
use crate::engine::{BucketReport, Engine, EngineSink, EngineStats, Observation};
use crate::event::{AnomalyEvent, InputEvent, OutageEvent};
use crate::plot::{Panel, PlotPoint};
use crate::sim::{self, expand_events, IncidentSummary, Scenario};

pub use crate::domain::fmt_duration;
pub use evaluate::{
    collapse, evaluate, evaluate_until, geo_covers, geo_depth, outage_top_geo, DemoEvaluation,
    IncidentGroup, OutageResult,
};
pub use timeline::{fmt_when, render_timeline, Style};

/// One series kept for a plot, within a time window.
#[derive(Debug, Clone)]
struct Capture {
    service: String,
    geo: String,
    signal: String,
    from: i64,
    to: i64,
    open_z: f64,
    title: String,
    truth: (i64, i64),
    points: Vec<PlotPoint>,
}

#[derive(Default)]
struct DemoSink<'a> {
    anomalies: Vec<AnomalyEvent>,
    outages: Vec<OutageEvent>,
    captures: Vec<Capture>,
    /// Gets every bucket report and anomaly event too (e.g. a status board).
    tee: Option<&'a mut dyn EngineSink>,
}

impl EngineSink for DemoSink<'_> {
    fn bucket(&mut self, r: &BucketReport<'_>) {
        if let Some(t) = self.tee.as_deref_mut() {
            t.bucket(r);
        }
        for c in &mut self.captures {
            if r.start_ms >= c.from
                && r.start_ms < c.to
                && c.service == r.service
                && c.geo == r.geo
                && c.signal == r.signal
            {
                c.points.push(PlotPoint {
                    start_ms: r.start_ms,
                    end_ms: r.end_ms,
                    observed: r.observed,
                    expected: r.expected,
                    band: c.open_z * r.scale,
                    alert: r.alert,
                });
            }
        }
    }
    fn anomaly(&mut self, event: AnomalyEvent) {
        if let Some(t) = self.tee.as_deref_mut() {
            t.anomaly(event.clone());
        }
        self.anomalies.push(event);
    }
    fn outage(&mut self, event: OutageEvent) {
        if let Some(t) = self.tee.as_deref_mut() {
            t.outage(event.clone());
        }
        self.outages.push(event);
    }
}

/// Options of [`run_scenario_with`].
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Stop the generated stream at this event time (buckets starting at or after it are not
    /// generated): e.g. in the middle of an outage, so that incidents are still open. Buckets
    /// before it are all closed and scored; open incidents stay open.
    pub until_ms: Option<i64>,
    /// Also receives every bucket report and anomaly event (e.g. a
    /// [`crate::status::StatusBoard`]).
    pub tee: Option<&'a mut dyn EngineSink>,
}

/// Everything a demo run produced.
#[derive(Debug, Clone)]
pub struct DemoRun {
    pub anomalies: Vec<AnomalyEvent>,
    /// Outage events (one outage of a service over all its geos and signals).
    pub outages: Vec<OutageEvent>,
    pub incidents: Vec<IncidentSummary>,
    pub evaluation: DemoEvaluation,
    /// One panel per injected outage: its top roll-up geo, complaints, ±12 h around it.
    pub panels: Vec<Panel>,
    pub stats: EngineStats,
    /// The engine at the end of the run.
    pub gauges: EngineGauges,
    pub observations: u64,
    pub wire_events_written: u64,
    pub elapsed: Duration,
    /// Where the generated stream ended: the scenario's end, or [`RunOptions::until_ms`].
    pub end_ms: i64,
}

/// What an engine holds at one moment (the gauges of `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineGauges {
    pub series: u64,
    pub open_incidents: u64,
    pub state_bytes: u64,
}

/// Keeps only the outages that start inside the scenario. A scenario too short for any of
/// them gets its first one moved to two days before its end, same time of day, so every demo
/// length shows an outage (the engine alerts from its second day on).
pub fn fit_outages(mut s: Scenario) -> Scenario {
    let end = s.end_ms();
    let first = s.outages.first().cloned();
    s.outages.retain(|o| o.start_ms() < end);
    if let (true, Some(mut o), true) = (s.outages.is_empty(), first, s.days >= 3) {
        let day = sim::DAY_MS;
        let start = o.start_ms();
        let target = s.start_ms + (s.days as i64 - 2) * day + start.rem_euclid(day);
        let shift = target - start;
        for g in &mut o.geos {
            g.1 += shift;
            g.2 += shift;
        }
        s.outages.push(o);
    }
    s
}

/// The scenario's injected outages as a known-outages file for `replay --known-outages`
/// (`service,start,end,label`; each outage from its first geo's onset to its last geo's
/// recovery).
pub fn known_outages_csv(scenario: &Scenario) -> String {
    let mut out = String::from("service,start,end,label\n");
    for o in &scenario.outages {
        // The label as a CSV field: quoted, inner quotes doubled.
        out.push_str(&format!(
            "{},{},{},\"{}\"\n",
            o.service,
            crate::event::Timestamp(o.start_ms()),
            crate::event::Timestamp(o.end_ms()),
            o.label.replace('"', "\"\"")
        ));
    }
    out
}

/// Runs the engine over the scenario: per bucket, `observe` each count (equivalent to its
/// individual events) and `advance` the watermark to the bucket's start. With `jsonl`, also
/// writes the traffic as wire events (one JSON object per line).
pub fn run_scenario(
    scenario: &Scenario,
    config: Config,
    jsonl: Option<&mut dyn Write>,
) -> io::Result<DemoRun> {
    run_scenario_with(scenario, config, jsonl, RunOptions::default())
}

/// [`run_scenario`], optionally stopped early and feeding another sink too.
pub fn run_scenario_with(
    scenario: &Scenario,
    config: Config,
    mut jsonl: Option<&mut dyn Write>,
    opts: RunOptions<'_>,
) -> io::Result<DemoRun> {
    let started = Instant::now();
    let end_ms = opts
        .until_ms
        .map_or(scenario.end_ms(), |u| u.min(scenario.end_ms()));
    let mut engine = Engine::new(config.clone());
    let mut sink = DemoSink {
        tee: opts.tee,
        ..DemoSink::default()
    };
    for o in &scenario.outages {
        let geo = outage_top_geo(o);
        let signal = crate::event::SIGNAL_COMPLAINTS;
        let pad = 12 * 3_600_000;
        sink.captures.push(Capture {
            open_z: config.resolve(o.service, &geo, signal).open_z,
            title: format!("{} — {}/{geo}/{signal}", o.label, o.service),
            service: o.service.to_string(),
            geo,
            signal: signal.to_string(),
            from: o.start_ms() - pad,
            to: o.end_ms() + pad,
            truth: (o.start_ms(), o.end_ms()),
            points: Vec::new(),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x005e_ed0f_e7e1);
    let mut current = i64::MIN;
    let mut observations = 0u64;
    let mut written = 0u64;
    let mut io_error: Option<io::Error> = None;
    let mut line = Vec::with_capacity(256);
    scenario.generate(|t, service, geo, signal, count| {
        if t >= end_ms {
            return;
        }
        if t != current {
            engine.advance(t, &mut sink);
            current = t;
        }
        observations += 1;
        if count == 0 {
            // As `sim::drive`: an empty bucket is no observation (nothing to write either).
            return;
        }
        // Generated names and times are valid by construction.
        let _ = engine.observe(Observation {
            service,
            geo,
            signal: signal.name(),
            ts_ms: t,
            amount: count as f64,
        });
        if let (Some(w), None) = (jsonl.as_deref_mut(), &io_error) {
            for ev in expand_events(&mut rng, t, scenario.bucket_ms, service, geo, signal, count) {
                line.clear();
                let r = match &ev {
                    InputEvent::Mention(m) => serde_json::to_writer(&mut line, m),
                    InputEvent::Complaint(c) => serde_json::to_writer(&mut line, c),
                };
                line.push(b'\n');
                match r.map_err(io::Error::from).and_then(|()| w.write_all(&line)) {
                    Ok(()) => written += 1,
                    Err(e) => {
                        io_error = Some(e);
                        break;
                    }
                }
            }
        }
    });
    if let Some(e) = io_error {
        return Err(e);
    }
    if let Some(w) = jsonl {
        w.flush()?;
    }
    engine.finish(&mut sink);
    let incidents = sim::summarize(&sink.anomalies);
    let mut evaluation = evaluate_until(scenario, &sink.anomalies, end_ms);
    evaluation.grouping = Some(sim::group_outages(scenario, &sink.outages));
    let panels = sink
        .captures
        .into_iter()
        .map(|c| {
            let mut p = Panel::new(c.title, c.points);
            p.truth.push(c.truth);
            p
        })
        .collect();
    Ok(DemoRun {
        anomalies: sink.anomalies,
        outages: sink.outages,
        incidents,
        evaluation,
        panels,
        stats: engine.stats().clone(),
        gauges: EngineGauges {
            series: engine.series_count() as u64,
            open_incidents: engine.open_incidents() as u64,
            state_bytes: engine.state_bytes() as u64,
        },
        observations,
        wire_events_written: written,
        elapsed: started.elapsed(),
        end_ms,
    })
}
