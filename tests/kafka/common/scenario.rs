//! The generated input: the 5-hour scenario with one outage, the two-week chaos scenario,
//! their wire messages ([`Msg`]) and what the engine alone makes of them (`oracle`).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use spikewatch::config::Config;
use spikewatch::engine::Engine;
use spikewatch::event::{decode, AnomalyEvent, InputEvent, InputKind};
use spikewatch::sim::{self, Outage, Scenario, ServiceSpec, DAY_MS, HOUR_MS, MINUTE_MS};

/// One input message.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    pub(crate) kind: InputKind,
    pub(crate) key: String,
    pub(crate) payload: Vec<u8>,
}

/// A small, fast scenario: four services over Italian cities from Monday 09:00 local time
/// (flat daytime traffic), 5 hours, with Telegram down in Rome and Milan from 3 h to 3 h 30.
pub(crate) fn scenario() -> (Scenario, i64, i64) {
    let start = sim::DEMO_START_MS + 8 * HOUR_MS;
    let onset = start + 3 * HOUR_MS;
    let end = onset + 30 * MINUTE_MS;
    let p = sim::presence;
    let services = ["telegram", "spotify", "google", "libero-mail"]
        .into_iter()
        .map(|name| ServiceSpec {
            name,
            presence: vec![p("IT-RM", 6.0, 4.0), p("IT-MI", 7.0, 4.5)],
        })
        .collect();
    let s = Scenario {
        start_ms: start,
        days: 1,
        seed: 7,
        bucket_ms: MINUTE_MS,
        services,
        outages: vec![Outage {
            label: "Telegram down in Rome and Milan",
            service: "telegram",
            geos: vec![("IT-RM", onset, end), ("IT-MI", onset, end)],
            complaints_factor: 10.0,
            mentions_factor: 10.0,
        }],
        realism: Default::default(),
    };
    (s, onset, end)
}

pub(crate) const SCENARIO_HOURS: i64 = 5;

/// The scenario's wire messages in time order (keyed by service).
pub(crate) fn scenario_messages() -> Vec<Msg> {
    let (s, _, _) = scenario();
    messages_of(&s, s.start_ms + SCENARIO_HOURS * HOUR_MS, 11, |_| true)
}

/// The wire messages (keyed by service) of `s` before `stop_ms`, in time order, of the input
/// kinds `keep` accepts; `seed` places mentions within their buckets.
pub(crate) fn messages_of(
    s: &Scenario,
    stop_ms: i64,
    seed: u64,
    keep: impl Fn(InputKind) -> bool,
) -> Vec<Msg> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    s.generate(|t, service, geo, signal, count| {
        if t >= stop_ms {
            return;
        }
        for ev in sim::expand_events(&mut rng, t, s.bucket_ms, service, geo, signal, count) {
            let (kind, payload) = match &ev {
                InputEvent::Mention(m) => (InputKind::Mention, serde_json::to_vec(m).unwrap()),
                InputEvent::Complaint(c) => (InputKind::Complaint, serde_json::to_vec(c).unwrap()),
            };
            if keep(kind) {
                out.push(Msg {
                    kind,
                    key: service.to_string(),
                    payload,
                });
            }
        }
    });
    out
}

/// What the engine alone makes of `msgs` (watermark = newest event time, as the pipeline's).
pub(crate) fn oracle(msgs: &[Msg]) -> Vec<AnomalyEvent> {
    let mut e = Engine::new(Config::default());
    let mut out = Vec::new();
    let mut newest = i64::MIN;
    for m in msgs {
        let ev = decode(m.kind, &m.payload).unwrap();
        newest = newest.max(ev.ts().millis());
        e.observe_event(&ev).unwrap();
        e.advance(newest, &mut out);
    }
    out
}

/// The event time of an input message.
pub(crate) fn event_ms(m: &Msg) -> i64 {
    decode(m.kind, &m.payload).unwrap().ts().millis()
}

/// The chaos scenario: two weeks of complaint counts for two services in three geos, with two known outages:
/// Telegram down in Rome and Milan for 3 hours on day 9, the mail service down in Italy for
/// 20 hours from day 12.
pub(crate) fn weeks_scenario() -> (Scenario, [(&'static str, i64); 2]) {
    let start = sim::DEMO_START_MS;
    let p = sim::presence;
    let telegram = start + 9 * DAY_MS + 10 * HOUR_MS;
    let mail = start + 12 * DAY_MS + 8 * HOUR_MS;
    let s = Scenario {
        start_ms: start,
        days: 15,
        seed: 21,
        bucket_ms: MINUTE_MS,
        services: ["telegram", "libero-mail"]
            .into_iter()
            .map(|name| ServiceSpec {
                name,
                presence: vec![
                    p("IT-RM", 0.0, 6.0),
                    p("IT-MI", 0.0, 5.0),
                    p("DE", 0.0, 4.0),
                ],
            })
            .collect(),
        outages: vec![
            Outage {
                label: "Telegram down in Rome and Milan",
                service: "telegram",
                geos: vec![
                    ("IT-RM", telegram, telegram + 3 * HOUR_MS),
                    ("IT-MI", telegram, telegram + 3 * HOUR_MS),
                ],
                complaints_factor: 12.0,
                mentions_factor: 1.0,
            },
            Outage {
                label: "Mail down in Italy",
                service: "libero-mail",
                geos: vec![
                    ("IT-RM", mail, mail + 20 * HOUR_MS),
                    ("IT-MI", mail, mail + 20 * HOUR_MS),
                ],
                complaints_factor: 10.0,
                mentions_factor: 1.0,
            },
        ],
        realism: Default::default(),
    };
    (s, [("telegram", telegram), ("libero-mail", mail)])
}
