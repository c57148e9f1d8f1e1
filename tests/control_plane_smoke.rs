//! Smoke tests of the test control plane (tests/common/control_plane.rs):
//! they show it is a real kube-apiserver with etcd, RBAC, CRDs with CEL
//! validation, and kubectl access.
//!
//! Run through `bash tests/run.sh`, or with `TASKREAPER_CONTROL_PLANE_BIN` set
//! to the directory `bash tests/control-plane/build.sh` prints.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::control_plane::{ControlPlane, Identity};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use serde_json::json;

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.taskreaper.io
spec:
  group: smoke.taskreaper.io
  scope: Namespaced
  names:
    kind: Widget
    plural: widgets
    singular: widget
    listKind: WidgetList
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [minReplicas, maxReplicas]
              properties:
                minReplicas:
                  type: integer
                maxReplicas:
                  type: integer
              x-kubernetes-validations:
                - rule: "self.minReplicas <= self.maxReplicas"
                  message: "minReplicas must not exceed maxReplicas"
"#;

fn api_error_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[tokio::test]
async fn creates_namespace_and_secret() {
    let cp = ControlPlane::shared();
    let ns = cp.new_namespace("smoke-secret").await;
    let secrets: Api<Secret> = Api::namespaced(cp.admin_client().await, &ns);
    let secret = Secret {
        metadata: ObjectMeta { name: Some("credentials".into()), ..ObjectMeta::default() },
        data: Some(BTreeMap::from([("ak".to_owned(), ByteString(b"access-key".to_vec()))])),
        ..Secret::default()
    };
    secrets.create(&PostParams::default(), &secret).await.expect("create secret");

    let stored = secrets.get("credentials").await.expect("get secret");
    assert_eq!(stored.metadata.namespace.as_deref(), Some(ns.as_str()));
    assert!(stored.metadata.uid.is_some(), "the server assigns a uid");
    assert_eq!(stored.data.unwrap()["ak"].0, b"access-key");

    let version = cp.admin_client().await.apiserver_version().await.expect("/version");
    assert!(version.git_version.starts_with("v1."), "unexpected server version {version:?}");
}

#[tokio::test]
async fn crd_cel_validation_rejects_invalid_object() {
    let cp = ControlPlane::shared();
    let crd = cp.apply_crd(WIDGET_CRD).await;
    assert_eq!(crd.metadata.name.as_deref(), Some("widgets.smoke.taskreaper.io"));

    let ns = cp.new_namespace("smoke-cel").await;
    let gvk = GroupVersionKind::gvk("smoke.taskreaper.io", "v1", "Widget");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(cp.admin_client().await, &ns, &resource);

    let valid =
        DynamicObject::new("valid", &resource).data(json!({"spec": {"minReplicas": 1, "maxReplicas": 3}}));
    widgets.create(&PostParams::default(), &valid).await.expect("a valid Widget is accepted");

    let invalid =
        DynamicObject::new("invalid", &resource).data(json!({"spec": {"minReplicas": 5, "maxReplicas": 3}}));
    let error = widgets
        .create(&PostParams::default(), &invalid)
        .await
        .expect_err("the CEL rule must reject minReplicas > maxReplicas");
    assert_eq!(api_error_code(&error), Some(422), "expected 422 Invalid, got {error:?}");
    assert!(
        error.to_string().contains("minReplicas must not exceed maxReplicas"),
        "the CEL rule's message is missing from: {error}"
    );

    let names: Vec<String> = widgets
        .list(&ListParams::default())
        .await
        .expect("list widgets")
        .items
        .into_iter()
        .filter_map(|w| w.metadata.name)
        .collect();
    assert_eq!(names, ["valid"]);
}

/// Lists secrets until it succeeds; RBAC changes reach the authorizer's
/// cache asynchronously.
async fn list_secrets_eventually(client: Client, ns: &str) -> Result<usize, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client, ns);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match api.list(&ListParams::default()).await {
            Ok(list) => return Ok(list.items.len()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test]
async fn controller_identity_is_limited_by_rbac() {
    let cp = ControlPlane::shared();
    let ns = cp.new_namespace("smoke-rbac").await;
    let controller = cp.controller_client().await;

    let error = Api::<Secret>::namespaced(controller.clone(), &ns)
        .list(&ListParams::default())
        .await
        .expect_err("the controller may not list secrets without a grant");
    assert_eq!(api_error_code(&error), Some(403), "expected 403 Forbidden, got {error:?}");
    assert!(error.to_string().contains("taskreaper-controller"), "{error}");

    let admin = cp.admin_client().await;
    let role = Role {
        metadata: ObjectMeta { name: Some("read-secrets".into()), ..ObjectMeta::default() },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..PolicyRule::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("create Role");
    let binding = RoleBinding {
        metadata: ObjectMeta { name: Some("controller-reads-secrets".into()), ..ObjectMeta::default() },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "read-secrets".into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: Identity::Controller.user().into(),
            ..Subject::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin, &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create RoleBinding");

    let count = list_secrets_eventually(controller.clone(), &ns).await.expect("the granted list is allowed");
    assert_eq!(count, 0);

    // The grant is namespaced: other namespaces stay forbidden.
    let error = Api::<Secret>::namespaced(controller, "default")
        .list(&ListParams::default())
        .await
        .expect_err("the grant does not reach other namespaces");
    assert_eq!(api_error_code(&error), Some(403), "expected 403 Forbidden, got {error:?}");
}

#[tokio::test]
async fn kubectl_lists_the_test_namespace() {
    let cp = ControlPlane::shared();
    let ns = cp.new_namespace("smoke-kubectl").await;
    let kubeconfig = cp.kubeconfig_path(Identity::Admin);
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "ns"])
        .output()
        .unwrap_or_else(|e| panic!("running kubectl (is it installed?): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kubectl failed ({}):\n{stderr}", output.status);
    assert!(stdout.contains(&ns), "namespace {ns} missing from kubectl output:\n{stdout}");

    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_path(Identity::Controller))
        .args(["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])
        .output()
        .expect("running kubectl");
    assert!(
        output.status.success(),
        "kubectl auth whoami failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "taskreaper-controller");
}

/// A private control plane is fully torn down when dropped, even when the
/// test thread that owns it panics.
#[test]
fn private_control_plane_is_torn_down_on_drop() {
    let cp = ControlPlane::start();
    let dir = cp.dir().to_owned();
    let pids = cp.pids().to_vec();
    assert_eq!(pids.len(), 2);
    for (name, pid) in &pids {
        assert!(Path::new(&format!("/proc/{pid}")).exists(), "{name} ({pid}) is not running");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let ns = cp.new_namespace("private").await;
        assert!(ns.starts_with("private-"));
    });

    // Drop during a panic, as when an assertion fails.
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _owned = cp;
        panic!("deliberate panic while a private control plane is alive");
    }));
    assert!(unwound.is_err());

    for (name, pid) in &pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "{name} ({pid}) outlived its ControlPlane");
    }
    assert!(!dir.exists(), "{} outlived its ControlPlane", dir.display());
}
