//! The library side of `spikewatch demo`: run the engine over a generated [`Scenario`], turn
//! its anomaly events into incidents, match them to the injected outages and render a
//! timeline a person can read, plus plot panels of the key series.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use chrono::DateTime;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::Config;
use crate::engine::settings::GeoSettings;
use crate::engine::{BucketReport, Engine, EngineSink, EngineStats, Observation};
use crate::event::{AnomalyEvent, InputEvent, OutageEvent, Severity};
use crate::plot::{Panel, PlotPoint};
use crate::sim::{self, expand_events, IncidentSummary, Outage, OutageReport, Scenario};

/// End of an incident, or `end_ms` if it was still open.
fn end_or(i: &IncidentSummary, end_ms: i64) -> i64 {
    i.resolved_at_ms.unwrap_or(end_ms)
}

/// `*` is 0, `IT` 1, `IT-RM` 2 (the default hierarchy: scenarios configure no parents).
pub fn geo_depth(geo: &str) -> usize {
    GeoSettings::default().depth(geo)
}

/// Whether `a` is `b` or one of its ancestors by the default roll-up (`IT` ⊃ `IT-RM`, `*` ⊃ all).
pub fn geo_covers(a: &str, b: &str) -> bool {
    GeoSettings::default().covers(a, b)
}

/// The geo a plot or a summary of an outage looks at: the lowest common roll-up of its geos.
pub fn outage_top_geo(o: &Outage) -> String {
    let geo = GeoSettings::default();
    let Some(first) = o.geos.first() else {
        return "*".into();
    };
    geo.lineage(first.0)
        .into_iter()
        .find(|top| o.geos.iter().all(|g| geo.covers(top, g.0)))
        .unwrap_or("*")
        .to_string()
}

/// A displayed incident with the incidents of its child geos folded in.
#[derive(Debug, Clone)]
pub struct IncidentGroup {
    pub top: IncidentSummary,
    /// Child geos that had their own incident in the same period.
    pub children: BTreeSet<String>,
    /// Child geos whose own incident resolved well after this one (`None`: still open at
    /// the end), by geo: geographies recover at different times.
    pub recovered_later: BTreeMap<String, Option<i64>>,
}

/// A child resolving within this long of its roll-up recovered "at the same time".
const LATER_RECOVERY_MS: i64 = 30 * 60_000;

/// Collapses city- and country-level incidents under an overlapping incident of a higher geo
/// of the same service and signal.
pub fn collapse(incidents: &[IncidentSummary], end_ms: i64) -> Vec<IncidentGroup> {
    let mut order: Vec<&IncidentSummary> = incidents.iter().collect();
    order.sort_by_key(|i| (geo_depth(&i.geo), i.opened_at_ms));
    let mut groups: Vec<IncidentGroup> = Vec::new();
    for inc in order {
        let parent = groups.iter_mut().find(|g| {
            g.top.service == inc.service
                && g.top.signal == inc.signal
                && g.top.geo != inc.geo
                && geo_covers(&g.top.geo, &inc.geo)
                && inc.opened_at_ms < end_or(&g.top, end_ms)
                && end_or(inc, end_ms) > g.top.opened_at_ms
        });
        match parent {
            Some(g) => {
                g.children.insert(inc.geo.clone());
                if let Some(top_end) = g.top.resolved_at_ms {
                    let later = match inc.resolved_at_ms {
                        Some(end) if end > top_end + LATER_RECOVERY_MS => Some(Some(end)),
                        Some(_) => None,
                        None => Some(None),
                    };
                    if let Some(end) = later {
                        let e = g.recovered_later.entry(inc.geo.clone()).or_insert(end);
                        *e = match (*e, end) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            _ => None,
                        };
                    }
                }
            }
            None => groups.push(IncidentGroup {
                top: inc.clone(),
                children: inc.child_geos.iter().cloned().collect(),
                recovered_later: BTreeMap::new(),
            }),
        }
    }
    groups.sort_by_key(|g| (g.top.opened_at_ms, g.top.geo.clone(), g.top.signal.clone()));
    groups
}

/// What became of one injected outage, for display.
#[derive(Debug, Clone)]
pub struct OutageResult {
    pub report: OutageReport,
    /// Its incidents, city-level ones folded under their roll-up.
    pub groups: Vec<IncidentGroup>,
    /// From the onset to the end of the bucket whose event first announced it.
    pub delay_ms: Option<i64>,
}

/// The demo's verdict: [`sim::evaluate`]'s matching, grouped for display.
#[derive(Debug, Clone)]
pub struct DemoEvaluation {
    pub outages: Vec<OutageResult>,
    pub false_alarms: Vec<IncidentGroup>,
    /// False alarms before folding child geos (what the summary line counts).
    pub false_alarm_incidents: usize,
    pub bucket_ms: i64,
    /// End of the generated stream (incidents still open are open "at the end").
    pub end_ms: i64,
    /// The outage incidents held against the injected outages (when outage events are known).
    pub grouping: Option<sim::OutageGrouping>,
}

