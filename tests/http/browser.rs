//! The status page in a real headless browser (Debian's `chromium`, installed by
//! `scripts/test.sh`): it loads with no console messages and shows the open incident of the
//! test stream; a screenshot is saved as `target/status-page.png`.
//!
//! Chromium is found as `$SPIKEWATCH_CHROMIUM`, else `chromium` or `chromium-browser` on
//! `PATH`. If it is missing the tests FAIL (they never skip silently).
//!
//! How console messages are caught: with `--enable-logging=stderr --v=0` Chromium prints every
//! console message (`console.log`, `.warn`, `.error`, uncaught exceptions) on stderr as
//! `[pid:tid:time:INFO:CONSOLE:line] "message", source: url (line)` (older builds:
//! `CONSOLE(line)`); the level is `INFO` for all of them, so any `CONSOLE` line fails the page
//! (it has no scripts: any console message means something went wrong).
//! `console_check_catches_a_console_error` proves the check sees one.

#![cfg(unix)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spikewatch::http;

use crate::mid_outage::state_mid_outage;

/// How long one Chromium run may take before it is killed.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("SPIKEWATCH_CHROMIUM") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "SPIKEWATCH_CHROMIUM={} does not exist; unset it or point it at a Chromium binary",
            p.display()
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "chromium not found on PATH: the browser tests need it. Run scripts/test.sh (it installs \
         Debian's chromium package), or `apt-get install chromium`, or set SPIKEWATCH_CHROMIUM \
         to a Chromium binary"
    );
}

/// What one headless Chromium run printed.
struct Run {
    stdout: String,
    stderr: String,
}

impl Run {
    /// Console messages the page produced (see the module docs for the format).
    fn console_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE:") || l.contains(":CONSOLE("))
            .collect()
    }
}

/// Runs headless Chromium on `url` with `extra` flags, in a fresh profile and its own process
/// group; kills the whole group after [`CHROMIUM_TIMEOUT`].
fn run_chromium(url: &str, extra: &[String]) -> Run {
    let bin = chromium();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(&bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > CHROMIUM_TIMEOUT {
            kill_group(child.id());
            let _ = child.wait();
            panic!(
                "{} did not finish within {CHROMIUM_TIMEOUT:?} on {url}; killed. stderr:\n{}",
                bin.display(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Helpers (zygote, GPU, utility processes) may outlive the browser process.
    kill_group(child.id());
    let run = Run {
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    };
    assert!(
        status.success(),
        "{} exited with {status} on {url}. stderr:\n{}",
        bin.display(),
        run.stderr
    );
    run
}

/// SIGKILL to the process group `pgid` (the child was made its leader); no error if gone.
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/status-page.png")
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_the_open_incident_in_headless_chromium_without_console_messages() {
    // Fail early and clearly if there is no browser, before the engine work.
    chromium();
    let state = state_mid_outage();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve_on(listener, state, async {
        let _ = stopped.await;
    }));

    let shot = screenshot_path();
    let _ = std::fs::remove_file(&shot);
    let (dom, screenshot) = {
        let url = url.clone();
        let shot = shot.clone();
        tokio::task::spawn_blocking(move || {
            let dom = run_chromium(&url, &["--dump-dom".to_string()]);
            let screenshot = run_chromium(
                &url,
                &[
                    format!("--screenshot={}", shot.display()),
                    "--window-size=1280,1600".to_string(),
                    "--hide-scrollbars".to_string(),
                ],
            );
            (dom, screenshot)
        })
        .await
        .unwrap()
    };
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();

    // The DOM as the browser built it shows the open incident: telegram in Italy (folded
    // under the `*` roll-up card or as its own card), with its geo breakdown and a chart.
    let html = &dom.stdout;
    assert!(html.contains("open outage"), "title: {html}");
    let card = html
        .find("<section class=\"card\">")
        .unwrap_or_else(|| panic!("an incident card in the DOM: {html}"));
    let card = &html[card..];
    assert!(card.contains("telegram"), "{card}");
    assert!(
        card.contains("<span>IT</span>") || card.contains("· IT "),
        "{card}"
    );
    assert!(card.contains("IT-RM") && card.contains("IT-MI"), "{card}");
    assert!(card.contains("<svg"), "a chart");
    assert!(
        html.contains("class=\"tile affected\""),
        "the map colours the outage's countries: {html}"
    );

    for run in [&dom, &screenshot] {
        let console = run.console_lines();
        assert!(
            console.is_empty(),
            "console messages from the page:\n{}",
            console.join("\n")
        );
    }

    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert_eq!(png_size(&png), (1280, 1600));
    assert!(
        png.len() > 20_000,
        "a screenshot with content: {} bytes",
        png.len()
    );
}

#[test]
fn console_check_catches_a_console_error() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("error.html");
    std::fs::write(
        &page,
        "<!doctype html><title>x</title><p>hi</p><script>console.error(\"spikewatch-console-probe\")</script>",
    )
    .unwrap();
    let run = run_chromium(
        &format!("file://{}", page.display()),
        &["--dump-dom".to_string()],
    );
    assert!(run.stdout.contains("<p>hi</p>"), "{}", run.stdout);
    let console = run.console_lines();
    assert!(
        console
            .iter()
            .any(|l| l.contains("spikewatch-console-probe")),
        "the console error was not caught; stderr:\n{}",
        run.stderr
    );
}
