//! The command line is consistent: one `--config`/`-c` and one `--http-addr` everywhere, `-`
//! for standard output, errors printed once, and `check-config` rejects what `run` rejects.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spikewatch"));
    // No stray overrides from the caller's environment.
    c.env_remove("SPIKEWATCH_TEST_SECRET");
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_config_takes_the_file_as_config_flag_short_flag_or_positionally() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "ok.toml", "[detection]\nopen_z = 5.5\n");
    for args in [&["--config"][..], &["-c"], &[]] {
        let o = bin()
            .arg("check-config")
            .args(args)
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("ok.toml: OK") && out.contains("open_z = 5.5"),
            "{out}"
        );
    }
    // Neither, or both: a usage error naming the choice.
    let o = bin().arg("check-config").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("<FILE|--config <FILE>>"),
        "{}",
        stderr(&o)
    );
    let o = bin()
        .arg("check-config")
        .arg(&cfg)
        .arg("-c")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
}

/// `run` with a config it must refuse: fails at once (before any broker is contacted: the
/// broker address is a closed port) with the same message as `check-config`.
fn run_with(cfg: &Path) -> Output {
    bin()
        .args(["run", "--brokers", "127.0.0.1:9", "-c"])
        .arg(cfg)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn check_config_rejects_what_run_rejects_with_the_same_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "missing secret",
            "[kafka.consumer]\n\"sasl.password\" = \"${env:SPIKEWATCH_TEST_SECRET}\"\n",
            "`kafka.consumer.sasl.password` refers to environment variable SPIKEWATCH_TEST_SECRET, which is not set",
        ),
        (
            "unknown librdkafka property",
            "[kafka.consumer]\n\"fetch.max.bites\" = \"1048576\"\n",
            "`kafka.consumer.fetch.max.bites` is rejected by librdkafka: No such configuration property",
        ),
        (
            "invalid librdkafka value (not echoed: it may be a secret)",
            "[kafka.producer]\n\"linger.ms\" = \"hunter2-canary\"\n",
            "`kafka.producer.linger.ms` is rejected by librdkafka: Invalid value",
        ),
        (
            "lower-case geo override",
            "[geos.it-rm]\nopen_z = 9.0\n",
            "`geos.it-rm` would never match an event",
        ),
        (
            "lower-case service x geo override",
            "[services.telegram.geos.it]\nopen_z = 9.0\n",
            "`services.telegram.geos.it` would never match an event",
        ),
        (
            "lower-case geo parent key",
            "[geo.parents]\nit = \"EU\"\n",
            "`geo.parents.it` would never match an event",
        ),
        (
            "HTTP address without a port",
            "[http]\naddr = \"localhost\"\n",
            "`http.addr` \"localhost\": invalid socket address syntax",
        ),
        (
            "webhook URL that does not parse (not echoed: it may be a secret)",
            "[[notify.webhook]]\nurl = \"https//hooks.example/hunter2-canary\"\nformat = \"slack\"\n",
            "`notify.webhook[0].url` is not a valid URL",
        ),
        (
            "webhook URL from a missing environment variable",
            "[[notify.webhook]]\nurl = \"${env:SPIKEWATCH_TEST_SECRET}\"\n",
            "`notify.webhook[0].url` refers to environment variable SPIKEWATCH_TEST_SECRET, which is not set",
        ),
    ];
    for (i, (what, toml, want)) in cases.iter().enumerate() {
        let cfg = write(dir.path(), &format!("case{i}.toml"), toml);
        let check = bin().arg("check-config").arg(&cfg).output().unwrap();
        let check_err = stderr(&check);
        assert_eq!(check.status.code(), Some(2), "{what}: {check_err}");
        assert!(check_err.contains(want), "{what}: {check_err}");
        assert!(
            check_err.contains(&format!("case{i}.toml")),
            "{what}: {check_err}"
        );
        assert!(
            !check_err.contains("hunter2"),
            "{what}: value echoed: {check_err}"
        );
        let run = run_with(&cfg);
        let run_err = stderr(&run);
        assert_eq!(run.status.code(), Some(2), "{what}: {run_err}");
        assert!(
            run_err.lines().any(|l| check_err.lines().next() == Some(l)),
            "{what}: run says\n{run_err}\ncheck-config says\n{check_err}"
        );
    }
    // The secret is set: both accept the file (run then gets as far as the broker address).
    let cfg = write(dir.path(), "ok.toml", cases[0].1);
    let o = bin()
        .arg("check-config")
        .arg(&cfg)
        .env("SPIKEWATCH_TEST_SECRET", "s3cret")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // Upper-case geos and a lower-case parent value (a roll-up spikewatch creates) are fine.
    let cfg = write(
        dir.path(),
        "geos.toml",
        "[geos.IT-RM]\nopen_z = 9.0\n[geo.parents]\nIT = \"eu\"\n",
    );
    let o = bin().arg("check-config").arg(&cfg).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn one_http_address_flag_everywhere_with_the_old_name_hidden() {
    for cmd in ["run", "demo"] {
        let o = bin().args([cmd, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&o.stdout);
        assert!(help.contains("--http-addr <ADDR>"), "{cmd}: {help}");
        assert!(!help.contains("--serve"), "{cmd}: {help}");
        assert!(help.contains("-c, --config <CONFIG>"), "{cmd}: {help}");
    }
    // `--serve` still parses in both: the errors below come after argument parsing.
    let o = bin()
        .args(["run", "--serve", "nonsense", "--brokers", "127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("http address \"nonsense\""),
        "{}",
        stderr(&o)
    );
    for flag in ["--serve", "--http-addr"] {
        let o = bin()
            .args([
                "demo",
                "--weeks",
                "1",
                "--until-outage",
                "99",
                flag,
                "127.0.0.1:0",
            ])
            .output()
            .unwrap();
        assert!(
            stderr(&o).contains("--until-outage 99: this scenario has"),
            "{flag}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn errors_print_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = bin()
        .arg("check-config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.starts_with("error: cannot read config file"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    let o = bin()
        .args(["replay", "--input"])
        .arg(dir.path().join("missing.jsonl"))
        .args(["--output", "-"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

/// Five-minute buckets for a week around 100, with a step of +150 near the end.
fn series_csv() -> String {
    let mut s = String::from("timestamp,value\n");
    let t0 = 1_704_067_200i64;
    for i in 0..2016i64 {
        let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
        let wobble = ((i * 7919) % 13) as f64 / 6.0 - 1.0;
        let step = if (1900..1960).contains(&i) {
            150.0
        } else {
            0.0
        };
        s.push_str(&format!(
            "{},{:.2}\n",
            t0 + i * 300,
            100.0 + 15.0 * phase.sin() + 3.0 * wobble + step
        ));
    }
    s
}

#[test]
fn replay_output_dash_is_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "series.csv", &series_csv());
    let replay = |args: &[&str]| {
        bin()
            .current_dir(dir.path())
            .args(["replay", "--input"])
            .arg(&input)
            .args(args)
            .output()
            .unwrap()
    };
    let o = replay(&["--output", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(out.lines().count(), 2017, "a header and one row per bucket");
    assert!(out.starts_with("timestamp,"), "{}", &out[..200]);
    assert!(!dir.path().join("-").exists(), "a file named - was written");
    // Incidents to standard output, scores to a file.
    let o = replay(&["--output", "scores.csv", "--incidents", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events.iter().any(|e| e["state"] == "opened"),
        "the step opens an incident: {out}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("scores.csv"))
            .unwrap()
            .lines()
            .count(),
        2017
    );
    assert!(!dir.path().join("-").exists());
    // Not both.
    let o = replay(&["--output", "-", "--incidents", "-"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("only one of them"), "{}", stderr(&o));
}

#[test]
fn replay_to_a_closed_pipe_stops_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "series.csv", &series_csv());
    let mut child = bin()
        .args(["replay", "--input"])
        .arg(&input)
        .args(["--output", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before reading anything, as `| head -0` would.
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{:?} {}", o.status, stderr(&o));
    assert!(!stderr(&o).contains("error"), "{}", stderr(&o));
}

/// `demo --realistic` runs the same outages on the realistic generator (noise, bursts, news,
/// summer time) and says so; a one-week run still gets its outage and detects it.
#[test]
fn demo_realistic_says_so_and_detects_its_outage() {
    let dir = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["demo", "--realistic", "--weeks", "1", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("weeks of generated realistic traffic"),
        "{err}"
    );
    assert!(err.contains("from Mon 04 Mar 00:00 UTC"), "{err}");
    assert!(
        out.contains("Summary: outages detected 1/1")
            || err.contains("Summary: outages detected 1/1"),
        "{out}\n{err}"
    );
}
