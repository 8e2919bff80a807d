//! Fast path of the input decoder: a single pass over the bytes of a well-formed message, no
//! `serde_json::Deserializer`, no allocation (except a `tags` array's `Vec` when a whole
//! [`InputEvent`] is built).
//!
//! It either returns exactly what the full decoder (`serde_json` + derive) would build, or
//! `None` ("not sure"): anything unusual — escapes in strings, unknown or repeated keys,
//! missing fields, wrong value types, numbers it does not parse exactly, malformed JSON — goes
//! to the full decoder, which then also produces the error message. So the fast path can never
//! change what is accepted or how a rejection is worded; it only has to be right about what it
//! does accept (`tests`, in `fast/tests.rs`, compare both on generated and mutated input).

use std::borrow::Cow;

use super::validate::validate_parts;
use super::{
    ComplaintEvent, DecodeError, EventCore, InputEvent, InputKind, MentionEvent, Timestamp,
};
use crate::calendar::days_from_civil;

/// A key that may appear once: `None` absent, `Some(None)` null, `Some(Some(v))` a value.
type Slot<T> = Option<Option<T>>;

/// The keys of one message, checked against JSON and the value types of the schemas. Strings
/// the engine does not use stay bytes (checked to be UTF-8).
#[derive(Default)]
pub(super) struct Fields<'a> {
    kind: Slot<&'a str>,
    ts: Slot<Timestamp>,
    service: Slot<&'a str>,
    geo: Slot<&'a str>,
    source: Slot<&'a [u8]>,
    lang: Slot<&'a [u8]>,
    text: Slot<&'a [u8]>,
    /// The text of the array: strings without escapes, already checked.
    tags: Slot<&'a [u8]>,
    weight: Slot<f64>,
    id: Slot<&'a [u8]>,
    count: Slot<f64>,
    category: Slot<&'a [u8]>,
}

/// Parses `bytes` as one object of `want` (or, for `None`, of the kind
/// [`super::decode_any`] would pick). `None`: leave it to the full decoder.
pub(super) fn scan(want: Option<InputKind>, bytes: &[u8]) -> Option<(InputKind, Fields<'_>)> {
    let mut p = Parser { b: bytes, i: 0 };
    let f = p.object()?;
    p.ws();
    if p.i != p.b.len() {
        return None; // trailing characters
    }
    let kind = match want {
        Some(k) => k,
        None => sniff(&f)?,
    };
    let fits = match kind {
        InputKind::Mention => f.count.is_none() && f.category.is_none(),
        InputKind::Complaint => {
            f.source.is_none()
                && f.lang.is_none()
                && f.text.is_none()
                && f.tags.is_none()
                && f.weight.is_none()
                && matches!(f.count, Some(Some(_)))
        }
    };
    // Unknown keys for the kind, a missing `count`; the rest must be there too.
    if !fits
        || !matches!(
            (f.ts, f.service, f.geo),
            (Some(Some(_)), Some(Some(_)), Some(Some(_)))
        )
    {
        return None;
    }
    Some((kind, f))
}

/// The whole event, as `serde_json` would build it (before validation).
pub(super) fn parse(want: Option<InputKind>, bytes: &[u8]) -> Option<InputEvent<'_>> {
    let (kind, f) = scan(want, bytes)?;
    let (ts, service, geo) = (f.ts??, Cow::Borrowed(f.service??), Cow::Borrowed(f.geo??));
    Some(match kind {
        InputKind::Mention => InputEvent::Mention(MentionEvent {
            kind: f.kind.flatten().map(Cow::Borrowed),
            ts,
            service,
            geo,
            source: str_of(f.source)?,
            lang: str_of(f.lang)?,
            text: str_of(f.text)?,
            tags: match f.tags.flatten() {
                Some(t) => Some(tag_list(t)?),
                None => None,
            },
            weight: f.weight.flatten(),
            id: str_of(f.id)?,
        }),
        InputKind::Complaint => InputEvent::Complaint(ComplaintEvent {
            kind: f.kind.flatten().map(Cow::Borrowed),
            ts,
            service,
            geo,
            count: f.count??,
            category: str_of(f.category)?,
            id: str_of(f.id)?,
        }),
    })
}

