//! Decoding input messages: the fast path where it is sure, else the reference decoder
//! (`serde_json` and the derived `Deserialize`), which also words every rejection.

use std::borrow::Cow;

use serde::de;
use serde::Deserialize;

use super::{fast, ComplaintEvent, DecodeError, InputEvent, InputKind, MentionEvent, Timestamp};

fn json_err(e: serde_json::Error) -> DecodeError {
    DecodeError::Json(e.to_string())
}

/// What the engine uses of an input event: the result of [`decode_core`], which accepts and
/// rejects exactly what [`decode`] does, without building the rest of the event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventCore<'a> {
    pub kind: InputKind,
    pub ts: Timestamp,
    pub service: Cow<'a, str>,
    pub geo: Cow<'a, str>,
    /// A mention's weight (default 1) or a complaint's count.
    pub amount: f64,
}

impl EventCore<'_> {
    pub(crate) fn signal(&self) -> &'static str {
        self.kind.signal()
    }

    // `observation()`, what the engine observes of this event, is defined with
    // `engine::Observation`: the engine depends on the wire types, not the other way round.
}

impl<'a> From<InputEvent<'a>> for EventCore<'a> {
    fn from(ev: InputEvent<'a>) -> Self {
        let amount = ev.amount();
        match ev {
            InputEvent::Mention(m) => EventCore {
                kind: InputKind::Mention,
                ts: m.ts,
                service: m.service,
                geo: m.geo,
                amount,
            },
            InputEvent::Complaint(c) => EventCore {
                kind: InputKind::Complaint,
                ts: c.ts,
                service: c.service,
                geo: c.geo,
                amount,
            },
        }
    }
}

/// Decodes a message from a topic that carries one known kind.
pub fn decode(kind: InputKind, bytes: &[u8]) -> Result<InputEvent<'_>, DecodeError> {
    match fast::parse(Some(kind), bytes) {
        Some(ev) => validated(ev),
        None => decode_full(Some(kind), bytes),
    }
}

/// Decodes a line of mixed JSONL: `"type"` decides, else a `count` field means a complaint.
pub fn decode_any(line: &[u8]) -> Result<InputEvent<'_>, DecodeError> {
    match fast::parse(None, line) {
        Some(ev) => validated(ev),
        None => decode_full(None, line),
    }
}

/// [`decode`], keeping only what the engine uses (faster: no `tags` list, a smaller value).
pub fn decode_core(kind: InputKind, bytes: &[u8]) -> Result<EventCore<'_>, DecodeError> {
    match fast::core(Some(kind), bytes) {
        Some(r) => r,
        None => decode_full(Some(kind), bytes).map(EventCore::from),
    }
}

/// [`decode_any`], keeping only what the engine uses.
pub fn decode_any_core(line: &[u8]) -> Result<EventCore<'_>, DecodeError> {
    match fast::core(None, line) {
        Some(r) => r,
        None => decode_full(None, line).map(EventCore::from),
    }
}

pub(super) fn validated(ev: InputEvent<'_>) -> Result<InputEvent<'_>, DecodeError> {
    match &ev {
        InputEvent::Mention(m) => m.validate()?,
        InputEvent::Complaint(c) => c.validate()?,
    }
    Ok(ev)
}

/// The reference decoder (`serde_json` and the derived `Deserialize`), for whatever the fast
/// path in [`fast`] leaves to it: unusual messages and every error message.
pub(super) fn decode_full(
    want: Option<InputKind>,
    bytes: &[u8],
) -> Result<InputEvent<'_>, DecodeError> {
    // RFC 8259 lets a parser ignore a byte order mark, and files saved by some Windows tools
    // (PowerShell 5's `Out-File`, Notepad) start with one: their first event is not malformed.
    if let Some(rest) = bytes.strip_prefix(UTF8_BOM) {
        return decode_full(want, rest);
    }
    // serde's derived `Deserialize` also takes a struct from a JSON array of its fields in
    // order, which the schemas (`"type": "object"`) reject: one contract on every path.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => {}
        Some(&first) => return Err(DecodeError::Json(not_an_object(bytes, first))),
    }
    let kind = match want {
        Some(k) => k,
        None => sniff_kind(bytes)?,
    };
    match kind {
        InputKind::Mention => {
            let m: MentionEvent<'_> = serde_json::from_slice(bytes).map_err(json_err)?;
            validated(InputEvent::Mention(m))
        }
        InputKind::Complaint => {
            let c: ComplaintEvent<'_> = serde_json::from_slice(bytes).map_err(json_err)?;
            validated(InputEvent::Complaint(c))
        }
    }
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a message that does not start with `{` is rejected: what it is instead, or where it
/// stops being JSON.
fn not_an_object(bytes: &[u8], first: u8) -> String {
    let what = match first {
        b'[' => "an array",
        _ => match serde_json::from_slice::<de::IgnoredAny>(bytes) {
            Err(e) => return e.to_string(),
            Ok(_) => match first {
                b'"' => "a string",
                b'n' => "null",
                b't' | b'f' => "a boolean",
                _ => "a number",
            },
        },
    };
    format!("a message must be a JSON object ({{...}}), not {what}")
}

/// Finds the message kind without a full parse. Only top-level keys are looked at.
fn sniff_kind(line: &[u8]) -> Result<InputKind, DecodeError> {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(rename = "type", default, borrow)]
        kind: Option<Cow<'a, str>>,
        #[serde(default)]
        count: Option<de::IgnoredAny>,
        #[serde(default)]
        weight: Option<de::IgnoredAny>,
    }
    let p: Probe<'_> = serde_json::from_slice(line).map_err(json_err)?;
    match p.kind.as_deref() {
        Some("mention") => Ok(InputKind::Mention),
        Some("complaint") => Ok(InputKind::Complaint),
        Some(other) => Err(DecodeError::WrongType {
            found: other.to_string(),
            expected: "mention or complaint",
        }),
        None => match (p.count.is_some(), p.weight.is_some()) {
            (true, true) => Err(DecodeError::Ambiguous(
                "both `count` (complaint) and `weight` (mention) are present",
            )),
            (true, false) => Ok(InputKind::Complaint),
            (false, _) => Ok(InputKind::Mention),
        },
    }
}
