//! Dispatch scenario: a day of CloudMart telemetry
//! (`python3 examples/gen_cloudmart.py --day`, 2026-11-28 UTC) replayed with
//! `--dispatch` over the bundled rules, team files, silences and inhibit
//! rule. The outbox must equal `tests/golden/cloudmart-day.outbox.jsonl`
//! (regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test -p
//! integration-tests --test dispatch_scenario`, and review the diff), and
//! the assertions below spell out why: what the silence and the maintenance
//! window held back (checked against a replay without them), that notices
//! resumed when they ended, inhibition, the insufficient_data mapping, and
//! Alertmanager's timing on every incident.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use klaxon::alerts::DispatchConfig;
use klaxon::cli::replay::replay_dispatch;
use klaxon::config::{load_dispatch, load_rules};
use serde_json::Value;

type Millis = i64;
const MIN: Millis = 60_000;
const H: Millis = 60 * MIN;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The day's telemetry, generated once per test process.
fn day() -> &'static [u8] {
    static DAY: OnceLock<Vec<u8>> = OnceLock::new();
    DAY.get_or_init(|| {
        let script = root().join("examples/gen_cloudmart.py");
        let out = std::process::Command::new("python3")
            .arg(&script)
            .arg("--day")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "python3 {} --day: {e} (python3 is needed)",
                    script.display()
                )
            });
        assert!(
            out.status.success(),
            "{} --day failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    })
}

struct Run {
    changes: Vec<Value>,
    /// The teams' grouped notifications (no `tier`).
    outbox: Vec<Value>,
    /// Escalation pages and their resolved notices (with `tier`).
    pages: Vec<Value>,
    /// Both, in the order sent.
    all: Vec<Value>,
    outbox_text: String,
    summary: String,
}

/// Replays the day with the bundled dispatch files, edited by `edit`.
fn run(edit: impl FnOnce(&mut DispatchConfig)) -> Run {
    let rules_dir = root().join("rules");
    let rules = load_rules(std::slice::from_ref(&rules_dir)).expect("bundled rules compile");
    let mut config = load_dispatch(&[rules_dir]).expect("bundled dispatch files compile");
    edit(&mut config);
    let (mut changes, mut outbox) = (Vec::new(), Vec::new());
    let summary = replay_dispatch(
        rules,
        config,
        BufReader::new(day()),
        &mut changes,
        &mut outbox,
        30_000,
    )
    .unwrap();
    let parse = |b: &[u8]| -> Vec<Value> {
        std::str::from_utf8(b)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = parse(&outbox);
    let (pages, grouped): (Vec<Value>, Vec<Value>) =
        all.iter().cloned().partition(|n| n.get("tier").is_some());
    Run {
        changes: parse(&changes),
        outbox: grouped,
        pages,
        all,
        outbox_text: String::from_utf8(outbox).unwrap(),
        summary,
    }
}

fn bundled() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| run(|_| {}))
}

fn ms(v: &Value) -> Millis {
    klaxon::decode::time::parse_rfc3339(v.as_str().expect("a time")).unwrap()
}

/// `2026-11-28` + `HH:MM` → epoch ms.
fn t(hhmm: &str) -> Millis {
    ms(&Value::String(format!("2026-11-28T{hhmm}:00Z")))
}

/// `CloudMart-EC2-HighCPU/i-0b2`: the rule and its own labels.
fn name(alert: &Value) -> String {
    let labels: Vec<&str> = alert["labels"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !["alertname", "team", "severity"].contains(&k.as_str()))
        .map(|(_, v)| v.as_str().unwrap())
        .collect();
    format!("{}/{}", alert["rule"].as_str().unwrap(), labels.join(","))
}

fn names(n: &Value, list: &str) -> Vec<String> {
    n["alerts"][list]
        .as_array()
        .unwrap()
        .iter()
        .map(name)
        .collect()
}

