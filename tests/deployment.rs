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

// ---- Observable deployment: HTTP port, healthcheck, .dockerignore, Kubernetes manifests ----

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_spikewatch");

fn read(rel: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{rel}")).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml_docs(rel: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(&read(rel))
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn deploy_config() -> Config {
    Config::load_with_env(
        Some(std::path::Path::new(&format!(
            "{ROOT}/deploy/spikewatch.toml"
        ))),
        Vec::new(),
    )
    .expect("deploy/spikewatch.toml is a valid config")
}

fn http_addr(cfg: &Config) -> std::net::SocketAddr {
    cfg.http
        .addr
        .as_deref()
        .expect("[http] addr is set: without it there is no page, /metrics or probes")
        .parse()
        .expect("[http] addr is HOST:PORT")
}

/// The status the binary's HTTP router gives `path`, not ready and then ready.
async fn route_status(path: &str) -> (u16, u16) {
    use tower::ServiceExt;
    let state = spikewatch::http::AppState::new("test");
    let get = |state: spikewatch::http::AppState| async move {
        spikewatch::http::router(state)
            .oneshot(
                axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let not_ready = get(state.clone()).await;
    state.readiness.set_ready();
    (not_ready, get(state).await)
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

struct K8s {
    deployment: Value,
    service: Value,
    config_map: Value,
    pdb: Value,
}

fn k8s() -> K8s {
    let kustomization = yaml_docs("deploy/k8s/kustomization.yaml").remove(0);
    let mut docs = Vec::new();
    for r in kustomization["resources"].as_sequence().unwrap() {
        docs.extend(yaml_docs(&format!("deploy/k8s/{}", r.as_str().unwrap())));
    }
    // Every manifest in the directory is listed, so `kubectl apply -k` applies it.
    for entry in std::fs::read_dir(format!("{ROOT}/deploy/k8s")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            assert!(
                text(&kustomization["resources"]).contains(&name),
                "{name} is not in kustomization.yaml"
            );
        }
    }
    let take = |kind: &str| -> Value {
        let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "one {kind} in deploy/k8s");
        found[0].clone()
    };
    K8s {
        deployment: take("Deployment"),
        service: take("Service"),
        config_map: take("ConfigMap"),
        pdb: take("PodDisruptionBudget"),
    }
}

/// The ConfigMap's spikewatch.toml, written to a file.
fn config_map_toml(k: &K8s) -> (tempfile::TempDir, std::path::PathBuf) {
    let data = k.config_map["data"].as_mapping().unwrap();
    assert_eq!(data.len(), 1, "the ConfigMap holds spikewatch.toml only");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spikewatch.toml");
    std::fs::write(
        &path,
        k.config_map["data"]["spikewatch.toml"].as_str().unwrap(),
    )
    .unwrap();
    (dir, path)
}

fn labels_match(selector: &Value, labels: &Value) {
    let selector = selector.as_mapping().expect("a label selector");
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(
            &labels[k],
            v,
            "selector {k:?} does not match {}",
            text(labels)
        );
    }
}

#[tokio::test]
async fn k8s_manifests_agree_on_names_ports_paths_and_the_config() {
    let k = k8s();
    let (_dir, path) = config_map_toml(&k);
    let cfg = Config::load_with_env(Some(&path), Vec::new()).expect("the ConfigMap's config");
    let addr = http_addr(&cfg);
    assert!(
        addr.ip().is_unspecified(),
        "{addr}: probes come from outside the pod"
    );

    let spec = &k.deployment["spec"];
    let pod = &spec["template"];
    labels_match(&spec["selector"]["matchLabels"], &pod["metadata"]["labels"]);
    labels_match(&k.service["spec"]["selector"], &pod["metadata"]["labels"]);
    labels_match(
        &k.pdb["spec"]["selector"]["matchLabels"],
        &pod["metadata"]["labels"],
    );
    let containers = pod["spec"]["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let ct = &containers[0];

    // Ports: the container port is the configured one, named, and the Service targets it.
    let ports = ct["ports"].as_sequence().unwrap();
    let http = ports
        .iter()
        .find(|p| p["containerPort"].as_u64() == Some(u64::from(addr.port())))
        .unwrap_or_else(|| panic!("no containerPort {} in {}", addr.port(), text(&ct["ports"])));
    let port_name = http["name"].as_str().expect("the HTTP port is named");
    let svc_port = &k.service["spec"]["ports"][0];
    assert_eq!(svc_port["targetPort"].as_str(), Some(port_name));
    assert_eq!(svc_port["port"].as_u64(), Some(u64::from(addr.port())));

    // Probes: liveness on /healthz (200 whether or not ready: a broker outage must not restart
    // the pod), readiness on /readyz (503 until ready).
    for (probe, path, statuses) in [
        ("livenessProbe", "/healthz", (200, 200)),
        ("startupProbe", "/healthz", (200, 200)),
        ("readinessProbe", "/readyz", (503, 200)),
    ] {
        let get = &ct[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(get["port"].as_str(), Some(port_name), "{probe}");
        assert_eq!(route_status(path).await, statuses, "{probe} {path}");
    }
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(
        ann["prometheus.io/port"].as_str(),
        Some(addr.port().to_string().as_str())
    );
    let metrics_path = ann["prometheus.io/path"].as_str().unwrap();
    assert_eq!(route_status(metrics_path).await, (200, 200));

    // Config: --config names the ConfigMap's key where its volume is mounted.
    let args: Vec<&str> = ct["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "run", "{args:?}");
    let config_arg = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    let mount = ct["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| config_arg.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap())))
        .unwrap_or_else(|| panic!("{config_arg} is not under a volume mount"));
    assert!(
        mount["subPath"].is_null(),
        "a subPath mount never sees ConfigMap updates, so hot reload would not work"
    );
    let key = &config_arg[mount["mountPath"].as_str().unwrap().len() + 1..];
    assert!(
        !k.config_map["data"][key].is_null(),
        "no key {key} in the ConfigMap"
    );
    let volume = pod["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    assert_eq!(
        volume["configMap"]["name"],
        k.config_map["metadata"]["name"]
    );

    // Shutdown: the kubelet waits longer than spikewatch takes to drain.
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    assert!(
        grace > cfg.kafka.drain_timeout.0,
        "terminationGracePeriodSeconds {grace} <= drain_timeout {}",
        cfg.kafka.drain_timeout.0
    );
    // The image's user (the Dockerfile's useradd), on a read-only root filesystem.
    let uid = pod["spec"]["securityContext"]["runAsUser"]
        .as_u64()
        .unwrap();
    assert!(read("Dockerfile").contains(&format!("--uid {uid} spikewatch")));
    assert_eq!(
        ct["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    // Same topics and group as the compose deployment.
    let compose_cfg = deploy_config();
    assert_eq!(cfg.kafka.topics, compose_cfg.kafka.topics);
    assert_eq!(cfg.kafka.group_id, compose_cfg.kafka.group_id);
}

fn check_config(path: &std::path::Path) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn shipped_configs_pass_check_config() {
    let k = k8s();
    let (_dir, path) = config_map_toml(&k);
    for p in [path, format!("{ROOT}/deploy/spikewatch.toml").into()] {
        let out = check_config(&p);
        assert!(
            out.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
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

/// `kubectl kustomize` (kustomize built in) renders the manifests as `kubectl apply -k` would;
/// only where kubectl is installed (the structural checks above run everywhere).
#[test]
fn kustomize_renders_the_manifests_where_kubectl_is_installed() {
    let out = match std::process::Command::new("kubectl")
        .args(["kustomize", &format!("{ROOT}/deploy/k8s")])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: no kubectl ({e})");
            return;
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use serde::Deserialize;
    let docs: Vec<Value> = serde_yaml::Deserializer::from_slice(&out.stdout)
        .map(|d| Value::deserialize(d).unwrap())
        .collect();
    let mut kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]
    );
    for d in &docs {
        assert_eq!(
            d["metadata"]["labels"]["app.kubernetes.io/part-of"].as_str(),
            Some("spikewatch"),
            "{}",
            text(d)
        );
    }
}

// ---- Alerts and dashboard: every metric they use is one `spikewatch run` serves ----

/// Metric names `spikewatch run` serves on /metrics (histograms with their `_bucket`, `_sum`
/// and `_count` series), from the same function that renders it.
fn served_metric_names() -> std::collections::BTreeSet<String> {
    let text =
        spikewatch::metrics::Exposition::run(Default::default(), Default::default()).render();
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            names.insert(name.to_string());
            if kind == "histogram" {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
        }
    }
    names
}

/// The metric names a PromQL expression uses: identifiers of spikewatch's own families and
/// the standard process ones (label names, functions and keywords never start so).
fn metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in expr.chars().chain(std::iter::once(' ')) {
        if ch == '"' {
            quoted = !quoted;
        }
        if !quoted && (ch.is_ascii_alphanumeric() || ch == '_' || ch == ':') {
            cur.push(ch);
        } else {
            if cur.starts_with("spikewatch_") || cur.starts_with("process_") {
                out.push(cur.clone());
            }
            cur.clear();
        }
    }
    out
}

fn assert_balanced(expr: &str) {
    let mut stack = Vec::new();
    for ch in expr.chars() {
        match ch {
            '(' | '[' | '{' => stack.push(ch),
            ')' | ']' | '}' => {
                let open = stack.pop().unwrap_or_else(|| panic!("unbalanced: {expr}"));
                assert_eq!(
                    (open, ch).0,
                    match ch {
                        ')' => '(',
                        ']' => '[',
                        _ => '{',
                    },
                    "unbalanced: {expr}"
                );
            }
            _ => {}
        }
    }
    assert!(stack.is_empty(), "unbalanced: {expr}");
}

fn alert_rules() -> Vec<Value> {
    let doc = yaml_docs("deploy/alerts.yml").remove(0);
    doc["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").clone())
        .collect()
}

#[test]
fn alert_rules_are_complete_and_use_only_served_metrics() {
    let served = served_metric_names();
    for name in [
        "spikewatch_build_info",
        "spikewatch_ready",
        "spikewatch_consumer_lag",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
    ] {
        assert!(served.contains(name), "{name} not served: {served:?}");
    }
    let rules = alert_rules();
    let readme = read("README.md");
    let mut names = std::collections::BTreeSet::new();
    for r in &rules {
        let alert = r["alert"].as_str().expect("alerting rules only");
        assert!(names.insert(alert), "{alert} twice");
        assert!(alert.starts_with("Spikewatch"), "{alert}");
        let expr = r["expr"].as_str().unwrap();
        assert_balanced(expr);
        let used = metrics_in(expr);
        assert!(
            used.iter().any(|m| m.starts_with("spikewatch_")),
            "{alert}: {expr}"
        );
        for m in used {
            assert!(
                served.contains(&m),
                "{alert} uses {m}, which /metrics does not serve"
            );
        }
        if let Some(d) = r["for"].as_str() {
            let (n, unit) = d.split_at(d.len() - 1);
            assert!(
                n.parse::<u32>().is_ok() && "smhd".contains(unit),
                "{alert}: for {d}"
            );
        }
        let sev = r["labels"]["severity"].as_str().unwrap();
        assert!(
            ["critical", "warning", "info"].contains(&sev),
            "{alert}: {sev}"
        );
        for a in ["summary", "description"] {
            assert!(
                !r["annotations"][a].as_str().unwrap_or("").is_empty(),
                "{alert}: no {a}"
            );
        }
        assert!(
            readme.contains(&format!("`{alert}`")),
            "README's alert table does not name {alert}"
        );
    }
    // The alerts README "Alerts worth setting" promises.
    for a in [
        "SpikewatchConsumerLagHigh",
        "SpikewatchConsumerLagGrowing",
        "SpikewatchDeadLetters",
        "SpikewatchAckDelayHigh",
        "SpikewatchNoInput",
        "SpikewatchAbsent",
        "SpikewatchNotReady",
        "SpikewatchCardinalityCapHit",
        "SpikewatchMemoryHigh",
    ] {
        assert!(names.contains(a), "no alert {a} in deploy/alerts.yml");
    }
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read("deploy/grafana/spikewatch.json"))
        .expect("deploy/grafana/spikewatch.json is JSON")
}

/// Every panel, rows' nested panels included.
fn dashboard_panels(d: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        out.push(p.clone());
        for inner in p["panels"].as_array().into_iter().flatten() {
            out.push(inner.clone());
        }
    }
    out
}

/// The dashboard's queries as plain PromQL: Grafana's variables replaced by values.
fn dashboard_queries(d: &serde_json::Value) -> Vec<(String, String)> {
    dashboard_panels(d)
        .iter()
        .filter(|p| p["type"] != "row")
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap().to_string();
            p["targets"]
                .as_array()
                .unwrap_or_else(|| panic!("{title}: no targets"))
                .iter()
                .map(move |t| {
                    let expr = t["expr"]
                        .as_str()
                        .unwrap()
                        .replace("$__rate_interval", "5m")
                        .replace("$instance", ".*");
                    (title.clone(), expr)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn dashboard_is_grafana_json_and_queries_only_served_metrics() {
    let d = dashboard();
    assert_eq!(d["uid"], "spikewatch");
    assert!(d["schemaVersion"].as_u64().unwrap() >= 30);
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a Prometheus data source variable, so the dashboard imports anywhere"
    );
    let served = served_metric_names();
    let mut ids = std::collections::BTreeSet::new();
    for p in dashboard_panels(&d) {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "panel id twice: {p}");
        let grid = &p["gridPos"];
        assert!(
            grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
            "{p}"
        );
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }
    let queries = dashboard_queries(&d);
    assert!(queries.len() >= 10, "{queries:?}");
    let mut used = std::collections::BTreeSet::new();
    for (title, expr) in &queries {
        assert_balanced(expr);
        let ms = metrics_in(expr);
        assert!(!ms.is_empty(), "{title}: {expr}");
        for m in ms {
            assert!(
                served.contains(&m),
                "panel {title:?} uses {m}, which /metrics does not serve"
            );
            used.insert(m);
        }
    }
    // What the alerts watch is on the dashboard too.
    for r in alert_rules() {
        for m in metrics_in(r["expr"].as_str().unwrap()) {
            assert!(
                used.contains(&m),
                "{m} (alert {:?}) is on no dashboard panel",
                r["alert"]
            );
        }
    }
}

/// promtool: `$SPIKEWATCH_PROMTOOL`, else on PATH.
fn promtool() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("SPIKEWATCH_PROMTOOL") {
        return Some(p.into());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    })
}

fn run_promtool(tool: &std::path::Path, args: &[&str], stdin: Option<&str>) {
    use std::io::Write;
    let mut child = std::process::Command::new(tool)
        .args(args)
        .current_dir(format!("{ROOT}/deploy"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Prometheus' own parser and rule evaluator, where promtool is installed: the rules and the
/// dashboard's queries parse, the alerts fire (and stay quiet) as deploy/alerts_test.yml
/// expects, and /metrics passes promtool's exposition lint.
#[test]
fn promtool_checks_rules_alert_unit_tests_dashboard_queries_and_exposition() {
    let Some(tool) = promtool() else {
        eprintln!(
            "skipped: no promtool on PATH (SPIKEWATCH_PROMTOOL=/path/to/promtool to run it; \
             Debian package `prometheus`)"
        );
        return;
    };
    run_promtool(&tool, &["check", "rules", "alerts.yml"], None);
    run_promtool(&tool, &["test", "rules", "alerts_test.yml"], None);
    // The dashboard's queries as recording rules: promtool parses each expression.
    let dir = tempfile::tempdir().unwrap();
    let rules: Vec<serde_json::Value> = dashboard_queries(&dashboard())
        .into_iter()
        .enumerate()
        .map(|(i, (_, expr))| serde_json::json!({"record": format!("dashboard:query{i}"), "expr": expr}))
        .collect();
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(
        &file,
        serde_yaml::to_string(
            &serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}),
        )
        .unwrap(),
    )
    .unwrap();
    run_promtool(&tool, &["check", "rules", file.to_str().unwrap()], None);
    let text =
        spikewatch::metrics::Exposition::run(Default::default(), Default::default()).render();
    run_promtool(&tool, &["check", "metrics"], Some(&text));
    let demo =
        spikewatch::metrics::Exposition::demo(Default::default(), Default::default()).render();
    run_promtool(&tool, &["check", "metrics"], Some(&demo));
}

/// Every family `run` serves is in README's metrics table (under "### Metrics"), with the
/// names of its labels.
#[test]
fn readme_metrics_table_lists_every_served_family_and_its_labels() {
    let readme = read("README.md");
    let section = readme
        .split("\n### Metrics\n")
        .nth(1)
        .expect("README ### Metrics")
        .split("\n### ")
        .next()
        .unwrap();
    let text =
        spikewatch::metrics::Exposition::run(Default::default(), Default::default()).render();
    let mut labels: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            labels
                .entry(rest.split(' ').next().unwrap().to_string())
                .or_default();
        } else if let Some((name, rest)) = line.split_once('{') {
            let name = name.trim_end_matches("_bucket");
            for pair in rest.split("\",") {
                let key = pair.split('=').next().unwrap();
                if key != "le" {
                    labels.get_mut(name).unwrap().insert(key.to_string());
                }
            }
        }
    }
    // Families whose labelled samples only appear with data.
    labels
        .get_mut("spikewatch_consumer_lag")
        .unwrap()
        .extend(["topic".into(), "partition".into()]);
    labels
        .get_mut("spikewatch_dead_letters_by_kind_total")
        .unwrap()
        .insert("kind".into());
    for (name, keys) in &labels {
        // `name`, or `name{label,…}` (`{…}`: the labels of the row's first family).
        let documented = match section.split_once(&format!("`{name}{{")) {
            Some((_, rest)) => {
                let names = rest.split("}`").next().unwrap();
                names == "…" || keys.iter().all(|k| names.split(',').any(|n| n == k))
            }
            None => keys.is_empty() && section.contains(&format!("`{name}`")),
        };
        assert!(
            documented,
            "{name} {keys:?} is not in README's metrics table"
        );
    }
}
