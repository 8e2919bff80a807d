//! Configuration: embedded defaults, then a TOML file, then `SPIKEWATCH_…` environment
//! overrides. Every threshold can be overridden per signal, per geo, per service and per
//! service × geo; [`Config::resolve`] turns that into the [`Thresholds`] one series uses.
//!
//! Unknown keys and bad values are errors naming the key and where it came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which deviations count as anomalies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Spikes (complaints and mentions rise in an outage).
    Up,
    /// Drops (traffic that vanishes).
    Down,
    /// Either way.
    Both,
}

/// A duration in whole seconds; in TOML an integer number of seconds or a string such as
/// `"90s"`, `"5m"`, `"6h"`, `"7d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Secs(pub u64);

impl Secs {
    /// In milliseconds. Every configured duration is at most [`MAX_DURATION`] (validated), so
    /// this never overflows; it saturates rather than wrap negative for anything else.
    pub const fn millis(self) -> i64 {
        if self.0 > (i64::MAX / 1000) as u64 {
            i64::MAX
        } else {
            self.0 as i64 * 1000
        }
    }
}

/// Longest duration any setting accepts (100 years): far beyond any sensible value, and small
/// enough that adding it to an event time or to `Instant::now()` cannot overflow. A huge
/// `max_future_skew` used to wrap negative and reject every event.
pub const MAX_DURATION: Secs = Secs(100 * 365 * 86_400);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s > 0 && s % 86_400 == 0 {
            write!(f, "{}d", s / 86_400)
        } else if s > 0 && s % 3600 == 0 {
            write!(f, "{}h", s / 3600)
        } else if s > 0 && s % 60 == 0 {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl Serialize for Secs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(i) if i >= 0 => Ok(Secs(i as u64)),
            Raw::Int(i) => Err(serde::de::Error::custom(format!(
                "duration must not be negative, got {i}"
            ))),
            Raw::Str(s) => parse_duration(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `"90s"`, `"5m"`, `"6h"`, `"7d"` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Secs, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid duration {s:?}: expected e.g. \"90s\", \"5m\", \"6h\", \"7d\"")
    })?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(format!(
                "invalid duration unit {other:?} in {s:?}: use s, m, h, d or w"
            ))
        }
    };
    n.checked_mul(mult)
        .map(Secs)
        .ok_or_else(|| format!("duration {s:?} is too large"))
}

/// Everything that decides how one series is bucketed, scored and turned into incidents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Width of a time bucket.
    pub bucket: Secs,
    /// How long after a bucket ends events for it are still accepted.
    pub allowed_lateness: Secs,
    /// Buckets after a series first appears during which no incident opens.
    pub warmup_buckets: u32,
    /// A series with no events for this long is dropped from memory.
    pub series_ttl: Secs,
    /// Learn time-of-day and day-of-week profiles (off: recent level only).
    pub seasonality: bool,
    pub direction: Direction,
    /// Score at or above which a bucket counts toward opening an incident.
    pub open_z: f64,
    /// Score below which a bucket counts as quiet.
    pub close_z: f64,
    /// An incident opens when `open_k` of the last `open_n` buckets are at or above `open_z`.
    pub open_k: u32,
    pub open_n: u32,
    /// An incident resolves after this many quiet buckets in a row.
    pub close_m: u32,
    /// A bucket counts toward opening only if it has at least this many events (for `down`: expected).
    pub min_count: f64,
    /// A renewed rise this soon after an incident resolved re-opens the same incident.
    pub reopen_gap: Secs,
    /// An incident open this long is accepted as the new normal: resolved, baseline re-seeded.
    pub max_incident_duration: Secs,
    /// Count signal: the variance is never below the expected count (Poisson).
    pub poisson_floor: bool,
    /// The scale is never below this fraction of the expected value.
    pub rel_scale_floor: f64,
    /// The scale is never below this absolute value.
    pub min_scale: f64,
    /// Half-life of the recent level the seasonal profile is scaled to.
    pub level_half_life: Secs,
    /// Scores are calibrated to the series' own tail (see `engine::calibration`). Default:
    /// on for `mentions`, off for other signals.
    pub calibrate: bool,
    /// An `up` series with no events while this many were expected (summed over its silent
    /// buckets) has *no data*, not zero: nothing is learned or opened until events return.
    pub no_data_expected: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            bucket: Secs(60),
            allowed_lateness: Secs(120),
            warmup_buckets: 60,
            series_ttl: Secs(14 * 86_400),
            seasonality: true,
            direction: Direction::Up,
            open_z: 6.0,
            close_z: 2.5,
            open_k: 2,
            open_n: 3,
            close_m: 15,
            min_count: 5.0,
            reopen_gap: Secs(12 * 3600),
            max_incident_duration: Secs(4 * 86_400),
            poisson_floor: true,
            rel_scale_floor: 0.05,
            min_scale: 1.0,
            level_half_life: Secs(3 * 3600),
            calibrate: false,
            no_data_expected: 10.0,
        }
    }
}

