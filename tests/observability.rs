//! Logs and metrics as an operator sees them: the `taskreaper run` binary (leader election, JSON
//! logs) against the real kube-apiserver and the HTTPS emulator, its `/metrics` scraped over HTTP;
//! `taskreaper purge` with the log format from the environment; and the alert rules checked
//! against the families the controller exports.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::control_plane::Identity;
use common::e2e::{AK, Env, PROJECT_A, PROJECT_B, SK, kps_matching, sdrs_all};
use taskreaper::api::{Reason, TaskMatch};
use taskreaper::cloud::model::FailedTask;
use taskreaper::emulator::{RateLimitSetting, Seed};

/// One sample of the text exposition format.
#[derive(Clone, Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples and the `# TYPE` of each family of one scrape.
#[derive(Debug)]
struct Scrape {
    text: String,
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample line: {line}"));
            let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            let (name, labels) = match key.split_once('{') {
                None => (key.to_string(), BTreeMap::new()),
                Some((name, rest)) => (name.to_string(), labels(rest.trim_end_matches('}'))),
            };
            samples.push(Sample { name, labels, value });
        }
        Scrape { text, samples, types }
    }

    /// Samples of `name` whose labels include every pair of `with`.
    fn matching(&self, name: &str, with: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| with.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .collect()
    }

    /// The sum of the samples of `name` with those labels.
    fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.matching(name, with).iter().map(|s| s.value).sum()
    }

    /// Every name a query can use: sample names, and each family's name with its type's suffixes.
    fn names(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.samples.iter().map(|s| s.name.clone()).collect();
        for (name, kind) in &self.types {
            names.insert(name.clone());
            if kind == "counter" {
                names.insert(format!("{name}_total"));
            }
        }
        names
    }
}

/// `a="x",b="y"` (values as this controller writes them: no escaped quotes).
fn labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let end = after.find('"').expect("a closing quote");
        out.insert(key.trim_start_matches(',').to_string(), after[..end].to_string());
        rest = &after[end + 1..];
    }
    out
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

async fn scrape(port: u16) -> Result<Scrape, String> {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let response = reqwest::get(&url).await.map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: {}", response.status()));
    }
    let text = response.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    Ok(Scrape::parse(text))
}

/// Scrapes until `done` holds, at most 30 s.
async fn scrape_until(port: u16, log: &Path, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = match scrape(port).await {
            Ok(scrape) if done(&scrape) => return scrape,
            Ok(scrape) => scrape.text,
            Err(error) => format!("{error}; log:\n{}", std::fs::read_to_string(log).unwrap_or_default()),
        };
        assert!(Instant::now() < deadline, "{what} within 30 s; last scrape:\n{last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every line of a JSON log, parsed; fails on a line that is not a JSON object or holds an
/// escape character.
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    assert!(!log.contains('\x1b'), "an ANSI escape in the JSON log:\n{log}");
    log.lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(value.is_object(), "not a JSON object: {line}");
            value
        })
        .collect()
}

const AUDIT_FIELDS: [&str; 9] =
    ["id", "project", "service", "type", "resource", "status", "error_code", "task_time", "policy"];

/// The audit records among `lines`, each checked to carry every field.
fn audit_records(lines: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    let records: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["target"] == "taskreaper::audit").collect();
    for record in &records {
        assert_eq!(record["level"], "INFO", "{record}");
        assert_eq!(record["message"], "deleted failed task", "{record}");
        for field in AUDIT_FIELDS {
            assert!(record[field].is_string(), "audit field {field} missing in {record}");
        }
        assert!(!record["id"].as_str().unwrap_or_default().is_empty(), "{record}");
    }
    records
}

/// Ids a project holds in the emulator, SDRS and KPS.
fn ids(env: &Env, project: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let store = env.emulator.store();
    (
        store.failure_jobs(project).into_iter().map(|j| j.job_id).collect(),
        store.failed_tasks(project).into_iter().map(|t| t.task_id).collect(),
    )
}

