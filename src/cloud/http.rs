//! The HTTP core every SDRS/KPS call goes through (network I/O): allowlist check, rate limiting,
//! authentication (SDK-HMAC-SHA256 signing or `X-Auth-Token`), a capped body read, error
//! classification and retries.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing::Instrument;

use crate::cloud::credentials::Credentials;
use crate::cloud::endpoint::{self, Endpoint, EndpointPolicy, Service};
use crate::cloud::error::{ApiError, Call, CloudError, ErrorClass};
use crate::cloud::observe::CallObserver;
use crate::cloud::ratelimit::{LimiterKey, Outcome, RateLimiters};
use crate::cloud::retry::{RetryPolicy, parse_retry_after};
use crate::cloud::signing;

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("taskreaper/", env!("CARGO_PKG_VERSION"));

/// Bytes of an error response kept for its message; the rest is not read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Headers whose values are credentials; marked sensitive so no layer prints them.
const SENSITIVE_HEADERS: [&str; 3] = ["authorization", "x-auth-token", "x-security-token"];

/// Where the time comes from, for `X-Sdk-Date` and HTTP-date `Retry-After` values.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

impl<F: Fn() -> Timestamp + Send + Sync> Clock for F {
    fn now(&self) -> Timestamp {
        self()
    }
}

/// Settings shared by every client of the process.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Time allowed to open a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time allowed for one request, from sending to the last body byte.
    pub request_timeout: Duration,
    /// Largest successful response body read; a bigger one fails the call.
    pub max_body_bytes: usize,
    /// Extra trusted roots (PEM, one or more certificates), added to the system's. Verification of
    /// server certificates is always on.
    pub ca_bundle_pem: Option<Vec<u8>>,
    /// Which endpoints may receive credentials.
    pub endpoints: EndpointPolicy,
    pub retry: RetryPolicy,
    /// Most requests in flight through this core, across every credential. A request holds its
    /// slot only while it is on the wire: never through a rate-limit wait, a `Retry-After` pause
    /// or a retry's backoff, so a throttled credential cannot starve the others.
    pub max_in_flight: usize,
    /// `User-Agent` of every request; [`USER_AGENT`] with the replica's name in the controller.
    pub user_agent: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 8 * 1024 * 1024,
            ca_bundle_pem: None,
            endpoints: EndpointPolicy::default(),
            retry: RetryPolicy::default(),
            max_in_flight: 16,
            user_agent: USER_AGENT.to_string(),
        }
    }
}

/// Who calls and where: one project's credentials and one service endpoint.
#[derive(Clone, Debug)]
pub struct ClientContext {
    pub credentials: Arc<Credentials>,
    pub project_id: String,
    pub endpoint: Endpoint,
}

/// Decides, right before a DELETE goes on the wire (after every wait), whether it may, and by when
/// it must be over (`None`: no bound); `Err` says why it may not.
pub type DeleteGate = Arc<dyn Fn() -> Result<Option<tokio::time::Instant>, String> + Send + Sync>;

/// The shared HTTP core: connection pool, settings, rate limiters and clock. Cheap to clone.
#[derive(Clone)]
pub struct CloudHttp {
    inner: Arc<Inner>,
    delete_gate: Option<DeleteGate>,
    observer: Option<Arc<dyn CallObserver>>,
}

struct Inner {
    client: reqwest::Client,
    config: HttpConfig,
    limiters: Arc<RateLimiters>,
    clock: Arc<dyn Clock>,
    in_flight: tokio::sync::Semaphore,
}

impl std::fmt::Debug for CloudHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudHttp").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

/// One request of a call, before authentication. `path` is already percent-encoded.
pub(crate) struct ApiRequest {
    pub operation: &'static str,
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
}

/// What a single delete achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The service deleted the item.
    Deleted,
    /// The service answered 404: the item was already gone, which is what a delete wants.
    AlreadyGone,
}

