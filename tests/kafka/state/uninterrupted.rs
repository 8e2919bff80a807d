//! The two-week run of the state tests ([`WeeksRun`]: fresh topics, the complaints of
//! [`weeks_scenario`], a changelog config), and [`assert_same_as_uninterrupted`]: what the
//! instances published and left in the changelog equals the engine run uninterrupted in-process.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{changelog_series, incidents, STATE_EXTRA};
use crate::common::*;
use spikewatch::config::Config;
use spikewatch::engine::{Engine, SeriesState};
use spikewatch::event::{AnomalyEvent, IncidentState, InputKind};
use spikewatch::sim::{Scenario, DAY_MS, HOUR_MS, MINUTE_MS};

/// The scenario's complaint messages in time order, keyed by service.
fn weeks_messages(s: &Scenario) -> Vec<Msg> {
    messages_of(s, i64::MAX, 5, |k| k == InputKind::Complaint)
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Same series, same windows and incidents, baselines equal within floating-point tolerance.
fn assert_same_state(a: &BTreeMap<String, SeriesState>, b: &BTreeMap<String, SeriesState>) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same series"
    );
    for (k, x) in a {
        let y = &b[k];
        if x == y {
            continue;
        }
        let (bx, by) = (&x.baseline, &y.baseline);
        let scalars = [
            (bx.level, by.level),
            (bx.base, by.base),
            (bx.dispersion, by.dispersion),
            (bx.acc_x, by.acc_x),
            (bx.acc_base, by.acc_base),
        ];
        assert!(
            scalars.iter().all(|&(p, q)| close(p, q))
                && bx.learned_buckets == by.learned_buckets
                && bx.daily.len() == by.daily.len()
                && bx
                    .daily
                    .iter()
                    .chain(&bx.weekly)
                    .zip(by.daily.iter().chain(&by.weekly))
                    .all(|(&p, &q)| close(p as f64, q as f64)),
            "baseline of {k} differs:\n{bx:?}\n{by:?}"
        );
        assert_eq!(x.window, y.window, "window of {k}");
        assert_eq!(x.tracker.open.is_some(), y.tracker.open.is_some(), "{k}");
    }
}

/// Both kinds of engine output.
#[derive(Default)]
struct Both {
    events: Vec<AnomalyEvent>,
    outages: Vec<spikewatch::event::OutageEvent>,
}

impl spikewatch::engine::EngineSink for Both {
    fn anomaly(&mut self, e: AnomalyEvent) {
        self.events.push(e);
    }
    fn outage(&mut self, e: spikewatch::event::OutageEvent) {
        self.outages.push(e);
    }
}

