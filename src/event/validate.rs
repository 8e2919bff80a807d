//! Checks of input events: names, geo codes, event time and amounts.

use super::{ComplaintEvent, DecodeError, MentionEvent, Timestamp, MAX_AMOUNT, MAX_NAME_LEN};

/// Checks a service name: non-empty, at most `MAX_NAME_LEN` bytes, `[a-z0-9._-]`
/// after lower-casing is left to the producer; we only refuse what would break keys and output.
pub fn validate_service(s: &str) -> Result<(), DecodeError> {
    validate_name("service", s, &SERVICE_BYTES)
}

/// Checks a geo code (see README "Geography"): `*`, or `-`-separated segments of
/// `[A-Za-z0-9_]`, e.g. `IT`, `IT-RM`, `EU`, `US-CA-SF`.
pub fn validate_geo(s: &str) -> Result<(), DecodeError> {
    if s == "*" {
        return Ok(());
    }
    validate_name("geo", s, &GEO_BYTES)?;
    if s.starts_with('-') || s.ends_with('-') || s.as_bytes().windows(2).any(|w| w == b"--") {
        return Err(DecodeError::InvalidField {
            field: "geo",
            reason: format!("{s:?} has an empty segment"),
        });
    }
    Ok(())
}

/// The bytes allowed in a name: ASCII letters and digits, and `extra`.
const fn name_bytes(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 128 {
        t[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

static SERVICE_BYTES: [bool; 256] = name_bytes(b"._-");
static GEO_BYTES: [bool; 256] = name_bytes(b"_-");

fn validate_name(field: &'static str, s: &str, allowed: &[bool; 256]) -> Result<(), DecodeError> {
    if s.is_empty() {
        return Err(DecodeError::InvalidField {
            field,
            reason: "must not be empty".into(),
        });
    }
    if s.len() > MAX_NAME_LEN {
        return Err(DecodeError::InvalidField {
            field,
            reason: format!(
                "{} bytes is longer than the limit of {MAX_NAME_LEN}",
                s.len()
            ),
        });
    }
    // Every allowed character is ASCII: checking bytes is checking characters.
    if !s.bytes().all(|b| allowed[usize::from(b)]) {
        if let Some(c) = s.chars().find(|&c| !(c.is_ascii() && allowed[c as usize])) {
            return Err(DecodeError::InvalidField {
                field,
                reason: format!("{s:?} contains the character {c:?}"),
            });
        }
    }
    Ok(())
}

fn validate_ts(ts: Timestamp) -> Result<(), DecodeError> {
    if !super::is_accepted_time(ts.0) {
        return Err(DecodeError::TimestampOutOfRange { ts: ts.0 });
    }
    Ok(())
}

fn validate_amount(field: &'static str, v: f64) -> Result<(), DecodeError> {
    if !v.is_finite() || v < 0.0 {
        return Err(DecodeError::InvalidField {
            field,
            reason: format!("must be a finite number >= 0, got {v}"),
        });
    }
    if v > MAX_AMOUNT {
        return Err(DecodeError::InvalidField {
            field,
            reason: format!("{v} is above the limit of {MAX_AMOUNT:e} per message"),
        });
    }
    Ok(())
}

/// The checks of [`MentionEvent::validate`] and [`ComplaintEvent::validate`]: `expected` is
/// the only `type` allowed, `amount` the weight or count with its field name, if present.
pub(super) fn validate_parts(
    expected: &'static str,
    kind: Option<&str>,
    ts: Timestamp,
    service: &str,
    geo: &str,
    amount: Option<(&'static str, f64)>,
) -> Result<(), DecodeError> {
    if let Some(k) = kind {
        if k != expected {
            return Err(DecodeError::WrongType {
                found: k.to_string(),
                expected,
            });
        }
    }
    validate_ts(ts)?;
    validate_service(service)?;
    validate_geo(geo)?;
    if let Some((field, v)) = amount {
        validate_amount(field, v)?;
    }
    Ok(())
}

impl MentionEvent<'_> {
    pub(crate) fn validate(&self) -> Result<(), DecodeError> {
        validate_parts(
            "mention",
            self.kind.as_deref(),
            self.ts,
            &self.service,
            &self.geo,
            self.weight.map(|w| ("weight", w)),
        )
    }
}

impl ComplaintEvent<'_> {
    pub(crate) fn validate(&self) -> Result<(), DecodeError> {
        validate_parts(
            "complaint",
            self.kind.as_deref(),
            self.ts,
            &self.service,
            &self.geo,
            Some(("count", self.count)),
        )
    }
}
