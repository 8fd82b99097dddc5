//! The routes of the dispatch API and their handlers.
//!
//! The router is built from one table, [`ROUTES`]; a test checks that the
//! table and `schemas/openapi.json` name the same operations, so the
//! description cannot drift from what is served.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, MethodRouter};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::auth::check_write;
use super::query::{limit, silence_selected, silence_states, AlertFilter, AlertState};
use super::silences::{NewSilence, SilenceIds};
use super::{ApiError, ApiErrorKind, Backend};
use crate::alerts::silence::{Silence, SilenceState};
use crate::alerts::Alert;
use crate::config::run::Secret;
use crate::model::Millis;

/// Where the handlers read the time (wall time in `klaxon run`, a fixed or
/// stepped time in tests).
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

/// The wall clock.
pub fn wall_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_millis())
}

/// Every operation: (method, path in axum's and OpenAPI's `{param}` form).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/alerts"),
    ("GET", "/api/v1/incidents"),
    ("POST", "/api/v1/incidents/{id}/ack"),
    ("GET", "/api/v1/silences"),
    ("POST", "/api/v1/silences"),
    ("DELETE", "/api/v1/silences/{id}"),
    ("GET", "/api/v1/notifications"),
    ("GET", "/api/v1/openapi.json"),
];

/// The OpenAPI 3 description served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../../schemas/openapi.json");

#[derive(Clone)]
struct Ctx {
    backend: Arc<dyn Backend>,
    token: Option<Arc<Secret>>,
    clock: Clock,
    ids: Arc<SilenceIds>,
}

fn endpoint(method: &str, path: &str) -> MethodRouter<Ctx> {
    match (method, path) {
        ("GET", "/api/v1/alerts") => get(list_alerts),
        ("GET", "/api/v1/incidents") => get(list_incidents),
        ("POST", "/api/v1/incidents/{id}/ack") => post(ack),
        ("GET", "/api/v1/silences") => get(list_silences),
        ("POST", "/api/v1/silences") => post(create_silence),
        ("DELETE", "/api/v1/silences/{id}") => delete(expire_silence),
        ("GET", "/api/v1/notifications") => get(list_notifications),
        ("GET", "/api/v1/openapi.json") => get(openapi),
        _ => unreachable!("no handler for {method} {path}"),
    }
}

/// The dispatch API on the wall clock, to `.merge()` into the server's
/// router. Writes need `token` as a bearer token; without one they are
/// refused (403).
pub fn router(backend: Arc<dyn Backend>, token: Option<Secret>) -> Router {
    router_with_clock(backend, token, wall_clock())
}

/// [`router`] with a clock of choice.
pub fn router_with_clock(backend: Arc<dyn Backend>, token: Option<Secret>, clock: Clock) -> Router {
    let ctx = Ctx {
        backend,
        token: token.map(Arc::new),
        clock,
        ids: Arc::new(SilenceIds::default()),
    };
    let mut r = Router::new();
    let paths: std::collections::BTreeSet<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    for path in paths {
        let methods: Vec<&'static str> = ROUTES
            .iter()
            .filter(|(_, p)| *p == path)
            .map(|(m, _)| *m)
            .collect();
        let mut mr: Option<MethodRouter<Ctx>> = None;
        for m in &methods {
            let e = endpoint(m, path);
            mr = Some(match mr {
                None => e,
                Some(prev) => prev.merge(e),
            });
        }
        let allow = methods.join(", ");
        let mr = mr
            .expect("a path of ROUTES has a method")
            .fallback(move || method_not_allowed(allow.clone()));
        r = r.route(path, mr);
    }
    // Anything else under /api/v1/ is a JSON 404 (not the server's empty one).
    r = r.route("/api/v1/{*rest}", any(no_such_endpoint));
    let r = r.with_state(ctx);
    // ── Slack interactivity ──────────────────────────────────────────────
    // src/api/slack.rs (written separately) is mounted HERE:
    //     r.merge(super::slack::router(...))
    // Its requests are authenticated by Slack's signing secret, not the
    // bearer token. Add its operations to ROUTES-like checks / the OpenAPI
    // description, or exclude them in `the_openapi_description_matches_the_routes`.
    r
}

/// An alert as the API shows it: the alert, its API state and the incident
/// it is in.
#[derive(Serialize)]
pub struct AlertView {
    #[serde(flatten)]
    pub alert: Alert,
    pub api_state: AlertState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
}

/// A silence as the API shows it: the silence and where it is in its life.
#[derive(Serialize)]
pub struct SilenceView {
    #[serde(flatten)]
    pub silence: Silence,
    pub state: SilenceState,
}

