//! Unit tests of loading, overriding and validating a configuration.

use super::*;

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

#[test]
fn defaults_are_valid() {
    let c = Config::load_with_env(None, no_env()).unwrap();
    assert_eq!(c, Config::default());
}

#[test]
fn overrides_resolve_in_order() {
    let c = Config::from_toml_str(
        r#"
            [detection]
            open_z = 5.0
            [signals.mentions]
            open_z = 5.5
            [geos.IT]
            open_z = 6.0
            min_count = 3
            [services.telegram]
            open_z = 7.0
            [services.telegram.geos.IT]
            open_z = 8.0
            "#,
        "test.toml",
    )
    .unwrap();
    assert_eq!(c.resolve("x", "DE", "complaints").open_z, 5.0);
    assert_eq!(c.resolve("x", "DE", "mentions").open_z, 5.5);
    assert_eq!(c.resolve("x", "IT", "mentions").open_z, 6.0);
    assert_eq!(c.resolve("telegram", "DE", "mentions").open_z, 7.0);
    let t = c.resolve("telegram", "IT", "mentions");
    assert_eq!(t.open_z, 8.0);
    assert_eq!(t.min_count, 3.0);
}

#[test]
fn unknown_key_names_the_key_and_file() {
    let e = Config::from_toml_str("[detection]\nopen_zz = 3\n", "my.toml").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("my.toml") && msg.contains("open_zz"), "{msg}");
}

#[test]
fn bad_value_names_the_key_and_file() {
    let e = Config::from_toml_str("[services.telegram]\nclose_z = 9\n", "my.toml").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("my.toml") && msg.contains("services.telegram.close_z"),
        "{msg}"
    );
    let e = Config::from_toml_str("[detection]\nopen_k = 4\nopen_n = 3\n", "x.toml").unwrap_err();
    assert!(e.to_string().contains("detection.open_k"), "{e}");
    let e = Config::from_toml_str("[detection]\nbucket = \"5 parsecs\"\n", "x.toml").unwrap_err();
    assert!(e.to_string().contains("bucket"), "{e}");
}

#[test]
fn geo_overrides_outside_services_are_rejected() {
    let e = Config::from_toml_str("[geos.IT.geos.IT-RM]\nopen_z = 9\n", "x.toml").unwrap_err();
    assert!(e.to_string().contains("geos.IT.geos"), "{e}");
    let e = Config::from_toml_str("[detection.geos.IT]\nopen_z = 9\n", "x.toml").unwrap_err();
    assert!(e.to_string().contains("detection.geos"), "{e}");
}

/// `[detection]` is a layer like the others: a key it sets, even to the value the built-in
/// default for some series would have, wins over that default.
#[test]
fn detection_keys_set_to_a_default_still_win_over_the_per_series_default() {
    let c =
        Config::from_toml_str("[detection]\nopen_z = 6.0\ncalibrate = false\n", "x.toml").unwrap();
    let t = c.resolve("x", "IT", "complaints");
    assert_eq!((t.open_z, t.calibrate), (6.0, false));
    let t = Config::default().resolve("x", "IT", "complaints");
    assert_eq!(
        (t.open_z, t.calibrate),
        (7.3, true),
        "1-minute buckets, unset"
    );
}

#[test]
fn parent_cycles_are_rejected() {
    let e =
        Config::from_toml_str("[geo.parents]\nIT = \"EU\"\nEU = \"IT\"\n", "x.toml").unwrap_err();
    assert!(e.to_string().contains("cycle"), "{e}");
}