/// What the engine needs of the event, validated as [`super::decode`] does.
pub(super) fn core(
    want: Option<InputKind>,
    bytes: &[u8],
) -> Option<Result<EventCore<'_>, DecodeError>> {
    let (kind, f) = scan(want, bytes)?;
    let (ts, service, geo) = (f.ts??, f.service??, f.geo??);
    let (expected, checked, amount) = match kind {
        InputKind::Mention => {
            let w = f.weight.flatten();
            ("mention", w.map(|w| ("weight", w)), w.unwrap_or(1.0))
        }
        InputKind::Complaint => {
            let c = f.count??;
            ("complaint", Some(("count", c)), c)
        }
    };
    let valid = validate_parts(expected, f.kind.flatten(), ts, service, geo, checked);
    Some(valid.map(|()| EventCore {
        kind,
        ts,
        service: Cow::Borrowed(service),
        geo: Cow::Borrowed(geo),
        amount,
    }))
}

/// A checked string of [`Fields`] as the event holds it; `None` if it is no UTF-8 after all.
#[allow(clippy::option_option)]
fn str_of(s: Slot<&[u8]>) -> Option<Option<Cow<'_, str>>> {
    match s.flatten() {
        Some(b) => Some(Some(Cow::Borrowed(std::str::from_utf8(b).ok()?))),
        None => Some(None),
    }
}

/// The strings of an array's text checked by [`Parser::tags`].
fn tag_list(text: &[u8]) -> Option<Vec<Cow<'_, str>>> {
    let text = std::str::from_utf8(text).ok()?;
    Some(
        text.split('"')
            .skip(1)
            .step_by(2)
            .map(Cow::Borrowed)
            .collect(),
    )
}

