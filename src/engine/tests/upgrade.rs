//! Reading state written by earlier formats.

use super::*;

/// A state file of `engine`'s clock and `series`, as the build of format `version` wrote it.
fn state_file_as<T: serde::Serialize>(
    engine: &Engine,
    version: u16,
    series: impl Iterator<Item = T>,
) -> Vec<u8> {
    let mut file = state::FILE_MAGIC.to_vec();
    let mut push = |rec: Vec<u8>| {
        file.extend_from_slice(&(rec.len() as u32).to_le_bytes());
        file.extend_from_slice(&rec);
    };
    push(state::encode_as(
        &state::FileHead {
            clock: engine.clock(),
            outages: Vec::new(),
        },
        version,
    ));
    for s in series {
        push(state::encode_as(&s, version));
    }
    file
}

/// State format 4 added how often a series is 0; a format-3 state file (two releases back)
/// must still restore every series, which then scores exactly as before the upgrade.
#[test]
fn a_format_3_state_file_restores_every_series_and_continues_exactly() {
    let feed = |e: &mut Engine, c: &mut Collect, from: i64, to: i64| {
        for m in from..to {
            for (geo, n) in [("IT-RM", 3), ("IT-MI", 5)] {
                for k in 0..n + (m % 4) {
                    e.observe(obs(geo, T0 + m * MIN + 100 * k, 1.0)).unwrap();
                }
            }
            e.advance(T0 + m * MIN, c);
        }
    };
    let mut original = Engine::new(EngineConfig::default());
    let mut c = Collect::default();
    feed(&mut original, &mut c, 0, 240);

    // The same file as the format-3 build wrote it.
    let series = original.export_series();
    let v3 = state_file_as(
        &original,
        3,
        series
            .iter()
            .map(|s| s.clone().map_baseline(state::BaselineStateV3::from)),
    );

    let mut restored = Engine::new(EngineConfig::default());
    let report = restored.restore_state(&v3).unwrap();
    assert_eq!(report.restored, series.len());
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    for s in restored.export_series() {
        assert_eq!(
            s.baseline.nonzero_frac,
            1.0,
            "{}: never 0, as before",
            s.key()
        );
    }

    // A series that is never 0 has learned exactly that: both continue alike.
    let (mut a, mut b) = (Collect::default(), Collect::default());
    feed(&mut original, &mut a, 240, 300);
    feed(&mut restored, &mut b, 240, 300);
    assert!(!a.buckets.is_empty());
    assert_eq!(a.buckets, b.buckets);
}

/// State format 5 added the hours of day in which a series' anomalies began, format 6 the level
/// a baseline holds from before a shift it accepted; format-4 and format-5 state files (the
/// previous releases) restore every series with those empty, and a series with no anomalies
/// continues exactly.
#[test]
fn format_4_and_5_state_files_restore_every_series_and_continue_exactly() {
    let feed = |e: &mut Engine, c: &mut Collect, from: i64, to: i64| {
        for m in from..to {
            for k in 0..4 + (m % 3) {
                e.observe(obs("IT-RM", T0 + m * MIN + 100 * k, 1.0))
                    .unwrap();
            }
            e.advance(T0 + m * MIN, c);
        }
    };
    let mut original = Engine::new(EngineConfig::default());
    let mut c = Collect::default();
    feed(&mut original, &mut c, 0, 240);
    assert!(c.anomalies.is_empty());

    let series = original.export_series();
    let v4 = state_file_as(
        &original,
        4,
        series
            .iter()
            .map(|s| s.clone().map_baseline(state::BaselineStateV4::from)),
    );
    let v5 = state_file_as(
        &original,
        5,
        series
            .iter()
            .map(|s| s.clone().map_baseline(state::BaselineStateV5::from)),
    );
    let mut restored_v5 = Engine::new(EngineConfig::default());
    restored_v5.restore_state(&v5).unwrap();
    assert_eq!(restored_v5.export_series(), series);

    let mut restored = Engine::new(EngineConfig::default());
    let report = restored.restore_state(&v4).unwrap();
    assert_eq!(report.restored, series.len());
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(restored.export_series(), series);

    let (mut a, mut b) = (Collect::default(), Collect::default());
    feed(&mut original, &mut a, 240, 300);
    feed(&mut restored, &mut b, 240, 300);
    let mut b5 = Collect::default();
    feed(&mut restored_v5, &mut b5, 240, 300);
    assert!(!a.buckets.is_empty());
    assert_eq!(a.buckets, b.buckets);
    assert_eq!(a.buckets, b5.buckets);
}

/// Regression (found by `fuzz/`'s `state_file` target): a record whose checksum holds but
/// whose window was not written by an engine (its last event 34 million buckets ahead of its
/// oldest open bucket, a bucket width of 27.232 s) restored, and the next `advance` closed the
/// buckets in between one by one for minutes. Such records are now skipped as invalid, and
/// only they.
#[test]
fn a_window_no_engine_could_write_is_skipped_not_closed_bucket_by_bucket() {
    let mut original = Engine::new(EngineConfig::default());
    let mut c = Collect::default();
    for m in 0..30 {
        for geo in ["IT-RM", "IT-MI", "IT-NA"] {
            original.observe(obs(geo, T0 + m * MIN, 2.0)).unwrap();
        }
        original.advance(T0 + m * MIN, &mut c);
    }
    let series = original.export_series();
    let damaged = |s: &SeriesState| match s.geo.as_str() {
        "IT-RM" => {
            let mut s = s.clone();
            s.window.next_close -= 34_000_000;
            Some(s)
        }
        "IT-MI" => {
            let mut s = s.clone();
            s.bucket_ms = 27_232;
            Some(s)
        }
        _ => None,
    };
    let file = state_file_as(
        &original,
        state::STATE_FORMAT_VERSION,
        series
            .iter()
            .map(|s| damaged(s).unwrap_or_else(|| s.clone())),
    );
    let mut restored = Engine::new(EngineConfig::default());
    let report = restored.restore_state(&file).unwrap();
    assert_eq!(report.restored, series.len() - 2);
    let mut why: Vec<String> = report
        .skipped
        .iter()
        .map(|(key, e)| format!("{} {e}", key.as_deref().unwrap_or("?")))
        .collect();
    why.sort();
    assert_eq!(why.len(), 2, "{why:?}");
    assert!(
        why[0].contains("IT-MI") && why[0].contains("not whole seconds"),
        "{why:?}"
    );
    assert!(
        why[1].contains("IT-RM") && why[1].contains("ms ahead of its oldest open bucket"),
        "{why:?}"
    );
    // The rest runs on at once.
    restored.advance(T0 + 2 * 86_400_000, &mut c);
    assert_eq!(restored.series_count(), series.len() - 2);
}
