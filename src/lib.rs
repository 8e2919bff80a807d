//! spikewatch: detect service outages from social mentions and complaint counts.
//!
//! The detection engine ([`engine`]) is a pure library: no I/O, no clock, time is passed in.
//! Every driver (the replay/backtest command, the demo, the Kafka pipeline) feeds it the same
//! way: `observe` events, `advance` the watermark, receive bucket reports and anomaly events.

// Library and binary code never `unwrap()`: a failure says what was expected (`expect`) or is
// an error with context. Tests may (clippy.toml: allow-unwrap-in-tests).
#![warn(clippy::unwrap_used)]

pub mod calendar;
pub mod config;
pub mod demo;
pub mod domain;
pub mod engine;
pub mod event;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod notify;
pub mod plot;
mod prom;
pub mod replay;
pub mod secrets;
pub mod sim;
pub mod state_file;
pub mod status;