/// The kind `sniff_kind` picks, when it picks one without an error.
fn sniff(f: &Fields<'_>) -> Option<InputKind> {
    match f.kind.flatten() {
        Some("mention") => Some(InputKind::Mention),
        Some("complaint") => Some(InputKind::Complaint),
        Some(_) => None,
        // A null `count` or `weight` counts as absent there.
        None => match (f.count.flatten().is_some(), f.weight.flatten().is_some()) {
            (true, true) => None,
            (true, false) => Some(InputKind::Complaint),
            (false, _) => Some(InputKind::Mention),
        },
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

/// Stores a key's value; `None` if the key was already there (serde: duplicate field).
fn set<T>(slot: &mut Slot<T>, v: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(v);
    Some(())
}

/// Bytes that end the plain part of a string: `"`, `\` and control characters.
static STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Index of the first `"`, `\` or control character in `b`, eight bytes at a time.
fn plain_len(b: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    let mut chunks = b.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let (q, bs) = (w ^ (ONES * u64::from(b'"')), w ^ (ONES * u64::from(b'\\')));
        // The high bit of a byte flags it (exactly, for the lowest flagged byte): zero bytes
        // of `q` and `bs`, bytes below 0x20 of `w`.
        let hit = (q.wrapping_sub(ONES) & !q
            | bs.wrapping_sub(ONES) & !bs
            | w.wrapping_sub(ONES * 0x20) & !w)
            & HIGH;
        if hit != 0 {
            return Some(at + (hit.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let rest = chunks.remainder();
    rest.iter().position(|&c| STOP[c as usize]).map(|p| at + p)
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// Eats `null` if it comes next (after whitespace).
    fn null(&mut self) -> bool {
        self.ws();
        if self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            true
        } else {
            false
        }
    }

    fn object(&mut self) -> Option<Fields<'a>> {
        let mut f = Fields::default();
        self.eat(b'{')?;
        self.ws();
        loop {
            // Keys are matched in place: `"`, the name, `"`.
            let key = self.b.get(self.i + 1..)?;
            match key {
                [b't', b's', b'"', ..] => {
                    self.colon(2)?;
                    let v = self.timestamp()?;
                    set(&mut f.ts, Some(v))?
                }
                [b's', b'e', b'r', b'v', b'i', b'c', b'e', b'"', ..] => {
                    self.colon(7)?;
                    let v = self.string_ws()?;
                    set(&mut f.service, Some(v))?
                }
                [b'g', b'e', b'o', b'"', ..] => {
                    self.colon(3)?;
                    let v = self.string_ws()?;
                    set(&mut f.geo, Some(v))?
                }
                [b's', b'o', b'u', b'r', b'c', b'e', b'"', ..] => {
                    self.colon(6)?;
                    self.opt_bytes(&mut f.source)?
                }
                [b't', b'a', b'g', b's', b'"', ..] => {
                    self.colon(4)?;
                    let v = self.opt(Self::tags)?;
                    set(&mut f.tags, v)?
                }
                [b'c', b'o', b'u', b'n', b't', b'"', ..] => {
                    self.colon(5)?;
                    let v = self.opt(Self::number)?;
                    set(&mut f.count, v)?
                }
                [b'c', b'a', b't', b'e', b'g', b'o', b'r', b'y', b'"', ..] => {
                    self.colon(8)?;
                    self.opt_bytes(&mut f.category)?
                }
                [b'w', b'e', b'i', b'g', b'h', b't', b'"', ..] => {
                    self.colon(6)?;
                    let v = self.opt(Self::number)?;
                    set(&mut f.weight, v)?
                }
                [b't', b'y', b'p', b'e', b'"', ..] => {
                    self.colon(4)?;
                    let v = self.opt(Self::string_ws)?;
                    set(&mut f.kind, v)?
                }
                [b'l', b'a', b'n', b'g', b'"', ..] => {
                    self.colon(4)?;
                    self.opt_bytes(&mut f.lang)?
                }
                [b't', b'e', b'x', b't', b'"', ..] => {
                    self.colon(4)?;
                    self.opt_bytes(&mut f.text)?
                }
                [b'i', b'd', b'"', ..] => {
                    self.colon(2)?;
                    self.opt_bytes(&mut f.id)?
                }
                _ => return None,
            }
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => {
                    self.i += 1;
                    return Some(f);
                }
                _ => return None,
            }
        }
    }

    /// Steps over a key of `len` bytes (after checking it starts with `"`) and the `:`.
    fn colon(&mut self, len: usize) -> Option<()> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.i += len + 2;
        self.eat(b':')
    }

    /// `null` or what `value` parses.
    fn opt<T>(&mut self, value: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null() {
            Some(None)
        } else {
            value(self).map(Some)
        }
    }

    fn opt_bytes(&mut self, slot: &mut Slot<&'a [u8]>) -> Option<()> {
        let v = self.opt(|p| {
            p.ws();
            p.checked_span()
        })?;
        set(slot, v)
    }

    fn string_ws(&mut self) -> Option<&'a str> {
        self.ws();
        std::str::from_utf8(self.span()?).ok()
    }

    /// The bytes of a string without escapes or control characters at the current position
    /// (not checked to be UTF-8).
    #[inline]
    fn span(&mut self) -> Option<&'a [u8]> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.i + 1;
        let rest = self.b.get(start..)?;
        let len = plain_len(rest)?;
        if rest[len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        Some(&rest[..len])
    }

    /// [`Self::span`], checked to be UTF-8.
    fn checked_span(&mut self) -> Option<&'a [u8]> {
        let s = self.span()?;
        (s.is_ascii() || std::str::from_utf8(s).is_ok()).then_some(s)
    }

    /// An array of strings; its text between the brackets.
    fn tags(&mut self) -> Option<&'a [u8]> {
        self.eat(b'[')?;
        let start = self.i;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Some(b"");
        }
        loop {
            self.ws();
            self.checked_span()?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return self.b.get(start..self.i - 1);
                }
                _ => return None,
            }
        }
    }

    /// The text of a JSON number token (not checked against the grammar).
    fn number_token(&mut self) -> Option<&'a [u8]> {
        self.ws();
        let start = self.i;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.peek() {
            self.i += 1;
        }
        if self.i == start {
            return None;
        }
        self.b.get(start..self.i)
    }

    /// A number as `serde_json` decodes it into an `f64`.
    fn number(&mut self) -> Option<f64> {
        let t = self.number_token()?;
        if let Some(n) = small_uint(t) {
            // Exact in an f64 (< 2^53), as serde_json's `u64 as f64`.
            return Some(n as f64);
        }
        serde_json::from_slice::<f64>(t).ok()
    }

    /// An RFC 3339 string or integer epoch milliseconds, as `Timestamp`'s `Deserialize`.
    fn timestamp(&mut self) -> Option<Timestamp> {
        self.ws();
        if self.peek() == Some(b'"') {
            let s = self.span()?;
            if let Some(ms) = rfc3339_utc_millis(s) {
                return Some(Timestamp(ms));
            }
            return Timestamp::parse_rfc3339(std::str::from_utf8(s).ok()?).ok();
        }
        let t = self.number_token()?;
        // Only plain non-negative integers; the rest (negative, fractions, exponents, huge)
        // is rejected later or by the full decoder.
        small_uint(t).map(|n| Timestamp(n as i64))
    }
}

