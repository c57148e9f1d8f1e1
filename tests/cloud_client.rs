//! The SDRS and KPS clients end to end over loopback: against the emulator (TLS and plain HTTP,
//! AK/SK signing and token auth, injected faults) and against small misbehaving servers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use taskreaper::cloud::credentials::{Credentials, Secret};
use taskreaper::cloud::model::{FailedTask, FailureJob, FailureJobFilter, ProtectionGroup};
use taskreaper::cloud::ratelimit::LimiterKey;
use taskreaper::cloud::{
    Allowlist, CloudError, CloudHttp, DeleteOutcome, EndpointPolicy, ErrorClass, HttpConfig, KpsClient,
    RateLimit, RateLimiters, RetryPolicy, SdrsClient, SystemClock,
};
use taskreaper::emulator::{Config, Emulator, Faults, Seed, SeededJob};

const PROJECT: &str = "0605767b5c00d4bb2f10c01a1e3b3a7e";
const AK: &str = "HPUAEXAMPLEACCESSKEY";
const SK: &str = "example-secret-key-0123456789";
const TOKEN: &str = "MIIexample-iam-token";

const SDRS_LIST: &str = "GET /v1/{project_id}/task-center/failure-jobs";
const SDRS_GROUPS: &str = "GET /v1/{project_id}/server-groups";
const SDRS_BATCH: &str = "DELETE /v1/{project_id}/task-center/failure-jobs/batch";
const SDRS_GROUP_BATCH: &str = "DELETE /v1/{project_id}/task-center/{server_group_id}/failure-jobs/batch";
const SDRS_ONE: &str = "DELETE /v1/{project_id}/task-center/failure-jobs/{failure_job_id}";
const KPS_LIST: &str = "GET /v3/{project_id}/failed-tasks";
const KPS_ALL: &str = "DELETE /v3/{project_id}/failed-tasks";
const KPS_ONE: &str = "DELETE /v3/{project_id}/failed-tasks/{task_id}";

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn emulator(tls: bool) -> Emulator {
    let config = Config {
        access_keys: BTreeMap::from([(AK.to_string(), Secret::new(SK))]),
        auth_tokens: vec![Secret::new(TOKEN)],
        tls,
        ..Config::default()
    };
    Emulator::start(loopback(), config, Seed::Empty).await.expect("the emulator starts on loopback")
}

fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        max_total: Duration::from_secs(10),
    }
}

fn roomy_limits() -> Arc<RateLimiters> {
    let n = NonZeroU32::new(1000).expect("non-zero");
    RateLimiters::new(RateLimit { per_second: n, burst: n })
}

/// A client core that trusts the emulator: its CA when it serves TLS, plain HTTP otherwise.
fn http_for(emu: &Emulator, tweak: impl FnOnce(&mut HttpConfig)) -> CloudHttp {
    let mut config = HttpConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        ca_bundle_pem: emu.ca_pem().map(|pem| pem.as_bytes().to_vec()),
        endpoints: EndpointPolicy {
            allowlist: Allowlist::parse(["127.0.0.1"]).expect("pattern"),
            allow_http: emu.ca_pem().is_none(),
        },
        retry: fast_retry(4),
        ..HttpConfig::default()
    };
    tweak(&mut config);
    CloudHttp::new(config, roomy_limits(), Arc::new(SystemClock)).expect("client core builds")
}

fn aksk() -> Arc<Credentials> {
    Arc::new(Credentials::AkSk {
        access_key_id: AK.into(),
        secret_access_key: Secret::new(SK),
        security_token: None,
    })
}

fn token() -> Arc<Credentials> {
    Arc::new(Credentials::Token { auth_token: Secret::new(TOKEN) })
}

fn sdrs(http: &CloudHttp, emu: &Emulator, creds: Arc<Credentials>) -> SdrsClient {
    SdrsClient::new(http.clone(), creds, PROJECT, "cn-north-4", Some(&emu.url())).expect("endpoint allowed")
}

fn kps(http: &CloudHttp, emu: &Emulator, creds: Arc<Credentials>) -> KpsClient {
    KpsClient::new(http.clone(), creds, PROJECT, "cn-north-4", Some(&emu.url())).expect("endpoint allowed")
}

fn job(id: &str, resource_type: &str, name: &str) -> FailureJob {
    FailureJob {
        job_id: id.into(),
        job_type: "createProtectedInstance".into(),
        job_status: "FAIL".into(),
        begin_time: "2019-04-01T12:00:00.000Z".into(),
        failure_status: "createFail".into(),
        resource_id: format!("res-{id}"),
        resource_name: name.into(),
        resource_type: resource_type.into(),
        error_code: "SDRS.1001".into(),
        fail_reason: "injected".into(),
    }
}

fn jobs(n: usize, resource_type: &str) -> Vec<FailureJob> {
    (0..n).map(|i| job(&format!("{resource_type}-{i:04}"), resource_type, &format!("name-{i}"))).collect()
}

fn tasks(n: usize) -> Vec<FailedTask> {
    (0..n)
        .map(|i| FailedTask {
            task_id: format!("task-{i:04}"),
            operate_type: "FAILED_UNBIND".into(),
            task_time: "1700000000000".into(),
            task_error_code: "KPS.0001".into(),
            task_error_msg: "unbind failed".into(),
            server_name: format!("server-{i}"),
            server_id: format!("srv-{i}"),
            keypair_name: format!("kp-{i}"),
        })
        .collect()
}

