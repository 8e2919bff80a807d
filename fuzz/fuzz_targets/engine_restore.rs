//! Any stream of traffic, silences, late and far-ahead events, with checkpoints
//! (`spikewatch::sim::run_with_checkpoints` reads the bytes): an engine saved and restored at
//! every checkpoint publishes exactly the anomaly and outage events of one that never
//! stopped, and ends with the same state. The Kafka changelog and `--initial-state` rely on it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|ops: &[u8]| {
    let runs = spikewatch::sim::run_with_checkpoints(ops);
    if runs.parted_on_far_ahead {
        // A far-ahead run being confirmed is not saved (README, "Checkpoints").
        return;
    }
    let (plain, restarted) = (&runs.uninterrupted, &runs.restarted);
    assert_eq!(plain.anomalies, restarted.anomalies);
    assert_eq!(plain.outages, restarted.outages);
    assert_eq!(plain.series, restarted.series);
});
