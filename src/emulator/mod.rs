//! A local Huawei Cloud SDRS + KPS failed-task endpoint server for tests, demos and benchmarks. It
//! authenticates like the API gateway (SDK-HMAC-SHA256 or IAM token), answers with the services'
//! own bodies and errors, keeps per-project tasks in memory, counts calls and injects faults on
//! demand. Does network and file I/O.
//!
//! ```text
//! GET    /v1/{project_id}/server-groups                                     list protection groups
//! GET    /v1/{project_id}/task-center/failure-jobs                          list SDRS failed jobs
//! DELETE /v1/{project_id}/task-center/failure-jobs/batch                    protection-group-level jobs
//! DELETE /v1/{project_id}/task-center/{server_group_id}/failure-jobs/batch  one protection group's jobs
//! DELETE /v1/{project_id}/task-center/failure-jobs/{failure_job_id}         one job (404 when absent)
//! GET    /v3/{project_id}/failed-tasks                                      list KPS failed tasks
//! DELETE /v3/{project_id}/failed-tasks                                      every KPS failed task
//! DELETE /v3/{project_id}/failed-tasks/{task_id}                            one task (404 when absent)
//! POST   /v3.0/OS-AUTH/id-token/tokens · /v3.0/OS-CREDENTIAL/securitytokens   IAM federation (see [`iam`])
//! GET    /v3/projects?name={region} · /v3/auth/projects                     IAM projects
//! GET|POST /_emulator/projects/{project_id}/server-groups | failure-jobs | failed-tasks
//! GET /_emulator/projects · GET|DELETE /_emulator/calls · GET|PUT /_emulator/faults | modes | rate-limit
//! GET /_emulator/iam · PUT /_emulator/iam/providers/{idp_id} | durations | projects
//! ```
//!
//! SDRS scoping follows the strict reading of the API reference: a [`SeededJob`] with a
//! `server_group_id` is a failure inside that protection group (protected instance, replication
//! pair, DR drill), one without is a protection-group-level failure. The list without
//! `server_group_id` shows only group-level failures ([`SdrsListing::Strict`]; [`SdrsListing::Loose`]
//! shows every failure), with `server_group_id` only that group's in-group failures. The batch
//! delete removes group-level failures only; the per-group batch removes that group's in-group
//! failures and answers 404 when the project has no such protection group. KPS writes `task_time`
//! as epoch milliseconds in a string, as documented ([`KpsTaskTime::String`]), or as a number.
//!
//! The server clock ([`Config::clock`], [`Store::set_clock`]) decides which `X-Sdk-Date` values are
//! fresh; fix it to test signatures made at a known date.

mod admin;
mod auth;
mod calls;
mod clock;
mod command;
mod errors;
mod faults;
mod gate;
mod generate;
pub mod hostile;
pub mod iam;
pub mod local_issuer;
mod modes;
pub mod oidc;
mod query;
mod routes;
mod server;
mod store;
mod throttle;
mod tls;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cloud::credentials::Secret;

pub use admin::PREFIX as ADMIN_PREFIX;
pub use auth::{AuthError, AuthSettings, Principal, TemporaryKey, authenticate, authenticate_with};
pub use calls::{CallCounts, CallRecord, route_key};
pub use clock::Clock;
pub use command::{DEMO_ACCESS_KEY, DEMO_PROJECTS, DEMO_SECRET_KEY, RunOptions, run};
pub use errors::{ApiError, ErrorBody, Service, gateway_code, kps_code, sdrs_code};
pub use faults::{FaultAction, Faults, FaultsError, Malformed};
pub use gate::REQUEST_ID_HEADER;
pub use generate::{
    GROUP_STATUSES, GROUPS_PER_PROJECT, IN_GROUP_RESOURCE_TYPES, ODD_KPS_OPERATE_TYPE,
    ODD_SDRS_RESOURCE_TYPE, generate, kps_time, sdrs_time,
};
pub use iam::{
    IAM_AUTH_PROJECTS, IAM_ID_TOKEN, IAM_PROJECTS, IAM_SECURITY_TOKENS, Iam, IamSettings, IssuedKey, iam_code,
};
pub use local_issuer::{LocalIssuer, TokenClaims};
pub use modes::{KpsTaskTime, Modes, ModesPatch, SdrsListing};
pub use oidc::{IdTokenError, OidcProvider};
pub use query::{FailureJobQuery, Page, QueryError, ServerGroupQuery};
pub use routes::{KPS_ONE, KPS_TASKS, SDRS_BATCH, SDRS_GROUP_BATCH, SDRS_GROUPS, SDRS_LIST, SDRS_ONE};
pub use store::{ProjectCounts, ProjectSeed, SeedFile, SeededJob, Store};
pub use throttle::RateLimitSetting;
pub use tls::TlsError;