fn ids(jobs: &[FailureJob]) -> Vec<String> {
    let mut ids: Vec<String> = jobs.iter().map(|j| j.job_id.clone()).collect();
    ids.sort();
    ids
}

fn route(emu: &Emulator, key: &str) -> u64 {
    emu.store().calls().by_route.get(key).copied().unwrap_or(0)
}

fn faults(fail_next: Vec<u16>) -> Faults {
    Faults { fail_next, ..Faults::default() }
}

fn in_group(jobs: Vec<FailureJob>, group: &str) -> Vec<SeededJob> {
    jobs.into_iter().map(|j| SeededJob::in_group(j, group)).collect()
}

fn group(id: &str, status: &str) -> ProtectionGroup {
    ProtectionGroup { id: id.into(), name: format!("name-{id}"), status: status.into() }
}

#[tokio::test]
async fn sdrs_every_endpoint_over_tls() {
    let emu = emulator(true).await;
    assert!(emu.url().starts_with("https://"), "the emulator serves TLS: {}", emu.url());
    let store = emu.store();
    store.add_server_groups(PROJECT, [group("pg-1", "protected"), group("pg-2", "available")]);
    store.add_failure_jobs(PROJECT, jobs(2, "server_groups"));
    store.add_failure_jobs(PROJECT, in_group(jobs(3, "protected_instances"), "pg-1"));
    store.add_failure_jobs(PROJECT, in_group(vec![job("odd-name", "replications", "a b+c/d~é")], "pg-2"));
    let client = sdrs(&http_for(&emu, |_| {}), &emu, aksk());

    let groups = client.list_protection_groups().await.expect("protection groups");
    assert_eq!(groups, [group("pg-1", "protected"), group("pg-2", "available")]);

    let all = client.list_failure_jobs(&FailureJobFilter::default()).await.expect("list");
    assert_eq!(ids(&all), ids(&jobs(2, "server_groups")), "without a group: group-level failures only");

    let pg1 = FailureJobFilter { server_group_id: Some("pg-1".into()), ..Default::default() };
    let found = client.list_failure_jobs(&pg1).await.expect("in-group list");
    assert_eq!(ids(&found), ids(&jobs(3, "protected_instances")));
    let instances = FailureJobFilter { resource_type: Some("protected_instances".into()), ..pg1.clone() };
    assert_eq!(client.list_failure_jobs(&instances).await.expect("filtered list").len(), 3);

    let by_name = FailureJobFilter {
        resource_name: Some("a b+c/d~é".into()),
        server_group_id: Some("pg-2".into()),
        ..Default::default()
    };
    let found = client.list_failure_jobs(&by_name).await.expect("a query needing encoding is signed as sent");
    assert_eq!(ids(&found), ["odd-name"]);

    let page = client.list_failure_jobs_page(&pg1, 2, 1).await.expect("page");
    assert_eq!((page.count, page.failure_jobs.len()), (3, 2));

    let one = "protected_instances-0001";
    assert_eq!(client.delete_failure_job(one).await.expect("delete one"), DeleteOutcome::Deleted);
    assert!(store.failure_jobs(PROJECT).iter().all(|j| j.job_id != one));
    assert_eq!(client.delete_failure_job(one).await.expect("404 is success"), DeleteOutcome::AlreadyGone);

    client.delete_server_group_failure_jobs("pg-1").await.expect("group batch");
    assert!(store.failure_jobs(PROJECT).iter().all(|j| j.resource_type != "protected_instances"));
    assert_eq!(store.failure_jobs(PROJECT).len(), 3, "group-level jobs and pg-2's job stay");
    let err = client.delete_server_group_failure_jobs("gone").await.expect_err("no such protection group");
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");

    client.delete_all_server_group_failure_jobs().await.expect("batch");
    let left = store.failure_jobs(PROJECT);
    assert_eq!(ids(&left), ["odd-name"], "only group-level failures go in the batch delete");

    let calls = store.calls();
    assert_eq!(calls.by_route.get(SDRS_LIST), Some(&5));
    assert_eq!(calls.by_route.get(SDRS_GROUPS), Some(&1));
    assert_eq!(calls.by_route.get(SDRS_ONE), Some(&2));
    assert_eq!(calls.by_route.get(SDRS_GROUP_BATCH), Some(&2));
    assert_eq!(calls.by_route.get(SDRS_BATCH), Some(&1));
    assert_eq!(calls.total, 11, "no call was retried");
}

/// Protection groups are listed page by page until `count`, and an odd status decodes.
#[tokio::test]
async fn sdrs_lists_every_protection_group_across_pages() {
    let emu = emulator(false).await;
    let groups: Vec<ProtectionGroup> = (0..25)
        .map(|i| group(&format!("pg-{i:02}"), if i % 7 == 0 { "error-creating" } else { "available" }))
        .collect();
    emu.store().add_server_groups(PROJECT, groups.clone());
    let client = sdrs(&http_for(&emu, |_| {}), &emu, aksk()).with_page_size(10);
    assert_eq!(client.list_protection_groups().await.expect("every group"), groups);
    assert_eq!(route(&emu, SDRS_GROUPS), 3, "pages of 10, 10 and 5");
    let page = client.list_protection_groups_page(4, 23).await.expect("the last page");
    assert_eq!((page.count, page.server_groups.len()), (25, 2));
}

