//! The config file of a test run (`write_config`, additions to it), temporary directories and
//! files, free ports.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Names, PARTITIONS};

/// Writes a config for a test run: fast group joins, short idle and drain timeouts.
pub(crate) fn write_config(dir: &Path, brokers: &str, n: &Names, extra: &str) -> PathBuf {
    let path = dir.join("spikewatch.toml");
    let text = format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
session_timeout = "6s"
heartbeat_interval = "1s"
idle_timeout = "3s"
drain_timeout = "15s"
checkpoint_interval_ms = 100
summary_interval = "5s"
partitions = {PARTITIONS}
{extra}

[kafka.topics]
mentions = "{m}"
complaints = "{c}"
anomalies = "{o}"
series_anomalies = "{a}"
dead_letters = "{d}"
changelog = "{s}"
"#,
        group = n.group,
        m = n.mentions,
        c = n.complaints,
        o = n.outages,
        a = n.anomalies,
        d = n.dead_letters,
        s = n.changelog,
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Appends `text` to a config file.
pub(crate) fn append_config(path: &Path, text: &str) {
    let mut all = std::fs::read_to_string(path).unwrap();
    all.push_str(text);
    write_file(path, &all);
}

/// Makes the instance of a config serve HTTP on a free port; returns the port.
pub(crate) fn serve_http(config: &Path) -> u16 {
    let port = free_port();
    append_config(config, &format!("\n[http]\naddr = \"127.0.0.1:{port}\"\n"));
    port
}

pub(crate) fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub(crate) fn write_file(path: &Path, text: &str) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}
