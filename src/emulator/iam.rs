//! IAM as far as workload identity and project discovery need it: OIDC federation (an ID token for
//! an unscoped IAM token, that token for temporary AK/SK + security token), the project of a region
//! and every project of the caller. Keeps issued tokens and temporary keys in memory and counts its
//! calls apart from the SDRS/KPS ones; the handlers do no I/O of their own.
//!
//! ```text
//! POST /v3.0/OS-AUTH/id-token/tokens     X-Idp-Id + {"auth":{"id_token":{"id":JWT}}} -> X-Subject-Token
//! POST /v3.0/OS-CREDENTIAL/securitytokens {"auth":{"identity":{"methods":["token"],"token":{"id","duration_seconds"}}}}
//! GET  /v3/projects?name=REGION          signed; the projects with that name
//! GET  /v3/auth/projects                 signed; every project
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cloud::credentials::Secret;
use crate::cloud::signing;

use super::App;
use super::auth::{self, AUTH_TOKEN_HEADER, Principal, TemporaryKey};
use super::calls::route_key;
use super::gate::{self, MAX_BODY};
use super::oidc::{self, IdTokenError, OidcProvider, Subject};
use super::query::decode_query;

/// Federation: an ID token for an unscoped IAM token.
pub const IAM_ID_TOKEN: &str = "/v3.0/OS-AUTH/id-token/tokens";
/// Temporary access keys for an IAM token.
pub const IAM_SECURITY_TOKENS: &str = "/v3.0/OS-CREDENTIAL/securitytokens";
/// Projects, filtered by `name` (a region id names its main project).
pub const IAM_PROJECTS: &str = "/v3/projects";
/// Every project the caller can use.
pub const IAM_AUTH_PROJECTS: &str = "/v3/auth/projects";
/// The header that names the identity provider.
pub const IDP_ID_HEADER: &str = "X-Idp-Id";
/// The header that carries an issued IAM token.
pub const SUBJECT_TOKEN_HEADER: &str = "X-Subject-Token";
/// The account every project belongs to.
pub const DOMAIN_ID: &str = "e0a9a9fa0a1f4bd8b0e5c4d3a2b1c0d9";
/// How long an unscoped IAM token from federation lasts.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// What `duration_seconds` defaults to, as IAM documents.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(900);

/// Error codes of the emulated IAM.
pub mod iam_code {
    pub const BAD_REQUEST: &str = "IAM.0001";
    pub const UNKNOWN_IDP: &str = "IAM.0002";
    pub const ID_TOKEN_REFUSED: &str = "IAM.0003";
    pub const TOKEN_INVALID: &str = "IAM.0004";
    pub const DURATION_OUT_OF_RANGE: &str = "IAM.0005";
    pub const UNAUTHENTICATED: &str = "IAM.0006";
}

/// What IAM knows at start; change it later through [`Iam`] or `/_emulator/iam`.
#[derive(Clone, Debug)]
pub struct IamSettings {
    /// Identity providers by id (`X-Idp-Id`).
    pub providers: BTreeMap<String, OidcProvider>,
    /// Project names by project id; the main project of a region is named after the region.
    pub projects: BTreeMap<String, String>,
    /// Shortest `duration_seconds` accepted (IAM: 900); tests lower it.
    pub min_duration: Duration,
    /// Longest lifetime of temporary keys, whatever was asked (IAM: 24 h); tests lower it to see
    /// expiry and refresh.
    pub max_duration: Duration,
}

impl Default for IamSettings {
    fn default() -> Self {
        Self {
            providers: BTreeMap::new(),
            projects: BTreeMap::new(),
            min_duration: DEFAULT_DURATION,
            max_duration: TOKEN_LIFETIME,
        }
    }
}

/// A temporary key as the admin API shows it: no secret, no token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedKey {
    pub access_key: String,
    pub idp_id: String,
    /// The ID token's `sub`.
    pub subject: String,
    pub expires_at: Timestamp,
    /// Cloud calls accepted with this key.
    pub calls: u64,
}

