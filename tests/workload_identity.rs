//! Workload identity end to end with the real apiserver: a ServiceAccount token from the TokenRequest
//! API, verified by the emulator's IAM against the apiserver's own service-account issuer and JWKS
//! (fetched from /openid/v1/jwks), exchanged for temporary credentials that purge KPS tasks and
//! discover projects; the federation cache refreshes across expiry with new TokenRequest tokens; a
//! token for another audience is refused. And the controller itself: a policy naming a ServiceAccount
//! of its namespace purges with temporary credentials, refreshes them, and stalls with a clear reason
//! for a ServiceAccount it may not request tokens for; a policy by region discovers its project at IAM
//! with the same temporary credentials.
//!
//! Run: `TASKREAPER_CONTROL_PLANE_BIN=/path/to/bin cargo test --test workload_identity`

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use common::control_plane::ControlPlane;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use serde_json::Value;
use taskreaper::cloud::credentials::Secret;
use taskreaper::cloud::federation::{FederationCache, Freshness, RefreshPolicy};
use taskreaper::cloud::iam::{IamClient, IamError};
use taskreaper::cloud::{
    Allowlist, CloudHttp, EndpointPolicy, HttpConfig, KpsClient, RateLimit, RateLimiters,
};
use taskreaper::emulator::{Config, Emulator, IamSettings, OidcProvider, Seed};

const AUDIENCE: &str = "iam.myhuaweicloud.com";
const IDP: &str = "test-cluster";
const PROJECT: &str = "0605767b5c00d4bb2f10c01a1e3b3a7e";
const SERVICE_ACCOUNT: &str = "cleaner";

async fn get_json(client: &Client, path: &str) -> Value {
    let request = axum::http::Request::get(path).body(Vec::new()).expect("a request");
    let text = client.request_text(request).await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {text}"))
}

/// The emulator, trusting the apiserver's service-account issuer as identity provider [`IDP`].
async fn emulator_trusting(client: &Client, max_duration: Duration) -> (Emulator, String) {
    let discovery = get_json(client, "/.well-known/openid-configuration").await;
    let issuer = discovery["issuer"].as_str().expect("an issuer").to_string();
    let jwks = serde_json::from_value(get_json(client, "/openid/v1/jwks").await).expect("a JWKS");
    let config = Config {
        iam: IamSettings {
            providers: BTreeMap::from([(
                IDP.to_string(),
                OidcProvider { issuer: issuer.clone(), audiences: vec![AUDIENCE.into()], jwks },
            )]),
            projects: BTreeMap::from([(PROJECT.to_string(), "cn-north-4".to_string())]),
            min_duration: Duration::from_secs(1),
            max_duration,
        },
        ..Config::default()
    };
    let seed = Seed::Generated { projects: vec![PROJECT.into()], tasks_per_kind: 3, seed: 3 };
    let emu =
        Emulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), config, seed).await.expect("emulator starts");
    (emu, issuer)
}

fn http_config() -> HttpConfig {
    HttpConfig {
        endpoints: EndpointPolicy {
            allowlist: Allowlist::parse(["127.0.0.1"]).expect("pattern"),
            allow_http: true,
        },
        ..HttpConfig::default()
    }
}

async fn service_account(client: &Client, namespace: &str) -> Api<ServiceAccount> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let sa = ServiceAccount {
        metadata: ObjectMeta { name: Some(SERVICE_ACCOUNT.into()), ..ObjectMeta::default() },
        ..ServiceAccount::default()
    };
    api.create(&PostParams::default(), &sa).await.expect("the ServiceAccount is created");
    api
}