#[tokio::test]
async fn kps_every_endpoint() {
    let emu = emulator(false).await;
    let store = emu.store();
    store.add_failed_tasks(PROJECT, tasks(4));
    let client = kps(&http_for(&emu, |_| {}), &emu, aksk());

    let all = client.list_failed_tasks().await.expect("list");
    assert_eq!(all, store.failed_tasks(PROJECT));
    let page = client.list_failed_tasks_page(2, 3).await.expect("page");
    assert_eq!((page.total, page.tasks.len()), (4, 1));

    assert_eq!(client.delete_failed_task("task-0002").await.expect("delete one"), DeleteOutcome::Deleted);
    assert_eq!(store.failed_tasks(PROJECT).len(), 3);
    assert_eq!(client.delete_failed_task("task-0002").await.expect("404"), DeleteOutcome::AlreadyGone);

    client.delete_all_failed_tasks().await.expect("delete all");
    assert!(store.failed_tasks(PROJECT).is_empty());
    assert!(client.list_failed_tasks().await.expect("empty list").is_empty());

    assert_eq!(route(&emu, KPS_LIST), 3);
    assert_eq!(route(&emu, KPS_ONE), 2);
    assert_eq!(route(&emu, KPS_ALL), 1);
}

#[tokio::test]
async fn lists_walk_several_pages() {
    let emu = emulator(false).await;
    let store = emu.store();
    store.add_failure_jobs(PROJECT, jobs(25, "protected_instances"));
    store.add_failed_tasks(PROJECT, tasks(20));
    let http = http_for(&emu, |_| {});

    let all =
        sdrs(&http, &emu, aksk()).with_page_size(10).list_failure_jobs(&FailureJobFilter::default()).await;
    assert_eq!(ids(&all.expect("paged list")), ids(&jobs(25, "protected_instances")));
    assert_eq!(route(&emu, SDRS_LIST), 3, "pages of 10, 10 and 5");

    let all = kps(&http, &emu, token()).with_page_size(5).list_failed_tasks().await.expect("paged list");
    assert_eq!(all, tasks(20));
    assert_eq!(route(&emu, KPS_LIST), 4, "the total is reached after four full pages");
}

#[tokio::test]
async fn throttling_is_retried_and_counted() {
    let emu = emulator(false).await;
    emu.store().add_failed_tasks(PROJECT, tasks(3));
    emu.store().set_faults(Faults { retry_after_secs: 1, ..faults(vec![429, 429]) });
    let client = kps(&http_for(&emu, |_| {}), &emu, aksk());
    let start = Instant::now();
    assert_eq!(client.list_failed_tasks().await.expect("succeeds on the third attempt").len(), 3);
    assert_eq!(route(&emu, KPS_LIST), 3);
    assert!(start.elapsed() < Duration::from_secs(2), "Retry-After is capped at max_delay");

    emu.store().reset_calls();
    emu.store().set_faults(Faults { retry_after_secs: 0, ..faults(vec![429; 10]) });
    let err = client.list_failed_tasks().await.expect_err("throttled on every attempt");
    assert_eq!(err.class(), ErrorClass::Throttled);
    assert_eq!(err.attempts(), 4);
    assert_eq!(err.api_error().map(|e| e.http_status), Some(429));
    assert_eq!(route(&emu, KPS_LIST), 4);
}

#[tokio::test]
async fn unavailability_is_retried_and_bounded() {
    let emu = emulator(false).await;
    emu.store().add_failure_jobs(PROJECT, jobs(2, "server_groups"));
    let client = sdrs(&http_for(&emu, |_| {}), &emu, aksk());

    emu.store().set_faults(faults(vec![503, 502, 0]));
    let listed =
        client.list_failure_jobs(&FailureJobFilter::default()).await.expect("fourth attempt succeeds");
    assert_eq!(listed.len(), 2);
    assert_eq!(route(&emu, SDRS_LIST), 4, "503, an HTML 502 and a reset were each retried");

    emu.store().reset_calls();
    emu.store().set_faults(faults(vec![503; 10]));
    let err = client.delete_failure_job("server_groups-0000").await.expect_err("503 on every attempt");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(err.attempts(), 4);
    let api = err.api_error().expect("the last response is kept");
    assert_eq!(api.http_status, 503);
    assert!(api.request_id.is_some(), "X-Request-Id is kept");
    assert_eq!(route(&emu, SDRS_ONE), 4);
    assert_eq!(emu.store().failure_jobs(PROJECT).len(), 2);
}

#[tokio::test]
async fn garbage_bodies_are_retried_and_bounded() {
    let emu = emulator(false).await;
    emu.store().add_failed_tasks(PROJECT, tasks(2));
    emu.store().set_faults(Faults { malformed_rate: 1.0, ..Faults::default() });
    let client = kps(&http_for(&emu, |c| c.retry = fast_retry(3)), &emu, aksk());
    let err = client.list_failed_tasks().await.expect_err("every body is garbage");
    assert_eq!(err.class(), ErrorClass::Decode);
    assert_eq!(err.attempts(), 3);
    assert_eq!(route(&emu, KPS_LIST), 3);
}

