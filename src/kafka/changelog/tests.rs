//! Unit tests of the changelog: checkpoints, restores, epochs and cancellation, without a broker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::read::{read_records, Polled};
use super::*;
use crate::config::{Config, Secs};
use crate::engine::{Engine, Observation};

const T0: i64 = 1_704_067_200_000;

fn inputs() -> [String; 2] {
    ["m".into(), "c".into()]
}
const MIN: i64 = 60_000;

fn observe(e: &mut Engine, geo: &str, minute: i64, n: f64) {
    e.observe(Observation {
        service: "mail",
        geo,
        signal: "complaints",
        ts_ms: T0 + minute * MIN,
        amount: n,
    })
    .unwrap();
    e.advance(T0 + minute * MIN, &mut Vec::new());
}

/// Appends a whole checkpoint (records, then commit) to `log`.
fn write(log: &mut Vec<Record>, w: &mut ChangelogWriter, e: &mut Engine, offset: i64) -> u64 {
    let out = w.checkpoint(
        e.take_changes(),
        &inputs(),
        [Some(offset), None],
        [None, None],
        0,
    );
    log.extend(out.records);
    log.push((out.commit_key, Some(out.commit)));
    w.committed(out.checkpoint);
    out.checkpoint
}

fn rebuilt(log: &[Record], config: &Config) -> (Engine, Restored) {
    let mut r = restore(log.iter().cloned());
    let mut e = Engine::new(config.clone());
    if let Some(c) = &r.commit {
        let report = e.restore_layout(c.layout.clone(), std::mem::take(&mut r.series));
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    }
    (e, r)
}

#[test]
fn a_half_written_checkpoint_restores_the_last_committed_one() {
    let config = Config::default();
    let mut e = Engine::new(config.clone());
    let mut w = ChangelogWriter::default();
    let mut log = Vec::new();
    for m in 0..30 {
        observe(&mut e, "IT-RM", m, 5.0);
        observe(&mut e, "IT-MI", m, 3.0);
    }
    write(&mut log, &mut w, &mut e, 100);
    let at_commit = e.export_series();
    for m in 30..40 {
        observe(&mut e, "IT-RM", m, 50.0);
    }
    // Crash after the series records of the next checkpoint, before its commit.
    let out = w.checkpoint(
        e.take_changes(),
        &inputs(),
        [Some(200), None],
        [None, None],
        0,
    );
    assert!(out.series_written > 0);
    log.extend(out.records);

    let (restored, r) = rebuilt(&log, &config);
    assert_eq!(r.commit.as_ref().unwrap().offsets[0], Some(100));
    assert_eq!(restored.export_series(), at_commit);
    assert!(r.unusable.is_empty());
}

#[test]
fn records_of_an_incarnation_that_died_before_committing_never_become_valid() {
    let config = Config::default();
    let mut e = Engine::new(config.clone());
    let mut w = ChangelogWriter::default();
    let mut log = Vec::new();
    for m in 0..20 {
        observe(&mut e, "IT-RM", m, 5.0);
    }
    write(&mut log, &mut w, &mut e, 100);
    let mut doomed = Engine::new(config.clone());
    doomed.restore_layout(
        restore(log.iter().cloned()).commit.unwrap().layout,
        restore(log.iter().cloned()).series,
    );
    for m in 20..25 {
        observe(&mut doomed, "IT-RM", m, 500.0);
    }
    // The doomed incarnation writes records of checkpoint 2 and dies.
    let mut w2 = restore(log.iter().cloned()).writer;
    log.extend(
        w2.checkpoint(
            doomed.take_changes(),
            &inputs(),
            [Some(150), None],
            [None, None],
            0,
        )
        .records,
    );

    // A new incarnation restores checkpoint 1, sees no new input for IT-RM (only a new
    // city), and commits: the doomed records of IT-RM must not become valid.
    let (mut e3, r) = rebuilt(&log, &config);
    let mut w3 = r.writer;
    let before = e3.export_series();
    e3.observe(Observation {
        service: "spotify",
        geo: "DE",
        signal: "complaints",
        ts_ms: T0 + 20 * MIN,
        amount: 1.0,
    })
    .unwrap();
    let expected: Vec<_> = e3.export_series();
    write(&mut log, &mut w3, &mut e3, 160);
    let (e4, r4) = rebuilt(&log, &config);
    assert!(r4.unusable.is_empty());
    assert_eq!(e4.export_series(), expected);
    assert!(before.iter().all(|s| expected.contains(s)));
}

