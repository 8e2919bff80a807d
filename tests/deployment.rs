//! CI cannot run Docker: check that docker-compose.yml, its config and the Dockerfile say what
//! the README promises.

use serde_yaml::Value;

use spikewatch::config::Config;

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

fn text(v: &Value) -> String {
    serde_yaml::to_string(v).unwrap()
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
    for topic in [
        &t.mentions,
        &t.complaints,
        &t.anomalies,
        &t.dead_letters,
        &t.changelog,
    ] {
        assert!(
            script.contains(topic.as_str()),
            "{topic} not created by:\n{script}"
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
