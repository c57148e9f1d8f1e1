//! What stands in front of the cloud routes, as the API gateway does: a request id on every
//! response, then for cloud calls counting, injected faults, authentication, the per-access-key rate
//! limit and the project check.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;

use crate::cloud::signing;

use super::App;
use super::auth::{self, PROJECT_ID_HEADER, Principal};
use super::errors::{ApiError, Service, gateway_code};
use super::faults::{FaultAction, Malformed};
use super::query::decode_query;
use super::routes;
use super::throttle;

/// The response header naming the request.
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";
/// The largest request body the gateway reads.
pub const MAX_BODY: usize = 1 << 20;

/// The id of the request being handled, in its extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Issues unique request ids: a random prefix per server and a counter.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    pub fn new(prefix: u64) -> Self {
        Self { prefix, next: AtomicU64::new(1) }
    }

    pub fn issue(&self) -> String {
        format!("{:016x}{:016x}", self.prefix, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// Marks a response that must not be sent: the server closes the connection instead.
#[derive(Clone, Copy, Debug)]
pub struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by an injected fault")
    }
}

impl std::error::Error for ResetConnection {}

/// Gives every request an id and every response the `X-Request-Id` header.
pub(crate) async fn request_id(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let id = app.ids.issue();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The project id: the second path segment of every cloud route.
fn project_of(path: &str) -> String {
    let segment = path.split('/').nth(2).unwrap_or_default();
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

/// Header pairs as the signer saw them; `host` falls back to the URI authority (HTTP/2).
pub(crate) fn header_pairs(parts: &axum::http::request::Parts) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    if !parts.headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
    {
        pairs.push(("host".into(), authority.to_string()));
    }
    pairs
}

fn reset() -> Response {
    let mut response = Response::new(Body::empty());
    response.extensions_mut().insert(ResetConnection);
    response
}

/// Counts the call, applies faults, authenticates, checks the project, then runs the handler.
pub(crate) async fn gate(State(app): State<App>, matched: MatchedPath, req: Request, next: Next) -> Response {
    let id = req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    let template = matched.as_str().to_string();
    let method = req.method().as_str().to_string();
    let project = project_of(req.uri().path());
    let service = Service::of_path(&template).unwrap_or(Service::Sdrs);
    let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    app.store.record_call(&method, &template, &project, user_agent);
    if let Some(signature) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| signing::Authorization::parse(v.trim()).ok())
        .map(|a| a.signature)
    {
        app.store.record_signature(&signature);
    }

    let is_delete = method == "DELETE";
    let (latency, action) = app.store.next_fault(routes::is_list(&method, &template), is_delete);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match action {
        FaultAction::Reset => return reset(),
        FaultAction::Status(status) => {
            if status == 429 {
                app.store.record_throttled();
            }
            return ApiError::injected(status, service, app.store.faults().retry_after_secs).render(&id);
        }
        FaultAction::Serve
        | FaultAction::Malformed(_)
        | FaultAction::HtmlPage
        | FaultAction::IgnoreDelete => {}
    }

    let (parts, body) = req.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        return ApiError::gateway(
            StatusCode::PAYLOAD_TOO_LARGE,
            gateway_code::BODY_TOO_LARGE,
            format!("The request body is larger than {MAX_BODY} bytes or could not be read"),
        )
        .render(&id);
    };
    let headers = header_pairs(&parts);
    let query = decode_query(parts.uri.query().unwrap_or(""));
    let signed = signing::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: &query,
        headers: &headers,
        body: &body,
    };
    let temporary = |ak: &str| app.iam.temporary_key(ak);
    let principal = match auth::authenticate_with(&signed, &app.auth, temporary, app.store.now()) {
        Ok(principal) => principal,
        Err(e) => {
            tracing::debug!(request_id = %id, error = %e, "rejected an unauthenticated call");
            return ApiError::unauthenticated(e.detail()).render(&id);
        }
    };
    // The gateway throttles per access key; every IAM token shares one bucket.
    let caller = match &principal {
        Principal::AccessKey(ak) => ak.as_str(),
        Principal::TemporaryKey(ak) => {
            app.iam.record_use(ak);
            ak.as_str()
        }
        Principal::Token => "",
    };
    if let Err(wait) = app.store.admit(caller) {
        app.store.record_throttled();
        let per_second = app.store.rate_limit().per_key;
        return ApiError::rate_limited(per_second, throttle::retry_after_secs(wait)).render(&id);
    }
    if let Some(claimed) = parts.headers.get(PROJECT_ID_HEADER) {
        let claimed = String::from_utf8_lossy(claimed.as_bytes());
        if claimed.trim() != project {
            return ApiError::gateway(
                StatusCode::FORBIDDEN,
                gateway_code::FORBIDDEN,
                format!(
                    "The project id in the URL ({project}) does not match the X-Project-Id header ({})",
                    claimed.trim()
                ),
            )
            .render(&id);
        }
    }

    match action {
        FaultAction::HtmlPage => return malformed(Response::new(Body::empty()), Malformed::Html).await,
        // The success each service documents for a DELETE, with nothing deleted.
        FaultAction::IgnoreDelete if service == Service::Kps => return StatusCode::OK.into_response(),
        FaultAction::IgnoreDelete => return StatusCode::NO_CONTENT.into_response(),
        _ => {}
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    match action {
        FaultAction::Malformed(kind) if response.status() == StatusCode::OK => {
            malformed(response, kind).await
        }
        _ => response,
    }
}

/// A 200 whose body a client cannot parse: JSON cut in half, or an HTML page.
async fn malformed(response: Response, kind: Malformed) -> Response {
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = match kind {
        Malformed::Truncated => {
            let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
            bytes.slice(..bytes.len() / 2)
        }
        Malformed::Html => {
            parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            "<html><body><h1>Service maintenance</h1><p>Please try again later.</p></body></html>".into()
        }
    };
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_and_fixed_width() {
        let ids = RequestIds::new(0xabc);
        let (a, b) = (ids.issue(), ids.issue());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert_eq!(a, "0000000000000abc0000000000000001");
    }

    #[test]
    fn project_is_the_second_segment() {
        assert_eq!(project_of("/v1/abc/task-center/failure-jobs"), "abc");
        assert_eq!(project_of("/v3/a%62c/failed-tasks"), "abc");
        assert_eq!(project_of("/"), "");
    }

    #[tokio::test]
    async fn malformed_bodies_do_not_parse() {
        let ok = || Response::new(Body::from(r#"{"total":1,"tasks":[{"task_id":"t"}]}"#));
        for kind in [Malformed::Truncated, Malformed::Html] {
            let broken = malformed(ok(), kind).await;
            assert_eq!(broken.status(), 200);
            let bytes = to_bytes(broken.into_body(), 1 << 20).await.unwrap();
            assert!(!bytes.is_empty());
            assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_err(), "{kind:?}");
        }
    }
}
