//! `SPIKEWATCH_…` environment overrides, applied to the parsed table.

use super::{ConfigError, ENV_PREFIX};

/// Sets `a.b.c` from `SPIKEWATCH_A__B__C`. The value is read as a TOML value when it parses
/// as one (numbers, booleans, quoted strings), else as a plain string.
pub(super) fn apply_env(
    table: &mut toml::Table,
    var: &str,
    value: &str,
) -> Result<(), ConfigError> {
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