impl DeleteOutcome {
    /// Reads the result of a single delete: success is `Deleted`, a 404 of the service is
    /// `AlreadyGone`. The gateway's 404 for an unpublished API (wrong endpoint or path) is an error.
    pub(crate) fn of(result: Result<(), CloudError>) -> Result<Self, CloudError> {
        match result {
            Ok(()) => Ok(Self::Deleted),
            Err(e) if e.class() == ErrorClass::NotFound => Ok(Self::AlreadyGone),
            Err(e) => Err(e),
        }
    }
}

/// One response, read.
struct RawReply {
    status: u16,
    request_id: Option<String>,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

/// A 2xx body that did not decode, and where in it decoding stopped.
#[derive(Debug)]
pub(crate) struct BodyError {
    pub path: String,
    pub source: serde_json::Error,
}

/// Decodes a JSON body, keeping the path of the field that failed.
pub(crate) fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| BodyError { path: e.path().to_string(), source: e.into_inner() })?;
    de.end().map_err(|source| BodyError { path: ".".into(), source })?;
    Ok(value)
}

/// Reads the body of a DELETE answered 2xx: the services send none (or JSON without an error). An
/// HTML page, or JSON carrying an `error_code`, is a gateway's error dressed as a success: the
/// DELETE may not have been handled, so it is an error a retry may fix, never a deletion.
pub(crate) fn delete_body(body: &[u8]) -> Result<(), BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let value: serde_json::Value = json(body)?;
    // The error shapes the SDK reads first: `error_code`, or `errorCode`.
    let code =
        ["error_code", "errorCode"].iter().find_map(|k| value.get(*k).and_then(serde_json::Value::as_str));
    match code {
        Some(code) => Err(BodyError {
            path: "error_code".into(),
            source: serde_json::Error::io(std::io::Error::other(format!(
                "a 2xx answer to a DELETE carries error_code {code:?}"
            ))),
        }),
        None => Ok(()),
    }
}

