//! Any bytes as an input message: the hand-written fast decoder, wherever it answers, must
//! give exactly what the reference decoder (serde_json) gives, event or error, on every path.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    spikewatch::event::assert_decoders_agree(line);
});