#[tokio::test]
async fn a_delete_answered_200_with_an_html_page_is_retried_and_never_taken_for_a_deletion() {
    let emu = emulator(false).await;
    emu.store().add_failed_tasks(PROJECT, tasks(2));
    let id = emu.store().failed_tasks(PROJECT)[0].task_id.clone();
    emu.store().set_faults(Faults { html_rate: 1.0, ..Faults::default() });
    let client = kps(&http_for(&emu, |c| c.retry = fast_retry(3)), &emu, aksk());
    let err = client.delete_failed_task(&id).await.expect_err("every answer is an HTML page");
    assert_eq!(err.class(), ErrorClass::Decode);
    assert_eq!(err.attempts(), 3);
    let err = client.delete_all_failed_tasks().await.expect_err("the delete-all too");
    assert_eq!(err.class(), ErrorClass::Decode);
    assert_eq!(emu.store().failed_tasks(PROJECT).len(), 2, "an HTML page deletes nothing");

    // A DELETE the emulator accepts without deleting is a success to the client: only the list
    // after it can tell, which is the executor's to take.
    emu.store().set_faults(Faults { ignore_delete_rate: 1.0, ..Faults::default() });
    client.delete_failed_task(&id).await.expect("answered 200");
    assert_eq!(emu.store().failed_tasks(PROJECT).len(), 2, "nothing was deleted");
}

#[tokio::test]
async fn authentication_failures_are_not_retried() {
    let emu = emulator(false).await;
    let http = http_for(&emu, |_| {});
    let wrong_sk = Arc::new(Credentials::AkSk {
        access_key_id: AK.into(),
        secret_access_key: Secret::new("not-the-secret"),
        security_token: None,
    });
    let err =
        sdrs(&http, &emu, wrong_sk).list_failure_jobs(&FailureJobFilter::default()).await.expect_err("401");
    assert_eq!(err.class(), ErrorClass::Authentication);
    assert_eq!(err.attempts(), 1);
    let api = err.api_error().expect("api error");
    assert_eq!(api.http_status, 401);
    assert!(!api.code.is_empty() && api.request_id.is_some());
    assert!(!err.to_string().contains("not-the-secret"));
    assert_eq!(emu.store().calls().total, 1);

    let wrong_token = Arc::new(Credentials::Token { auth_token: Secret::new("stale-token") });
    let err = kps(&http, &emu, wrong_token).delete_all_failed_tasks().await.expect_err("401");
    assert_eq!((err.class(), err.attempts()), (ErrorClass::Authentication, 1));
    assert!(!format!("{err} {err:?}").contains("stale-token"));
    assert_eq!(emu.store().calls().total, 2);
}

#[tokio::test]
async fn a_skewed_clock_is_refused_by_the_server() {
    let emu = emulator(false).await;
    let config = HttpConfig {
        endpoints: EndpointPolicy {
            allowlist: Allowlist::parse(["127.0.0.1"]).expect("pattern"),
            allow_http: true,
        },
        retry: fast_retry(4),
        ..HttpConfig::default()
    };
    let an_hour_late = || jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let http = CloudHttp::new(config, roomy_limits(), Arc::new(an_hour_late)).expect("client core");
    let err =
        kps(&http, &emu, aksk()).list_failed_tasks().await.expect_err("X-Sdk-Date comes from the clock");
    assert_eq!((err.class(), err.attempts()), (ErrorClass::Authentication, 1));
}

#[tokio::test]
async fn bad_requests_are_not_retried() {
    let emu = emulator(false).await;
    let http = http_for(&emu, |_| {});
    let err = sdrs(&http, &emu, aksk())
        .list_failure_jobs_page(&FailureJobFilter::default(), 5000, 0)
        .await
        .expect_err("limit above 1000");
    assert_eq!((err.class(), err.attempts()), (ErrorClass::Permanent, 1));
    assert_eq!(err.api_error().map(|e| e.http_status), Some(400));
    let err = kps(&http, &emu, aksk()).list_failed_tasks_page(1001, 0).await.expect_err("limit above 1000");
    assert_eq!((err.class(), err.attempts()), (ErrorClass::Permanent, 1));
    assert_eq!(emu.store().calls().total, 2);
}

#[tokio::test]
async fn token_and_temporary_credentials_are_accepted() {
    let emu = emulator(true).await;
    emu.store().add_failed_tasks(PROJECT, tasks(2));
    emu.store().add_failure_jobs(PROJECT, jobs(2, "replications"));
    let http = http_for(&emu, |_| {});
    assert_eq!(kps(&http, &emu, token()).list_failed_tasks().await.expect("token auth").len(), 2);
    let temporary = Arc::new(Credentials::AkSk {
        access_key_id: AK.into(),
        secret_access_key: Secret::new(SK),
        security_token: Some(Secret::new("sts-session-token")),
    });
    let listed = sdrs(&http, &emu, temporary).list_failure_jobs(&FailureJobFilter::default()).await;
    assert_eq!(listed.expect("X-Security-Token is signed").len(), 2);
}

