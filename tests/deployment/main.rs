//! CI runs neither Docker nor a cluster: check that what deploys spikewatch says what the README
//! promises and agrees with what the binary serves. One test binary (`cargo test --test
//! deployment`; `cargo test --test deployment monitoring::` runs one module), a module per
//! concern:
//!
//! * `compose`: docker-compose.yml, its config, the Dockerfile and `.dockerignore`, and the
//!   `spikewatch healthcheck` subcommand the compose healthcheck runs.
//! * `kubernetes`: the manifests in deploy/k8s/ (and `kubectl kustomize` where installed); both
//!   shipped configs pass `check-config`.
//! * `monitoring`: the alert rules, the Grafana dashboard and README's metrics table use only
//!   what /metrics serves; promtool checks them where installed.
//!
//! The helpers they share are here.

mod compose;
mod kubernetes;
mod monitoring;

use serde_yaml::Value;

use spikewatch::config::Config;

pub(crate) const ROOT: &str = env!("CARGO_MANIFEST_DIR");
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_spikewatch");

/// The repository's file `rel`.
pub(crate) fn read(rel: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{rel}")).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The YAML documents of the repository's file `rel` (empty ones left out).
pub(crate) fn yaml_docs(rel: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(&read(rel))
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// deploy/spikewatch.toml, the config the compose deployment mounts.
pub(crate) fn deploy_config() -> Config {
    Config::load_with_env(
        Some(std::path::Path::new(&format!(
            "{ROOT}/deploy/spikewatch.toml"
        ))),
        Vec::new(),
    )
    .expect("deploy/spikewatch.toml is a valid config")
}

/// The config's `[http] addr`, which must be set.
pub(crate) fn http_addr(cfg: &Config) -> std::net::SocketAddr {
    cfg.http
        .addr
        .as_deref()
        .expect("[http] addr is set: without it there is no page, /metrics or probes")
        .parse()
        .expect("[http] addr is HOST:PORT")
}

/// The status the binary's HTTP router gives `path`, not ready and then ready.
pub(crate) async fn route_status(path: &str) -> (u16, u16) {
    use tower::ServiceExt;
    let state = spikewatch::http::AppState::new("test");
    let get = |state: spikewatch::http::AppState| async move {
        spikewatch::http::router(state)
            .oneshot(
                axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let not_ready = get(state.clone()).await;
    state.readiness.set_ready();
    (not_ready, get(state).await)
}

/// `v` as YAML text, to search or show in a message.
pub(crate) fn text(v: &Value) -> String {
    serde_yaml::to_string(v).unwrap()
}
