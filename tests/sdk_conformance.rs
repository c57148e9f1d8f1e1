//! Conformance with the official Huawei Cloud Python SDK (3.1.219), the outside referee: our signer
//! against the SDK's signer on randomized requests, and the SDK's SDRS and KPS clients against the
//! emulator, including OIDC federation and project discovery through the emulator's IAM. Spawns the
//! Python interpreter named by `TASKREAPER_PYTHON` (tests/run.sh sets it up from
//! tests/sdk/requirements.txt).
//!
//! Run: `TASKREAPER_PYTHON=/path/to/venv/bin/python cargo test --test sdk_conformance -- --nocapture`

mod common;
#[path = "sdk/harness.rs"]
mod harness;
#[path = "sdk/signer_cases.rs"]
mod signer_cases;

use common::iam::{AUDIENCE as OIDC_AUDIENCE, IDP as IDP_ID, ISSUER as OIDC_ISSUER, federated_iam};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use taskreaper::cloud::credentials::Secret;
use taskreaper::cloud::model::{FailedTask, FailureJob, SERVER_GROUPS};
use taskreaper::cloud::signing::{self, Request};
use taskreaper::emulator::{
    ADMIN_PREFIX, Config, Emulator, GROUP_STATUSES, GROUPS_PER_PROJECT, IAM_ID_TOKEN, IAM_PROJECTS,
    IAM_SECURITY_TOKENS, IN_GROUP_RESOURCE_TYPES, KPS_ONE, KPS_TASKS, KpsTaskTime, LocalIssuer, Modes,
    ODD_KPS_OPERATE_TYPE, ODD_SDRS_RESOURCE_TYPE, SDRS_BATCH, SDRS_GROUP_BATCH, SDRS_GROUPS, SDRS_ONE,
    SdrsListing, Seed, SeededJob, TokenClaims, gateway_code, route_key,
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
/// SDRS jobs per documented resource type and KPS tasks per documented operate type in each seeded
/// project (the generator adds one dangling group-level job, one odd in-group job and one odd task).
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

/// Every task the SDK decoded (the `tasks` of a `list_tasks` summary) equals the emulator's: same
/// ids, operate types (also outside the enum), `task_time` as the epoch-ms text, and `null` where the
/// emulator holds no value.
fn assert_sdk_tasks_match(step: &str, summary: &Value, expected: &[FailedTask]) {
    let decoded = summary["tasks"].as_array().unwrap_or_else(|| panic!("{step}: no tasks in {summary}"));
    assert_eq!(decoded.len(), expected.len(), "{step}: tasks");
    assert_eq!(summary["task_time_types"], json!(["str"]), "{step}: the SDK types task_time as str");
    let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_default();
    for (sdk, ours) in decoded.iter().zip(expected) {
        let what = format!("{step}: {sdk}");
        assert_eq!(text(&sdk["task_id"]), ours.task_id, "{what}");
        assert_eq!(text(&sdk["operate_type"]), ours.operate_type, "{what}");
        assert_eq!(text(&sdk["task_time"]), ours.task_time, "{what}");
        assert_eq!(text(&sdk["keypair_name"]), ours.keypair_name, "{what}");
        assert_eq!(sdk["task_error_code"].is_null(), ours.task_error_code.is_empty(), "{what}");
        assert_eq!(sdk["task_error_msg"].is_null(), ours.task_error_msg.is_empty(), "{what}");
    }
}

/// The SDK lists protection groups, the group-level failures and every group's in-group failures
/// with filters and paging, then every delete call; the emulator ends up holding exactly what the
/// strict reading of each call leaves, and the SDK sees the same at every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_purge_the_emulator() {
    let emu = start_emulator(false).await;
    let store = emu.store();
    let seeded = store.seeded_failure_jobs(PROJECT);
    let groups = store.server_groups(PROJECT);
    let group_ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
    let all = job_ids(&store.failure_jobs(PROJECT));
    let seeded_tasks = store.failed_tasks(PROJECT);
    let tasks = task_ids(&seeded_tasks);
    let bystander_jobs = store.failure_jobs(BYSTANDER);
    let bystander_tasks = store.failed_tasks(BYSTANDER);
    assert_eq!(groups.len(), GROUPS_PER_PROJECT);
    assert_eq!(all.len(), 4 * PER_KIND + 2, "per kind, plus one dangling and one odd resource type");
    assert_eq!(tasks.len(), 3 * PER_KIND + 1, "per operate type, plus one odd operate type");

    let select = |keep: &dyn Fn(&SeededJob) -> bool| -> Vec<String> {
        seeded.iter().filter(|j| keep(j)).map(|j| j.job.job_id.clone()).collect()
    };
    let group_level = select(&|j| j.is_group_level());
    assert_eq!(group_level.len(), PER_KIND + 1);
    let members = |group: &str| select(&|j| j.group_id() == Some(group));
    // The protection group with the most in-group failures, to delete as a whole.
    let group = group_ids.iter().max_by_key(|g| members(g).len()).expect("groups").clone();
    let in_group = members(&group);
    assert!(in_group.len() >= 3, "the group has in-group failures");
    // A group-level failure names a group the project no longer has.
    let missing = seeded
        .iter()
        .find(|j| j.is_group_level() && !group_ids.contains(&j.job.resource_id))
        .expect("a dangling group-level failure")
        .job
        .resource_id
        .clone();
    // One in-group failure of each documented type outside that group, deleted by id.
    let singles: Vec<String> = IN_GROUP_RESOURCE_TYPES
        .iter()
        .map(|kind| {
            seeded
                .iter()
                .find(|j| j.job.resource_type == *kind && j.group_id().is_some_and(|g| g != group))
                .unwrap_or_else(|| panic!("a {kind} job outside group {group}"))
                .job
                .job_id
                .clone()
        })
        .collect();
    let single_tasks = vec![tasks[1].clone(), tasks[tasks.len() - 2].clone()];

    let mut extra = vec!["--server-group".to_string(), group.clone(), "--missing-group".to_string(), missing];
    for id in &singles {
        extra.extend(["--delete-job".to_string(), id.clone()]);
    }
    for id in &single_tasks {
        extra.extend(["--delete-task".to_string(), id.clone()]);
    }
    let out = run_sdk_client(&emu, SECRET_KEY, "purge", &extra).await;
    let sdrs = &out["sdrs"];
    let kps = &out["kps"];

    // Protection groups: every page, in the emulator's order, and the status filter.
    assert_listing("protection groups", &sdrs["groups"], &group_ids);
    let statuses: Vec<&str> = groups.iter().map(|g| g.status.as_str()).collect();
    assert_eq!(sdrs["groups"]["statuses"], json!(statuses));
    let by_status = sdrs["groups_by_status"].as_object().expect("groups by status");
    assert_eq!(by_status.len(), GROUP_STATUSES.len());
    for (status, summary) in by_status {
        let expected: Vec<String> =
            groups.iter().filter(|g| g.status == *status).map(|g| g.id.clone()).collect();
        assert_listing(&format!("groups with status={status}"), summary, &expected);
    }

    // Without a filter: group-level failures only; with server_group_id: that group's failures.
    assert_listing("initial list", &sdrs["initial"], &group_level);
    let in_group_of = |g: &str, after: &Value, gone: &[String]| {
        assert_listing(&format!("in group {g}"), &after[g], &without(&members(g), gone));
    };
    for g in &group_ids {
        in_group_of(g, &sdrs["in_group"], &[]);
    }
    let kinds: Vec<&String> = sdrs["filtered"]["resource_type"].as_object().expect("types").keys().collect();
    assert_eq!(kinds, [SERVER_GROUPS], "the unfiltered list holds protection-group failures only");
    assert_listing(
        "resource_type=server_groups",
        &sdrs["filtered"]["resource_type"][SERVER_GROUPS],
        &group_level,
    );
    let statuses = sdrs["filtered"]["failure_status"].as_object().expect("failure_status filters");
    assert_eq!(statuses.len(), 2, "group-level failures are failed creations and deletions: {statuses:?}");
    for (status, summary) in statuses {
        let expected = select(&|j| j.is_group_level() && j.job.failure_status == *status);
        assert_listing(&format!("failure_status={status}"), summary, &expected);
    }
    assert_listing("server_group_id filter", &sdrs["filtered"]["server_group_id"], &in_group);
    let types = sdrs["filtered"]["server_group_resource_type"].as_object().expect("in-group types");
    assert_eq!(types.len(), IN_GROUP_RESOURCE_TYPES.len(), "filters take documented types only: {types:?}");
    for (kind, summary) in types {
        let expected = select(&|j| j.group_id() == Some(group.as_str()) && j.job.resource_type == *kind);
        assert_listing(&format!("server_group_id and resource_type={kind}"), summary, &expected);
    }
    let name = sdrs["initial"]["jobs"][0]["resource_name"].as_str().expect("a resource name");
    let named = select(&|j| j.is_group_level() && j.job.resource_name.contains(name));
    assert!(named.contains(&group_level[0]));
    assert_listing("resource_name filter", &sdrs["filtered"]["resource_name"], &named);

    // The batch delete clears protection-group-level failures only.
    assert_eq!(sdrs["delete_all"]["status"], 204);
    assert_listing("after the batch delete", &sdrs["delete_all"]["after"], &[]);
    for g in &group_ids {
        in_group_of(g, &sdrs["delete_all"]["in_group_after"], &[]);
    }

    // The per-group delete clears that group's in-group failures and nothing else.
    assert_eq!(sdrs["delete_server_group"]["status"], 204);
    assert_listing("the group after its delete", &sdrs["delete_server_group"]["group_after"], &[]);
    assert_listing("after the group delete", &sdrs["delete_server_group"]["after"], &[]);
    for g in &group_ids {
        in_group_of(g, &sdrs["delete_server_group"]["in_group_after"], &in_group);
    }

    // A group that does not exist: 404 with an SDRS error the SDK understands.
    let missing = &sdrs["delete_missing_group"];
    assert_eq!(missing["raised"], "ClientRequestException", "{missing}");
    assert_eq!(missing["status_code"], 404, "{missing}");
    assert_eq!(missing["error_code"], "SDRS.1300", "{missing}");
    assert_eq!(missing["request_id"].as_str().map(str::len), Some(32), "{missing}");

    // Single deletes remove exactly the ids given.
    assert_eq!(sdrs["delete_jobs"]["statuses"], json!([204, 204, 204]));
    let gone: Vec<String> = in_group.iter().chain(&singles).cloned().collect();
    for g in &group_ids {
        in_group_of(g, &sdrs["delete_jobs"]["in_group_after"], &gone);
    }
    let left = without(&without(&all, &group_level), &gone);
    assert_eq!(left.len(), all.len() - group_level.len() - in_group.len() - 3);
    assert_eq!(job_ids(&store.failure_jobs(PROJECT)), left, "the emulator holds what the SDK saw");

    // KPS: the documented shape decodes; single deletes, then delete-all empties the project.
    assert_task_listing("KPS initial list", &kps["initial"], &tasks);
    assert_sdk_tasks_match("KPS initial list", &kps["initial"], &seeded_tasks);
    assert_eq!(kps["initial"]["by_operate_type"][ODD_KPS_OPERATE_TYPE], 1);
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
    assert_eq!(deletes(SDRS_GROUP_BATCH), 2, "the group, then the missing one");
    assert_eq!(deletes(SDRS_ONE), 3);
    assert_eq!(deletes(KPS_TASKS), 1);
    assert_eq!(deletes(KPS_ONE), 2);
    assert_eq!(calls.deletes, 9);
    assert_eq!(calls.project_route(PROJECT, "GET", SDRS_GROUPS), 1 + GROUP_STATUSES.len() as u64);
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
    assert_eq!(remaining, left);
    assert_eq!(admin(format!("/projects/{PROJECT}/failed-tasks")).await, json!([]));
    let admin_calls = admin("/calls".to_string()).await;
    assert_eq!(admin_calls["total"], calls.total, "admin calls are not counted as cloud calls");
    assert_eq!(admin_calls["deletes"], 9);

    println!(
        "sdk purge against the emulator: {} groups; {} group-level SDRS failures -> 0 after the batch; \
         {} in group {group} -> 0 after its delete; missing group -> 404; {} in-group left after {} single \
         deletes; KPS {} tasks -> {} -> 0; {} cloud calls",
        group_ids.len(),
        group_level.len(),
        in_group.len(),
        left.len(),
        singles.len(),
        tasks.len(),
        tasks.len() - single_tasks.len(),
        calls.total
    );
    emu.shutdown().await;
}