#[tokio::test]
async fn single_deletes_of_missing_items_are_already_gone() {
    let emu = emulator(false).await;
    let http = http_for(&emu, |_| {});
    let outcome = sdrs(&http, &emu, aksk()).delete_failure_job("897f57b2-6e94-4179-b414-9532726c59f2").await;
    assert_eq!(outcome.expect("404 is success"), DeleteOutcome::AlreadyGone);
    let outcome = kps(&http, &emu, token()).delete_failed_task("id/with spaces").await;
    assert_eq!(outcome.expect("404 is success"), DeleteOutcome::AlreadyGone);
    assert_eq!(route(&emu, SDRS_ONE), 1);
    assert_eq!(route(&emu, KPS_ONE), 1, "the id is one encoded path segment");
}

/// A single delete whose path the gateway does not publish (an empty id leaves the path without its
/// last segment) gets the gateway's 404 `APIGW.0101`: the path or endpoint is wrong, so the delete
/// fails once, without retries, instead of counting as already gone.
#[tokio::test]
async fn single_deletes_through_an_unpublished_path_fail() {
    let emu = emulator(false).await;
    let store = emu.store();
    store.add_failure_jobs(PROJECT, jobs(1, "replications"));
    store.add_failed_tasks(PROJECT, tasks(1));
    let http = http_for(&emu, |_| {});
    let results = [
        ("SDRS, empty job id", sdrs(&http, &emu, aksk()).delete_failure_job("").await),
        ("KPS, empty task id", kps(&http, &emu, token()).delete_failed_task("").await),
    ];
    for (what, result) in results {
        let err = result.expect_err(what);
        assert_eq!((err.class(), err.attempts()), (ErrorClass::Permanent, 1), "{what}: {err}");
        let api = err.api_error().unwrap_or_else(|| panic!("{what}: the gateway's answer is kept"));
        assert_eq!((api.http_status, api.code.as_str()), (404, "APIGW.0101"), "{what}");
    }
    assert_eq!(store.calls().total, 0, "no request reached a published API");
    assert_eq!(store.failure_jobs(PROJECT).len(), 1);
    assert_eq!(store.failed_tasks(PROJECT).len(), 1);
}

#[tokio::test]
async fn oversized_responses_are_refused() {
    let emu = emulator(false).await;
    emu.store().add_failure_jobs(PROJECT, jobs(200, "protected_instances"));
    let http = http_for(&emu, |c| c.max_body_bytes = 4096);
    let err =
        sdrs(&http, &emu, aksk()).list_failure_jobs(&FailureJobFilter::default()).await.expect_err("too big");
    assert!(matches!(err, CloudError::BodyTooLarge { limit: 4096, .. }), "{err:?}");
    assert_eq!((err.class(), err.attempts()), (ErrorClass::Permanent, 1));
    assert_eq!(route(&emu, SDRS_LIST), 1);
}

#[tokio::test]
async fn slow_responses_time_out_as_transient_and_bounded() {
    let emu = emulator(false).await;
    emu.store().set_faults(Faults { latency_ms: 1500, ..Faults::default() });
    let http = http_for(&emu, |c| {
        c.request_timeout = Duration::from_millis(200);
        c.retry = fast_retry(3);
    });
    let start = Instant::now();
    let err = kps(&http, &emu, aksk()).list_failed_tasks().await.expect_err("times out");
    let elapsed = start.elapsed();
    assert!(matches!(&err, CloudError::Send { source, .. } if source.is_timeout()), "{err:?}");
    assert_eq!((err.class(), err.attempts()), (ErrorClass::Transient, 3));
    assert!(elapsed >= Duration::from_millis(600), "three attempts of 200ms: {elapsed:?}");
    assert!(elapsed < Duration::from_millis(1400), "bounded by attempts and timeout: {elapsed:?}");
    assert_eq!(route(&emu, KPS_LIST), 3);
}

#[tokio::test]
async fn endpoints_off_the_allowlist_get_no_call() {
    let emu = emulator(false).await;
    let http = http_for(&emu, |c| c.endpoints.allowlist = Allowlist::default());
    let err =
        SdrsClient::new(http.clone(), aksk(), PROJECT, "cn-north-4", Some(&emu.url())).expect_err("refused");
    assert!(err.is_endpoint_refused() && err.class() == ErrorClass::Permanent, "{err:?}");
    assert!(err.to_string().contains("SDRS"), "{err}");
    let err = KpsClient::new(http, token(), PROJECT, "cn-north-4", Some(&emu.url())).expect_err("refused");
    assert!(err.is_endpoint_refused());

    let https_only = http_for(&emu, |c| c.endpoints.allow_http = false);
    let err =
        KpsClient::new(https_only, token(), PROJECT, "x", Some(&emu.url())).expect_err("plain http refused");
    assert!(err.is_endpoint_refused());
    assert_eq!(emu.store().calls().total, 0);
}

/// A server for misbehaviour the emulator does not offer: it lies about the total.
mod liar {
    use axum::Json;
    use axum::extract::Query;
    use serde::Deserialize;
    use serde_json::{Value, json};

    #[derive(Deserialize)]
    pub struct Page {
        limit: usize,
        offset: usize,
    }

    /// Claims a billion jobs but has 12, then returns empty pages.
    pub async fn short(Query(p): Query<Page>) -> Json<Value> {
        let jobs: Vec<Value> =
            (p.offset..12.min(p.offset + p.limit)).map(|i| json!({"job_id": format!("j{i}")})).collect();
        Json(json!({"count": 1_000_000_000u64, "failure_jobs": jobs}))
    }