/// Audit record ids of one project and service.
fn audited(records: &[&serde_json::Value], project: &str, service: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for r in records.iter().filter(|r| r["project"] == project && r["service"] == service) {
        let id = r["id"].as_str().unwrap_or_default().to_string();
        assert!(seen.insert(id.clone()), "task {id} audited twice");
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_logs_json_with_audit_records_and_exports_its_metrics() {
    let projects = vec![PROJECT_A.to_string(), PROJECT_B.to_string()];
    let env = Env::without_controller("obs", Seed::Generated { projects, tasks_per_kind: 3, seed: 11 }).await;
    env.create_secret(AK, SK).await;
    common::e2e::grant_leases(env.cp, &env.ns).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, env.emulator.ca_pem().expect("HTTPS emulator")).expect("write the CA");
    let before: Vec<_> = [PROJECT_A, PROJECT_B].iter().map(|p| ids(&env, p)).collect();
    assert!(before.iter().all(|(jobs, tasks)| !jobs.is_empty() && !tasks.is_empty()), "{before:?}");

    let port = free_port();
    let log = dir.path().join("controller.log");
    let mut child = common::binary::taskreaper()
        .args(["run", "--leader-election", "--lease-namespace", &env.ns, "--namespace", &env.ns])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}"), "--endpoint-allowlist", "127.0.0.1"])
        .args(["--log-format", "json"])
        .arg("--ca-bundle")
        .arg(&ca)
        .env("KUBECONFIG", env.cp.kubeconfig_path(Identity::Controller))
        .env("POD_NAME", "obs-replica")
        // Successful cloud calls log at debug, inside their span.
        .env("RUST_LOG", "info,taskreaper::cloud=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("create the controller log"))
        .spawn()
        .expect(common::binary::START_FAILED);

    // SDRS All (batch deletes) and KPS Matching with no filter (one DELETE per task).
    let policy =
        env.policy("full", &[PROJECT_A, PROJECT_B], vec![sdrs_all(), kps_matching(TaskMatch::default())]);
    env.create(&policy).await;
    let purged = Reason::Purged.as_str();
    env.wait_ready("full", "True", purged).await;
    let after: Vec<_> = [PROJECT_A, PROJECT_B].iter().map(|p| ids(&env, p)).collect();
    assert!(after.iter().all(|(jobs, tasks)| jobs.is_empty() && tasks.is_empty()), "{after:?}");

    // The cache may show the Ready status a moment after the API server does.
    let first = scrape_until(port, &log, "the policy counted Ready/Purged", |s| {
        s.sum("taskreaper_policies", &[("ready", "True"), ("reason", purged)]) == 1.0
    })
    .await;
    for (family, kind) in [
        ("taskreaper_cloud_requests", "counter"),
        ("taskreaper_cloud_request_duration_seconds", "histogram"),
        ("taskreaper_cloud_throttled", "counter"),
        ("taskreaper_cloud_retry_after_wait_seconds", "counter"),
        ("taskreaper_rate_limit_requests_per_second", "gauge"),
        ("taskreaper_leader", "gauge"),
        ("taskreaper_policies", "gauge"),
        ("taskreaper_policy_not_ready_runs", "gauge"),
        ("taskreaper_deleted_tasks", "counter"),
        ("taskreaper_run_duration_seconds", "histogram"),
        ("taskreaper_status_writes", "counter"),
    ] {
        assert_eq!(first.types.get(family).map(String::as_str), Some(kind), "{family}:\n{}", first.text);
    }
    let sdrs_lists =
        [("service", "SDRS"), ("operation", "ListFailureJobs"), ("class", "2xx"), ("code", "200")];
    assert!(first.sum("taskreaper_cloud_requests_total", &sdrs_lists) >= 2.0, "{}", first.text);
    let kps_deletes = [("service", "KPS"), ("operation", "DeleteFailedTask"), ("class", "2xx")];
    let kps_deleted: usize = before.iter().map(|(_, tasks)| tasks.len()).sum();
    assert_eq!(
        first.sum("taskreaper_cloud_requests_total", &kps_deletes),
        kps_deleted as f64,
        "{}",
        first.text
    );
    let emulator_calls = env.emulator.store().calls().total as f64;
    assert_eq!(
        first.sum("taskreaper_cloud_requests_total", &[]),
        emulator_calls,
        "every request counted once"
    );
    let timed = [("service", "SDRS"), ("operation", "ListFailureJobs")];
    assert!(first.sum("taskreaper_cloud_request_duration_seconds_count", &timed) >= 2.0, "{}", first.text);
    assert_eq!(first.sum("taskreaper_leader", &[]), 1.0, "{}", first.text);
    assert_eq!(
        first.sum("taskreaper_policy_not_ready_runs", &[("namespace", &env.ns), ("name", "full")]),
        0.0,
        "{}",
        first.text
    );
    assert_eq!(first.matching("taskreaper_policy_not_ready_runs", &[("name", "full")]).len(), 1);
    let deleted: usize = before.iter().map(|(jobs, tasks)| jobs.len() + tasks.len()).sum();
    assert_eq!(first.sum("taskreaper_deleted_tasks_total", &[]), deleted as f64, "{}", first.text);
    assert_eq!(first.sum("taskreaper_cloud_throttled_total", &[]), 0.0, "no 429 yet");

    // A low server-side limit: the emulator answers 429 and the controller waits and retries.
    let store = env.emulator.store();
    let tasks: Vec<FailedTask> = (0..12)
        .map(|i| FailedTask {
            task_id: format!("throttled-{i}"),
            operate_type: "FAILED_UNBIND".into(),
            keypair_name: format!("kp-{i}"),
            task_time: "1700000000000".into(),
            ..FailedTask::default()
        })
        .collect();
    store.add_failed_tasks(PROJECT_A, tasks);
    store.set_rate_limit(RateLimitSetting { per_key: 2, burst: 1 });
    env.request_run("full", "throttled", "1").await;
    let second = env.wait_handled("full", "throttled").await;
    let ready = common::e2e::condition(&second, taskreaper::api::ConditionType::Ready).expect("Ready");
    let answered_429 = env.emulator.store().calls().throttled as f64;
    assert!(answered_429 > 0.0, "the emulator throttled nothing: raise the load or lower the limit");
    let throttled = scrape_until(port, &log, "the second run counted", |s| {
        s.sum("taskreaper_cloud_throttled_total", &[]) == answered_429
    })
    .await;
    let kps_429 = [("service", "KPS"), ("class", "4xx"), ("code", "429")];
    assert_eq!(
        throttled.sum("taskreaper_cloud_requests_total", &kps_429),
        throttled.sum("taskreaper_cloud_throttled_total", &[("service", "KPS")])
    );
    assert!(
        throttled.sum("taskreaper_cloud_retry_after_wait_seconds_total", &[("service", "KPS")]) > 0.0,
        "{}",
        throttled.text
    );
    let not_ready_runs = if ready.status == "True" { 0.0 } else { 1.0 };
    assert_eq!(
        throttled.sum("taskreaper_policy_not_ready_runs", &[("name", "full")]),
        not_ready_runs,
        "after a run that ended Ready={} ({}):\n{}",
        ready.status,
        ready.reason,
        throttled.text
    );
    store.set_rate_limit(RateLimitSetting::default());

    // A deleted policy leaves the policy families.
    env.delete("full").await;
    scrape_until(port, &log, "the deleted policy's series gone", |s| {
        s.matching("taskreaper_policy_not_ready_runs", &[("name", "full")]).is_empty()
            && s.sum("taskreaper_policies", &[]) == 0.0
    })
    .await;

    child.kill().await.expect("stop the controller");
    let text = std::fs::read_to_string(&log).expect("read the controller log");
    assert!(!text.contains(SK), "the secret key shows in the log");
    let lines = json_lines(&text);
    let records = audit_records(&lines);
    let policy_name = format!("{}/full", env.ns);
    assert!(records.iter().all(|r| r["policy"] == policy_name.as_str()), "{records:#?}");
    // Exactly the tasks that left the emulator, each once.
    let left_now: Vec<_> = [PROJECT_A, PROJECT_B].iter().map(|p| ids(&env, p)).collect();
    for (i, project) in [PROJECT_A, PROJECT_B].into_iter().enumerate() {
        let (jobs, tasks) = &before[i];
        assert_eq!(&audited(&records, project, "SDRS"), jobs, "SDRS audit records of {project}");
        let mut gone_tasks = tasks.clone();
        if project == PROJECT_A {
            gone_tasks.extend((0..12).map(|i| format!("throttled-{i}")));
        }
        gone_tasks.retain(|t| !left_now[i].1.contains(t));
        assert_eq!(audited(&records, project, "KPS"), gone_tasks, "KPS audit records of {project}");
    }
    let throttled_task = records.iter().find(|r| r["id"] == "throttled-3").expect("throttled-3 audited");
    assert_eq!(
        (
            &throttled_task["type"],
            &throttled_task["resource"],
            &throttled_task["status"],
            &throttled_task["task_time"]
        ),
        (&"FAILED_UNBIND".into(), &"kp-3".into(), &"FAILED".into(), &"2023-11-14T22:13:20.000Z".into())
    );
    let sdrs_record = records.iter().find(|r| r["service"] == "SDRS").expect("an SDRS record");
    assert!(!sdrs_record["type"].as_str().unwrap_or_default().is_empty(), "{sdrs_record}");
    assert!(!sdrs_record["status"].as_str().unwrap_or_default().is_empty(), "{sdrs_record}");

    // Cloud call spans carry service, operation, project and the response's request id, inside
    // the span of the reconcile.
    let in_call: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["span"]["name"] == "cloud_call").collect();
    assert!(!in_call.is_empty(), "no line inside a cloud_call span");
    let delete = in_call
        .iter()
        .find(|l| l["span"]["operation"] == "DeleteFailedTask" && l["message"] == "cloud call succeeded")
        .expect("a successful DeleteFailedTask logged in its span");
    assert_eq!(delete["span"]["service"], "KPS");
    assert!(delete["span"]["project"] == PROJECT_A || delete["span"]["project"] == PROJECT_B, "{delete}");
    let request_id = delete["span"]["request_id"].as_str().unwrap_or_default();
    assert!(!request_id.is_empty() && request_id == delete["request_id"], "{delete}");
    let outer = delete["spans"].as_array().expect("the span list");
    let reconcile = outer.iter().find(|s| s["name"] == "reconcile").expect("inside the reconcile span");
    assert_eq!((&reconcile["namespace"], &reconcile["policy"]), (&env.ns.as_str().into(), &"full".into()));
    assert!(
        in_call.iter().any(|l| l["status"] == 429 || l["message"] == "cloud call failed; retrying"),
        "the throttled calls logged their retries"
    );
    env.emulator.shutdown().await;
}

