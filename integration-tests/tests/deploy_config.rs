//! The configs that deploy/ ships load with klaxon's own loader: the
//! example `deploy/klaxon.yaml`, and the one embedded in the Kubernetes
//! ConfigMap (with its Secret-mounted password read from a file).

use std::collections::BTreeMap;
use std::path::Path;

use integration_tests::{klaxon_bin, unique, workspace};
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

/// deploy/klaxon.yaml with its `receivers:` and `http.token` examples
/// uncommented and the rules path made absolute, written to a fresh folder.
/// `smtp_file`: where the SMTP password file is said to be.
fn uncommented_example(smtp_file: Option<&str>) -> (std::path::PathBuf, String) {
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
    let mut out = out
        .replace(
            "rules: ../rules",
            &format!("rules: {}", workspace().join("rules").display()),
        )
        .replace(
            "- ../rules",
            &format!("- {}", workspace().join("rules").display()),
        );
    if let Some(f) = smtp_file {
        out = out.replace("/run/secrets/smtp", f);
    }
    let path = dir.join("klaxon.yaml");
    std::fs::write(&path, &out).unwrap();
    (path, out)
}

/// The commented `receivers:` and `http:` examples, uncommented, load and
/// cover everything the bundled team files page.
#[test]
fn the_commented_receivers_example_serves_the_bundled_teams() {
    let dir = std::env::temp_dir().join(unique("klaxon-smtp"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("smtp"), "pw\n").unwrap();
    let (path, out) = uncommented_example(Some(&dir.join("smtp").display().to_string()));
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

/// `klaxon check --config` checks the config and what the team files page
/// against its receivers, without the secrets (none is set here, and the
/// SMTP password file does not exist); a tier that names a receiver the
/// config lacks fails with the team, the tier and a suggestion.
#[test]
fn check_with_config_checks_receivers_without_reading_secrets() {
    let (config, _) = uncommented_example(None);
    let check = |rules: &std::path::Path| {
        let out = std::process::Command::new(klaxon_bin())
            .arg("check")
            .arg(rules)
            .arg("--config")
            .arg(&config)
            .env_remove("SLACK_BOT_TOKEN")
            .env_remove("TWILIO_AUTH_TOKEN")
            .env_remove("PAGERDUTY_WEBHOOK_URL")
            .env_remove("KLAXON_WEBHOOK_SECRET")
            .env_remove("KLAXON_HTTP_TOKEN")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, stdout, stderr) = check(&workspace().join("rules"));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("4 receivers; every receiver"), "{stdout}");

    // The same rules, with the platform team's SMS receiver misspelt.
    let rules = std::env::temp_dir().join(unique("klaxon-rules"));
    copy_tree(&workspace().join("rules"), &rules);
    let team = rules.join("teams/platform.yaml");
    let text = std::fs::read_to_string(&team).unwrap();
    assert!(text.contains("{ receiver: sms, oncall: primary }"));
    // Consistent within the team file (contacts and tier agree), so only
    // the config can tell.
    std::fs::write(
        &team,
        text.replace(
            "{ receiver: sms, oncall: primary }",
            "{ receiver: smss, oncall: primary }",
        )
        .replace(" sms: \"+82", " smss: \"+82"),
    )
    .unwrap();
    let (code, stdout, stderr) = check(&rules);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("team `platform`: escalation tier 2")
            && stderr.contains("no receiver `smss` in klaxon.yaml; did you mean `sms`?")
            && stderr.contains("3 error(s)"),
        "{stderr}"
    );
    // Without --config the typo is not checkable, and check passes.
    let out = std::process::Command::new(klaxon_bin())
        .arg("check")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(out.status.success());

    // A Slack contact written as @name, which Slack no longer delivers.
    std::fs::write(&team, text.replace("slack: U0CMKIM01", "slack: \"@kim\"")).unwrap();
    let (code, stdout, stderr) = check(&rules);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("team `platform`: escalation tier 0 (`kim` on call in `primary`)")
            && stderr.contains("member ID"),
        "{stderr}"
    );
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}
