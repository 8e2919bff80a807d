//! What an instance starts from: a changelog with a damaged record (reported, its series
//! rebuilt) and an `--initial-state` file (a new deployment alerts in its first hour).

use std::time::Duration;

use rdkafka::producer::FutureRecord;

use super::{changelog_series, incidents, plus_one, STATE_EXTRA};
use crate::common::*;
use spikewatch::config::Config;
use spikewatch::engine::Engine;
use spikewatch::event::{AnomalyEvent, IncidentState};
use spikewatch::kafka::changelog;
use spikewatch::kafka::KafkaSettings;
use spikewatch::sim::{self, Outage, Scenario, ServiceSpec, DAY_MS, HOUR_MS, MINUTE_MS};

#[test]
fn a_corrupt_changelog_record_is_reported_and_its_series_rebuilt() {
    let b = brokers();
    let n = Names::new("corrupt");
    create_topics(&b, &n);
    let msgs = scenario_messages();
    let half = msgs.len() / 2;
    produce(&b, &n, &msgs[..half]);
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &b, &n, STATE_EXTRA);
    let mut first = Instance::start(&cfg, dir.path().join("run1.log"));
    first.wait_for_log("partitions assigned", Duration::from_secs(60));
    // Markers with an impossible timestamp: dead-lettered, and committed once all before
    // them is in the changelog.
    let markers = plus_one(&produce_markers(&b, &n, 0));
    wait_committed(&b, &n, &markers, Duration::from_secs(60), &[&first]);
    first.signal("TERM");
    assert!(first.wait(Duration::from_secs(30)).success());

    // Damage the newest record of one series and write a record from a future format.
    let settings = KafkaSettings {
        brokers: b.clone(),
        group_id: "test-reader".into(),
        ..KafkaSettings::default()
    };
    let mut victim = None;
    for p in 0..PARTITIONS {
        let recs =
            changelog::read_partition(&settings, &n.changelog, p, Duration::from_secs(30)).unwrap();
        if let Some((k, v)) = recs
            .iter()
            .rev()
            .find(|(k, v)| k.ends_with(b"telegram/IT-RM/complaints") && v.is_some())
        {
            victim = Some((p, k.clone(), v.clone().unwrap()));
            break;
        }
    }
    let (p, key, mut value) = victim.expect("telegram/IT-RM/complaints is in the changelog");
    let last = value.len() - 1;
    value[last] ^= 0xff;
    let producer = producer(&b);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        producer
            .send(
                FutureRecord::to(&n.changelog)
                    .partition(p)
                    .key(&key)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("corrupt record produced");
    });

    produce(&b, &n, &msgs[half..]);
    let second = Instance::start(&cfg, dir.path().join("run2.log"));
    second.wait_for_log("changelog record unusable", Duration::from_secs(60));
    let markers = plus_one(&produce_markers(
        &b,
        &n,
        scenario().0.start_ms + SCENARIO_HOURS * HOUR_MS + 30 * MINUTE_MS,
    ));
    wait_committed(&b, &n, &markers, Duration::from_secs(120), &[&second]);
    let mut second = second;
    second.signal("TERM");
    assert!(second.wait(Duration::from_secs(30)).success());
    let log = second.log_text();
    assert!(
        log.contains("telegram/IT-RM/complaints") && log.contains("checksum"),
        "{log}"
    );
    // Rebuilt: the series exists again, and the damaged record no longer does.
    let series = changelog_series(&b, &n.changelog);
    assert!(
        series.contains_key("telegram/IT-RM/complaints"),
        "{series:?}"
    );
    // The outage in the second half is still detected.
    let got = incidents(&b, &n.anomalies);
    assert!(
        got.keys().any(|(id, _)| id.starts_with("telegram/IT-")),
        "{got:?}"
    );
}

#[test]
fn run_with_initial_state_alerts_in_the_first_hour_of_a_new_deployment() {
    use spikewatch::event::BaselineKind;
    let b = brokers();
    let n = Names::new("initstate");
    create_topics(&b, &n);
    let p = sim::presence;
    let services = vec![ServiceSpec {
        name: "telegram",
        presence: vec![p("IT-RM", 6.0, 4.0), p("IT-MI", 7.0, 4.5)],
    }];
    // Two weeks of history, learned by an engine (what `replay --save-state` writes).
    let history = Scenario {
        start_ms: sim::DEMO_START_MS,
        days: 14,
        seed: 3,
        bucket_ms: MINUTE_MS,
        services: services.clone(),
        outages: Vec::new(),
        realism: Default::default(),
    };
    let mut learned = Engine::new(Config::default());
    sim::drive(&history, &mut learned, &mut Vec::<AnomalyEvent>::new());
    let dir = tmpdir();
    let state = dir.path().join("state.bin");
    std::fs::write(&state, learned.save_state()).unwrap();

    // Live traffic a week later from 09:00; Telegram goes down 30 minutes in, well inside the
    // 60-bucket warm-up a cold deployment would need.
    let start = history.start_ms + 21 * DAY_MS + 9 * HOUR_MS;
    let onset = start + 30 * MINUTE_MS;
    let live = Scenario {
        start_ms: start,
        days: 1,
        seed: 4,
        bucket_ms: MINUTE_MS,
        services,
        outages: vec![Outage {
            label: "Telegram down in Rome and Milan",
            service: "telegram",
            geos: vec![
                ("IT-RM", onset, onset + HOUR_MS),
                ("IT-MI", onset, onset + HOUR_MS),
            ],
            complaints_factor: 10.0,
            mentions_factor: 10.0,
        }],
        realism: Default::default(),
    };
    let stop = onset + 50 * MINUTE_MS;
    let msgs = messages_of(&live, stop, 9, |_| true);
    produce(&b, &n, &msgs);
    let markers = plus_one(&produce_markers(&b, &n, stop + 10 * MINUTE_MS));
    let cfg = write_config(dir.path(), &b, &n, STATE_EXTRA);
    let seeded = Instance::start_with(
        &cfg,
        dir.path().join("run.log"),
        &["--initial-state".as_ref(), state.as_os_str()],
    );
    wait_committed(&b, &n, &markers, Duration::from_secs(120), &[&seeded]);
    let log = seeded.log_text();
    assert!(
        log.contains("initial state: new series start from these baselines"),
        "{log}"
    );
    // Until Rome's opened event is out (reading until the first `opened` event once returned
    // IT's before Rome's; committed offsets alone do not mean closed buckets).
    let rome_opened = |r: &[Record]| {
        anomalies(r)
            .iter()
            .any(|e| e.geo == "IT-RM" && e.state == IncidentState::Opened)
    };
    let events = anomalies(&read_topic(
        &b,
        &n.anomalies,
        Duration::from_secs(60),
        rome_opened,
    ));
    let opened: Vec<(&str, BaselineKind, i64)> = events
        .iter()
        .filter(|e| e.state == IncidentState::Opened && e.service == "telegram")
        .map(|e| (e.geo.as_str(), e.baseline, e.bucket_start.millis()))
        .collect();
    assert!(
        opened.iter().any(|(g, k, t)| *g == "IT-RM"
            && *k == BaselineKind::Seasonal
            && *t < onset + 10 * MINUTE_MS),
        "no seasonal-baseline incident for Rome within 10 minutes of the onset: {opened:?}\n{log}"
    );
}
