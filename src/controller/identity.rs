//! Workload identity in the controller: an ID token for a policy's ServiceAccount from the
//! TokenRequest API (audience from the controller's settings, never from the policy), or the
//! controller's own projected token file, exchanged at IAM for temporary credentials cached per
//! (namespace, ServiceAccount, identity provider). Failures the user must fix become [`Blocked`];
//! passing ones are errors the reconcile retries. Does Kubernetes, file and IAM I/O.

use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::{Api, Client};

use super::pipeline::{Blocked, error_chain};
use crate::api::{CredentialSource, Reason};
use crate::cloud::credentials::{Credentials, Secret};
use crate::cloud::federation::{FederationCache, FederationError, RefreshPolicy, read_id_token_file};
use crate::cloud::iam::{IamClient, IamError};
use crate::cloud::{ErrorClass, HttpConfig};

/// The controller's workload-identity settings (`taskreaper run --token-audience ...`).
#[derive(Clone, Debug)]
pub struct WorkloadIdentitySettings {
    /// The audience of requested ServiceAccount tokens: what the IAM identity provider accepts.
    pub token_audience: String,
    /// Lifetime asked for requested tokens (the TokenRequest API's minimum is 10 minutes).
    pub token_expiration: Duration,
    /// The controller's own projected token, for policies with `useControllerToken: true`.
    pub id_token_file: Option<PathBuf>,
    /// The IAM endpoint; `https://iam.myhuaweicloud.com` when `None`.
    pub iam_endpoint: Option<String>,
    /// `duration_seconds` asked for temporary credentials.
    pub credential_duration: Duration,
    pub refresh: RefreshPolicy,
}

/// The cache key: whose token, through which identity provider.
type IdentityKey = (String, String, String);

/// What reconciles share for workload identity.
#[derive(Debug)]
pub struct WorkloadIdentity {
    settings: WorkloadIdentitySettings,
    cache: FederationCache<IdentityKey>,
}

/// Why temporary credentials could not be had this time; the reconcile retries.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("requesting a token for ServiceAccount {name}")]
    RequestToken {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading the controller's ID token file")]
    ReadTokenFile(#[source] std::io::Error),
    #[error("exchanging the ID token at IAM")]
    Exchange(#[source] IamError),
}

/// Why an ID token could not be had.
#[derive(Debug, thiserror::Error)]
enum TokenError {
    #[error("the TokenRequest API refused")]
    Request(#[source] kube::Error),
    #[error("the token file could not be read")]
    File(#[source] std::io::Error),
    #[error("the controller has no ID token file (--id-token-file)")]
    NoFile,
}

impl WorkloadIdentity {
    pub fn new(settings: WorkloadIdentitySettings, http: &HttpConfig) -> Result<Self, IamError> {
        let iam = IamClient::new(http, settings.iam_endpoint.as_deref())?;
        let cache = FederationCache::new(iam, settings.credential_duration, settings.refresh);
        Ok(Self { settings, cache })
    }

    /// Temporary credentials for `source` of a policy in `namespace`.
    pub async fn credentials(
        &self,
        client: &Client,
        namespace: &str,
        source: &CredentialSource,
        now: Timestamp,
    ) -> Result<Result<Credentials, Blocked>, IdentityError> {
        let (key, idp_id) = match source {
            CredentialSource::Secret(_) => {
                return Ok(Err(Blocked {
                    reason: Reason::InvalidSpec,
                    message: "a Secret is not a workload identity".into(),
                }));
            }
            CredentialSource::ServiceAccount { name, identity_provider_id } => {
                ((namespace.to_string(), name.clone(), identity_provider_id.clone()), identity_provider_id)
            }
            CredentialSource::ControllerToken { identity_provider_id } => {
                if self.settings.id_token_file.is_none() {
                    return Ok(Err(Blocked {
                        reason: Reason::CredentialsNotFound,
                        message:
                            "useControllerToken is set but the controller has no --id-token-file; use a \
                                  ServiceAccount of this namespace or ask the operator to enable it"
                                .into(),
                    }));
                }
                ((String::new(), String::new(), identity_provider_id.clone()), identity_provider_id)
            }
        };
        let fetch = || self.id_token(client, namespace, source);
        match self.cache.credentials(&key, idp_id, fetch, now).await {
            Ok((temporary, _)) => Ok(Ok(temporary.credentials())),
            Err(FederationError::IdToken(TokenError::Request(e))) => {
                classify_token_request(namespace, source, e)
            }
            Err(FederationError::IdToken(TokenError::File(e))) => Err(IdentityError::ReadTokenFile(e)),
            Err(FederationError::IdToken(TokenError::NoFile)) => Err(IdentityError::ReadTokenFile(
                std::io::Error::new(std::io::ErrorKind::NotFound, "no --id-token-file"),
            )),
            Err(FederationError::Iam(e)) => match e.class() {
                ErrorClass::Authentication | ErrorClass::NotFound | ErrorClass::Permanent => {
                    Ok(Err(Blocked {
                        reason: Reason::AuthenticationFailed,
                        message: format!(
                            "IAM refused the token of {}: {}",
                            source.describe(),
                            error_chain(&e)
                        ),
                    }))
                }
                _ => Err(IdentityError::Exchange(e)),
            },
        }
    }

    async fn id_token(
        &self,
        client: &Client,
        namespace: &str,
        source: &CredentialSource,
    ) -> Result<Secret, TokenError> {
        match source {
            CredentialSource::ServiceAccount { name, .. } => {
                let request = TokenRequest {
                    spec: TokenRequestSpec {
                        audiences: vec![self.settings.token_audience.clone()],
                        expiration_seconds: i64::try_from(self.settings.token_expiration.as_secs()).ok(),
                        ..TokenRequestSpec::default()
                    },
                    ..TokenRequest::default()
                };
                let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
                let answer = accounts
                    .create_token_request(name, &PostParams::default(), &request)
                    .await
                    .map_err(TokenError::Request)?;
                Ok(Secret::new(answer.status.map(|s| s.token).unwrap_or_default()))
            }
            CredentialSource::ControllerToken { .. } => match &self.settings.id_token_file {
                Some(path) => read_id_token_file(path).await.map_err(TokenError::File),
                None => Err(TokenError::NoFile),
            },
            CredentialSource::Secret(_) => Err(TokenError::NoFile),
        }
    }
}

/// A missing ServiceAccount or a controller not allowed to request its tokens is for the user to
/// fix; anything else passes.
fn classify_token_request(
    namespace: &str,
    source: &CredentialSource,
    error: kube::Error,
) -> Result<Result<Credentials, Blocked>, IdentityError> {
    let name = match source {
        CredentialSource::ServiceAccount { name, .. } => name.clone(),
        _ => String::new(),
    };
    let status = match &error {
        kube::Error::Api(status) => status.code,
        _ => 0,
    };
    match status {
        404 => Ok(Err(Blocked {
            reason: Reason::CredentialsNotFound,
            message: format!("ServiceAccount {name:?} not found in namespace {namespace}; create it"),
        })),
        403 => Ok(Err(Blocked {
            reason: Reason::CredentialsInvalid,
            message: format!(
                "the controller may not request tokens for ServiceAccount {name:?} in namespace {namespace}: \
                 grant create on serviceaccounts/token for this name with a Role and RoleBinding \
                 (deploy/examples/workload-identity-rbac.yaml)"
            ),
        })),
        _ => Err(IdentityError::RequestToken { name, source: error }),
    }
}
