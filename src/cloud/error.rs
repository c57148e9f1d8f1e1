//! Errors of SDRS/KPS calls: parsing the error bodies the services return, and classifying every
//! failure into what the caller should do about it (retry, stop, treat as done). Pure: no I/O.

use std::fmt;

use crate::cloud::endpoint::{EndpointError, Service};

/// Longest error message kept from a response body, in characters.
pub const MAX_MESSAGE_CHARS: usize = 512;

/// The API gateway's code for a 404 on a method and path it does not publish ("The API does not
/// exist or has not been published"): the endpoint or path is wrong, not the item gone.
pub const GATEWAY_NO_SUCH_API: &str = "APIGW.0101";

/// What kind of failure an error is, which decides retries and how it is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// 401/403: credentials missing, wrong or not permitted. Never retried.
    Authentication,
    /// 404 from the service: the resource does not exist. Never retried; on a single delete it means
    /// already gone.
    NotFound,
    /// 429: the API gateway throttled the caller. Retried after `Retry-After` or a backoff.
    Throttled,
    /// 408, 5xx, connect errors, timeouts, resets, truncated bodies. Retried with backoff.
    Transient,
    /// Other 4xx, the gateway's 404 for an API it does not publish (`APIGW.0101`: wrong endpoint or
    /// path), and anything a retry cannot fix (bad endpoint, oversized body). Never retried.
    Permanent,
    /// A 2xx whose body is cut short or not JSON at all. Retried like a transient failure, bounded.
    /// (Valid JSON of the wrong shape is [`Self::Permanent`]: a retry gets the same body.)
    Decode,
}

impl ErrorClass {
    /// Whether a call failing this way may be tried again.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Throttled | Self::Transient | Self::Decode)
    }

    /// The class of an HTTP error status.
    pub fn of_status(status: u16) -> Self {
        match status {
            401 | 403 => Self::Authentication,
            404 => Self::NotFound,
            429 => Self::Throttled,
            408 | 500..=599 => Self::Transient,
            _ => Self::Permanent,
        }
    }

    /// The class of an HTTP error response from its status and the error code of its body: a 404
    /// is [`Self::NotFound`] unless the gateway says the API itself does not exist.
    pub fn of_response(status: u16, code: &str) -> Self {
        match (status, code.trim()) {
            (404, GATEWAY_NO_SUCH_API) => Self::Permanent,
            _ => Self::of_status(status),
        }
    }

    /// A stable name for metric labels and status reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authentication => "Authentication",
            Self::NotFound => "NotFound",
            Self::Throttled => "Throttled",
            Self::Transient => "Transient",
            Self::Permanent => "Permanent",
            Self::Decode => "Decode",
        }
    }
}

/// What the service said about a failed call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub http_status: u16,
    /// The service's error code (e.g. `SDRS.1001`), or the HTTP status when the body has none.
    pub code: String,
    /// The service's message, or the raw body (truncated) when it is not a known JSON shape.
    pub message: String,
    /// `X-Request-Id`, for support tickets.
    pub request_id: Option<String>,
    /// The policy-evaluation detail a 403 may carry, kept verbatim for `iam decode`.
    pub encoded_authorization_message: Option<String>,
}

impl ApiError {
    /// Reads an error response the way the official SDK does: `error_code`+`error_msg`, then
    /// `errorCode`+`errorMsg`, then `code`+`message`, then the same pairs one object level down; an
    /// empty or non-JSON body gives the status as code and the text as message.
    pub fn from_response(http_status: u16, request_id: Option<String>, body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        let mut error = Self {
            http_status,
            code: String::new(),
            message: String::new(),
            request_id: request_id.filter(|r| !r.is_empty()),
            encoded_authorization_message: None,
        };
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&text) {
            error.encoded_authorization_message =
                map.get("encoded_authorization_message").map(value_text).filter(|m| !m.is_empty());
            let found = code_and_message(&map)
                .or_else(|| map.values().find_map(|v| v.as_object().and_then(code_and_message)));
            if let Some((code, message)) = found {
                error.code = code;
                error.message = message;
            }
        }
        if error.code.is_empty() {
            error.code = http_status.to_string();
        }
        if error.message.is_empty() {
            error.message = text.trim().to_string();
        }
        error.message = truncate(&error.message, MAX_MESSAGE_CHARS);
        error.code = truncate(&error.code, 128);
        error
    }

    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::of_response(self.http_status, &self.code)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {}: {}", self.http_status, self.code, self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