impl CloudHttp {
    /// Builds the HTTPS client: timeouts, extra CA roots, no redirects (a redirect could carry the
    /// token elsewhere).
    pub fn new(
        config: HttpConfig,
        limiters: Arc<RateLimiters>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, CloudError> {
        let client = build_client(&config)?;
        let in_flight = tokio::sync::Semaphore::new(config.max_in_flight.max(1));
        Ok(Self {
            inner: Arc::new(Inner { client, config, limiters, clock, in_flight }),
            delete_gate: None,
            observer: None,
        })
    }

    /// The same core, reporting every request and every throttling wait to `observer`.
    pub fn with_observer(&self, observer: Arc<dyn CallObserver>) -> Self {
        Self { observer: Some(observer), ..self.clone() }
    }

    /// The same core (same pool, limiters and in-flight bound), with every DELETE checked by
    /// `gate` right before it is sent: a DELETE that waited for a rate limit or an in-flight slot
    /// is checked after the wait, not before it.
    pub fn with_delete_gate(&self, gate: DeleteGate) -> Self {
        Self { delete_gate: Some(gate), ..self.clone() }
    }

    /// The settings this core was built with.
    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    /// Resolves a service endpoint (override, or derived from the region) under this core's policy.
    pub fn endpoint(
        &self,
        service: Service,
        region: &str,
        override_url: Option<&str>,
    ) -> Result<Endpoint, CloudError> {
        endpoint::resolve(service, region, override_url, &self.inner.config.endpoints)
            .map_err(|source| CloudError::ResolveEndpoint { service, source })
    }

    /// Runs one call with retries. `parse` turns a 2xx body into the result (see [`json`]); when it
    /// fails the call fails with [`CloudError::Decode`], retried only when the body was not JSON.
    pub(crate) async fn call<T>(
        &self,
        ctx: &ClientContext,
        req: &ApiRequest,
        parse: impl Fn(&[u8]) -> Result<T, BodyError>,
    ) -> Result<T, CloudError> {
        let call = Call {
            service: ctx.endpoint.service(),
            operation: req.operation,
            project_id: ctx.project_id.clone(),
        };
        let span = tracing::info_span!(
            "cloud_call",
            service = call.service.as_str(),
            operation = call.operation,
            project = %call.project_id,
            request_id = tracing::field::Empty,
        );
        self.call_with_retries(ctx, req, &call, parse).instrument(span).await
    }

    async fn call_with_retries<T>(
        &self,
        ctx: &ClientContext,
        req: &ApiRequest,
        call: &Call,
        parse: impl Fn(&[u8]) -> Result<T, BodyError>,
    ) -> Result<T, CloudError> {
        let config = &self.inner.config;
        config
            .endpoints
            .check(&ctx.endpoint)
            .map_err(|source| CloudError::CheckEndpoint { call: call.clone(), source })?;
        let key = LimiterKey { host: ctx.endpoint.authority(), identity: ctx.credentials.identity() };
        let start = tokio::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.inner.limiters.acquire(&key).await;
            let sent = {
                // A closed semaphore cannot happen (it is never closed); sending anyway is harmless.
                let _slot = self.inner.in_flight.acquire().await.ok();
                let deadline = match &self.delete_gate {
                    Some(gate) if req.method == Method::DELETE => {
                        gate().map_err(|reason| CloudError::NotSent { call: call.clone(), reason })?
                    }
                    _ => None,
                };
                let sending = tokio::time::Instant::now();
                let sent = match deadline {
                    None => self.send_once(ctx, req, call).await,
                    Some(at) => match tokio::time::timeout_at(at, self.send_once(ctx, req, call)).await {
                        Ok(sent) => sent,
                        Err(_) => return Err(CloudError::Abandoned { call: call.clone() }),
                    },
                };
                if let Some(observer) = &self.observer {
                    let status = sent.as_ref().ok().map(|raw| raw.status);
                    observer.request(call.service, call.operation, status, sending.elapsed());
                }
                if let Ok(RawReply { request_id: Some(id), .. }) = &sent {
                    tracing::Span::current().record("request_id", id.as_str());
                }
                sent
            };
            // Any answer but a 429 or a 5xx says the server took this rate; transport errors say
            // nothing about it.
            match &sent {
                Ok(raw) if raw.status == 429 => self.inner.limiters.record(&key, Outcome::Throttled),
                Ok(raw) if raw.status < 500 => self.inner.limiters.record(&key, Outcome::Ok),
                _ => {}
            }
            let (error, retry_after) = match sent {
                Ok(raw) if (200..300).contains(&raw.status) => match parse(&raw.body) {
                    Ok(value) => {
                        tracing::debug!(
                            status = raw.status,
                            attempts = attempt,
                            request_id = raw.request_id.as_deref().unwrap_or(""),
                            "cloud call succeeded"
                        );
                        return Ok(value);
                    }
                    Err(BodyError { path, source }) => (
                        CloudError::Decode {
                            call: call.clone(),
                            attempts: 0,
                            http_status: raw.status,
                            path,
                            source,
                        },
                        None,
                    ),
                },
                Ok(raw) => {
                    let error = Box::new(ApiError::from_response(raw.status, raw.request_id, &raw.body));
                    (CloudError::Api { call: call.clone(), attempts: 0, error }, raw.retry_after)
                }
                Err(error) => (error, None),
            };
            let error = error.with_attempts(attempt);
            let class = error.class();
            let status = error.api_error().map_or(0, |e| e.http_status);
            let request_id = error.api_error().and_then(|e| e.request_id.clone()).unwrap_or_default();
            if let (429, Some(wait)) = (status, retry_after) {
                self.inner.limiters.pause(&key, wait.min(config.retry.max_delay));
            }
            let delay = {
                let mut rng = rand::rng();
                config.retry.next_delay(class, attempt, start.elapsed(), retry_after, &mut rng)
            };
            match delay {
                Some(delay) => {
                    if let (ErrorClass::Throttled, Some(observer)) = (class, &self.observer) {
                        observer.throttle_wait(call.service, delay);
                    }
                    tracing::info!(
                        class = class.as_str(),
                        status,
                        attempts = attempt,
                        request_id,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "cloud call failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                None if class == ErrorClass::NotFound => {
                    tracing::debug!(status, attempts = attempt, request_id, "cloud call found nothing");
                    return Err(error);
                }
                None => {
                    tracing::warn!(
                        class = class.as_str(),
                        status,
                        attempts = attempt,
                        request_id,
                        error = %error,
                        "cloud call failed"
                    );
                    return Err(error);
                }
            }
        }
    }

    /// Sends one request and reads its response. Errors carry `attempts: 0`; the caller sets it.
    async fn send_once(
        &self,
        ctx: &ClientContext,
        req: &ApiRequest,
        call: &Call,
    ) -> Result<RawReply, CloudError> {
        let headers = request_headers(ctx, req, &self.inner.config.user_agent, self.inner.clock.now());
        let header_map = to_header_map(&headers)
            .map_err(|header| CloudError::BuildRequest { call: call.clone(), header })?;
        let url = ctx.endpoint.url_for(&req.path, &signing::canonical_query(&req.query));
        let send = |source| CloudError::Send { call: call.clone(), attempts: 0, source };
        let mut response = self
            .inner
            .client
            .request(req.method.clone(), url)
            .headers(header_map)
            .send()
            .await
            .map_err(send)?;
        let status = response.status().as_u16();
        let header =
            |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let request_id = header("x-request-id");
        let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v, self.inner.clock.now()));
        let success = (200..300).contains(&status);
        let limit = self.inner.config.max_body_bytes;
        let too_large = || CloudError::BodyTooLarge { call: call.clone(), attempts: 0, limit };
        if success && response.content_length().is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|source| CloudError::ReadBody {
            call: call.clone(),
            attempts: 0,
            source,
        })? {
            if !success && body.len() + chunk.len() > MAX_ERROR_BODY {
                let room = MAX_ERROR_BODY - body.len();
                body.extend_from_slice(&chunk[..room.min(chunk.len())]);
                break;
            }
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(RawReply { status, request_id, retry_after, body })
    }
}