impl DemoEvaluation {
    pub fn detected(&self) -> usize {
        self.outages.iter().filter(|o| o.report.detected()).count()
    }

    /// Median detection delay over detected outages.
    pub fn median_delay_ms(&self) -> Option<i64> {
        let mut d: Vec<i64> = self.outages.iter().filter_map(|o| o.delay_ms).collect();
        if d.is_empty() {
            return None;
        }
        d.sort_unstable();
        let n = d.len();
        Some(if n % 2 == 1 {
            d[n / 2]
        } else {
            (d[n / 2 - 1] + d[n / 2]) / 2
        })
    }
}

/// Matches incidents to the scenario's outages ([`sim::evaluate`]) and folds child geos.
pub fn evaluate(scenario: &Scenario, events: &[AnomalyEvent]) -> DemoEvaluation {
    evaluate_until(scenario, events, scenario.end_ms())
}

/// [`evaluate`] for a stream stopped at `end_ms` (see [`RunOptions::until_ms`]).
pub fn evaluate_until(scenario: &Scenario, events: &[AnomalyEvent], end_ms: i64) -> DemoEvaluation {
    let end = end_ms;
    let ev = sim::evaluate(scenario, events);
    let outages = ev
        .outages
        .into_iter()
        .map(|r| OutageResult {
            groups: collapse(&r.incidents, end),
            delay_ms: r.delay_buckets.map(|b| b * scenario.bucket_ms),
            report: r,
        })
        .collect();
    DemoEvaluation {
        outages,
        false_alarms: collapse(&ev.false_alarms, end),
        false_alarm_incidents: ev.false_alarms.len(),
        bucket_ms: scenario.bucket_ms,
        end_ms: end,
        grouping: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Running a scenario.

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

// ---------------------------------------------------------------------------------------------
// The timeline.

/// ANSI styling, or none.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn red(&self, s: &str) -> String {
        self.paint("1;31", s)
    }
    fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}

/// `Wed 17 Jan 14:10 UTC`.
pub fn fmt_when(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%a %d %b %H:%M UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// `14:10` on the same day as `since`, else the full date.
fn fmt_when_after(ms: i64, since: i64) -> String {
    let day = |t: i64| t.div_euclid(86_400_000);
    if day(ms) == day(since) {
        DateTime::from_timestamp_millis(ms)
            .map(|d| d.format("%H:%M").to_string())
            .unwrap_or_default()
    } else {
        fmt_when(ms)
    }
}

pub use crate::domain::fmt_duration;

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Minor => "minor",
        Severity::Major => "major",
        Severity::Critical => "critical",
    }
}

fn write_group(out: &mut String, g: &IncidentGroup, end_ms: i64, st: Style) {
    let i = &g.top;
    let sev = severity_name(i.severity);
    let sev = match i.severity {
        Severity::Critical => st.red(sev),
        Severity::Major => st.yellow(sev),
        Severity::Minor => sev.to_string(),
    };
    let until = match i.resolved_at_ms {
        Some(r) => format!(
            "resolved {} ({})",
            fmt_when_after(r, i.opened_at_ms),
            fmt_duration(r - i.opened_at_ms)
        ),
        None => format!(
            "still open at the end ({}+)",
            fmt_duration(end_ms - i.opened_at_ms)
        ),
    };
    let _ = writeln!(
        out,
        "  {} {}/{} {:<10} opened {}, {until}, {sev}",
        st.bold("●"),
        st.bold(&i.service),
        st.bold(&i.geo),
        i.signal,
        fmt_when(i.opened_at_ms),
    );
    let updates = i
        .events
        .saturating_sub(1 + i.resolved_at_ms.is_some() as usize);
    let _ = writeln!(
        out,
        "      peak z {:.1} at {} ({:.0} observed vs {:.0} expected); {updates} update(s), {} reopen(s)",
        i.peak_zscore,
        fmt_when_after(i.peak_at_ms, i.opened_at_ms),
        i.peak_observed,
        i.expected_at_peak,
        i.reopened
    );
    if !g.children.is_empty() {
        let kids: Vec<&str> = g.children.iter().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "      {}",
            st.dim(&format!("geos: {}", kids.join(", ")))
        );
    }
    if !g.recovered_later.is_empty() {
        let mut later: Vec<(&String, &Option<i64>)> = g.recovered_later.iter().collect();
        later.sort_by_key(|(_, end)| end.unwrap_or(i64::MAX));
        let list: Vec<String> = later
            .iter()
            .map(|(geo, end)| match end {
                Some(t) => format!("{geo} {}", fmt_when_after(*t, i.opened_at_ms)),
                None => format!("{geo} still open"),
            })
            .collect();
        let _ = writeln!(
            out,
            "      {}",
            st.yellow(&format!("recovered later: {}", list.join(", ")))
        );
    }
    if !i.concurrent_services.is_empty() {
        let others: Vec<&str> = i.concurrent_services.iter().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "      {}",
            st.yellow(&format!("same time, same geo: {}", others.join(", ")))
        );
    }
}