fn in_range(n: &Value, from: Millis, to: Millis) -> bool {
    (from..to).contains(&ms(&n["at"]))
}

/// Notifications to `receiver` whose `list` (firing/resolved) names `alert`.
fn notices<'a>(r: &'a Run, receiver: &str, list: &str, alert: &str) -> Vec<&'a Value> {
    r.outbox
        .iter()
        .filter(|n| n["receiver"] == receiver && names(n, list).iter().any(|a| a == alert))
        .collect()
}

/// Period ends of state changes of `alert` into `state`.
fn changes(r: &Run, alert: &str, state: &str) -> Vec<Millis> {
    r.changes
        .iter()
        .filter(|c| c["state"] == state)
        .filter(|c| {
            let l: Vec<&str> = c["labels"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_str().unwrap())
                .collect();
            format!("{}/{}", c["rule"].as_str().unwrap(), l.join(",")) == alert
        })
        .map(|c| ms(&c["period_end"]))
        .collect()
}

fn golden(name: &str, actual: &str) {
    let path = root().join("integration-tests/tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}; run with UPDATE_GOLDEN=1", path.display()));
    if want != actual {
        let w: Vec<&str> = want.lines().collect();
        let a: Vec<&str> = actual.lines().collect();
        let first = w
            .iter()
            .zip(&a)
            .position(|(x, y)| x != y)
            .unwrap_or(w.len().min(a.len()));
        panic!(
            "{name} differs at line {}:\n  want: {}\n   got: {}\n({} lines wanted, {} got)",
            first + 1,
            w.get(first).unwrap_or(&"<end>"),
            a.get(first).unwrap_or(&"<end>"),
            w.len(),
            a.len()
        );
    }
}

#[test]
fn the_days_outbox_matches_golden() {
    let r = bundled();
    golden("cloudmart-day.outbox.jsonl", &r.outbox_text);
    assert!(r.summary.contains("klaxon dispatch:"), "{}", r.summary);
    assert!(
        r.summary.contains("held back:"),
        "the summary reports muting: {}",
        r.summary
    );
}

const B2: &str = "CloudMart-EC2-HighCPU/i-0b2";

/// The one-off silence `patch-i-0b` (13:00–15:00Z, `InstanceId=~"i-0b.*"`).
#[test]
fn the_silence_holds_back_i_0b2_and_its_notices_resume_after_it() {
    let r = bundled();
    let (from, to) = (t("13:00"), t("15:00"));
    // There was something to hold back: i-0b2 fired twice inside it.
    let fired = changes(r, B2, "alarm");
    assert_eq!(fired, vec![t("12:50"), t("13:50"), t("14:50")]);

    let firing = notices(r, "slack", "firing", B2);
    assert!(
        firing.iter().all(|n| !in_range(n, from, to)),
        "no firing notice for i-0b2 during the silence: {firing:?}"
    );
    // Without the silence, the same day pages for i-0b2 inside that range.
    let unsilenced = run(|c| c.silences.clear());
    assert!(
        notices(&unsilenced, "slack", "firing", B2)
            .iter()
            .any(|n| in_range(n, from, to)),
        "the silence is what kept them out"
    );
    // Before it: notified at the first flush (12:50:30 + group_wait).
    let at: Vec<Millis> = firing.iter().map(|n| ms(&n["at"])).collect();
    assert!((t("12:51")..t("12:52")).contains(&at[0]), "{at:?}");
    // After it: still firing at 15:00, so notified at the incident's next
    // tick, within one group_interval.
    assert_eq!(at.len(), 2, "{at:?}");
    assert!((to..to + 5 * MIN).contains(&at[1]), "{at:?}");

    // The resolution inside the silence of the alert notified at 12:51 is
    // sent (the receiver saw it fire), marked with the silence.
    let resolved = notices(r, "slack", "resolved", B2);
    let during: Vec<&&Value> = resolved.iter().filter(|n| in_range(n, from, to)).collect();
    assert_eq!(during.len(), 1, "{resolved:?}");
    assert_eq!(during[0]["kind"], "resolved");
    let alert = &during[0]["alerts"]["resolved"][0];
    assert_eq!(alert["silenced_by"], "patch-i-0b");
    assert_eq!(ms(&alert["ends_at"]), t("13:25"));
    // The 13:50 alarm fired and resolved (14:15) inside the silence: never
    // mentioned, neither firing nor resolved.
    assert!(resolved
        .iter()
        .all(|n| !(t("14:00")..t("15:00")).contains(&ms(&n["at"]))));

    // The silence is selective: i-0a1 fired at 13:50 and was notified.
    let a1 = notices(r, "slack", "firing", "CloudMart-EC2-HighCPU/i-0a1");
    assert_eq!(a1.len(), 1);
    assert!(in_range(a1[0], from, to));
    assert_eq!(names(a1[0], "firing"), vec!["CloudMart-EC2-HighCPU/i-0a1"]);
}

