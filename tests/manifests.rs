//! Every shipped manifest is accepted by a real kube-apiserver: `kubectl kustomize` of deploy/base,
//! deploy/overlays/namespaced and deploy/overlays/monitoring, and `helm template` of
//! deploy/helm/taskreaper with several value sets, are applied object by object with a server-side
//! dry run (with the prometheus-operator ServiceMonitor and PrometheusRule CRDs installed), and each
//! rendered object must come back accepted. Also checks what the renders promise: JSON logs, the
//! rate flags chosen, selectors that select the controller's pods, and one set of alert rules.
//!
//! Run through `bash tests/run.sh`, or with `TASKREAPER_CONTROL_PLANE_BIN`, `TASKREAPER_HELM` and
//! `TASKREAPER_MONITORING_CRDS` set to what tests/control-plane/build.sh,
//! tests/tools/helm/build.sh and tests/tools/monitoring-crds/fetch.sh print.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::control_plane::{ControlPlane, Identity};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use serde_json::{Value, json};

const HELM_ENV: &str = "TASKREAPER_HELM";
const MONITORING_CRDS_ENV: &str = "TASKREAPER_MONITORING_CRDS";
const CRD_YAML: &str = include_str!("../crds/failedtaskcleanuppolicies.taskreaper.io.yaml");
const MONITORING_CRD_FILES: [&str; 2] =
    ["monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml"];
const CHART: &str = "deploy/helm/taskreaper";
/// The namespaces the kustomize builds put objects in.
const KUSTOMIZE_NAMESPACES: [&str; 3] = ["taskreaper-system", "team-a", "team-b"];

/// The alerts, exactly: name, expression, `for`.
const ALERTS: [(&str, &str, Option<&str>); 4] = [
    ("TaskreaperPolicyNotReady", "taskreaper_policy_not_ready_runs >= 2", None),
    (
        "TaskreaperAuthenticationFailed",
        r#"taskreaper_policies{reason="AuthenticationFailed"} > 0"#,
        Some("10m"),
    ),
    (
        "TaskreaperThrottled",
        "sum by (service) (rate(taskreaper_cloud_throttled_total[10m])) > 0.1",
        Some("15m"),
    ),
    ("TaskreaperNoLeader", "max(taskreaper_leader) < 1 or absent(taskreaper_leader)", Some("5m")),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A path from a variable tests/run.sh exports; fails loudly when it is missing.
fn required_path(var: &str, made_by: &str) -> PathBuf {
    let value = std::env::var_os(var).unwrap_or_else(|| {
        panic!("{var} is not set: run through `bash tests/run.sh`, or set it to what `bash {made_by}` prints")
    });
    let path = PathBuf::from(value);
    assert!(path.exists(), "{var}={} does not exist; `bash {made_by}` makes it", path.display());
    path
}

/// Runs `command` in the repository, feeding it `stdin`; returns stdout, fails with stderr.
fn run(mut command: Command, stdin: Option<&str>) -> String {
    let shown = format!("{command:?}");
    let mut child = command
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {shown} (is it installed?): {e}"));
    let mut input = child.stdin.take().expect("stdin is piped");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap_or_else(|e| panic!("writing to {shown}: {e}"));
    }
    drop(input);
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("waiting for {shown}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{shown} failed ({}):\n{}{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn kubectl(cp: &ControlPlane, args: &[&str], stdin: Option<&str>) -> String {
    let mut command = Command::new("kubectl");
    command.arg("--kubeconfig").arg(cp.kubeconfig_path(Identity::Admin)).args(args);
    run(command, stdin)
}

fn kustomize(cp: &ControlPlane, dir: &str) -> String {
    kubectl(cp, &["kustomize", dir], None)
}

/// `helm template` of the chart (CRDs included) into `namespace`, with `values` as a values file.
fn helm_template(namespace: &str, values: &Value) -> String {
    let helm = required_path(HELM_ENV, "tests/tools/helm/build.sh");
    let mut file = tempfile::NamedTempFile::new().expect("a temporary values file");
    file.write_all(values.to_string().as_bytes()).expect("writing the values file");
    let mut command = Command::new(helm);
    command
        .args(["template", "taskreaper", CHART, "--include-crds", "--namespace", namespace, "--values"])
        .arg(file.path());
    run(command, None)
}

/// The objects of a multi-document YAML text.
fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_str_multiple::<Value, Vec<_>>(yaml)
        .unwrap_or_else(|e| panic!("parsing the rendered YAML: {e}\n{yaml}"))
}