#[tokio::test]
async fn purge_takes_the_log_format_from_the_environment_and_names_the_policy_file() {
    let env = Env::without_controller(
        "obs-purge",
        Seed::Generated { projects: vec![PROJECT_A.to_string()], tasks_per_kind: 2, seed: 5 },
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write a temporary file");
        path.to_string_lossy().into_owned()
    };
    let ca = write("ca.pem", env.emulator.ca_pem().expect("HTTPS emulator"));
    let creds = write("creds.yaml", &format!("accessKeyId: {AK}\nsecretAccessKey: {SK}\n"));
    let url = env.emulator.url();
    let file = write(
        "nightly-cleanup.yaml",
        &format!(
            "apiVersion: taskreaper.io/v1alpha1
kind: FailedTaskCleanupPolicy
metadata: {{name: one-shot, namespace: platform}}
spec:
  credentialsRef: {{name: creds}}
  region: cn-north-4
  endpoints: {{sdrs: \"{url}\", kps: \"{url}\"}}
  projects: [{{id: {PROJECT_A}}}]
  targets:
    - {{service: SDRS, scope: All}}
    - {{service: KPS, scope: All}}
  schedule: {{interval: 1h}}
"
        ),
    );
    let (jobs, tasks) = ids(&env, PROJECT_A);
    let out = common::binary::taskreaper()
        .args(["purge", "-f", &file, "--credentials", &creds, "--ca-bundle", &ca])
        .args(["--endpoint-allowlist", "127.0.0.1"])
        .env("TASKREAPER_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .output()
        .await
        .expect(common::binary::START_FAILED);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(ids(&env, PROJECT_A), (BTreeSet::new(), BTreeSet::new()), "everything deleted");
    let lines = json_lines(&stderr);
    let records = audit_records(&lines);
    assert_eq!(records.len(), jobs.len() + tasks.len(), "{stderr}");
    assert!(records.iter().all(|r| r["policy"] == "nightly-cleanup.yaml"), "{records:#?}");
    assert_eq!(audited(&records, PROJECT_A, "SDRS"), jobs);
    assert_eq!(audited(&records, PROJECT_A, "KPS"), tasks);
    env.emulator.shutdown().await;
}

/// Every metric the alert rules query, from the `expr` of each rule in
/// `deploy/components/monitoring/*.yaml`, with `_bucket`, `_sum` and `_count` taken off.
fn alert_rule_metrics(dir: &Path) -> BTreeSet<String> {
    let name = regex::Regex::new(r"taskreaper_[a-z_]+").expect("a valid regex");
    let mut metrics = BTreeSet::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| {
        panic!(
            "{} cannot be read ({e}): the alert rules (deploy/components/monitoring, with \
             prometheusrule.yaml) must exist for this check",
            dir.display()
        )
    });
    let mut files = 0;
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).expect("read an alert rules file");
        // `expr: ...` on one line, or `expr: |` (or `>`) and the more-indented lines below it.
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(at) = line.find("expr:") else { continue };
            let indent = line.len() - line.trim_start().len();
            let mut expr = line[at + "expr:".len()..].to_string();
            for next in &lines[i + 1..] {
                let next_indent = next.len() - next.trim_start().len();
                if !next.trim().is_empty() && next_indent <= indent {
                    break;
                }
                expr.push('\n');
                expr.push_str(next);
            }
            for found in name.find_iter(&expr) {
                let metric = found.as_str();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| metric.strip_suffix(suffix))
                    .unwrap_or(metric);
                metrics.insert(base.to_string());
            }
        }
    }
    assert!(files > 0, "no YAML file in {}", dir.display());
    metrics
}