#[test]
fn env_overrides_win_over_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "[detection]\nopen_z = 5.0\nbucket = \"2m\"\n").unwrap();
    let env = vec![
        (
            "SPIKEWATCH_DETECTION__OPEN_Z".to_string(),
            "7.5".to_string(),
        ),
        (
            "SPIKEWATCH_SERVICES__TELEGRAM__MIN_COUNT".to_string(),
            "20".to_string(),
        ),
        ("UNRELATED".to_string(), "1".to_string()),
    ];
    let c = Config::load_with_env(Some(&p), env).unwrap();
    assert_eq!(c.detection.open_z, Some(7.5));
    assert_eq!(c.resolve("x", "IT", "complaints").open_z, 7.5);
    assert_eq!(c.detection.bucket, Some(Secs(120)));
    assert_eq!(c.resolve("telegram", "IT", "mentions").min_count, 20.0);
}

#[test]
fn env_override_with_unknown_key_is_an_error() {
    let env = vec![("SPIKEWATCH_DETECTION__NOPE".to_string(), "1".to_string())];
    let e = Config::load_with_env(None, env).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}

#[test]
fn settings_win_over_env_and_file_and_keep_toml_key_syntax() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        "[detection]\nopen_z = 5.0\n[services.\"libero.it\"]\nmin_count = 3\n",
    )
    .unwrap();
    let env = vec![(
        "SPIKEWATCH_DETECTION__OPEN_Z".to_string(),
        "7.5".to_string(),
    )];
    let set = |k: &str, v: &str| (k.to_string(), v.to_string());
    let c = Config::load_with_settings(
        Some(&p),
        env,
        &[
            set("detection.open_z", "8"),
            // A bare word is a string: durations and directions need no quotes.
            set("detection.close_after", "30m"),
            set("services.\"libero.it\".direction", "both"),
        ],
    )
    .unwrap();
    assert_eq!(c.detection.open_z, Some(8.0));
    assert_eq!(c.detection.close_after, Some(Secs(1800)));
    let t = c.resolve("libero.it", "IT", "complaints");
    // Merged into the file's table, not replacing it.
    assert_eq!((t.min_count, t.direction), (3.0, Direction::Both));
}

#[test]
fn a_bad_setting_is_an_error_naming_its_key() {
    let set = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    let e = Config::load_with_settings(None, no_env(), &set("detection.open_zz", "1")).unwrap_err();
    assert!(e.to_string().contains("open_zz"), "{e}");
    let e = Config::load_with_settings(None, no_env(), &set("detection.open_z", "-1")).unwrap_err();
    assert!(e.to_string().contains("open_z"), "{e}");
    let e = Config::load_with_settings(None, no_env(), &set("detection..x", "1")).unwrap_err();
    assert!(matches!(e, ConfigError::Setting { .. }), "{e}");
    assert!(e.to_string().contains("detection..x"), "{e}");
    let e =
        Config::load_with_settings(None, no_env(), &set("detection.open_z.x", "1")).unwrap_err();
    assert!(e.to_string().contains("detection.open_z"), "{e}");
    let env = vec![("SPIKEWATCH_DETECTION__OPEN_Z".to_string(), "7".to_string())];
    let e = Config::load_with_settings(None, env, &set("detection.open_z.x", "1")).unwrap_err();
    assert!(e.to_string().contains("`open_z` is not a table"), "{e}");
}

#[test]
fn summer_time_resolves_per_geo_and_an_override_wins() {
    let c = Config::from_toml_str(
        "[geos.IT-VE]\nsummer_time = \"none\"\n[services.svc.geos.RU]\nsummer_time = \"eu\"\n",
        "t.toml",
    )
    .unwrap();
    let rule = |geo: &str, svc: &str| c.resolve(svc, geo, "complaints").summer_time;
    assert_eq!(rule("IT-RM", "x"), SummerTime::Eu);
    assert_eq!(rule("US-NY", "x"), SummerTime::NorthAmerica);
    assert_eq!(rule("*", "x"), SummerTime::None);
    assert_eq!(rule("IT-VE", "x"), SummerTime::None);
    assert_eq!(rule("RU", "x"), SummerTime::None);
    assert_eq!(rule("RU", "svc"), SummerTime::Eu);
    // `check-config` prints the resolved rule.
    let shown = toml::to_string(&c.resolve("x", "US-CA", "mentions")).unwrap();
    assert!(shown.contains("summer_time = \"north-america\""), "{shown}");
    let e = Config::from_toml_str("[detection]\nsummer_time = \"mars\"\n", "t.toml").unwrap_err();
    assert!(
        e.to_string().contains("summer_time") || e.to_string().contains("mars"),
        "{e}"
    );
}

