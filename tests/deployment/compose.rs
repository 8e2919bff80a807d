//! docker-compose.yml, its config (deploy/spikewatch.toml), the Dockerfile and `.dockerignore`
//! say what the README promises: Kafka in KRaft mode, the topics spikewatch is configured with,
//! the HTTP port published and probed by the `spikewatch healthcheck` subcommand (tested here
//! against a live server), and a build context without target/ or .git.

use serde_yaml::Value;

use spikewatch::config::Config;

use crate::{deploy_config, http_addr, read, route_status, text, BIN, ROOT};

fn compose() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .expect("docker-compose.yml at the repository root");
    serde_yaml::from_str(&text).expect("docker-compose.yml parses as YAML")
}

fn service<'a>(c: &'a Value, name: &str) -> &'a Value {
    c["services"]
        .get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name:?}"))
}

#[test]
fn compose_runs_kafka_in_kraft_mode_from_the_official_image() {
    let c = compose();
    let kafka = service(&c, "kafka");
    let image = kafka["image"].as_str().unwrap();
    assert!(image.starts_with("apache/kafka:"), "{image}");
    let roles = kafka["environment"]["KAFKA_PROCESS_ROLES"]
        .as_str()
        .unwrap();
    assert!(
        roles.contains("broker") && roles.contains("controller"),
        "{roles}"
    );
    assert!(kafka["healthcheck"].is_mapping());
}

#[test]
fn compose_creates_the_topics_spikewatch_is_configured_with() {
    let c = compose();
    let create = service(&c, "create-topics");
    assert!(create["image"]
        .as_str()
        .unwrap()
        .starts_with("apache/kafka:"));
    let script = text(&create["command"]);
    let cfg = Config::load_with_env(
        Some(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/spikewatch.toml"
        ))),
        Vec::new(),
    )
    .expect("deploy/spikewatch.toml is a valid config");
    let t = &cfg.kafka.topics;
    // Every topic the config names (through serde, so a topic added later is checked too):
    // the broker does not auto-create, and a missing output topic stops spikewatch.
    let all = serde_json::to_value(t).unwrap();
    let all = all.as_object().unwrap();
    assert!(all.len() >= 6, "{all:?}");
    for (key, topic) in all {
        let topic = topic.as_str().unwrap();
        if topic.is_empty() {
            continue; // an optional output switched off
        }
        assert!(
            script
                .split(|c: char| c.is_whitespace() || c == ';' || c == '"')
                .any(|w| w == topic),
            "topics.{key} = {topic} not created by:\n{script}"
        );
    }
    // The README's defaults.
    assert_eq!(t.mentions, "spikewatch.mentions");
    assert_eq!(t.complaints, "spikewatch.complaints");
    assert_eq!(t.anomalies, "spikewatch.anomalies");
    assert_eq!(t.dead_letters, "spikewatch.dead-letters");
    assert_eq!(t.changelog, "spikewatch.state");
    assert!(script.contains("cleanup.policy=compact"), "{script}");
    assert_eq!(cfg.kafka.brokers, "kafka:19092");
    assert!(text(&service(&c, "kafka")["environment"]).contains("PLAINTEXT://kafka:19092"));
}

#[test]
fn compose_builds_spikewatch_from_the_dockerfile_with_the_mounted_config() {
    let c = compose();
    let sw = service(&c, "spikewatch");
    assert_eq!(sw["build"].as_str(), Some("."));
    let vols = text(&sw["volumes"]);
    assert!(
        vols.contains("./deploy/spikewatch.toml:/etc/spikewatch/spikewatch.toml"),
        "{vols}"
    );
    let cmd = text(&sw["command"]);
    assert!(
        cmd.contains("run") && cmd.contains("/etc/spikewatch/spikewatch.toml"),
        "{cmd}"
    );
    assert!(text(&sw["depends_on"]).contains("service_completed_successfully"));
    let demo = service(&c, "demo-producer");
    assert!(text(&demo["command"]).contains("produce-demo"));
    assert!(text(&demo["profiles"]).contains("demo"));
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    assert!(dockerfile.contains("cargo build --release"));
    assert!(dockerfile.contains("/etc/spikewatch/spikewatch.toml"));
}

fn url_port_and_path(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (authority, path) = rest.split_at(rest.find('/').expect("a path"));
    let port = authority.rsplit(':').next().unwrap().parse().unwrap();
    (port, path.to_string())
}

