//! An IAM client (network I/O): OIDC federation (an ID token for an unscoped IAM token at
//! `POST /v3.0/OS-AUTH/id-token/tokens`, then that token for temporary AK/SK + security token at
//! `POST /v3.0/OS-CREDENTIAL/securitytokens`) and project discovery (`GET /v3/projects?name=`,
//! `GET /v3/auth/projects`, signed). Shapes as the official SDK sends and reads them. One attempt
//! per call: the caller's next run is the retry.

use std::time::Duration;

use jiff::Timestamp;
use reqwest::Url;
use serde::Deserialize;
use serde_json::json;

use crate::cloud::credentials::{Credentials, Secret};
use crate::cloud::endpoint::{EndpointError, EndpointPolicy};
use crate::cloud::error::{ApiError, CloudError, ErrorClass};
use crate::cloud::http::{HttpConfig, build_client};
use crate::cloud::signing;

/// IAM's global endpoint, as the SDK defaults to it.
pub const DEFAULT_IAM_ENDPOINT: &str = "https://iam.myhuaweicloud.com";
/// The environment variable the SDK reads an IAM endpoint from; the controller honours it too.
pub const IAM_ENDPOINT_ENV: &str = "HUAWEICLOUD_SDK_IAM_ENDPOINT";
/// Largest IAM answer read.
const MAX_BODY: usize = 1 << 20;

/// Temporary credentials from federation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemporaryCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub security_token: Secret,
    pub expires_at: Timestamp,
}

impl TemporaryCredentials {
    /// As request credentials: AK/SK signing with `X-Security-Token`.
    pub fn credentials(&self) -> Credentials {
        Credentials::AkSk {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            security_token: Some(self.security_token.clone()),
        }
    }
}

/// A project as IAM lists it: the main project of a region is named after the region.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Project {
    pub id: String,
    pub name: String,
}

/// Why an IAM call failed. Never carries a token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    #[error("the IAM endpoint is refused")]
    Endpoint(#[source] EndpointError),
    #[error("could not build the IAM client")]
    BuildClient(#[source] CloudError),
    #[error("IAM {operation}: the request could not be sent")]
    Send {
        operation: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("IAM {operation}: the answer could not be read")]
    ReadBody {
        operation: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("IAM {operation} failed: {error}")]
    Api { operation: &'static str, error: Box<ApiError> },
    #[error("IAM {operation}: the answer is not the expected JSON")]
    Decode {
        operation: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("IAM answered the ID token exchange without an X-Subject-Token header")]
    MissingSubjectToken,
    #[error("IAM returned temporary credentials with an unreadable expires_at {0:?}")]
    BadExpiry(String),
}

impl IamError {
    /// How the failure is classed, as cloud call errors are.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Api { error, .. } => error.class(),
            Self::Send { .. } | Self::ReadBody { .. } => ErrorClass::Transient,
            Self::Decode { .. } => ErrorClass::Decode,
            Self::Endpoint(_) | Self::BuildClient(_) | Self::MissingSubjectToken | Self::BadExpiry(_) => {
                ErrorClass::Permanent
            }
        }
    }
}

/// Where IAM is: a bare origin that passed the endpoint policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IamEndpoint {
    origin: String,
    authority: String,
}

