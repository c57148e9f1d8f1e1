//! Scale of the controller as a user runs it: the `taskreaper run` binary (the debug build that
//! `cargo test` makes) against the real kube-apiserver and the HTTPS emulator, with its memory and
//! CPU read from `/proc` and its API traffic read from the API server's own `/metrics`
//! (`apiserver_request_total`, through the admin kubeconfig) and from the controller's `/metrics`.
//!
//! - `all_policies_due_at_once_run_with_at_most_two_status_writes_each`: N policies (default 100,
//!   `TASKREAPER_SCALE_POLICIES=1000` for the size) of 3 projects each, all due at once;
//!   time until all are Ready, peak and idle RSS, CPU, API requests per policy per run, and the
//!   time the client rate limit alone requires.
//! - `idle_policies_cost_no_reconciles_and_no_requests_while_quiet`: M policies (default 500,
//!   `TASKREAPER_SCALE_IDLE=10000`) that are suspended or not due; RSS once all are observed and
//!   the watch cost over a quiet window.
//!
//! Both print a table with each number beside the target. The two tests take turns (one
//! control plane per test binary; the API server's counters must be attributable to one test).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::control_plane::Identity;
use common::e2e::{AK, Env, SK, kps_all, sdrs_matching};
use futures::StreamExt as _;
use kube::ResourceExt as _;
use kube::api::{ListParams, PostParams};
use taskreaper::api::{ConditionType, FailedTaskCleanupPolicy, Schedule, SdrsResourceType, TaskMatch};
use taskreaper::cloud::model::{FailedTask, FailureJob};
use taskreaper::emulator::{Faults, Seed, SeededJob};
use tokio::process::Child;

/// Policies of the run test unless `TASKREAPER_SCALE_POLICIES` says otherwise.
const DEFAULT_POLICIES: usize = 100;
/// Idle policies unless `TASKREAPER_SCALE_IDLE` says otherwise.
const DEFAULT_IDLE: usize = 500;
const PROJECTS: usize = 3;
/// Per project: KPS failed tasks (all deleted by the KPS All target).
const KPS_TASKS: usize = 3;
/// Per project: SDRS failed jobs the Matching target matches, and ones it leaves alone.
const SDRS_MATCHING: usize = 2;
const SDRS_OTHER: usize = 1;
/// `--requests-per-second` of the run test: high enough that the API server, not the client limit,
/// is what is measured; the time the default (10) would require is printed beside it.
const RPS: u32 = 500;
/// The `run` default of `--requests-per-second` (src/cli/run.rs).
const DEFAULT_RPS: u32 = 10;
/// `--concurrency` (the `run` default).
const CONCURRENCY: usize = 16;
/// Emulator latency per cloud call.
const LATENCY_MS: u64 = 2;
/// Creates in flight at once.
const CREATE_PARALLELISM: usize = 16;
/// The quiet window of the idle test.
const QUIET: Duration = Duration::from_secs(10);
/// The targets.
const TARGET_IDLE_MIB: f64 = 40.0;
const TARGET_PEAK_MIB: f64 = 80.0;
const TARGET_WRITES_PER_RUN: f64 = 2.0;
const TARGET_READY_FACTOR: f64 = 2.0;
/// What the tests assert of RSS: regression guards, not the targets (every number is
/// printed beside its target). The debug binary that `cargo test` builds holds ~32 MiB with no
/// policy at all (the release build ~17 MiB; measured by the idle test first). With at most
/// `--max-concurrent-reconciles` (32) reconciles in flight, and so at most that many connections to
/// the API server, each idle policy adds ~8 KiB (debug, 2,000 policies) or ~5 KiB (release, 10,000);
/// a run of 1,000 due policies peaked at 34 MiB (release). Peak RSS of the run test: at most this plus
/// [`ASSERT_MIB_PER_1000`] per 1,000 policies.
const ASSERT_PEAK_BASE_MIB: f64 = 60.0;
/// Per 1,000 policies, in both tests; the idle test's bound starts from the measured baseline.
const ASSERT_MIB_PER_1000: f64 = 40.0;

