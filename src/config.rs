//! Configuration: embedded defaults, then a TOML file, then `SPIKEWATCH_…` environment
//! overrides. Every threshold can be overridden per signal, per geo, per service and per
//! service × geo; [`Config::resolve`] turns that into the [`Thresholds`] one series uses.
//!
//! Unknown keys and bad values are errors naming the key and where it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::domain::{parse_duration, Direction, Secs, MAX_DURATION};
pub use crate::engine::settings::{
    resolve_thresholds, EngineConfig, EngineSettings, GeoSettings, Overrides, Thresholds,
    MAX_LATENESS_BUCKETS,
};
pub use crate::http::HttpSettings;

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub engine: EngineSettings,
    pub geo: GeoSettings,
    /// Global defaults for every series.
    pub detection: Thresholds,
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
    #[error(
        "config file {path} has no settings (it is empty or only comments): refusing it, as it \
         would reset every setting to its default; to run on the built-in defaults give no \
         config file"
    )]
    Empty { path: PathBuf },
}

/// Prefix of environment overrides: `SPIKEWATCH_DETECTION__OPEN_Z=7` sets `detection.open_z`.
pub const ENV_PREFIX: &str = "SPIKEWATCH_";

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
        crate::secrets::register_toml(&table);
        let origin = if env_vars.is_empty() {
            origin
        } else {
            format!("{origin} (with {} environment override(s))", env_vars.len())
        };
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
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            engine: self.engine.clone(),
            geo: self.geo.clone(),
            detection: self.detection.clone(),
            signals: self.signals.clone(),
            geos: self.geos.clone(),
            services: self.services.clone(),
        }
    }

    /// Every set of thresholds any series could get, for checks that must hold for all.
    fn all_resolved(&self) -> Vec<(String, Thresholds)> {
        let mut out = vec![("detection".to_string(), self.detection.clone())];
        let mut push = |key: String, sig: Option<&str>, geo: Option<&str>, svc: Option<&str>| {
            let sigs: Vec<&str> = match sig {
                Some(s) => vec![s],
                None => std::iter::once("")
                    .chain(self.signals.keys().map(String::as_str))
                    .collect(),
            };
            for s in sigs {
                out.push((
                    key.clone(),
                    self.resolve(svc.unwrap_or(""), geo.unwrap_or(""), s),
                ));
            }
        };
        for s in self.signals.keys() {
            push(format!("signals.{s}"), Some(s), None, None);
        }
        for g in self.geos.keys() {
            push(format!("geos.{g}"), None, Some(g), None);
        }
        for (svc, o) in &self.services {
            push(format!("services.{svc}"), None, None, Some(svc));
            for g in o.geos.iter().flat_map(|m| m.keys()) {
                push(format!("services.{svc}.geos.{g}"), None, Some(g), Some(svc));
            }
        }
        out
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: String, reason: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            reason,
        };
        self.kafka
            .validate()
            .map_err(|e| invalid(e.key, e.reason))?;
        self.notify
            .validate()
            .map_err(|e| invalid(e.key, e.reason))?;
        for (section, map) in [("signals", &self.signals), ("geos", &self.geos)] {
            for (name, o) in map {
                if o.geos.is_some() {
                    return Err(invalid(
                        format!("{section}.{name}.geos"),
                        "is only allowed under [services.NAME]".into(),
                    ));
                }
            }
        }
        for (svc, o) in &self.services {
            for (g, go) in o.geos.iter().flatten() {
                if go.geos.is_some() {
                    return Err(invalid(
                        format!("services.{svc}.geos.{g}.geos"),
                        "cannot nest further".into(),
                    ));
                }
                crate::event::validate_geo(g)
                    .map_err(|e| invalid(format!("services.{svc}.geos.{g}"), e.to_string()))?;
            }
        }
        for g in self.geos.keys() {
            crate::event::validate_geo(g)
                .map_err(|e| invalid(format!("geos.{g}"), e.to_string()))?;
        }
        for (child, parent) in &self.geo.parents {
            for g in [child, parent] {
                crate::event::validate_geo(g)
                    .map_err(|e| invalid(format!("geo.parents.{child}"), e.to_string()))?;
            }
            if child == parent {
                return Err(invalid(
                    format!("geo.parents.{child}"),
                    "is its own parent".into(),
                ));
            }
        }
        if let Some(cycle) = find_parent_cycle(&self.geo.parents) {
            return Err(invalid(
                format!("geo.parents.{cycle}"),
                "forms a cycle".into(),
            ));
        }
        let caps = [
            ("engine.max_series", self.engine.max_series),
            (
                "engine.max_series_per_service",
                self.engine.max_series_per_service,
            ),
            ("engine.max_geos", self.engine.max_geos),
            ("engine.max_services", self.engine.max_services),
        ];
        let caps = caps
            .into_iter()
            .chain([("http.max_connections", self.http.max_connections)]);
        for (key, value) in caps {
            if value == 0 {
                return Err(invalid(key.into(), "must be at least 1".into()));
            }
        }
        let k = &self.kafka;
        for (key, d) in [
            ("engine.max_future_skew", self.engine.max_future_skew),
            ("kafka.session_timeout", k.session_timeout),
            ("kafka.heartbeat_interval", k.heartbeat_interval),
            ("kafka.idle_timeout", k.idle_timeout),
            ("kafka.drain_timeout", k.drain_timeout),
            ("kafka.restore_timeout", k.restore_timeout),
            ("kafka.summary_interval", k.summary_interval),
            ("http.idle_timeout", self.http.idle_timeout),
        ] {
            check_duration(d).map_err(|reason| invalid(key.into(), reason))?;
        }
        if self.http.idle_timeout.0 == 0 {
            return Err(invalid(
                "http.idle_timeout".into(),
                "must be at least 1 second".into(),
            ));
        }
        for (key, t) in self.all_resolved() {
            validate_thresholds(&t)
                .map_err(|(field, reason)| invalid(format!("{key}.{field}"), reason))?;
        }
        Ok(())
    }
}

