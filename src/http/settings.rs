//! `[http]`: the settings of the operator's HTTP server, owned by the server (the application
//! `config::Config` wraps them).

use serde::{Deserialize, Serialize};

use crate::domain::Secs;

/// `[http]`: where `spikewatch run` serves `/`, `/api/…`, `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// `HOST:PORT`; unset: no HTTP server (`--http-addr` overrides).
    pub addr: Option<String>,
    /// Open connections at most. At the cap a new connection closes the oldest one, so idle
    /// clients can neither exhaust file descriptors (which the pipeline's own sockets need)
    /// nor lock out `/healthz`.
    pub max_connections: usize,
    /// A connection that sends no complete request for this long (after connecting or after
    /// its previous response) is closed.
    pub idle_timeout: Secs,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            addr: None,
            max_connections: 256,
            idle_timeout: Secs(30),
        }
    }
}
