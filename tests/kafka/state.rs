//! Durable state against a real Kafka-protocol broker (`SPIKEWATCH_TEST_BROKERS`;
//! `scripts/test.sh` starts tansu): the changelog makes SIGKILLs, rebalances and damaged
//! records invisible in the results. They fail, never skip, when no broker is running.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdkafka::producer::FutureRecord;

use crate::common::*;
use spikewatch::config::Config;
use spikewatch::engine::{Engine, SeriesState};
use spikewatch::event::{AnomalyEvent, IncidentState, InputKind};
use spikewatch::kafka::changelog;
use spikewatch::kafka::KafkaSettings;
use spikewatch::sim::{self, Outage, Scenario, ServiceSpec, DAY_MS, HOUR_MS, MINUTE_MS};

/// Fast changelog checkpoints so that kills land between them.
const STATE_EXTRA: &str = "changelog_interval_ms = 300";

/// The scenario's complaint messages in time order, keyed by service.
fn weeks_messages(s: &Scenario) -> Vec<Msg> {
    messages_of(s, i64::MAX, 5, |k| k == InputKind::Complaint)
}

fn plus_one(m: &BTreeMap<(String, i32), i64>) -> BTreeMap<(String, i32), i64> {
    m.iter().map(|(k, v)| (k.clone(), v + 1)).collect()
}