fn check_duration(d: Secs) -> Result<(), String> {
    if d > MAX_DURATION {
        return Err(format!(
            "must be at most {MAX_DURATION} (100 years), got {} seconds",
            d.0
        ));
    }
    Ok(())
}

fn validate_thresholds(t: &Thresholds) -> Result<(), (&'static str, String)> {
    for (name, d) in [
        ("series_ttl", t.series_ttl),
        ("reopen_gap", t.reopen_gap),
        ("max_incident_duration", t.max_incident_duration),
        ("level_half_life", t.level_half_life),
    ] {
        check_duration(d).map_err(|reason| (name, reason))?;
    }
    let pos = |name: &'static str, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err((name, format!("must be a finite number > 0, got {v}")))
        }
    };
    if t.bucket.0 == 0 {
        return Err(("bucket", "must be at least 1s".into()));
    }
    if t.bucket.0 > 7 * 86_400 {
        return Err(("bucket", format!("must be at most 7d, got {}", t.bucket)));
    }
    if t.allowed_lateness.0 > 7 * 86_400 {
        return Err((
            "allowed_lateness",
            format!("must be at most 7d, got {}", t.allowed_lateness),
        ));
    }
    if t.allowed_lateness.0 > t.bucket.0 * MAX_LATENESS_BUCKETS {
        return Err((
            "allowed_lateness",
            format!(
                "{} is more than {MAX_LATENESS_BUCKETS} buckets of {}",
                t.allowed_lateness, t.bucket
            ),
        ));
    }
    pos("open_z", t.open_z)?;
    if !(t.close_z.is_finite() && t.close_z >= 0.0 && t.close_z < t.open_z) {
        return Err((
            "close_z",
            format!(
                "must be >= 0 and below open_z ({}), got {}",
                t.open_z, t.close_z
            ),
        ));
    }
    if t.open_n == 0 || t.open_n > 32 {
        return Err(("open_n", format!("must be 1..=32, got {}", t.open_n)));
    }
    if t.open_k == 0 || t.open_k > t.open_n {
        return Err((
            "open_k",
            format!("must be 1..=open_n ({}), got {}", t.open_n, t.open_k),
        ));
    }
    if t.close_m == 0 {
        return Err(("close_m", "must be at least 1".into()));
    }
    if t.close_after.is_some_and(|d| d.0 == 0) {
        return Err(("close_after", "must be at least 1s".into()));
    }
    if !(t.min_count.is_finite() && t.min_count >= 0.0) {
        return Err(("min_count", format!("must be >= 0, got {}", t.min_count)));
    }
    if !(t.rel_scale_floor.is_finite() && t.rel_scale_floor >= 0.0) {
        return Err((
            "rel_scale_floor",
            format!("must be >= 0, got {}", t.rel_scale_floor),
        ));
    }
    pos("min_scale", t.min_scale)?;
    pos("no_data_expected", t.no_data_expected)?;
    if t.level_half_life.0 < t.bucket.0 {
        return Err((
            "level_half_life",
            format!("must be at least one bucket ({})", t.bucket),
        ));
    }
    if t.series_ttl.0 < t.bucket.0 {
        return Err((
            "series_ttl",
            format!("must be at least one bucket ({})", t.bucket),
        ));
    }
    Ok(())
}

