//! Least privilege, proven on a real kube-apiserver: the shipped RBAC grants the controller what it
//! uses and is DENIED the rest, in both install modes. Cluster mode: the ClusterRole of
//! `deploy/base/rbac.yaml` bound to `taskreaper-controller` plus the leader-election Role in the
//! controller's namespace. Namespaced mode: the output of `kubectl kustomize
//! deploy/overlays/namespaced`, applied as built, checked as its ServiceAccount (impersonated) with
//! SubjectAccessReviews and real calls, and a controller running under it in namespaced mode.
//!
//! Run through `bash tests/run.sh`, or with `TASKREAPER_CONTROL_PLANE_BIN` set.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::control_plane::{ControlPlane, Identity};
use common::e2e::{
    AK, Env, PROJECT_A, RunningController, SECRET_NAME, SK, eventually, grant_leases, kps_all,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource as _};
use serde_json::json;
use taskreaper::api::FailedTaskCleanupPolicy;
use taskreaper::cloud::model::FailedTask;
use taskreaper::emulator::Seed;

/// The ServiceAccount the shipped manifests bind.
const SERVICE_ACCOUNT: &str = "system:serviceaccount:taskreaper-system:taskreaper";
const SERVICE_ACCOUNT_GROUPS: [&str; 3] =
    ["system:serviceaccounts", "system:serviceaccounts:taskreaper-system", "system:authenticated"];
/// The namespaces deploy/overlays/namespaced watches.
const WATCHED: [&str; 2] = ["team-a", "team-b"];
const POLICIES: &str = "taskreaper.io/failedtaskcleanuppolicies";
const POLICY_STATUS: &str = "taskreaper.io/failedtaskcleanuppolicies/status";
const SECRETS: &str = "/secrets";
const EVENTS: &str = "events.k8s.io/events";
const LEASES: &str = "coordination.k8s.io/leases";

/// What to ask the authorizer: `verb` on `group/resource[/subresource]`, in `namespace` (all
/// namespaces when `None`), optionally of one object by name.
fn access(verb: &str, resource: &str, namespace: Option<&str>, name: Option<&str>) -> ResourceAttributes {
    let mut parts = resource.splitn(3, '/');
    let group = parts.next().unwrap_or_default();
    ResourceAttributes {
        verb: Some(verb.into()),
        group: Some(group.into()),
        resource: parts.next().map(str::to_string),
        subresource: parts.next().map(str::to_string),
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        ..ResourceAttributes::default()
    }
}

fn describe(a: &ResourceAttributes) -> String {
    format!(
        "{} {}/{}{} in {} {}",
        a.verb.as_deref().unwrap_or("?"),
        a.group.as_deref().unwrap_or(""),
        a.resource.as_deref().unwrap_or("?"),
        a.subresource.as_deref().map(|s| format!("/{s}")).unwrap_or_default(),
        a.namespace.as_deref().unwrap_or("all namespaces"),
        a.name.as_deref().unwrap_or(""),
    )
}

/// Whether `user` (in `groups`) may do `what`, according to a SubjectAccessReview.
async fn allowed(admin: &Client, user: &str, groups: &[&str], what: &ResourceAttributes) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(groups.iter().map(|g| (*g).to_string()).collect()),
            resource_attributes: Some(what.clone()),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(admin.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| panic!("SubjectAccessReview of {}: {e}", describe(what)));
    answer.status.is_some_and(|s| s.allowed)
}

