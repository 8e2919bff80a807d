//! Overrides applied to the parsed table: `SPIKEWATCH_…` environment variables, and settings
//! given as dotted TOML keys (`spikewatch replay --set` / `--sweep`).

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

/// Sets one dotted TOML key (`detection.open_z`, `services."libero.it".open_z`) to `value`,
/// read as a TOML value when it parses as one, else as a plain string (so `15m` and `up`
/// need no quotes). Applied after the file and the environment.
pub(super) fn apply_setting(
    table: &mut toml::Table,
    key: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let err = |reason: String| ConfigError::Setting {
        key: key.to_string(),
        reason,
    };
    // Parsing `KEY = VALUE` as TOML gives dotted and quoted keys their TOML meaning.
    let overlay = format!("{key} = {value}")
        .parse::<toml::Table>()
        .or_else(|_| {
            let quoted = toml::Value::String(value.to_string()).to_string();
            format!("{key} = {quoted}").parse::<toml::Table>()
        })
        .map_err(|_| err("is not a TOML key (e.g. `detection.open_z`)".into()))?;
    merge(table, overlay).map_err(|seg| err(format!("`{seg}` is not a table in the config")))
}

/// Deep-merges `overlay` into `table`: tables merge, anything else replaces. Returns the key
/// of a value that is not a table where the overlay has one.
fn merge(table: &mut toml::Table, overlay: toml::Table) -> Result<(), String> {
    for (k, v) in overlay {
        match (table.get_mut(&k), v) {
            (Some(toml::Value::Table(t)), toml::Value::Table(o)) => merge(t, o)?,
            (Some(_), toml::Value::Table(_)) => return Err(k),
            (_, v) => {
                table.insert(k, v);
            }
        }
    }
    Ok(())
}
