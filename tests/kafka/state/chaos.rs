//! Instances interrupted mid-stream against the uninterrupted engine: SIGKILLs at seeded
//! points (`chaos_…`), and an owner paused past its session timeout that wakes after its
//! replacement and must not roll the changelog back (`a_paused_owner_…`).

use std::collections::BTreeMap;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::plus_one;
use super::uninterrupted::{assert_same_as_uninterrupted, WeeksRun};
use crate::common::*;
use spikewatch::sim::HOUR_MS;

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