/// The readable incident timeline: per injected outage its incidents (city-level ones folded
/// under their roll-up), missed outages and false alarms marked, and a summary line.
pub fn render_timeline(scenario: &Scenario, ev: &DemoEvaluation, st: Style) -> String {
    let mut out = String::new();
    let end = ev.end_ms.min(scenario.end_ms());
    let bucket = ev.bucket_ms.max(1);
    for (i, r) in ev.outages.iter().enumerate() {
        let o = &r.report;
        let _ = writeln!(
            out,
            "{}",
            st.bold(&format!(
                "▶ {} — injected {} → {} ({})",
                o.label,
                fmt_when(o.start_ms),
                fmt_when_after(o.end_ms, o.start_ms),
                fmt_duration(o.end_ms - o.start_ms)
            ))
        );
        match r.delay_ms {
            Some(d) => {
                let _ = writeln!(
                    out,
                    "  {}",
                    st.green(&format!(
                        "✓ detected {} after onset ({} bucket(s))",
                        fmt_duration(d),
                        d.div_euclid(bucket)
                    ))
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  {}",
                    st.red("✗ MISSED: no incident opened for this outage")
                );
            }
        }
        if let Some((_, found)) = ev.grouping.as_ref().and_then(|g| g.per_outage.get(i)) {
            match found.as_slice() {
                [] => {}
                [x] => {
                    let _ = writeln!(
                        out,
                        "  {}",
                        st.bold(&format!(
                            "one outage incident {}: {} event(s), {} in {}, {}{}",
                            x.outage_id,
                            x.events,
                            x.signals.join(" + "),
                            x.geos.join(", "),
                            match x.resolved_at_ms {
                                Some(t) =>
                                    format!("resolved {}", fmt_when_after(t, x.opened_at_ms)),
                                None => "open at the end".to_string(),
                            },
                            if x.reopened > 0 {
                                format!(", came back {} time(s)", x.reopened)
                            } else {
                                String::new()
                            }
                        ))
                    );
                }
                many => {
                    let ids: Vec<&str> = many.iter().map(|x| x.outage_id.as_str()).collect();
                    let _ = writeln!(
                        out,
                        "  {}",
                        st.red(&format!(
                            "⚠ split into {} outage incidents: {}",
                            many.len(),
                            ids.join(", ")
                        ))
                    );
                }
            }
            let _ = writeln!(out, "  the series incidents behind it:");
        }
        for g in &r.groups {
            write_group(&mut out, g, end, st);
        }
        out.push('\n');
    }
    if ev.false_alarms.is_empty() {
        let _ = writeln!(out, "{}", st.green("No false alarms."));
    } else {
        let _ = writeln!(
            out,
            "{}",
            st.red(&format!(
                "⚠ {} false alarm(s): incidents matching no injected outage{}",
                ev.false_alarm_incidents,
                if ev.false_alarms.len() < ev.false_alarm_incidents {
                    format!(
                        " (shown as {} after folding child geos)",
                        ev.false_alarms.len()
                    )
                } else {
                    String::new()
                }
            ))
        );
        for g in &ev.false_alarms {
            write_group(&mut out, g, end, st);
        }
    }
    out.push('\n');
    if let Some(g) = &ev.grouping {
        let minor = g
            .false_outages
            .iter()
            .filter(|o| o.severity == Severity::Minor)
            .count();
        let _ = writeln!(
            out,
            "{}",
            st.bold(&format!(
                "Outage incidents: {} for {} injected outage(s) (split: {}, merged: {}); {} matching no injected outage ({minor} of them minor: one signal only)",
                g.per_outage.iter().map(|(_, v)| v.len()).sum::<usize>(),
                g.per_outage.len(),
                g.split().len(),
                g.merged().len(),
                g.false_outages.len(),
            ))
        );
    }
    let median = ev.median_delay_ms().map_or("n/a".to_string(), fmt_duration);
    let _ = writeln!(
        out,
        "{}",
        st.bold(&format!(
            "Summary: outages detected {}/{}, median detection delay {median}, false alarms {}",
            ev.detected(),
            ev.outages.len(),
            ev.false_alarm_incidents
        ))
    );
    out
}