const PAIRS: [(&str, &str); 3] =
    [("error_code", "error_msg"), ("errorCode", "errorMsg"), ("code", "message")];

fn code_and_message(map: &serde_json::Map<String, serde_json::Value>) -> Option<(String, String)> {
    PAIRS.iter().find_map(|(c, m)| match (map.get(*c), map.get(*m)) {
        (Some(code), Some(message)) => Some((value_text(code), value_text(message))),
        _ => None,
    })
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// One logical call, for errors and logs: the service, the operation and the project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub service: Service,
    /// The operation name, e.g. `ListFailureJobs`.
    pub operation: &'static str,
    pub project_id: String,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} for project {}", self.service, self.operation, self.project_id)
    }
}

/// Why a cloud call failed. `attempts` counts every request sent for the call, retries included.
/// Messages name the call and the cause, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("{service} endpoint refused: {source}")]
    ResolveEndpoint {
        service: Service,
        #[source]
        source: EndpointError,
    },
    #[error("building the HTTPS client failed")]
    BuildClient(#[source] reqwest::Error),
    #[error("reading the CA bundle failed")]
    LoadCaBundle(#[source] reqwest::Error),
    #[error("the CA bundle holds no PEM certificate")]
    EmptyCaBundle,
    #[error("{call}: header {header} has a value that cannot be sent")]
    BuildRequest { call: Call, header: String },
    #[error("{call}: endpoint refused before sending: {source}")]
    CheckEndpoint {
        call: Call,
        #[source]
        source: EndpointError,
    },
    #[error("{call} failed after {attempts} attempt(s): {error}")]
    Api { call: Call, attempts: u32, error: Box<ApiError> },
    #[error("{call} failed after {attempts} attempt(s): {}", send_failure(source))]
    Send {
        call: Call,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    #[error("{call} failed after {attempts} attempt(s): reading the response body failed")]
    ReadBody {
        call: Call,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    #[error("{call} failed after {attempts} attempt(s): response body exceeds the {limit}-byte cap")]
    BodyTooLarge { call: Call, attempts: u32, limit: usize },
    #[error(
        "{call} failed after {attempts} attempt(s): HTTP {http_status} body is not the expected JSON at `{path}`"
    )]
    Decode {
        call: Call,
        attempts: u32,
        http_status: u16,
        /// Where in the body decoding stopped, e.g. `tasks[3].task_id`; `.` for the whole body.
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{call}: the server kept returning new items past {collected}; paging stopped")]
    Paging { call: Call, collected: usize },
    /// The caller's gate refused the DELETE right before it would have been sent.
    #[error("{call} not sent: {reason}")]
    NotSent { call: Call, reason: String },
    /// The DELETE was still running when the caller's gate said it must be over.
    #[error("{call} abandoned: it could have outlived this replica's Lease")]
    Abandoned { call: Call },
}

fn send_failure(e: &reqwest::Error) -> String {
    if let Some(tls) = tls_error(e) {
        format!("the TLS handshake failed: {}", tls_cause(tls))
    } else if e.is_timeout() {
        "the request timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_builder() {
        "the request could not be built".into()
    } else {
        "the request failed in transit".into()
    }
}

/// The rustls error somewhere in `e`'s source chain. An `io::Error` hides the error it wraps
/// from `source()`, so each one is opened too.
fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) =
            e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).and_then(|inner| tls_error(inner))
        {
            return Some(tls);
        }
        next = e.source();
    }
    None
}