#[test]
fn a_corrupt_record_costs_its_series_and_is_cleared() {
    let config = Config::default();
    let mut e = Engine::new(config.clone());
    let mut w = ChangelogWriter::default();
    let mut log = Vec::new();
    for m in 0..20 {
        observe(&mut e, "IT-RM", m, 5.0);
        observe(&mut e, "DE", m, 5.0);
    }
    write(&mut log, &mut w, &mut e, 100);
    let victim = log
        .iter_mut()
        .find(|(k, _)| k.ends_with(b"mail/DE/complaints"))
        .unwrap();
    let v = victim.1.as_mut().unwrap();
    *v.last_mut().unwrap() ^= 0xff;

    let (mut e2, r) = rebuilt(&log, &config);
    assert_eq!(r.unusable.len(), 1);
    assert_eq!(r.unusable[0].key, "mail/DE/complaints");
    assert_eq!(r.unusable[0].error.kind(), "checksum");
    assert!(e2.export_series().iter().all(|s| s.geo != "DE"));
    assert!(e2.export_series().iter().any(|s| s.geo == "IT-RM"));

    let mut w2 = r.writer;
    write(&mut log, &mut w2, &mut e2, 120);
    let (_, r3) = rebuilt(&log, &config);
    assert!(r3.unusable.is_empty(), "the damaged record was cleared");
}

#[test]
fn dropped_series_leave_tombstones_once_their_drop_is_committed() {
    let mut config = Config::default();
    config.detection.series_ttl = Some(Secs(600));
    let mut e = Engine::new(config.clone());
    let mut w = ChangelogWriter::default();
    let mut log = Vec::new();
    for m in 0..5 {
        observe(&mut e, "IT-RM", m, 5.0);
    }
    write(&mut log, &mut w, &mut e, 10);
    // IT-RM and its roll-ups go idle past their TTL; only DE stays.
    for m in 5..40 {
        observe(&mut e, "DE", m, 5.0);
    }
    let gone = e.stats().series_expired;
    assert!(gone >= 2, "{gone}");
    write(&mut log, &mut w, &mut e, 20);
    let before = log.len();
    write(&mut log, &mut w, &mut e, 30);
    let tombstones = log[before..].iter().filter(|(_, v)| v.is_none()).count();
    assert_eq!(
        tombstones as u64,
        2 * gone,
        "both keys of every dropped series"
    );
    let (e2, r) = rebuilt(&log, &config);
    assert!(r.unusable.is_empty());
    assert_eq!(e2.export_series(), e.export_series());
}

#[test]
fn commit_records_stay_small_with_a_million_free_slots_and_restore_a_working_engine() {
    let config = Config::default();
    let mut e = Engine::new(config.clone());
    for m in 0..30 {
        observe(&mut e, "IT-RM", m, 5.0);
    }
    let before = e.export_series();
    let mut delta = e.take_changes();
    // As after a million series expired: the slot table keeps its length, their slots
    // are free (the lowest reused first, as the engine pops the list from its end).
    const FREED: u32 = 1_000_000;
    let live = delta.layout.slots;
    delta.layout.slots = live + FREED;
    delta.layout.free = (live..live + FREED).rev().collect();
    let full = state::encode(&CommitRecord {
        layout: delta.layout.clone(),
        ..CommitRecord::default()
    });
    assert!(
        full.len() > 1 << 20,
        "the whole list alone: {} bytes",
        full.len()
    );

    let mut w = ChangelogWriter::default();
    let out = w.checkpoint(delta, &inputs(), [Some(7), None], [None, None], 3);
    assert!(
        out.commit.len() < 64 * 1024,
        "commit record of {} bytes",
        out.commit.len()
    );
    let mut log = out.records;
    log.push((out.commit_key, Some(out.commit)));
    let (mut restored, r) = rebuilt(&log, &config);
    assert!(r.unusable.is_empty());
    assert_eq!(restored.export_series(), before);
    let layout = restored.layout();
    assert_eq!(layout.slots, live + FREED);
    assert_eq!(
        layout.free.len(),
        FREED as usize,
        "every empty slot is free"
    );
    assert_eq!(
        layout.free[layout.free.len() - MAX_FREE_SLOTS_IN_COMMIT..],
        (live..live + MAX_FREE_SLOTS_IN_COMMIT as u32)
            .rev()
            .collect::<Vec<_>>()[..],
        "the slots reused next are reused in the writer's order"
    );

    // It keeps working: a new series takes the next free slot, and its checkpoint
    // restores again.
    observe(&mut restored, "DE", 30, 5.0);
    let changed = restored.take_changes();
    let new_slots: Vec<u32> = changed
        .changed
        .iter()
        .filter(|(_, s)| s.geo == "DE")
        .map(|(slot, _)| *slot)
        .collect();
    assert_eq!(new_slots, vec![live], "{:?}", changed.changed);
    let mut w2 = r.writer;
    let out = w2.checkpoint(changed, &inputs(), [Some(8), None], [None, None], 4);
    assert!(out.commit.len() < 64 * 1024);
    log.extend(out.records);
    log.push((out.commit_key, Some(out.commit)));
    let (again, r) = rebuilt(&log, &config);
    assert!(r.unusable.is_empty());
    assert_eq!(again.export_series(), restored.export_series());

    // Records written before the bound (the whole list) are still read.
    let old = CommitRecord::decode(&full).unwrap();
    assert_eq!(old.layout.free.len(), FREED as usize);
}