/// Regression (issue 13, item 8): an empty config file on reload silently reset every
/// threshold to its default. A file without settings is refused; the defaults apply only
/// when no file is given.
#[test]
fn empty_or_comment_only_config_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    for text in ["", "  \n\t\n", "# all commented out\n# open_z = 9\n"] {
        std::fs::write(&p, text).unwrap();
        let e = Config::load_with_env(Some(&p), no_env()).unwrap_err();
        assert!(matches!(e, ConfigError::Empty { .. }), "{text:?}: {e}");
        let msg = e.to_string();
        assert!(
            msg.contains("c.toml") && msg.contains("no settings"),
            "{msg}"
        );
    }
    assert!(Config::load_with_env(None, no_env()).is_ok());
}

/// Regression (issue 13, item 8): a huge `max_future_skew` wrapped negative in
/// milliseconds and rejected every event. Every duration is bounded, with the key named.
#[test]
fn huge_durations_are_rejected_naming_the_key_not_wrapped() {
    for (text, key) in [
        (
            "[engine]\nmax_future_skew = 9223372036854775807\n",
            "engine.max_future_skew",
        ),
        (
            "[engine]\nmax_future_skew = \"300000000w\"\n",
            "engine.max_future_skew",
        ),
        (
            "[detection]\nseries_ttl = 9223372036854775807\n",
            "detection.series_ttl",
        ),
        (
            "[services.x]\nreopen_gap = \"4000000d\"\n",
            "services.x.reopen_gap",
        ),
        (
            "[kafka]\ndrain_timeout = 9223372036854775807\n",
            "kafka.drain_timeout",
        ),
    ] {
        let e = Config::from_toml_str(text, "x.toml").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(key) && msg.contains("at most"),
            "{text}: {msg}"
        );
    }
    let ok = Config::from_toml_str("[engine]\nmax_future_skew = \"3650d\"\n", "x.toml").unwrap();
    assert!(ok.engine.max_future_skew.millis() > 0);
    assert_eq!(
        Secs(u64::MAX).millis(),
        i64::MAX,
        "saturates, never negative"
    );
}

#[test]
fn http_limits_default_to_a_cap_and_an_idle_timeout_and_reject_zero() {
    let c = Config::default();
    assert_eq!(c.http.max_connections, 256);
    assert_eq!(c.http.idle_timeout, Secs(30));
    let c = Config::from_toml_str(
        "[http]\nmax_connections = 8\nidle_timeout = \"5s\"\n",
        "x.toml",
    )
    .unwrap();
    assert_eq!((c.http.max_connections, c.http.idle_timeout), (8, Secs(5)));
    for (text, key) in [
        ("[http]\nmax_connections = 0\n", "http.max_connections"),
        ("[http]\nidle_timeout = 0\n", "http.idle_timeout"),
    ] {
        let msg = Config::from_toml_str(text, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(msg.contains(key) && msg.contains("at least"), "{msg}");
    }
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("90s").unwrap(), Secs(90));
    assert_eq!(parse_duration("5m").unwrap(), Secs(300));
    assert_eq!(parse_duration("6h").unwrap(), Secs(21_600));
    assert_eq!(parse_duration("7d").unwrap(), Secs(604_800));
    assert_eq!(parse_duration("42").unwrap(), Secs(42));
    assert!(parse_duration("5 parsecs").is_err());
    assert!(parse_duration("").is_err());
}