/// One test at a time: both read the API server's process-wide counters.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Err(_) => default,
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("{name}={text:?} is not a count")),
    }
}

/// A distinct project id (32 lowercase hex) per policy and index.
fn project_id(policy: usize, index: usize) -> String {
    format!("{policy:08x}{index:08x}5ca1e0005ca1e000")
}

// ---------------------------------------------------------------------------------------------
// The controller process, as /proc shows it.

struct Controller {
    child: Child,
    pid: u32,
    metrics_port: u16,
    log: std::path::PathBuf,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl Controller {
    fn start(env: &Env, dir: &Path, rps: u32) -> Controller {
        let metrics_port = free_port();
        let log = dir.join("controller.log");
        let stderr = std::fs::File::create(&log).expect("create the controller log");
        let child = common::binary::taskreaper()
            .args(["run", "--requests-per-second", &rps.to_string()])
            .args(["--concurrency", &CONCURRENCY.to_string()])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(["--namespace", &env.ns, "--endpoint-allowlist", "127.0.0.1"])
            .arg("--ca-bundle")
            .arg(dir.join("ca.pem"))
            .env("KUBECONFIG", env.cp.kubeconfig_path(Identity::Controller))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect(common::binary::START_FAILED);
        let pid = child.id().expect("the controller runs");
        Controller { child, pid, metrics_port, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A `VmXXX:` line of /proc/<pid>/status, in MiB. The `setpriv` wrapper execs the binary, so
    /// the pid is the controller's own.
    fn vm_mib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_else(|e| panic!("reading /proc/{}/status: {e}; log:\n{}", self.pid, self.log()));
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid));
        kib / 1024.0
    }

    /// User plus system CPU seconds, from /proc/<pid>/stat.
    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&self.pid.to_string())
    }

    /// The controller's own counters, by metric name (labels dropped and summed).
    async fn metrics(&self) -> BTreeMap<String, f64> {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let text = reqwest::get(&url)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}; log:\n{}", self.log()))
            .text()
            .await
            .expect("the metrics body");
        let mut out = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((key, value)) = line.rsplit_once(' ') else { continue };
            let name = key.split('{').next().unwrap_or(key);
            if let Ok(v) = value.parse::<f64>() {
                *out.entry(name.to_string()).or_default() += v;
            }
        }
        out
    }

    async fn counter(&self, name: &str) -> u64 {
        self.metrics().await.get(name).copied().unwrap_or(0.0) as u64
    }

    async fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.metrics_port);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the controller was not ready within 60 s; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the reconcile counter stays the same for `still`, at most `limit`.
    async fn settle(&self, still: Duration, limit: Duration) -> Duration {
        let started = Instant::now();
        let mut last = self.counter("taskreaper_reconciles_total").await;
        let mut since = Instant::now();
        while since.elapsed() < still && started.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.counter("taskreaper_reconciles_total").await;
            if now != last {
                last = now;
                since = Instant::now();
            }
        }
        started.elapsed()
    }

    async fn stop(mut self) {
        self.child.kill().await.expect("stop the controller");
    }
}

/// User plus system CPU seconds of a process (`self` for this one), from /proc/<pid>/stat.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading /proc/<pid>/stat");
    // The command name may hold spaces; the fields after it are space-separated.
    let after = &stat[stat.rfind(')').expect("stat has the command in parentheses") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    let ticks: f64 = fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / clock_ticks()
}

/// CPU seconds of the test process (the emulator runs in it) and of the control plane.
fn others_cpu(env: &Env) -> (f64, f64) {
    let control_plane = env.cp.pids().iter().map(|(_, pid)| cpu_seconds(&pid.to_string())).sum();
    (cpu_seconds("self"), control_plane)
}

fn clock_ticks() -> f64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output().expect("run getconf CLK_TCK");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("CLK_TCK is a number")
}

// ---------------------------------------------------------------------------------------------
// The API server's own request counters.