/// The HTTPS client of `config`: timeouts, extra CA roots, no redirects (a redirect could carry the
/// credentials elsewhere). IAM calls use one built the same way.
pub(crate) fn build_client(config: &HttpConfig) -> Result<reqwest::Client, CloudError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .https_only(!config.endpoints.allow_http);
    if let Some(pem) = &config.ca_bundle_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(CloudError::LoadCaBundle)?;
        if certs.is_empty() {
            return Err(CloudError::EmptyCaBundle);
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(CloudError::BuildClient)
}

/// The headers of one request, authentication included. With AK/SK the signature covers exactly
/// these headers (all but `Authorization` itself), the canonical query and an empty body.
pub(crate) fn request_headers(
    ctx: &ClientContext,
    req: &ApiRequest,
    user_agent: &str,
    now: Timestamp,
) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = vec![
        ("Host".into(), ctx.endpoint.authority()),
        ("Accept".into(), "application/json".into()),
        ("User-Agent".into(), user_agent.into()),
        ("X-Project-Id".into(), ctx.project_id.clone()),
    ];
    match ctx.credentials.as_ref() {
        Credentials::AkSk { access_key_id, secret_access_key, security_token } => {
            let sdk_date = signing::format_sdk_date(now);
            headers.push((signing::DATE_HEADER.into(), sdk_date.clone()));
            if let Some(token) = security_token {
                headers.push(("X-Security-Token".into(), token.expose().to_string()));
            }
            let signed = signing::Request {
                method: req.method.as_str(),
                path: &req.path,
                query: &req.query,
                headers: &headers,
                body: b"",
            };
            let auth =
                signing::authorize(&signed, access_key_id, secret_access_key.expose().as_bytes(), &sdk_date);
            headers.push(("Authorization".into(), auth.header_value()));
        }
        Credentials::Token { auth_token } => {
            headers.push(("X-Auth-Token".into(), auth_token.expose().to_string()));
        }
    }
    headers
}

