//! The operator's HTTP surface over a board fed by the engine in the middle of an outage.
//!
//! One test binary with the status page in a real browser: `browser` loads it in headless
//! Chromium; `mid_outage` builds the board both use.

mod browser;
mod mid_outage;

use mid_outage::state_mid_outage;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use spikewatch::http::{self, AppState};

async fn get(state: &AppState, uri: &str) -> (StatusCode, String, String) {
    let resp = http::router(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, ctype, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn health_and_readiness_tell_apart_alive_and_ready() {
    let state = AppState::new("test");
    assert_eq!(get(&state, "/healthz").await.0, StatusCode::OK);
    state
        .readiness
        .set_not_ready("restoring state of partition 3");
    let (code, _, body) = get(&state, "/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("restoring state of partition 3"), "{body}");
    assert!(state
        .readiness
        .prometheus()
        .ends_with("# TYPE spikewatch_ready gauge\nspikewatch_ready 0\n"));
    state.readiness.set_ready();
    assert_eq!(get(&state, "/readyz").await.0, StatusCode::OK);
    assert!(state
        .readiness
        .prometheus()
        .starts_with("# HELP spikewatch_ready "));
    assert!(state
        .readiness
        .prometheus()
        .ends_with("\nspikewatch_ready 1\n"));
}

#[tokio::test]
async fn metrics_are_prometheus_text_from_the_driver() {
    let mut state = AppState::new("test");
    state.metrics =
        Arc::new(|| "# TYPE spikewatch_events_total counter\nspikewatch_events_total 42\n".into());
    let (code, ctype, body) = get(&state, "/metrics").await;
    assert_eq!(code, StatusCode::OK);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    assert!(body.contains("spikewatch_events_total 42"));
}

#[tokio::test]
async fn api_shows_open_incidents_and_why_they_alerted() {
    let state = state_mid_outage();
    let (code, ctype, body) = get(&state, "/api/incidents").await;
    assert_eq!(code, StatusCode::OK);
    assert!(ctype.starts_with("application/json"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let open = v["open"].as_array().unwrap();
    assert!(
        open.iter().any(|i| i["latest"]["service"] == "telegram"
            && i["latest"]["geos"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == "IT")),
        "{body}"
    );

    let (code, _, body) = get(
        &state,
        "/api/series?service=telegram&geo=IT&signal=complaints",
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let buckets = v["buckets"].as_array().unwrap();
    assert!(
        buckets.len() >= 300,
        "six hours of history: {}",
        buckets.len()
    );
    let last = buckets.last().unwrap();
    assert_eq!(last["alert"], true);
    assert!(last["observed"].as_f64().unwrap() > 3.0 * last["expected"].as_f64().unwrap());

    let (code, _, body) = get(
        &state,
        "/api/series?service=telegram&geo=IT-ZZ&signal=complaints",
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(body.contains("only roll-up geos"), "{body}");
    assert_eq!(
        get(&state, "/api/series?geo=IT").await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn status_page_puts_the_open_outage_first_with_its_chart_and_geos() {
    let state = state_mid_outage();
    let (code, ctype, html) = get(&state, "/").await;
    assert_eq!(code, StatusCode::OK);
    assert!(ctype.starts_with("text/html"));
    assert!(html.contains("open outage"), "title says an outage is open");
    assert_eq!(
        html.matches("<section class=\"card\">").count(),
        1,
        "one card for the one outage (all its geos and signals): {html}"
    );
    let first_card = html
        .find("<section class=\"card\">")
        .expect("an incident card");
    assert!(html[first_card..].contains("telegram"));
    assert!(html.contains("<svg"), "a chart");
    // The map: the outage's countries as coloured tiles, named with the failing service.
    let map = &html[html.find("<section class=\"card map\">").expect("a map")..];
    assert!(map.contains("class=\"tile affected\""), "{map}");
    assert!(map.contains("<title>IT: telegram</title>"), "{map}");
    assert!(html.contains("Affected: "), "the geo breakdown");
    assert!(html.contains("IT-RM") && html.contains("IT-MI"));
    assert!(!html.contains("<script"), "no scripts");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing external"
    );
}

#[tokio::test]
async fn server_listens_and_shuts_down_gracefully() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve_on(listener, AppState::new("test"), async {
        let _ = stopped.await;
    }));
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("shut down within 5 s")
        .unwrap()
        .unwrap();
}

/// Reads until the peer closes the connection: `true` if it did within `within`.
async fn closed_within(conn: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let read_to_end = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_to_end).await.is_ok()
}

async fn healthz_over(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).await.unwrap();
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_cap_neither_lock_out_healthz_nor_stay_open() {
    use std::time::Duration;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = http::ServerLimits {
        max_connections: 8,
        idle_timeout: Duration::from_secs(2),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve_with(
        listener,
        AppState::new("test"),
        limits,
        async {
            let _ = stopped.await;
        },
    ));
    // Connections that never send a byte, far more than the cap.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Generous bound: the cap makes room at once; without it the probe would queue behind
    // the idle connections.
    let reply = tokio::time::timeout(Duration::from_secs(20), healthz_over(addr))
        .await
        .expect("/healthz answers while 50 idle connections are open");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    // The server holds at most 8 of them: the rest were closed to make room, and the ones it
    // kept close after the idle timeout. None stays open.
    for (i, conn) in idle.iter_mut().enumerate() {
        assert!(
            closed_within(conn, Duration::from_secs(20)).await,
            "idle connection {i} is still open"
        );
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("shut down within 10 s")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_are_closed_after_the_idle_timeout() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = http::ServerLimits {
        max_connections: 64,
        idle_timeout: Duration::from_secs(1),
    };
    tokio::spawn(http::serve_with(
        listener,
        AppState::new("test"),
        limits,
        std::future::pending(),
    ));
    // One request, then nothing: the connection stays open for keep-alive, then times out.
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    assert!(
        closed_within(&mut conn, Duration::from_secs(20)).await,
        "an idle keep-alive connection stays open"
    );
    // Connected, and never a byte (below the cap, so nothing else closes it).
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(20)).await,
        "a connection that never sends anything stays open"
    );
    // Half a request head, then nothing (slowloris): closed too.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost:")
        .await
        .unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(20)).await,
        "a connection that never finishes its request head stays open"
    );
}

async fn board_page(state: &AppState) -> String {
    let (code, _, html) = get(state, "/").await;
    assert_eq!(code, StatusCode::OK);
    html
}

#[tokio::test]
async fn page_restarted_mid_outage_shows_the_restored_outage_as_open_not_all_normal() {
    use spikewatch::config::Config;
    use spikewatch::engine::Engine;
    use spikewatch::sim::{self, Scenario, HOUR_MS};
    use spikewatch::status::StatusBoard;
    let s = Scenario {
        days: 17,
        ..Scenario::demo()
    };
    let mut engine = Engine::new(Config::default());
    let mut before = StatusBoard::default();
    sim::drive_until(
        &s,
        &mut engine,
        &mut before,
        s.outages[0].start_ms() + HOUR_MS,
    );
    let was = before.incidents();
    assert_eq!(was.open.len(), 1);
    assert!(!was.series.open.is_empty());

    // A restart: a new board, the engine's state restored from the changelog. Its events
    // went out before the restart.
    let state = AppState::new("test");
    let (outages, incidents) =
        spikewatch::status::restored_open(&engine.layout().outages, &engine.export_series());
    state
        .board
        .lock()
        .unwrap()
        .record_restored(outages, incidents);
    let html = board_page(&state).await;
    assert!(!html.contains("All systems normal"), "{html}");
    assert!(html.contains("<title>1 open outage"), "{html}");
    assert!(html.contains("telegram") && html.contains("Restored from saved state"));
    let (_, _, body) = get(&state, "/api/incidents").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["restored"][0]["outage_id"],
        was.open[0].outage_id.as_str()
    );
    assert_eq!(
        v["restored_series"].as_array().unwrap().len(),
        was.series.open.len(),
        "every open series incident"
    );

    // Its next event replaces the restored entry.
    state
        .board
        .lock()
        .unwrap()
        .record_outage(&was.open[0].latest);
    let now = state.board.lock().unwrap().incidents();
    assert!(now.restored.is_empty());
    assert_eq!(now.open.len(), 1);
    let html = board_page(&state).await;
    assert!(html.contains("<title>1 open outage"), "{html}");
    assert!(
        !html.contains("Restored from saved state"),
        "shown once, live"
    );
}

#[tokio::test]
async fn page_drops_the_outages_of_services_whose_partition_moved_away() {
    let state = state_mid_outage();
    assert!(board_page(&state).await.contains("1 open outage"));
    state.board.lock().unwrap().forget_services(["telegram"]);
    let view = state.board.lock().unwrap().incidents();
    assert!(view.open.is_empty(), "{:?}", view.open);
    assert!(view
        .series
        .open
        .iter()
        .all(|i| i.latest.service != "telegram"));
    let (code, _, _) = get(
        &state,
        "/api/series?service=telegram&geo=IT&signal=complaints",
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "its charts go too");
    assert!(!board_page(&state).await.contains("<section class=\"card"));
}

#[tokio::test]
async fn page_says_no_data_since_when_input_stopped_never_all_normal() {
    let hour_ago = spikewatch::status::wall_ms() - 3_600_000;
    // A live pipeline that has not received anything since it started an hour ago.
    let state = AppState::new("test");
    state.board.lock().unwrap().watch_input(hour_ago);
    let html = board_page(&state).await;
    assert!(!html.contains("All systems normal"), "{html}");
    assert!(!html.contains("No open outages"), "{html}");
    assert!(
        html.contains("No data received since the start at"),
        "{html}"
    );
    let (_, _, body) = get(&state, "/api/incidents").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["input"]["stale"], true, "{body}");

    // Input arrives: all normal again.
    state
        .board
        .lock()
        .unwrap()
        .input_seen(spikewatch::status::wall_ms());
    assert!(board_page(&state).await.contains("All systems normal"));

    // With an open outage the page says both.
    let state = state_mid_outage();
    state.board.lock().unwrap().input_seen(hour_ago);
    let html = board_page(&state).await;
    assert!(html.contains("1 open outage"), "{html}");
    assert!(html.contains("No data since"), "{html}");

    // A board not fed by a live pipeline (replay, demo) has no notion of input stopping.
    let (_, _, body) = get(&state_mid_outage(), "/api/incidents").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v.get("input").is_none());
}