/// `Kind namespace/name` of an object (namespace empty when cluster-scoped).
fn identity(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap_or("?");
    let ns = object["metadata"]["namespace"].as_str().unwrap_or("");
    let name = object["metadata"]["name"].as_str().unwrap_or("?");
    format!("{kind} {ns}/{name}")
}

fn kind_counts(objects: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for object in objects {
        *counts.entry(object["kind"].as_str().unwrap_or("?").to_string()).or_insert(0) += 1;
    }
    counts
}

fn the<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<_> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

fn container_args(objects: &[Value]) -> Vec<String> {
    let deployment = the(objects, "Deployment");
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    serde_json::from_value(args.clone()).unwrap_or_else(|e| panic!("the Deployment's args: {e}: {args}"))
}

/// CRDs, namespaces: what the renders need on the server, once per test binary.
async fn prepare() -> &'static ControlPlane {
    static PREPARED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let cp = ControlPlane::shared();
    PREPARED
        .get_or_init(|| async move {
            let dir = required_path(MONITORING_CRDS_ENV, "tests/tools/monitoring-crds/fetch.sh");
            for file in MONITORING_CRD_FILES {
                let path = dir.join(file);
                let yaml = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                cp.apply_crd(&yaml).await;
            }
            cp.apply_crd(CRD_YAML).await;
            let namespaces = Api::<Namespace>::all(cp.admin_client().await);
            for name in KUSTOMIZE_NAMESPACES {
                let ns = Namespace {
                    metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
                    ..Namespace::default()
                };
                match namespaces.create(&PostParams::default(), &ns).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => panic!("creating namespace {name}: {e}"),
                }
            }
        })
        .await;
    cp
}

/// Applies every object of `rendered` with a server-side dry run and asserts that each one came
/// back accepted; returns the parsed objects. `expected` is the kind count the render must have.
fn assert_accepted(cp: &ControlPlane, what: &str, rendered: &str, expected: &[(&str, usize)]) -> Vec<Value> {
    let objects = documents(rendered);
    let counts = kind_counts(&objects);
    let expected: BTreeMap<String, usize> = expected.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    assert_eq!(counts, expected, "{what}: the kinds rendered");
    // kubectl applies each object and goes on after a rejection; it exits non-zero and prints
    // every rejection on stderr, which `run` shows.
    let output = kubectl(
        cp,
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=taskreaper-manifests",
            "-o",
            "json",
            "-f",
            "-",
        ],
        Some(rendered),
    );
    let mut accepted: Vec<String> = serde_json::Deserializer::from_str(&output)
        .into_iter::<Value>()
        .map(|o| o.unwrap_or_else(|e| panic!("{what}: kubectl's output is not JSON: {e}\n{output}")))
        .flat_map(|o| {
            if o["kind"] == "List" { o["items"].as_array().cloned().unwrap_or_default() } else { vec![o] }
        })
        .map(|o| identity(&o))
        .collect();
    let mut sent: Vec<String> = objects.iter().map(identity).collect();
    accepted.sort();
    sent.sort();
    assert_eq!(accepted, sent, "{what}: the objects the apiserver accepted (dry run) against those rendered");
    println!("{what}: {} objects accepted: {counts:?}", sent.len());
    objects
}

/// The controller's pod labels select with every selector that should select them.
fn assert_selectors_match(what: &str, objects: &[Value]) {
    let pod_labels = &the(objects, "Deployment")["spec"]["template"]["metadata"]["labels"];
    let selects = |selector: &Value, labels: &Value| {
        selector.as_object().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
    };
    let mut selectors = vec![("Service", &the(objects, "Service")["spec"]["selector"])];
    for kind in ["PodDisruptionBudget", "NetworkPolicy"] {
        if let Some(object) = objects.iter().find(|o| o["kind"] == kind) {
            let field = if kind == "NetworkPolicy" { "podSelector" } else { "selector" };
            selectors.push((kind, &object["spec"][field]["matchLabels"]));
        }
    }
    for (kind, selector) in selectors {
        assert!(
            selects(selector, pod_labels),
            "{what}: the {kind} selector {selector} misses the pods {pod_labels}"
        );
    }
    let service = the(objects, "Service");
    let ports = &service["spec"]["ports"];
    assert_eq!(ports[0]["name"], "metrics", "{what}: {ports}");
    assert_eq!(ports[0]["targetPort"], "metrics", "{what}: {ports}");
    if let Some(monitor) = objects.iter().find(|o| o["kind"] == "ServiceMonitor") {
        let selector = &monitor["spec"]["selector"]["matchLabels"];
        assert!(
            selects(selector, &service["metadata"]["labels"]),
            "{what}: the ServiceMonitor misses the Service"
        );
        assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics", "{what}");
    }
}