/// Why an IAM call failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IamError {
    #[error("the request body is not the expected JSON: {0}")]
    BadBody(String),
    #[error("the X-Idp-Id header is missing")]
    MissingIdp,
    #[error("identity provider {0} does not exist")]
    UnknownIdp(String),
    #[error("the id_token was refused")]
    IdTokenRefused(#[source] IdTokenError),
    #[error("the auth.identity.methods must include token")]
    NotTokenMethod,
    #[error("the IAM token is missing, unknown or expired")]
    TokenInvalid,
    #[error("duration_seconds {got} is below the minimum {min}")]
    DurationTooShort { got: u64, min: u64 },
    #[error("{0}")]
    Unauthenticated(String),
}

impl IamError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadBody(_) | Self::MissingIdp | Self::NotTokenMethod => {
                (StatusCode::BAD_REQUEST, iam_code::BAD_REQUEST)
            }
            Self::UnknownIdp(_) => (StatusCode::NOT_FOUND, iam_code::UNKNOWN_IDP),
            Self::IdTokenRefused(_) => (StatusCode::UNAUTHORIZED, iam_code::ID_TOKEN_REFUSED),
            Self::TokenInvalid => (StatusCode::UNAUTHORIZED, iam_code::TOKEN_INVALID),
            Self::DurationTooShort { .. } => (StatusCode::BAD_REQUEST, iam_code::DURATION_OUT_OF_RANGE),
            Self::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, iam_code::UNAUTHENTICATED),
        }
    }

    fn render(&self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match self {
            Self::IdTokenRefused(cause) => format!("{self}: {cause}"),
            _ => self.to_string(),
        };
        (status, Json(json!({"error_code": code, "error_msg": message}))).into_response()
    }
}

struct IssuedToken {
    idp_id: String,
    subject: Subject,
    expires_at: Timestamp,
}

struct Temporary {
    key: TemporaryKey,
    view: IssuedKey,
}

struct IamState {
    settings: IamSettings,
    /// By token id.
    tokens: BTreeMap<String, IssuedToken>,
    /// By access key id.
    keys: BTreeMap<String, Temporary>,
    calls: BTreeMap<String, u64>,
}

/// IAM's state, shared by the handlers and the gate.
#[derive(Clone)]
pub struct Iam {
    inner: Arc<Mutex<IamState>>,
}

impl std::fmt::Debug for Iam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iam").finish_non_exhaustive()
    }
}

/// Temporary credentials as the securitytokens call answers them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCredentials {
    pub access: String,
    pub secret: Secret,
    pub security_token: Secret,
    pub expires_at: Timestamp,
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// `2026-11-22T05:30:00.000000Z`, the form IAM writes and the SDK parses.
pub fn iam_time(at: Timestamp) -> String {
    format!("{}.{:06}Z", at.strftime("%Y-%m-%dT%H:%M:%S"), at.subsec_microsecond())
}

