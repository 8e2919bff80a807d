//! Monitoring as shipped: every metric the alert rules (deploy/alerts.yml) and the Grafana
//! dashboard (deploy/grafana/spikewatch.json) use is one `spikewatch run` serves on /metrics,
//! every alerted metric is on the dashboard, every alert and every served family is in the
//! README; promtool, where installed, checks the rules, their unit tests, the dashboard's
//! queries and the /metrics text.

use serde_yaml::Value;

use crate::{read, yaml_docs, ROOT};

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