/// A token for the ServiceAccount from the TokenRequest API (ten minutes, the API's minimum).
async fn token_request(api: &Api<ServiceAccount>, audience: &str) -> Result<Secret, kube::Error> {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![audience.to_string()],
            expiration_seconds: Some(600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let answer = api.create_token_request(SERVICE_ACCOUNT, &PostParams::default(), &request).await?;
    Ok(Secret::new(answer.status.map(|s| s.token).unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apiserver_token_becomes_temporary_credentials_that_purge() {
    let cp = ControlPlane::shared();
    let client = cp.admin_client().await;
    let namespace = cp.new_namespace("wi").await;
    let accounts = service_account(&client, &namespace).await;
    let (emu, issuer) = emulator_trusting(&client, Duration::from_secs(3600)).await;
    assert_eq!(issuer, "https://kubernetes.default.svc.cluster.local");

    let iam = IamClient::new(&http_config(), Some(&emu.url())).expect("IAM client");
    let token = token_request(&accounts, AUDIENCE).await.expect("a token");
    let temp =
        iam.federate(IDP, &token, Duration::from_secs(900)).await.expect("the emulator accepts the token");
    let issued = emu.iam().issued();
    assert_eq!(issued[0].subject, format!("system:serviceaccount:{namespace}:{SERVICE_ACCOUNT}"));

    let credentials = Arc::new(temp.credentials());
    let now = jiff::Timestamp::now();
    let projects = iam.projects_named(&credentials, "cn-north-4", now).await.expect("projects");
    assert_eq!(projects.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), [PROJECT]);
    let n = NonZeroU32::new(100).expect("non-zero");
    let http = CloudHttp::new(
        http_config(),
        RateLimiters::new(RateLimit { per_second: n, burst: n }),
        Arc::new(taskreaper::cloud::SystemClock),
    )
    .expect("client core");
    let kps =
        KpsClient::new(http, credentials, &projects[0].id, "cn-north-4", Some(&emu.url())).expect("KPS");
    let before = kps.list_failed_tasks().await.expect("listed").len();
    assert!(before > 0);
    kps.delete_all_failed_tasks().await.expect("purged with temporary credentials");
    assert!(emu.store().failed_tasks(PROJECT).is_empty());

    // A token the apiserver made for another audience is refused.
    let other = token_request(&accounts, "kubernetes").await.expect("a token");
    let refused = iam.federate(IDP, &other, Duration::from_secs(900)).await.expect_err("wrong audience");
    assert!(
        matches!(&refused, IamError::Api { error, .. } if error.message.contains("audience")),
        "{refused}"
    );
    println!(
        "apiserver TokenRequest token for system:serviceaccount:{namespace}:{SERVICE_ACCOUNT} verified by the \
         emulator against {issuer}'s JWKS; {before} KPS tasks purged with temporary credentials; a token for \
         audience kubernetes refused"
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_refreshes_across_expiry_with_new_apiserver_tokens() {
    let cp = ControlPlane::shared();
    let client = cp.admin_client().await;
    let namespace = cp.new_namespace("wi-refresh").await;
    let accounts = service_account(&client, &namespace).await;
    // IAM gives 4-second credentials, whatever is asked.
    let (emu, _) = emulator_trusting(&client, Duration::from_secs(4)).await;
    let iam = IamClient::new(&http_config(), Some(&emu.url())).expect("IAM client");
    let cache = FederationCache::new(iam, Duration::from_secs(900), RefreshPolicy::default());
    let key = (namespace.clone(), SERVICE_ACCOUNT.to_string(), IDP.to_string());

    let fetch = || token_request(&accounts, AUDIENCE);
    let (first, how) = cache.credentials(&key, IDP, fetch, jiff::Timestamp::now()).await.expect("exchanged");
    assert_eq!(how, Freshness::Exchanged);
    let (same, how) = cache.credentials(&key, IDP, fetch, jiff::Timestamp::now()).await.expect("cached");
    assert_eq!((how, &same.access_key_id), (Freshness::Cached, &first.access_key_id));
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let (fresh, how) = cache.credentials(&key, IDP, fetch, jiff::Timestamp::now()).await.expect("refreshed");
    assert_eq!(how, Freshness::Exchanged);
    assert_ne!(fresh.access_key_id, first.access_key_id);
    assert!(fresh.expires_at > first.expires_at);
    assert_eq!(emu.iam().issued().len(), 2);
    emu.shutdown().await;
}

/// The controller end to end: a policy naming a ServiceAccount of its namespace and an identity
/// provider gets temporary credentials through the TokenRequest API and the emulator's IAM, purges
/// with them, gets new ones once they expire (3-second credentials), and a ServiceAccount that is
/// missing or that the controller may not request tokens for stalls the policy with a reason that
/// says what to do. The name is resolved in the policy's own namespace only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_purges_with_a_service_account_identity_and_refreshes_it() {
    use common::e2e::{Env, PROJECT_A, RunningController, controller_subject, policy_at};
    use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef};
    use taskreaper::api::{Scope, Service, Target, WorkloadIdentity};
    use taskreaper::controller::identity::WorkloadIdentitySettings;

    let seed = Seed::Generated { projects: vec![PROJECT_A.into()], tasks_per_kind: 2, seed: 11 };
    let env = Env::without_controller("wi-e2e", seed).await;
    let admin = env.admin.clone();
    let discovery = get_json(&admin, "/.well-known/openid-configuration").await;
    let issuer = discovery["issuer"].as_str().expect("an issuer").to_string();
    let jwks = serde_json::from_value(get_json(&admin, "/openid/v1/jwks").await).expect("a JWKS");
    env.emulator.iam().set_provider(IDP, OidcProvider { issuer, audiences: vec![AUDIENCE.into()], jwks });
    env.emulator.iam().set_durations(Duration::from_secs(1), Duration::from_secs(3));
    let ns = env.ns.clone();
    service_account(&admin, &ns).await;
    let ungranted: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    let other = ServiceAccount {
        metadata: ObjectMeta { name: Some("not-granted".into()), ..ObjectMeta::default() },
        ..ServiceAccount::default()
    };
    ungranted.create(&PostParams::default(), &other).await.expect("a second ServiceAccount");
    // What deploy/examples/workload-identity-rbac.yaml grants: tokens for one ServiceAccount only.
    let role = Role {
        metadata: ObjectMeta { name: Some("taskreaper-token".into()), ..ObjectMeta::default() },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["serviceaccounts/token".into()]),
            resource_names: Some(vec![SERVICE_ACCOUNT.into()]),
            verbs: vec!["create".into()],
            ..PolicyRule::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), &ns).create(&PostParams::default(), &role).await.expect("Role");
    let binding = RoleBinding {
        metadata: ObjectMeta { name: Some("taskreaper-token".into()), ..ObjectMeta::default() },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "taskreaper-token".into(),
        },
        subjects: Some(vec![controller_subject()]),
    };
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("RoleBinding");

    let url = env.emulator.url();
    let controller_client = env.cp.controller_client().await;
    let controller = RunningController::start_with(controller_client, &[&ns], &env.emulator, |s| {
        s.workload_identity = Some(WorkloadIdentitySettings {
            token_audience: AUDIENCE.into(),
            token_expiration: Duration::from_secs(600),
            id_token_file: None,
            iam_endpoint: Some(url.clone()),
            credential_duration: Duration::from_secs(900),
            refresh: RefreshPolicy::default(),
        });
    })
    .await;

    let with_identity = |name: &str, account: &str| {
        let kps_all =
            Target { service: Service::Kps, scope: Scope::All, protection_group_ids: None, filter: None };
        let mut policy = policy_at(&ns, name, &url, &[PROJECT_A], vec![kps_all], 100);
        policy.spec.credentials_ref = None;
        policy.spec.workload_identity = Some(WorkloadIdentity {
            service_account_name: Some(account.into()),
            use_controller_token: None,
            identity_provider_id: IDP.into(),
        });
        policy
    };
    let before = env.emulator.store().failed_tasks(PROJECT_A).len();
    assert!(before > 0);
    env.create(&with_identity("wi", SERVICE_ACCOUNT)).await;
    let purged = env.wait_ready("wi", "True", "Purged").await;
    let credentials =
        purged.status.as_ref().and_then(|s| s.last_run.as_ref()).and_then(|r| r.credentials.clone());
    assert_eq!(
        credentials.as_deref(),
        Some(format!("ServiceAccount {SERVICE_ACCOUNT} via identity provider {IDP}").as_str()),
        "the status says whose credentials the run used"
    );
    env.wait_event("wi", "Normal", "Purged", |note| {
        note.ends_with(&format!(
            "(credentials: ServiceAccount {SERVICE_ACCOUNT} via identity provider {IDP})"
        ))
    })
    .await;
    assert!(env.emulator.store().failed_tasks(PROJECT_A).is_empty(), "purged with temporary credentials");
    let issued = env.emulator.iam().issued();
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(issued[0].subject, format!("system:serviceaccount:{ns}:{SERVICE_ACCOUNT}"));
    assert!(issued[0].calls >= 2, "the list before, the delete, the list after: {issued:?}");

    // The 3-second credentials expire; the next run exchanges a new token.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let tasks = env.emulator.store().failed_tasks(PROJECT_A);
    assert!(tasks.is_empty());
    let seeded = taskreaper::emulator::generate(&[PROJECT_A.to_string()], 1, 12, env.emulator.store().now());
    env.emulator.store().load(seeded);
    env.request_run("wi", "second", "1").await;
    let done = env.wait_handled("wi", "second").await;
    assert!(condition_is_ready(&done), "{:?}", done.status);
    assert!(env.emulator.store().failed_tasks(PROJECT_A).is_empty(), "purged again after a refresh");
    let issued = env.emulator.iam().issued();
    assert_eq!(issued.len(), 2, "a new exchange after expiry: {issued:?}");
    assert!(issued[1].calls >= 2);

    // Projects by region with temporary credentials: IAM lists them, signed with the security token.
    env.emulator.iam().name_projects([(PROJECT_A.to_string(), "cn-north-4".to_string())]);
    let seeded = taskreaper::emulator::generate(&[PROJECT_A.to_string()], 1, 13, env.emulator.store().now());
    env.emulator.store().load(seeded);
    assert!(!env.emulator.store().failed_tasks(PROJECT_A).is_empty());
    let mut by_region = with_identity("wi-discovery", SERVICE_ACCOUNT);
    by_region.spec.projects.clear();
    by_region.spec.project_discovery = Some(taskreaper::api::ProjectDiscovery {
        regions: vec!["cn-north-4".into()],
        all_projects: None,
        name_pattern: None,
        max_projects: 64,
    });
    env.create(&by_region).await;
    let discovered = env.wait_ready("wi-discovery", "True", "Purged").await;
    assert!(
        ready_message(&discovered).starts_with("1 project discovered at IAM in cn-north-4; "),
        "{}",
        ready_message(&discovered)
    );
    assert!(env.emulator.store().failed_tasks(PROJECT_A).is_empty(), "the discovered project is purged");
    let iam_calls = env.emulator.iam().calls();
    assert!(iam_calls.get("GET /v3/projects").is_some_and(|n| *n >= 1), "{iam_calls:?}");

    // A ServiceAccount the controller may not request tokens for, and one that does not exist.
    env.create(&with_identity("not-granted", "not-granted")).await;
    let blocked = env.wait_ready("not-granted", "False", "CredentialsInvalid").await;
    let message = ready_message(&blocked);
    assert!(message.contains("serviceaccounts/token") && message.contains("not-granted"), "{message}");
    env.create(&with_identity("missing", "missing")).await;
    let missing = env.wait_ready("missing", "False", "CredentialsInvalid").await;
    assert!(ready_message(&missing).contains("missing"), "{}", ready_message(&missing));
    println!(
        "controller with workload identity: {before} KPS tasks purged with temporary credentials of \
         system:serviceaccount:{ns}:{SERVICE_ACCOUNT}; a second run after the 3 s credentials expired \
         exchanged a new token ({} keys issued); an ungranted ServiceAccount -> CredentialsInvalid: {message}",
        issued.len()
    );
    controller.stop().await;
    env.finish().await;
}

fn ready_message(policy: &taskreaper::api::FailedTaskCleanupPolicy) -> String {
    common::e2e::condition(policy, taskreaper::api::ConditionType::Ready)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn condition_is_ready(policy: &taskreaper::api::FailedTaskCleanupPolicy) -> bool {
    common::e2e::condition(policy, taskreaper::api::ConditionType::Ready).is_some_and(|c| c.status == "True")
}