/// The two-week stream of [`weeks_scenario`] (complaints only), on fresh topics with a
/// changelog config for instances of `spikewatch run`.
pub(crate) struct WeeksRun {
    pub(crate) b: String,
    pub(crate) n: Names,
    pub(crate) msgs: Vec<Msg>,
    pub(crate) outages: [(&'static str, i64); 2],
    /// End of the stream.
    pub(crate) end: i64,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) cfg: std::path::PathBuf,
}

impl WeeksRun {
    pub(crate) fn new(name: &str) -> Self {
        let b = brokers();
        let n = Names::new(name);
        create_topics(&b, &n);
        let (s, outages) = weeks_scenario();
        let msgs = weeks_messages(&s);
        let end = s.start_ms + s.days as i64 * DAY_MS;
        let dir = tmpdir();
        let cfg = write_config(dir.path(), &b, &n, STATE_EXTRA);
        Self {
            b,
            n,
            msgs,
            outages,
            end,
            dir,
            cfg,
        }
    }
}

/// What the instances published and left in the changelog equals what the engine alone
/// does over `msgs` uninterrupted, its last buckets closed by the markers' time (`end` + 1 h)
/// like the pipeline's (each series' state does not depend on how services are spread over
/// partitions): the same outage events, the same series incident events (every known outage
/// detected), the same state of every series. `running` is stopped (SIGTERM) once its outage
/// events are all out: committed input offsets do not mean closed buckets (a restored
/// partition's topic without any event holds its watermark for `idle_timeout`, and the state
/// saved then has those buckets still open). `logs`: the instances' logs, summarised when the
/// outage events differ.
pub(crate) fn assert_same_as_uninterrupted(
    b: &str,
    n: &Names,
    (msgs, end): (&[Msg], i64),
    outages: &[(&str, i64)],
    running: &mut Instance,
    logs: &[std::path::PathBuf],
) {
    let mut engine = Engine::new(Config::default());
    let mut sink = Both::default();
    let mut newest = i64::MIN;
    for m in msgs {
        let ev = spikewatch::event::decode(m.kind, &m.payload).unwrap();
        newest = newest.max(ev.ts().millis());
        engine.observe_event(&ev).unwrap();
        engine.advance(newest, &mut sink);
    }
    engine.advance(end + HOUR_MS, &mut sink);
    let events = sink.events;
    // One outage incident per outage, the same events as uninterrupted.
    let want_outages: BTreeMap<(String, u64), (IncidentState, String)> = sink
        .outages
        .iter()
        .map(|e| {
            (
                (e.outage_id.clone(), e.seq),
                (e.state, e.as_of.to_rfc3339()),
            )
        })
        .collect();
    assert!(!want_outages.is_empty());
    let t0 = std::time::Instant::now();
    let mut got_outages = crate::common::outages(&read_all(b, &n.outages));
    while got_outages != want_outages && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(1));
        got_outages = crate::common::outages(&read_all(b, &n.outages));
    }
    running.signal("TERM");
    assert!(running.wait(Duration::from_secs(30)).success());
    if got_outages != want_outages {
        // What each instance did, to tell a lost event from a wrong one.
        let lives: Vec<String> = logs
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| {
                        l.contains("outage event")
                            || l.contains("restored")
                            || l.contains("ERROR")
                            || l.contains("WARN")
                    })
                    .collect();
                format!("--- {}\n{}", path.display(), lines.join("\n"))
            })
            .collect();
        panic!(
            "outage events differ\n  got: {got_outages:?}\n  uninterrupted: {want_outages:?}\n{}",
            lives.join("\n")
        );
    }
    let got = incidents(b, &n.anomalies);
    let want: BTreeMap<(String, u64), (IncidentState, String)> = dedup(&events)
        .into_iter()
        .map(|(k, e)| (k, (e.state, e.bucket_start.to_rfc3339())))
        .collect();
    for &(service, onset) in outages {
        assert!(
            want.iter().any(|((id, _), (st, _))| id.starts_with(service)
                && *st == IncidentState::Opened
                && id.contains("/IT-")
                && spikewatch::event::Timestamp::parse_rfc3339(id.rsplit('/').next().unwrap())
                    .is_ok_and(|t| (t.millis() - onset).abs() <= 10 * MINUTE_MS)),
            "{service} outage at {onset} not detected: {want:?}"
        );
    }
    let only_got: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let only_ref: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(
        only_got.is_empty() && only_ref.is_empty(),
        "incident events only published: {only_got:?}; only uninterrupted: {only_ref:?}"
    );
    assert_eq!(got, want, "incident events");
    // The markers (test scaffolding that closes the last buckets) are not part of the input
    // the engine alone saw.
    let real = |m: BTreeMap<String, SeriesState>| -> BTreeMap<String, SeriesState> {
        m.into_iter()
            .filter(|(k, _)| !k.starts_with("zz-marker"))
            .collect()
    };
    let (got_state, want_state) = (
        real(changelog_series(b, &n.changelog)),
        real(
            engine
                .export_series()
                .into_iter()
                .map(|s| (s.key(), s))
                .collect(),
        ),
    );
    assert!(got_state.len() >= 10, "{:?}", got_state.keys());
    assert_same_state(&got_state, &want_state);
}