impl IamEndpoint {
    /// Parses and checks `url` (default [`DEFAULT_IAM_ENDPOINT`]) like a service endpoint override.
    pub fn resolve(url: Option<&str>, policy: &EndpointPolicy) -> Result<Self, EndpointError> {
        let raw = url.map(str::trim).filter(|u| !u.is_empty()).unwrap_or(DEFAULT_IAM_ENDPOINT);
        let base = Url::parse(raw).map_err(|e| EndpointError::ParseOverride(e.to_string()))?;
        match base.scheme() {
            "https" => {}
            "http" if policy.allow_http => {}
            other => return Err(EndpointError::InsecureScheme(other.to_string())),
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(EndpointError::UserInfoInOverride);
        }
        if base.path() != "/" || base.query().is_some() || base.fragment().is_some() {
            return Err(EndpointError::PathInOverride);
        }
        let host = base.host_str().filter(|h| !h.is_empty()).ok_or(EndpointError::MissingHost)?;
        if !policy.allowlist.allows(host) {
            return Err(EndpointError::NotAllowed(host.to_string()));
        }
        let authority = match base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        Ok(Self { origin: base.as_str().trim_end_matches('/').to_string(), authority })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// Calls IAM.
#[derive(Clone, Debug)]
pub struct IamClient {
    client: reqwest::Client,
    endpoint: IamEndpoint,
    user_agent: String,
}

#[derive(Deserialize)]
struct CredentialBody {
    credential: CredentialFields,
}

#[derive(Deserialize)]
struct CredentialFields {
    access: String,
    secret: String,
    securitytoken: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct ProjectsBody {
    projects: Vec<Project>,
}

impl IamClient {
    /// A client for the IAM at `endpoint` (default [`DEFAULT_IAM_ENDPOINT`]), with the timeouts, CA
    /// roots and endpoint policy of `config`.
    pub fn new(config: &HttpConfig, endpoint: Option<&str>) -> Result<Self, IamError> {
        let endpoint = IamEndpoint::resolve(endpoint, &config.endpoints).map_err(IamError::Endpoint)?;
        let client = build_client(config).map_err(IamError::BuildClient)?;
        Ok(Self { client, endpoint, user_agent: config.user_agent.clone() })
    }

    pub fn endpoint(&self) -> &IamEndpoint {
        &self.endpoint
    }

    async fn send(
        &self,
        operation: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>), IamError> {
        let mut response = request.send().await.map_err(|source| IamError::Send { operation, source })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|source| IamError::ReadBody { operation, source })?
        {
            body.extend_from_slice(&chunk[..chunk.len().min(MAX_BODY.saturating_sub(body.len()))]);
            if body.len() >= MAX_BODY {
                break;
            }
        }
        if (200..300).contains(&status) {
            Ok((headers, body))
        } else {
            let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string);
            Err(IamError::Api {
                operation,
                error: Box::new(ApiError::from_response(status, request_id, &body)),
            })
        }
    }

    fn post_json(&self, path: &str, body: serde_json::Value) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.endpoint.origin))
            .header("Content-Type", "application/json;charset=UTF-8")
            .header("User-Agent", &self.user_agent)
            .body(body.to_string())
    }

    /// Exchanges an ID token of identity provider `idp_id` for an unscoped IAM token.
    pub async fn exchange_id_token(&self, idp_id: &str, id_token: &Secret) -> Result<Secret, IamError> {
        let body = json!({"auth": {"id_token": {"id": id_token.expose()}}});
        let mut request = self.post_json("/v3.0/OS-AUTH/id-token/tokens", body).header("X-Idp-Id", idp_id);
        request = request.header("Accept", "application/json");
        let (headers, _) = self.send("id-token exchange", request).await?;
        headers
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(Secret::new)
            .ok_or(IamError::MissingSubjectToken)
    }

    /// Temporary credentials for an IAM token, lasting `duration` (IAM may shorten it).
    pub async fn temporary_credentials(
        &self,
        iam_token: &Secret,
        duration: Duration,
    ) -> Result<TemporaryCredentials, IamError> {
        let body = json!({"auth": {"identity": {"methods": ["token"],
            "token": {"id": iam_token.expose(), "duration_seconds": duration.as_secs()}}}});
        let operation = "security token";
        let (_, body) =
            self.send(operation, self.post_json("/v3.0/OS-CREDENTIAL/securitytokens", body)).await?;
        let c = serde_json::from_slice::<CredentialBody>(&body)
            .map_err(|source| IamError::Decode { operation, source })?
            .credential;
        let expires_at =
            c.expires_at.parse::<Timestamp>().map_err(|_| IamError::BadExpiry(c.expires_at.clone()))?;
        Ok(TemporaryCredentials {
            access_key_id: c.access,
            secret_access_key: Secret::new(c.secret),
            security_token: Secret::new(c.securitytoken),
            expires_at,
        })
    }

    /// Both steps of federation: an ID token in, temporary credentials out.
    pub async fn federate(
        &self,
        idp_id: &str,
        id_token: &Secret,
        duration: Duration,
    ) -> Result<TemporaryCredentials, IamError> {
        let iam_token = self.exchange_id_token(idp_id, id_token).await?;
        self.temporary_credentials(&iam_token, duration).await
    }

    /// The projects named `name` (a region id names that region's main project).
    pub async fn projects_named(
        &self,
        credentials: &Credentials,
        name: &str,
        now: Timestamp,
    ) -> Result<Vec<Project>, IamError> {
        self.list("/v3/projects", vec![("name".to_string(), name.to_string())], credentials, now).await
    }

    /// Every project the credentials can use.
    pub async fn auth_projects(
        &self,
        credentials: &Credentials,
        now: Timestamp,
    ) -> Result<Vec<Project>, IamError> {
        self.list("/v3/auth/projects", Vec::new(), credentials, now).await
    }

    async fn list(
        &self,
        path: &str,
        query: Vec<(String, String)>,
        credentials: &Credentials,
        now: Timestamp,
    ) -> Result<Vec<Project>, IamError> {
        let operation = "list projects";
        let headers =
            signed_headers(&self.endpoint.authority, &self.user_agent, path, &query, credentials, now);
        let qs = signing::canonical_query(&query);
        let url = if qs.is_empty() {
            format!("{}{path}", self.endpoint.origin)
        } else {
            format!("{}{path}?{qs}", self.endpoint.origin)
        };
        let mut request = self.client.get(url);
        for (name, value) in headers.iter().filter(|(k, _)| k != "Host") {
            request = request.header(name, value);
        }
        let (_, body) = self.send(operation, request).await?;
        Ok(serde_json::from_slice::<ProjectsBody>(&body)
            .map_err(|source| IamError::Decode { operation, source })?
            .projects)
    }
}