#[test]
fn reading_a_changelog_stops_at_the_next_record_once_cancelled() {
    // An endless partition (its end is never reached): only the cancel flag stops it.
    let cancel = AtomicBool::new(false);
    let mut polled = 0u64;
    let mut sunk = 0u64;
    let result = read_records(
        || {
            polled += 1;
            if polled == 1000 {
                cancel.store(true, Ordering::Relaxed);
            }
            Polled::Record((b"s0/a/b/c".to_vec(), Some(vec![0; 8])))
        },
        Duration::from_secs(3600),
        &cancel,
        |_| sunk += 1,
    );
    assert!(matches!(result, Err(ReadError::Cancelled)), "{result:?}");
    assert_eq!(polled, 1000, "no poll after the flag was set");
    assert_eq!(sunk, 1000);
}

#[test]
fn reading_a_stalled_changelog_stops_once_cancelled_not_at_its_timeout() {
    let cancel = AtomicBool::new(false);
    let mut polled = 0;
    let result = read_records(
        || {
            polled += 1;
            assert!(polled <= 3, "polled after cancel");
            if polled == 3 {
                cancel.store(true, Ordering::Relaxed);
            }
            Polled::Nothing
        },
        Duration::from_secs(3600),
        &cancel,
        |_| {},
    );
    assert!(matches!(result, Err(ReadError::Cancelled)), "{result:?}");
}

#[test]
fn rebuilding_a_read_changelog_stops_once_cancelled() {
    let config = Config::default();
    let mut e = Engine::new(config.clone());
    let mut w = ChangelogWriter::default();
    let mut log = Vec::new();
    for m in 0..5 {
        observe(&mut e, "IT-RM", m, 5.0);
    }
    write(&mut log, &mut w, &mut e, 10);
    let mut reader = RestoreReader::default();
    for r in log.iter().cloned() {
        reader.push(r);
    }
    let cancel = AtomicBool::new(true);
    assert!(matches!(
        reader.finish_unless(&cancel),
        Err(ReadError::Cancelled)
    ));
    // Not cancelled: the same records restore.
    let mut reader = RestoreReader::default();
    for r in log.iter().cloned() {
        reader.push(r);
    }
    let r = reader.finish_unless(&AtomicBool::new(false)).unwrap();
    assert_eq!(r.commit.unwrap().offsets[0], Some(10));
    assert!(!r.series.is_empty());
}

#[test]
fn restore_holds_only_the_newest_record_per_key_while_reading() {
    let config = Config::default();
    let mut e = Engine::new(config.clone());
    let mut w = ChangelogWriter::default();
    let mut log = Vec::new();
    // Many checkpoints of the same few series, as an uncompacted changelog holds them.
    for m in 0..200 {
        observe(&mut e, "IT-RM", m, 5.0 + (m % 7) as f64);
        write(&mut log, &mut w, &mut e, m);
    }
    let total: usize = log
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
        .sum();
    let mut newest: HashMap<&[u8], usize> = HashMap::new();
    for (k, v) in &log {
        match v {
            Some(v) => newest.insert(k, k.len() + v.len()),
            None => newest.remove(k.as_slice()),
        };
    }
    let live: usize = newest.values().sum();
    let mut reader = RestoreReader::default();
    let mut peak = 0;
    for r in log.iter().cloned() {
        reader.push(r);
        peak = peak.max(reader.held_bytes());
    }
    assert_eq!(reader.held_bytes(), live);
    assert!(
        peak * 20 < total,
        "held at most {peak} bytes of the {total} read"
    );
    assert_eq!(reader.records(), log.len() as u64);
    let (expected, _) = rebuilt(&log, &config);
    let mut r = reader.finish();
    let mut again = Engine::new(config);
    again.restore_layout(r.commit.take().unwrap().layout, r.series);
    assert_eq!(again.export_series(), expected.export_series());
    assert_eq!(again.export_series(), e.export_series());
}

