//! Conformance with the official Huawei Cloud Python SDK (3.1.219), the outside referee: our signer
//! against the SDK's signer on randomized requests, and the SDK's SDRS and KPS clients against the
//! emulator. Spawns the Python interpreter named by `TASKREAPER_PYTHON` (tests/run.sh sets it up from
//! tests/sdk/requirements.txt).
//!
//! Run: `TASKREAPER_PYTHON=/path/to/venv/bin/python cargo test --test sdk_conformance -- --nocapture`

mod common;
#[path = "sdk/harness.rs"]
mod harness;
#[path = "sdk/signer_cases.rs"]
mod signer_cases;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;

use serde_json::{Value, json};
use taskreaper::cloud::credentials::Secret;
use taskreaper::cloud::model::{FailedTask, FailureJob, SDRS_RESOURCE_TYPES, SERVER_GROUPS};
use taskreaper::cloud::signing::{self, Request};
use taskreaper::emulator::{
    ADMIN_PREFIX, Config, Emulator, KPS_ONE, KPS_TASKS, SDRS_BATCH, SDRS_GROUP_BATCH, SDRS_ONE, Seed,
    gateway_code,
};

/// How many randomized requests the signer comparison covers.
const SIGNER_CASES: usize = 256;
/// The default seed of the randomized requests; `TASKREAPER_SDK_SEED` replaces it.
const DEFAULT_SEED: u64 = 0x5d12_2026_1122_0530;

#[derive(serde::Deserialize)]
struct SdkSigned {
    authorization: String,
    x_sdk_date: String,
    uri: String,
    header_names: Vec<String>,
}

#[tokio::test]
async fn our_signer_matches_the_sdk_signer_on_random_requests() {
    let seed = std::env::var("TASKREAPER_SDK_SEED")
        .ok()
        .map(|s| s.parse::<u64>().expect("TASKREAPER_SDK_SEED must be an unsigned integer"))
        .unwrap_or(DEFAULT_SEED);
    let cases = signer_cases::generate(seed, SIGNER_CASES);
    let coverage = content_sha256_coverage(&cases);
    println!("X-Sdk-Content-Sha256 cases: {coverage:?}");
    for kind in CONTENT_SHA256_KINDS {
        assert!(coverage.contains_key(kind), "no request with X-Sdk-Content-Sha256 {kind} (seed {seed})");
    }
    let input = serde_json::to_vec(&cases.iter().map(signer_cases::Case::sdk_json).collect::<Vec<_>>())
        .expect("cases serialize");
    let output = harness::run_python("sign_random.py", &[], &[], input).await;
    let signed: Vec<SdkSigned> = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("sign_random.py printed no JSON list ({e}): {}", String::from_utf8_lossy(&output.stdout))
    });
    assert_eq!(signed.len(), cases.len(), "the SDK signed every request");

    let mut mismatches = Vec::new();
    for (i, (case, sdk)) in cases.iter().zip(&signed).enumerate() {
        let headers = case.headers_as_sent();
        let req = Request {
            method: &case.method,
            path: &case.path,
            query: &case.query,
            headers: &headers,
            body: case.body.as_deref().unwrap_or("").as_bytes(),
        };
        let ours = signing::authorize(&req, &case.ak, case.sk.as_bytes(), &case.date).header_value();
        let query = signing::canonical_query(&case.query);
        let uri = if query.is_empty() { case.path.clone() } else { format!("{}?{query}", case.path) };
        let mut our_names: Vec<String> = headers.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
        our_names.sort();
        let mut sdk_names: Vec<String> = sdk.header_names.iter().map(|k| k.to_ascii_lowercase()).collect();
        sdk_names.sort();

        let mut problems = Vec::new();
        if sdk_names != our_names {
            problems.push(format!("header set: sdk {sdk_names:?}, test {our_names:?}"));
        }
        if sdk.x_sdk_date != case.date {
            problems.push(format!("date: sdk {}, test {}", sdk.x_sdk_date, case.date));
        }
        if sdk.uri != uri {
            problems.push(format!("uri: sdk {:?}, ours {uri:?}", sdk.uri));
        }
        if sdk.authorization != ours {
            problems.push(format!("authorization: sdk {:?}, ours {ours:?}", sdk.authorization));
        }
        if !problems.is_empty() {
            mismatches.push(format!("case {i}: {case:?}\n  {}", problems.join("\n  ")));
        }
    }

    let identical = cases.len() - mismatches.len();
    println!("sdk signer equivalence: {identical}/{} identical (seed {seed})", cases.len());
    assert!(cases.len() >= 200, "at least 200 requests are compared");
    assert!(
        mismatches.is_empty(),
        "{} of {} requests differ from the SDK; first ones:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// The kinds of `X-Sdk-Content-Sha256` requests the comparison must include.
const CONTENT_SHA256_KINDS: [&str; 6] = [
    "UNSIGNED-PAYLOAD with a body",
    "UNSIGNED-PAYLOAD without a body",
    "blank with a body",
    "blank without a body",
    "other value with a body",
    "other value without a body",
];

/// How many requests carry `X-Sdk-Content-Sha256` as sent, by value (`UNSIGNED-PAYLOAD` once
/// trimmed, blank, or anything else) and by whether there is a body.
fn content_sha256_coverage(cases: &[signer_cases::Case]) -> BTreeMap<&'static str, usize> {
    let mut coverage = BTreeMap::new();
    for case in cases {
        let headers = case.headers_as_sent();
        let Some((_, value)) =
            headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(signing::CONTENT_SHA256_HEADER))
        else {
            continue;
        };
        let body = case.body.as_deref().is_some_and(|b| !b.is_empty());
        let kind = match (value.trim_matches(|c: char| c.is_whitespace() || c.is_control()), body) {
            ("UNSIGNED-PAYLOAD", true) => CONTENT_SHA256_KINDS[0],
            ("UNSIGNED-PAYLOAD", false) => CONTENT_SHA256_KINDS[1],
            ("", true) => CONTENT_SHA256_KINDS[2],
            ("", false) => CONTENT_SHA256_KINDS[3],
            (_, true) => CONTENT_SHA256_KINDS[4],
            (_, false) => CONTENT_SHA256_KINDS[5],
        };
        *coverage.entry(kind).or_insert(0) += 1;
    }
    coverage
}