#[tokio::test]
async fn alert_rules_use_only_exported_metrics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/components/monitoring");
    assert!(
        dir.is_dir(),
        "{} does not exist: the Prometheus alert rules are missing, so nothing checks that they \
         query only metrics the controller exports",
        dir.display()
    );
    let used = alert_rule_metrics(&dir);
    assert!(!used.is_empty(), "the alert rules in {} query no taskreaper_ metric", dir.display());
    // A controller that ran a policy, its metrics served over HTTP.
    let env = Env::with_credentials(
        "obs-rules",
        Seed::Generated { projects: vec![PROJECT_A.to_string()], tasks_per_kind: 1, seed: 3 },
    )
    .await;
    env.create(&env.policy("rules", &[PROJECT_A], vec![sdrs_all(), kps_matching(TaskMatch::default())]))
        .await;
    env.wait_ready("rules", "True", Reason::Purged.as_str()).await;
    let metrics = env.controller().metrics.clone();
    let health = std::sync::Arc::new(taskreaper::observability::Health::default());
    let port = free_port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let server = tokio::spawn(taskreaper::observability::server::serve(addr, metrics, health));
    let log = Path::new("(in-process controller: see the test output)");
    let scrape =
        scrape_until(port, log, "the policy counted", |s| s.sum("taskreaper_policies", &[]) == 1.0).await;
    server.abort();
    env.finish().await;
    let exported = scrape.names();
    let unknown: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(
        unknown.is_empty(),
        "alert rules query metrics the controller does not export: {unknown:?}; exported: {exported:?}"
    );
}
