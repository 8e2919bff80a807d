//! Checks of a parsed configuration: every key in range, for every set of thresholds any
//! series could get; each error names the key.

use std::collections::BTreeMap;

use super::{
    Config, ConfigError, Secs, Thresholds, MAX_DURATION, MAX_LATENESS_BUCKETS, MAX_WINDOW,
};

impl Config {
    /// Every set of thresholds any series could get, for checks that must hold for all.
    fn all_resolved(&self) -> Vec<(String, Thresholds)> {
        let mut out = vec![("detection".to_string(), self.resolve("", "", ""))];
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

    pub(super) fn validate(&self, origin: &str) -> Result<(), ConfigError> {
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
        if self.detection.geos.is_some() {
            return Err(invalid(
                "detection.geos".into(),
                "is only allowed under [services.NAME]".into(),
            ));
        }
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
    if t.open_n == 0 || t.open_n > MAX_WINDOW {
        return Err((
            "open_n",
            format!("must be 1..={MAX_WINDOW}, got {}", t.open_n),
        ));
    }
    if t.open_k == 0 || t.open_k > t.open_n {
        return Err((
            "open_k",
            format!("must be 1..=open_n ({}), got {}", t.open_n, t.open_k),
        ));
    }
    if t.sustain_n == 0 || t.sustain_n > MAX_WINDOW {
        return Err((
            "sustain_n",
            format!("must be 1..={MAX_WINDOW}, got {}", t.sustain_n),
        ));
    }
    if t.sustain_k > t.sustain_n {
        return Err((
            "sustain_k",
            format!(
                "must be 0..=sustain_n ({}), got {}",
                t.sustain_n, t.sustain_k
            ),
        ));
    }
    if !(t.sustain_ratio.is_finite() && t.sustain_ratio >= 1.0) {
        return Err((
            "sustain_ratio",
            format!("must be >= 1, got {}", t.sustain_ratio),
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
    if !(t.open_z_single == 0.0 || t.open_z_single >= t.open_z) || !t.open_z_single.is_finite() {
        return Err((
            "open_z_single",
            format!(
                "must be 0 (off) or at least open_z ({}), got {}",
                t.open_z, t.open_z_single
            ),
        ));
    }
    if !(t.intermittent_scale_floor.is_finite() && t.intermittent_scale_floor >= 0.0) {
        return Err((
            "intermittent_scale_floor",
            format!("must be >= 0, got {}", t.intermittent_scale_floor),
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
