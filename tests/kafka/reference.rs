//! Experiment (ignored, needs a broker): one uninterrupted `spikewatch run` reads the chaos
//! test's two weeks of complaints (`state/chaos.rs`), produced in 12 chunks with pauses
//! after chunks 2, 5, 8 and 9 like the chaos test's restarts, and is compared with the engine
//! run in-process over the same input: every anomaly event, and every series' final state.
//! On a difference it prints which series differ and, from the changelog's history, the first
//! checkpoint at which a diverging series differs from the in-process engine.
//!
//! ```text
//! B=$(scripts/kafka-broker.sh start)
//! SPIKEWATCH_TEST_BROKERS=$B cargo test --test kafka reference:: -- --ignored --nocapture
//! ```
//!
//! `REF_PAUSES=5,30,60,10`: the pauses in seconds (default: seeded random, 2 to 40 s;
//! `REF_SEED` picks the seed). `REF_CHAOS=1`: a second instance (own group and topics) is
//! SIGKILLed and restarted at those points instead of sleeping, as in the chaos test.
//! The instance logs stay in `REF_KEEP_DIR` (default: a temporary directory, removed).

use std::collections::BTreeMap;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common::*;
use spikewatch::config::Config;
use spikewatch::engine::state::{self, SeriesState};
use spikewatch::engine::Engine;
use spikewatch::event::{AnomalyEvent, IncidentState, InputKind};
use spikewatch::kafka::changelog::{self, CommitRecord, SeriesRecord};
use spikewatch::kafka::KafkaSettings;
use spikewatch::sim::{DAY_MS, HOUR_MS, MINUTE_MS};

/// `Instance::start` with spikewatch's own debug logs (dead letters, skipped messages,
/// checkpoints).
fn start(config: &std::path::Path, log: std::path::PathBuf) -> Instance {
    Instance::start_logging(config, log, &[], "info,spikewatch=debug,librdkafka=warn")
}

/// Every record of every changelog partition, in log order: (partition, key, value).
fn changelog_records(brokers: &str, topic: &str) -> Vec<(i32, changelog::Record)> {
    let settings = KafkaSettings {
        brokers: brokers.to_string(),
        group_id: "test-reader".into(),
        ..KafkaSettings::default()
    };
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        for r in changelog::read_partition(&settings, topic, p, Duration::from_secs(30))
            .expect("read changelog")
        {
            out.push((p, r));
        }
    }
    out
}

/// Every series as of the last commit of each partition, by key.
fn final_series(records: &[(i32, changelog::Record)]) -> BTreeMap<String, SeriesState> {
    let mut out = BTreeMap::new();
    for p in 0..PARTITIONS {
        let mut r = changelog::restore(
            records
                .iter()
                .filter(|(q, _)| *q == p)
                .map(|(_, r)| r.clone()),
        );
        let Some(commit) = r.commit.take() else {
            continue;
        };
        let mut e = Engine::new(Config::default());
        e.restore_layout(commit.layout, std::mem::take(&mut r.series));
        for s in e.export_series() {
            out.insert(s.key(), s);
        }
    }
    out
}

fn incidents_of(events: &[AnomalyEvent]) -> BTreeMap<(String, u64), (IncidentState, String)> {
    dedup(events)
        .into_iter()
        .map(|(k, e)| (k, (e.state, e.bucket_start.to_rfc3339())))
        .collect()
}

/// One line about a series' state.
fn brief(s: &SeriesState) -> String {
    format!(
        "next_close {} (+{} open, {} ahead) first_data {} learned {} level {:.4} open {:?} \
         last_resolved {:?}",
        s.window.next_close,
        s.window.open.len(),
        s.window.ahead.len(),
        s.window.first_data,
        s.baseline.learned_buckets,
        s.baseline.level,
        s.tracker.open.as_ref().map(|o| (o.onset_ms, o.seq)),
        s.tracker
            .last_resolved
            .as_ref()
            .map(|o| (o.onset_ms, o.seq)),
    )
}

/// The in-process engine's state of series `key` right after its bucket `n - 1` closed, for
/// every `n` in `at` (a changelog record of that series with `next_close == n`).
fn engine_history(msgs: &[Msg], key: &str, at: &[i64]) -> BTreeMap<i64, SeriesState> {
    let mut engine = Engine::new(Config::default());
    let mut sink: Vec<AnomalyEvent> = Vec::new();
    let mut newest = i64::MIN;
    let mut out = BTreeMap::new();
    let grab = |engine: &Engine, out: &mut BTreeMap<i64, SeriesState>| {
        if let Some(s) = engine.export_series().into_iter().find(|s| s.key() == key) {
            if at.contains(&s.window.next_close) {
                out.entry(s.window.next_close).or_insert(s);
            }
        }
    };
    let mut last_wm = None;
    for m in msgs {
        let ev = spikewatch::event::decode(m.kind, &m.payload).unwrap();
        newest = newest.max(ev.ts().millis());
        engine.observe_event(&ev).unwrap();
        engine.advance(newest, &mut sink);
        // A bucket closes at most once per minute of event time: export only then.
        let wm = engine.watermark().map(|w| w.div_euclid(MINUTE_MS));
        if wm != last_wm {
            last_wm = wm;
            grab(&engine, &mut out);
        }
    }
    out
}

