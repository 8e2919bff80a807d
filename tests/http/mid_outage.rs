//! Shared by the HTTP and browser tests: the operator views in the middle of an outage.

use spikewatch::config::Config;
use spikewatch::engine::Engine;
use spikewatch::http::AppState;
use spikewatch::sim::{self, Scenario, HOUR_MS};
use spikewatch::status::StatusBoard;

/// A board fed by the engine with the demo's first weeks up to one hour into the Telegram
/// outage across Italy and Europe.
pub(crate) fn state_mid_outage() -> AppState {
    let s = Scenario {
        days: 17,
        ..Scenario::demo()
    };
    let mut engine = Engine::new(Config::default());
    let mut board = StatusBoard::default();
    sim::drive_until(
        &s,
        &mut engine,
        &mut board,
        s.outages[0].start_ms() + HOUR_MS,
    );
    let state = AppState::new("test");
    *state.board.lock().unwrap() = board;
    state
}