/// The SDK's `list_failed_task` decodes the documented KPS shape (epoch-ms `task_time` string,
/// `null` error fields, an operate type outside the enum) and the same tasks with `task_time` as a
/// number; the loose SDRS reading shows the SDK every failure without a filter. Modes are switched
/// on one running emulator through the admin API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_decodes_both_kps_time_modes_and_both_sdrs_listings() {
    let emu = start_emulator(false).await;
    let store = emu.store();
    let tasks = store.failed_tasks(PROJECT);
    assert!(tasks.iter().any(|t| t.task_error_code.is_empty()), "the seed has null error codes");
    assert!(tasks.iter().any(|t| t.operate_type == ODD_KPS_OPERATE_TYPE));

    let strings = run_sdk_client(&emu, SECRET_KEY, "list", &[]).await;
    assert_eq!(strings["kps"]["raised"], Value::Null, "{strings}");
    assert_sdk_tasks_match("task_time as strings", &strings["kps"]["listing"], &tasks);
    assert_eq!(strings["sdrs"]["listing"]["count"], PER_KIND + 1, "strict: group-level failures");

    let modes = reqwest::Client::new()
        .put(format!("{}{ADMIN_PREFIX}/modes", emu.url()))
        .json(&json!({"kps_task_time": "number", "sdrs_listing": "loose"}))
        .send()
        .await
        .expect("the admin API answers");
    assert_eq!(modes.status(), 200);
    assert_eq!(store.modes(), Modes { sdrs_listing: SdrsListing::Loose, kps_task_time: KpsTaskTime::Number });

    let numbers = run_sdk_client(&emu, SECRET_KEY, "list", &[]).await;
    assert_eq!(numbers["kps"]["raised"], Value::Null, "{numbers}");
    assert_sdk_tasks_match("task_time as numbers", &numbers["kps"]["listing"], &tasks);
    let loose = &numbers["sdrs"]["listing"];
    assert_eq!(loose["count"], 4 * PER_KIND + 2, "loose: every failure: {loose}");
    assert_eq!(ids(&loose["ids"]), job_ids(&store.failure_jobs(PROJECT)));
    assert_eq!(loose["by_resource_type"][ODD_SDRS_RESOURCE_TYPE], 1, "{loose}");
    println!(
        "sdk list_failed_task decoded {} tasks with task_time as strings and as numbers alike; the loose \
         SDRS list showed {} failures, the strict one {}",
        tasks.len(),
        loose["count"],
        strings["sdrs"]["listing"]["count"]
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
    let group = store.server_groups(PROJECT).first().map(|g| g.id.clone());
    let extra = vec![
        "--server-group".to_string(),
        group.expect("the seed has protection groups"),
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
    assert_eq!(rejected, 8, "every SDRS and KPS call was tried");
    assert_eq!(store.failure_jobs(PROJECT), jobs, "no SDRS job was deleted");
    assert_eq!(store.failed_tasks(PROJECT), tasks, "no KPS task was deleted");
    let calls = store.calls();
    assert_eq!(calls.total, 8, "each call reached the emulator once (no retries)");
    println!(
        "sdk with a wrong secret key: {rejected}/8 calls rejected with 401 {}; {} jobs and {} tasks intact",
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
    assert_eq!(trusted["sdrs"]["listing"]["count"], PER_KIND + 1);
    assert_eq!(trusted["sdrs"]["listing"]["listed"], PER_KIND + 1);
    assert_eq!(trusted["kps"]["listing"]["total"], 3 * PER_KIND + 1);
    assert_eq!(trusted["kps"]["listing"]["listed"], 3 * PER_KIND + 1);
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

/// `taskreaper emulator` itself, the binary on a port it picked, with the loose listing and numeric KPS
/// times chosen by flag: the official SDK lists and purges the failed tasks it seeded, and a request
/// whose signature was tampered with gets a 401 with a Huawei-style body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_command_serves_the_official_sdk() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let access_key = format!("{ACCESS_KEY}:{SECRET_KEY}");
    let mut server = common::binary::taskreaper()
        .args(["emulator", "--listen", "127.0.0.1:0", "--projects", PROJECT, "--tasks-per-kind", "4"])
        .args(["--access-key", &access_key])
        .args(["--sdrs-listing", "loose", "--kps-task-time", "number"])
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
    assert_eq!(sdrs["groups"]["count"], GROUPS_PER_PROJECT, "{sdrs}");
    assert_eq!(
        sdrs["initial"]["count"], 18,
        "loose: 4 of each of the 4 resource types and 2 odd ones: {sdrs}"
    );
    assert_eq!(sdrs["initial"]["by_resource_type"][SERVER_GROUPS], 5, "{sdrs}");
    assert_eq!(sdrs["delete_all"]["status"], 204, "{sdrs}");
    assert_eq!(sdrs["delete_all"]["after"]["count"], 13, "only protection-group failures go: {sdrs}");
    let kps = &out["kps"];
    assert_eq!(kps["initial"]["total"], 13, "4 tasks of each of the 3 operate types and an odd one: {kps}");
    assert_eq!(kps["initial"]["task_time_types"], json!(["str"]), "numeric times decode: {kps}");
    assert!(
        kps["initial"]["tasks"].as_array().is_some_and(|t| t.iter().all(|t| t["task_time"]
            .as_str()
            .is_some_and(|s| s.len() == 13 && s.bytes().all(|b| b.is_ascii_digit())))),
        "{kps}"
    );
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

const SERVICE_ACCOUNT: &str = "system:serviceaccount:team-a:cleaner";

/// An emulator whose IAM trusts `issuer` as identity provider [`IDP_ID`] and names [`PROJECT`]
/// `cn-north-4` and [`BYSTANDER`] `cn-east-3`; temporary keys last at most `max_duration`.
async fn start_federated_emulator(issuer: &LocalIssuer, max_duration: Duration) -> Emulator {
    let config = Config { iam: federated_iam(issuer, PROJECT, BYSTANDER, max_duration), ..Config::default() };
    let seed = Seed::Generated {
        projects: vec![PROJECT.to_string(), BYSTANDER.to_string()],
        tasks_per_kind: PER_KIND,
        seed: 20261122,
    };
    Emulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), config, seed).await.expect("the emulator starts")
}

/// Writes an ID token for [`SERVICE_ACCOUNT`] with `audience`, valid for ten minutes, to a file.
fn id_token_file(issuer: &LocalIssuer, audience: &str) -> tempfile::NamedTempFile {
    let now = jiff::Timestamp::now();
    let claims = TokenClaims {
        sub: SERVICE_ACCOUNT.into(),
        aud: vec![audience.into()],
        issued_at: now,
        expires_at: now.checked_add(jiff::SignedDuration::from_mins(10)).expect("in range"),
        iss: None,
    };
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(issuer.token(&claims).expect("a signed token").as_bytes()).expect("the token is written");
    file
}

/// Runs `sdk_federation.py` with IAM at the emulator (HUAWEICLOUD_SDK_IAM_ENDPOINT).
async fn run_sdk_federation(emu: &Emulator, token_file: &std::path::Path, calls: usize) -> Value {
    let url = emu.url();
    let token_path = token_file.to_str().expect("a UTF-8 path");
    let calls = calls.to_string();
    let args = [
        "--endpoint",
        &url,
        "--idp-id",
        IDP_ID,
        "--id-token-file",
        token_path,
        "--region",
        "cn-north-4",
        "--calls",
        &calls,
    ];
    let envs = [("HUAWEICLOUD_SDK_IAM_ENDPOINT", url.as_str())];
    let output = harness::run_python("sdk_federation.py", &args, &envs, Vec::new()).await;
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("sdk_federation.py printed no JSON ({e}): {}", String::from_utf8_lossy(&output.stdout))
    })
}

