//! Error responses in the shapes the real SDRS and KPS services and their API gateway send: SDRS
//! nests `code`/`message` under `error`, KPS and the gateway use `error_code`/`error_msg`, proxies
//! answer with HTML or nothing at all. Builds responses only; no I/O.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;

/// The cloud service a route belongs to, which decides the native error shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Sdrs,
    Kps,
}

impl Service {
    /// `/v1/...` is SDRS, `/v3/...` is KPS.
    pub fn of_path(path: &str) -> Option<Self> {
        if path.starts_with("/v1/") {
            Some(Self::Sdrs)
        } else if path.starts_with("/v3/") {
            Some(Self::Kps)
        } else {
            None
        }
    }
}

/// The body of an error response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorBody {
    /// `{"error":{"code":"SDRS.1xxx","message":"..."}}`.
    Sdrs { code: String, message: String },
    /// `{"error_code":"KPS.XXXX","error_msg":"..."}`.
    Kps { code: String, message: String },
    /// `{"error_code":"APIGW.xxxx","error_msg":"...","request_id":"..."}`.
    Gateway { code: String, message: String },
    /// An HTML page, as a load balancer in front of the service sends.
    Html(String),
    /// No body at all.
    Empty,
}

/// An error answer: status, body and, for throttling, the `Retry-After` seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    pub retry_after: Option<u64>,
}

/// SDRS error codes used by the emulator.
pub mod sdrs_code {
    pub const INTERNAL: &str = "SDRS.1000";
    pub const INVALID_QUERY: &str = "SDRS.1002";
    pub const JOB_NOT_FOUND: &str = "SDRS.1301";
    pub const GROUP_NOT_FOUND: &str = "SDRS.1300";
}

/// KPS error codes used by the emulator.
pub mod kps_code {
    pub const INTERNAL: &str = "KPS.0001";
    pub const INVALID_QUERY: &str = "KPS.0002";
    pub const TASK_NOT_FOUND: &str = "KPS.0010";
}

/// API gateway error codes used by the emulator.
pub mod gateway_code {
    pub const NO_SUCH_API: &str = "APIGW.0101";
    pub const BACKEND_UNAVAILABLE: &str = "APIGW.0203";
    pub const AUTHENTICATION: &str = "APIGW.0301";
    pub const FORBIDDEN: &str = "APIGW.0302";
    pub const THROTTLED: &str = "APIGW.0308";
    pub const BODY_TOO_LARGE: &str = "APIGW.0201";
}

const BAD_GATEWAY_PAGE: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n";

impl ApiError {
    /// An error in the service's own shape.
    pub fn service(service: Service, status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        let (code, message) = (code.to_string(), message.into());
        let body = match service {
            Service::Sdrs => ErrorBody::Sdrs { code, message },
            Service::Kps => ErrorBody::Kps { code, message },
        };
        Self { status, body, retry_after: None }
    }