const PROJECT: &str = "0605767b5c00d4bb2f10c01a1e3b3a7e";
/// A second project that no scenario touches.
const BYSTANDER: &str = "1b2c3d4e5f60718293a4b5c6d7e8f901";
const ACCESS_KEY: &str = "HPUAXXXXXXXXEXAMPLEAK";
const SECRET_KEY: &str = "exampleSecretKeyDoNotUse0123456789abcdEF";
/// SDRS jobs per resource type and KPS tasks per operate type in each seeded project.
const PER_KIND: usize = 6;
/// The page size the SDK script lists with, small enough to need several pages.
const PAGE_SIZE: usize = 7;

async fn start_emulator(tls: bool) -> Emulator {
    let config = Config {
        access_keys: BTreeMap::from([(ACCESS_KEY.to_string(), Secret::new(SECRET_KEY))]),
        tls,
        ..Config::default()
    };
    let seed = Seed::Generated {
        projects: vec![PROJECT.to_string(), BYSTANDER.to_string()],
        tasks_per_kind: PER_KIND,
        seed: 20261122,
    };
    Emulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), config, seed).await.expect("the emulator starts")
}

/// Runs `sdk_client.py` against the emulator with the given secret key and extra arguments.
async fn run_sdk_client(emu: &Emulator, secret_key: &str, scenario: &str, extra: &[String]) -> Value {
    run_sdk_client_at(&emu.url(), secret_key, scenario, extra).await
}

/// Runs `sdk_client.py` against the emulator at `url`.
async fn run_sdk_client_at(url: &str, secret_key: &str, scenario: &str, extra: &[String]) -> Value {
    let page_size = PAGE_SIZE.to_string();
    let mut args: Vec<&str> =
        vec!["--endpoint", url, "--project", PROJECT, "--scenario", scenario, "--page-size", &page_size];
    args.extend(extra.iter().map(String::as_str));
    let envs = [("TASKREAPER_SDK_AK", ACCESS_KEY), ("TASKREAPER_SDK_SK", secret_key)];
    let output = harness::run_python("sdk_client.py", &args, &envs, Vec::new()).await;
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("sdk_client.py printed no JSON ({e}): {}", String::from_utf8_lossy(&output.stdout))
    })
}

fn ids(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected a list of ids, got {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("expected an id, got {v}")).to_string())
        .collect()
}

fn job_ids(jobs: &[FailureJob]) -> Vec<String> {
    jobs.iter().map(|j| j.job_id.clone()).collect()
}

