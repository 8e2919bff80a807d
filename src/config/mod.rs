//! Configuration: embedded defaults, then a TOML file, then `SPIKEWATCH_…` environment
//! overrides. Every threshold can be overridden per signal, per geo, per service and per
//! service × geo; [`Config::resolve`] turns that into the [`Thresholds`] one series uses.
//!
//! Unknown keys and bad values are errors naming the key and where it came from.
//!
//! Here: the configuration's types, loading and resolution. `parse` turns TOML text into a
//! table (its syntax errors never quote a line), `env` applies the environment overrides,
//! `validate` checks a parsed configuration, `tests` holds the unit tests.

mod env;
mod parse;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use env::{apply_env, apply_setting};
use parse::parse_table;

pub use crate::calendar::SummerTime;
pub use crate::domain::{parse_duration, Direction, Secs, MAX_DURATION};
pub use crate::engine::settings::{
    resolve_thresholds, EngineConfig, EngineSettings, GeoSettings, Overrides, Thresholds,
    MAX_LATENESS_BUCKETS, MAX_WINDOW,
};
pub use crate::http::HttpSettings;

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub engine: EngineSettings,
    pub geo: GeoSettings,
    /// Overrides for every series, over the built-in defaults (some of which depend on the
    /// series: see [`resolve_thresholds`]).
    pub detection: Overrides,
    /// Overrides per signal (`mentions`, `complaints`, or a CSV signal name).
    pub signals: BTreeMap<String, Overrides>,
    /// Overrides per geo, for every service.
    pub geos: BTreeMap<String, Overrides>,
    /// Overrides per service, with `[services.NAME.geos.GEO]` per service × geo.
    pub services: BTreeMap<String, Overrides>,
    /// Kafka pipeline settings, read by `spikewatch run`.
    pub kafka: crate::kafka::KafkaSettings,
    /// The operator's HTTP server of `spikewatch run` (status page, API, metrics, health).
    pub http: HttpSettings,
    /// Alert delivery (`[[notify.webhook]]`), read by `spikewatch run`.
    pub notify: crate::notify::NotifySettings,
}

/// A configuration that could not be loaded; always names where and which key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: `{key}` {reason}")]
    Invalid {
        origin: String,
        key: String,
        reason: String,
    },
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("setting {key}: {reason}")]
    Setting { key: String, reason: String },
    #[error(
        "config file {path} has no settings (it is empty or only comments): refusing it, as it \
         would reset every setting to its default; to run on the built-in defaults give no \
         config file"
    )]
    Empty { path: PathBuf },
}

/// Prefix of environment overrides: `SPIKEWATCH_DETECTION__OPEN_Z=7` sets `detection.open_z`.
pub(crate) const ENV_PREFIX: &str = "SPIKEWATCH_";

/// The engine's part of a configuration: `Engine::new(config.clone())` keeps compiling.
impl From<Config> for EngineConfig {
    fn from(c: Config) -> Self {
        EngineConfig {
            engine: c.engine,
            geo: c.geo,
            detection: c.detection,
            signals: c.signals,
            geos: c.geos,
            services: c.services,
        }
    }
}

/// The Kafka pipeline's part of a configuration: `run_pipeline(config, …)` keeps compiling.
impl From<Config> for crate::kafka::PipelineConfig {
    fn from(mut c: Config) -> Self {
        let kafka = std::mem::take(&mut c.kafka);
        Self {
            engine: c.into(),
            kafka,
        }
    }
}

impl From<&Config> for crate::kafka::PipelineConfig {
    fn from(c: &Config) -> Self {
        Self {
            engine: c.engine_config(),
            kafka: c.kafka.clone(),
        }
    }
}

impl From<&Config> for EngineConfig {
    fn from(c: &Config) -> Self {
        c.engine_config()
    }
}

impl Config {
    /// Defaults, then the file (if any), then `SPIKEWATCH_…` variables from the process
    /// environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::load_with_settings(path, env, &[])
    }

    /// As [`Self::load_with_env`], then `settings` (dotted TOML key, value) on top of
    /// everything: `spikewatch replay --set detection.open_z=7`.
    pub fn load_with_settings(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        settings: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let (origin, text) = match path {
            Some(p) => (
                p.display().to_string(),
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?,
            ),
            None => ("built-in defaults".to_string(), String::new()),
        };
        let mut table = parse_table(&text, &origin)?;
        // An empty file is far more likely a truncated write or a bad deploy than a wish for
        // the defaults, and on a hot reload it would silently reset every threshold.
        if let (Some(p), true) = (path, table.is_empty()) {
            return Err(ConfigError::Empty {
                path: p.to_path_buf(),
            });
        }
        let mut env_vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
            .collect();
        env_vars.sort();
        for (var, value) in &env_vars {
            apply_env(&mut table, var, value)?;
        }
        for (key, value) in settings {
            apply_setting(&mut table, key, value)?;
        }
        crate::secrets::register_toml(&table);
        let mut origin = if env_vars.is_empty() {
            origin
        } else {
            format!("{origin} (with {} environment override(s))", env_vars.len())
        };
        if !settings.is_empty() {
            // Keys only: a value may be a secret.
            let keys: Vec<&str> = settings.iter().map(|(k, _)| k.as_str()).collect();
            origin = format!("{origin} (with {} set)", keys.join(", "));
        }
        Self::from_table(table, &origin)
    }

    /// Parses a TOML document (no environment overrides).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let table = parse_table(text, origin)?;
        crate::secrets::register_toml(&table);
        Self::from_table(table, origin)
    }

    fn from_table(table: toml::Table, origin: &str) -> Result<Self, ConfigError> {
        let cfg: Config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Parse {
                origin: origin.to_string(),
                // A type error may quote the value; secret ones are registered by now.
                message: crate::secrets::redact(&e.to_string()).into_owned(),
            })?;
        cfg.notify.register_secrets();
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Thresholds for one series: defaults < signal < geo < service < service × geo.
    pub fn resolve(&self, service: &str, geo: &str, signal: &str) -> Thresholds {
        resolve_thresholds(
            &self.detection,
            &self.signals,
            &self.geos,
            &self.services,
            service,
            geo,
            signal,
        )
    }

    /// What the engine reads of this configuration: caps, geo hierarchy and thresholds, but
    /// no Kafka or HTTP settings (and so no secrets).
    pub(crate) fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            engine: self.engine.clone(),
            geo: self.geo.clone(),
            detection: self.detection.clone(),
            signals: self.signals.clone(),
            geos: self.geos.clone(),
            services: self.services.clone(),
        }
    }
}