/// How the emulator runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Secret key of each accepted access key id.
    pub access_keys: BTreeMap<String, Secret>,
    /// IAM tokens accepted in `X-Auth-Token`.
    pub auth_tokens: Vec<Secret>,
    /// Faults in force at start; change them later with [`Store::set_faults`] or `PUT /_emulator/faults`.
    pub faults: Faults,
    /// How far `X-Sdk-Date` may be from the server clock.
    pub max_clock_skew: Duration,
    /// Serve HTTPS with a certificate made at start (see [`Emulator::ca_pem`]).
    pub tls: bool,
    /// The server clock; [`Clock::Fixed`] makes signatures of a known date valid.
    pub clock: Clock,
    /// Seeds the generator that fault chances draw from, so a run with faults repeats exactly.
    pub fault_seed: u64,
    /// Which SDRS failures the list shows without `server_group_id` (default strict: only
    /// protection-group-level ones); change it later with [`Store::set_modes`] or
    /// `PUT /_emulator/modes`.
    pub sdrs_listing: SdrsListing,
    /// How KPS writes `task_time` (default: epoch milliseconds as a string, as documented); change it
    /// later with [`Store::set_modes`] or `PUT /_emulator/modes`.
    pub kps_task_time: KpsTaskTime,
    /// Requests per second per access key before the gateway answers 429 (off by default); change
    /// it later with [`Store::set_rate_limit`] or `PUT /_emulator/rate-limit`.
    pub rate_limit: RateLimitSetting,
    /// Identity providers, project names and temporary-key lifetimes of the emulated IAM; change
    /// them later through [`Emulator::iam`] or `/_emulator/iam`.
    pub iam: IamSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            access_keys: BTreeMap::new(),
            auth_tokens: Vec::new(),
            faults: Faults::default(),
            max_clock_skew: Duration::from_secs(15 * 60),
            tls: false,
            clock: Clock::System,
            fault_seed: 0,
            sdrs_listing: SdrsListing::Strict,
            kps_task_time: KpsTaskTime::String,
            rate_limit: RateLimitSetting::default(),
            iam: IamSettings::default(),
        }
    }
}

/// The tasks the emulator starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seed {
    Empty,
    /// A JSON [`SeedFile`].
    File(PathBuf),
    /// [`generate`]d from the server clock's now: in each project [`GROUPS_PER_PROJECT`] protection
    /// groups, `tasks_per_kind` SDRS jobs per documented resource type and KPS tasks per documented
    /// operate type, plus a few odd ones (see [`generate`]).
    Generated {
        projects: Vec<String>,
        tasks_per_kind: usize,
        seed: u64,
    },
}