fn task_ids(tasks: &[FailedTask]) -> Vec<String> {
    tasks.iter().map(|t| t.task_id.clone()).collect()
}

fn without(list: &[String], gone: &[String]) -> Vec<String> {
    list.iter().filter(|id| !gone.contains(id)).cloned().collect()
}

/// Checks one list summary of the script: consistent totals, every page read, and the ids expected.
fn assert_listing(step: &str, summary: &Value, expected: &[String]) {
    assert_eq!(summary["count"], expected.len(), "{step}: count");
    assert_eq!(summary["listed"], expected.len(), "{step}: jobs listed");
    assert_eq!(summary["counts_consistent"], true, "{step}: count changed between pages");
    assert_eq!(summary["pages"], expected.len().div_ceil(PAGE_SIZE).max(1), "{step}: pages");
    assert_eq!(ids(&summary["ids"]), expected, "{step}: ids");
}

fn assert_task_listing(step: &str, summary: &Value, expected: &[String]) {
    assert_eq!(summary["total"], expected.len(), "{step}: total");
    assert_eq!(summary["listed"], expected.len(), "{step}: tasks listed");
    assert_eq!(summary["totals_consistent"], true, "{step}: total changed between pages");
    assert_eq!(summary["pages"], expected.len().div_ceil(PAGE_SIZE).max(1), "{step}: pages");
    assert_eq!(ids(&summary["ids"]), expected, "{step}: ids");
}

