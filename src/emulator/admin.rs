//! The emulator's own control endpoints under `/_emulator`, without authentication or faults: add
//! and read protection groups and tasks, read and reset call counts, read and change faults,
//! modes and the rate limit; read IAM's issued keys and set its identity providers, durations and
//! project names. Handlers over the store and IAM; no I/O of their own.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::json;

use crate::cloud::model::{FailedTask, ProtectionGroup};

use super::faults::Faults;
use super::modes::{Modes, ModesPatch};
use super::oidc::OidcProvider;
use super::store::{ProjectCounts, SeededJob};
use super::throttle::RateLimitSetting;
use super::{App, CallCounts};

/// The prefix of every admin route.
pub const PREFIX: &str = "/_emulator";

pub(crate) fn router() -> Router<App> {
    Router::new()
        .route("/projects", get(projects))
        .route("/projects/{project_id}/server-groups", get(server_groups).post(add_server_groups))
        .route("/projects/{project_id}/failure-jobs", get(failure_jobs).post(add_failure_jobs))
        .route("/projects/{project_id}/failed-tasks", get(failed_tasks).post(add_failed_tasks))
        .route("/calls", get(calls).delete(reset_calls))
        .route("/faults", get(faults).put(set_faults))
        .route("/modes", get(modes).put(set_modes))
        .route("/rate-limit", get(rate_limit).put(set_rate_limit))
        .route("/iam", get(iam))
        .route("/iam/providers/{idp_id}", put(set_provider))
        .route("/iam/durations", put(set_durations))
        .route("/iam/projects", put(name_projects))
}

/// Identity providers, project names, durations, issued keys (never their secrets) and IAM calls.
async fn iam(State(app): State<App>) -> Json<serde_json::Value> {
    let (min, max) = app.iam.durations();
    let providers: BTreeMap<String, serde_json::Value> = app
        .iam
        .providers()
        .into_iter()
        .map(|(id, (issuer, audiences))| (id, json!({"issuer": issuer, "audiences": audiences})))
        .collect();
    Json(json!({
        "providers": providers,
        "projects": app.iam.projects(None),
        "min_duration_seconds": min.as_secs(),
        "max_duration_seconds": max.as_secs(),
        "issued": app.iam.issued(),
        "calls": app.iam.calls(),
    }))
}

#[derive(serde::Deserialize)]
struct ProviderBody {
    issuer: String,
    audiences: Vec<String>,
    jwks: jsonwebtoken::jwk::JwkSet,
}

/// Adds or replaces an identity provider: `{"issuer", "audiences": [...], "jwks": {"keys": [...]}}`.
async fn set_provider(
    State(app): State<App>,
    Path(idp_id): Path<String>,
    Json(body): Json<ProviderBody>,
) -> StatusCode {
    app.iam.set_provider(
        idp_id,
        OidcProvider { issuer: body.issuer, audiences: body.audiences, jwks: body.jwks },
    );
    StatusCode::NO_CONTENT
}

#[derive(serde::Deserialize)]
struct DurationsBody {
    min_seconds: u64,
    max_seconds: u64,
}

/// `{"min_seconds": 1, "max_seconds": 30}`: the shortest `duration_seconds` accepted and the
/// longest lifetime given to temporary keys.
async fn set_durations(State(app): State<App>, Json(body): Json<DurationsBody>) -> StatusCode {
    app.iam.set_durations(Duration::from_secs(body.min_seconds), Duration::from_secs(body.max_seconds));
    StatusCode::NO_CONTENT
}

/// `{"<project_id>": "<name>"}`: names (or renames) projects.
async fn name_projects(State(app): State<App>, Json(names): Json<BTreeMap<String, String>>) -> StatusCode {
    app.iam.name_projects(names);
    StatusCode::NO_CONTENT
}

async fn projects(State(app): State<App>) -> Json<BTreeMap<String, ProjectCounts>> {
    Json(app.store.projects())
}

async fn server_groups(State(app): State<App>, Path(project): Path<String>) -> Json<Vec<ProtectionGroup>> {
    Json(app.store.server_groups(&project))
}

async fn add_server_groups(
    State(app): State<App>,
    Path(project): Path<String>,
    Json(groups): Json<Vec<ProtectionGroup>>,
) -> Response {
    let added = groups.len();
    app.store.add_server_groups(&project, groups);
    (StatusCode::CREATED, Json(json!({"added": added}))).into_response()
}

async fn failure_jobs(State(app): State<App>, Path(project): Path<String>) -> Json<Vec<SeededJob>> {
    Json(app.store.seeded_failure_jobs(&project))
}

async fn add_failure_jobs(
    State(app): State<App>,
    Path(project): Path<String>,
    Json(jobs): Json<Vec<SeededJob>>,
) -> Response {
    let added = jobs.len();
    app.store.add_failure_jobs(&project, jobs);
    (StatusCode::CREATED, Json(json!({"added": added}))).into_response()
}

async fn failed_tasks(State(app): State<App>, Path(project): Path<String>) -> Json<Vec<FailedTask>> {
    Json(app.store.failed_tasks(&project))
}

async fn add_failed_tasks(
    State(app): State<App>,
    Path(project): Path<String>,
    Json(tasks): Json<Vec<FailedTask>>,
) -> Response {
    let added = tasks.len();
    app.store.add_failed_tasks(&project, tasks);
    (StatusCode::CREATED, Json(json!({"added": added}))).into_response()
}

async fn calls(State(app): State<App>) -> Json<CallCounts> {
    Json(app.store.calls())
}

async fn reset_calls(State(app): State<App>) -> StatusCode {
    app.store.reset_calls();
    StatusCode::NO_CONTENT
}

async fn faults(State(app): State<App>) -> Json<Faults> {
    Json(app.store.faults())
}

async fn set_faults(State(app): State<App>, Json(faults): Json<Faults>) -> Response {
    match faults.validate() {
        Ok(()) => {
            app.store.set_faults(faults.clone());
            Json(faults).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e.to_string()}))).into_response(),
    }
}

async fn modes(State(app): State<App>) -> Json<Modes> {
    Json(app.store.modes())
}

/// Changes the fields the body names (`{"sdrs_listing": "loose"}`) and answers with every mode.
async fn set_modes(State(app): State<App>, Json(patch): Json<ModesPatch>) -> Json<Modes> {
    let modes = app.store.modes().patched(patch);
    app.store.set_modes(modes);
    Json(modes)
}

async fn rate_limit(State(app): State<App>) -> Json<RateLimitSetting> {
    Json(app.store.rate_limit())
}

/// Replaces the per-access-key rate limit (`{"per_key": 50}`; `{"per_key": 0}` lifts it).
async fn set_rate_limit(
    State(app): State<App>,
    Json(setting): Json<RateLimitSetting>,
) -> Json<RateLimitSetting> {
    app.store.set_rate_limit(setting);
    Json(setting)
}