/// Checks every expectation, waiting (RBAC reaches the authorizer asynchronously) until the
/// allowed ones are allowed, then asserts each answer; fails listing every wrong answer.
async fn assert_access(
    admin: &Client,
    user: &str,
    groups: &[&str],
    allow: &[ResourceAttributes],
    deny: &[ResourceAttributes],
) {
    eventually("the grants to take effect", Duration::from_secs(30), || async {
        for a in allow {
            if !allowed(admin, user, groups, a).await {
                return Err(format!("{user} may not yet {}", describe(a)));
            }
        }
        Ok(())
    })
    .await;
    let mut wrong = Vec::new();
    for a in deny {
        if allowed(admin, user, groups, a).await {
            wrong.push(format!("ALLOWED but should be denied: {}", describe(a)));
        } else {
            println!("{user}: denied {}", describe(a));
        }
    }
    assert!(wrong.is_empty(), "{user}:\n{}", wrong.join("\n"));
}

/// Fails unless `result` is a 403 from the API server.
fn assert_forbidden<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => println!("forbidden as expected: {what}"),
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

/// A client for the admin's kubeconfig impersonating the shipped ServiceAccount.
async fn service_account_client(cp: &ControlPlane) -> Client {
    let path = cp.kubeconfig_path(Identity::Admin);
    let kubeconfig =
        Kubeconfig::read_from(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
    config.auth_info.impersonate = Some(SERVICE_ACCOUNT.into());
    config.auth_info.impersonate_groups = Some(SERVICE_ACCOUNT_GROUPS.map(String::from).to_vec());
    Client::try_from(config).unwrap_or_else(|e| panic!("building the impersonating client: {e}"))
}

async fn kubectl(cp: &ControlPlane, args: &[&str], stdin: Option<&str>) -> String {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_path(Identity::Admin))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running kubectl (is it installed?): {e}"));
    let mut input = child.stdin.take().expect("kubectl's stdin is piped");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.expect("writing to kubectl");
    }
    drop(input);
    let output = child.wait_with_output().await.expect("waiting for kubectl");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "kubectl {} failed ({}):\n{}{stdout}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

async fn ensure_namespace(admin: &Client, name: &str) {
    let ns = Namespace {
        metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
        ..Namespace::default()
    };
    match Api::<Namespace>::all(admin.clone()).create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating namespace {name}: {e}"),
    }
}

async fn create_secret(admin: &Client, namespace: &str) {
    let secret = Secret {
        metadata: ObjectMeta { name: Some(SECRET_NAME.into()), ..ObjectMeta::default() },
        data: Some(BTreeMap::from([
            ("accessKeyId".to_string(), ByteString(AK.as_bytes().to_vec())),
            ("secretAccessKey".to_string(), ByteString(SK.as_bytes().to_vec())),
        ])),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("creating the Secret in {namespace}: {e}"));
}