/// The SDK lists with filters and paging, then every delete call; the emulator ends up holding
/// exactly what the semantics of each call leave, and the SDK sees the same at every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_purge_the_emulator() {
    let emu = start_emulator(false).await;
    let store = emu.store();
    let seeded = store.seeded_failure_jobs(PROJECT);
    let all = job_ids(&store.failure_jobs(PROJECT));
    let tasks = task_ids(&store.failed_tasks(PROJECT));
    let bystander_jobs = store.failure_jobs(BYSTANDER);
    let bystander_tasks = store.failed_tasks(BYSTANDER);
    assert_eq!(all.len(), 4 * PER_KIND);
    assert_eq!(tasks.len(), 3 * PER_KIND);

    let of_type = |kind: &str| -> Vec<String> {
        seeded.iter().filter(|j| j.job.resource_type == kind).map(|j| j.job.job_id.clone()).collect()
    };
    let group_level = of_type(SERVER_GROUPS);
    // The protection group with the most members below group level, to delete as a whole.
    let members = |group: &str| -> Vec<String> {
        seeded.iter().filter(|j| j.group_id() == Some(group)).map(|j| j.job.job_id.clone()).collect()
    };
    let group = seeded
        .iter()
        .filter_map(|j| j.group_id())
        .max_by_key(|g| without(&members(g), &group_level).len())
        .expect("seeded jobs have groups")
        .to_string();
    let in_group = members(&group);
    assert!(without(&in_group, &group_level).len() >= 2, "the group has members below group level");
    // One job of each lower resource type outside that group, deleted by id.
    let singles: Vec<String> = ["protected_instances", "replications", "disaster_recovery_drills"]
        .iter()
        .map(|kind| {
            seeded
                .iter()
                .find(|j| j.job.resource_type == *kind && j.group_id() != Some(group.as_str()))
                .unwrap_or_else(|| panic!("a {kind} job outside group {group}"))
                .job
                .job_id
                .clone()
        })
        .collect();
    let single_tasks = vec![tasks[1].clone(), tasks[tasks.len() - 2].clone()];

    let mut extra = vec!["--server-group".to_string(), group.clone()];
    for id in &singles {
        extra.extend(["--delete-job".to_string(), id.clone()]);
    }
    for id in &single_tasks {
        extra.extend(["--delete-task".to_string(), id.clone()]);
    }
    let out = run_sdk_client(&emu, SECRET_KEY, "purge", &extra).await;
    let sdrs = &out["sdrs"];
    let kps = &out["kps"];

    // Listing: paging covers everything, in the emulator's order, and every filter narrows exactly.
    assert_listing("initial list", &sdrs["initial"], &all);
    for kind in SDRS_RESOURCE_TYPES {
        assert_listing(
            &format!("resource_type={kind}"),
            &sdrs["filtered"]["resource_type"][kind],
            &of_type(kind),
        );
    }
    let statuses = sdrs["filtered"]["failure_status"].as_object().expect("failure_status filters");
    assert!(statuses.len() >= 2, "several failure statuses were seen: {statuses:?}");
    for (status, summary) in statuses {
        let expected: Vec<String> =
            seeded.iter().filter(|j| j.job.failure_status == *status).map(|j| j.job.job_id.clone()).collect();
        assert_listing(&format!("failure_status={status}"), summary, &expected);
    }
    assert_listing("server_group_id filter", &sdrs["filtered"]["server_group_id"], &in_group);
    let name = sdrs["initial"]["jobs"][0]["resource_name"].as_str().expect("a resource name");
    let named: Vec<String> =
        seeded.iter().filter(|j| j.job.resource_name.contains(name)).map(|j| j.job.job_id.clone()).collect();
    assert!(named.contains(&all[0]));
    assert_listing("resource_name filter", &sdrs["filtered"]["resource_name"], &named);

    // The batch delete clears protection-group-level jobs only.
    assert_eq!(sdrs["delete_all"]["status"], 204);
    let after_batch = without(&all, &group_level);
    assert_listing("after the batch delete", &sdrs["delete_all"]["after"], &after_batch);
    assert!(sdrs["delete_all"]["after"]["by_resource_type"].get(SERVER_GROUPS).is_none());

    // The per-group delete clears that group's remaining jobs and nothing else.
    assert_eq!(sdrs["delete_server_group"]["status"], 204);
    assert_listing("the group after its delete", &sdrs["delete_server_group"]["group_after"], &[]);
    let after_group = without(&after_batch, &in_group);
    assert_listing("after the group delete", &sdrs["delete_server_group"]["after"], &after_group);

    // Single deletes remove exactly the ids given.
    assert_eq!(sdrs["delete_jobs"]["statuses"], json!([204, 204, 204]));
    let after_singles = without(&after_group, &singles);
    assert_eq!(after_singles.len(), after_group.len() - 3);
    assert_listing("after single deletes", &sdrs["delete_jobs"]["after"], &after_singles);
    assert_eq!(job_ids(&store.failure_jobs(PROJECT)), after_singles, "the emulator holds what the SDK saw");

    // KPS: single deletes, then delete-all empties the project.
    assert_task_listing("KPS initial list", &kps["initial"], &tasks);
    assert_eq!(kps["delete_tasks"]["statuses"], json!([200, 200]));
    assert_task_listing(
        "KPS after single deletes",
        &kps["delete_tasks"]["after"],
        &without(&tasks, &single_tasks),
    );
    assert_eq!(kps["delete_all"]["status"], 200);
    assert_task_listing("KPS after delete-all", &kps["delete_all"]["after"], &[]);
    assert!(store.failed_tasks(PROJECT).is_empty(), "KPS delete-all empties the project");

    // The other project is untouched, and the emulator saw exactly these deletes.
    assert_eq!(store.failure_jobs(BYSTANDER), bystander_jobs);
    assert_eq!(store.failed_tasks(BYSTANDER), bystander_tasks);
    let calls = store.calls();
    let deletes = |route: &str| calls.project_route(PROJECT, "DELETE", route);
    assert_eq!(deletes(SDRS_BATCH), 1);
    assert_eq!(deletes(SDRS_GROUP_BATCH), 1);
    assert_eq!(deletes(SDRS_ONE), 3);
    assert_eq!(deletes(KPS_TASKS), 1);
    assert_eq!(deletes(KPS_ONE), 2);
    assert_eq!(calls.deletes, 8);
    assert!(!calls.by_project.contains_key(BYSTANDER), "no call reached the other project");

    // The admin endpoints tell the same story over HTTP.
    let admin = |path: String| {
        let url = format!("{}{ADMIN_PREFIX}{path}", emu.url());
        async move {
            let response = reqwest::get(&url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
            assert_eq!(response.status(), 200, "GET {url}");
            response.json::<Value>().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
        }
    };
    let remaining = admin(format!("/projects/{PROJECT}/failure-jobs")).await;
    let remaining: Vec<String> = remaining
        .as_array()
        .expect("a list of jobs")
        .iter()
        .map(|j| j["job_id"].as_str().expect("job_id").to_string())
        .collect();
    assert_eq!(remaining, after_singles);
    assert_eq!(admin(format!("/projects/{PROJECT}/failed-tasks")).await, json!([]));
    let admin_calls = admin("/calls".to_string()).await;
    assert_eq!(admin_calls["total"], calls.total, "admin calls are not counted as cloud calls");
    assert_eq!(admin_calls["deletes"], 8);

    println!(
        "sdk purge against the emulator: {} SDRS jobs -> {} after batch ({} group-level) -> {} after group {group} \
         -> {} after {} single deletes; KPS {} tasks -> {} -> 0; {} cloud calls",
        all.len(),
        after_batch.len(),
        group_level.len(),
        after_group.len(),
        after_singles.len(),
        singles.len(),
        tasks.len(),
        tasks.len() - single_tasks.len(),
        calls.total
    );
    emu.shutdown().await;
}