/// What went wrong in a TLS handshake, in words that say what to fix.
fn tls_cause(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let certificate = match e {
        rustls::Error::InvalidCertificate(c) => c,
        rustls::Error::NoCertificatesPresented => return "the server presented no certificate".into(),
        rustls::Error::AlertReceived(alert) => return format!("the server sent the TLS alert {alert:?}"),
        rustls::Error::PeerIncompatible(why) => {
            return format!("the server supports no protocol version or cipher suite in common ({why:?})");
        }
        other => return other.to_string(),
    };
    match certificate {
        C::UnknownIssuer => "the server's certificate is not signed by a trusted certificate authority \
             (add the issuing CA to the CA bundle)"
            .into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "the server's certificate is not valid for this host name (check the endpoint and the \
             certificate's subject alternative names)"
                .into()
        }
        C::Expired | C::ExpiredContext { .. } => "the server's certificate has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet (check the clocks)".into()
        }
        C::Revoked => "the server's certificate is revoked".into(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "the server's certificate is not meant for server authentication".into()
        }
        C::BadSignature | C::UnsupportedSignatureAlgorithmContext { .. } => {
            "the server's certificate has a bad or unsupported signature".into()
        }
        C::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
            Some(webpki::Error::CaUsedAsEndEntity) => {
                "the server presented a CA certificate as its own certificate (it must present a leaf \
                 certificate signed by that CA, with the CA in the CA bundle)"
                    .into()
            }
            Some(other) => format!("the server's certificate was refused: {other:?}"),
            None => format!("the server's certificate was refused: {other}"),
        },
        other => format!("the server's certificate was refused: {other:?}"),
    }
}

