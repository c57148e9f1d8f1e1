//! The SDRS and KPS endpoints (failed tasks, and SDRS protection groups): route templates and
//! handlers over the [`Store`](super::Store). The gate in front of them has already counted, faulted
//! and authenticated the call. No I/O of their own.

use axum::Json;
use axum::Router;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};

use super::App;
use super::errors::{ApiError, Service, kps_code, sdrs_code};
use super::gate::{self, RequestId};
use super::modes::render_kps_times;
use super::query::{decode_query, parse_failure_job_query, parse_page, parse_server_group_query};

/// SDRS: list protection groups.
pub const SDRS_GROUPS: &str = "/v1/{project_id}/server-groups";
/// SDRS: list failed jobs.
pub const SDRS_LIST: &str = "/v1/{project_id}/task-center/failure-jobs";
/// SDRS: delete every protection-group-level failed job.
pub const SDRS_BATCH: &str = "/v1/{project_id}/task-center/failure-jobs/batch";
/// SDRS: delete the failed jobs of one protection group.
pub const SDRS_GROUP_BATCH: &str = "/v1/{project_id}/task-center/{server_group_id}/failure-jobs/batch";
/// SDRS: delete one failed job.
pub const SDRS_ONE: &str = "/v1/{project_id}/task-center/failure-jobs/{failure_job_id}";
/// KPS: list (GET) or delete (DELETE) every failed task.
pub const KPS_TASKS: &str = "/v3/{project_id}/failed-tasks";
/// KPS: delete one failed task.
pub const KPS_ONE: &str = "/v3/{project_id}/failed-tasks/{task_id}";

/// Whether a call may get a malformed body: the list calls.
pub fn is_list(method: &str, template: &str) -> bool {
    method == "GET" && (template == SDRS_LIST || template == KPS_TASKS || template == SDRS_GROUPS)
}

/// The cloud routes, behind the gate.
pub(crate) fn router(app: &App) -> Router<App> {
    Router::new()
        .route(SDRS_GROUPS, get(list_server_groups))
        .route(SDRS_LIST, get(list_failure_jobs))
        .route(SDRS_BATCH, delete(delete_server_group_level_jobs))
        .route(SDRS_GROUP_BATCH, delete(delete_group_jobs))
        .route(SDRS_ONE, delete(delete_failure_job))
        .route(KPS_TASKS, get(list_failed_tasks).delete(delete_all_failed_tasks))
        .route(KPS_ONE, delete(delete_failed_task))
        .route_layer(from_fn_with_state(app.clone(), gate::gate))
}

async fn list_server_groups(
    State(app): State<App>,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
    Extension(id): Extension<RequestId>,
) -> Response {
    match parse_server_group_query(&decode_query(raw.as_deref().unwrap_or(""))) {
        Ok(query) => Json(app.store.list_server_groups(&project, &query)).into_response(),
        Err(e) => {
            ApiError::service(Service::Sdrs, StatusCode::BAD_REQUEST, sdrs_code::INVALID_QUERY, e.to_string())
                .render(&id.0)
        }
    }
}

async fn list_failure_jobs(
    State(app): State<App>,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
    Extension(id): Extension<RequestId>,
) -> Response {
    match parse_failure_job_query(&decode_query(raw.as_deref().unwrap_or(""))) {
        Ok(query) => Json(app.store.list_failure_jobs(&project, &query)).into_response(),
        Err(e) => {
            ApiError::service(Service::Sdrs, StatusCode::BAD_REQUEST, sdrs_code::INVALID_QUERY, e.to_string())
                .render(&id.0)
        }
    }
}

async fn delete_server_group_level_jobs(State(app): State<App>, Path(project): Path<String>) -> StatusCode {
    app.store.delete_server_group_level_jobs(&project);
    StatusCode::NO_CONTENT
}

/// The strictest reading: a group the project does not have is a 404, not an empty success.
async fn delete_group_jobs(
    State(app): State<App>,
    Path((project, group)): Path<(String, String)>,
    Extension(id): Extension<RequestId>,
) -> Response {
    match app.store.delete_group_jobs(&project, &group) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => ApiError::service(
            Service::Sdrs,
            StatusCode::NOT_FOUND,
            sdrs_code::GROUP_NOT_FOUND,
            format!("The protection group {group} does not exist."),
        )
        .render(&id.0),
    }
}

async fn delete_failure_job(
    State(app): State<App>,
    Path((project, job_id)): Path<(String, String)>,
    Extension(id): Extension<RequestId>,
) -> Response {
    if app.store.delete_failure_job(&project, &job_id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ApiError::service(
            Service::Sdrs,
            StatusCode::NOT_FOUND,
            sdrs_code::JOB_NOT_FOUND,
            format!("The failure job {job_id} does not exist."),
        )
        .render(&id.0)
    }
}

async fn list_failed_tasks(
    State(app): State<App>,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
    Extension(id): Extension<RequestId>,
) -> Response {
    match parse_page(&decode_query(raw.as_deref().unwrap_or(""))) {
        Ok(page) => match serde_json::to_value(app.store.list_failed_tasks(&project, page)) {
            Ok(body) => Json(render_kps_times(body, app.store.modes().kps_task_time)).into_response(),
            Err(e) => ApiError::service(
                Service::Kps,
                StatusCode::INTERNAL_SERVER_ERROR,
                kps_code::INTERNAL,
                format!("Could not write the failed tasks: {e}"),
            )
            .render(&id.0),
        },
        Err(e) => {
            ApiError::service(Service::Kps, StatusCode::BAD_REQUEST, kps_code::INVALID_QUERY, e.to_string())
                .render(&id.0)
        }
    }
}

async fn delete_all_failed_tasks(State(app): State<App>, Path(project): Path<String>) -> StatusCode {
    app.store.delete_all_failed_tasks(&project);
    StatusCode::OK
}

async fn delete_failed_task(
    State(app): State<App>,
    Path((project, task_id)): Path<(String, String)>,
    Extension(id): Extension<RequestId>,
) -> Response {
    if app.store.delete_failed_task(&project, &task_id) {
        StatusCode::OK.into_response()
    } else {
        ApiError::service(
            Service::Kps,
            StatusCode::NOT_FOUND,
            kps_code::TASK_NOT_FOUND,
            format!("The failed task {task_id} does not exist."),
        )
        .render(&id.0)
    }
}