fn assert_network_policy(what: &str, objects: &[Value]) {
    let policy = &the(objects, "NetworkPolicy")["spec"];
    assert_eq!(policy["policyTypes"], json!(["Ingress", "Egress"]), "{what}");
    assert_eq!(policy["ingress"], json!([{"ports": [{"port": "metrics", "protocol": "TCP"}]}]), "{what}");
    let egress: Vec<(u64, &str)> = policy["egress"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|rule| {
            assert!(rule.get("to").is_none(), "{what}: egress by port, to any address: {rule}");
            rule["ports"].as_array().cloned().unwrap_or_default()
        })
        .map(|p| (p["port"].as_u64().unwrap_or(0), if p["protocol"] == "UDP" { "UDP" } else { "TCP" }))
        .collect();
    for port in [(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP")] {
        assert!(egress.contains(&port), "{what}: egress lacks {port:?}: {egress:?}");
    }
    assert!(egress.iter().all(|p| [53, 443, 6443].contains(&p.0)), "{what}: egress opens more: {egress:?}");
}

fn assert_alerts(what: &str, objects: &[Value]) -> Value {
    let rule = the(objects, "PrometheusRule");
    let rules: Vec<(String, String, Option<String>)> = rule["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            let text = |key: &str| r[key].as_str().map(str::to_string);
            (text("alert").unwrap_or_default(), text("expr").unwrap_or_default(), text("for"))
        })
        .collect();
    let expected: Vec<_> =
        ALERTS.iter().map(|(a, e, f)| (a.to_string(), e.to_string(), f.map(str::to_string))).collect();
    assert_eq!(rules, expected, "{what}: the alert rules");
    rule["spec"].clone()
}

