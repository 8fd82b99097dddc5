//! The configs that deploy/ ships load with klaxon's own loader: the
//! example `deploy/klaxon.yaml`, and the one embedded in the Kubernetes
//! ConfigMap (with its Secret-mounted password read from a file).

use std::collections::BTreeMap;
use std::path::Path;

use integration_tests::{unique, workspace};
use klaxon::config::run::load;
use klaxon::config::yaml;

#[test]
fn the_example_config_loads() {
    let c = load(&workspace().join("deploy/klaxon.yaml"), &BTreeMap::new()).unwrap();
    assert_eq!(c.kafka.alerts_topic, "klaxon.alerts");
    assert_eq!(c.kafka.dlq_topic, "klaxon.dlq");
    assert!(c.rules.iter().all(|r| r.exists()), "{:?}", c.rules);
}

#[test]
fn the_kubernetes_configmap_config_loads_with_its_secret() {
    let text = std::fs::read_to_string(workspace().join("deploy/kubernetes/configmap-config.yaml"))
        .unwrap();
    let doc = yaml::parse(&text).unwrap();
    let embedded = doc
        .get("data")
        .and_then(|d| d.get("klaxon.yaml"))
        .and_then(|n| n.as_str())
        .expect("data.klaxon.yaml in the ConfigMap")
        .to_string();

    // The Secret is mounted at /etc/klaxon/secrets in the pod; here, a temp folder.
    let dir = std::env::temp_dir().join(unique("klaxon-k8s"));
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/kafka-password"), "s3cret\n").unwrap();
    let config = embedded.replace(
        "/etc/klaxon/secrets/",
        &format!("{}/secrets/", dir.display()),
    );
    assert_ne!(
        config, embedded,
        "the ConfigMap reads the password from the mounted Secret"
    );
    let path = dir.join("klaxon.yaml");
    std::fs::write(&path, config).unwrap();

    let c = load(&path, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.kafka.properties["sasl.password"].expose(), "s3cret");
    assert!(
        !format!("{c:?}").contains("s3cret"),
        "the secret never shows in Debug"
    );
    assert_eq!(c.rules, vec![Path::new("/etc/klaxon/rules").to_path_buf()]);
    assert_eq!(c.http_listen.port(), 9464);
    assert_eq!(c.http_listen.ip().to_string(), "0.0.0.0");
}

/// The commented `receivers:` and `http:` examples, uncommented, load and
/// cover everything the bundled team files page.
#[test]
fn the_commented_receivers_example_serves_the_bundled_teams() {
    let text = std::fs::read_to_string(workspace().join("deploy/klaxon.yaml")).unwrap();
    let mut on = false;
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("# receivers:") {
            on = true;
        }
        if line.starts_with("#   # ") {
            continue;
        }
        let uncommented = if on {
            line.strip_prefix("# ").unwrap_or(line)
        } else {
            line.strip_prefix("  # token:")
                .map(|_| "  token: { env: KLAXON_HTTP_TOKEN }")
                .unwrap_or(line)
        };
        out.push_str(uncommented);
        out.push('\n');
    }
    assert!(on, "deploy/klaxon.yaml has a commented receivers example");
    let dir = std::env::temp_dir().join(unique("klaxon-deploy"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("smtp"), "pw\n").unwrap();
    let out = out
        .replace("/run/secrets/smtp", &dir.join("smtp").display().to_string())
        .replace(
            "rules: ../rules",
            &format!("rules: {}", workspace().join("rules").display()),
        )
        .replace(
            "- ../rules",
            &format!("- {}", workspace().join("rules").display()),
        );
    let path = dir.join("klaxon.yaml");
    std::fs::write(&path, &out).unwrap();
    let env: BTreeMap<String, String> = [
        "SLACK_BOT_TOKEN",
        "TWILIO_AUTH_TOKEN",
        "PAGERDUTY_WEBHOOK_URL",
        "KLAXON_WEBHOOK_SECRET",
        "KLAXON_HTTP_TOKEN",
    ]
    .iter()
    .map(|k| {
        let v = if k.ends_with("URL") {
            "https://events.pagerduty.example/x".to_string()
        } else {
            format!("secret-{k}")
        };
        (k.to_string(), v)
    })
    .collect();
    let c = load(&path, &env).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let names: Vec<&str> = c.receivers.receivers.keys().map(String::as_str).collect();
    assert_eq!(names, ["email", "pagerduty", "slack", "sms"]);
    assert!(c.api_token.is_some(), "http.token uncommented");
    let rules: Vec<std::path::PathBuf> = vec![workspace().join("rules")];
    let teams = klaxon::config::dispatch::load_dispatch(&rules)
        .unwrap()
        .teams;
    assert_eq!(c.receivers.check_teams(&teams), Vec::<String>::new());
}

/// The rules ConfigMap, mounted as one flat folder, loads to the same
/// rules, teams, silences, inhibit rules and routes as `rules/`.
#[test]
fn the_kubernetes_rules_configmap_is_the_whole_rules_folder() {
    let text = std::fs::read_to_string(workspace().join("deploy/kubernetes/configmap-rules.yaml"))
        .unwrap();
    let doc = yaml::parse(&text).unwrap();
    let data = doc.get("data").and_then(|d| d.as_map()).expect("data");
    let dir = std::env::temp_dir().join(unique("klaxon-k8s-rules"));
    std::fs::create_dir_all(&dir).unwrap();
    for (k, v) in data {
        std::fs::write(dir.join(k.as_str().unwrap()), v.as_str().unwrap()).unwrap();
    }
    let here = [workspace().join("rules")];
    let mounted = [dir];
    let rules = |p: &[std::path::PathBuf]| {
        let mut names: Vec<String> = klaxon::config::load_rules(p)
            .unwrap()
            .rules
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        names
    };
    assert_eq!(rules(&mounted), rules(&here));
    let (a, b) = (
        klaxon::config::dispatch::load_dispatch(&mounted).unwrap(),
        klaxon::config::dispatch::load_dispatch(&here).unwrap(),
    );
    assert_eq!(a.teams, b.teams);
    assert_eq!(a.inhibit_rules.len(), b.inhibit_rules.len());
    assert_eq!(a.routes.len(), b.routes.len());
    assert_eq!(a.silences.len(), b.silences.len());
    assert_eq!(a.windows.len(), b.windows.len());
    assert!(!a.teams.is_empty() && !a.routes.is_empty());
}