    /// Ignores the offset: the same page forever.
    pub async fn stuck(Query(p): Query<Page>) -> Json<Value> {
        let tasks: Vec<Value> = (0..p.limit).map(|i| json!({"task_id": format!("t{i}")})).collect();
        Json(json!({"total": 1_000_000_000u64, "tasks": tasks}))
    }

    /// Always returns brand-new items.
    pub async fn endless(Query(p): Query<Page>) -> Json<Value> {
        let tasks: Vec<Value> =
            (p.offset..p.offset + p.limit).map(|i| json!({"task_id": format!("t{i}")})).collect();
        Json(json!({"total": u64::MAX, "tasks": tasks}))
    }
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind(loopback()).await.expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn paging_survives_a_server_that_lies_about_the_total() {
    use axum::routing::get;
    let short = serve(axum::Router::new().route("/v1/{p}/task-center/failure-jobs", get(liar::short))).await;
    let stuck = serve(axum::Router::new().route("/v3/{p}/failed-tasks", get(liar::stuck))).await;
    let endless = serve(axum::Router::new().route("/v3/{p}/failed-tasks", get(liar::endless))).await;
    let config = HttpConfig {
        endpoints: EndpointPolicy {
            allowlist: Allowlist::parse(["127.0.0.1"]).expect("pattern"),
            allow_http: true,
        },
        retry: fast_retry(2),
        ..HttpConfig::default()
    };
    let http = CloudHttp::new(config, roomy_limits(), Arc::new(SystemClock)).expect("client core");

    let client = SdrsClient::new(http.clone(), token(), PROJECT, "x", Some(&short)).expect("allowed");
    let jobs = client.with_page_size(5).list_failure_jobs(&FailureJobFilter::default()).await.expect("list");
    assert_eq!(jobs.len(), 12, "stops at the first empty page");

    let client = KpsClient::new(http.clone(), token(), PROJECT, "x", Some(&stuck)).expect("allowed");
    let tasks = client.with_page_size(7).list_failed_tasks().await.expect("list");
    assert_eq!(tasks.len(), 7, "stops when a page brings nothing new");

    let client = KpsClient::new(http, token(), PROJECT, "x", Some(&endless)).expect("allowed");
    let err = client.list_failed_tasks().await.expect_err("runaway");
    assert!(
        matches!(err, CloudError::Paging { collected, .. } if collected > taskreaper::cloud::MAX_LIST_ITEMS)
    );
}

#[tokio::test]
async fn tls_verification_is_always_on() {
    let emu = emulator(true).await;
    let http = http_for(&emu, |c| {
        c.ca_bundle_pem = None;
        c.retry = fast_retry(1);
    });
    let err =
        kps(&http, &emu, token()).list_failed_tasks().await.expect_err("the emulator's CA is not trusted");
    assert!(matches!(err, CloudError::Send { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(
            "TLS handshake failed: the server's certificate is not signed by a trusted certificate authority"
        ),
        "{message}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent, "an untrusted certificate is not retried");
    assert_eq!(emu.store().calls().total, 0, "nothing reached the handler over an untrusted connection");
}

/// A TLS server on loopback that presents `certificate` (signed by `issuer`, or self-signed) and
/// closes every connection after the handshake; returns its URL and the PEM the client trusts.
async fn tls_server(params: rcgen::CertificateParams, trust_issuer_only: bool) -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("certificate");
    let trusted = if trust_issuer_only { ca.pem() } else { cert.pem() };
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(loopback()).await.expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = acceptor.accept(stream).await;
        }
    });
    (url, trusted)
}

/// Lists KPS tasks from `url`, trusting `ca_pem`, and returns the error's message.
async fn tls_failure(url: &str, ca_pem: String) -> String {
    let config = HttpConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        ca_bundle_pem: Some(ca_pem.into_bytes()),
        endpoints: EndpointPolicy {
            allowlist: Allowlist::parse(["127.0.0.1"]).expect("pattern"),
            allow_http: false,
        },
        retry: fast_retry(3),
        ..HttpConfig::default()
    };
    let http = CloudHttp::new(config, roomy_limits(), Arc::new(SystemClock)).expect("client core");
    let client = KpsClient::new(http, token(), PROJECT, "cn-north-4", Some(url)).expect("allowed");
    let err = client.list_failed_tasks().await.expect_err("the handshake must fail");
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert_eq!(err.attempts(), 1, "a refused certificate is not retried: {err}");
    err.to_string()
}

#[tokio::test]
async fn tls_failures_name_their_cause() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa};
    // A CA certificate served as the server's own certificate, and trusted as such.
    let mut ca_as_server = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    ca_as_server.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let (url, trusted) = tls_server(ca_as_server, false).await;
    let message = tls_failure(&url, trusted).await;
    assert!(message.contains("presented a CA certificate as its own certificate"), "{message}");

    // A certificate for another host name.
    let (url, trusted) =
        tls_server(CertificateParams::new(vec!["sdrs.example.com".to_string()]).expect("params"), true).await;
    let message = tls_failure(&url, trusted).await;
    assert!(message.contains("not valid for this host name"), "{message}");

    // An expired certificate.
    let mut expired = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    expired.not_before = rcgen::date_time_ymd(2020, 1, 1);
    expired.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let (url, trusted) = tls_server(expired, true).await;
    let message = tls_failure(&url, trusted).await;
    assert!(message.contains("certificate has expired"), "{message}");
}

