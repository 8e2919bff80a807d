//! TOML text to a table, with syntax errors that say where but never quote the line.

use super::ConfigError;

/// Parses TOML text into a table. A syntax error reports where (line, column, the table and
/// the key of that line) and what, but never the text of the line: `toml`'s own message quotes
/// it, and it may hold a password (also at ERROR on every hot reload).
pub(super) fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
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