/// `apiserver_request_total` summed by (verb, resource, subresource, code).
#[derive(Clone, Debug, Default)]
struct Requests(BTreeMap<(String, String, String, String), u64>);

impl Requests {
    async fn read(env: &Env) -> Requests {
        let output = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(env.cp.kubeconfig_path(Identity::Admin))
            .args(["get", "--raw", "/metrics"])
            .output()
            .await
            .expect("running kubectl get --raw /metrics");
        assert!(
            output.status.success(),
            "the API server's /metrics: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        let mut counts = BTreeMap::new();
        for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
            let Some((key, value)) = line.rsplit_once(' ') else { continue };
            let label = |name: &str| {
                let start = format!("{name}=\"");
                key.find(&start)
                    .map(|at| {
                        let rest = &key[at + start.len()..];
                        rest[..rest.find('"').unwrap_or(rest.len())].to_string()
                    })
                    .unwrap_or_default()
            };
            let n = value.parse::<f64>().unwrap_or(0.0) as u64;
            *counts
                .entry((label("verb"), label("resource"), label("subresource"), label("code")))
                .or_default() += n;
        }
        assert!(!counts.is_empty(), "the API server's /metrics has no apiserver_request_total");
        Requests(counts)
    }

    /// Requests with this verb on this resource, whatever their answer.
    fn get(&self, verb: &str, resource: &str, subresource: &str) -> u64 {
        self.0
            .iter()
            .filter(|((v, r, s, _), _)| v == verb && r == resource && s == subresource)
            .map(|(_, n)| n)
            .sum()
    }

    /// [`Self::get`], answered 2xx.
    fn ok(&self, verb: &str, resource: &str, subresource: &str) -> u64 {
        self.0
            .iter()
            .filter(|((v, r, s, code), _)| {
                v == verb && r == resource && s == subresource && code.starts_with('2')
            })
            .map(|(_, n)| n)
            .sum()
    }