/// Waits, at most five seconds, until `key` is paused, and returns when the pause ends.
async fn pause_on(limiters: &RateLimiters, key: &LimiterKey) -> tokio::time::Instant {
    let wait = async {
        loop {
            if let Some(until) = limiters.paused_until(key) {
                return until;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait).await.expect("the 429 paused the key")
}

#[tokio::test]
async fn retry_after_pauses_every_client_of_the_same_key() {
    let emu = emulator(false).await;
    emu.store().add_failed_tasks(PROJECT, tasks(1));
    emu.store().add_failure_jobs(PROJECT, jobs(1, "replications"));
    let limiters = roomy_limits();
    let config = HttpConfig {
        endpoints: EndpointPolicy {
            allowlist: Allowlist::parse(["127.0.0.1"]).expect("pattern"),
            allow_http: true,
        },
        retry: RetryPolicy { max_delay: Duration::from_secs(2), ..fast_retry(3) },
        ..HttpConfig::default()
    };
    let http = CloudHttp::new(config, limiters.clone(), Arc::new(SystemClock)).expect("client core");
    // SDRS and KPS share the emulator's host, so one access key is one limiter key for both.
    let key = LimiterKey { host: emu.addr().to_string(), identity: aksk().identity() };
    let token_key = LimiterKey { host: emu.addr().to_string(), identity: token().identity() };
    assert_ne!(key, token_key);

    // A 429 with Retry-After: 1 on the KPS client pauses the SDRS client of the same key too.
    emu.store().set_faults(Faults { retry_after_secs: 1, ..faults(vec![429]) });
    let start = Instant::now();
    let throttled = kps(&http, &emu, aksk());
    let first = tokio::spawn(async move { throttled.list_failed_tasks().await.map(|t| t.len()) });
    let until = pause_on(&limiters, &key).await;
    let other = sdrs(&http, &emu, aksk()).list_failure_jobs(&FailureJobFilter::default()).await;
    assert_eq!(other.expect("the other client succeeds after the pause").len(), 1);
    assert!(tokio::time::Instant::now() >= until, "the other client of the key waited out the pause");
    assert!(start.elapsed() >= Duration::from_millis(900), "waited out Retry-After: {:?}", start.elapsed());
    assert_eq!(first.await.expect("task").expect("retried after the pause"), 1);
    assert_eq!(emu.store().calls().total, 3, "one 429, then one call each");

    // While that key is paused again, a call with other credentials on the same host is timed: it
    // goes at once and is done before the pause ends; a call with the same credentials is held.
    emu.store().reset_calls();
    emu.store().set_faults(Faults { retry_after_secs: 1, ..faults(vec![429]) });
    let throttled = kps(&http, &emu, aksk());
    let first = tokio::spawn(async move { throttled.list_failed_tasks().await.map(|t| t.len()) });
    let until = pause_on(&limiters, &key).await;
    assert_eq!(emu.store().calls().total, 1, "the emulator has answered the 429 and nothing else");
    assert!(until > tokio::time::Instant::now() + Duration::from_millis(500), "most of the pause is left");

    let unrelated = Instant::now();
    let listed =
        kps(&http, &emu, token()).list_failed_tasks().await.expect("other credentials are not paused");
    assert_eq!(listed.len(), 1);
    let unrelated = unrelated.elapsed();
    assert!(tokio::time::Instant::now() < until, "done before the pause on the other key ended");
    assert!(unrelated < Duration::from_millis(300), "other credentials went at once: {unrelated:?}");
    assert_eq!(limiters.paused_until(&token_key), None, "a 429 for one key pauses no other key");

    let left = until.saturating_duration_since(tokio::time::Instant::now());
    assert!(!left.is_zero(), "the pause is still in force");
    let same = Instant::now();
    let listed = sdrs(&http, &emu, aksk()).list_failure_jobs(&FailureJobFilter::default()).await;
    assert_eq!(listed.expect("the same credentials succeed after the pause").len(), 1);
    assert!(tokio::time::Instant::now() >= until, "the same credentials waited for the pause to end");
    assert!(same.elapsed() >= left, "held for the {left:?} left of the pause: {:?}", same.elapsed());
    assert_eq!(first.await.expect("task").expect("retried after the pause"), 1);
    assert_eq!(emu.store().calls().total, 4, "the 429, the unrelated call, the retry and the held call");
}

#[tokio::test]
async fn a_body_of_the_wrong_shape_names_the_field_and_is_not_retried() {
    use axum::routing::get;
    use std::sync::atomic::{AtomicU32, Ordering};
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    let wrong = move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            axum::Json(
                serde_json::json!({"total": 2, "tasks": [{"task_id": "a"}, {"task_id": {"nested": 1}}]}),
            )
        }
    };
    let url = serve(axum::Router::new().route("/v3/{p}/failed-tasks", get(wrong))).await;
    let config = HttpConfig {
        endpoints: EndpointPolicy {
            allowlist: Allowlist::parse(["127.0.0.1"]).expect("pattern"),
            allow_http: true,
        },
        retry: fast_retry(4),
        ..HttpConfig::default()
    };
    let http = CloudHttp::new(config, roomy_limits(), Arc::new(SystemClock)).expect("client core");
    let client = KpsClient::new(http, token(), PROJECT, "x", Some(&url)).expect("allowed");
    let err = client.list_failed_tasks().await.expect_err("the body does not decode");
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert_eq!((err.attempts(), hits.load(Ordering::SeqCst)), (1, 1), "not retried");
    let message = err.to_string();
    assert!(message.contains("tasks[1].task_id"), "names the field: {message}");
    assert!(message.contains(PROJECT), "names the project: {message}");
}

