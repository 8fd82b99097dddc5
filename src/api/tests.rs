//! The dispatch API through its router (`tower::ServiceExt::oneshot`), on
//! state made by a real [`Dispatcher`]: a team, a silence from a file, an
//! inhibit rule and a flush.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::memory::MemoryBackend;
use super::routes::{OPENAPI, ROUTES};
use super::*;
use crate::alerts::inhibit::InhibitRule;
use crate::alerts::matcher::Matcher;
use crate::alerts::silence::Silence;
use crate::alerts::tests::{at, change};
use crate::alerts::{DispatchConfig, Dispatcher, Grouping, Receiver, Team};
use crate::config::run::Secret;
use crate::model::{AlarmState, Millis};

pub(crate) const TOKEN: &str = "tok-9f8e7d6c5b4a";

fn matchers(ms: &[&str]) -> Vec<Matcher> {
    ms.iter().map(|m| Matcher::parse(m).unwrap()).collect()
}

/// 13:00: HighCPU fires on i-0a1 (firing), i-0b2 (silenced by the file
/// silence `maint-b`) and i-1c3 (inhibited: InstanceDown fires there too);
/// DiskFull fires on i-0d4. The flush at 13:00:30 sends three firing
/// notices; DiskFull resolves at 13:01. The API's clock reads 13:01:01.
pub(crate) fn fixture() -> (Arc<MemoryBackend>, Millis) {
    let t0 = at("2026-11-28T13:00:00Z");
    let mut config = DispatchConfig::default();
    config.teams.insert(
        "platform".into(),
        Team {
            name: "platform".into(),
            grouping: Grouping::default(),
            receivers: vec![Receiver {
                name: "slack".into(),
                target: Some("#ops".into()),
            }],
            ..Team::default_for("platform")
        },
    );
    config.silences.push(Silence {
        id: "maint-b".into(),
        matchers: matchers(&[r#"InstanceId="i-0b2""#]),
        starts_at: t0 - 60_000,
        ends_at: t0 + 2 * 3_600_000,
        created_by: "kim".into(),
        comment: "patching b".into(),
    });
    config.inhibit_rules.push(InhibitRule {
        name: "down-mutes-warnings".into(),
        source_matchers: matchers(&[r#"alertname="InstanceDown""#]),
        target_matchers: matchers(&[r#"severity="warning""#]),
        equal: vec!["InstanceId".into()],
    });
    let mut d = Dispatcher::new(config);
    let mut down = change(
        "InstanceDown",
        &[("InstanceId", "i-1c3")],
        AlarmState::Alarm,
        t0,
    );
    down.severity = "critical".into();
    for c in [
        change("HighCPU", &[("InstanceId", "i-0a1")], AlarmState::Alarm, t0),
        change("HighCPU", &[("InstanceId", "i-0b2")], AlarmState::Alarm, t0),
        change("HighCPU", &[("InstanceId", "i-1c3")], AlarmState::Alarm, t0),
        down,
        change(
            "DiskFull",
            &[("InstanceId", "i-0d4")],
            AlarmState::Alarm,
            t0,
        ),
    ] {
        d.ingest(&c, t0);
    }
    let mut sent = Vec::new();
    d.tick(t0 + 30_000, &mut sent);
    d.ingest(
        &change(
            "DiskFull",
            &[("InstanceId", "i-0d4")],
            AlarmState::Ok,
            t0 + 60_000,
        ),
        t0 + 60_000,
    );
    let now = t0 + 61_000;
    let backend = Arc::new(MemoryBackend::new(Arc::new(move || now)));
    for i in d.snapshot().incidents {
        backend.add_incident(i);
    }
    for s in d.silences().silences() {
        backend.add_silence(s.clone());
    }
    assert_eq!(sent.len(), 3, "the fixture's flush: {sent:?}");
    sent.sort_by(|a, b| a.group.0.cmp(&b.group.0));
    for n in sent {
        backend.add_notification(n);
    }
    (backend, now)
}

fn app(backend: &Arc<MemoryBackend>, now: Millis, token: Option<&str>) -> Router {
    router_with_clock(
        backend.clone(),
        token.map(Secret::new),
        Arc::new(move || now),
    )
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    /// The `kind` and `message` of an error reply.
    fn error(&self) -> (String, String) {
        let v = self.json();
        (
            v["error"]["kind"].as_str().unwrap().to_string(),
            v["error"]["message"].as_str().unwrap().to_string(),
        )
    }
}

async fn call(app: &Router, method: &str, uri: &str, token: Option<&str>, body: &str) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if !body.is_empty() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(app: &Router, uri: &str) -> Value {
    let r = call(app, "GET", uri, None, "").await;
    assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text);
    r.json()
}

/// (alertname, InstanceId, api_state) of each alert in a reply.
fn rows(v: &Value) -> Vec<(String, String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap().to_string(),
                a["labels"]["InstanceId"].as_str().unwrap().to_string(),
                a["api_state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn set(items: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    items
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

#[tokio::test]
async fn alerts_carry_their_api_state_and_incident() {
    let (backend, now) = fixture();
    let app = app(&backend, now, None);
    let v = get(&app, "/api/v1/alerts").await;
    assert_eq!(
        rows(&v).into_iter().collect::<BTreeSet<_>>(),
        set(&[
            ("HighCPU", "i-0a1", "firing"),
            ("HighCPU", "i-0b2", "silenced"),
            ("HighCPU", "i-1c3", "inhibited"),
            ("InstanceDown", "i-1c3", "firing"),
            ("DiskFull", "i-0d4", "resolved"),
        ])
    );
    let incidents = get(&app, "/api/v1/incidents").await;
    let incidents = incidents.as_array().unwrap();
    assert_eq!(incidents.len(), 3);
    for a in v.as_array().unwrap() {
        let inc = incidents
            .iter()
            .find(|i| i["id"] == a["incident"])
            .unwrap_or_else(|| panic!("no incident for {a}"));
        assert_eq!(inc["group"]["alertname"], a["labels"]["alertname"]);
        assert!(inc["alerts"][a["fingerprint"].as_str().unwrap()].is_object());
    }
    let silenced = v
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["api_state"] == "silenced")
        .unwrap();
    assert_eq!(silenced["silenced_by"], "maint-b");
    assert_eq!(silenced["status"], "firing");
}

/// (query, the alerts it selects as (alertname, InstanceId, api_state))
type FilterCase = (
    &'static str,
    &'static [(&'static str, &'static str, &'static str)],
);

#[tokio::test]
async fn alert_filters_by_matchers_and_state() {
    let (backend, now) = fixture();
    let app = app(&backend, now, None);
    let cases: &[FilterCase] = &[
        (
            // filter=InstanceId=~"i-0.*"
            "filter=InstanceId%3D~%22i-0.*%22",
            &[
                ("HighCPU", "i-0a1", "firing"),
                ("HighCPU", "i-0b2", "silenced"),
                ("DiskFull", "i-0d4", "resolved"),
            ],
        ),
        (
            "filter=InstanceId%3D~%22i-0.*%22&filter=alertname%3DHighCPU",
            &[
                ("HighCPU", "i-0a1", "firing"),
                ("HighCPU", "i-0b2", "silenced"),
            ],
        ),
        (
            "filter=severity%3D%22critical%22",
            &[("InstanceDown", "i-1c3", "firing")],
        ),
        (
            "state=firing",
            &[
                ("HighCPU", "i-0a1", "firing"),
                ("InstanceDown", "i-1c3", "firing"),
            ],
        ),
        ("state=silenced", &[("HighCPU", "i-0b2", "silenced")]),
        ("state=inhibited", &[("HighCPU", "i-1c3", "inhibited")]),
        ("state=resolved", &[("DiskFull", "i-0d4", "resolved")]),
        (
            "state=silenced&state=inhibited",
            &[
                ("HighCPU", "i-0b2", "silenced"),
                ("HighCPU", "i-1c3", "inhibited"),
            ],
        ),
        (
            "state=firing&filter=alertname%3DHighCPU",
            &[("HighCPU", "i-0a1", "firing")],
        ),
        ("filter=InstanceId%3Dnone", &[]),
    ];
    for (q, want) in cases {
        let v = get(&app, &format!("/api/v1/alerts?{q}")).await;
        assert_eq!(
            rows(&v).into_iter().collect::<BTreeSet<_>>(),
            set(want),
            "{q}"
        );
    }
}

#[tokio::test]
async fn bad_queries_are_json_errors() {
    let (backend, now) = fixture();
    let app = app(&backend, now, None);
    for (uri, words) in [
        ("/api/v1/alerts?filter=InstanceId~x", "expected one of"),
        ("/api/v1/alerts?state=pending", "unknown state"),
        (
            "/api/v1/alerts?filters=a%3Db",
            "unknown query parameter `filters`",
        ),
        ("/api/v1/silences?state=gone", "unknown silence state"),
        ("/api/v1/notifications?limit=0", "`limit`"),
    ] {
        let r = call(&app, "GET", uri, None, "").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
        let (kind, message) = r.error();
        assert_eq!(kind, "bad_request");
        assert!(message.contains(words), "{uri}: {message}");
    }
}

#[tokio::test]
async fn notifications_newest_first_up_to_the_limit() {
    let (backend, now) = fixture();
    let app = app(&backend, now, None);
    let all = get(&app, "/api/v1/notifications").await;
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 3);
    assert!(all
        .iter()
        .all(|n| n["kind"] == "firing" && n["receiver"] == "slack" && n["target"] == "#ops"));
    let one = get(&app, "/api/v1/notifications?limit=1").await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["id"], all[0]["id"], "the newest");
    let firing: Vec<&str> = all
        .iter()
        .flat_map(|n| n["alerts"]["firing"].as_array().unwrap())
        .map(|a| a["labels"]["InstanceId"].as_str().unwrap())
        .collect();
    // Neither the silenced nor the inhibited alert was sent.
    assert_eq!(
        firing.into_iter().collect::<BTreeSet<_>>(),
        ["i-0a1", "i-0d4", "i-1c3"].into_iter().collect()
    );
}

const NEW: &str = r#"{"matchers": ["InstanceId=~\"i-0.*\"", "severity=warning"],
    "duration": "2h", "created_by": "kim", "comment": "patching"}"#;

#[tokio::test]
async fn silences_are_created_listed_and_expired() {
    let (backend, now) = fixture();
    let app = app(&backend, now, Some(TOKEN));
    let r = call(&app, "POST", "/api/v1/silences", Some(TOKEN), NEW).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let s = r.json();
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 16);
    assert_eq!(
        r.headers[header::LOCATION],
        format!("/api/v1/silences/{id}").as_str()
    );
    assert_eq!(
        s,
        json!({
            "id": id,
            "matchers": ["InstanceId=~\"i-0.*\"", "severity=\"warning\""],
            "starts_at": "2026-11-28T13:01:01Z",
            "ends_at": "2026-11-28T15:01:01Z",
            "created_by": "kim",
            "comment": "patching",
            "state": "active",
        })
    );
    assert!(backend.silences().iter().any(|x| x.id == id));

    let list = get(&app, "/api/v1/silences").await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    // Active ones, soonest end first: the file silence ends at 15:00.
    assert_eq!(ids, ["maint-b", id.as_str()]);

    let r = call(
        &app,
        "DELETE",
        &format!("/api/v1/silences/{id}"),
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["state"], "expired");
    assert_eq!(r.json()["ends_at"], "2026-11-28T13:01:01Z");
    let active = get(&app, "/api/v1/silences?state=active").await;
    assert_eq!(active.as_array().unwrap().len(), 1);
    let expired = get(&app, "/api/v1/silences?state=expired").await;
    assert_eq!(expired[0]["id"], id.as_str());

    for (uri, status, kind) in [
        (format!("/api/v1/silences/{id}"), 409, "conflict"),
        ("/api/v1/silences/nope".to_string(), 404, "not_found"),
    ] {
        let r = call(&app, "DELETE", &uri, Some(TOKEN), "").await;
        assert_eq!(r.status.as_u16(), status, "{uri}: {}", r.text);
        assert_eq!(r.error().0, kind);
    }
}

