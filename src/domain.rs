//! Vocabulary shared by every layer, with no dependencies inside the crate: the direction of
//! an anomaly and durations as configured (and as shown). The bottom of the crate: the event
//! formats, the engine and the application configuration all build on it (`config`
//! re-exports it).

use std::fmt;

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
    pub(crate) const fn millis(self) -> i64 {
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

/// A duration in milliseconds as the demo and alert texts show it: `3h05m`, `48h10m`, `7m`.
pub fn fmt_duration(ms: i64) -> String {
    let m = ms.max(0) / 60_000;
    if m >= 60 {
        format!("{}h{:02}m", m / 60, m % 60)
    } else {
        format!("{m}m")
    }
}

/// The country of a geo code: its first `-` segment (`IT-RM` → `IT`); a code without one (a
/// country, a configured group, `*`) is its own. Geo codes start with the ISO country code,
/// so this holds whatever `[geo] parents` adds above or between the levels.
pub fn country_of(geo: &str) -> &str {
    geo.split('-').next().unwrap_or(geo)
}