const REDIS: &str = "CloudMart-Redis-LowMemory/cloudmart-redis";

/// The window `redis-weekly-resharding`: Sundays 02:00–04:00 Asia/Seoul,
/// which on 2026-11-29 KST is Saturday 17:00–19:00 UTC.
#[test]
fn the_maintenance_window_holds_back_redis_and_notices_resume_after_it() {
    let r = bundled();
    let (open, close) = (t("17:00"), t("19:00"));
    assert_eq!(
        changes(r, REDIS, "alarm"),
        vec![t("10:05"), t("17:25"), t("18:45")],
        "Redis fired twice inside the window"
    );
    let redis: Vec<&Value> = r
        .outbox
        .iter()
        .filter(|n| n["group"]["alertname"] == "CloudMart-Redis-LowMemory")
        .collect();
    assert!(
        redis.iter().all(|n| !in_range(n, open, close)),
        "nothing about Redis while the window is open"
    );
    let unwindowed = run(|c| c.windows.clear());
    assert!(
        notices(&unwindowed, "slack", "firing", REDIS)
            .iter()
            .any(|n| in_range(n, open, close)),
        "the window is what kept them out"
    );
    // (time, kind) for one receiver: paged at 10:06 as usual; the 17:25
    // alarm (resolved 17:45) never; the 18:45 alarm right after the window
    // closed, then its resolution.
    let slack: Vec<(Millis, &str)> = redis
        .iter()
        .filter(|n| n["receiver"] == "slack")
        .map(|n| (ms(&n["at"]) / MIN, n["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        slack,
        vec![
            (t("10:06") / MIN, "firing"),
            (t("10:26") / MIN, "resolved"),
            (t("19:01") / MIN, "firing"),
            (t("19:26") / MIN, "resolved"),
        ]
    );
    assert!(
        ms(&redis
            .iter()
            .find(|n| in_range(n, close, close + H))
            .unwrap()["at"])
            < close + 5 * MIN
    );
}

/// `api-errors-explain-error-logs`: API-ErrorRate (critical) mutes
/// ErrorLogs of the same service while it fires.
#[test]
fn inhibition_mutes_error_logs_while_the_error_rate_fires() {
    let r = bundled();
    let rate = notices(r, "slack", "firing", "CloudMart-API-ErrorRate/api");
    let rate_resolved = notices(r, "slack", "resolved", "CloudMart-API-ErrorRate/api");
    assert_eq!((rate.len(), rate_resolved.len()), (1, 1));
    let (from, to) = (ms(&rate[0]["at"]), ms(&rate_resolved[0]["at"]));
    // Both fired at 20:05.
    assert_eq!(
        changes(r, "CloudMart-ErrorLogs/api", "alarm")[1],
        t("20:05")
    );
    let logs = notices(r, "slack", "firing", "CloudMart-ErrorLogs/api");
    assert!(
        logs.iter().all(|n| !(from..to).contains(&ms(&n["at"]))),
        "ErrorLogs held back while ErrorRate fired: {logs:?}"
    );
    // ErrorLogs outlives the error rate (a period without ERROR lines is
    // missing, so its alarm holds two more periods): it is notified once
    // the source has resolved, at that same tick.
    let after: Vec<Millis> = logs
        .iter()
        .map(|n| ms(&n["at"]))
        .filter(|a| *a >= from)
        .collect();
    assert_eq!(after, vec![to]);
    // Without the inhibit rule, it would have gone out with the error rate.
    let uninhibited = run(|c| c.inhibit_rules.clear());
    let logs = notices(&uninhibited, "slack", "firing", "CloudMart-ErrorLogs/api");
    assert!(logs.iter().any(|n| ms(&n["at"]) == from), "{logs:?}");
    // Alone (06:35, a payment gateway outage) it is not inhibited.
    assert!(notices(r, "slack", "firing", "CloudMart-ErrorLogs/api")
        .iter()
        .any(|n| in_range(n, t("06:35"), t("06:40"))));
}

/// CloudWatch's insufficient_data is not a resolution.
#[test]
fn insufficient_data_keeps_firing_alerts_firing_and_never_fires_alone() {
    let r = bundled();
    let replica = "CloudMart-RDS-HighConnections/cloudmart-db-replica";
    assert_eq!(changes(r, replica, "alarm"), vec![t("15:55")]);
    assert_eq!(changes(r, replica, "insufficient_data"), vec![t("16:25")]);
    assert!(notices(r, "slack", "resolved", replica).is_empty());
    let kinds: Vec<(Millis, &str, &str)> = notices(r, "slack", "firing", replica)
        .iter()
        .map(|n| {
            let a = n["alerts"]["firing"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| name(a) == replica)
                .unwrap();
            (
                ms(&n["at"]),
                n["kind"].as_str().unwrap(),
                a["state"].as_str().unwrap(),
            )
        })
        .collect();
    let first = kinds[0].0;
    assert!((t("15:56")..t("15:57")).contains(&first));
    assert_eq!(
        kinds,
        vec![
            (first, "firing", "alarm"),
            (first + 4 * H, "repeat", "insufficient_data"),
            (first + 8 * H, "repeat", "insufficient_data"),
            // The primary joins at 24:00 (the last period, closed at the end
            // of the input): the next tick tells both.
            (first + 8 * H + 5 * MIN, "firing", "insufficient_data"),
        ]
    );
    let last = r.outbox.last().unwrap();
    assert_eq!(
        names(last, "firing"),
        vec![replica, "CloudMart-RDS-HighConnections/cloudmart-db"]
    );
    assert!(ms(&last["at"]) > t("23:59"), "after the last event");

    // i-0d4 stopped reporting at 01:00 without ever firing: no alert.
    assert_eq!(
        changes(r, "CloudMart-EC2-HighCPU/i-0d4", "insufficient_data"),
        vec![t("01:20")]
    );
    assert!(r.outbox_text.lines().all(|l| !l.contains("i-0d4")));
}

/// Properties every incident of the day must have.
#[test]
fn every_incident_keeps_alertmanagers_timing_and_dedup() {
    let r = bundled();
    let mut ids: Vec<&str> = r.all.iter().map(|n| n["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), r.all.len(), "notification ids are unique");

    let mut by: std::collections::BTreeMap<(String, String), Vec<&Value>> = Default::default();
    for n in &r.outbox {
        let key = (
            n["receiver"].as_str().unwrap().to_string(),
            n["incident"].as_str().unwrap().to_string(),
        );
        by.entry(key).or_default().push(n);
    }
    for ((receiver, incident), ns) in &by {
        // The incident id ends with when it opened; every notice is on its
        // grid: opened + group_wait (30 s) + k × group_interval (5 min).
        let opened: Millis = incident.rsplit('-').next().unwrap().parse().unwrap();
        for n in ns {
            let since = ms(&n["at"]) - opened - 30_000;
            assert!(
                since >= 0 && since % (5 * MIN) == 0,
                "{receiver} {incident}: {} is off the grid",
                n["at"]
            );
        }
        // The same firing/resolved set never twice within repeat_interval.
        for w in ns.windows(2) {
            let set = |n: &Value| (names(n, "firing"), names(n, "resolved"));
            if set(w[0]) == set(w[1]) {
                assert!(
                    ms(&w[1]["at"]) - ms(&w[0]["at"]) >= 4 * H,
                    "{receiver} {incident}: same set sent twice: {} and {}",
                    w[0]["at"],
                    w[1]["at"]
                );
                assert_eq!(w[1]["kind"], "repeat");
            }
        }
        // An incident's first notice is a firing one.
        assert_eq!(ns[0]["kind"], "firing", "{receiver} {incident}");
    }
    // Every receiver of a team hears the same story.
    let story = |team: &str, receiver: &str| -> Vec<(Millis, String)> {
        r.outbox
            .iter()
            .filter(|n| n["team"] == team && n["receiver"] == receiver)
            .map(|n| (ms(&n["at"]), n["kind"].to_string()))
            .collect()
    };
    assert!(!story("platform", "email").is_empty());
    assert_eq!(story("platform", "email"), story("platform", "slack"));
    assert_eq!(story("backend", "pagerduty"), story("backend", "slack"));
}

/// Escalation in the day (rules/teams/platform.yaml and backend.yaml): who
/// was paged, when, through what, and who was told it resolved.
#[test]
fn escalation_pages_the_on_call_person_tier_by_tier() {
    let r = bundled();
    assert!(!r.pages.is_empty());
    assert!(
        r.pages.iter().all(|n| n["team"] != "data"),
        "the data team has no escalation: nothing but grouped notices"
    );
    assert!(r.summary.contains("slack (escalation):"), "{}", r.summary);
    // Each page goes out its tier's `after` from the incident's first
    // grouped notice (its start), to the on-call person's contact.
    let after = |team: &str, tier: u64| -> Millis {
        match (team, tier) {
            ("platform", 0) => 0,
            ("platform", 1) => 10 * MIN,
            ("platform", 2) => 30 * MIN,
            ("backend", 0) => 5 * MIN,
            ("backend", 1) => 15 * MIN,
            other => panic!("no such tier {other:?}"),
        }
    };
    for p in r.pages.iter().filter(|n| n["kind"] == "firing") {
        let start = r
            .outbox
            .iter()
            .filter(|n| n["incident"] == p["incident"] && n["kind"] == "firing")
            .map(|n| ms(&n["at"]))
            .next()
            .expect("a paged incident was notified");
        let team = p["team"].as_str().unwrap();
        let tier = p["tier"].as_u64().unwrap();
        assert_eq!(ms(&p["at"]) - start, after(team, tier), "{p}");
        assert_eq!(
            p["cycle"], 0,
            "every incident resolved within the first pass"
        );
        let person = p["person"].as_str().unwrap();
        let contact = p["target"].as_str().unwrap();
        match p["receiver"].as_str().unwrap() {
            // The made-up member IDs of rules/teams/*.yaml.
            "slack" => {
                let id = match person {
                    "kim" => "U0CMKIM01",
                    "lee" => "U0CMLEE01",
                    "park" => "U0CMPARK1",
                    "choi" => "U0CMCHOI1",
                    "jung" => "U0CMJUNG1",
                    other => panic!("unexpected person {other}"),
                };
                assert_eq!(contact, id)
            }
            "email" => assert_eq!(contact, format!("{person}@cloudmart.example")),
            "sms" => assert!(contact.starts_with("+8210")),
            other => panic!("unexpected receiver {other}"),
        }
    }
    // Platform's rotation: park's override (00:00–12:00 UTC), then kim's
    // week. Backend's daily rotation hands over at 10:00 Berlin (09:00 UTC).
    let who: Vec<(String, &str)> = r
        .pages
        .iter()
        .filter(|n| n["kind"] == "firing" && n["tier"] == 0)
        .map(|n| {
            (
                n["at"].as_str().unwrap()[11..16].to_string(),
                n["person"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        who,
        vec![
            ("02:04".to_string(), "park"),
            ("06:41".into(), "choi"),
            ("10:06".into(), "park"),
            ("12:51".into(), "kim"),
            ("13:51".into(), "kim"),
            ("15:01".into(), "kim"),
            ("19:01".into(), "kim"),
            ("20:11".into(), "jung"),
            ("20:26".into(), "jung"),
        ]
    );
    // The i-0b2 incident of 12:51 fell into the silence at 13:00: its email
    // (13:01) and SMS (13:21) steps were skipped, muted.
    let b2 = &who[3];
    let b2_incident = r
        .pages
        .iter()
        .find(|n| n["at"].as_str().unwrap()[11..16] == b2.0)
        .unwrap()["incident"]
        .clone();
    let tiers: Vec<(u64, &str)> = r
        .pages
        .iter()
        .filter(|n| n["incident"] == b2_incident)
        .map(|n| (n["tier"].as_u64().unwrap(), n["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(tiers, vec![(0, "firing"), (0, "resolved")]);
    // Only the 15:01 incident lasted 30 minutes: one text, and no
    // "resolved" text (send_resolved: false on that tier).
    let sms: Vec<&Value> = r.pages.iter().filter(|n| n["receiver"] == "sms").collect();
    assert_eq!(sms.len(), 1);
    assert_eq!(
        (sms[0]["kind"].as_str(), ms(&sms[0]["at"])),
        (Some("firing"), t("15:31") + 189)
    );
    // Every incident that paged told the paged slack/email targets it
    // resolved, once each, when the incident ended.
    for p in r
        .pages
        .iter()
        .filter(|n| n["kind"] == "firing" && n["receiver"] != "sms")
    {
        let resolved: Vec<&Value> = r
            .pages
            .iter()
            .filter(|n| {
                n["kind"] == "resolved"
                    && n["incident"] == p["incident"]
                    && n["receiver"] == p["receiver"]
                    && n["target"] == p["target"]
            })
            .collect();
        assert_eq!(resolved.len(), 1, "{p}");
    }
}

/// `klaxon check` and `replay` load teams through `load_dispatch`: a bad
/// escalation in a copy of the bundled rules is an error at file:line:col.
#[test]
fn a_bad_escalation_is_rejected_with_its_position() {
    let dir = std::env::temp_dir().join(format!("klaxon-esc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("teams")).unwrap();
    let text = std::fs::read_to_string(root().join("rules/teams/platform.yaml")).unwrap();
    let bad = text.replace("after: 10m", "after: 0s");
    assert_ne!(bad, text);
    std::fs::write(dir.join("teams/platform.yaml"), &bad).unwrap();
    let errs = load_dispatch(std::slice::from_ref(&dir)).unwrap_err();
    let line = bad
        .lines()
        .position(|l| l.contains("after: 0s") && !l.contains("at once"))
        .unwrap()
        + 1;
    let want = format!("{}:{line}:", dir.join("teams/platform.yaml").display());
    assert!(errs[0].to_string().starts_with(&want), "{}", errs[0]);
    assert!(
        errs[0].to_string().contains("later than the tier before"),
        "{}",
        errs[0]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Escalation only adds pages: without any policy the day's outbox is
/// exactly the grouped notices of the bundled run (so a team without
/// `escalation:` behaves as before escalation existed).
#[test]
fn escalation_adds_pages_and_changes_nothing_else() {
    let without = run(|c| {
        for t in c.teams.values_mut() {
            t.escalation = None;
        }
    });
    assert!(without.pages.is_empty());
    assert_eq!(without.all, bundled().outbox);
}