/// (body, words of the 400's message)
#[tokio::test]
async fn invalid_silences_are_400_with_the_reason() {
    let (backend, now) = fixture();
    let app = app(&backend, now, Some(TOKEN));
    for (body, words) in [
        ("", "the body is not a silence"),
        ("{", "the body is not a silence"),
        (
            r#"{"matchers":["a=b"],"duration":"1h","created_by":"k","comment":"c","color":"red"}"#,
            "unknown field `color`",
        ),
        (
            r#"{"matchers":[],"duration":"1h","created_by":"k","comment":"c"}"#,
            "at least one matcher",
        ),
        (
            r#"{"matchers":["InstanceId=~\".*\""],"duration":"1h","created_by":"k","comment":"c"}"#,
            "would mute every alert",
        ),
        (
            r#"{"matchers":["a=b"],"ends_at":"2026-11-28T12:00:00Z","created_by":"k","comment":"c"}"#,
            "in the past",
        ),
        (
            r#"{"matchers":["a=b"],"starts_at":"2026-11-28T18:00:00Z","ends_at":"2026-11-28T17:00:00Z","created_by":"k","comment":"c"}"#,
            "must be after",
        ),
        (
            r#"{"matchers":["a=b"],"duration":"1h","created_by":"k"}"#,
            "`comment` is required",
        ),
    ] {
        let r = call(&app, "POST", "/api/v1/silences", Some(TOKEN), body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        let (kind, message) = r.error();
        assert_eq!(kind, "bad_request");
        assert!(message.contains(words), "{body}: {message}");
    }
    assert_eq!(backend.silences().len(), 1, "only the file's silence");
}

#[tokio::test]
async fn acks_reach_the_backend() {
    let (backend, now) = fixture();
    let app = app(&backend, now, Some(TOKEN));
    let incidents = get(&app, "/api/v1/incidents").await;
    let id = incidents[0]["id"].as_str().unwrap().to_string();
    let uri = format!("/api/v1/incidents/{id}/ack");
    let r = call(&app, "POST", &uri, Some(TOKEN), r#"{"by": "kim"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["id"], id.as_str());
    assert_eq!(backend.acks(), vec![(id.clone(), "kim".to_string())]);

    for (uri, body, status, kind) in [
        (uri.as_str(), r#"{"by": " "}"#, 400, "bad_request"),
        (uri.as_str(), r#"{"who": "kim"}"#, 400, "bad_request"),
        (
            "/api/v1/incidents/nope/ack",
            r#"{"by": "kim"}"#,
            404,
            "not_found",
        ),
    ] {
        let r = call(&app, "POST", uri, Some(TOKEN), body).await;
        assert_eq!(r.status.as_u16(), status, "{uri} {body}: {}", r.text);
        assert_eq!(r.error().0, kind);
    }
    assert_eq!(backend.acks().len(), 1);
}

/// Every write, without a token configured, without the header, with a
/// wrong token: refused before the body is read, and nothing changes.
#[tokio::test]
async fn writes_need_the_token() {
    let (backend, now) = fixture();
    let incident = backend.incidents()[0].id.clone();
    let writes = [
        ("POST", "/api/v1/silences".to_string(), NEW),
        ("DELETE", "/api/v1/silences/maint-b".to_string(), ""),
        (
            "POST",
            format!("/api/v1/incidents/{incident}/ack"),
            r#"{"by":"kim"}"#,
        ),
    ];
    let open = app(&backend, now, None);
    let locked = app(&backend, now, Some(TOKEN));
    for (method, uri, body) in &writes {
        for (router, token, status, kind) in [
            (&open, Some(TOKEN), 403, "forbidden"),
            (&open, None, 403, "forbidden"),
            (&locked, None, 401, "unauthorized"),
            (&locked, Some("tok-wrong"), 401, "unauthorized"),
        ] {
            let r = call(router, method, uri, token, body).await;
            assert_eq!(r.status.as_u16(), status, "{method} {uri} {token:?}");
            let (k, message) = r.error();
            assert_eq!(k, kind);
            if status == 401 {
                assert_eq!(
                    r.headers[header::WWW_AUTHENTICATE],
                    "Bearer realm=\"klaxon\""
                );
            } else {
                assert!(message.contains("set `http.token`"), "{message}");
            }
        }
    }
    assert_eq!(backend.silences().len(), 1);
    assert!(backend.silences()[0].active(now), "not expired");
    assert!(backend.acks().is_empty());
    // Reads stay open.
    assert_eq!(
        call(&locked, "GET", "/api/v1/silences", None, "")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn backend_failures_keep_their_kind() {
    let (backend, now) = fixture();
    let app = app(&backend, now, Some(TOKEN));
    backend.fail_writes(Some(ApiError::new(
        ApiErrorKind::Unavailable,
        "the silences topic is not writable: broker down",
    )));
    let r = call(&app, "POST", "/api/v1/silences", Some(TOKEN), NEW).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.json(),
        json!({"error": {"kind": "unavailable", "message": "the silences topic is not writable: broker down"}})
    );
}

/// A writer for a log capture.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The token is in no response, no log line and no `Debug` print, whatever
/// the request did with it.
#[test]
fn the_token_never_leaks() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let mut texts = Vec::new();
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (backend, now) = fixture();
            let app = app(&backend, now, Some(TOKEN));
            let created = call(&app, "POST", "/api/v1/silences", Some(TOKEN), NEW).await;
            assert_eq!(created.status, StatusCode::CREATED);
            let id = created.json()["id"].as_str().unwrap().to_string();
            texts.push(created.text);
            for (method, uri, token) in [
                (
                    "POST",
                    "/api/v1/silences".to_string(),
                    Some("tok-9f8e7d6c5b4"),
                ),
                ("POST", "/api/v1/silences".to_string(), None),
                ("DELETE", format!("/api/v1/silences/{id}"), Some(TOKEN)),
                ("GET", "/api/v1/silences".to_string(), None),
                ("GET", "/api/v1/openapi.json".to_string(), None),
            ] {
                let r = call(&app, method, &uri, token, NEW).await;
                texts.push(format!("{:?} {}", r.headers, r.text));
            }
        });
    });
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("silence created"),
        "the capture works: {logs}"
    );
    assert!(!logs.contains(TOKEN), "{logs}");
    for t in &texts {
        assert!(!t.contains(TOKEN), "{t}");
    }
    assert!(!format!("{:?}", Some(Secret::new(TOKEN))).contains(TOKEN));
}

