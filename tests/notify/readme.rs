//! The README's "Alert delivery" section agrees with the code.

use spikewatch::config::Config;
use spikewatch::notify::{Format, OutputSettings};

/// The README's "Alert delivery" section: its TOML example is a valid config, and its key
/// table names every `[[notify.webhook]]` key with the default the code has.
#[test]
fn readme_alert_delivery_example_is_valid_and_its_table_lists_every_key() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("\n## Alert delivery\n")
        .nth(1)
        .expect("a section \"Alert delivery\"");
    let section = section.split("\n## ").next().unwrap();
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a TOML example");
    let mut cfg = Config::from_toml_str(example, "README.md").unwrap();
    cfg.notify
        .resolve_env(|name| {
            (name == "SLACK_WEBHOOK_URL").then(|| "https://hooks.slack.example/T0/B0/x".into())
        })
        .unwrap();
    let formats: Vec<Format> = cfg.notify.webhook.iter().map(|o| o.format).collect();
    assert_eq!(formats, [Format::Json, Format::Alertmanager, Format::Slack]);

    let defaults = serde_json::to_value(OutputSettings::new("http://h", Format::Json)).unwrap();
    for (key, value) in defaults.as_object().unwrap() {
        let row = section
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("`{key}`")))
            .unwrap_or_else(|| panic!("README's table has no row for `{key}`"));
        if key == "url" {
            continue;
        }
        let shown = match value {
            serde_json::Value::String(s) => format!("\"{s}\""),
            other => other.to_string(),
        };
        assert!(
            row.contains(&format!("`{shown}`")),
            "`{key}` default {shown}: {row}"
        );
    }
}