    /// An error raised by the API gateway before the service sees the request.
    pub fn gateway(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody::Gateway { code: code.to_string(), message: message.into() },
            retry_after: None,
        }
    }

    /// 401 from the gateway's IAM check.
    pub fn unauthenticated(detail: impl std::fmt::Display) -> Self {
        Self::gateway(
            StatusCode::UNAUTHORIZED,
            gateway_code::AUTHENTICATION,
            format!("Incorrect IAM authentication information: {detail}"),
        )
    }

    /// 429 from the gateway's throttling, with `Retry-After`.
    pub fn throttled(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::gateway(
                StatusCode::TOO_MANY_REQUESTS,
                gateway_code::THROTTLED,
                "The throttling threshold has been reached: policy user over ratelimit, limit:100, time:1 minute",
            )
        }
    }

    /// 429 from the per-access-key rate limit, with `Retry-After`.
    pub fn rate_limited(per_second: u32, retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::gateway(
                StatusCode::TOO_MANY_REQUESTS,
                gateway_code::THROTTLED,
                format!(
                    "The throttling threshold has been reached: policy user over ratelimit, limit:{per_second}, time:1 second"
                ),
            )
        }
    }

    /// 404 for a method and path the gateway does not publish.
    pub fn no_such_api() -> Self {
        Self::gateway(
            StatusCode::NOT_FOUND,
            gateway_code::NO_SUCH_API,
            "The API does not exist or has not been published in the environment",
        )
    }

    /// An injected failure with the given status, shaped as the real chain of proxies would send it:
    /// 429 from the gateway with `Retry-After`; 500 and other statuses in the service's own shape;
    /// 502 as an HTML page; 503 from the gateway; 504 with an empty body.
    pub fn injected(status: u16, service: Service, retry_after_secs: u64) -> Self {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let reason = code.canonical_reason().unwrap_or("Error");
        match code.as_u16() {
            429 => Self::throttled(retry_after_secs),
            502 => {
                Self { status: code, body: ErrorBody::Html(BAD_GATEWAY_PAGE.to_string()), retry_after: None }
            }
            503 => Self::gateway(code, gateway_code::BACKEND_UNAVAILABLE, "Backend unavailable"),
            504 => Self { status: code, body: ErrorBody::Empty, retry_after: None },
            500 => match service {
                Service::Sdrs => Self::service(service, code, sdrs_code::INTERNAL, "Internal server error."),
                Service::Kps => {
                    Self::service(service, code, kps_code::INTERNAL, "System error, please try again later.")
                }
            },
            401 => Self::unauthenticated("the request was rejected by an injected fault"),
            other => {
                let code_text = match service {
                    Service::Sdrs => format!("SDRS.1{other}"),
                    Service::Kps => format!("KPS.0{other}"),
                };
                Self::service(service, code, &code_text, format!("{reason} (injected fault)."))
            }
        }
    }

    /// The HTTP response; gateway bodies echo `request_id`.
    pub fn render(&self, request_id: &str) -> Response {
        const JSON: &str = "application/json;charset=UTF-8";
        let (content_type, body) = match &self.body {
            ErrorBody::Sdrs { code, message } => {
                (Some(JSON), json!({"error": {"code": code, "message": message}}).to_string())
            }
            ErrorBody::Kps { code, message } => {
                (Some(JSON), json!({"error_code": code, "error_msg": message}).to_string())
            }
            ErrorBody::Gateway { code, message } => (
                Some(JSON),
                json!({"error_code": code, "error_msg": message, "request_id": request_id}).to_string(),
            ),
            ErrorBody::Html(html) => (Some("text/html"), html.clone()),
            ErrorBody::Empty => (None, String::new()),
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status;
        if let Some(content_type) = content_type {
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn shapes_differ_per_source() {
        let sdrs = ApiError::service(Service::Sdrs, StatusCode::NOT_FOUND, "SDRS.1301", "gone").render("r1");
        assert_eq!(sdrs.status(), 404);
        let v: serde_json::Value = serde_json::from_str(&body_of(sdrs).await).unwrap();
        assert_eq!(v, json!({"error": {"code": "SDRS.1301", "message": "gone"}}));

        let kps = ApiError::service(Service::Kps, StatusCode::BAD_REQUEST, "KPS.0002", "bad").render("r2");
        let v: serde_json::Value = serde_json::from_str(&body_of(kps).await).unwrap();
        assert_eq!(v, json!({"error_code": "KPS.0002", "error_msg": "bad"}));

        let throttled = ApiError::throttled(7).render("r3");
        assert_eq!(throttled.status(), 429);
        assert_eq!(throttled.headers()[header::RETRY_AFTER], "7");
        let v: serde_json::Value = serde_json::from_str(&body_of(throttled).await).unwrap();
        assert_eq!(v["error_code"], "APIGW.0308");
        assert_eq!(v["request_id"], "r3");
    }

    #[tokio::test]
    async fn injected_statuses_vary_their_bodies() {
        let bad_gateway = ApiError::injected(502, Service::Sdrs, 1).render("r");
        assert_eq!(bad_gateway.headers()[header::CONTENT_TYPE], "text/html");
        assert!(body_of(bad_gateway).await.contains("502 Bad Gateway"));

        let timeout = ApiError::injected(504, Service::Kps, 1).render("r");
        assert_eq!(timeout.status(), 504);
        assert!(timeout.headers().get(header::CONTENT_TYPE).is_none());
        assert_eq!(body_of(timeout).await, "");

        let unavailable = ApiError::injected(503, Service::Kps, 1).render("r");
        let v: serde_json::Value = serde_json::from_str(&body_of(unavailable).await).unwrap();
        assert_eq!(v["error_code"], "APIGW.0203");

        let internal = ApiError::injected(500, Service::Sdrs, 1).render("r");
        let v: serde_json::Value = serde_json::from_str(&body_of(internal).await).unwrap();
        assert_eq!(v["error"]["code"], "SDRS.1000");

        let conflict = ApiError::injected(409, Service::Kps, 1).render("r");
        let v: serde_json::Value = serde_json::from_str(&body_of(conflict).await).unwrap();
        assert_eq!(v["error_code"], "KPS.0409");

        assert_eq!(ApiError::injected(429, Service::Sdrs, 3).retry_after, Some(3));
    }

    #[test]
    fn service_follows_the_api_version() {
        assert_eq!(Service::of_path("/v1/p/task-center/failure-jobs"), Some(Service::Sdrs));
        assert_eq!(Service::of_path("/v3/p/failed-tasks"), Some(Service::Kps));
        assert_eq!(Service::of_path("/_emulator/calls"), None);
    }
}
