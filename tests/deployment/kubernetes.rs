//! The Kubernetes manifests in deploy/k8s/ (applied with `kubectl apply -k`) agree with each
//! other, the Dockerfile and the config in their ConfigMap: names, label selectors, ports, probe
//! paths, the config mount, the grace period and the image's user. Both shipped configs pass
//! `spikewatch check-config`; where kubectl is installed, kustomize renders the manifests.

use serde_yaml::Value;

use spikewatch::config::Config;

use crate::{deploy_config, http_addr, read, route_status, text, yaml_docs, BIN, ROOT};

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