/// Converts headers for sending, marking credential headers sensitive. On a value that cannot be
/// sent, returns the header's name (never its value).
fn to_header_map(headers: &[(String, String)]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| name.clone())?;
        let mut header_value = HeaderValue::from_str(value).map_err(|_| name.clone())?;
        if SENSITIVE_HEADERS.contains(&header_name.as_str()) {
            header_value.set_sensitive(true);
        }
        map.insert(header_name, header_value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::credentials::Secret;
    use crate::cloud::ratelimit::RateControl;

    fn ctx(credentials: Credentials, override_url: &str) -> ClientContext {
        let policy = EndpointPolicy {
            allowlist: crate::cloud::endpoint::Allowlist::parse(["127.0.0.1", "*.myhuaweicloud.com"])
                .unwrap(),
            allow_http: true,
        };
        ClientContext {
            credentials: Arc::new(credentials),
            project_id: "0605767b5c00d4bb2f10c01a1e3b3a7e".into(),
            endpoint: endpoint::resolve(Service::Sdrs, "cn-north-4", Some(override_url), &policy).unwrap(),
        }
    }

    fn list_request() -> ApiRequest {
        ApiRequest {
            operation: "ListFailureJobs",
            method: Method::GET,
            path: "/v1/0605767b5c00d4bb2f10c01a1e3b3a7e/task-center/failure-jobs".into(),
            query: vec![("resource_name".into(), "a b+c".into()), ("limit".into(), "10".into())],
        }
    }

    fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    #[test]
    fn aksk_signature_covers_exactly_the_sent_headers() {
        let creds = Credentials::AkSk {
            access_key_id: "AK".into(),
            secret_access_key: Secret::new("SK"),
            security_token: Some(Secret::new("STS")),
        };
        let c = ctx(creds, "http://127.0.0.1:8443");
        let req = list_request();
        let now: Timestamp = "2026-11-22T05:30:00Z".parse().unwrap();
        let headers = request_headers(&c, &req, USER_AGENT, now);
        assert_eq!(get(&headers, "Host"), Some("127.0.0.1:8443"));
        assert_eq!(get(&headers, "X-Sdk-Date"), Some("20261122T053000Z"));
        assert_eq!(get(&headers, "X-Security-Token"), Some("STS"));
        assert_eq!(get(&headers, "X-Project-Id"), Some("0605767b5c00d4bb2f10c01a1e3b3a7e"));
        assert_eq!(get(&headers, "User-Agent"), Some(USER_AGENT));
        let auth = signing::Authorization::parse(get(&headers, "Authorization").unwrap()).unwrap();
        assert_eq!(auth.access_key, "AK");
        assert_eq!(
            auth.signed_headers,
            ["accept", "host", "user-agent", "x-project-id", "x-sdk-date", "x-security-token"]
        );
        let unsigned: Vec<(String, String)> =
            headers.iter().filter(|(k, _)| k != "Authorization").cloned().collect();
        let as_server_sees = signing::Request {
            method: "GET",
            path: &req.path,
            query: &req.query,
            headers: &unsigned,
            body: b"",
        };
        assert!(signing::verify(&as_server_sees, &auth, b"SK", "20261122T053000Z"));
        assert!(get(&headers, "X-Auth-Token").is_none());
    }

    #[test]
    fn token_credentials_send_x_auth_token_unsigned() {
        let c = ctx(
            Credentials::Token { auth_token: Secret::new("tok") },
            "https://sdrs.cn-north-4.myhuaweicloud.com",
        );
        let headers = request_headers(&c, &list_request(), USER_AGENT, Timestamp::UNIX_EPOCH);
        assert_eq!(get(&headers, "X-Auth-Token"), Some("tok"));
        assert_eq!(get(&headers, "Host"), Some("sdrs.cn-north-4.myhuaweicloud.com"));
        assert!(get(&headers, "Authorization").is_none() && get(&headers, "X-Sdk-Date").is_none());
    }

    #[test]
    fn credential_headers_are_sensitive_and_bad_values_name_only_the_header() {
        let headers = vec![
            ("Authorization".to_string(), "SDK-HMAC-SHA256 x".to_string()),
            ("X-Auth-Token".to_string(), "t".to_string()),
            ("X-Project-Id".to_string(), "p".to_string()),
        ];
        let map = to_header_map(&headers).unwrap();
        assert!(map["authorization"].is_sensitive() && map["x-auth-token"].is_sensitive());
        assert!(!map["x-project-id"].is_sensitive());
        let bad = vec![("X-Auth-Token".to_string(), "secret\nvalue".to_string())];
        assert_eq!(to_header_map(&bad).unwrap_err(), "X-Auth-Token");
    }

    #[test]
    fn the_sent_query_is_the_signed_canonical_query() {
        let c = ctx(Credentials::Token { auth_token: Secret::new("t") }, "http://127.0.0.1:1");
        let req = list_request();
        let url = c.endpoint.url_for(&req.path, &signing::canonical_query(&req.query));
        assert_eq!(
            url,
            "http://127.0.0.1:1/v1/0605767b5c00d4bb2f10c01a1e3b3a7e/task-center/failure-jobs?limit=10&resource_name=a%20b%2Bc"
        );
        let parsed = reqwest::Url::parse(&url).unwrap();
        assert_eq!(
            parsed.query(),
            Some("limit=10&resource_name=a%20b%2Bc"),
            "the URL parser keeps the encoding"
        );
    }

    #[test]
    fn ca_bundle_must_hold_certificates() {
        let limiters = RateLimiters::new(RateControl::default());
        let config = HttpConfig { ca_bundle_pem: Some(b"not a pem".to_vec()), ..HttpConfig::default() };
        let err = CloudHttp::new(config, limiters, Arc::new(SystemClock)).unwrap_err();
        assert!(matches!(err, CloudError::EmptyCaBundle), "{err:?}");
    }

    #[test]
    fn a_delete_answered_2xx_with_an_error_page_is_a_retryable_error() {
        for fine in [&b""[..], b"  \n", b"{}", br#"{"request_id":"r"}"#] {
            assert!(delete_body(fine).is_ok(), "{:?}", String::from_utf8_lossy(fine));
        }
        let call =
            Call { service: crate::api::Service::Kps, operation: "DeleteFailedTask", project_id: "p".into() };
        for page in [
            &b"<html><body>Service maintenance</body></html>"[..],
            br#"{"error_code":"APIGW.0101","error_msg":"x"}"#,
            br#"{"errorCode":"X","errorMsg":"y"}"#,
        ] {
            let BodyError { path, source } = delete_body(page).unwrap_err();
            let error =
                CloudError::Decode { call: call.clone(), attempts: 1, http_status: 200, path, source };
            assert_eq!(error.class(), ErrorClass::Decode, "{error}");
            assert!(error.class().is_retryable());
        }
    }

    #[test]
    fn only_the_services_404_means_already_gone() {
        let call = Call { service: Service::Sdrs, operation: "DeleteFailureJob", project_id: "p".into() };
        let reply = |body: &str| {
            let error = Box::new(ApiError::from_response(404, None, body.as_bytes()));
            Err(CloudError::Api { call: call.clone(), attempts: 1, error })
        };
        assert_eq!(DeleteOutcome::of(Ok(())).unwrap(), DeleteOutcome::Deleted);
        let gone = reply(r#"{"error":{"code":"SDRS.1301","message":"The failure job does not exist."}}"#);
        assert_eq!(DeleteOutcome::of(gone).unwrap(), DeleteOutcome::AlreadyGone);
        let no_api = reply(
            r#"{"error_code":"APIGW.0101","error_msg":"The API does not exist or has not been published in the environment"}"#,
        );
        let err = DeleteOutcome::of(no_api).unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert_eq!(err.api_error().map(|e| e.code.as_str()), Some("APIGW.0101"));
    }
}
