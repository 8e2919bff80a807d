//! Unit tests of the notify settings and counters.

use super::*;
use crate::config::Config;
use crate::domain::Secs;
use crate::event::Severity;

const EXAMPLE: &str = r#"
        [[notify.webhook]]
        url = "https://hooks.example.com/services/T000/B000/notify-unit-canary"
        format = "slack"
        min_severity = "major"
        only_confirmed = true

        [[notify.webhook]]
        name = "alertmanager"
        url = "http://alertmanager:9093"
        format = "alertmanager"
        timeout = "10s"
        max_retries = 3
    "#;

#[test]
fn webhooks_parse_with_defaults_and_names() {
    let c = Config::from_toml_str(EXAMPLE, "x.toml").unwrap();
    let w = &c.notify.webhook;
    assert_eq!(w.len(), 2);
    assert_eq!(w[0].format, Format::Slack);
    assert_eq!(w[0].min_severity, Severity::Major);
    assert!(w[0].only_confirmed);
    assert_eq!(
        (w[0].timeout, w[0].max_retries, w[0].queue),
        (Secs(5), 8, 1024)
    );
    assert_eq!(w[1].timeout, Secs(10));
    assert_eq!(c.notify.names(), ["slack-1", "alertmanager"]);
    assert_eq!(Config::default().notify.webhook.len(), 0);
}

#[test]
fn urls_are_secrets_shown_by_host_only() {
    let c = Config::from_toml_str(EXAMPLE, "x.toml").unwrap();
    let url = &c.notify.webhook[0].url;
    let debug = format!("{:?}", c.notify);
    assert!(!debug.contains("notify-unit-canary"), "{debug}");
    assert!(debug.contains("hooks.example.com"), "{debug}");
    assert_eq!(url.host(), "hooks.example.com");
    assert_eq!(
        crate::secrets::redact(&format!("posting to {}", url.as_str())),
        "posting to ***"
    );
}

#[test]
fn bad_webhooks_are_rejected_naming_the_key() {
    for (text, key) in [
        ("[[notify.webhook]]\nurl = \"not a url\"\n", "notify.webhook[0].url"),
        ("[[notify.webhook]]\nurl = \"ftp://h/x\"\n", "notify.webhook[0].url"),
        (
            "[[notify.webhook]]\nurl = \"http://h\"\n[[notify.webhook]]\nurl = \"http://h:1/secret-path\"\nformat = \"slack\"\nmax_retries = 1000\n",
            "notify.webhook[1].max_retries",
        ),
        (
            "[[notify.webhook]]\nurl = \"http://a\"\nname = \"x\"\n[[notify.webhook]]\nurl = \"http://b\"\nname = \"x\"\n",
            "notify.webhook[1].name",
        ),
        ("[[notify.webhook]]\nurl = \"http://h\"\ntimeout = 0\n", "notify.webhook[0].timeout"),
        ("[[notify.webhook]]\nurl = \"http://h\"\nqueue = 0\n", "notify.webhook[0].queue"),
    ] {
        let e = Config::from_toml_str(text, "x.toml").unwrap_err().to_string();
        assert!(e.contains(key) && e.contains("x.toml"), "{text}: {e}");
        assert!(!e.contains("secret-path"), "{e}");
    }
    for text in [
        "[[notify.webhook]]\nurl = \"http://h\"\nformat = \"teams\"\n",
        "[[notify.webhook]]\nurl = \"http://h\"\nretries = 3\n",
        "[[notify.webhook]]\nformat = \"json\"\n",
        "[notify]\nwebhooks = []\n",
    ] {
        assert!(Config::from_toml_str(text, "x.toml").is_err(), "{text}");
    }
}

#[test]
fn env_urls_are_read_registered_and_checked() {
    let text = "[[notify.webhook]]\nurl = \"${env:SW_NOTIFY_URL}\"\n";
    let mut c = Config::from_toml_str(text, "x.toml").unwrap();
    let e = c.notify.clone().resolve_env(|_| None).unwrap_err();
    assert!(e.to_string().contains("SW_NOTIFY_URL"), "{e}");
    let e = c
        .notify
        .clone()
        .resolve_env(|_| Some("nonsense-env-canary".into()))
        .unwrap_err();
    assert!(!e.to_string().contains("nonsense-env-canary"), "{e}");
    c.notify
        .resolve_env(|_| Some("https://h.example/env-url-canary".into()))
        .unwrap();
    assert_eq!(
        c.notify.webhook[0].url.as_str(),
        "https://h.example/env-url-canary"
    );
    assert_eq!(
        crate::secrets::redact("https://h.example/env-url-canary"),
        "***"
    );
}

#[test]
fn metrics_name_every_output() {
    let s = Arc::new(NotifyStats::default());
    let empty = crate::prom::render_collector(s.clone());
    assert!(empty.contains("# TYPE spikewatch_notify_sent_total counter"));
    assert!(empty.contains("# TYPE spikewatch_notify_queued gauge"));
    let o = s.register("pager \"duty\"", Format::Json);
    OutputStats::add(&o.dropped, 3);
    let text = crate::prom::render_collector(s);
    assert!(
        text.contains(
            "spikewatch_notify_dropped_total{output=\"pager \\\"duty\\\"\",format=\"json\"} 3"
        ),
        "{text}"
    );
}
