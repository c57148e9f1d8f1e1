//! Smoke tests of the test control plane (tests/common/control_plane.rs):
//! they show it is a real kube-apiserver with etcd, RBAC, CRDs with CEL
//! validation, and kubectl access, and that it leaves nothing behind.
//!
//! Run through `bash tests/run.sh`, or with `TASKREAPER_CONTROL_PLANE_BIN` set
//! to the directory `bash tests/control-plane/build.sh` prints.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

/// Set in the environment of the child test binary that
/// [`shared_control_plane_leaves_nothing_after_the_binary_exits`] runs:
/// `exit` (its test returns) or `panic` (its test panics).
const CHILD_ENV: &str = "TASKREAPER_SMOKE_CHILD";

/// Name of the test, passed to the child binary with `--exact`.
const LEAK_TEST: &str = "shared_control_plane_leaves_nothing_after_the_binary_exits";

/// Start of the line on which the child reports what it started.
const CHILD_REPORT: &str = "shared control plane:";

/// How long after the child binary exits its processes, ports and directory
/// may take to go away (the cleanup sentinel waits about a second first).
const GONE_WITHIN: Duration = Duration::from_secs(10);

/// The shared control plane is never dropped (it lives in a static), so only
/// the kernel's parent-death signal and the cleanup sentinel stand between it
/// and a leak. This test runs its own binary twice as a child, once with a
/// test that returns and once with one that panics; each child starts the
/// shared control plane and reports its processes, ports and directory, and
/// after the child has exited they must all be gone.
#[test]
fn shared_control_plane_leaves_nothing_after_the_binary_exits() {
    match std::env::var(CHILD_ENV) {
        Ok(mode) => leak_test_child(&mode),
        Err(_) => {
            for mode in ["exit", "panic"] {
                leak_test_parent(mode);
            }
        }
    }
}

/// What a child binary started, as it reported it.
#[derive(Debug)]
struct ChildReport {
    pids: Vec<(String, u32)>,
    ports: Vec<(String, u16)>,
    sentinel_pid: u32,
    dir: PathBuf,
}

impl ChildReport {
    fn parse(line: &str) -> ChildReport {
        let fields = line.strip_prefix(CHILD_REPORT).unwrap_or_else(|| panic!("not a report: {line}"));
        let (fields, dir) = fields.split_once(" dir=").unwrap_or_else(|| panic!("no dir= in: {line}"));
        let field = |key: &str| {
            fields
                .split_whitespace()
                .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {key}= in: {line}"))
        };
        let pairs = |key: &str| -> Vec<(String, String)> {
            field(key)
                .split(',')
                .map(|pair| {
                    let (name, value) =
                        pair.split_once(':').unwrap_or_else(|| panic!("bad {key}= in: {line}"));
                    (name.to_owned(), value.to_owned())
                })
                .collect()
        };
        let number = |value: &str| -> u32 {
            value.parse().unwrap_or_else(|e| panic!("bad number {value:?} in {line}: {e}"))
        };
        ChildReport {
            pids: pairs("pids").into_iter().map(|(name, pid)| (name, number(&pid))).collect(),
            ports: pairs("ports")
                .into_iter()
                .map(|(name, port)| (name, u16::try_from(number(&port)).expect("a port number")))
                .collect(),
            sentinel_pid: number(field("sentinel")),
            dir: PathBuf::from(dir),
        }
    }
}

/// In the child binary: starts the shared control plane, checks it runs,
/// reports it on stdout, then returns or panics as `mode` says.
fn leak_test_child(mode: &str) {
    let cp = ControlPlane::shared();
    for (name, pid) in cp.pids() {
        assert!(process_alive(*pid, name), "{name} ({pid}) is not running");
    }
    for (name, port) in cp.ports() {
        assert!(
            TcpListener::bind(("127.0.0.1", *port)).is_err(),
            "nothing listens on the {name} port {port}"
        );
    }
    assert!(cp.dir().is_dir());
    let mut line = String::from(CHILD_REPORT);
    let pids: Vec<String> = cp.pids().iter().map(|(name, pid)| format!("{name}:{pid}")).collect();
    let ports: Vec<String> = cp.ports().iter().map(|(name, port)| format!("{name}:{port}")).collect();
    let _ = write!(line, " pids={} ports={}", pids.join(","), ports.join(","));
    let _ = write!(line, " sentinel={} dir={}", cp.sentinel_pid(), cp.dir().display());
    println!("{line}");
    match mode {
        "exit" => {}
        "panic" => panic!("deliberate panic while the shared control plane runs"),
        other => panic!("{CHILD_ENV}={other}: expected `exit` or `panic`"),
    }
}

/// In the test binary proper: runs the child in `mode`, then waits (bounded)
/// for everything it reported to be gone.
fn leak_test_parent(mode: &str) {
    let exe = std::env::current_exe().expect("the path of this test binary");
    let output = Command::new(&exe)
        .args(["--exact", LEAK_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()));
    let exited = Instant::now();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = format!("child ({mode}) {}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    match mode {
        "exit" => assert!(output.status.success(), "the child's test should pass; {context}"),
        _ => {
            assert!(!output.status.success(), "the child's test should fail; {context}");
            assert!(stderr.contains("deliberate panic"), "the child did not panic as asked; {context}");
        }
    }
    let line = stdout
        .lines()
        // libtest may have written `test <name> ... ` on the same line.
        .find_map(|line| line.find(CHILD_REPORT).map(|start| &line[start..]))
        .unwrap_or_else(|| panic!("the child reported no control plane; {context}"));
    let report = ChildReport::parse(line);
    assert_eq!(report.pids.len(), 2, "{report:?}");
    assert_eq!(report.ports.len(), 3, "{report:?}");

    // The sentinel is not part of the control plane: it removes the
    // directory a second or so after the binary exits, then ends itself.
    let leftovers = |report: &ChildReport| {
        let mut left: Vec<String> = Vec::new();
        for (name, pid) in &report.pids {
            if process_alive(*pid, name) {
                left.push(format!("{name} (pid {pid}) still runs"));
            }
        }
        for (name, port) in &report.ports {
            if let Err(e) = TcpListener::bind(("127.0.0.1", *port)) {
                left.push(format!("the {name} port {port} cannot be bound: {e}"));
            }
        }
        if report.dir.exists() {
            left.push(format!("{} still exists", report.dir.display()));
        }
        if process_alive(report.sentinel_pid, "sh") {
            left.push(format!("the cleanup sentinel (pid {}) still runs", report.sentinel_pid));
        }
        left
    };
    let deadline = exited + GONE_WITHIN;
    loop {
        let left = leftovers(&report);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{GONE_WITHIN:?} after the test binary exited ({mode}), the shared control plane left behind:\n  {}",
            left.join("\n  ")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "after the test binary exited ({mode}): {} processes gone, {} ports free, temp dir removed, \
         cleanup sentinel ended (all within {} ms)",
        report.pids.len(),
        report.ports.len(),
        exited.elapsed().as_millis()
    );
}

/// Whether `pid` is a live process running `name`. A zombie (killed, not yet
/// reaped by init) is not alive, and neither is a pid reused by another program.
fn process_alive(pid: u32, name: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // `<pid> (<comm>) <state> ...`; comm (at most 15 bytes) may hold spaces or parentheses.
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { return false };
    let comm = &stat[open + 1..close];
    let state = stat[close + 1..].trim_start().chars().next();
    let expected = &name[..name.len().min(15)];
    comm == expected && !matches!(state, Some('Z' | 'X' | 'x'))
}