impl CloudError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Api { error, .. } => error.class(),
            // A certificate the client does not trust stays untrusted on the next try.
            Self::Send { source, .. } if source.is_builder() || tls_error(source).is_some() => {
                ErrorClass::Permanent
            }
            Self::Send { .. } | Self::ReadBody { .. } => ErrorClass::Transient,
            // Valid JSON of the wrong shape comes back the same on every try; a body that is cut
            // short or not JSON at all is a transfer or proxy failure worth another try.
            Self::Decode { source, .. } if source.classify() == serde_json::error::Category::Data => {
                ErrorClass::Permanent
            }
            Self::Decode { .. } => ErrorClass::Decode,
            Self::ResolveEndpoint { .. }
            | Self::BuildClient(_)
            | Self::LoadCaBundle(_)
            | Self::EmptyCaBundle
            | Self::BuildRequest { .. }
            | Self::CheckEndpoint { .. }
            | Self::BodyTooLarge { .. }
            | Self::Paging { .. } => ErrorClass::Permanent,
            // Refused by this process (leadership lost, shutting down): a later run may send it.
            Self::NotSent { .. } | Self::Abandoned { .. } => ErrorClass::Transient,
        }
    }

    /// The service's own error, when the call got an HTTP error response.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Self::Api { error, .. } => Some(error.as_ref()),
            _ => None,
        }
    }

    /// Requests sent for the failed call (0 when it failed before sending anything).
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Api { attempts, .. }
            | Self::Send { attempts, .. }
            | Self::ReadBody { attempts, .. }
            | Self::BodyTooLarge { attempts, .. }
            | Self::Decode { attempts, .. } => *attempts,
            Self::ResolveEndpoint { .. }
            | Self::BuildClient(_)
            | Self::LoadCaBundle(_)
            | Self::EmptyCaBundle
            | Self::BuildRequest { .. }
            | Self::CheckEndpoint { .. }
            | Self::Paging { .. }
            | Self::NotSent { .. }
            | Self::Abandoned { .. } => 0,
        }
    }

    /// Whether the endpoint was refused by the allowlist or scheme rules.
    pub fn is_endpoint_refused(&self) -> bool {
        matches!(self, Self::ResolveEndpoint { .. } | Self::CheckEndpoint { .. })
    }

    /// Sets the attempt count on errors that carry one.
    pub(crate) fn with_attempts(mut self, n: u32) -> Self {
        match &mut self {
            Self::Api { attempts, .. }
            | Self::Send { attempts, .. }
            | Self::ReadBody { attempts, .. }
            | Self::BodyTooLarge { attempts, .. }
            | Self::Decode { attempts, .. } => *attempts = n,
            _ => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, body: &str) -> ApiError {
        ApiError::from_response(status, Some("req-1".into()), body.as_bytes())
    }

    fn pair(e: &ApiError) -> (&str, &str) {
        (e.code.as_str(), e.message.as_str())
    }

    #[test]
    fn reads_every_body_shape() {
        assert_eq!(pair(&parse(400, r#"{"error_code":"KPS.XXX","error_msg":"XXX"}"#)), ("KPS.XXX", "XXX"));
        assert_eq!(pair(&parse(400, r#"{"errorCode":"SDRS.1","errorMsg":"bad"}"#)), ("SDRS.1", "bad"));
        assert_eq!(pair(&parse(400, r#"{"code":"APIGW.0301","message":"m"}"#)), ("APIGW.0301", "m"));
        assert_eq!(pair(&parse(400, r#"{"error":{"code":"E.1","message":"nested"}}"#)), ("E.1", "nested"));
        assert_eq!(
            pair(&parse(400, r#"{"badRequest":{"error_code":"E.2","error_msg":"nested snake"}}"#)),
            ("E.2", "nested snake")
        );
        assert_eq!(pair(&parse(500, r#"{"code":500,"message":"numeric code"}"#)), ("500", "numeric code"));
    }

    #[test]
    fn follows_the_sdk_order() {
        let e = parse(
            400,
            r#"{"code":"C","message":"M","errorCode":"EC","errorMsg":"EM","error_code":"S","error_msg":"SM"}"#,
        );
        assert_eq!(pair(&e), ("S", "SM"));
        let e = parse(400, r#"{"code":"C","message":"M","errorCode":"EC","errorMsg":"EM"}"#);
        assert_eq!(pair(&e), ("EC", "EM"));
        let e = parse(400, r#"{"error":{"code":"N","message":"nested"},"code":"T","message":"top"}"#);
        assert_eq!(pair(&e), ("T", "top"), "top-level pairs win over nested ones");
        let e = parse(400, r#"{"error_code":"only code"}"#);
        assert_eq!(e.code, "400", "a code without its message is not a pair");
        assert_eq!(e.message, r#"{"error_code":"only code"}"#);
    }

    #[test]
    fn empty_or_non_json_bodies_fall_back_to_status_and_text() {
        let e = parse(502, "");
        assert_eq!(pair(&e), ("502", ""));
        let e = parse(503, "<html>Service Unavailable</html>\n");
        assert_eq!(pair(&e), ("503", "<html>Service Unavailable</html>"));
        let e = parse(400, "[1,2]");
        assert_eq!(pair(&e), ("400", "[1,2]"));
        let long = "x".repeat(5000);
        let e = parse(500, &long);
        assert_eq!(e.message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(e.message.ends_with('…'));
        let e = ApiError::from_response(500, None, &[0xff, 0xfe, b'a']);
        assert_eq!(e.code, "500");
        assert!(e.message.ends_with('a'));
    }

    #[test]
    fn keeps_request_id_and_encoded_authorization_message() {
        let e = parse(
            403,
            r#"{"error_code":"IAM.0003","error_msg":"denied","encoded_authorization_message":"enc=="}"#,
        );
        assert_eq!(e.http_status, 403);
        assert_eq!(e.request_id.as_deref(), Some("req-1"));
        assert_eq!(e.encoded_authorization_message.as_deref(), Some("enc=="));
        assert_eq!(e.class(), ErrorClass::Authentication);
        assert_eq!(ApiError::from_response(403, Some(String::new()), b"").request_id, None);
        assert_eq!(e.to_string(), "HTTP 403 IAM.0003: denied (request id req-1)");
    }

    #[test]
    fn classification_table() {
        use ErrorClass::*;
        let table = [
            (400, Permanent),
            (401, Authentication),
            (403, Authentication),
            (404, NotFound),
            (405, Permanent),
            (406, Permanent),
            (407, Permanent),
            (408, Transient),
            (409, Permanent),
            (429, Throttled),
            (500, Transient),
            (501, Transient),
            (502, Transient),
            (503, Transient),
            (504, Transient),
            (302, Permanent),
        ];
        for (status, class) in table {
            assert_eq!(ErrorClass::of_status(status), class, "{status}");
        }
        let responses = [
            (404, r#"{"error":{"code":"SDRS.1301","message":"The failure job does not exist."}}"#, NotFound),
            (404, r#"{"error_code":"KPS.0010","error_msg":"The failed task does not exist."}"#, NotFound),
            (404, "", NotFound),
            (404, "<html>Not Found</html>", NotFound),
            (
                404,
                r#"{"error_code":"APIGW.0101","error_msg":"The API does not exist or has not been published in the environment","request_id":"r"}"#,
                Permanent,
            ),
            (404, r#"{"code":"APIGW.0101","message":"nested shape"}"#, Permanent),
            (
                400,
                r#"{"error_code":"APIGW.0101","error_msg":"only a 404 says the API is missing"}"#,
                Permanent,
            ),
            (503, r#"{"error_code":"APIGW.0101","error_msg":"m"}"#, Transient),
            (429, r#"{"error_code":"APIGW.0308","error_msg":"throttled"}"#, Throttled),
        ];
        for (status, body, class) in responses {
            assert_eq!(parse(status, body).class(), class, "{status} {body}");
        }
        assert_eq!(ErrorClass::of_response(404, "APIGW.0101"), Permanent);
        assert_eq!(ErrorClass::of_response(404, "SDRS.1301"), NotFound);
        assert!(!Permanent.is_retryable());
        assert!(Throttled.is_retryable() && Transient.is_retryable() && Decode.is_retryable());
        assert!(!Authentication.is_retryable() && !NotFound.is_retryable() && !Permanent.is_retryable());
    }

    #[test]
    fn error_classes_and_messages() {
        let call = Call { service: Service::Kps, operation: "DeleteFailedTask", project_id: "p1".into() };
        let api = CloudError::Api { call: call.clone(), attempts: 3, error: Box::new(parse(429, "")) };
        assert_eq!(api.class(), ErrorClass::Throttled);
        assert_eq!(api.attempts(), 3);
        assert_eq!(api.api_error().map(|e| e.http_status), Some(429));
        assert_eq!(
            api.to_string(),
            "KPS DeleteFailedTask for project p1 failed after 3 attempt(s): HTTP 429 429:  (request id req-1)"
        );
        let decode = CloudError::Decode {
            call: call.clone(),
            attempts: 1,
            http_status: 200,
            path: ".".into(),
            source: serde_json::from_str::<u8>("x").unwrap_err(),
        };
        assert_eq!(decode.class(), ErrorClass::Decode, "not JSON: worth another try");
        assert_eq!(decode.with_attempts(4).attempts(), 4);
        let shape = CloudError::Decode {
            call: call.clone(),
            attempts: 1,
            http_status: 200,
            path: "tasks[0].task_id".into(),
            source: serde_json::from_str::<u8>("[]").unwrap_err(),
        };
        assert_eq!(shape.class(), ErrorClass::Permanent, "the wrong shape comes back on every try");
        assert_eq!(
            shape.to_string(),
            "KPS DeleteFailedTask for project p1 failed after 1 attempt(s): HTTP 200 body is not the expected JSON at `tasks[0].task_id`"
        );
        let big = CloudError::BodyTooLarge { call: call.clone(), attempts: 1, limit: 10 };
        assert_eq!(big.class(), ErrorClass::Permanent);
        assert!(big.api_error().is_none());
        let refused = CloudError::CheckEndpoint { call, source: EndpointError::NotAllowed("evil".into()) };
        assert_eq!(refused.class(), ErrorClass::Permanent);
        assert!(refused.is_endpoint_refused());
        assert_eq!(refused.attempts(), 0);
    }
}