fn silence_view(silence: Silence, now: Millis) -> SilenceView {
    let state = silence.state(now);
    SilenceView { silence, state }
}

async fn list_alerts(
    State(ctx): State<Ctx>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<AlertView>>, ApiError> {
    let filter = AlertFilter::parse(q.as_deref())?;
    let mut incident_of = std::collections::HashMap::new();
    for i in ctx.backend.incidents() {
        for fp in i.alerts.into_keys() {
            incident_of.insert(fp, i.id.clone());
        }
    }
    let mut out: Vec<AlertView> = ctx
        .backend
        .alerts()
        .into_iter()
        .filter(|a| filter.selects(a))
        .map(|alert| AlertView {
            api_state: AlertState::of(&alert),
            incident: incident_of.get(&alert.fingerprint).cloned(),
            alert,
        })
        .collect();
    // Newest first; the fingerprint keeps the order stable.
    out.sort_by(|a, b| {
        (b.alert.starts_at, &a.alert.fingerprint).cmp(&(a.alert.starts_at, &b.alert.fingerprint))
    });
    Ok(Json(out))
}

async fn list_incidents(State(ctx): State<Ctx>) -> Response {
    let mut incidents = ctx.backend.incidents();
    incidents.sort_by(|a, b| (b.opened_at, &a.id).cmp(&(a.opened_at, &b.id)));
    Json(incidents).into_response()
}

async fn list_silences(
    State(ctx): State<Ctx>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<SilenceView>>, ApiError> {
    let states = silence_states(q.as_deref())?;
    let now = (ctx.clock)();
    let rank = |s: SilenceState| match s {
        SilenceState::Active => 0,
        SilenceState::Pending => 1,
        SilenceState::Expired => 2,
    };
    let mut out: Vec<SilenceView> = ctx
        .backend
        .silences()
        .into_iter()
        .filter(|s| silence_selected(&states, s, now))
        .map(|s| silence_view(s, now))
        .collect();
    // Active, then pending, then expired; soonest end first.
    out.sort_by(|a, b| {
        (rank(a.state), a.silence.ends_at, &a.silence.id).cmp(&(
            rank(b.state),
            b.silence.ends_at,
            &b.silence.id,
        ))
    });
    Ok(Json(out))
}

fn json_body<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not {what}: {e}")))
}

async fn create_silence(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_write(ctx.token.as_deref(), &headers)?;
    let req: NewSilence = json_body(&body, "a silence")?;
    let now = (ctx.clock)();
    let mut silence = req.validate(now)?;
    let existing = ctx.backend.silences();
    loop {
        silence.id = ctx.ids.next(&silence, now);
        if !existing.iter().any(|s| s.id == silence.id) {
            break;
        }
    }
    let stored = ctx.backend.create_silence(silence).await?;
    let location = format!("/api/v1/silences/{}", stored.id);
    tracing::info!(
        silence = %stored.id,
        created_by = %stored.created_by,
        "silence created through the API"
    );
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(silence_view(stored, now)),
    )
        .into_response())
}

async fn expire_silence(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SilenceView>, ApiError> {
    check_write(ctx.token.as_deref(), &headers)?;
    let stored = ctx.backend.expire_silence(id).await?;
    tracing::info!(silence = %stored.id, "silence expired through the API");
    Ok(Json(silence_view(stored, (ctx.clock)())))
}

/// The body of `POST /api/v1/incidents/{id}/ack`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    by: String,
}

async fn ack(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_write(ctx.token.as_deref(), &headers)?;
    let req: AckRequest = json_body(&body, "an acknowledgement ({\"by\": \"NAME\"})")?;
    let by = req.by.trim();
    if by.is_empty() {
        return Err(ApiError::bad_request("`by` is required: who acknowledges"));
    }
    let incident = ctx.backend.ack(id, by.to_string()).await?;
    tracing::info!(incident = %incident.id, by, "incident acknowledged through the API");
    Ok(Json(incident).into_response())
}

async fn list_notifications(
    State(ctx): State<Ctx>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let n = limit(q.as_deref())?;
    Ok(Json(ctx.backend.notifications(n)).into_response())
}

async fn method_not_allowed(allow: String) -> Response {
    let mut resp = ApiError::new(
        ApiErrorKind::MethodNotAllowed,
        format!("this endpoint answers {allow}"),
    )
    .into_response();
    if let Ok(v) = allow.parse() {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

async fn no_such_endpoint(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ApiErrorKind::NotFound,
        format!("no endpoint {}; see /api/v1/openapi.json", uri.path()),
    )
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