/// Every operation in ROUTES is in the OpenAPI description and the other
/// way round, and each is really routed (not a 404/405 from the router).
#[tokio::test]
async fn the_openapi_description_matches_the_routes() {
    let spec: Value = serde_json::from_str(OPENAPI).unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let mut in_spec = BTreeSet::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            in_spec.insert((method.to_uppercase(), path.clone()));
        }
    }
    let in_router: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(in_spec, in_router);

    let (backend, now) = fixture();
    let app = app(&backend, now, None);
    for (method, path) in &in_router {
        let uri = path.replace("{id}", "x");
        let r = call(&app, method, &uri, None, "").await;
        // Reads answer 200; writes without a token 403 — never the
        // router's own empty 404 or 405.
        let want = if method == "GET" { 200 } else { 403 };
        assert_eq!(r.status.as_u16(), want, "{method} {path}: {}", r.text);
    }
    // Requests that are not routed get JSON errors too (and the probe
    // above can fail).
    let r = call(&app, "PUT", "/api/v1/silences", None, "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers[header::ALLOW], "GET, POST");
    assert_eq!(
        r.error(),
        (
            "method_not_allowed".into(),
            "this endpoint answers GET, POST".into()
        )
    );
    for uri in ["/api/v1/nothing", "/api/v1/silences/x/y"] {
        let r = call(&app, "GET", uri, None, "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(r.error().0, "not_found", "{uri}");
        assert!(r.error().1.contains("see /api/v1/openapi.json"), "{uri}");
    }
    // Outside /api/v1/ the API claims nothing (the server it is merged
    // into answers there).
    assert_eq!(call(&app, "GET", "/healthz", None, "").await.text, "");

    let served = get(&app, "/api/v1/openapi.json").await;
    assert_eq!(served, spec);
    // Every $ref points at something.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "$ref" {
                        out.push(x.as_str().unwrap().to_string());
                    }
                    refs(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&spec, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let ptr = r.strip_prefix('#').unwrap();
        assert!(spec.pointer(ptr).is_some(), "dangling {r}");
    }
}

