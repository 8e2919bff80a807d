//! Any file given to `spikewatch replay`, as a CSV series or as JSONL events: the replay
//! answers with scores or an error naming the problem, and never panics. The first byte picks
//! the format and the options (`--values`, `--bucket`), the rest is the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spikewatch::config::{Config, Secs};
use spikewatch::replay::{replay_csv, replay_jsonl, ReplayOptions, ReplayOutput, ValueKind};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    let opts = ReplayOptions {
        values: match pick % 3 {
            0 => ValueKind::Auto,
            1 => ValueKind::Count,
            _ => ValueKind::Gauge,
        },
        bucket: (pick & 0x10 != 0).then_some(Secs(60 * u64::from(1 + (pick >> 5)))),
        ..ReplayOptions::default()
    };
    let config = Config::default();
    let (mut scores, mut incidents) = (Vec::new(), Vec::new());
    let output = ReplayOutput::new(&mut scores).with_incidents(&mut incidents);
    let _ = if pick & 0x08 == 0 {
        replay_csv("fuzz.csv", file, &config, &opts, output)
    } else {
        replay_jsonl("fuzz.jsonl", file, &config, &opts, output)
    };
});
