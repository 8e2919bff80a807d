//! `spikewatch demo --until-outage 1 --serve ADDR`: the demo stops mid-outage, serves the
//! status page with the open incident, and shuts down gracefully on Ctrl-C (SIGINT).

#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn demo_serves_the_open_outage_and_stops_on_ctrl_c() {
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_spikewatch"))
        .args(["demo", "--weeks", "3", "--until-outage", "1", "--serve"])
        .arg("127.0.0.1:0")
        .arg("--out-dir")
        .arg(out.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    let addr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.split("status page: http://").nth(1) {
                    break rest.split('/').next().unwrap().to_string();
                }
                seen.push(line);
            }
            Err(_) => {
                let _ = child.kill();
                panic!("no status page URL printed; stderr so far: {seen:#?}");
            }
        }
    };
    assert!(
        seen.iter().any(|l| l.contains("stopping the stream at")),
        "{seen:#?}"
    );

    let api = get(&addr, "/api/incidents");
    assert!(api.starts_with("HTTP/1.1 200"), "{api}");
    let body = &api[api.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(
        v["open"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["latest"]["service"] == "telegram"
                && i["latest"]["geos"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|g| g == "IT")),
        "{body}"
    );
    let page = get(&addr, "/");
    assert!(page.contains("open outage"), "{page}");
    assert!(get(&addr, "/readyz").starts_with("HTTP/1.1 200"));

    // Ctrl-C: a graceful stop with exit status 0.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 10 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "{code:?}");
    let rest: Vec<String> = rx.iter().collect();
    assert!(rest.iter().any(|l| l == "stopped"), "{rest:#?}");
}