fn plus(at: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|d| at.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

impl Iam {
    pub fn new(settings: IamSettings) -> Self {
        Self {
            inner: Arc::new(Mutex::new(IamState {
                settings,
                tokens: BTreeMap::new(),
                keys: BTreeMap::new(),
                calls: BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, IamState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds or replaces an identity provider.
    pub fn set_provider(&self, idp_id: impl Into<String>, provider: OidcProvider) {
        self.lock().settings.providers.insert(idp_id.into(), provider);
    }

    /// Names projects (project id to name); a region's main project is named after the region.
    pub fn name_projects(&self, names: impl IntoIterator<Item = (String, String)>) {
        self.lock().settings.projects.extend(names);
    }

    /// Sets the shortest duration accepted and the longest lifetime given to temporary keys.
    pub fn set_durations(&self, min: Duration, max: Duration) {
        let mut state = self.lock();
        state.settings.min_duration = min;
        state.settings.max_duration = max;
    }

    /// `(min, max)` of [`Self::set_durations`].
    pub fn durations(&self) -> (Duration, Duration) {
        let state = self.lock();
        (state.settings.min_duration, state.settings.max_duration)
    }

    /// Each identity provider's issuer and audiences.
    pub fn providers(&self) -> BTreeMap<String, (String, Vec<String>)> {
        let state = self.lock();
        state
            .settings
            .providers
            .iter()
            .map(|(id, p)| (id.clone(), (p.issuer.clone(), p.audiences.clone())))
            .collect()
    }

    /// Projects by id with their names, all or those named `name`.
    pub fn projects(&self, name: Option<&str>) -> BTreeMap<String, String> {
        let state = self.lock();
        state
            .settings
            .projects
            .iter()
            .filter(|(_, n)| name.is_none_or(|name| name == n.as_str()))
            .map(|(id, n)| (id.clone(), n.clone()))
            .collect()
    }

    /// Every temporary key issued, oldest access key id first.
    pub fn issued(&self) -> Vec<IssuedKey> {
        self.lock().keys.values().map(|t| t.view.clone()).collect()
    }

    /// IAM calls received, keyed `"<METHOD> <route>"`.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }

    fn record_call(&self, method: &str, route: &str) {
        *self.lock().calls.entry(route_key(method, route)).or_insert(0) += 1;
    }

    /// The temporary key with this access key id, for the gateway's signature check.
    pub fn temporary_key(&self, access_key: &str) -> Option<TemporaryKey> {
        self.lock().keys.get(access_key).map(|t| t.key.clone())
    }

    pub(crate) fn record_use(&self, access_key: &str) {
        if let Some(t) = self.lock().keys.get_mut(access_key) {
            t.view.calls += 1;
        }
    }

    /// Verifies an ID token for identity provider `idp_id` and issues an unscoped IAM token.
    pub fn exchange_id_token(
        &self,
        idp_id: &str,
        id_token: &str,
        now: Timestamp,
    ) -> Result<(String, Timestamp, Subject), IamError> {
        let mut state = self.lock();
        let provider =
            state.settings.providers.get(idp_id).ok_or_else(|| IamError::UnknownIdp(idp_id.to_string()))?;
        let subject = oidc::verify(id_token, provider, now).map_err(IamError::IdTokenRefused)?;
        let token = format!("MIIF{}", random_hex(48));
        let expires_at = plus(now, TOKEN_LIFETIME);
        state.tokens.insert(
            token.clone(),
            IssuedToken { idp_id: idp_id.to_string(), subject: subject.clone(), expires_at },
        );
        Ok((token, expires_at, subject))
    }

    /// Issues temporary credentials for an IAM token, lasting `duration` (IAM's default when
    /// absent) but no longer than the configured maximum.
    pub fn issue_temporary(
        &self,
        token: &str,
        duration: Option<u64>,
        now: Timestamp,
    ) -> Result<IssuedCredentials, IamError> {
        let mut state = self.lock();
        let issued = state.tokens.get(token).filter(|t| t.expires_at > now).ok_or(IamError::TokenInvalid)?;
        let (idp_id, subject) = (issued.idp_id.clone(), issued.subject.sub.clone());
        let asked = duration.map(Duration::from_secs).unwrap_or(DEFAULT_DURATION);
        if asked < state.settings.min_duration {
            return Err(IamError::DurationTooShort {
                got: asked.as_secs(),
                min: state.settings.min_duration.as_secs(),
            });
        }
        let expires_at = plus(now, asked.min(state.settings.max_duration));
        let access = random_hex(10).to_uppercase();
        let credentials = IssuedCredentials {
            access: access.clone(),
            secret: Secret::new(random_hex(20)),
            security_token: Secret::new(format!("gQpjbi1ub3J0aC00{}", random_hex(96))),
            expires_at,
        };
        state.keys.insert(
            access.clone(),
            Temporary {
                key: TemporaryKey {
                    secret: credentials.secret.clone(),
                    security_token: credentials.security_token.clone(),
                    expires_at,
                },
                view: IssuedKey { access_key: access, idp_id, subject, expires_at, calls: 0 },
            },
        );
        Ok(credentials)
    }
}

pub(crate) fn router() -> Router<App> {
    Router::new()
        .route(IAM_ID_TOKEN, post(create_token_by_id_token))
        .route(IAM_SECURITY_TOKENS, post(create_security_token))
        .route(IAM_PROJECTS, get(list_projects))
        .route(IAM_AUTH_PROJECTS, get(list_auth_projects))
}

#[derive(Deserialize)]
struct IdTokenBody {
    auth: IdTokenAuth,
}

#[derive(Deserialize)]
struct IdTokenAuth {
    id_token: IdTokenId,
}

#[derive(Deserialize)]
struct IdTokenId {
    id: String,
}

#[derive(Deserialize)]
struct SecurityTokenBody {
    auth: SecurityTokenAuth,
}

#[derive(Deserialize)]
struct SecurityTokenAuth {
    identity: Identity,
}

#[derive(Deserialize)]
struct Identity {
    methods: Vec<String>,
    #[serde(default)]
    token: Option<TokenRef>,
}

#[derive(Deserialize)]
struct TokenRef {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    duration_seconds: Option<u64>,
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, IamError> {
    serde_json::from_slice(body).map_err(|e| IamError::BadBody(e.to_string()))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

async fn create_token_by_id_token(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    app.iam.record_call("POST", IAM_ID_TOKEN);
    let result = (|| {
        let idp_id = header_str(&headers, IDP_ID_HEADER).ok_or(IamError::MissingIdp)?;
        let body: IdTokenBody = parse(&body)?;
        let now = app.store.now();
        let (token, expires_at, subject) =
            app.iam.exchange_id_token(idp_id, body.auth.id_token.id.trim(), now)?;
        Ok::<_, IamError>((token, expires_at, subject, idp_id.to_string(), now))
    })();
    match result {
        Ok((token, expires_at, subject, idp_id, now)) => {
            let body = json!({"token": {
                "methods": ["mapped"],
                "issued_at": iam_time(now),
                "expires_at": iam_time(expires_at),
                "user": {
                    "id": &signing::hex_sha256(subject.sub.as_bytes())[..32],
                    "name": subject.sub,
                    "domain": {"id": DOMAIN_ID, "name": "emulator"},
                    "OS-FEDERATION": {
                        "identity_provider": {"id": idp_id},
                        "protocol": {"id": "oidc"},
                        "groups": [],
                    },
                },
            }});
            let mut response = (StatusCode::CREATED, Json(body)).into_response();
            if let Ok(value) = HeaderValue::from_str(&token) {
                response.headers_mut().insert(SUBJECT_TOKEN_HEADER, value);
            }
            response
        }
        Err(e) => {
            tracing::debug!(error = %e, "refused an ID token exchange");
            e.render()
        }
    }
}

async fn create_security_token(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    app.iam.record_call("POST", IAM_SECURITY_TOKENS);
    let result = (|| {
        let body: SecurityTokenBody = parse(&body)?;
        let identity = body.auth.identity;
        if !identity.methods.iter().any(|m| m == "token") {
            return Err(IamError::NotTokenMethod);
        }
        let (id, duration) = match identity.token {
            Some(t) => (t.id, t.duration_seconds),
            None => (None, None),
        };
        let token = id
            .filter(|t| !t.trim().is_empty())
            .or_else(|| header_str(&headers, AUTH_TOKEN_HEADER).map(str::to_string))
            .ok_or(IamError::TokenInvalid)?;
        app.iam.issue_temporary(token.trim(), duration, app.store.now())
    })();
    match result {
        Ok(c) => (
            StatusCode::CREATED,
            Json(json!({"credential": {
                "access": c.access,
                "secret": c.secret.expose(),
                "securitytoken": c.security_token.expose(),
                "expires_at": iam_time(c.expires_at),
            }})),
        )
            .into_response(),
        Err(e) => e.render(),
    }
}

/// Authenticates a project-list call like any signed cloud call (permanent or temporary keys, or
/// a configured IAM token).
async fn authenticated(app: &App, req: Request) -> Result<(), IamError> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| IamError::BadBody("the body could not be read".into()))?;
    let headers = gate::header_pairs(&parts);
    let query = decode_query(parts.uri.query().unwrap_or(""));
    let signed = signing::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: &query,
        headers: &headers,
        body: &body,
    };
    let principal =
        auth::authenticate_with(&signed, &app.auth, |ak| app.iam.temporary_key(ak), app.store.now())
            .map_err(|e| IamError::Unauthenticated(e.detail()))?;
    if let Principal::TemporaryKey(ak) = &principal {
        app.iam.record_use(ak);
    }
    Ok(())
}

fn projects_body(app: &App, name: Option<&str>, self_link: &str) -> Response {
    let projects: Vec<_> = app
        .iam
        .projects(name)
        .into_iter()
        .map(|(id, name)| {
            json!({
                "id": id,
                "name": name,
                "domain_id": DOMAIN_ID,
                "parent_id": DOMAIN_ID,
                "description": "",
                "enabled": true,
                "is_domain": false,
                "links": {"self": format!("{IAM_PROJECTS}/{id}")},
            })
        })
        .collect();
    Json(json!({"projects": projects, "links": {"self": self_link, "previous": null, "next": null}}))
        .into_response()
}

async fn list_projects(State(app): State<App>, req: Request<Body>) -> Response {
    app.iam.record_call("GET", IAM_PROJECTS);
    let query = decode_query(req.uri().query().unwrap_or(""));
    if let Err(e) = authenticated(&app, req).await {
        return e.render();
    }
    let name = query.iter().find(|(k, _)| k == "name").map(|(_, v)| v.as_str());
    projects_body(&app, name, IAM_PROJECTS)
}

async fn list_auth_projects(State(app): State<App>, req: Request<Body>) -> Response {
    app.iam.record_call("GET", IAM_AUTH_PROJECTS);
    if let Err(e) = authenticated(&app, req).await {
        return e.render();
    }
    projects_body(&app, None, IAM_AUTH_PROJECTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::emulator::local_issuer::{LocalIssuer, TokenClaims};

    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

    fn now() -> Timestamp {
        "2026-11-22T05:30:00Z".parse().unwrap()
    }

    fn at(secs: i64) -> Timestamp {
        now().checked_add(SignedDuration::from_secs(secs)).unwrap()
    }

    fn claims() -> TokenClaims {
        TokenClaims {
            sub: "system:serviceaccount:team-a:cleaner".into(),
            aud: vec!["iam.myhuaweicloud.com".into()],
            issued_at: now(),
            expires_at: at(600),
            iss: None,
        }
    }

    fn iam(issuer: &LocalIssuer) -> Iam {
        let iam = Iam::new(IamSettings::default());
        iam.set_provider(
            "k8s",
            OidcProvider {
                issuer: ISSUER.into(),
                audiences: vec!["iam.myhuaweicloud.com".into()],
                jwks: issuer.jwks().unwrap(),
            },
        );
        iam
    }

    #[test]
    fn iam_time_has_microseconds() {
        assert_eq!(iam_time(now()), "2026-11-22T05:30:00.000000Z");
    }

    #[test]
    fn federation_issues_expiring_temporary_keys() {
        let issuer = LocalIssuer::generate(ISSUER, "k1").unwrap();
        let iam = iam(&issuer);
        let jwt = issuer.token(&claims()).unwrap();
        assert_eq!(
            iam.exchange_id_token("nope", &jwt, now()).unwrap_err(),
            IamError::UnknownIdp("nope".into())
        );
        let (token, _, subject) = iam.exchange_id_token("k8s", &jwt, now()).unwrap();
        assert_eq!(subject.sub, "system:serviceaccount:team-a:cleaner");
        assert_eq!(
            iam.issue_temporary(&token, Some(60), now()).unwrap_err(),
            IamError::DurationTooShort { got: 60, min: 900 }
        );
        iam.set_durations(Duration::from_secs(1), Duration::from_secs(30));
        let c = iam.issue_temporary(&token, Some(21600), now()).unwrap();
        assert_eq!(c.expires_at, at(30), "capped at the configured maximum");
        let key = iam.temporary_key(&c.access).unwrap();
        assert_eq!((key.secret, key.expires_at), (c.secret.clone(), at(30)));
        assert_eq!(iam.issue_temporary("other", None, now()).unwrap_err(), IamError::TokenInvalid);
        assert_eq!(iam.issue_temporary(&token, None, at(25 * 3600)).unwrap_err(), IamError::TokenInvalid);
        assert_eq!(iam.issued()[0].subject, subject.sub);
        assert!(!format!("{c:?} {iam:?}").contains(c.secret.expose()));
    }

    #[test]
    fn refuses_bad_id_tokens() {
        let issuer = LocalIssuer::generate(ISSUER, "k1").unwrap();
        let other = LocalIssuer::generate(ISSUER, "k1").unwrap();
        let iam = iam(&issuer);
        let refused = |jwt: String, when: Timestamp| match iam.exchange_id_token("k8s", &jwt, when) {
            Err(IamError::IdTokenRefused(e)) => e,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(refused(other.token(&claims()).unwrap(), now()), IdTokenError::BadSignature);
        let wrong_iss = TokenClaims { iss: Some("https://evil.example".into()), ..claims() };
        assert!(matches!(
            refused(issuer.token(&wrong_iss).unwrap(), now()),
            IdTokenError::WrongIssuer { .. }
        ));
        let wrong_aud = TokenClaims { aud: vec!["kubernetes".into()], ..claims() };
        assert!(matches!(
            refused(issuer.token(&wrong_aud).unwrap(), now()),
            IdTokenError::WrongAudience { .. }
        ));
        assert_eq!(
            refused(issuer.token(&claims()).unwrap(), at(600)),
            IdTokenError::Expired { expired_at: at(600) }
        );
        let future = TokenClaims { issued_at: at(3600), expires_at: at(7200), ..claims() };
        assert!(matches!(refused(issuer.token(&future).unwrap(), now()), IdTokenError::NotYetValid { .. }));
        assert_eq!(refused("not-a-jwt".into(), now()), IdTokenError::Malformed);
        let hs = issuer.sign(&json!({"alg": "HS256", "kid": "k1"}), &json!({"iss": ISSUER})).unwrap();
        assert!(matches!(refused(hs, now()), IdTokenError::UnsupportedAlgorithm(_)));
        let unknown = issuer.sign(&json!({"alg": "RS256", "kid": "k2"}), &json!({})).unwrap();
        assert_eq!(refused(unknown, now()), IdTokenError::UnknownKey("k2".into()));
        let no_sub = issuer
            .sign(
                &json!({"alg": "RS256", "kid": "k1"}),
                &json!({"iss": ISSUER, "aud": "iam.myhuaweicloud.com", "exp": at(60).as_second()}),
            )
            .unwrap();
        assert_eq!(refused(no_sub, now()), IdTokenError::MissingClaim("sub"));
    }

    #[test]
    fn lists_projects_by_name() {
        let iam = Iam::new(IamSettings::default());
        iam.name_projects([("p1".to_string(), "cn-north-4".to_string()), ("p2".into(), "cn-east-3".into())]);
        assert_eq!(iam.projects(Some("cn-east-3")).into_keys().collect::<Vec<_>>(), ["p2"]);
        assert_eq!(iam.projects(None).len(), 2);
        assert!(iam.projects(Some("ap-southeast-1")).is_empty());
    }
}