#[tokio::test]
async fn kustomize_builds_are_accepted_by_the_apiserver() {
    let cp = prepare().await;
    let common = [
        ("CustomResourceDefinition", 1),
        ("Namespace", 1),
        ("ServiceAccount", 1),
        ("Deployment", 1),
        ("Service", 1),
        ("PodDisruptionBudget", 1),
        ("NetworkPolicy", 1),
    ];
    let cluster = [("ClusterRole", 1), ("ClusterRoleBinding", 1), ("Role", 1), ("RoleBinding", 1)];

    let base =
        assert_accepted(cp, "deploy/base", &kustomize(cp, "deploy/base"), &[&common[..], &cluster].concat());
    let namespaced = assert_accepted(
        cp,
        "deploy/overlays/namespaced",
        &kustomize(cp, "deploy/overlays/namespaced"),
        &[&common[..], &[("Role", 3), ("RoleBinding", 3)]].concat(),
    );
    let monitoring = assert_accepted(
        cp,
        "deploy/overlays/monitoring",
        &kustomize(cp, "deploy/overlays/monitoring"),
        &[&common[..], &cluster, &[("ServiceMonitor", 1), ("PrometheusRule", 1)]].concat(),
    );
    for (what, objects) in [("base", &base), ("namespaced", &namespaced), ("monitoring", &monitoring)] {
        let args = container_args(objects);
        assert!(args.contains(&"--log-format=json".to_string()), "{what}: {args:?}");
        assert!(args.contains(&"--metrics-addr=0.0.0.0:8080".to_string()), "{what}: {args:?}");
        assert_eq!(the(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"], 1, "{what}");
        assert_selectors_match(what, objects);
        assert_network_policy(what, objects);
    }
    assert!(container_args(&namespaced).contains(&"--namespace=team-a,team-b".to_string()));
    assert_alerts("deploy/overlays/monitoring", &monitoring);
}

#[tokio::test]
async fn helm_renders_are_accepted_by_the_apiserver() {
    let cp = prepare().await;
    let release_ns = cp.new_namespace("manifests-helm").await;
    let watched = [cp.new_namespace("manifests-watch").await, cp.new_namespace("manifests-watch").await];
    let base = [
        ("CustomResourceDefinition", 1),
        ("ServiceAccount", 1),
        ("Deployment", 1),
        ("Service", 1),
        ("PodDisruptionBudget", 1),
        ("NetworkPolicy", 1),
    ];
    let cluster = [("ClusterRole", 1), ("ClusterRoleBinding", 1), ("Role", 1), ("RoleBinding", 1)];

    // Defaults: cluster mode, JSON logs, the controller's own rate defaults.
    let defaults = assert_accepted(
        cp,
        "helm defaults",
        &helm_template(&release_ns, &json!({})),
        &[&base[..], &cluster].concat(),
    );
    let args = container_args(&defaults);
    assert!(args.contains(&"--log-format=json".to_string()), "{args:?}");
    assert!(
        !args.iter().any(|a| a.contains("requests-per-second") || a.starts_with("--namespace")),
        "{args:?}"
    );
    assert_selectors_match("helm defaults", &defaults);
    assert_network_policy("helm defaults", &defaults);
    assert!(!defaults.iter().any(|o| o["kind"] == "ServiceMonitor" || o["kind"] == "PrometheusRule"));

    // Namespaced, two watched namespaces, a fixed rate, no NetworkPolicy or PDB.
    let values = json!({
        "installMode": "namespaced",
        "watchNamespaces": watched,
        "requestsPerSecond": 10,
        "networkPolicy": {"enabled": false},
        "podDisruptionBudget": {"enabled": false},
        "logFormat": "text",
    });
    let namespaced = assert_accepted(
        cp,
        "helm namespaced",
        &helm_template(&release_ns, &values),
        &[
            ("CustomResourceDefinition", 1),
            ("ServiceAccount", 1),
            ("Deployment", 1),
            ("Service", 1),
            ("Role", 3),
            ("RoleBinding", 3),
        ],
    );
    let args = container_args(&namespaced);
    for expected in [
        format!("--namespace={},{}", watched[0], watched[1]),
        "--requests-per-second=10".into(),
        "--log-format=text".into(),
    ] {
        assert!(args.contains(&expected), "{expected} missing: {args:?}");
    }
    let role_namespaces: Vec<&str> = namespaced
        .iter()
        .filter(|o| o["kind"] == "Role")
        .filter_map(|o| o["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(role_namespaces, [watched[0].as_str(), watched[1].as_str(), release_ns.as_str()]);

    // Monitoring and NetworkPolicy on, custom image, resources, rates and replicas.
    let resources =
        json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}});
    let values = json!({
        "image": {"repository": "registry.example.com/platform/taskreaper", "tag": "1.2.3", "pullPolicy": "Always"},
        "replicas": 3,
        "resources": resources,
        "maxRequestsPerSecond": 50,
        "startRequestsPerSecond": 5,
        "concurrency": 4,
        "endpointAllowlist": ["sdrs.cn-north-4.myhuaweicloud.com", "*.example.com"],
        "networkPolicy": {"enabled": true},
        "monitoring": {
            "serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}},
            "prometheusRule": {"enabled": true, "labels": {"release": "prometheus"}},
        },
    });
    let custom = assert_accepted(
        cp,
        "helm monitoring",
        &helm_template(&release_ns, &values),
        &[&base[..], &cluster, &[("ServiceMonitor", 1), ("PrometheusRule", 1)]].concat(),
    );
    let deployment = the(&custom, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example.com/platform/taskreaper:1.2.3");
    assert_eq!(container["imagePullPolicy"], "Always");
    assert_eq!(container["resources"], resources);
    let args = container_args(&custom);
    for expected in [
        "--log-format=json",
        "--max-requests-per-second=50",
        "--start-requests-per-second=5",
        "--concurrency=4",
        "--endpoint-allowlist=sdrs.cn-north-4.myhuaweicloud.com,*.example.com",
    ] {
        assert!(args.iter().any(|a| a == expected), "{expected} missing: {args:?}");
    }
    assert_selectors_match("helm monitoring", &custom);
    assert_network_policy("helm monitoring", &custom);
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert_eq!(the(&custom, kind)["metadata"]["labels"]["release"], "prometheus", "{kind}");
    }

    // One set of alert rules: the chart's are the kustomize component's.
    let chart_rules = assert_alerts("helm monitoring", &custom);
    let component = documents(&kustomize(cp, "deploy/overlays/monitoring"));
    assert_eq!(chart_rules, assert_alerts("deploy/overlays/monitoring", &component));
}

#[tokio::test]
async fn the_chart_refuses_values_it_cannot_honour() {
    let helm = required_path(HELM_ENV, "tests/tools/helm/build.sh");
    for (values, message) in [
        (json!({"logFormat": "xml"}), "logFormat must be json or text"),
        (json!({"installMode": "namespaced"}), "needs at least one namespace in watchNamespaces"),
        (
            json!({"metrics": {"service": {"enabled": false}}, "monitoring": {"serviceMonitor": {"enabled": true}}}),
            "monitoring.serviceMonitor.enabled needs metrics.service.enabled",
        ),
    ] {
        let mut command = Command::new(&helm);
        command.args(["template", "taskreaper", CHART]).current_dir(repo());
        for (key, value) in values.as_object().into_iter().flatten() {
            command.arg("--set-json").arg(format!("{key}={value}"));
        }
        let output = command.output().unwrap_or_else(|e| panic!("running helm: {e}"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(message), "{values}: {stderr}");
    }
}