/// Why the emulator could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("invalid faults")]
    InvalidFaults(#[source] FaultsError),
    #[error("could not read the JWKS file {path}")]
    ReadJwks { path: PathBuf, source: std::io::Error },
    #[error("could not parse the JWKS file {path}")]
    ParseJwks { path: PathBuf, source: serde_json::Error },
    #[error("--oidc-jwks-file needs --oidc-issuer and at least one --oidc-audience")]
    IncompleteOidc,
    #[error("could not read the seed file {path}")]
    ReadSeed { path: PathBuf, source: std::io::Error },
    #[error("could not parse the seed file {path}")]
    ParseSeed { path: PathBuf, source: serde_json::Error },
    #[error("could not listen on {addr}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("could not read the listening address")]
    LocalAddr(#[source] std::io::Error),
    #[error("could not set up TLS")]
    Tls(#[source] TlsError),
    #[error("could not write the CA certificate to {path}")]
    WriteCa { path: PathBuf, source: std::io::Error },
    #[error("--ca-out needs --tls")]
    CaOutWithoutTls,
    #[error("could not print the listening address")]
    Announce(#[source] std::io::Error),
    #[error("could not wait for a shutdown signal")]
    Signal(#[source] std::io::Error),
}

/// State shared by every handler.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) store: Store,
    pub(crate) auth: Arc<AuthSettings>,
    pub(crate) iam: Iam,
    pub(crate) ids: Arc<gate::RequestIds>,
}

/// A running emulator. Dropping it stops the server; [`Emulator::shutdown`] also waits for it.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    url: String,
    ca_pem: Option<String>,
    store: Store,
    iam: Iam,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

fn read_seed(path: &PathBuf) -> Result<SeedFile, EmulatorError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| EmulatorError::ReadSeed { path: path.clone(), source })?;
    serde_json::from_str(&text).map_err(|source| EmulatorError::ParseSeed { path: path.clone(), source })
}

fn build_router(app: App) -> Router {
    Router::new()
        .merge(routes::router(&app))
        .merge(iam::router())
        .nest(admin::PREFIX, admin::router())
        .fallback(unknown_api)
        .method_not_allowed_fallback(unknown_api)
        .layer(from_fn_with_state(app.clone(), gate::request_id))
        .with_state(app)
}

/// A path (or method) no route matches. Outside `/_emulator` it is counted in
/// [`CallCounts::unmatched`], so a test can prove that no call went anywhere but where it expects.
async fn unknown_api(
    axum::extract::State(app): axum::extract::State<App>,
    axum::extract::Extension(id): axum::extract::Extension<gate::RequestId>,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    if !uri.path().starts_with(admin::PREFIX) {
        app.store.record_unmatched(method.as_str());
    }
    ApiError::no_such_api().render(&id.0)
}

impl Emulator {
    /// Seeds the store, binds `listen` (port 0 picks a free port) and serves in the background.
    pub async fn start(listen: SocketAddr, config: Config, seed: Seed) -> Result<Emulator, EmulatorError> {
        config.faults.validate().map_err(EmulatorError::InvalidFaults)?;
        let store = Store::new(config.faults, config.fault_seed, config.clock);
        store.set_modes(Modes { sdrs_listing: config.sdrs_listing, kps_task_time: config.kps_task_time });
        store.set_rate_limit(config.rate_limit);
        match seed {
            Seed::Empty => {}
            Seed::File(path) => store.load(read_seed(&path)?),
            Seed::Generated { projects, tasks_per_kind, seed } => {
                store.load(generate(&projects, tasks_per_kind, seed, store.now()))
            }
        }
        let iam = Iam::new(config.iam);
        let tls = if config.tls { Some(tls::generate().map_err(EmulatorError::Tls)?) } else { None };
        let app = App {
            store: store.clone(),
            auth: Arc::new(AuthSettings {
                access_keys: config.access_keys,
                auth_tokens: config.auth_tokens,
                max_clock_skew: config.max_clock_skew,
            }),
            iam: iam.clone(),
            ids: Arc::new(gate::RequestIds::new(rand::random())),
        };
        let listener =
            TcpListener::bind(listen).await.map_err(|source| EmulatorError::Bind { addr: listen, source })?;
        let addr = listener.local_addr().map_err(EmulatorError::LocalAddr)?;
        let (stop, stopped) = watch::channel(false);
        let (ca_pem, acceptor) = match tls {
            Some(material) => (Some(material.ca_pem), Some(material.acceptor)),
            None => (None, None),
        };
        let url = url_for(addr, ca_pem.is_some());
        let task = tokio::spawn(server::serve(listener, build_router(app), acceptor, stopped));
        tracing::info!(%url, "emulator started");
        Ok(Emulator { addr, url, ca_pem, store, iam, stop, task: Some(task) })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`; an unspecified listen address is
    /// replaced by loopback.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The CA certificate (PEM) to trust, when serving HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// In-process access to tasks, call counts, faults and the clock.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// In-process access to the emulated IAM: identity providers, project names, issued keys.
    pub fn iam(&self) -> &Iam {
        &self.iam
    }

    /// Stops accepting, lets open connections finish (up to a few seconds) and waits for the server.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "emulator server task failed");
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

fn url_for(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_use_loopback_for_wildcards() {
        assert_eq!(url_for("0.0.0.0:8780".parse().unwrap(), false), "http://127.0.0.1:8780");
        assert_eq!(url_for("[::]:8443".parse().unwrap(), true), "https://[::1]:8443");
        assert_eq!(url_for("127.0.0.1:1".parse().unwrap(), true), "https://127.0.0.1:1");
    }

    #[test]
    fn default_config_is_plain_and_strict() {
        let c = Config::default();
        assert!(c.access_keys.is_empty() && c.auth_tokens.is_empty() && !c.tls);
        assert_eq!(c.max_clock_skew, Duration::from_secs(900));
        assert_eq!(c.faults, Faults::default());
        assert_eq!((c.sdrs_listing, c.kps_task_time), (SdrsListing::Strict, KpsTaskTime::String));
    }

    #[test]
    fn config_debug_hides_secrets() {
        let c = Config {
            access_keys: BTreeMap::from([("AK".to_string(), Secret::new("very-secret-sk"))]),
            auth_tokens: vec![Secret::new("very-secret-token")],
            ..Config::default()
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("AK") && !shown.contains("very-secret"), "{shown}");
    }
}
