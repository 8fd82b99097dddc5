//! Helpers for the tests of dispatch inside `klaxon run`: state changes
//! written straight to the alerts topic (the dispatch stage's input), a
//! team that notifies fast, and the members' JSON-lines outbox.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use klaxon::alerts::DispatchConfig;
use klaxon::model::{AlarmState, Ordered, StateChange};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use crate::unique;

/// A rules folder with one team, `ops`: one incident per alert, first
/// notice 2 s after an alert fires, changes every 1 s, resolved notices
/// on, and one receiver, `audit` (the outbox file).
pub fn fast_team_rules() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("klaxon-rules"));
    std::fs::create_dir_all(dir.join("teams")).unwrap();
    std::fs::write(
        dir.join("teams/ops.yaml"),
        "team: ops\ngrouping:\n  group_by: [\"...\"]\n  group_wait: 2s\n  group_interval: 1s\n  \
         repeat_interval: 1h\n  send_resolved: true\nreceivers:\n  - name: audit\n",
    )
    .unwrap();
    dir
}

/// [`fast_team_rules`] plus an escalation policy: tier 0 pages target
/// `tier0` at the incident's first notice, tier 1 pages `tier1` 6 s later.
pub fn escalating_team_rules() -> PathBuf {
    let dir = fast_team_rules();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("teams/ops.yaml"))
        .unwrap();
    f.write_all(
        b"escalation:\n  tiers:\n    - after: 0s\n      notify:\n        - { receiver: audit, target: tier0 }\n    \
          - after: 6s\n      notify:\n        - { receiver: audit, target: tier1 }\n",
    )
    .unwrap();
    dir
}

/// A fresh outbox path (members of one test share it).
pub fn outbox_path() -> PathBuf {
    std::env::temp_dir().join(format!("{}.jsonl", unique("outbox")))
}

/// Adds `dispatch.outbox` to a config written by [`crate::write_config`]
/// (whose last section is `dispatch:`).
pub fn set_outbox(config: &Path, outbox: &Path) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(config)
        .unwrap();
    writeln!(f, "  outbox: {}", outbox.display()).unwrap();
}

/// A state change of alert `n` of team `ops` (fingerprint `alert-n`).
pub fn change(n: usize, state: AlarmState, period_end: i64) -> StateChange {
    let previous = match state {
        AlarmState::Alarm => AlarmState::Ok,
        _ => AlarmState::Alarm,
    };
    StateChange {
        id: format!("alert-{n}-{period_end}-{}", state.as_str()),
        fingerprint: format!("alert-{n}"),
        rule: "Test-Rule".into(),
        team: "ops".into(),
        labels: Ordered(vec![("host".into(), format!("h{n}"))]),
        state,
        previous,
        period_end,
        values: Ordered(vec![("cpu".into(), 90.0)]),
        severity: "warning".into(),
        summary: format!("h{n} is hot"),
        runbook: None,
    }
}

/// Writes changes to the alerts topic, keyed by incident as `klaxon run`
/// keys them, one record per produce request (tansu 0.6 cannot resume a
/// consumer inside a multi-record batch).
pub fn publish(brokers: &str, topic: &str, changes: &[StateChange], rules: &Path) {
    let dispatch: DispatchConfig =
        klaxon::config::dispatch::load_dispatch(&[rules.to_path_buf()]).expect("team files");
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .create()
        .unwrap();
    for c in changes {
        let key = klaxon::kafka::group_key(c, &dispatch);
        let body = serde_json::to_vec(c).unwrap();
        p.send(BaseRecord::to(topic).key(&key).payload(&body))
            .map_err(|(e, _)| e)
            .unwrap();
        p.flush(Duration::from_secs(10)).unwrap();
    }
}

/// One line of an outbox: who was told what about which alerts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sent {
    pub id: String,
    pub kind: String,
    pub target: Option<String>,
    pub tier: Option<u64>,
    pub incident: String,
    pub firing: Vec<String>,
    pub resolved: Vec<String>,
}

/// Every notification in an outbox, in file order.
pub fn outbox(path: &Path) -> Vec<Sent> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let fps = |v: &serde_json::Value, list: &str| -> Vec<String> {
        v["alerts"][list]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x["fingerprint"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("outbox line is JSON");
            Sent {
                id: v["id"].as_str().unwrap_or("").to_string(),
                kind: v["kind"].as_str().unwrap_or("").to_string(),
                target: v["target"].as_str().map(String::from),
                tier: v["tier"].as_u64(),
                incident: v["incident"].as_str().unwrap_or("").to_string(),
                firing: fps(&v, "firing"),
                resolved: fps(&v, "resolved"),
            }
        })
        .collect()
}

/// How many times each (kind, fingerprint) was notified (group notices;
/// escalation pages are left out).
pub fn tally(sent: &[Sent]) -> BTreeMap<(String, String), usize> {
    let mut t = BTreeMap::new();
    for s in sent.iter().filter(|s| s.tier.is_none()) {
        for fp in &s.firing {
            *t.entry((s.kind.clone(), fp.clone())).or_insert(0) += 1;
        }
        for fp in &s.resolved {
            *t.entry(("resolved".to_string(), fp.clone())).or_insert(0) += 1;
        }
    }
    t
}

/// The tally a correct run gives: each of `fired` notified firing once and
/// each of `resolved` notified resolved once.
pub fn exactly_once(fired: &[usize], resolved: &[usize]) -> BTreeMap<(String, String), usize> {
    let mut t = BTreeMap::new();
    for n in fired {
        t.insert(("firing".to_string(), format!("alert-{n}")), 1);
    }
    for n in resolved {
        t.insert(("resolved".to_string(), format!("alert-{n}")), 1);
    }
    t
}