/// A partial [`Thresholds`]: only what is set overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub bucket: Option<Secs>,
    pub allowed_lateness: Option<Secs>,
    pub warmup_buckets: Option<u32>,
    pub series_ttl: Option<Secs>,
    pub seasonality: Option<bool>,
    pub direction: Option<Direction>,
    pub open_z: Option<f64>,
    pub close_z: Option<f64>,
    pub open_k: Option<u32>,
    pub open_n: Option<u32>,
    pub close_m: Option<u32>,
    pub min_count: Option<f64>,
    pub reopen_gap: Option<Secs>,
    pub max_incident_duration: Option<Secs>,
    pub poisson_floor: Option<bool>,
    pub rel_scale_floor: Option<f64>,
    pub min_scale: Option<f64>,
    pub level_half_life: Option<Secs>,
    pub calibrate: Option<bool>,
    pub no_data_expected: Option<f64>,
    /// Per-geo overrides; only allowed under `[services.NAME]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geos: Option<BTreeMap<String, Overrides>>,
}

macro_rules! apply_overrides {
    ($t:expr, $o:expr, $($f:ident),*) => {
        $( if let Some(v) = $o.$f { $t.$f = v; } )*
    };
}

impl Overrides {
    fn apply(&self, t: &mut Thresholds) {
        apply_overrides!(
            t,
            self.clone(),
            bucket,
            allowed_lateness,
            warmup_buckets,
            series_ttl,
            seasonality,
            direction,
            open_z,
            close_z,
            open_k,
            open_n,
            close_m,
            min_count,
            reopen_gap,
            max_incident_duration,
            poisson_floor,
            rel_scale_floor,
            min_scale,
            level_half_life,
            calibrate,
            no_data_expected
        );
    }
}

/// Engine-wide settings that are not per series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// Most series kept in memory; beyond it new series are not created and their events
    /// count toward their parent geos only.
    pub max_series: usize,
    /// Most series of one service, so that one noisy service cannot crowd out the others.
    pub max_series_per_service: usize,
    /// Most distinct geo codes remembered; events of further new codes count toward their
    /// nearest known ancestor (a flood of typos or junk cannot exhaust memory).
    pub max_geos: usize,
    /// Most distinct services; events of further new services are rejected.
    pub max_services: usize,
    /// Events further ahead of the newest event time seen are rejected as absurd.
    pub max_future_skew: Secs,
    /// Services with an open incident in one geo at once that make a "many services" hint.
    pub concurrent_services_hint: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            max_series: 1_000_000,
            max_series_per_service: 200_000,
            max_geos: 200_000,
            max_services: 10_000,
            max_future_skew: Secs(86_400),
            concurrent_services_hint: 2,
        }
    }
}

/// Geography hierarchy: `IT-RM` rolls up to `IT` by its `-` segments; `parents` adds levels
/// above countries (e.g. `IT = "EU"`) or replaces the implicit parent. Everything ends at `*`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeoSettings {
    pub parents: BTreeMap<String, String>,
    /// Do not create the global `*` series.
    pub no_global: bool,
}

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
}

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
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// Thresholds for one series: defaults < signal < geo < service < service × geo.
    pub fn resolve(&self, service: &str, geo: &str, signal: &str) -> Thresholds {
        let mut t = self.detection.clone();
        // Built in, as if `[signals.mentions] calibrate = true`: social mentions come in
        // retweet bursts that are not outages; on labelled service metrics, whose labelled
        // events are often such spikes, calibration cost recall (README, "Detection quality
        // on real data"), so other signals keep raw scores unless configured.
        if signal == "mentions" {
            t.calibrate = true;
        }
        if let Some(o) = self.signals.get(signal) {
            o.apply(&mut t);
        }
        if let Some(o) = self.geos.get(geo) {
            o.apply(&mut t);
        }
        if let Some(o) = self.services.get(service) {
            o.apply(&mut t);
            if let Some(g) = o.geos.as_ref().and_then(|g| g.get(geo)) {
                g.apply(&mut t);
            }
        }
        t
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

/// Longest lateness, in buckets, any series may have; bounds the open-bucket ring.
pub const MAX_LATENESS_BUCKETS: u64 = 60;

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
