//! A state file (or changelog) whose records pass the checksum but hold anything: restoring
//! it fails cleanly or gives an engine that runs on, saves, and restores what it saved.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spikewatch::config::Config;
use spikewatch::engine::state::seal_state_file;
use spikewatch::engine::{BaselineSeed, Engine};
use spikewatch::event::{decode_any, AnomalyEvent, InputEvent};

const DAY_MS: i64 = 86_400_000;

fuzz_target!(|input: &[u8]| {
    let file = seal_state_file(input);
    let _ = BaselineSeed::from_state_file(&file);
    let mut engine = Engine::new(Config::default());
    if engine.restore_state(&file).is_err() {
        return;
    }
    let mut sink: Vec<AnomalyEvent> = Vec::new();
    let now = engine.watermark().unwrap_or(1_700_000_000_000);
    // Events for every restored series, then two days of time.
    for st in engine.export_series() {
        let (service, geo, signal) = (st.service.clone(), st.geo.clone(), st.signal.clone());
        let line = if signal == "mentions" {
            format!(r#"{{"ts":{now},"service":"{service}","geo":"{geo}"}}"#)
        } else {
            format!(r#"{{"ts":{now},"service":"{service}","geo":"{geo}","count":7}}"#)
        };
        if let Ok(ev) = decode_any(line.as_bytes()) {
            let ev: InputEvent<'_> = ev;
            let _ = engine.observe_event(&ev);
        }
    }
    engine.advance(now.saturating_add(2 * DAY_MS), &mut sink);
    let saved = engine.save_state();
    let mut again = Engine::new(Config::default());
    again
        .restore_state(&saved)
        .expect("an engine restores what it saved");
    again.finish(&mut sink);
});