    fn since(&self, before: &Requests) -> Requests {
        Requests(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(before.0.get(k).copied().unwrap_or(0))))
                .filter(|(_, v)| *v > 0)
                .collect(),
        )
    }

    /// Requests for a resource (not /metrics, /openapi and the like), without kube-apiserver's own:
    /// the controller runs without leader election here and never reads Services, while
    /// kube-apiserver renews its identity Lease every 10 s and lists Services to repair their IPs
    /// every few minutes.
    fn resource_total(&self) -> u64 {
        self.0
            .iter()
            .filter(|((_, resource, _, _), _)| {
                !resource.is_empty() && resource != "leases" && resource != "services"
            })
            .map(|(_, n)| n)
            .sum()
    }

    fn describe(&self) -> String {
        self.0
            .iter()
            .map(|((verb, resource, sub, code), n)| {
                let sub = if sub.is_empty() { String::new() } else { format!("/{sub}") };
                format!("    {verb:<6} {resource}{sub} {code}: {n}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

// ---------------------------------------------------------------------------------------------
// Policies.

async fn create_all(env: &Env, policies: Vec<FailedTaskCleanupPolicy>) -> Duration {
    let started = Instant::now();
    let api = env.policies();
    let results: Vec<_> = futures::stream::iter(policies)
        .map(|policy| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &policy)
                    .await
                    .unwrap_or_else(|e| panic!("creating policy {}: {e}", policy.name_any()))
            }
        })
        .buffer_unordered(CREATE_PARALLELISM)
        .collect()
        .await;
    assert!(!results.is_empty());
    started.elapsed()
}

/// Lists the namespace's policies every `poll` until `done` holds for all `count` of them; fails
/// after `limit` with how many do not and one example.
async fn wait_all(
    env: &Env,
    controller: &Controller,
    count: usize,
    what: &str,
    poll: Duration,
    limit: Duration,
    done: impl Fn(&FailedTaskCleanupPolicy) -> bool,
) -> (Vec<FailedTaskCleanupPolicy>, u64) {
    let started = Instant::now();
    let mut lists = 0;
    loop {
        lists += 1;
        let list = env.policies().list(&ListParams::default()).await.expect("listing policies").items;
        let pending: Vec<&FailedTaskCleanupPolicy> = list.iter().filter(|p| !done(p)).collect();
        if list.len() == count && pending.is_empty() {
            return (list, lists);
        }
        if started.elapsed() > limit {
            let example = pending.first().map_or_else(|| "(none)".into(), |p| common::e2e::status_yaml(p));
            let log = controller.log();
            panic!(
                "{} of {count} policies not {what} after {limit:?}; for example:\n{example}\ncontroller log (tail):\n{}",
                pending.len(),
                &log[log.len().saturating_sub(4000)..]
            );
        }
        tokio::time::sleep(poll).await;
    }
}

async fn world(prefix: &str, dir: &Path) -> Env {
    let env = Env::without_controller(prefix, Seed::Empty).await;
    env.create_secret(AK, SK).await;
    std::fs::write(dir.join("ca.pem"), env.emulator.ca_pem().expect("HTTPS emulator")).expect("write the CA");
    env.emulator.store().set_faults(Faults { latency_ms: LATENCY_MS, ..Faults::default() });
    env
}

fn seed(env: &Env, project: &str) {
    let store = env.emulator.store();
    store.add_failed_tasks(
        project,
        (0..KPS_TASKS).map(|i| FailedTask {
            task_id: format!("k-{project}-{i}"),
            operate_type: "FAILED_UNBIND".into(),
            keypair_name: format!("kp-{i}"),
            ..FailedTask::default()
        }),
    );
    store.add_failure_jobs(
        project,
        (0..SDRS_MATCHING + SDRS_OTHER).map(|i| {
            let name = if i < SDRS_MATCHING { "tmp-" } else { "keep-" };
            SeededJob::from(FailureJob {
                job_id: format!("j-{project}-{i}"),
                job_type: "createServerGroup".into(),
                job_status: "FAIL".into(),
                begin_time: taskreaper::emulator::sdrs_time(
                    jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2),
                ),
                error_code: "SDRS.1201".into(),
                resource_type: "server_groups".into(),
                resource_id: format!("res-{i}"),
                resource_name: format!("{name}{i}"),
                failure_status: "createFail".into(),
                ..FailureJob::default()
            })
        }),
    );
}

fn mib(v: f64) -> String {
    format!("{v:.1} MiB")
}

