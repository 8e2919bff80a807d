//! Issue 13, item 4: no configured secret is ever printed. Each test runs the real binary with
//! canary secrets in the config file and the environment and greps all of its output.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spikewatch"));
    // No SPIKEWATCH_… variables of the caller's environment.
    for (k, _) in std::env::vars() {
        if k.starts_with("SPIKEWATCH_") {
            c.env_remove(k);
        }
    }
    c
}

fn output(c: &mut Command) -> (bool, String) {
    let out = c.output().expect("run spikewatch");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn assert_no_canary(text: &str, canaries: &[&str]) {
    for c in canaries {
        assert!(!text.contains(c), "canary {c} printed:\n{text}");
    }
}

/// Regression: a TOML syntax error printed the offending line, password included.
#[test]
fn toml_syntax_error_reports_line_and_key_but_never_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[kafka.consumer]\n\"sasl.username\" = \"svc\"\n\"sasl.password\" = \"CANARY-syntax-7f3a\n",
    )
    .unwrap();
    let (ok, text) = output(bin().arg("check-config").arg(&cfg));
    assert!(!ok);
    assert_no_canary(&text, &["CANARY-syntax-7f3a"]);
    assert!(
        text.contains("line 3") && text.contains("sasl.password"),
        "{text}"
    );

    // The same file for replay (which loads the config the same way).
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "timestamp,value\n2024-01-01 00:00:00,3\n").unwrap();
    let (ok, text) = output(
        bin()
            .args(["replay", "-o"])
            .arg(dir.path().join("out.csv"))
            .arg("-i")
            .arg(&input)
            .arg("-c")
            .arg(&cfg),
    );
    assert!(!ok);
    assert_no_canary(&text, &["CANARY-syntax-7f3a"]);
}

/// A config that parses but is invalid elsewhere: the secret of another key is not echoed,
/// and neither is a value from the environment.
#[test]
fn invalid_config_errors_never_print_secret_values() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[kafka.consumer]\n\"sasl.password\" = \"CANARY-valid-91c2\"\n[detection]\nopen_z = \"CANARY-valid-91c2\"\n",
    )
    .unwrap();
    let (ok, text) = output(bin().arg("check-config").arg(&cfg));
    assert!(!ok, "{text}");
    assert_no_canary(&text, &["CANARY-valid-91c2"]);
    assert!(text.contains("open_z"), "{text}");
}

/// `run` with secrets from the file and from `${env:…}` (one under a key not named like a
/// secret): the startup line, librdkafka's config errors on every retry (they echo property
/// values, `ssl.key.password …`), and a hot reload rejected at ERROR for a syntax error on a
/// password line. Nothing is timed: the test waits for each line it needs to see.
#[test]
fn run_never_prints_env_values_secrets_or_reloaded_secret_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    // A property this build of librdkafka refuses (no OpenSSL): `run` rejects the config at
    // load, naming the key, never its value.
    std::fs::write(
        &cfg,
        "[kafka]\nbrokers = \"127.0.0.1:1\"\n\
         [kafka.consumer]\n\"security.protocol\" = \"SSL\"\n\
         \"ssl.key.password\" = \"${env:SW_TEST_CANARY_PW}\"\n",
    )
    .unwrap();
    let refused = bin()
        .args(["run", "--config"])
        .arg(&cfg)
        .env("SW_TEST_CANARY_PW", "CANARY-env-pw-0b1d")
        .output()
        .expect("spikewatch run");
    let refused_text = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!refused.status.success(), "{refused_text}");
    assert_no_canary(&refused_text, &["CANARY-env-pw-0b1d"]);
    // A config this build accepts: SASL/PLAIN secrets from the environment and the file; the
    // client retries against an unreachable broker.
    std::fs::write(
        &cfg,
        "[kafka]\nbrokers = \"127.0.0.1:1\"\ncreate_topics = true\n\
         [kafka.consumer]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\
         \"sasl.mechanism\" = \"PLAIN\"\n\
         \"sasl.password\" = \"${env:SW_TEST_CANARY_PW}\"\n\
         \"client.id\" = \"${env:SW_TEST_CANARY_ID}\"\n\
         [kafka.producer]\n\"sasl.password\" = \"CANARY-file-55aa\"\n",
    )
    .unwrap();
    let mut child = bin()
        .args(["run", "--config"])
        .arg(&cfg)
        .env("SW_TEST_CANARY_PW", "CANARY-env-pw-0b1d")
        .env("SW_TEST_CANARY_ID", "CANARY-env-id-3e77")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spikewatch run");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    // Safety net against a hang, not a timing assertion: the client logs retries without
    // end, so one deadline over all lines, not a wait per line.
    let wait_for = |what: &dyn Fn(&str) -> bool, seen: &mut Vec<String>| {
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                .unwrap_or_else(|_| panic!("line not seen; output so far:\n{}", seen.join("\n")));
            let hit = what(&line);
            seen.push(line);
            if hit {
                break;
            }
        }
    };
    wait_for(&|l| l.contains("starting spikewatch run"), &mut seen);
    // The client cannot reach 127.0.0.1:1 and retries.
    wait_for(&|l| l.contains("retrying"), &mut seen);
    std::fs::write(
        &cfg,
        "[kafka]\nbrokers = \"127.0.0.1:1\"\n[kafka.consumer]\n\"sasl.password\" = \"CANARY-reload-c4d8\n",
    )
    .unwrap();
    wait_for(&|l| l.contains("config rejected"), &mut seen);
    let _ = child.kill();
    let _ = child.wait();
    for line in rx.iter() {
        seen.push(line);
    }
    reader.join().unwrap();
    let text = seen.join("\n");
    assert_no_canary(
        &text,
        &[
            "CANARY-env-pw-0b1d",
            "CANARY-env-id-3e77",
            "CANARY-file-55aa",
            "CANARY-reload-c4d8",
        ],
    );
    assert!(text.contains("<redacted>"), "{text}");
    assert!(
        text.contains("line 4") && text.contains("sasl.password"),
        "{text}"
    );
}