/// The official SDK with `idp_id` + `id_token_file` and no project id: it exchanges the ID token at
/// the emulator's IAM for temporary credentials, finds the project of `cn-north-4` with them, and
/// lists KPS and SDRS failed tasks signed with its security token. The SDK asks for 6 h and keeps
/// credentials with more than 40 minutes left, so one exchange serves every call; capped at 10
/// minutes, it refreshes before every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_federates_an_id_token_and_discovers_the_project_of_a_region() {
    let issuer = LocalIssuer::generate(OIDC_ISSUER, "sa-key-1").expect("an issuer");
    let token = id_token_file(&issuer, OIDC_AUDIENCE);
    const CALLS: usize = 3;

    let emu = start_federated_emulator(&issuer, Duration::from_secs(24 * 3600)).await;
    let tasks = emu.store().failed_tasks(PROJECT).len();
    let out = run_sdk_federation(&emu, token.path(), CALLS).await;
    assert_eq!(out["raised"], Value::Null, "{out}");
    assert_eq!(out["project_id"], PROJECT, "the project of cn-north-4: {out}");
    assert_eq!(out["kps_totals"], json!(vec![tasks; CALLS]));
    assert_eq!(out["sdrs_count"], PER_KIND + 1);
    assert_eq!(out["has_security_token"], true);
    let issued = emu.iam().issued();
    assert_eq!(issued.len(), 1, "one exchange for every call: {issued:?}");
    assert_eq!(issued[0].subject, SERVICE_ACCOUNT);
    assert_eq!(issued[0].calls, CALLS as u64 + 2, "the project lookup, the KPS lists and the SDRS list");
    let keys = ids(&out["access_keys"]);
    assert!(keys.iter().all(|k| *k == issued[0].access_key), "{keys:?}");
    let iam_calls = emu.iam().calls();
    assert_eq!(iam_calls[&route_key("POST", IAM_ID_TOKEN)], 1);
    assert_eq!(iam_calls[&route_key("POST", IAM_SECURITY_TOKENS)], 1);
    assert_eq!(iam_calls[&route_key("GET", IAM_PROJECTS)], 1);
    let calls = emu.store().calls();
    assert_eq!(calls.project_route(PROJECT, "GET", KPS_TASKS), CALLS as u64);
    assert!(!calls.by_project.contains_key(BYSTANDER));
    emu.shutdown().await;

    let emu = start_federated_emulator(&issuer, Duration::from_secs(600)).await;
    let out = run_sdk_federation(&emu, token.path(), CALLS).await;
    assert_eq!(out["raised"], Value::Null, "{out}");
    assert_eq!(out["project_id"], PROJECT);
    let issued = emu.iam().issued();
    assert_eq!(issued.len(), CALLS + 2, "a refresh before every request: {issued:?}");
    assert!(issued.iter().all(|k| k.calls == 1), "{issued:?}");
    let mut keys = ids(&out["access_keys"]);
    keys.dedup();
    assert_eq!(keys.len(), CALLS + 1, "a new key for each cloud call: {keys:?}");
    println!(
        "sdk federation: idp {IDP_ID} -> temporary credentials for {SERVICE_ACCOUNT}; project of cn-north-4 \
         discovered = {PROJECT}; {CALLS} KPS lists + 1 SDRS list accepted with X-Security-Token; 1 exchange \
         with 6 h credentials, {} exchanges with 10 min ones (< 40 min left: refreshed before each request)",
        issued.len()
    );
    emu.shutdown().await;
}

/// An ID token for another audience is refused by the emulator's IAM, and the SDK says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_federation_with_a_token_for_another_audience_is_refused() {
    let issuer = LocalIssuer::generate(OIDC_ISSUER, "sa-key-1").expect("an issuer");
    let token = id_token_file(&issuer, "kubernetes");
    let emu = start_federated_emulator(&issuer, Duration::from_secs(3600)).await;
    let out = run_sdk_federation(&emu, token.path(), 1).await;
    assert_ne!(out["raised"], Value::Null, "{out}");
    let message = out["message"].as_str().unwrap_or_default();
    assert!(message.contains("IAM.0003") || message.contains("audience"), "{out}");
    assert!(emu.iam().issued().is_empty());
    assert_eq!(emu.store().calls().total, 0, "no cloud call without credentials");
    println!("sdk federation with a token for audience kubernetes: {} ({message})", out["raised"]);
    emu.shutdown().await;
}