/// One credential throttled with `Retry-After` while another works, through a client core that
/// lets a single request on the wire: the second credential's calls go through during the first
/// one's pauses, because a waiting request holds no in-flight slot.
#[tokio::test]
async fn a_throttled_credential_does_not_hold_up_another() {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::get;
    async fn tasks(headers: HeaderMap) -> axum::response::Response {
        if headers.get("x-auth-token").is_some_and(|t| t == "throttled-token") {
            let body = serde_json::json!({"error_code": "APIGW.0308", "error_msg": "throttled"});
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], axum::Json(body)).into_response();
        }
        axum::Json(serde_json::json!({"total": 1, "tasks": [{"task_id": "t1"}]})).into_response()
    }
    let url = serve(axum::Router::new().route("/v3/{p}/failed-tasks", get(tasks))).await;
    let config = HttpConfig {
        endpoints: EndpointPolicy {
            allowlist: Allowlist::parse(["127.0.0.1"]).expect("pattern"),
            allow_http: true,
        },
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_secs(2),
            max_total: Duration::from_secs(10),
        },
        max_in_flight: 1,
        ..HttpConfig::default()
    };
    let http = CloudHttp::new(config, roomy_limits(), Arc::new(SystemClock)).expect("client core");
    let client = |token: &str| {
        let creds = Arc::new(Credentials::Token { auth_token: Secret::new(token) });
        KpsClient::new(http.clone(), creds, PROJECT, "x", Some(&url)).expect("allowed")
    };
    let (throttled, fine) = (client("throttled-token"), client("fine-token"));
    let start = Instant::now();
    let slow = tokio::spawn(async move { throttled.list_failed_tasks().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..5 {
        fine.list_failed_tasks().await.expect("the other credential's call succeeds");
    }
    let others_done = start.elapsed();
    let err = slow.await.expect("joins").expect_err("throttled on every attempt");
    let throttled_done = start.elapsed();
    assert_eq!((err.class(), err.attempts()), (ErrorClass::Throttled, 3), "{err}");
    println!(
        "another credential made 5 calls in {others_done:?} while the throttled one waited {throttled_done:?} in all"
    );
    assert!(
        others_done < Duration::from_millis(800),
        "blocked behind the throttled credential: {others_done:?}"
    );
    assert!(throttled_done >= Duration::from_secs(2), "the throttled credential honoured Retry-After twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_rate_converges_under_a_server_limit_without_a_429_storm() {
    const SERVER_RATE: u32 = 50;
    const SPAN: Duration = Duration::from_secs(5);
    let emu = emulator(false).await;
    emu.store().set_rate_limit(taskreaper::emulator::RateLimitSetting { per_key: SERVER_RATE, burst: 0 });
    emu.store().add_failed_tasks(PROJECT, tasks(2_000));
    let limiters = RateLimiters::new(taskreaper::cloud::AdaptiveRate::default());
    let config = HttpConfig {
        endpoints: EndpointPolicy {
            allowlist: Allowlist::parse(["127.0.0.1"]).expect("pattern"),
            allow_http: true,
        },
        retry: RetryPolicy { max_attempts: 10, ..RetryPolicy::default() },
        max_in_flight: 16,
        ..HttpConfig::default()
    };
    let http = CloudHttp::new(config, limiters.clone(), Arc::new(SystemClock)).expect("client core");
    let client = Arc::new(kps(&http, &emu, aksk()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (client, next) = (client.clone(), next.clone());
            tokio::spawn(async move {
                let mut deleted = 0u32;
                while start.elapsed() < SPAN {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let outcome = client.delete_failed_task(&format!("task-{i:04}")).await;
                    assert_eq!(outcome.expect("every delete succeeds"), DeleteOutcome::Deleted);
                    deleted += 1;
                }
                deleted
            })
        })
        .collect();
    let mut deleted = 0u32;
    for worker in workers {
        deleted += worker.await.expect("worker");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let calls = emu.store().calls();
    let per_second = f64::from(deleted) / elapsed;
    let share_429 = calls.throttled as f64 / calls.total as f64;
    let key = LimiterKey { host: emu.addr().to_string(), identity: aksk().identity() };
    println!(
        "adaptive vs a server limit of {SERVER_RATE}/s: {deleted} deleted in {elapsed:.2} s = {per_second:.1}/s \
         ({:.0}% of the limit); {} of {} calls answered 429 ({:.2}%); final rate {:.1}/s",
        100.0 * per_second / f64::from(SERVER_RATE),
        calls.throttled,
        calls.total,
        100.0 * share_429,
        limiters.rate(&key)
    );
    assert!(per_second >= 0.8 * f64::from(SERVER_RATE), "{per_second:.1}/s is below 80% of the limit");
    assert!(share_429 <= 0.05, "{:.2}% of calls were answered 429", 100.0 * share_429);
}