/// Parses TOML text into a table. A syntax error reports where (line, column, the table and
/// the key of that line) and what, but never the text of the line: `toml`'s own message quotes
/// it, and it may hold a password (also at ERROR on every hot reload).
fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        message: syntax_error(text, &e),
    })
}

fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let what = e.message().trim();
    let Some(span) = e.span() else {
        return format!("TOML syntax error: {what}");
    };
    let at = span.start.min(text.len());
    let before = text.get(..at).unwrap_or("");
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    // Names are safe to show, values are not: only a bare or quoted key before `=` is named,
    // and only table headers of earlier lines.
    let key = line.split_once('=').map(|(k, _)| k.trim()).filter(|k| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.\"' ".contains(c))
    });
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .filter(|l| {
            l.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.\"'[] ".contains(c))
        });
    let mut place = String::new();
    if let Some(t) = table {
        place.push_str(&format!(" in {t}"));
    }
    if let Some(k) = key {
        place.push_str(&format!(", key {k}"));
    }
    format!(
        "TOML syntax error at line {line_no}, column {column}{place}: {what} (the line is not shown: it may hold a secret)"
    )
}

fn find_parent_cycle(parents: &BTreeMap<String, String>) -> Option<String> {
    for start in parents.keys() {
        let mut cur = start;
        for _ in 0..=parents.len() {
            match parents.get(cur) {
                Some(p) if p == start => return Some(start.clone()),
                Some(p) => cur = p,
                None => break,
            }
        }
    }
    None
}