#[tokio::test]
async fn compose_publishes_the_http_port_and_probes_healthz_with_the_binary() {
    let cfg = deploy_config();
    let addr = http_addr(&cfg);
    assert!(
        addr.ip().is_unspecified(),
        "{addr}: must listen on every interface to be reachable from outside the container"
    );
    let c = compose();
    let sw = service(&c, "spikewatch");
    let ports: Vec<String> = sw["ports"]
        .as_sequence()
        .expect("spikewatch publishes ports")
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert!(
        ports.contains(&format!("{0}:{0}", addr.port())),
        "{ports:?} should publish the [http] port {}",
        addr.port()
    );

    // The healthcheck runs the binary the Dockerfile installs (the image has no curl) against
    // the configured port, on a path the router serves whether or not the instance is ready.
    let test: Vec<&str> = sw["healthcheck"]["test"]
        .as_sequence()
        .expect("spikewatch has a healthcheck")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(test[0], "CMD", "{test:?}");
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.contains(&format!(
            "COPY --from=build /src/target/release/spikewatch {}",
            test[1]
        )),
        "{} is not where the Dockerfile installs the binary",
        test[1]
    );
    assert!(
        !dockerfile
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .any(|l| l.contains("curl") || l.contains("wget")),
        "the runtime image has no HTTP client; the healthcheck must not need one"
    );
    assert_eq!(&test[2..4], ["healthcheck", "--url"], "{test:?}");
    let (port, path) = url_port_and_path(test[4]);
    assert_eq!(port, addr.port(), "{test:?}");
    assert_eq!(path, "/healthz");
    assert_eq!(route_status(&path).await, (200, 200));
    assert!(dockerfile.contains(&format!("EXPOSE {}", addr.port())));

    // The demo producer uses the same image and can build it.
    let demo = service(&c, "demo-producer");
    assert_eq!(demo["build"].as_str(), Some("."));
    assert_eq!(demo["image"], sw["image"]);
    assert_eq!(
        demo["depends_on"]["spikewatch"]["condition"].as_str(),
        Some("service_healthy")
    );
}

#[test]
fn dockerignore_leaves_out_target_and_git_but_not_what_the_dockerfile_copies() {
    let patterns: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_start_matches('/').trim_end_matches('/').to_string())
        .collect();
    // .dockerignore patterns used here: exact paths and `*.ext`.
    let ignored = |path: &str| {
        patterns.iter().any(|p| match p.strip_prefix('*') {
            Some(ext) => path.ends_with(ext),
            None => path == p || path.starts_with(&format!("{p}/")),
        })
    };
    for p in ["target", "target/debug/spikewatch", ".git"] {
        assert!(ignored(p), "{p} goes into the build context: {patterns:?}");
    }
    let dockerfile = read("Dockerfile");
    let copied: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            parts[..parts.len() - 1].to_vec()
        })
        .collect();
    assert!(
        copied.contains(&"src") && copied.contains(&"Cargo.lock"),
        "{copied:?}"
    );
    for p in copied {
        assert!(
            !ignored(p),
            "the Dockerfile copies {p}, which .dockerignore leaves out"
        );
        assert!(
            std::path::Path::new(&format!("{ROOT}/{p}")).exists(),
            "the Dockerfile copies {p}, which does not exist"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_subcommand_exits_0_when_healthy_and_1_otherwise() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = spikewatch::http::AppState::new("test");
    state
        .readiness
        .set_not_ready("restoring state of partition 3");
    tokio::spawn(spikewatch::http::serve_on(
        listener,
        state,
        std::future::pending(),
    ));
    let probe = |url: String| async move {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(BIN)
                .args(["healthcheck", "--url", &url, "--timeout", "5s"])
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let ok = probe(format!("http://{addr}/healthz")).await;
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let not_ready = probe(format!("http://{addr}/readyz")).await;
    assert_eq!(not_ready.status.code(), Some(1), "{not_ready:?}");
    let err = String::from_utf8_lossy(&not_ready.stderr);
    assert!(
        err.contains("503") && err.contains("restoring state of partition 3"),
        "{err}"
    );
    // Nothing listening: unhealthy, not a crash.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let down = probe(format!("http://127.0.0.1:{port}/healthz")).await;
    assert_eq!(down.status.code(), Some(1), "{down:?}");
}