/// Every series in a changelog topic, as of its last commit, by key.
fn changelog_series(brokers: &str, topic: &str) -> BTreeMap<String, SeriesState> {
    let settings = KafkaSettings {
        brokers: brokers.to_string(),
        group_id: "test-reader".into(),
        ..KafkaSettings::default()
    };
    let mut out = BTreeMap::new();
    for p in 0..PARTITIONS {
        let records = changelog::read_partition(&settings, topic, p, Duration::from_secs(30))
            .expect("read changelog");
        let mut r = changelog::restore(records);
        assert!(r.unusable.is_empty(), "{:?}", r.unusable);
        let Some(commit) = r.commit.take() else {
            continue;
        };
        let mut e = Engine::new(Config::default());
        let report = e.restore_layout(commit.layout, std::mem::take(&mut r.series));
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        for s in e.export_series() {
            out.insert(s.key(), s);
        }
    }
    out
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

/// (incident id, seq) → (state, bucket start) of every anomaly event on a topic.
fn incidents(brokers: &str, topic: &str) -> BTreeMap<(String, u64), (IncidentState, String)> {
    let events: Vec<AnomalyEvent> = anomalies(&read_all(brokers, topic));
    dedup(&events)
        .into_iter()
        .map(|(k, e)| (k, (e.state, e.bucket_start.to_rfc3339())))
        .collect()
}

/// Waits until the group's committed offsets on the complaints topic add up to `n` messages.
fn wait_processed(brokers: &str, n: &Names, count: i64, instance: &Instance) {
    let t0 = std::time::Instant::now();
    let mut done = 0;
    while t0.elapsed() < Duration::from_secs(120) {
        done = committed(brokers, n)
            .iter()
            .filter(|((t, _), _)| *t == n.complaints)
            .map(|(_, o)| o)
            .sum::<i64>();
        if done >= count {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{done} of {count} messages committed in 120 s\n{}",
        instance.log_text()
    );
}

/// The two-week stream of [`weeks_scenario`] (complaints only), on fresh topics with a
/// changelog config for instances of `spikewatch run`.
struct WeeksRun {
    b: String,
    n: Names,
    msgs: Vec<Msg>,
    outages: [(&'static str, i64); 2],
    /// End of the stream.
    end: i64,
    dir: tempfile::TempDir,
    cfg: std::path::PathBuf,
}

impl WeeksRun {
    fn new(name: &str) -> Self {
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

#[test]
fn chaos_sigkills_give_the_same_incidents_and_baselines_as_an_uninterrupted_engine() {
    let WeeksRun {
        b,
        n,
        msgs,
        outages,
        end,
        dir,
        cfg,
    } = WeeksRun::new("chaos");
    let mut chaos = Instance::start(&cfg, dir.path().join("chaos-0.log"));

    // Fixed seed: the same kill points every run. Each kill lands a few milliseconds after
    // a chunk was produced, while it is being processed or between changelog checkpoints.
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let chunks = 12;
    let kill_after = [2, 5, 8, 9];
    let size = msgs.len().div_ceil(chunks);
    let mut kills = 0;
    for (i, chunk) in msgs.chunks(size).enumerate() {
        produce(&b, &n, chunk);
        if kill_after.contains(&i) {
            // Each life does real work: it has processed and committed everything before
            // this chunk and some of it (a kill during the group join or the restore tests
            // nothing but a restart).
            wait_processed(&b, &n, (i * size) as i64 + 1, &chaos);
            std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
            chaos.signal("KILL");
            chaos.wait(Duration::from_secs(10));
            kills += 1;
            chaos = Instance::start(&cfg, dir.path().join(format!("chaos-{kills}.log")));
            // Let it restore and take some input before the next kill.
            chaos.wait_for_log("restored partition state", Duration::from_secs(60));
        }
    }
    let markers = plus_one(&produce_markers(&b, &n, end + HOUR_MS));
    wait_committed(&b, &n, &markers, Duration::from_secs(240), &[&chaos]);
    let log = chaos.log_text();
    // The last life restored what the earlier ones processed (a restore that stops at a
    // broker's listed high watermark read one record of each batch and found no series).
    let restored: u64 = log
        .lines()
        .filter(|l| l.contains("restored partition state from the changelog"))
        .filter_map(|l| {
            l.split(" series=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(restored > 0, "no series restored:\n{log}");

    let logs: Vec<std::path::PathBuf> = (0..=kills)
        .map(|i| dir.path().join(format!("chaos-{i}.log")))
        .collect();
    assert_same_as_uninterrupted(&b, &n, (&msgs, end), &outages, &mut chaos, &logs);
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
fn assert_same_as_uninterrupted(
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

/// `(from_epoch, epoch)` of every "restored partition state" line of a log, by partition.
fn restores(log: &str) -> Vec<(i32, u64, u64)> {
    let field = |l: &str, name: &str| -> Option<u64> {
        l.split(&format!(" {name}="))
            .nth(1)?
            .split(' ')
            .next()?
            .parse()
            .ok()
    };
    log.lines()
        .filter(|l| l.contains("restored partition state from the changelog"))
        .filter_map(|l| {
            Some((
                field(l, "partition")? as i32,
                field(l, "from_epoch")?,
                field(l, "epoch")?,
            ))
        })
        .collect()
}

/// Issue 13 item 9 ("a replaced instance after a 25 s pause wrote a second checkpoint 5
/// commit with older offsets"). Instance A is paused (SIGSTOP) past its session timeout with
/// work in flight; B takes every partition, restores A's state, goes on and stops cleanly;
/// then A wakes up (SIGCONT) with its stale state: its timer checkpoints and its revoke
/// hand-over write to the changelog after B's last commit. A then rejoins and restores: it
/// must restore B's epoch, not its own zombie writes, and the run as a whole must equal the
/// engine uninterrupted.
#[test]
fn a_paused_owner_waking_after_its_replacement_cannot_roll_back_the_changelog() {
    let WeeksRun {
        b,
        n,
        msgs,
        outages,
        end,
        dir,
        cfg,
    } = WeeksRun::new("zombie");
    let (a_log, b_log) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let third = msgs.len() / 3;

    let mut a = Instance::start(&cfg, a_log.clone());
    produce(&b, &n, &msgs[..third]);
    wait_processed(&b, &n, third as i64 / 2, &a);
    // Paused with work in flight: part of the first third not yet committed.
    a.signal("STOP");

    let mut bi = Instance::start(&cfg, b_log.clone());
    // A's session (6 s) expires; B gets every partition and restores A's commits.
    let t0 = std::time::Instant::now();
    while restores(&bi.log_text()).len() < PARTITIONS as usize {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "B did not restore every partition:\n{}",
            bi.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    produce(&b, &n, &msgs[third..2 * third]);
    wait_processed(&b, &n, 2 * third as i64, &bi);
    bi.signal("TERM");
    assert!(bi.wait(Duration::from_secs(30)).success());
    let b_epochs: BTreeMap<i32, u64> = restores(&bi.log_text())
        .into_iter()
        .map(|(p, _, epoch)| (p, epoch))
        .collect();

    // A wakes up, alone: it writes its stale checkpoints, learns it lost its partitions,
    // rejoins and restores.
    a.signal("CONT");
    let t0 = std::time::Instant::now();
    while restores(&a.log_text()).len() < 2 * PARTITIONS as usize {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "A did not restore again after waking:\n{}",
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The first restore of each partition after waking (a later rebalance may restore
    // again, from A's own new epoch).
    let mut after_waking: BTreeMap<i32, u64> = BTreeMap::new();
    for (p, from_epoch, _) in restores(&a.log_text())
        .into_iter()
        .skip(PARTITIONS as usize)
    {
        after_waking.entry(p).or_insert(from_epoch);
    }
    for (p, from_epoch) in after_waking {
        assert_eq!(
            Some(&from_epoch),
            b_epochs.get(&p),
            "partition {p}: A restored its own stale epoch, not B's:\n{}",
            a.log_text()
        );
    }
    produce(&b, &n, &msgs[2 * third..]);
    let markers = plus_one(&produce_markers(&b, &n, end + HOUR_MS));
    wait_committed(&b, &n, &markers, Duration::from_secs(240), &[&a]);
    assert_same_as_uninterrupted(&b, &n, (&msgs, end), &outages, &mut a, &[a_log, b_log]);
}

#[test]
fn rebalance_two_one_two_keeps_an_outage_one_incident() {
    let b = brokers();
    let n = Names::new("rebal212");
    create_topics(&b, &n);
    let msgs = scenario_messages();
    let (s, onset, end) = scenario();
    // Phase 1 ends 10 minutes into the outage, phase 2 an hour later (after it ended), the
    // rest is phase 3.
    let cut1 = msgs.partition_point(|m| event_ms(m) < onset + 10 * MINUTE_MS);
    let cut2 = msgs.partition_point(|m| event_ms(m) < end + 20 * MINUTE_MS);
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &b, &n, STATE_EXTRA);
    let a = Instance::start(&cfg, dir.path().join("a.log"));
    let mut second = Instance::start(&cfg, dir.path().join("b1.log"));
    a.wait_for_log("partitions assigned", Duration::from_secs(60));
    second.wait_for_log("partitions assigned", Duration::from_secs(60));
    produce(&b, &n, &msgs[..cut1]);
    std::thread::sleep(Duration::from_secs(2));
    // 2 → 1: the second instance leaves; the first restores its partitions.
    second.signal("TERM");
    assert!(second.wait(Duration::from_secs(30)).success());
    produce(&b, &n, &msgs[cut1..cut2]);
    std::thread::sleep(Duration::from_secs(2));
    // 1 → 2.
    let second = Instance::start(&cfg, dir.path().join("b2.log"));
    second.wait_for_log("restored partition state", Duration::from_secs(60));
    produce(&b, &n, &msgs[cut2..]);
    let markers = plus_one(&produce_markers(
        &b,
        &n,
        s.start_ms + SCENARIO_HOURS * HOUR_MS + 30 * MINUTE_MS,
    ));
    wait_committed(&b, &n, &markers, Duration::from_secs(120), &[&a, &second]);
    let log = a.log_text();
    assert!(log.contains("restored partition state"), "{log}");

    let got = incidents(&b, &n.anomalies);
    for geo in ["IT-RM", "IT-MI"] {
        let ids: std::collections::BTreeSet<&String> = got
            .keys()
            .filter(|(id, _)| id.starts_with(&format!("telegram/{geo}/")))
            .map(|(id, _)| id)
            .collect();
        let per_signal: BTreeMap<&str, usize> = ids.iter().fold(BTreeMap::new(), |mut m, id| {
            *m.entry(id.split('/').nth(2).unwrap()).or_default() += 1;
            m
        });
        assert!(
            !per_signal.is_empty() && per_signal.values().all(|&c| c == 1),
            "one incident per signal in {geo}, opened before and resolved after the \
             rebalances: {ids:?}\n{got:?}"
        );
        for id in ids {
            let states: Vec<IncidentState> = got
                .iter()
                .filter(|((i, _), _)| i == id)
                .map(|(_, (st, _))| *st)
                .collect();
            assert!(states.contains(&IncidentState::Opened), "{id}: {states:?}");
            assert!(
                states.contains(&IncidentState::Resolved),
                "{id}: {states:?}"
            );
        }
    }
}

/// Polls `/api/incidents` until `pred` holds (or fails after `within`).
fn wait_incidents(
    port: u16,
    within: Duration,
    what: &str,
    inst: &Instance,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let t0 = std::time::Instant::now();
    loop {
        let (status, body) = http_get(port, "/api/incidents");
        if status.contains("200") {
            let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            if pred(&v) {
                return v;
            }
        }
        assert!(t0.elapsed() < within, "{what}: {body}\n{}", inst.log_text());
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_restart_mid_outage_shows_the_outage_restored_as_open_not_all_normal() {
    let b = brokers();
    let n = Names::new("restartpage");
    create_topics(&b, &n);
    let msgs = scenario_messages();
    let (_, onset, _) = scenario();
    let cut = msgs.partition_point(|m| event_ms(m) < onset + 15 * MINUTE_MS);
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &b, &n, STATE_EXTRA);
    let port = serve_http(&cfg);
    let telegram_open = |v: &serde_json::Value, list: &str, service: &str| {
        v[list]
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o[service] == "telegram"))
    };

    let mut a = Instance::start(&cfg, dir.path().join("a.log"));
    a.wait_for_log("partitions assigned", Duration::from_secs(60));
    produce(&b, &n, &msgs[..cut]);
    wait_incidents(port, Duration::from_secs(60), "outage opened", &a, |v| {
        v["open"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["latest"]["service"] == "telegram"))
    });
    a.signal("TERM");
    assert!(
        a.wait(Duration::from_secs(30)).success(),
        "{}",
        a.log_text()
    );

    // Restarted: no new input, so no event about the outage; the engine holds it open.
    let mut a2 = Instance::start(&cfg, dir.path().join("a2.log"));
    a2.wait_for_log("restored partition state", Duration::from_secs(60));
    let v = wait_incidents(
        port,
        Duration::from_secs(60),
        "restored outage shown",
        &a2,
        |v| telegram_open(v, "restored", "service"),
    );
    assert!(
        v["restored_series"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{v}"
    );
    let (_, page) = http_get(port, "/");
    assert!(!page.contains("All systems normal"), "{page}");
    assert!(page.contains("Restored from saved state"), "{page}");
    a2.signal("TERM");
    assert!(a2.wait(Duration::from_secs(30)).success());
}

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

#[test]
fn a_million_junk_geos_through_kafka_stay_under_the_caps_and_the_outage_is_detected() {
    let b = brokers();
    let n = Names::new("cardinality");
    create_topics(&b, &n);
    let real = scenario_messages();
    let (_, onset, _) = scenario();
    // 1,000,000 distinct geos for the service that has the outage, spread over the stream in
    // time order: 70% look like Italian cities (they roll into IT), 30% like new countries.
    const JUNK: usize = 1_000_000;
    let every = JUNK / real.len() + 1;
    let mut msgs = Vec::with_capacity(real.len() + JUNK);
    let mut junk = 0usize;
    for m in &real {
        let t = event_ms(m);
        msgs.push(m.clone());
        for _ in 0..every.min(JUNK - junk) {
            let geo = if junk % 10 < 7 {
                format!("IT-Z{junk}")
            } else {
                format!("Z{junk}")
            };
            msgs.push(Msg {
                kind: InputKind::Complaint,
                key: "telegram".into(),
                payload: format!(r#"{{"ts":{t},"service":"telegram","geo":"{geo}","count":1}}"#)
                    .into_bytes(),
            });
            junk += 1;
        }
    }
    assert_eq!(junk, JUNK);
    produce(&b, &n, &msgs);
    let markers = plus_one(&produce_markers(
        &b,
        &n,
        scenario().0.start_ms + SCENARIO_HOURS * HOUR_MS + 30 * MINUTE_MS,
    ));
    let dir = tmpdir();
    let cfg = write_config(dir.path(), &b, &n, STATE_EXTRA);
    let port = serve_http(&cfg);
    append_config(
        &cfg,
        "\n[engine]\nmax_geos = 2000\nmax_series_per_service = 1000\n",
    );
    let mut run = Instance::start(&cfg, dir.path().join("run.log"));
    wait_committed(&b, &n, &markers, Duration::from_secs(240), &[&run]);
    // Engine counts reach the gauges at the next gauge refresh (once a second): read until
    // they have caught up with the committed input.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let (_, metrics) = http_get(port, "/metrics");
        let caught_up = metric(&metrics, "spikewatch_cardinality_rolled_up_total")
            .is_some_and(|v| v >= (JUNK - 2 * 2_000) as f64);
        if caught_up || std::time::Instant::now() > deadline {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let m = |k: &str| metric(&metrics, k).unwrap_or_else(|| panic!("no {k} in\n{metrics}"));
    assert!(m("spikewatch_active_series") <= 4.0 * 1_000.0, "{metrics}");
    assert!(
        m("spikewatch_engine_state_bytes") < (8 << 20) as f64,
        "{metrics}"
    );
    assert!(
        m("spikewatch_cardinality_rolled_up_total") >= (JUNK - 2 * 2_000) as f64,
        "{metrics}"
    );
    let decoded = m("spikewatch_decoded_total");
    assert!(
        decoded >= msgs.len() as f64,
        "every message counted: {metrics}"
    );
    run.signal("TERM");
    assert!(run.wait(Duration::from_secs(30)).success());
    let series = changelog_series(&b, &n.changelog);
    let telegram = series.keys().filter(|k| k.starts_with("telegram/")).count();
    assert!(
        telegram <= 1_000,
        "{telegram} telegram series in the changelog"
    );

    let got = incidents(&b, &n.anomalies);
    let rome: Vec<_> = got
        .iter()
        .filter(|((id, _), (st, _))| {
            id.starts_with("telegram/IT-RM/") && *st == IncidentState::Opened
        })
        .collect();
    assert!(
        !rome.is_empty(),
        "the outage in Rome is still detected: {got:?}"
    );
    for ((id, _), _) in rome {
        let at = spikewatch::event::Timestamp::parse_rfc3339(id.rsplit('/').next().unwrap())
            .unwrap()
            .millis();
        assert!((at - onset).abs() <= 5 * MINUTE_MS, "{id}");
    }
}
