//! `spikewatch healthcheck`: a probe for container runtimes. The runtime image is
//! `debian:bookworm-slim` without curl or wget, so the binary asks its own HTTP server: one
//! GET over a plain TCP connection, healthy on a 2xx status.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The probe got an answer that is not 2xx, or none. `main` maps it to exit status 1, which
/// Docker reads as "unhealthy" (2 is reserved there).
#[derive(Debug, thiserror::Error)]
#[error("unhealthy: {0}")]
pub(crate) struct Unhealthy(pub String);

#[derive(Debug, clap::Args)]
pub(crate) struct HealthcheckArgs {
    /// What to GET (plain `http://HOST:PORT/PATH`); `/readyz` instead of `/healthz` checks
    /// readiness.
    #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
    pub(crate) url: String,
    /// Give up after this long (connect, send and read together, each bounded by it).
    #[arg(long, default_value = "3s", value_parser = spikewatch::config::parse_duration)]
    pub(crate) timeout: spikewatch::config::Secs,
}

/// `http://host:port/path` split into `host:port` (port 80 by default) and `/path`.
fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    // A port is present unless the authority ends in `]` (bare IPv6) or has no `:`.
    let has_port = match authority.rfind(':') {
        Some(i) => !authority[i..].contains(']'),
        None => false,
    };
    let hostport = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((hostport, path.to_string()))
}

/// The status code of `GET url`.
fn get_status(url: &str, timeout: Duration) -> Result<(u16, String), String> {
    let (hostport, path) = split_url(url)?;
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("{hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport}: no address"))?;
    let mut s =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: spikewatch-healthcheck\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send to {addr}: {e}"))?;
    // The status line and a little of the body (for the message) are enough; a large body
    // (a misdirected probe at `/`) is not read to the end.
    let mut buf = Vec::with_capacity(1024);
    s.take(4096)
        .read_to_end(&mut buf)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let status_line = text.lines().next().unwrap_or_default();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/"))
        .ok_or_else(|| format!("{addr}: not an HTTP response: {status_line:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    Ok((code, body))
}

pub(crate) fn run(args: &HealthcheckArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout.0.max(1));
    match get_status(&args.url, timeout) {
        Ok((code, body)) if (200..300).contains(&code) => {
            println!("{} {code} {body}", args.url);
            Ok(())
        }
        Ok((code, body)) => Err(Unhealthy(format!("{} answered {code} {body}", args.url)).into()),
        Err(e) => Err(Unhealthy(e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_and_path() {
        let s = |u: &str| split_url(u).unwrap();
        assert_eq!(
            s("http://127.0.0.1:8080/healthz"),
            ("127.0.0.1:8080".into(), "/healthz".into())
        );
        assert_eq!(s("http://localhost"), ("localhost:80".into(), "/".into()));
        assert_eq!(
            s("http://[::1]:9/readyz?x=1"),
            ("[::1]:9".into(), "/readyz?x=1".into())
        );
        assert_eq!(s("http://[::1]/"), ("[::1]:80".into(), "/".into()));
        assert!(split_url("https://x/").is_err());
        assert!(split_url("http:///healthz").is_err());
    }
}