/// The SDK with a wrong secret key: every call raises the 401 the emulator sent, with its
/// Huawei-style error code and message, and nothing is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_with_a_wrong_secret_key_is_rejected() {
    let emu = start_emulator(false).await;
    let store = emu.store();
    let jobs = store.failure_jobs(PROJECT);
    let tasks = store.failed_tasks(PROJECT);
    let group = store.seeded_failure_jobs(PROJECT).iter().find_map(|j| j.group_id().map(str::to_string));
    let extra = vec![
        "--server-group".to_string(),
        group.expect("seeded jobs have groups"),
        "--delete-job".to_string(),
        jobs[0].job_id.clone(),
        "--delete-task".to_string(),
        tasks[0].task_id.clone(),
    ];
    let out = run_sdk_client(&emu, "wrongSecretKey0123456789abcdefghijklmnop", "wrong-key", &extra).await;

    let mut rejected = 0;
    for (service, calls) in out.as_object().expect("services") {
        for (call, seen) in calls.as_object().expect("calls") {
            let what = format!("{service} {call}: {seen}");
            assert_eq!(seen["raised"], "ClientRequestException", "{what}");
            assert_eq!(seen["status_code"], 401, "{what}");
            assert_eq!(seen["error_code"], gateway_code::AUTHENTICATION, "{what}");
            let msg = seen["error_msg"].as_str().unwrap_or_default();
            assert!(msg.starts_with("Incorrect IAM authentication information"), "{what}");
            assert!(!msg.contains(SECRET_KEY) && !msg.contains("wrongSecretKey"), "no key in errors: {what}");
            let request_id = seen["request_id"].as_str().unwrap_or_default();
            assert_eq!(request_id.len(), 32, "the SDK kept X-Request-Id: {what}");
            rejected += 1;
        }
    }
    assert_eq!(rejected, 7, "every SDRS and KPS call was tried");
    assert_eq!(store.failure_jobs(PROJECT), jobs, "no SDRS job was deleted");
    assert_eq!(store.failed_tasks(PROJECT), tasks, "no KPS task was deleted");
    let calls = store.calls();
    assert_eq!(calls.total, 7, "each call reached the emulator once (no retries)");
    println!(
        "sdk with a wrong secret key: {rejected}/7 calls rejected with 401 {}; {} jobs and {} tasks intact",
        gateway_code::AUTHENTICATION,
        jobs.len(),
        tasks.len()
    );
    emu.shutdown().await;
}

/// The SDK over HTTPS with certificate verification on: it trusts the emulator's certificate when
/// given its CA, and refuses the connection otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_verifies_the_emulator_certificate() {
    let emu = start_emulator(true).await;
    assert!(emu.url().starts_with("https://127.0.0.1:"), "{}", emu.url());
    let mut ca = tempfile::NamedTempFile::new().expect("a temporary file");
    ca.write_all(emu.ca_pem().expect("a CA certificate with TLS").as_bytes()).expect("the CA is written");
    let ca_path = ca.path().to_str().expect("a UTF-8 temporary path").to_string();

    let trusted = run_sdk_client(&emu, SECRET_KEY, "list", &["--ca-file".to_string(), ca_path]).await;
    assert_eq!(trusted["sdrs"]["raised"], Value::Null, "{trusted}");
    assert_eq!(trusted["kps"]["raised"], Value::Null, "{trusted}");
    assert_eq!(trusted["sdrs"]["listing"]["count"], 4 * PER_KIND);
    assert_eq!(trusted["sdrs"]["listing"]["listed"], 4 * PER_KIND);
    assert_eq!(trusted["kps"]["listing"]["total"], 3 * PER_KIND);
    assert_eq!(trusted["kps"]["listing"]["listed"], 3 * PER_KIND);
    let calls_trusted = emu.store().calls().total;
    assert!(calls_trusted >= 2, "the lists reached the emulator");

    let untrusted = run_sdk_client(&emu, SECRET_KEY, "list", &[]).await;
    for service in ["sdrs", "kps"] {
        assert_eq!(untrusted[service]["raised"], "SslHandShakeException", "{untrusted}");
    }
    assert_eq!(emu.store().calls().total, calls_trusted, "no call got through without trust");
    println!(
        "sdk over https: {calls_trusted} calls with the emulator's CA trusted, 0 of 2 without it \
         (SslHandShakeException)"
    );
    emu.shutdown().await;
}