/// Sets `a.b.c` from `SPIKEWATCH_A__B__C`. The value is read as a TOML value when it parses
/// as one (numbers, booleans, quoted strings), else as a plain string.
fn apply_env(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = var[ENV_PREFIX.len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::Env {
            var: var.to_string(),
            reason: "has an empty path segment".into(),
        });
    }
    let parsed: toml::Value = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut cur = table;
    for seg in parents {
        let entry = cur
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
            var: var.to_string(),
            reason: format!("`{seg}` is not a table in the config"),
        })?;
    }
    cur.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load_with_env(None, no_env()).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn overrides_resolve_in_order() {
        let c = Config::from_toml_str(
            r#"
            [detection]
            open_z = 5.0
            [signals.mentions]
            open_z = 5.5
            [geos.IT]
            open_z = 6.0
            min_count = 3
            [services.telegram]
            open_z = 7.0
            [services.telegram.geos.IT]
            open_z = 8.0
            "#,
            "test.toml",
        )
        .unwrap();
        assert_eq!(c.resolve("x", "DE", "complaints").open_z, 5.0);
        assert_eq!(c.resolve("x", "DE", "mentions").open_z, 5.5);
        assert_eq!(c.resolve("x", "IT", "mentions").open_z, 6.0);
        assert_eq!(c.resolve("telegram", "DE", "mentions").open_z, 7.0);
        let t = c.resolve("telegram", "IT", "mentions");
        assert_eq!(t.open_z, 8.0);
        assert_eq!(t.min_count, 3.0);
    }

    #[test]
    fn unknown_key_names_the_key_and_file() {
        let e = Config::from_toml_str("[detection]\nopen_zz = 3\n", "my.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("my.toml") && msg.contains("open_zz"), "{msg}");
    }

    #[test]
    fn bad_value_names_the_key_and_file() {
        let e = Config::from_toml_str("[services.telegram]\nclose_z = 9\n", "my.toml").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("my.toml") && msg.contains("services.telegram.close_z"),
            "{msg}"
        );
        let e =
            Config::from_toml_str("[detection]\nopen_k = 4\nopen_n = 3\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("detection.open_k"), "{e}");
        let e =
            Config::from_toml_str("[detection]\nbucket = \"5 parsecs\"\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("bucket"), "{e}");
    }

    #[test]
    fn geo_overrides_outside_services_are_rejected() {
        let e = Config::from_toml_str("[geos.IT.geos.IT-RM]\nopen_z = 9\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("geos.IT.geos"), "{e}");
    }

    #[test]
    fn parent_cycles_are_rejected() {
        let e = Config::from_toml_str("[geo.parents]\nIT = \"EU\"\nEU = \"IT\"\n", "x.toml")
            .unwrap_err();
        assert!(e.to_string().contains("cycle"), "{e}");
    }

    #[test]
    fn env_overrides_win_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[detection]\nopen_z = 5.0\nbucket = \"2m\"\n").unwrap();
        let env = vec![
            (
                "SPIKEWATCH_DETECTION__OPEN_Z".to_string(),
                "7.5".to_string(),
            ),
            (
                "SPIKEWATCH_SERVICES__TELEGRAM__MIN_COUNT".to_string(),
                "20".to_string(),
            ),
            ("UNRELATED".to_string(), "1".to_string()),
        ];
        let c = Config::load_with_env(Some(&p), env).unwrap();
        assert_eq!(c.detection.open_z, 7.5);
        assert_eq!(c.detection.bucket, Secs(120));
        assert_eq!(c.resolve("telegram", "IT", "mentions").min_count, 20.0);
    }

    #[test]
    fn env_override_with_unknown_key_is_an_error() {
        let env = vec![("SPIKEWATCH_DETECTION__NOPE".to_string(), "1".to_string())];
        let e = Config::load_with_env(None, env).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    /// Regression (issue 13, item 8): an empty config file on reload silently reset every
    /// threshold to its default. A file without settings is refused; the defaults apply only
    /// when no file is given.
    #[test]
    fn empty_or_comment_only_config_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        for text in ["", "  \n\t\n", "# all commented out\n# open_z = 9\n"] {
            std::fs::write(&p, text).unwrap();
            let e = Config::load_with_env(Some(&p), no_env()).unwrap_err();
            assert!(matches!(e, ConfigError::Empty { .. }), "{text:?}: {e}");
            let msg = e.to_string();
            assert!(
                msg.contains("c.toml") && msg.contains("no settings"),
                "{msg}"
            );
        }
        assert!(Config::load_with_env(None, no_env()).is_ok());
    }

    /// Regression (issue 13, item 8): a huge `max_future_skew` wrapped negative in
    /// milliseconds and rejected every event. Every duration is bounded, with the key named.
    #[test]
    fn huge_durations_are_rejected_naming_the_key_not_wrapped() {
        for (text, key) in [
            (
                "[engine]\nmax_future_skew = 9223372036854775807\n",
                "engine.max_future_skew",
            ),
            (
                "[engine]\nmax_future_skew = \"300000000w\"\n",
                "engine.max_future_skew",
            ),
            (
                "[detection]\nseries_ttl = 9223372036854775807\n",
                "detection.series_ttl",
            ),
            (
                "[services.x]\nreopen_gap = \"4000000d\"\n",
                "services.x.reopen_gap",
            ),
            (
                "[kafka]\ndrain_timeout = 9223372036854775807\n",
                "kafka.drain_timeout",
            ),
        ] {
            let e = Config::from_toml_str(text, "x.toml").unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains(key) && msg.contains("at most"),
                "{text}: {msg}"
            );
        }
        let ok =
            Config::from_toml_str("[engine]\nmax_future_skew = \"3650d\"\n", "x.toml").unwrap();
        assert!(ok.engine.max_future_skew.millis() > 0);
        assert_eq!(
            Secs(u64::MAX).millis(),
            i64::MAX,
            "saturates, never negative"
        );
    }

    #[test]
    fn http_limits_default_to_a_cap_and_an_idle_timeout_and_reject_zero() {
        let c = Config::default();
        assert_eq!(c.http.max_connections, 256);
        assert_eq!(c.http.idle_timeout, Secs(30));
        let c = Config::from_toml_str(
            "[http]\nmax_connections = 8\nidle_timeout = \"5s\"\n",
            "x.toml",
        )
        .unwrap();
        assert_eq!((c.http.max_connections, c.http.idle_timeout), (8, Secs(5)));
        for (text, key) in [
            ("[http]\nmax_connections = 0\n", "http.max_connections"),
            ("[http]\nidle_timeout = 0\n", "http.idle_timeout"),
        ] {
            let msg = Config::from_toml_str(text, "x.toml")
                .unwrap_err()
                .to_string();
            assert!(msg.contains(key) && msg.contains("at least"), "{msg}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s").unwrap(), Secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Secs(300));
        assert_eq!(parse_duration("6h").unwrap(), Secs(21_600));
        assert_eq!(parse_duration("7d").unwrap(), Secs(604_800));
        assert_eq!(parse_duration("42").unwrap(), Secs(42));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
