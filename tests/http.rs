//! The operator's HTTP surface over a board fed by the engine in the middle of an outage.

#[path = "support/mid_outage.rs"]
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