/// The way the server mounts it: merged into a router with other routes.
#[tokio::test]
async fn merges_into_the_servers_router() {
    let (backend, now) = fixture();
    let server = Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .merge(app(&backend, now, None));
    assert_eq!(
        call(&server, "GET", "/healthz", None, "").await.text,
        "ok\n"
    );
    let alerts = get(&server, "/api/v1/alerts").await;
    assert_eq!(alerts.as_array().unwrap().len(), 5);
}

/// What the API returns has every field the description calls required,
/// and only fields it lists (where it does not allow more).
#[tokio::test]
async fn responses_have_the_described_shape() {
    let spec: Value = serde_json::from_str(OPENAPI).unwrap();
    let schema = |name: &str| spec["components"]["schemas"][name].clone();
    let check = |what: &str, v: &Value, s: &Value| {
        let obj = v.as_object().unwrap_or_else(|| panic!("{what}: {v}"));
        for r in s["required"].as_array().unwrap() {
            let r = r.as_str().unwrap();
            assert!(obj.contains_key(r), "{what} lacks {r}: {v}");
        }
        if s["additionalProperties"] != Value::Bool(true) {
            for k in obj.keys() {
                assert!(
                    s["properties"].get(k).is_some(),
                    "{what} has {k}, not in the description"
                );
            }
        }
    };
    let (backend, now) = fixture();
    let app = app(&backend, now, Some(TOKEN));
    let r = call(&app, "POST", "/api/v1/silences", Some(TOKEN), NEW).await;
    check("a created silence", &r.json(), &schema("Silence"));
    for (uri, name) in [
        ("/api/v1/alerts", "Alert"),
        ("/api/v1/incidents", "Incident"),
        ("/api/v1/silences", "Silence"),
        ("/api/v1/notifications", "Notification"),
    ] {
        let list = get(&app, uri).await;
        assert!(!list.as_array().unwrap().is_empty(), "{uri}");
        for item in list.as_array().unwrap() {
            check(uri, item, &schema(name));
        }
    }
    let r = call(&app, "GET", "/api/v1/alerts?state=x", None, "").await;
    check("an error", &r.json(), &schema("Error"));
}