fn row(rows: &mut Vec<[String; 4]>, what: &str, value: String, target: &str, verdict: &str) {
    rows.push([what.into(), value, target.into(), verdict.into()]);
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn print_table(title: &str, rows: &[[String; 4]]) {
    let widths: Vec<usize> =
        (0..4).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0).max(8)).collect();
    println!("\n{title}");
    let header = ["measure", "value", "target (issue 10)", "verdict"];
    let line = |r: &[&str]| {
        println!(
            "| {:<w0$} | {:>w1$} | {:<w2$} | {:<w3$} |",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
    };
    line(&header);
    println!("|{}|", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
    for r in rows {
        line(&[&r[0], &r[1], &r[2], &r[3]]);
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_policies_due_at_once_run_with_at_most_two_status_writes_each() {
    let _serial = SERIAL.lock().await;
    let n = env_count("TASKREAPER_SCALE_POLICIES", DEFAULT_POLICIES);
    assert!(n > 0, "TASKREAPER_SCALE_POLICIES must be at least 1");
    let dir = tempfile::tempdir().expect("temp dir");
    let env = world("scale-run", dir.path()).await;
    let matching = TaskMatch {
        resource_types: Some(vec![SdrsResourceType::ServerGroups]),
        name_pattern: Some("^tmp-".into()),
        ..TaskMatch::default()
    };
    let mut policies = Vec::with_capacity(n);
    for i in 0..n {
        let projects: Vec<String> = (0..PROJECTS).map(|j| project_id(i, j)).collect();
        for project in &projects {
            seed(&env, project);
        }
        let ids: Vec<&str> = projects.iter().map(String::as_str).collect();
        let mut policy =
            env.policy(&format!("p-{i:05}"), &ids, vec![kps_all(), sdrs_matching(matching.clone())]);
        policy.spec.schedule = Schedule { interval: Some("1h".into()), ..Schedule::default() };
        policies.push(policy);
    }
    let created_in = create_all(&env, policies).await;

    let before = Requests::read(&env).await;
    let calls_before = env.calls().total;
    let started = Instant::now();
    let controller = Controller::start(&env, dir.path(), RPS);
    let others_before = others_cpu(&env);
    let (all, lists) = wait_all(
        &env,
        &controller,
        n,
        "Ready=True Purged",
        Duration::from_millis(500),
        Duration::from_secs(600),
        |p| {
            common::e2e::condition_is(p, ConditionType::Ready, "True", "Purged")
                && common::e2e::condition(p, ConditionType::Reconciling).is_none_or(|c| c.status == "False")
        },
    )
    .await;
    let ready_in = started.elapsed();
    let settled_in = controller.settle(Duration::from_secs(2), Duration::from_secs(60)).await;
    let peak = controller.vm_mib("VmHWM:");
    let idle = controller.vm_mib("VmRSS:");
    let cpu = controller.cpu_seconds();
    let others = others_cpu(&env);
    let (test_cpu, cp_cpu) = (others.0 - others_before.0, others.1 - others_before.1);
    let requests = Requests::read(&env).await.since(&before);
    let writes = controller.counter("taskreaper_status_writes_total").await;
    let reconciles = controller.counter("taskreaper_reconciles_total").await;
    let calls = env.calls().total - calls_before;

    // Every run did its work: the tasks it targets are gone, the others stay.
    for i in 0..n {
        for j in 0..PROJECTS {
            let project = project_id(i, j);
            assert!(env.task_ids(&project).is_empty(), "KPS tasks left in {project}");
            let name = format!("p-{i:05}");
            let status = || all.iter().find(|p| p.name_any() == name).map(common::e2e::status_yaml);
            assert_eq!(
                env.job_ids(&project).len(),
                SDRS_OTHER,
                "SDRS jobs in {project}: only unmatched ones stay; {name}:\n{}",
                status().unwrap_or_default()
            );
        }
    }
    let deleted: u64 = all.iter().map(|p| p.status.as_ref().map_or(0, |s| s.total_deleted)).sum();

    let per = |count: u64| count as f64 / n as f64;
    // Server-side apply is counted as verb APPLY; a merge patch would be PATCH.
    let patch_status = requests.ok("APPLY", "failedtaskcleanuppolicies", "status")
        + requests.ok("PATCH", "failedtaskcleanuppolicies", "status");
    let patch_attempts = requests.get("APPLY", "failedtaskcleanuppolicies", "status")
        + requests.get("PATCH", "failedtaskcleanuppolicies", "status");
    let gets = requests.get("GET", "failedtaskcleanuppolicies", "");
    let secret_gets = requests.get("GET", "secrets", "");
    let events = requests.get("POST", "events", "");
    // Resource requests but the test's own LISTs (its reads of /metrics are not resource requests).
    let controller_total = requests.resource_total().saturating_sub(lists);
    // The client limit alone: every call through one (host, key) bucket, less the burst (2x rate).
    let limit_secs = |rps: u32| (calls.saturating_sub(2 * rps as u64)) as f64 / rps as f64;
    let required = limit_secs(RPS);
    let required_default = limit_secs(DEFAULT_RPS);

    let mut rows = Vec::new();
    row(
        &mut rows,
        "policies x projects",
        format!("{n} x {PROJECTS}"),
        "1,000 x 3",
        if n >= 1000 { "full size" } else { "reduced size" },
    );
    row(&mut rows, "created in (16 at a time)", format!("{:.1} s", created_in.as_secs_f64()), "-", "");
    row(&mut rows, "cloud calls", calls.to_string(), "-", "");
    row(&mut rows, "totalDeleted (sum; KPS All counts when measured)", deleted.to_string(), "-", "");
    row(
        &mut rows,
        &format!("rate limit alone needs (--requests-per-second {RPS})"),
        format!("{required:.2} s"),
        "-",
        "",
    );
    row(
        &mut rows,
        &format!("rate limit alone needs (default {DEFAULT_RPS}/s)"),
        format!("{required_default:.1} s"),
        "-",
        "",
    );
    let ready_ok = ready_in.as_secs_f64() <= TARGET_READY_FACTOR * required;
    row(
        &mut rows,
        "controller start -> all Ready",
        format!("{:.1} s", ready_in.as_secs_f64()),
        &format!(
            "<= 2 x {required:.2} s = {:.2} s at {RPS}/s; <= {:.1} s at {DEFAULT_RPS}/s",
            2.0 * required,
            2.0 * required_default
        ),
        &format!(
            "{} at {RPS}/s, {} at {DEFAULT_RPS}/s",
            met(ready_ok),
            met(ready_in.as_secs_f64() <= 2.0 * required_default)
        ),
    );
    row(&mut rows, "then quiet after", format!("{:.1} s", settled_in.as_secs_f64()), "-", "");
    row(
        &mut rows,
        &format!("peak RSS (VmHWM, {})", common::binary::label()),
        mib(peak),
        "<= 80 MiB",
        met(peak <= TARGET_PEAK_MIB),
    );
    row(&mut rows, "RSS after the runs (VmRSS)", mib(idle), "<= 40 MiB idle", met(idle <= TARGET_IDLE_MIB));
    row(
        &mut rows,
        "CPU (utime+stime)",
        format!("{cpu:.2} s ({:.1} ms/policy)", 1000.0 * cpu / n as f64),
        "-",
        "",
    );
    row(&mut rows, "CPU of the test process (emulator, debug)", format!("{test_cpu:.2} s"), "-", "");
    row(&mut rows, "CPU of kube-apiserver + etcd", format!("{cp_cpu:.2} s"), "-", "");
    row(
        &mut rows,
        "status write attempts/policy (any answer)",
        format!("{:.2}", per(patch_attempts)),
        "-",
        "",
    );
    row(
        &mut rows,
        "status writes/policy (API server, 2xx)",
        format!("{:.2}", per(patch_status)),
        "<= 2",
        met(per(patch_status) <= TARGET_WRITES_PER_RUN),
    );
    row(
        &mut rows,
        "status writes/policy (taskreaper_status_writes)",
        format!("{:.2}", per(writes)),
        "<= 2",
        met(per(writes) <= TARGET_WRITES_PER_RUN),
    );
    row(&mut rows, "policy GETs/policy", format!("{:.2}", per(gets)), "-", "");
    row(&mut rows, "Secret GETs/policy", format!("{:.2}", per(secret_gets)), "-", "");
    row(&mut rows, "Event POSTs/policy", format!("{:.2}", per(events)), "-", "");
    row(&mut rows, "reconciles/policy", format!("{:.2}", per(reconciles)), "-", "");
    row(&mut rows, "controller API requests/policy", format!("{:.2}", per(controller_total)), "-", "");
    print_table(
        &format!("scale: {n} policies due at once (`taskreaper run`, {})", common::binary::label()),
        &rows,
    );
    println!("API server requests during the run (the test's LISTs included):\n{}", requests.describe());

    assert!(
        per(patch_status) <= TARGET_WRITES_PER_RUN && per(writes) <= TARGET_WRITES_PER_RUN,
        "more than 2 status writes per policy per run: {patch_status} status writes answered 2xx, {writes} counted by the controller, for {n} policies"
    );
    // A run reads its policy and its Secret once; the watch events of its own status writes read
    // nothing (a slack for passes that a change of someone else's makes necessary).
    assert!(
        per(gets) <= 1.5 && per(secret_gets) <= 1.5,
        "policies or Secrets read again for the controller's own status writes: {gets} policy GETs, {secret_gets} Secret GETs for {n} policies"
    );
    let bound = ASSERT_PEAK_BASE_MIB + ASSERT_MIB_PER_1000 * n as f64 / 1000.0;
    assert!(peak <= bound, "peak RSS {peak:.1} MiB is over the {bound:.1} MiB asserted");
    controller.stop().await;
    env.emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_policies_cost_no_reconciles_and_no_requests_while_quiet() {
    let _serial = SERIAL.lock().await;
    let m = env_count("TASKREAPER_SCALE_IDLE", DEFAULT_IDLE);
    assert!(m > 0, "TASKREAPER_SCALE_IDLE must be at least 1");
    let dir = tempfile::tempdir().expect("temp dir");
    let env = world("scale-idle", dir.path()).await;

    // A controller with no policy yet: the binary's own baseline.
    let baseline_controller = Controller::start(&env, dir.path(), DEFAULT_RPS);
    baseline_controller.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = baseline_controller.vm_mib("VmRSS:");
    baseline_controller.stop().await;

    // Half suspended, half on a cron schedule that is not due for months: neither calls the cloud.
    let policies: Vec<FailedTaskCleanupPolicy> = (0..m)
        .map(|i| {
            let projects: Vec<String> = (0..PROJECTS).map(|j| project_id(i, j)).collect();
            let ids: Vec<&str> = projects.iter().map(String::as_str).collect();
            let mut policy = env.policy(&format!("idle-{i:05}"), &ids, vec![kps_all()]);
            if i % 2 == 0 {
                policy.spec.suspend = true;
            } else {
                policy.spec.schedule = Schedule { cron: Some("0 0 1 1 *".into()), ..Schedule::default() };
            }
            policy
        })
        .collect();
    let created_in = create_all(&env, policies).await;

    let before = Requests::read(&env).await;
    let started = Instant::now();
    let controller = Controller::start(&env, dir.path(), DEFAULT_RPS);
    let poll = Duration::from_millis(if m > 2000 { 2000 } else { 500 });
    let (_, lists) = wait_all(
        &env,
        &controller,
        m,
        "observed (Suspended or Waiting)",
        poll,
        Duration::from_secs(900),
        |p| {
            p.status.as_ref().is_some_and(|s| s.observed_generation == p.metadata.generation)
                && (common::e2e::condition_is(p, ConditionType::Ready, "False", "Suspended")
                    || common::e2e::condition_is(p, ConditionType::Ready, "Unknown", "Waiting"))
        },
    )
    .await;
    let observed_in = started.elapsed();
    controller.settle(Duration::from_secs(2), Duration::from_secs(120)).await;
    let observe_requests = Requests::read(&env).await.since(&before);
    let observe_reconciles = controller.counter("taskreaper_reconciles_total").await;
    let observe_writes = controller.counter("taskreaper_status_writes_total").await;
    let peak = controller.vm_mib("VmHWM:");
    let idle = controller.vm_mib("VmRSS:");
    let cpu_observe = controller.cpu_seconds();

    // The quiet window: nothing changes; what does the controller cost?
    let quiet_before = Requests::read(&env).await;
    let cpu_before = controller.cpu_seconds();
    tokio::time::sleep(QUIET).await;
    let cpu_quiet = controller.cpu_seconds() - cpu_before;
    let quiet = Requests::read(&env).await.since(&quiet_before);
    let quiet_reconciles = controller.counter("taskreaper_reconciles_total").await - observe_reconciles;
    let quiet_writes = controller.counter("taskreaper_status_writes_total").await - observe_writes;
    let idle_after = controller.vm_mib("VmRSS:");
    let calls = env.calls().total;
    // The admin's own reads of /metrics are non-resource requests; only resource requests count.
    let quiet_resource = quiet.resource_total();

    let per = |count: u64| count as f64 / m as f64;
    let mut rows = Vec::new();
    row(
        &mut rows,
        "idle policies",
        m.to_string(),
        "10,000",
        if m >= 10_000 { "full size" } else { "reduced size" },
    );
    row(&mut rows, "created in (16 at a time)", format!("{:.1} s", created_in.as_secs_f64()), "-", "");
    row(
        &mut rows,
        "controller start -> all observed",
        format!("{:.1} s", observed_in.as_secs_f64()),
        "-",
        "",
    );
    row(
        &mut rows,
        &format!("RSS with no policy (baseline, {})", common::binary::label()),
        mib(baseline),
        "-",
        "",
    );
    row(
        &mut rows,
        "RSS once all observed (VmRSS)",
        mib(idle),
        "<= 40 MiB idle (for 1,000)",
        met(idle <= TARGET_IDLE_MIB),
    );
    row(&mut rows, "RSS after the quiet window", mib(idle_after), "-", "");
    row(
        &mut rows,
        "RSS per 1,000 policies over baseline",
        mib((idle_after - baseline) * 1000.0 / m as f64),
        "-",
        "",
    );
    row(&mut rows, "peak RSS (VmHWM)", mib(peak), "<= 80 MiB (for 1,000)", met(peak <= TARGET_PEAK_MIB));
    row(&mut rows, "CPU to observe all", format!("{cpu_observe:.2} s"), "-", "");
    row(&mut rows, "status writes/policy to observe", format!("{:.2}", per(observe_writes)), "-", "");
    row(
        &mut rows,
        "policy GETs/policy to observe",
        format!("{:.2}", per(observe_requests.get("GET", "failedtaskcleanuppolicies", ""))),
        "-",
        "",
    );
    row(
        &mut rows,
        "Secret GETs/policy to observe",
        format!("{:.2}", per(observe_requests.get("GET", "secrets", ""))),
        "-",
        "",
    );
    row(
        &mut rows,
        "controller API requests/policy to observe",
        format!("{:.2}", per(observe_requests.resource_total().saturating_sub(lists))),
        "-",
        "",
    );
    row(&mut rows, "reconciles/policy to observe", format!("{:.2}", per(observe_reconciles)), "-", "");
    row(&mut rows, "cloud calls", calls.to_string(), "0", met(calls == 0));
    row(
        &mut rows,
        &format!("quiet {}s: reconciles", QUIET.as_secs()),
        quiet_reconciles.to_string(),
        "watch cost",
        "",
    );
    row(
        &mut rows,
        &format!("quiet {}s: API requests (resource)", QUIET.as_secs()),
        quiet_resource.to_string(),
        "watch cost",
        "",
    );
    row(
        &mut rows,
        &format!("quiet {}s: CPU", QUIET.as_secs()),
        format!("{cpu_quiet:.3} s"),
        "watch cost",
        "",
    );
    print_table(&format!("scale: {m} idle policies (`taskreaper run`, {})", common::binary::label()), &rows);
    println!(
        "API server requests to observe them (the test's LISTs included):\n{}",
        observe_requests.describe()
    );
    println!("API server requests in the quiet window:\n{}", quiet.describe());

    assert_eq!(calls, 0, "idle policies made cloud calls");
    assert_eq!(quiet_reconciles, 0, "reconciles while nothing changed");
    assert_eq!(quiet_writes, 0, "status writes while nothing changed");
    assert_eq!(quiet_resource, 0, "API requests while nothing changed:\n{}", quiet.describe());
    assert!(per(observe_writes) <= 1.0, "observing an idle policy writes its status at most once");
    let observe_gets = observe_requests.get("GET", "failedtaskcleanuppolicies", "");
    assert!(
        per(observe_gets) <= 1.5,
        "idle policies read again after their own status write: {observe_gets} GETs"
    );
    let bound = baseline + ASSERT_MIB_PER_1000 * m as f64 / 1000.0;
    assert!(
        idle <= bound,
        "idle RSS {idle:.1} MiB is over the {bound:.1} MiB asserted (baseline {baseline:.1} MiB + {ASSERT_MIB_PER_1000} MiB per 1,000 policies)"
    );
    controller.stop().await;
    env.emulator.shutdown().await;
}
