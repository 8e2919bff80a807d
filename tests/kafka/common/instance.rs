//! [`Instance`]: a running `spikewatch run` (its log, its final report, signals, waiting for
//! exit), and reading what it serves over HTTP (`http_get`, `metric`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `spikewatch run`, its stderr captured to a file and its final counters written
/// to another (`--report`) at exit.
pub(crate) struct Instance {
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
    pub(crate) report: PathBuf,
}

impl Instance {
    pub(crate) fn start(config: &Path, log: PathBuf) -> Self {
        Self::start_with(config, log, &[])
    }

    /// [`Instance::start`] with more arguments for `spikewatch run`.
    pub(crate) fn start_with(config: &Path, log: PathBuf, extra: &[&std::ffi::OsStr]) -> Self {
        Self::start_logging(config, log, extra, "info,librdkafka=warn")
    }

    /// [`Instance::start_with`] with the log filter `rust_log` (`RUST_LOG`).
    pub(crate) fn start_logging(
        config: &Path,
        log: PathBuf,
        extra: &[&std::ffi::OsStr],
        rust_log: &str,
    ) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        let report = log.with_extension("report.json");
        let child = Command::new(env!("CARGO_BIN_EXE_spikewatch"))
            .args(["run", "--config"])
            .arg(config)
            .arg("--report")
            .arg(&report)
            .args(extra)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start spikewatch run");
        Self { child, log, report }
    }

    /// The final counters (`spikewatch run --report`), once the instance has exited cleanly.
    pub(crate) fn report(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.report)
            .unwrap_or_else(|e| panic!("no report ({e}); log:\n{}", self.log_text()));
        serde_json::from_str(&text).expect("report JSON")
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub(crate) fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if self.log_text().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "no {needle:?} in the log within {timeout:?}:\n{}",
            self.log_text()
        );
    }

    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for exit; panics with the log after `timeout`.
    pub(crate) fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if t0.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "spikewatch did not exit within {timeout:?}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET path` over plain HTTP/1.1; returns (status line, body).
pub(crate) fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The value of one sample (`name` or `name{labels}`) in Prometheus text.
pub(crate) fn metric(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