/// The headers of a signed IAM GET: `Host`, `Accept`, `User-Agent`, `X-Sdk-Date`, the security
/// token of temporary credentials, and `Authorization` (or `X-Auth-Token` for a token).
fn signed_headers(
    authority: &str,
    user_agent: &str,
    path: &str,
    query: &[(String, String)],
    credentials: &Credentials,
    now: Timestamp,
) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = vec![
        ("Host".into(), authority.into()),
        ("Accept".into(), "application/json".into()),
        ("User-Agent".into(), user_agent.into()),
    ];
    match credentials {
        Credentials::AkSk { access_key_id, secret_access_key, security_token } => {
            let date = signing::format_sdk_date(now);
            headers.push((signing::DATE_HEADER.into(), date.clone()));
            if let Some(token) = security_token {
                headers.push(("X-Security-Token".into(), token.expose().to_string()));
            }
            let req = signing::Request { method: "GET", path, query, headers: &headers, body: b"" };
            let auth = signing::authorize(&req, access_key_id, secret_access_key.expose().as_bytes(), &date);
            headers.push(("Authorization".into(), auth.header_value()));
        }
        Credentials::Token { auth_token } => {
            headers.push(("X-Auth-Token".into(), auth_token.expose().to_string()))
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::endpoint::Allowlist;

    #[test]
    fn the_default_endpoint_is_global_iam() {
        let e = IamEndpoint::resolve(None, &EndpointPolicy::default()).unwrap();
        assert_eq!(e.origin(), "https://iam.myhuaweicloud.com");
        let local = EndpointPolicy { allowlist: Allowlist::parse(["127.0.0.1"]).unwrap(), allow_http: true };
        let e = IamEndpoint::resolve(Some("http://127.0.0.1:8780/"), &local).unwrap();
        assert_eq!((e.origin(), e.authority.as_str()), ("http://127.0.0.1:8780", "127.0.0.1:8780"));
        let refused = |url: &str| IamEndpoint::resolve(Some(url), &EndpointPolicy::default()).unwrap_err();
        assert_eq!(refused("https://evil.example"), EndpointError::NotAllowed("evil.example".into()));
        assert_eq!(refused("http://iam.myhuaweicloud.com"), EndpointError::InsecureScheme("http".into()));
        assert_eq!(refused("https://u:p@iam.myhuaweicloud.com"), EndpointError::UserInfoInOverride);
        assert_eq!(refused("https://iam.myhuaweicloud.com/v3"), EndpointError::PathInOverride);
    }

    #[test]
    fn signs_with_the_security_token_of_temporary_credentials() {
        let temp = TemporaryCredentials {
            access_key_id: "TEMPAK".into(),
            secret_access_key: Secret::new("TEMPSK"),
            security_token: Secret::new("sts"),
            expires_at: "2026-11-22T06:00:00Z".parse().unwrap(),
        };
        let now: Timestamp = "2026-11-22T05:30:00Z".parse().unwrap();
        let query = vec![("name".to_string(), "cn-north-4".to_string())];
        let headers = signed_headers("iam.example:1", "ua", "/v3/projects", &query, &temp.credentials(), now);
        let auth = &headers.iter().find(|(k, _)| k == "Authorization").unwrap().1;
        assert!(auth.contains("Access=TEMPAK") && auth.contains("x-security-token"), "{auth}");
        let without: Vec<_> = headers.iter().filter(|(k, _)| k != "Authorization").cloned().collect();
        let req = signing::Request {
            method: "GET",
            path: "/v3/projects",
            query: &query,
            headers: &without,
            body: b"",
        };
        let parsed = signing::Authorization::parse(auth).unwrap();
        assert!(signing::verify(&req, &parsed, b"TEMPSK", "20261122T053000Z"));
        assert!(!format!("{temp:?}").contains("TEMPSK") && !format!("{temp:?}").contains("\"sts\""));
    }
}