fn pauses(seed: u64) -> Vec<u64> {
    if let Ok(p) = std::env::var("REF_PAUSES") {
        return p.split(',').map(|x| x.trim().parse().unwrap()).collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..4).map(|_| rng.random_range(2..=40)).collect()
}

#[test]
#[ignore = "experiment: needs a broker, takes minutes"]
fn an_uninterrupted_pipeline_with_pauses_between_chunks_equals_the_engine_in_process() {
    let b = brokers();
    let n = Names::new("reference");
    create_topics(&b, &n);
    let s = weeks_scenario().0;
    let msgs = messages_of(&s, i64::MAX, 5, |k| k == InputKind::Complaint);
    let end = s.start_ms + s.days as i64 * DAY_MS;
    let tmp = tmpdir();
    let dir = match std::env::var("REF_KEEP_DIR") {
        Ok(d) => {
            let d = std::path::PathBuf::from(d).join(&n.prefix);
            std::fs::create_dir_all(&d).unwrap();
            d
        }
        Err(_) => tmp.path().to_path_buf(),
    };
    eprintln!("logs in {}", dir.display());
    let cfg = write_config(&dir, &b, &n, "changelog_interval_ms = 300");
    let seed: u64 = std::env::var("REF_SEED")
        .ok()
        .map(|s| s.parse().unwrap())
        .unwrap_or_else(|| std::process::id() as u64);
    let pauses = pauses(seed);
    eprintln!("seed {seed}, pauses after chunks 2, 5, 8, 9: {pauses:?} s");
    let chaos_mode = std::env::var("REF_CHAOS").is_ok_and(|v| v == "1");
    let chaos_names = {
        let mut c = Names::new("reference-chaos");
        c.mentions = n.mentions.clone();
        c.complaints = n.complaints.clone();
        c
    };
    let chaos_dir = dir.join("chaos");
    std::fs::create_dir_all(&chaos_dir).unwrap();
    let chaos_cfg = write_config(&chaos_dir, &b, &chaos_names, "changelog_interval_ms = 300");
    let mut chaos = chaos_mode.then(|| start(&chaos_cfg, dir.join("chaos-0.log")));
    let reference = start(&cfg, dir.join("reference.log"));

    let chunks = 12;
    let pause_after = [2, 5, 8, 9];
    let size = msgs.len().div_ceil(chunks);
    let t0 = std::time::Instant::now();
    let mut kills = 0;
    for (i, chunk) in msgs.chunks(size).enumerate() {
        produce(&b, &n, chunk);
        eprintln!(
            "{:7.1} s: chunk {i} produced ({} messages)",
            t0.elapsed().as_secs_f64(),
            chunk.len()
        );
        if let Some(k) = pause_after.iter().position(|&c| c == i) {
            if let Some(c) = chaos.as_mut() {
                std::thread::sleep(Duration::from_millis(pauses[k] % 400));
                c.signal("KILL");
                c.wait(Duration::from_secs(10));
                kills += 1;
                let next = start(&chaos_cfg, dir.join(format!("chaos-{kills}.log")));
                next.wait_for_log("restored partition state", Duration::from_secs(120));
                *c = next;
            } else {
                std::thread::sleep(Duration::from_secs(pauses[k]));
            }
            eprintln!("{:7.1} s: pause done", t0.elapsed().as_secs_f64());
        }
    }
    let markers = plus_one(&produce_markers(&b, &n, end + HOUR_MS));
    let group = |names: &Names| {
        let mut x = names.clone();
        x.mentions = n.mentions.clone();
        x.complaints = n.complaints.clone();
        x
    };
    wait_committed(&b, &n, &markers, Duration::from_secs(300), &[&reference]);
    if let Some(c) = &chaos {
        wait_committed(
            &b,
            &group(&chaos_names),
            &markers,
            Duration::from_secs(300),
            &[c],
        );
    }
    let mut reference = reference;
    reference.signal("TERM");
    assert!(reference.wait(Duration::from_secs(30)).success());
    if let Some(c) = chaos.as_mut() {
        c.signal("TERM");
        assert!(c.wait(Duration::from_secs(30)).success());
    }
    let log = reference.log_text();
    eprintln!("reference: {}", reference.report());
    for l in log.lines().filter(|l| {
        l.contains("partitions assigned")
            || l.contains("partitions revoked")
            || l.contains("restored partition state")
            || l.contains("dropped engine state")
            || l.contains("rebalance error")
            || l.contains("committed on revoke")
    }) {
        eprintln!("  {l}");
    }
    for what in ["dead letter", "no longer assigned", "WARN", "ERROR"] {
        let k = log.lines().filter(|l| l.contains(what)).count();
        eprintln!("  {k} log lines with {what:?}");
    }

    // The engine alone (as in the chaos test).
    let mut engine = Engine::new(Config::default());
    let mut events: Vec<AnomalyEvent> = Vec::new();
    let mut newest = i64::MIN;
    for m in &msgs {
        let ev = spikewatch::event::decode(m.kind, &m.payload).unwrap();
        newest = newest.max(ev.ts().millis());
        engine.observe_event(&ev).unwrap();
        engine.advance(newest, &mut events);
    }
    engine.advance(end + HOUR_MS, &mut events);
    let want = incidents_of(&events);
    let want_state: BTreeMap<String, SeriesState> = engine
        .export_series()
        .into_iter()
        .map(|s| (s.key(), s))
        .collect();

    let mut diverged = Vec::new();
    let mut runs = vec![("reference", n.clone())];
    if chaos_mode {
        runs.push(("chaos", group(&chaos_names)));
    }
    for (label, names) in &runs {
        let got = incidents_of(&anomalies(&read_all(&b, &names.anomalies)));
        let only_got: Vec<_> = got.iter().filter(|(k, _)| !want.contains_key(*k)).collect();
        let only_want: Vec<_> = want.iter().filter(|(k, _)| !got.contains_key(*k)).collect();
        let changed: Vec<_> = got
            .iter()
            .filter(|(k, v)| want.get(*k).is_some_and(|w| w != *v))
            .collect();
        if !(only_got.is_empty() && only_want.is_empty() && changed.is_empty()) {
            eprintln!(
                "{label}: incident events differ: only {label}: {only_got:?}\n  only engine: \
                 {only_want:?}\n  changed: {changed:?}"
            );
            diverged.push(format!("{label} incidents"));
        }
        let records = changelog_records(&b, &names.changelog);
        let got_state: BTreeMap<String, SeriesState> = final_series(&records)
            .into_iter()
            .filter(|(k, _)| !k.starts_with("zz-marker"))
            .collect();
        let keys: std::collections::BTreeSet<&String> =
            got_state.keys().chain(want_state.keys()).collect();
        for k in keys {
            let (g, w) = (got_state.get(k), want_state.get(k));
            let same = match (g, w) {
                (Some(g), Some(w)) => {
                    g.window == w.window
                        && g.baseline.learned_buckets == w.baseline.learned_buckets
                        && g.tracker.open.is_some() == w.tracker.open.is_some()
                }
                _ => false,
            };
            if same {
                continue;
            }
            diverged.push(format!("{label} {k}"));
            eprintln!(
                "{label}: series {k} differs:\n  {label}: {}\n  engine: {}",
                g.map_or("absent".into(), brief),
                w.map_or("absent".into(), brief)
            );
            // Where it first differs: the changelog's versions of the series against the
            // engine's state at the same bucket.
            let versions: Vec<(i32, u64, SeriesState)> = records
                .iter()
                .filter(|(_, (key, _))| key.ends_with(k.as_bytes()) && key.len() == k.len() + 3)
                .filter_map(|(p, (_, v))| {
                    let r: SeriesRecord = state::decode(v.as_deref()?).ok()?;
                    Some((*p, r.checkpoint, r.state?))
                })
                .collect();
            let at: Vec<i64> = versions
                .iter()
                .map(|(_, _, s)| s.window.next_close)
                .collect();
            let hist = engine_history(&msgs, k, &at);
            let mut prev: Option<&(i32, u64, SeriesState)> = None;
            for v in &versions {
                let Some(e) = hist.get(&v.2.window.next_close) else {
                    continue;
                };
                let ok = e.baseline.learned_buckets == v.2.baseline.learned_buckets
                    && e.window.first_data == v.2.window.first_data
                    && e.tracker.open.is_some() == v.2.tracker.open.is_some();
                if !ok {
                    if let Some(p) = prev {
                        eprintln!(
                            "  last equal: partition {} checkpoint {}: {}",
                            p.0,
                            p.1,
                            brief(&p.2)
                        );
                    }
                    eprintln!(
                        "  first different: partition {} checkpoint {}: {}\n    engine then: {}",
                        v.0,
                        v.1,
                        brief(&v.2),
                        brief(e)
                    );
                    // The commit records around it.
                    for (p, (key, val)) in &records {
                        if *p != v.0 || !changelog::is_commit_key(key) {
                            continue;
                        }
                        let Some(c) = val.as_deref().and_then(|x| CommitRecord::decode(x).ok())
                        else {
                            continue;
                        };
                        if c.checkpoint + 3 >= prev.map_or(0, |p| p.1) && c.checkpoint <= v.1 + 1 {
                            eprintln!(
                                "    commit {} offsets {:?} max_event_ms {:?} watermark {:?}",
                                c.checkpoint, c.offsets, c.max_event_ms, c.layout.clock.watermark
                            );
                        }
                    }
                    break;
                }
                prev = Some(v);
            }
        }
    }
    assert!(diverged.is_empty(), "diverged: {diverged:?}");
}

fn plus_one(m: &BTreeMap<(String, i32), i64>) -> BTreeMap<(String, i32), i64> {
    m.iter().map(|(k, v)| (k.clone(), v + 1)).collect()
}