#[test]
fn no_commit_means_a_fresh_start_that_retires_old_records_once_it_commits() {
    let config = Config::default();
    let mut e = Engine::new(config.clone());
    let mut w = ChangelogWriter::default();
    observe(&mut e, "IT-RM", 0, 5.0);
    let out = w.checkpoint(
        e.take_changes(),
        &inputs(),
        [Some(1), None],
        [None, None],
        0,
    );
    let mut log: Vec<Record> = out.records;
    let old = log.len();
    let r = restore(log.iter().cloned());
    assert!(r.commit.is_none() && r.series.is_empty());
    let mut w2 = r.writer;
    assert_eq!(w2.epoch(), 1);
    let mut fresh = Engine::new(config.clone());
    observe(&mut fresh, "DE", 1, 5.0);
    assert!(!w2.has_tombstones_due());
    write(&mut log, &mut w2, &mut fresh, 2);
    assert!(w2.has_tombstones_due(), "an idle partition still retires");
    let before = log.len();
    write(&mut log, &mut w2, &mut fresh, 3);
    let tombstones: Vec<&Record> = log[before..].iter().filter(|(_, v)| v.is_none()).collect();
    assert_eq!(
        tombstones.len(),
        old,
        "every old key, once the new epoch committed"
    );
    assert!(tombstones.iter().all(|(k, _)| !k.starts_with(b"e1/")));
    let (again, r) = rebuilt(&log, &config);
    assert_eq!(r.commit_epoch, 1);
    assert_eq!(again.export_series(), fresh.export_series());
}

/// Keys a compacted topic would keep: the newest record per key, tombstones removing
/// theirs.
fn compacted(log: &[Record]) -> usize {
    let mut keys = std::collections::HashSet::new();
    for (k, v) in log {
        if v.is_some() {
            keys.insert(k.clone());
        } else {
            keys.remove(k);
        }
    }
    keys.len()
}

/// Issue 13 item 9: an owner paused past its session timeout wakes up and goes on
/// writing its checkpoints (series records, then a commit) after the new owner restored,
/// before and after the new owner's first commit. Whatever it writes, the next restore
/// returns the new owner's state and offsets.
#[test]
fn a_zombie_owner_writing_after_a_new_owner_restored_cannot_change_the_next_restore() {
    let config = Config::default();
    let mut a = Engine::new(config.clone());
    let mut log = Vec::new();
    // Owner A (restored from an empty changelog: epoch 1).
    let mut wa = restore(log.iter().cloned()).writer;
    for m in 0..30 {
        observe(&mut a, "IT-RM", m, 5.0);
        observe(&mut a, "IT-MI", m, 3.0);
    }
    write(&mut log, &mut wa, &mut a, 100);

    // A is paused; B gets the partition and restores A's commit (epoch 2).
    let (mut b, r) = rebuilt(&log, &config);
    let mut wb = r.writer;
    assert_eq!((r.commit_epoch, wb.epoch()), (1, 2));

    // Input for minutes `from..to` of one geo, then a whole checkpoint.
    let step = |log: &mut Vec<Record>,
                w: &mut ChangelogWriter,
                e: &mut Engine,
                (geo, from, to, n): (&str, i64, i64, f64),
                offset: i64| {
        for m in from..to {
            observe(e, geo, m, n);
        }
        write(log, w, e, offset);
    };
    // A wakes up and writes a checkpoint with a rise in Rome that B never sees; B
    // checkpoints its own input (Milan); A again, over keys B has written meanwhile; B
    // again (retiring epoch 1); a last zombie checkpoint after the retirement.
    step(&mut log, &mut wa, &mut a, ("IT-RM", 30, 40, 80.0), 160);
    step(&mut log, &mut wb, &mut b, ("IT-MI", 30, 40, 4.0), 150);
    step(&mut log, &mut wa, &mut a, ("IT-MI", 40, 45, 90.0), 170);
    step(&mut log, &mut wb, &mut b, ("DE", 40, 45, 2.0), 155);
    step(&mut log, &mut wa, &mut a, ("IT-RM", 45, 50, 99.0), 180);

    let (c, r) = rebuilt(&log, &config);
    assert_eq!(r.commit_epoch, 2);
    assert_eq!(r.commit.as_ref().unwrap().offsets[0], Some(155));
    assert!(r.unusable.is_empty());
    assert_eq!(c.export_series(), b.export_series());
    assert_ne!(c.export_series(), a.export_series());
    // The next owner (epoch 3) retires everything else; a compacted topic then holds its
    // state only, about one record per series.
    let mut wc = r.writer;
    let mut c = c;
    assert_eq!(wc.epoch(), 3);
    write(&mut log, &mut wc, &mut c, 156);
    write(&mut log, &mut wc, &mut c, 157);
    assert!(
        compacted(&log) <= c.series_count() + 1,
        "{} keys for {} series",
        compacted(&log),
        c.series_count()
    );
}

