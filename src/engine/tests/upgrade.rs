//! Reading state written by earlier formats.

use super::*;

/// State format 4 added how often a series is 0; a format-3 state file (the previous release)
/// must still restore every series, which then scores exactly as before the upgrade.
#[test]
fn a_format_3_state_file_restores_every_series_and_continues_exactly() {
    use state::SeriesStateV3;

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
    let mut v3 = state::FILE_MAGIC.to_vec();
    let mut push = |rec: Vec<u8>| {
        v3.extend_from_slice(&(rec.len() as u32).to_le_bytes());
        v3.extend_from_slice(&rec);
    };
    push(state::encode_as(
        &state::FileHead {
            clock: original.clock(),
            outages: Vec::new(),
        },
        3,
    ));
    let series = original.export_series();
    for s in &series {
        let old = SeriesStateV3::from(s.clone());
        push(state::encode_as(&old, 3));
    }

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