/// `t` if it is a JSON integer of at most 15 digits without sign (so exact in an f64 and an
/// i64). Leading zeros are not JSON.
fn small_uint(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 15 || (b[0] == b'0' && b.len() > 1) {
        return None;
    }
    let mut n = 0u64;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + u64::from(d);
    }
    Some(n)
}

/// `YYYY-MM-DDTHH:MM:SS[.f…]Z`, the shape producers nearly always send, in milliseconds since
/// the epoch; `None` for anything else (offsets, lower case, leap seconds, more than 9
/// fractional digits, invalid dates), which chrono then parses or rejects.
pub(super) fn rfc3339_utc_millis(s: &[u8]) -> Option<i64> {
    let (h, rest) = s.split_first_chunk::<19>()?;
    let (&b'Z', frac) = rest.split_last()? else {
        return None;
    };
    if h[4] != b'-' || h[7] != b'-' || h[10] != b'T' || h[13] != b':' || h[16] != b':' {
        return None;
    }
    let mut bad = 0u8;
    let mut d2 = |a: u8, b: u8| {
        let (a, b) = (a.wrapping_sub(b'0'), b.wrapping_sub(b'0'));
        bad |= u8::from(a > 9 || b > 9);
        i64::from(a) * 10 + i64::from(b)
    };
    let year = d2(h[0], h[1]) * 100 + d2(h[2], h[3]);
    let (month, day) = (d2(h[5], h[6]), d2(h[8], h[9]));
    let (hour, minute, second) = (d2(h[11], h[12]), d2(h[14], h[15]), d2(h[17], h[18]));
    if bad != 0 {
        return None;
    }
    let millis = match frac {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            let mut ms = 0;
            for (k, &c) in digits.iter().enumerate() {
                let d = c.wrapping_sub(b'0');
                if d > 9 {
                    return None;
                }
                // Truncated to milliseconds, as chrono's `timestamp_millis`.
                if k < 3 {
                    ms = ms * 10 + i64::from(d);
                }
            }
            ms * [100, 10, 1][digits.len().min(3) - 1]
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Both decoders on one input (the oracle of the unit tests and of `fuzz/`): the fast path,
/// where it answers, builds the same event, and the same core with the same validation result.
#[cfg(any(test, fuzzing))]
pub(crate) fn assert_decoders_agree(line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    for want in [None, Some(InputKind::Mention), Some(InputKind::Complaint)] {
        let full: Result<InputEvent<'_>, DecodeError> = super::decoder::decode_full(want, line);
        if let Some(fast) = parse(want, line) {
            let validated = super::decoder::validated(fast);
            match (&validated, &full) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "{text}");
                    // Same bits: -0.0 == 0.0 would hide a difference.
                    assert_eq!(a.amount().to_bits(), b.amount().to_bits(), "{text}");
                }
                (Err(a), Err(b)) => assert_eq!(a, b, "{text}"),
                _ => panic!("{text} ({want:?}): fast {validated:?} vs full {full:?}"),
            }
        }
        let full_core = full.clone().map(EventCore::from);
        if let Some(fast) = core(want, line) {
            assert_eq!(fast, full_core, "{text} ({want:?})");
            if let (Ok(a), Ok(b)) = (&fast, &full_core) {
                assert_eq!(a.amount.to_bits(), b.amount.to_bits(), "{text}");
            }
        }
        // Whenever one fast path answers, so does the other.
        assert_eq!(
            parse(want, line).is_some(),
            core(want, line).is_some(),
            "{text}"
        );
    }
}

#[cfg(test)]
mod tests;