/// Builds deploy/overlays/namespaced (and checks deploy/base builds too), creates the watched
/// namespaces and applies the namespaced install as built, once per test binary.
async fn install_namespaced(cp: &'static ControlPlane) {
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async move {
            let base = kubectl(cp, &["kustomize", "deploy/base"], None).await;
            assert!(base.contains("kind: ClusterRole\n"), "the base installs the ClusterRole:\n{base}");
            let built = kubectl(cp, &["kustomize", "deploy/overlays/namespaced"], None).await;
            assert!(
                !built.contains("kind: ClusterRole"),
                "the namespaced install has no ClusterRole(Binding):\n{built}"
            );
            assert!(
                built.contains("--namespace=team-a,team-b"),
                "the Deployment watches the listed namespaces"
            );
            let admin = cp.admin_client().await;
            for ns in WATCHED {
                ensure_namespace(&admin, ns).await;
            }
            kubectl(cp, &["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(&built)).await;
        })
        .await;
}

#[tokio::test]
async fn the_cluster_install_denies_the_controller_what_it_does_not_use() {
    let env = Env::without_controller("rbac-cluster", Seed::Empty).await;
    let own = env.cp.new_namespace("rbac-own").await;
    grant_leases(env.cp, &own).await;
    let user = Identity::Controller.user();
    let ns = Some(env.ns.as_str());
    let lease = Some("taskreaper-leader");
    let allow = [
        access("get", POLICIES, None, None),
        access("list", POLICIES, None, None),
        access("watch", POLICIES, None, None),
        access("patch", POLICY_STATUS, ns, Some("p")),
        access("get", SECRETS, ns, Some(SECRET_NAME)),
        access("create", EVENTS, ns, None),
        access("create", LEASES, Some(&own), None),
        access("get", LEASES, Some(&own), lease),
        access("update", LEASES, Some(&own), lease),
    ];
    let deny = [
        access("list", SECRETS, ns, None),
        access("watch", SECRETS, ns, None),
        access("list", SECRETS, None, None),
        access("watch", SECRETS, None, None),
        access("create", SECRETS, ns, None),
        access("update", SECRETS, ns, Some(SECRET_NAME)),
        access("update", POLICY_STATUS, ns, Some("p")),
        access("get", POLICY_STATUS, ns, Some("p")),
        access("update", POLICIES, ns, Some("p")),
        access("patch", POLICIES, ns, Some("p")),
        access("create", POLICIES, ns, None),
        access("delete", POLICIES, ns, Some("p")),
        access("patch", EVENTS, ns, Some("e")),
        access("update", EVENTS, ns, Some("e")),
        access("delete", EVENTS, ns, Some("e")),
        access("get", LEASES, Some("kube-system"), lease),
        access("create", LEASES, Some("kube-system"), None),
        access("patch", LEASES, Some("kube-system"), lease),
        access("list", LEASES, Some(&own), None),
        access("watch", LEASES, Some(&own), None),
        access("patch", LEASES, Some(&own), lease),
        // No token minting: workload identity needs an opt-in Role per ServiceAccount
        // (deploy/examples/workload-identity-rbac.yaml).
        access("create", "/serviceaccounts/token", ns, Some("default")),
        access("create", "/serviceaccounts/token", Some(&own), Some("taskreaper")),
        access("create", "/serviceaccounts/token", None, None),
        access("get", LEASES, Some(&own), Some("another-lease")),
        access("update", LEASES, Some(&own), Some("another-lease")),
        access("delete", LEASES, Some(&own), lease),
        access("list", LEASES, None, None),
        access("create", "coordination.k8s.io/leases", ns, None),
    ];
    assert_access(&env.admin, user, &[], &allow, &deny).await;

    // Real calls as the controller identity.
    let client = env.cp.controller_client().await;
    env.create_secret(AK, SK).await;
    let secrets = Api::<Secret>::namespaced(client.clone(), &env.ns);
    secrets.get(SECRET_NAME).await.expect("the controller may get a Secret");
    assert_forbidden("list Secrets in a namespace", secrets.list_metadata(&ListParams::default()).await);
    assert_forbidden(
        "watch Secrets in a namespace",
        secrets.watch(&WatchParams::default(), "0").await.map(|_| ()),
    );
    let all_secrets = Api::<Secret>::all(client.clone());
    assert_forbidden("list Secrets everywhere", all_secrets.list_metadata(&ListParams::default()).await);
    assert_forbidden(
        "watch Secrets everywhere",
        all_secrets.watch(&WatchParams::default(), "0").await.map(|_| ()),
    );
    let system_leases = Api::<Lease>::namespaced(client.clone(), "kube-system");
    assert_forbidden("get a Lease in kube-system", system_leases.get_opt("taskreaper-leader").await);
    let lease_object = Lease {
        metadata: ObjectMeta { name: Some("taskreaper-leader".into()), ..ObjectMeta::default() },
        ..Lease::default()
    };
    assert_forbidden(
        "create a Lease in kube-system",
        system_leases.create(&PostParams::default(), &lease_object).await,
    );

    // Status: server-side apply (patch) works, a PUT of the status is refused.
    let policy = env.create(&env.policy("p", &[PROJECT_A], vec![kps_all()])).await;
    let policies = Api::<FailedTaskCleanupPolicy>::namespaced(client, &env.ns);
    let apply = json!({
        "apiVersion": FailedTaskCleanupPolicy::api_version(&()),
        "kind": FailedTaskCleanupPolicy::kind(&()),
        "status": {"totalDeleted": 0},
    });
    let applied =
        policies.patch_status("p", &PatchParams::apply("taskreaper").force(), &Patch::Apply(&apply)).await;
    assert!(applied.is_ok(), "server-side apply of the status is allowed: {applied:?}");
    let mut put = policy.clone();
    put.metadata.resource_version = None;
    assert_forbidden(
        "update (PUT) the policy status",
        policies.replace_status("p", &PostParams::default(), &put).await,
    );
    env.finish().await;
}

#[tokio::test]
async fn the_namespaced_install_grants_only_the_listed_namespaces() {
    let env = Env::without_controller("rbac-elsewhere", Seed::Empty).await;
    install_namespaced(env.cp).await;
    let elsewhere = Some(env.ns.as_str());
    let lease = Some("taskreaper-leader");
    let mut allow = vec![
        access("create", LEASES, Some("taskreaper-system"), None),
        access("get", LEASES, Some("taskreaper-system"), lease),
        access("update", LEASES, Some("taskreaper-system"), lease),
    ];
    let mut deny = vec![
        access("list", POLICIES, None, None),
        access("watch", POLICIES, None, None),
        access("get", SECRETS, None, Some(SECRET_NAME)),
        access("list", SECRETS, None, None),
        access("watch", SECRETS, None, None),
        access("list", POLICIES, elsewhere, None),
        access("watch", POLICIES, elsewhere, None),
        access("patch", POLICY_STATUS, elsewhere, Some("p")),
        access("get", SECRETS, elsewhere, Some(SECRET_NAME)),
        access("get", SECRETS, Some("taskreaper-system"), Some(SECRET_NAME)),
        access("get", SECRETS, Some("kube-system"), Some(SECRET_NAME)),
        access("create", EVENTS, elsewhere, None),
        access("get", LEASES, Some("kube-system"), lease),
        access("create", LEASES, Some("kube-system"), None),
        access("get", LEASES, Some("team-a"), lease),
        access("create", LEASES, Some("team-a"), None),
        access("patch", LEASES, Some("taskreaper-system"), lease),
        access("list", LEASES, Some("taskreaper-system"), None),
        access("get", LEASES, Some("taskreaper-system"), Some("another-lease")),
    ];
    for ns in WATCHED {
        let ns = Some(ns);
        allow.extend([
            access("get", POLICIES, ns, Some("p")),
            access("list", POLICIES, ns, None),
            access("watch", POLICIES, ns, None),
            access("patch", POLICY_STATUS, ns, Some("p")),
            access("get", SECRETS, ns, Some(SECRET_NAME)),
            access("create", EVENTS, ns, None),
        ]);
        deny.extend([
            access("list", SECRETS, ns, None),
            access("watch", SECRETS, ns, None),
            access("update", POLICY_STATUS, ns, Some("p")),
            access("update", POLICIES, ns, Some("p")),
            access("patch", EVENTS, ns, Some("e")),
        ]);
    }
    assert_access(&env.admin, SERVICE_ACCOUNT, &SERVICE_ACCOUNT_GROUPS, &allow, &deny).await;

    // Real calls as the ServiceAccount.
    let sa = service_account_client(env.cp).await;
    env.create_secret(AK, SK).await;
    assert_forbidden(
        "get a Secret outside the watched namespaces",
        Api::<Secret>::namespaced(sa.clone(), &env.ns).get(SECRET_NAME).await,
    );
    let team_a = Api::<Secret>::namespaced(sa.clone(), "team-a");
    assert!(
        team_a.get_opt(SECRET_NAME).await.is_ok(),
        "get in a watched namespace is allowed (404 or found)"
    );
    assert_forbidden(
        "list Secrets in a watched namespace",
        team_a.list_metadata(&ListParams::default()).await,
    );
    assert_forbidden(
        "watch Secrets in a watched namespace",
        team_a.watch(&WatchParams::default(), "0").await.map(|_| ()),
    );
    assert_forbidden(
        "list policies in every namespace",
        Api::<FailedTaskCleanupPolicy>::all(sa.clone()).list_metadata(&ListParams::default()).await,
    );
    assert_forbidden(
        "get a Lease in kube-system",
        Api::<Lease>::namespaced(sa.clone(), "kube-system").get_opt("taskreaper-leader").await,
    );
    assert!(
        Api::<Lease>::namespaced(sa, "taskreaper-system").get_opt("taskreaper-leader").await.is_ok(),
        "the leader-election Lease in the controller's namespace may be read"
    );
    env.finish().await;
}

#[tokio::test]
async fn a_namespaced_controller_purges_in_its_namespaces_and_leaves_the_rest() {
    let env = Env::without_controller(
        "rbac-unwatched",
        Seed::Generated { projects: vec![PROJECT_A.into()], tasks_per_kind: 1, seed: 7 },
    )
    .await;
    install_namespaced(env.cp).await;
    let sa = service_account_client(env.cp).await;
    // Each watched namespace gets a policy over its own project; the unwatched one too.
    let projects =
        [("team-a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), ("team-b", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")];
    let store = env.emulator.store();
    for (ns, project) in projects {
        store.add_failed_tasks(
            project,
            [FailedTask {
                task_id: format!("{ns}-task"),
                operate_type: "FAILED_UNBIND".into(),
                keypair_name: "kp-1".into(),
                ..FailedTask::default()
            }],
        );
        let _ = Api::<Secret>::namespaced(env.admin.clone(), ns)
            .delete(SECRET_NAME, &kube::api::DeleteParams::default())
            .await;
        create_secret(&env.admin, ns).await;
        let mut policy = env.policy("ns-mode", &[project], vec![kps_all()]);
        policy.metadata.namespace = Some(ns.into());
        let policies = Api::<FailedTaskCleanupPolicy>::namespaced(env.admin.clone(), ns);
        let _ = policies.delete("ns-mode", &kube::api::DeleteParams::default()).await;
        eventually("an earlier policy to be gone", Duration::from_secs(30), || async {
            match policies.get_opt("ns-mode").await {
                Ok(None) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        policies
            .create(&PostParams::default(), &policy)
            .await
            .unwrap_or_else(|e| panic!("creating the policy in {ns}: {e}"));
    }
    env.create_secret(AK, SK).await;
    env.create(&env.policy("unwatched", &[PROJECT_A], vec![kps_all()])).await;

    let controller = RunningController::start_watching(sa, &WATCHED, &env.emulator).await;
    for (ns, project) in projects {
        let policies = Api::<FailedTaskCleanupPolicy>::namespaced(env.admin.clone(), ns);
        eventually(&format!("the policy in {ns} to purge"), Duration::from_secs(60), || async {
            let policy = policies.get("ns-mode").await.map_err(|e| e.to_string())?;
            let purged =
                common::e2e::condition_is(&policy, taskreaper::api::ConditionType::Ready, "True", "Purged");
            if purged { Ok(()) } else { Err(common::e2e::status_yaml(&policy)) }
        })
        .await;
        assert!(store.failed_tasks(project).is_empty(), "the task in {ns} was deleted");
    }
    // Nothing outside the watched namespaces was touched: no status, no cloud call for it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let unwatched = env.get("unwatched").await;
    assert!(
        unwatched.status.is_none(),
        "the unwatched policy got a status: {}",
        common::e2e::status_yaml(&unwatched)
    );
    assert_eq!(env.task_ids(PROJECT_A).len(), 4, "the unwatched namespace's tasks are untouched");
    controller.stop().await;
    env.finish().await;
}