/// `taskreaper emulator` itself, the binary on a port it picked: the official SDK lists and purges
/// the failed tasks it seeded, and a request whose signature was tampered with gets a 401 with a
/// Huawei-style body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_command_serves_the_official_sdk() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let access_key = format!("{ACCESS_KEY}:{SECRET_KEY}");
    let mut server = common::binary::taskreaper()
        .args(["emulator", "--listen", "127.0.0.1:0", "--projects", PROJECT, "--tasks-per-kind", "4"])
        .args(["--access-key", &access_key])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect(common::binary::START_FAILED);
    let stdout = server.stdout.take().expect("stdout is piped");
    let line =
        tokio::time::timeout(std::time::Duration::from_secs(30), BufReader::new(stdout).lines().next_line())
            .await
            .expect("the emulator prints its address within 30 s")
            .expect("reading the emulator's stdout")
            .expect("the emulator prints a line");
    let url = line
        .strip_prefix("taskreaper emulator listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"), "a real port was picked: {url}");

    // The SDK lists (every page), deletes the protection-group failures and every KPS task.
    let out = run_sdk_client_at(&url, SECRET_KEY, "purge", &[]).await;
    let sdrs = &out["sdrs"];
    assert_eq!(sdrs["initial"]["count"], 16, "4 jobs of each of the 4 resource types: {sdrs}");
    assert_eq!(sdrs["initial"]["by_resource_type"][SERVER_GROUPS], 4, "{sdrs}");
    assert_eq!(sdrs["delete_all"]["status"], 204, "{sdrs}");
    assert_eq!(sdrs["delete_all"]["after"]["count"], 12, "only protection-group failures go: {sdrs}");
    let kps = &out["kps"];
    assert_eq!(kps["initial"]["total"], 12, "4 tasks of each of the 3 operate types: {kps}");
    assert_eq!(kps["delete_all"]["status"], 200, "{kps}");
    assert_eq!(kps["delete_all"]["after"]["total"], 0, "{kps}");

    // A correctly signed request with one character of its signature changed.
    let host = url.trim_start_matches("http://").to_string();
    let path = format!("/v1/{PROJECT}/task-center/failure-jobs");
    let date = signing::format_sdk_date(jiff::Timestamp::now());
    let headers: Vec<(String, String)> = vec![
        ("Host".into(), host),
        (signing::DATE_HEADER.into(), date.clone()),
        ("X-Project-Id".into(), PROJECT.into()),
    ];
    let req = Request { method: "GET", path: &path, query: &[], headers: &headers, body: b"" };
    let mut auth = signing::authorize(&req, ACCESS_KEY, SECRET_KEY.as_bytes(), &date);
    let flipped = if auth.signature.ends_with('0') { '1' } else { '0' };
    auth.signature.pop();
    auth.signature.push(flipped);
    let response = reqwest::Client::new()
        .get(format!("{url}{path}"))
        .header(signing::DATE_HEADER, &date)
        .header("X-Project-Id", PROJECT)
        .header("Authorization", auth.header_value())
        .send()
        .await
        .expect("the emulator answers");
    assert_eq!(response.status(), 401);
    let request_id = response.headers().get("X-Request-Id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error_code"], gateway_code::AUTHENTICATION, "{body}");
    assert!(body["error_msg"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(request_id.is_some_and(|id| !id.is_empty()), "X-Request-Id is set");
    println!(
        "taskreaper emulator at {url}: the SDK listed {} SDRS jobs -> {} after the batch delete, {} KPS tasks \
         -> {}; a tampered signature got 401 {}",
        sdrs["initial"]["count"],
        sdrs["delete_all"]["after"]["count"],
        kps["initial"]["total"],
        kps["delete_all"]["after"]["total"],
        body["error_code"]
    );
}