#[test]
fn a_restore_reads_a_changelog_written_before_epochs() {
    // Epoch 0 is the unprefixed keys of state format 3.
    let config = Config::default();
    let mut e = Engine::new(config.clone());
    let mut w = ChangelogWriter::default();
    let mut log = Vec::new();
    for m in 0..20 {
        observe(&mut e, "IT-RM", m, 5.0);
    }
    write(&mut log, &mut w, &mut e, 42);
    assert!(log.iter().any(|(k, _)| k == b"commit"));
    assert!(log.iter().any(|(k, _)| k.starts_with(b"s0/mail/")));
    let (restored, r) = rebuilt(&log, &config);
    assert_eq!((r.commit_epoch, r.writer.epoch()), (0, 1));
    assert_eq!(restored.export_series(), e.export_series());
    assert!(is_commit_key(b"commit") && is_commit_key(b"e12/commit"));
    assert!(!is_commit_key(b"e0/commit") && !is_commit_key(b"s0/commit"));
}

/// Re-encodes every record of `log` as the build of format `version` wrote it, converting each
/// series state with `old`; returns how many series records there were.
fn rewrite_as<S: serde::Serialize>(
    log: &mut [Record],
    version: u16,
    old: impl Fn(SeriesState) -> S,
) -> usize {
    let mut series = 0;
    for (k, v) in log.iter_mut() {
        let Some(bytes) = v.as_mut() else { continue };
        if is_commit_key(k) {
            let c = CommitRecord::decode(bytes).unwrap();
            *bytes = state::encode_as(&c, version);
        } else {
            let r = SeriesRecord::decode(bytes).unwrap();
            let rec = SeriesRecordOf {
                checkpoint: r.checkpoint,
                slot: r.slot,
                state: r.state.map(&old),
            };
            *bytes = state::encode_as(&rec, version);
            series += 1;
        }
        assert_eq!(state::record_version(bytes), Ok(version));
    }
    series
}

#[test]
fn a_restore_reads_series_records_of_state_format_3() {
    // The previous release's records: the same changelog, each record re-encoded as it wrote
    // them (format 3: baselines without intermittency).
    let config = Config::default();
    let mut e = Engine::new(config.clone());
    let mut w = ChangelogWriter::default();
    let mut log = Vec::new();
    for m in 0..20 {
        observe(&mut e, "IT-RM", m, 5.0);
    }
    write(&mut log, &mut w, &mut e, 42);
    let series = rewrite_as(&mut log, 3, |s| {
        s.map_baseline(state::BaselineStateV3::from)
    });
    assert!(series > 0);
    let (restored, _) = rebuilt(&log, &config);
    let (now, then) = (restored.export_series(), e.export_series());
    assert_eq!(now.len(), then.len());
    for (a, b) in now.iter().zip(&then) {
        assert_eq!(
            (a.key(), &a.window, a.baseline.level),
            (b.key(), &b.window, b.baseline.level)
        );
        assert_eq!(a.baseline.nonzero_frac, 1.0, "restored as never 0");
    }
}

#[test]
fn a_restore_reads_series_records_of_state_format_5_exactly() {
    // The previous release's records (format 5: baselines hold no level from before an
    // accepted shift). A series holding none restores exactly.
    let config = Config::default();
    let mut e = Engine::new(config.clone());
    let mut w = ChangelogWriter::default();
    let mut log = Vec::new();
    for m in 0..20 {
        observe(&mut e, "IT-RM", m, 5.0);
    }
    write(&mut log, &mut w, &mut e, 42);
    assert!(
        rewrite_as(&mut log, 5, |s| s
            .map_baseline(state::BaselineStateV5::from))
            > 0
    );
    let (restored, _) = rebuilt(&log, &config);
    assert_eq!(restored.export_series(), e.export_series());
}
