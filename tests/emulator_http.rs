//! The emulator over real HTTP: a reqwest client signs requests with the crate's SDK-HMAC-SHA256
//! signer and checks paging, SDRS scoping (strict and loose listing, group-level and per-group batch
//! deletes), the protection-group list, KPS time modes and nulls on the wire, each delete call,
//! authentication failures, the project check, token auth, injected faults, the per-access-key rate
//! limit, the admin API, the checked-in seed file and HTTPS with the emulator's own CA.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskreaper::cloud::credentials::Secret;
use taskreaper::cloud::model::{
    FailedTask, FailedTaskPage, FailureJob, FailureJobPage, ProtectionGroup, ProtectionGroupPage,
};
use taskreaper::cloud::signing;
use taskreaper::emulator::{
    Clock, Config, Emulator, Faults, KPS_ONE, KPS_TASKS, KpsTaskTime, Modes, RateLimitSetting, SDRS_BATCH,
    SDRS_GROUP_BATCH, SDRS_GROUPS, SDRS_LIST, SDRS_ONE, SdrsListing, Seed, SeededJob,
};

const PROJECT: &str = "0605767b5c00d4bb2f10c01a1e3b3a7e";
const OTHER_PROJECT: &str = "1b2c3d4e5f60718293a4b5c6d7e8f901";
const AK: &str = "HPUAXXXXXXXXEXAMPLEAK";
const SK: &str = "exampleSecretKeyDoNotUse0123456789abcdEF";
const TOKEN: &str = "MIIexample-iam-token";

fn signed_at() -> Timestamp {
    "2026-11-22T05:30:00Z".parse().expect("timestamp")
}

fn config(tls: bool) -> Config {
    Config {
        access_keys: BTreeMap::from([(AK.to_string(), Secret::new(SK))]),
        auth_tokens: vec![Secret::new(TOKEN)],
        tls,
        clock: Clock::Fixed(signed_at()),
        ..Config::default()
    }
}

async fn start(seed: Seed) -> Emulator {
    start_with(config(false), seed).await
}

async fn start_with(config: Config, seed: Seed) -> Emulator {
    Emulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), config, seed).await.expect("emulator starts")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client")
}

/// Signs requests the way the official SDK does, with the crate's signer.
struct Caller {
    client: reqwest::Client,
    base: String,
    host: String,
    ak: String,
    sk: String,
    now: Timestamp,
}

impl Caller {
    fn new(emu: &Emulator) -> Self {
        Self::with_client(emu, client())
    }

    fn with_client(emu: &Emulator, client: reqwest::Client) -> Self {
        Self {
            client,
            base: emu.url(),
            host: format!("127.0.0.1:{}", emu.addr().port()),
            ak: AK.into(),
            sk: SK.into(),
            now: signed_at(),
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let query: Vec<(String, String)> =
            query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let date = signing::format_sdk_date(self.now);
        let mut headers: Vec<(String, String)> = vec![
            ("Host".into(), self.host.clone()),
            (signing::DATE_HEADER.into(), date.clone()),
            ("Content-Type".into(), "application/json".into()),
        ];
        headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let req =
            signing::Request { method: method.as_str(), path, query: &query, headers: &headers, body: b"" };
        let auth = signing::authorize(&req, &self.ak, self.sk.as_bytes(), &date);
        let qs = signing::canonical_query(&query);
        let url =
            if qs.is_empty() { format!("{}{path}", self.base) } else { format!("{}{path}?{qs}", self.base) };
        let mut builder = self.client.request(method, url);
        for (k, v) in headers.iter().filter(|(k, _)| k != "Host") {
            builder = builder.header(k, v);
        }
        builder.header("Authorization", auth.header_value())
    }

    async fn send(&self, method: Method, path: &str, query: &[(&str, &str)]) -> reqwest::Response {
        self.request(method, path, query, &[("X-Project-Id", PROJECT)])
            .send()
            .await
            .expect("request is answered")
    }
}

fn sdrs_list(project: &str) -> String {
    format!("/v1/{project}/task-center/failure-jobs")
}

fn kps_tasks(project: &str) -> String {
    format!("/v3/{project}/failed-tasks")
}

fn job(id: &str, resource_type: &str, resource_id: &str, group: Option<&str>) -> SeededJob {
    SeededJob::new(
        FailureJob {
            job_id: id.into(),
            job_type: "createProtectedInstance".into(),
            job_status: "FAIL".into(),
            begin_time: "2026-11-01T12:00:00.000Z".into(),
            failure_status: "createFail".into(),
            resource_id: resource_id.into(),
            resource_name: format!("tmp-{id}"),
            resource_type: resource_type.into(),
            error_code: "SDRS.1201".into(),
            fail_reason: "quota".into(),
        },
        group.map(str::to_string),
    )
}

fn group(id: &str, name: &str, status: &str) -> ProtectionGroup {
    ProtectionGroup { id: id.into(), name: name.into(), status: status.into() }
}

/// Groups g1 and g2; group-level j1 (names g1) and j3 (names g2); in-group j2 (g1), j4 (g2), j5 (g1).
fn seed_jobs(emu: &Emulator) {
    emu.store().add_server_groups(
        PROJECT,
        [group("g1", "prod-pg-01", "protected"), group("g2", "tmp-pg-02", "available")],
    );
    emu.store().add_failure_jobs(
        PROJECT,
        [
            job("j1", "server_groups", "g1", None),
            job("j2", "protected_instances", "vm-1", Some("g1")),
            job("j3", "server_groups", "g2", None),
            job("j4", "replications", "rep-1", Some("g2")),
            job("j5", "disaster_recovery_drills", "drill-1", Some("g1")),
        ],
    );
}

fn task(id: &str) -> FailedTask {
    FailedTask {
        task_id: id.into(),
        operate_type: "FAILED_UNBIND".into(),
        task_time: "1793534400000".into(),
        task_error_code: "KPS.2011".into(),
        task_error_msg: "not stopped".into(),
        server_name: "ecs-1".into(),
        server_id: "srv-1".into(),
        keypair_name: format!("kp-{id}"),
    }
}

fn ids(jobs: &[FailureJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.job_id.as_str()).collect()
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers().get("x-request-id").expect("X-Request-Id").to_str().expect("ascii").to_string()
}

#[tokio::test]
async fn signed_list_pages_filters_and_counts() {
    let emu = start(Seed::Empty).await;
    seed_jobs(&emu);
    let caller = Caller::new(&emu);
    let path = sdrs_list(PROJECT);

    let response = caller.send(Method::GET, &path, &[("limit", "2"), ("offset", "1")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let first_id = request_id(&response);
    let page: FailureJobPage = response.json().await.expect("page");
    assert_eq!(page.count, 2, "only group-level failures without server_group_id");
    assert_eq!(ids(&page.failure_jobs), ["j3"]);
    assert_eq!(page.failure_jobs[0].resource_name, "tmp-j3");

    let response = caller.send(Method::GET, &path, &[("resource_type", "server_groups")]).await;
    assert_ne!(request_id(&response), first_id, "request ids are unique");
    let page: FailureJobPage = response.json().await.expect("page");
    assert_eq!((page.count, ids(&page.failure_jobs)), (2, vec!["j1", "j3"]));

    let page: FailureJobPage = caller
        .send(Method::GET, &path, &[("server_group_id", "g1"), ("limit", "0")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page.count, 2, "count is every match even when limit is 0");
    assert!(page.failure_jobs.is_empty());

    let response = caller.send(Method::GET, &path, &[("limit", "1001")]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "SDRS.1002");
    assert!(body["error"]["message"].as_str().unwrap().contains("limit"), "{body}");

    let response = caller.send(Method::GET, &path, &[("failure_status", "oops")]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let empty: FailureJobPage = caller
        .request(Method::GET, &sdrs_list(OTHER_PROJECT), &[], &[])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(empty, FailureJobPage::default(), "an unknown project is empty");

    let calls = emu.store().calls();
    assert_eq!(calls.route("GET", SDRS_LIST), 6);
    assert_eq!(calls.by_project[PROJECT], 5);
    assert_eq!(calls.deletes, 0);
}

#[tokio::test]
async fn generated_seed_is_served_with_totals() {
    let emu = start(Seed::Generated {
        projects: vec![PROJECT.into(), OTHER_PROJECT.into()],
        tasks_per_kind: 4,
        seed: 9,
    })
    .await;
    let caller = Caller::new(&emu);
    // 4 per kind: 4 + 1 dangling group-level jobs, 3 * 4 + 1 in-group, 3 * 4 + 1 KPS tasks.
    let page: FailureJobPage =
        caller.send(Method::GET, &sdrs_list(PROJECT), &[("limit", "3")]).await.json().await.unwrap();
    assert_eq!(page.count, 5, "the strict list shows group-level failures");
    assert_eq!(page.failure_jobs.len(), 3);
    let groups: ProtectionGroupPage =
        caller.send(Method::GET, &format!("/v1/{PROJECT}/server-groups"), &[]).await.json().await.unwrap();
    assert_eq!(groups.count, 3);
    let mut in_groups = 0;
    for g in &groups.server_groups {
        let page: FailureJobPage = caller
            .send(Method::GET, &sdrs_list(PROJECT), &[("server_group_id", g.id.as_str())])
            .await
            .json()
            .await
            .unwrap();
        in_groups += page.count;
    }
    assert_eq!(in_groups, 13, "every in-group failure is inside a listed group");
    let page: FailedTaskPage =
        caller.send(Method::GET, &kps_tasks(PROJECT), &[("offset", "10")]).await.json().await.unwrap();
    assert_eq!(page.total, 13);
    assert_eq!(page.tasks.len(), 3);
    assert_eq!(emu.store().failed_tasks(OTHER_PROJECT).len(), 13);
}

#[tokio::test]
async fn batch_delete_removes_only_server_group_jobs() {
    let emu = start(Seed::Empty).await;
    seed_jobs(&emu);
    let caller = Caller::new(&emu);
    let response =
        caller.send(Method::DELETE, &format!("/v1/{PROJECT}/task-center/failure-jobs/batch"), &[]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.bytes().await.unwrap().len(), 0);
    assert_eq!(ids(&emu.store().failure_jobs(PROJECT)), ["j2", "j4", "j5"]);
    assert_eq!(emu.store().calls().route("DELETE", SDRS_BATCH), 1);
    assert_eq!(emu.store().calls().route("DELETE", SDRS_ONE), 0, "batch wins over {{failure_job_id}}");
}

#[tokio::test]
async fn group_delete_removes_that_protection_group() {
    let emu = start(Seed::Empty).await;
    seed_jobs(&emu);
    let caller = Caller::new(&emu);
    let response =
        caller.send(Method::DELETE, &format!("/v1/{PROJECT}/task-center/g1/failure-jobs/batch"), &[]).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.bytes().await.unwrap().len(), 0);
    assert_eq!(
        ids(&emu.store().failure_jobs(PROJECT)),
        ["j1", "j3", "j4"],
        "the in-group failures of g1 go; the group-level j1 naming g1 stays"
    );

    let again =
        caller.send(Method::DELETE, &format!("/v1/{PROJECT}/task-center/g1/failure-jobs/batch"), &[]).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT, "an existing group without failures is fine");

    let unknown =
        caller.send(Method::DELETE, &format!("/v1/{PROJECT}/task-center/gone/failure-jobs/batch"), &[]).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(!request_id(&unknown).is_empty());
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"]["code"], "SDRS.1300", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("gone"), "{body}");
    assert_eq!(ids(&emu.store().failure_jobs(PROJECT)), ["j1", "j3", "j4"], "nothing else went");
    assert_eq!(emu.store().calls().route("DELETE", SDRS_GROUP_BATCH), 3);
}

#[tokio::test]
async fn single_deletes_answer_then_404() {
    let emu = start(Seed::Empty).await;
    seed_jobs(&emu);
    emu.store().add_failed_tasks(PROJECT, vec![task("t1"), task("t2")]);
    let caller = Caller::new(&emu);

    let path = format!("/v1/{PROJECT}/task-center/failure-jobs/j4");
    assert_eq!(caller.send(Method::DELETE, &path, &[]).await.status(), StatusCode::NO_CONTENT);
    let again = caller.send(Method::DELETE, &path, &[]).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "SDRS.1301");
    assert!(body["error"]["message"].as_str().unwrap().contains("j4"));
    assert_eq!(ids(&emu.store().failure_jobs(PROJECT)), ["j1", "j2", "j3", "j5"]);

    let path = format!("/v3/{PROJECT}/failed-tasks/t1");
    assert_eq!(caller.send(Method::DELETE, &path, &[]).await.status(), StatusCode::OK);
    let again = caller.send(Method::DELETE, &path, &[]).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error_code"], "KPS.0010");
    assert_eq!(emu.store().failed_tasks(PROJECT), vec![task("t2")]);

    let calls = emu.store().calls();
    assert_eq!((calls.route("DELETE", SDRS_ONE), calls.route("DELETE", KPS_ONE)), (2, 2));
    assert_eq!(calls.deletes, 4);
}

#[tokio::test]
async fn kps_list_and_delete_all() {
    let emu = start(Seed::Empty).await;
    emu.store().add_failed_tasks(PROJECT, vec![task("t1"), task("t2"), task("t3")]);
    emu.store().add_failed_tasks(OTHER_PROJECT, vec![task("x1")]);
    let caller = Caller::new(&emu);
    let page: FailedTaskPage =
        caller.send(Method::GET, &kps_tasks(PROJECT), &[("limit", "2")]).await.json().await.unwrap();
    assert_eq!(page.total, 3);
    assert_eq!(page.tasks, vec![task("t1"), task("t2")]);

    let response = caller.send(Method::DELETE, &kps_tasks(PROJECT), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page: FailedTaskPage = caller.send(Method::GET, &kps_tasks(PROJECT), &[]).await.json().await.unwrap();
    assert_eq!(page, FailedTaskPage::default());
    assert_eq!(emu.store().failed_tasks(OTHER_PROJECT).len(), 1, "other projects keep their tasks");

    let response = caller.send(Method::GET, &kps_tasks(PROJECT), &[("offset", "-1")]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_code"], "KPS.0002");
    assert_eq!(emu.store().calls().route("DELETE", KPS_TASKS), 1);
}

#[tokio::test]
async fn official_sdk_signatures_are_accepted_as_sent() {
    #[derive(serde::Deserialize)]
    struct Vector {
        method: String,
        host: String,
        headers_in: BTreeMap<String, String>,
        x_sdk_date: String,
        authorization: String,
        uri: String,
    }
    let vectors: Vec<Vector> =
        serde_json::from_str(include_str!("data/signing-vectors.json")).expect("vectors parse");
    let emu = start(Seed::Empty).await;
    seed_jobs(&emu);
    let client = client();
    // The first vector: the SDRS batch delete, as the SDK signed it for the real host.
    let v = &vectors[0];
    let mut request = client
        .request(v.method.parse().unwrap(), format!("{}{}", emu.url(), v.uri))
        .header("Host", &v.host)
        .header(signing::DATE_HEADER, &v.x_sdk_date)
        .header("Authorization", &v.authorization);
    for (k, val) in &v.headers_in {
        request = request.header(k, val);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(ids(&emu.store().failure_jobs(PROJECT)), ["j2", "j4", "j5"]);

    // The third: a filtered list with its query in canonical order.
    let v = &vectors[2];
    let mut request = client
        .request(v.method.parse().unwrap(), format!("{}{}", emu.url(), v.uri))
        .header("Host", &v.host)
        .header(signing::DATE_HEADER, &v.x_sdk_date)
        .header("Authorization", &v.authorization);
    for (k, val) in &v.headers_in {
        request = request.header(k, val);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", v.uri);
}

#[tokio::test]
async fn tampered_signature_and_unknown_key_get_401() {
    let emu = start(Seed::Empty).await;
    let caller = Caller::new(&emu);
    let path = sdrs_list(PROJECT);
    let request = caller.request(Method::GET, &path, &[("limit", "5")], &[]).build().unwrap();
    let url = request.url().as_str().replace("limit=5", "limit=6");
    let mut tampered = client().get(url);
    for (k, v) in request.headers() {
        tampered = tampered.header(k, v);
    }
    let response = tampered.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let id = request_id(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_code"], "APIGW.0301");
    assert_eq!(body["request_id"], id.as_str());
    let msg = body["error_msg"].as_str().unwrap();
    assert!(
        msg.starts_with("Incorrect IAM authentication information") && msg.contains("signature"),
        "{msg}"
    );

    let stranger = Caller { ak: "UNKNOWNAK".into(), ..Caller::new(&emu) };
    let response = stranger.send(Method::GET, &path, &[]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert!(body["error_msg"].as_str().unwrap().contains("UNKNOWNAK does not exist"), "{body}");

    let wrong_secret = Caller { sk: "not-the-secret".into(), ..Caller::new(&emu) };
    assert_eq!(wrong_secret.send(Method::DELETE, &kps_tasks(PROJECT), &[]).await.status(), 401);

    let anonymous = client().get(format!("{}{path}", emu.url())).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body: Value = anonymous.json().await.unwrap();
    assert!(body["error_msg"].as_str().unwrap().contains("neither an Authorization header"), "{body}");
    assert_eq!(emu.store().calls().total, 4, "rejected calls are counted");
}

#[tokio::test]
async fn skewed_dates_get_401_and_the_clock_can_move() {
    let emu = start(Seed::Empty).await;
    let path = kps_tasks(PROJECT);
    let late =
        Caller { now: signed_at().checked_add(SignedDuration::from_mins(16)).unwrap(), ..Caller::new(&emu) };
    let response = late.send(Method::GET, &path, &[]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_code"], "APIGW.0301");
    assert!(body["error_msg"].as_str().unwrap().contains("away from the server time"), "{body}");

    let early =
        Caller { now: signed_at().checked_sub(SignedDuration::from_mins(14)).unwrap(), ..Caller::new(&emu) };
    assert_eq!(early.send(Method::GET, &path, &[]).await.status(), StatusCode::OK);

    emu.store().set_clock(Clock::Fixed(signed_at().checked_add(SignedDuration::from_mins(10)).unwrap()));
    assert_eq!(late.send(Method::GET, &path, &[]).await.status(), StatusCode::OK);
    assert_eq!(early.send(Method::GET, &path, &[]).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn project_mismatch_is_forbidden() {
    let emu = start(Seed::Empty).await;
    seed_jobs(&emu);
    let caller = Caller::new(&emu);
    let response = caller
        .request(
            Method::DELETE,
            &format!("/v1/{PROJECT}/task-center/failure-jobs/batch"),
            &[],
            &[("X-Project-Id", OTHER_PROJECT)],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_code"], "APIGW.0302");
    let msg = body["error_msg"].as_str().unwrap();
    assert!(msg.contains(PROJECT) && msg.contains(OTHER_PROJECT), "{msg}");
    assert_eq!(emu.store().failure_jobs(PROJECT).len(), 5, "nothing was deleted");
}

#[tokio::test]
async fn iam_tokens_authenticate() {
    let emu = start(Seed::Empty).await;
    emu.store().add_failed_tasks(PROJECT, vec![task("t1")]);
    let url = format!("{}{}", emu.url(), kps_tasks(PROJECT));
    let bad = client().delete(&url).header("X-Auth-Token", "forged").send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let body: Value = bad.json().await.unwrap();
    assert!(body["error_msg"].as_str().unwrap().contains("not a valid IAM token"), "{body}");
    assert!(!body.to_string().contains("forged"));
    assert_eq!(emu.store().failed_tasks(PROJECT).len(), 1);

    let good = client()
        .delete(&url)
        .header("X-Auth-Token", TOKEN)
        .header("X-Project-Id", PROJECT)
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), StatusCode::OK);
    assert!(emu.store().failed_tasks(PROJECT).is_empty());
}

#[tokio::test]
async fn fail_next_is_served_in_order_then_normal() {
    let emu = start(Seed::Empty).await;
    emu.store().add_failed_tasks(PROJECT, vec![task("t1")]);
    emu.store().set_faults(Faults {
        fail_next: vec![503, 429, 500, 0, 502, 504],
        retry_after_secs: 2,
        ..Faults::default()
    });
    let caller = Caller::new(&emu);
    let path = kps_tasks(PROJECT);

    let r = caller.send(Method::GET, &path, &[]).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["error_code"], "APIGW.0203");

    let r = caller.send(Method::GET, &path, &[]).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    assert_eq!(r.json::<Value>().await.unwrap()["error_code"], "APIGW.0308");

    let r = caller.send(Method::GET, &path, &[]).await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.json::<Value>().await.unwrap()["error_code"], "KPS.0001");

    let reset = caller.request(Method::GET, &path, &[], &[]).send().await;
    let err = reset.expect_err("the connection is closed without an answer");
    assert!(err.is_request() || err.is_connect(), "{err:?}");

    let r = caller.send(Method::GET, &path, &[]).await;
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("<h1>502 Bad Gateway</h1>"));

    let r = caller.send(Method::DELETE, &path, &[]).await;
    assert_eq!(r.status(), 504);
    assert_eq!(r.bytes().await.unwrap().len(), 0);
    assert_eq!(emu.store().failed_tasks(PROJECT).len(), 1, "a faulted delete deletes nothing");

    let r = caller.send(Method::GET, &path, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<FailedTaskPage>().await.unwrap().total, 1);
    assert!(emu.store().faults().fail_next.is_empty());
    assert_eq!(emu.store().calls().total, 7, "faulted calls are counted");
}

#[tokio::test]
async fn random_throttling_carries_retry_after() {
    let config = Config {
        faults: Faults {
            error_rate: 1.0,
            error_statuses: vec![429],
            retry_after_secs: 7,
            ..Faults::default()
        },
        ..config(false)
    };
    let emu = start_with(config, Seed::Empty).await;
    let caller = Caller::new(&emu);
    for _ in 0..3 {
        let r = caller.send(Method::GET, &sdrs_list(PROJECT), &[]).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["retry-after"], "7");
    }
    let admin = client().get(format!("{}/_emulator/calls", emu.url())).send().await.unwrap();
    assert_eq!(admin.status(), StatusCode::OK, "admin routes are never faulted");
    assert_eq!(admin.json::<Value>().await.unwrap()["total"], 3);
}

#[tokio::test]
async fn malformed_lists_and_latency() {
    let emu = start(Seed::Empty).await;
    seed_jobs(&emu);
    emu.store().set_faults(Faults { malformed_rate: 1.0, latency_ms: 150, ..Faults::default() });
    let caller = Caller::new(&emu);
    for _ in 0..4 {
        let started = Instant::now();
        let r = caller.send(Method::GET, &sdrs_list(PROJECT), &[]).await;
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert_eq!(r.status(), StatusCode::OK);
        let text = r.text().await.unwrap();
        assert!(!text.is_empty());
        assert!(serde_json::from_str::<FailureJobPage>(&text).is_err(), "{text}");
    }
    let r = caller.send(Method::DELETE, &format!("/v1/{PROJECT}/task-center/failure-jobs/j1"), &[]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "deletes are never malformed");
}

#[tokio::test]
async fn admin_api_adds_reads_counts_and_sets_faults() {
    let emu = start(Seed::Empty).await;
    let http = client();
    let base = format!("{}/_emulator", emu.url());

    let added = http
        .post(format!("{base}/projects/{PROJECT}/server-groups"))
        .json(&json!([{"id": "g7", "name": "tmp-pg-07", "status": "available"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);
    assert_eq!(added.json::<Value>().await.unwrap(), json!({"added": 1}));
    let groups: Vec<ProtectionGroup> = http
        .get(format!("{base}/projects/{PROJECT}/server-groups"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(groups, [group("g7", "tmp-pg-07", "available")]);

    let added = http
        .post(format!("{base}/projects/{PROJECT}/failure-jobs"))
        .json(&json!([
            {"job_id": "a1", "resource_type": "replications", "resource_name": "tmp-a", "server_group_id": "g7"},
            {"job_id": "a2", "resource_type": "server_groups", "resource_id": "g7"}
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);
    assert_eq!(added.json::<Value>().await.unwrap(), json!({"added": 2}));
    let added = http
        .post(format!("{base}/projects/{PROJECT}/failed-tasks"))
        .json(&vec![task("t9")])
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);

    let jobs: Vec<Value> = http
        .get(format!("{base}/projects/{PROJECT}/failure-jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["server_group_id"], "g7");
    let tasks: Vec<FailedTask> = http
        .get(format!("{base}/projects/{PROJECT}/failed-tasks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tasks, vec![task("t9")]);
    let projects: Value = http.get(format!("{base}/projects")).send().await.unwrap().json().await.unwrap();
    assert_eq!(projects[PROJECT], json!({"server_groups": 1, "failure_jobs": 2, "failed_tasks": 1}));

    let caller = Caller::new(&emu);
    let r =
        caller.send(Method::DELETE, &format!("/v1/{PROJECT}/task-center/g7/failure-jobs/batch"), &[]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let jobs: Vec<Value> = http
        .get(format!("{base}/projects/{PROJECT}/failure-jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "the group's in-group job is gone, the group-level one stays: {jobs:?}");
    assert_eq!(jobs[0]["job_id"], "a2");

    let calls: Value = http.get(format!("{base}/calls")).send().await.unwrap().json().await.unwrap();
    assert_eq!(calls["total"], 1);
    assert_eq!(calls["deletes"], 1);
    assert_eq!(
        calls["by_route"]["DELETE /v1/{project_id}/task-center/{server_group_id}/failure-jobs/batch"],
        1
    );
    assert_eq!(calls["by_project"][PROJECT], 1);
    assert_eq!(http.delete(format!("{base}/calls")).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(emu.store().calls().total, 0);

    let bad = http.put(format!("{base}/faults")).json(&json!({"error_rate": 2.0})).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("error_rate"));
    let set = http.put(format!("{base}/faults")).json(&json!({"fail_next": [409]})).send().await.unwrap();
    assert_eq!(set.status(), StatusCode::OK);
    let faults: Faults = http.get(format!("{base}/faults")).send().await.unwrap().json().await.unwrap();
    assert_eq!(faults, Faults { fail_next: vec![409], ..Faults::default() });
    let r = caller.send(Method::GET, &kps_tasks(PROJECT), &[]).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.json::<Value>().await.unwrap()["error_code"], "KPS.0409");

    let unknown = caller.send(Method::GET, &format!("/v2/{PROJECT}/nothing"), &[]).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.json::<Value>().await.unwrap()["error_code"], "APIGW.0101");
    let wrong_method = caller.send(Method::POST, &kps_tasks(PROJECT), &[]).await;
    assert_eq!(wrong_method.status(), StatusCode::NOT_FOUND);
    assert!(wrong_method.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn tls_mode_serves_https_trusted_through_ca_pem() {
    let emu = start_with(config(true), Seed::Empty).await;
    emu.store().add_failed_tasks(PROJECT, vec![task("t1")]);
    assert!(emu.url().starts_with("https://127.0.0.1:"), "{}", emu.url());
    let pem = emu.ca_pem().expect("a CA when serving TLS");
    let ca = reqwest::Certificate::from_pem(pem.as_bytes()).expect("PEM parses");
    let trusting = reqwest::Client::builder().no_proxy().tls_certs_only([ca]).build().expect("client");
    let caller = Caller::with_client(&emu, trusting);
    let r = caller.send(Method::GET, &kps_tasks(PROJECT), &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<FailedTaskPage>().await.unwrap().tasks, vec![task("t1")]);

    let untrusting = reqwest::Client::builder().no_proxy().build().expect("client");
    let err = untrusting.get(emu.url()).send().await.expect_err("the CA is not trusted by default");
    assert!(err.is_connect(), "{err:?}");

    let plain = start(Seed::Empty).await;
    assert!(plain.url().starts_with("http://") && plain.ca_pem().is_none());
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let emu = start(Seed::Empty).await;
    let url = format!("{}/_emulator/calls", emu.url());
    assert_eq!(client().get(&url).send().await.unwrap().status(), StatusCode::OK);
    emu.shutdown().await;
    let err = client().get(&url).send().await.expect_err("nothing listens any more");
    assert!(err.is_connect(), "{err:?}");
}

async fn raw_list(caller: &Caller, path: &str, query: &[(&str, &str)]) -> Value {
    let response = caller.send(Method::GET, path, query).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path} {query:?}");
    response.json().await.expect("a JSON body")
}

fn listed_ids(body: &Value, key: &str, id: &str) -> Vec<String> {
    body[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} list in {body}"))
        .iter()
        .map(|item| item[id].as_str().unwrap_or_else(|| panic!("no {id} in {item}")).to_string())
        .collect()
}

async fn put_modes(emu: &Emulator, patch: Value) -> reqwest::Response {
    client().put(format!("{}/_emulator/modes", emu.url())).json(&patch).send().await.expect("admin answers")
}

#[tokio::test]
async fn listing_is_strict_by_default_and_switches_to_loose_at_runtime() {
    let emu = start(Seed::Empty).await;
    seed_jobs(&emu);
    let caller = Caller::new(&emu);
    let path = sdrs_list(PROJECT);
    let jobs = |body: &Value| listed_ids(body, "failure_jobs", "job_id");

    let strict = raw_list(&caller, &path, &[]).await;
    assert_eq!((jobs(&strict), strict["count"].clone()), (vec!["j1".into(), "j3".into()], json!(2)));
    let instances = raw_list(&caller, &path, &[("resource_type", "protected_instances")]).await;
    assert_eq!(instances["count"], 0, "in-group failures need server_group_id: {instances}");
    let g1 = raw_list(&caller, &path, &[("server_group_id", "g1")]).await;
    assert_eq!(jobs(&g1), ["j2", "j5"]);
    let g1_drills =
        raw_list(&caller, &path, &[("server_group_id", "g1"), ("resource_type", "disaster_recovery_drills")])
            .await;
    assert_eq!(jobs(&g1_drills), ["j5"], "filters apply within the group");
    let g1_named = raw_list(&caller, &path, &[("server_group_id", "g1"), ("resource_name", "tmp-j2")]).await;
    assert_eq!(jobs(&g1_named), ["j2"]);

    let modes: Value =
        client().get(format!("{}/_emulator/modes", emu.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(modes, json!({"sdrs_listing": "strict", "kps_task_time": "string"}));
    let set = put_modes(&emu, json!({"sdrs_listing": "loose"})).await;
    assert_eq!(set.status(), StatusCode::OK);
    assert_eq!(
        set.json::<Value>().await.unwrap(),
        json!({"sdrs_listing": "loose", "kps_task_time": "string"})
    );
    assert_eq!(emu.store().modes().sdrs_listing, SdrsListing::Loose);

    let loose = raw_list(&caller, &path, &[]).await;
    assert_eq!(jobs(&loose), ["j1", "j2", "j3", "j4", "j5"]);
    assert_eq!(loose["count"], 5);
    let instances = raw_list(&caller, &path, &[("resource_type", "protected_instances")]).await;
    assert_eq!(jobs(&instances), ["j2"]);
    let g1 = raw_list(&caller, &path, &[("server_group_id", "g1")]).await;
    assert_eq!(jobs(&g1), ["j2", "j5"], "server_group_id scopes the same in both readings");

    // The batch delete covers group-level failures in either reading.
    let r = caller.send(Method::DELETE, &format!("/v1/{PROJECT}/task-center/failure-jobs/batch"), &[]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(jobs(&raw_list(&caller, &path, &[]).await), ["j2", "j4", "j5"]);

    assert!(put_modes(&emu, json!({"sdrs_listing": "lax"})).await.status().is_client_error());
    assert_eq!(put_modes(&emu, json!({"sdrs_listing": "strict"})).await.status(), StatusCode::OK);
    assert_eq!(raw_list(&caller, &path, &[]).await["count"], 0, "strict again: no group-level failures left");
    assert_eq!(emu.store().calls().route("GET", SDRS_LIST), 10, "admin calls are not counted");

    let loose_from_start =
        start_with(Config { sdrs_listing: SdrsListing::Loose, ..config(false) }, Seed::Empty).await;
    seed_jobs(&loose_from_start);
    let caller = Caller::new(&loose_from_start);
    assert_eq!(raw_list(&caller, &path, &[]).await["count"], 5, "Config::sdrs_listing sets the start mode");
}

#[tokio::test]
async fn server_groups_list_pages_filters_and_sits_behind_the_gate() {
    let emu = start(Seed::Empty).await;
    emu.store().add_server_groups(
        PROJECT,
        [
            group("g1", "prod-pg-01", "protected"),
            group("g2", "tmp-pg-02", "available"),
            group("g3", "prod-pg-03", "available"),
            group("g4", "dev-pg-04", "error-creating"),
            group("g5", "prod-pg-05", ""),
        ],
    );
    emu.store().add_server_groups(OTHER_PROJECT, [group("x1", "other-pg", "available")]);
    let caller = Caller::new(&emu);
    let path = format!("/v1/{PROJECT}/server-groups");
    let ids = |body: &Value| listed_ids(body, "server_groups", "id");

    let page = raw_list(&caller, &path, &[("limit", "2"), ("offset", "1")]).await;
    assert_eq!((ids(&page), page["count"].clone()), (vec!["g2".into(), "g3".into()], json!(5)));
    assert_eq!(page["server_groups"][0], json!({"id": "g2", "name": "tmp-pg-02", "status": "available"}));
    let all = raw_list(&caller, &path, &[]).await;
    assert_eq!(ids(&all), ["g1", "g2", "g3", "g4", "g5"]);
    assert!(all["server_groups"][4]["status"].is_null(), "an absent status is null: {all}");
    let decoded: ProtectionGroupPage = serde_json::from_value(all).unwrap();
    assert_eq!(decoded.server_groups[4], group("g5", "prod-pg-05", ""));

    let available = raw_list(&caller, &path, &[("status", "available")]).await;
    assert_eq!((ids(&available), available["count"].clone()), (vec!["g2".into(), "g3".into()], json!(2)));
    let prod = raw_list(&caller, &path, &[("name", "prod")]).await;
    assert_eq!(ids(&prod), ["g1", "g3", "g5"], "name matches a part");
    let both = raw_list(&caller, &path, &[("name", "prod"), ("status", "available"), ("limit", "0")]).await;
    assert_eq!((ids(&both).len(), both["count"].clone()), (0, json!(1)), "count ignores limit");
    let ignored =
        raw_list(&caller, &path, &[("query_type", "status_abnormal"), ("availability_zone", "az1")]).await;
    assert_eq!(ignored["count"], 5);

    for bad in [("limit", "1001"), ("limit", "-1"), ("offset", "x")] {
        let r = caller.send(Method::GET, &path, &[bad]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "SDRS.1002", "{body}");
    }
    let without_project_header = |path: String| {
        let request = caller.request(Method::GET, &path, &[], &[]);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let other = without_project_header(format!("/v1/{OTHER_PROJECT}/server-groups")).await;
    assert_eq!(ids(&other), ["x1"], "each project lists its own groups");
    let unknown = without_project_header("/v1/00000000000000000000000000000000/server-groups".into()).await;
    assert_eq!(unknown, json!({"server_groups": [], "count": 0}));

    let unsigned = client().get(format!("{}{path}", emu.url())).send().await.unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    emu.store().set_faults(Faults { fail_next: vec![503], ..Faults::default() });
    assert_eq!(caller.send(Method::GET, &path, &[]).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    emu.store().set_faults(Faults { malformed_rate: 1.0, ..Faults::default() });
    let text = caller.send(Method::GET, &path, &[]).await.text().await.unwrap();
    assert!(serde_json::from_str::<ProtectionGroupPage>(&text).is_err(), "the list can be malformed: {text}");
    emu.store().set_faults(Faults::default());
    let calls = emu.store().calls();
    assert_eq!(calls.route("GET", SDRS_GROUPS), 14, "every call is counted, faulted or not");
    assert_eq!(calls.by_project[PROJECT], 12);
}

#[tokio::test]
async fn kps_task_time_is_an_epoch_ms_string_or_number_and_absent_strings_are_null() {
    let emu = start(Seed::Empty).await;
    let documented = FailedTask {
        task_id: "2ce7dc7e-5e2b-4f3b-b3a0-b6f6b3f6a5d4".into(),
        operate_type: "RUNNING_RESET".into(),
        task_time: "1523342130000".into(),
        task_error_code: String::new(),
        task_error_msg: String::new(),
        server_name: "ecs-name".into(),
        server_id: "c2d7d2b8-fd8e-4a2e-9f1d-3c0e5a7d1c11".into(),
        keypair_name: "keypair-name".into(),
    };
    emu.store().add_failed_tasks(PROJECT, vec![documented.clone(), task("t2")]);
    let caller = Caller::new(&emu);
    let path = kps_tasks(PROJECT);

    let body = raw_list(&caller, &path, &[]).await;
    assert_eq!(body["total"], 2);
    let first = &body["tasks"][0];
    assert_eq!(first["task_time"], json!("1523342130000"), "{body}");
    assert_eq!(first["operate_type"], "RUNNING_RESET");
    assert!(first["task_error_code"].is_null() && first["task_error_msg"].is_null(), "{body}");
    assert_eq!(body["tasks"][1]["task_time"], json!("1793534400000"));
    let page: FailedTaskPage = serde_json::from_value(body).unwrap();
    assert_eq!(page.tasks, vec![documented.clone(), task("t2")]);

    let set = put_modes(&emu, json!({"kps_task_time": "number"})).await;
    assert_eq!(
        set.json::<Value>().await.unwrap(),
        json!({"sdrs_listing": "strict", "kps_task_time": "number"})
    );
    let body = raw_list(&caller, &path, &[("limit", "1")]).await;
    assert_eq!(body["tasks"][0]["task_time"], json!(1_523_342_130_000_i64), "{body}");
    assert!(body["tasks"][0]["task_error_code"].is_null());
    let page: FailedTaskPage = serde_json::from_value(body).unwrap();
    assert_eq!(page.tasks, vec![documented.clone()], "both shapes decode to the same task");
    let when = taskreaper::cloud::model::parse_task_time(&page.tasks[0].task_time).unwrap();
    assert_eq!(when, "2018-04-10T06:35:30Z".parse::<Timestamp>().unwrap());
    assert_eq!(emu.store().failed_tasks(PROJECT)[0].task_time, "1523342130000", "the store is unchanged");

    let numbers =
        start_with(Config { kps_task_time: KpsTaskTime::Number, ..config(false) }, Seed::Empty).await;
    numbers.store().add_failed_tasks(PROJECT, vec![task("t1")]);
    assert_eq!(numbers.store().modes(), Modes { kps_task_time: KpsTaskTime::Number, ..Modes::default() });
    let body = raw_list(&Caller::new(&numbers), &path, &[]).await;
    assert_eq!(body["tasks"][0]["task_time"], json!(1_793_534_400_000_i64));
}

#[tokio::test]
async fn generated_projects_follow_the_documented_shapes() {
    let emu = start(Seed::Generated { projects: vec![PROJECT.into()], tasks_per_kind: 2, seed: 3 }).await;
    let caller = Caller::new(&emu);
    let groups: ProtectionGroupPage =
        serde_json::from_value(raw_list(&caller, &format!("/v1/{PROJECT}/server-groups"), &[]).await)
            .unwrap();
    let group_ids: Vec<&str> = groups.server_groups.iter().map(|g| g.id.as_str()).collect();
    let page: FailureJobPage =
        serde_json::from_value(raw_list(&caller, &sdrs_list(PROJECT), &[]).await).unwrap();
    assert_eq!(page.count, 3);
    assert!(page.failure_jobs.iter().all(|j| j.resource_type == "server_groups"));
    let dangling: Vec<&FailureJob> =
        page.failure_jobs.iter().filter(|j| !group_ids.contains(&j.resource_id.as_str())).collect();
    assert_eq!(dangling.len(), 1, "one group-level failure names a group that is gone");
    let mut odd = 0;
    for g in &group_ids {
        let page: FailureJobPage =
            serde_json::from_value(raw_list(&caller, &sdrs_list(PROJECT), &[("server_group_id", *g)]).await)
                .unwrap();
        odd += page.failure_jobs.iter().filter(|j| j.resource_type == "protectedInstance").count();
    }
    assert_eq!(odd, 1, "one in-group failure has the undocumented resource type");
    let r = caller
        .send(
            Method::DELETE,
            &format!("/v1/{PROJECT}/task-center/{}/failure-jobs/batch", dangling[0].resource_id),
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "the dangling group cannot be batch-deleted");

    let body = raw_list(&caller, &kps_tasks(PROJECT), &[]).await;
    assert_eq!(body["total"], 7);
    let tasks = body["tasks"].as_array().unwrap();
    assert!(tasks.iter().all(|t| t["task_time"].as_str().is_some_and(|s| s.len() == 13)), "{body}");
    assert!(tasks.iter().any(|t| t["operate_type"] == "RUNNING_RESET"));
    assert!(tasks.iter().any(|t| t["task_error_code"].is_null() && t["task_error_msg"].is_null()));
}

#[tokio::test]
async fn the_checked_in_seed_file_is_served_in_the_documented_shape() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/emulator-seed.json");
    let emu = start(Seed::File(path)).await;
    let caller = Caller::new(&emu);
    let pg1 = "0e6b7ba0-c3cd-4bf8-8a6e-f0f1f9c6c5a8";
    let pg2 = "5b2f1c3e-8d7a-4e21-9c0b-1f2e3d4c5b6a";
    let dangling = "d4c3b2a1-0f9e-4d8c-b7a6-5e4d3c2b1a09";
    let jobs = |body: &Value| listed_ids(body, "failure_jobs", "job_id");

    let groups = raw_list(&caller, &format!("/v1/{PROJECT}/server-groups"), &[]).await;
    assert_eq!(listed_ids(&groups, "server_groups", "id"), [pg1, pg2]);

    let group_level = raw_list(&caller, &sdrs_list(PROJECT), &[]).await;
    assert_eq!(
        jobs(&group_level),
        ["897f57b2-6e94-4179-b414-9532726c59f2", "3f1d2c4b-5a69-4788-9a0b-c1d2e3f4a5b6"]
    );
    let gone = &group_level["failure_jobs"][1];
    assert_eq!(gone["resource_id"], dangling);
    assert!(gone["error_code"].is_null() && gone["fail_reason"].is_null(), "{gone}");
    assert!(gone.get("server_group_id").is_none(), "the scope is not on the wire: {gone}");

    let in_pg1 = raw_list(&caller, &sdrs_list(PROJECT), &[("server_group_id", pg1)]).await;
    assert_eq!(in_pg1["count"], 2);
    assert_eq!(in_pg1["failure_jobs"][0]["resource_type"], "protectedInstance");
    let in_pg2 = raw_list(&caller, &sdrs_list(PROJECT), &[("server_group_id", pg2)]).await;
    assert_eq!(jobs(&in_pg2), ["c0ffee00-1234-4abc-8def-0123456789ab"]);

    let tasks = raw_list(&caller, &kps_tasks(PROJECT), &[]).await;
    assert_eq!(tasks["total"], 2);
    assert_eq!(tasks["tasks"][0]["task_time"], "1523342130000");
    assert_eq!(tasks["tasks"][0]["operate_type"], "RUNNING_RESET");
    assert!(tasks["tasks"][0]["task_error_code"].is_null());

    let batch = format!("/v1/{PROJECT}/task-center/{dangling}/failure-jobs/batch");
    assert_eq!(caller.send(Method::DELETE, &batch, &[]).await.status(), StatusCode::NOT_FOUND);
    let batch = format!("/v1/{PROJECT}/task-center/{pg1}/failure-jobs/batch");
    assert_eq!(caller.send(Method::DELETE, &batch, &[]).await.status(), StatusCode::NO_CONTENT);
    let r = caller.send(Method::DELETE, &format!("/v1/{PROJECT}/task-center/failure-jobs/batch"), &[]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        ids(&emu.store().failure_jobs(PROJECT)),
        ["c0ffee00-1234-4abc-8def-0123456789ab"],
        "only pg2's in-group failure is left"
    );
}

/// The hostile-ids fault, switched on through the admin API: every list answer also shows made-up
/// tasks whose ids are unsafe in a path (and the protection group `.`), copies of the real ones so
/// the same filters match them, never stored. A client that trusted the id `batch` would send the
/// project-wide batch delete and lose every protection-group-level failure.
#[tokio::test]
async fn hostile_ids_look_like_real_tasks_and_trusting_one_hits_the_batch() {
    let emu = start(Seed::Empty).await;
    seed_jobs(&emu);
    emu.store().add_failed_tasks(PROJECT, vec![task("t1")]);
    let set = client()
        .put(format!("{}/_emulator/faults", emu.url()))
        .json(&json!({"hostile_ids": true}))
        .send()
        .await
        .expect("admin answers");
    assert_eq!(set.status(), StatusCode::OK);
    assert!(emu.store().faults().hostile_ids);
    let hostile = taskreaper::emulator::hostile::task_ids();
    let caller = Caller::new(&emu);

    let page: FailureJobPage = caller.send(Method::GET, &sdrs_list(PROJECT), &[]).await.json().await.unwrap();
    assert_eq!(page.count as usize, 2 + hostile.len());
    let listed: Vec<&str> = page.failure_jobs.iter().map(|j| j.job_id.as_str()).collect();
    assert_eq!(&listed[..2], ["j1", "j3"]);
    assert_eq!(
        listed[2..],
        hostile.iter().map(String::as_str).collect::<Vec<_>>()[..],
        "verbatim on the wire"
    );
    assert!(
        page.failure_jobs[2..]
            .iter()
            .all(|j| j.resource_type == "server_groups" && j.failure_status == "createFail")
    );

    // Filtered lists show them too, in the shape the filter asks for.
    let in_g1: FailureJobPage = caller
        .send(
            Method::GET,
            &sdrs_list(PROJECT),
            &[("server_group_id", "g1"), ("resource_type", "protected_instances")],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(in_g1.count as usize, 1 + hostile.len());
    let groups: ProtectionGroupPage =
        caller.send(Method::GET, &format!("/v1/{PROJECT}/server-groups"), &[]).await.json().await.unwrap();
    assert_eq!(groups.server_groups.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(), ["g1", "g2", "."]);
    let tasks: FailedTaskPage =
        caller.send(Method::GET, &format!("/v3/{PROJECT}/failed-tasks"), &[]).await.json().await.unwrap();
    assert_eq!(tasks.total as usize, 1 + hostile.len());
    assert!(
        tasks.tasks.iter().any(|t| t.task_id.is_empty()) && tasks.tasks.iter().any(|t| t.task_id == "batch")
    );

    // A client that put the id "batch" into the single-delete path would hit the batch route.
    let trusted =
        caller.send(Method::DELETE, &format!("/v1/{PROJECT}/task-center/failure-jobs/batch"), &[]).await;
    assert_eq!(trusted.status(), StatusCode::NO_CONTENT);
    assert_eq!(emu.store().calls().route("DELETE", SDRS_BATCH), 1);
    assert_eq!(emu.store().calls().route("DELETE", SDRS_ONE), 0);
    assert_eq!(ids(&emu.store().failure_jobs(PROJECT)), ["j2", "j4", "j5"], "every group-level failure went");
    // The made-up tasks were never stored, so they are listed again.
    let again: FailureJobPage =
        caller.send(Method::GET, &sdrs_list(PROJECT), &[]).await.json().await.unwrap();
    assert_eq!(again.count as usize, hostile.len());
    // A path no route publishes is counted apart, outside the total.
    let before = emu.store().calls().total;
    let astray = caller.send(Method::DELETE, &format!("/v3/{PROJECT}/failed-tasks/a/b"), &[]).await;
    assert_eq!(astray.status(), StatusCode::NOT_FOUND);
    assert_eq!((emu.store().calls().unmatched("DELETE"), emu.store().calls().total), (1, before));
}

#[tokio::test]
async fn the_rate_limit_per_key_answers_429_with_retry_after_beyond_its_bucket() {
    let config = Config { rate_limit: RateLimitSetting { per_key: 5, burst: 0 }, ..config(false) };
    let emu = start_with(config, Seed::Empty).await;
    let caller = Caller::new(&emu);
    for _ in 0..5 {
        assert_eq!(caller.send(Method::GET, &kps_tasks(PROJECT), &[]).await.status(), StatusCode::OK);
    }
    let throttled = caller.send(Method::GET, &kps_tasks(PROJECT), &[]).await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers()["retry-after"], "1");
    let body: Value = throttled.json().await.unwrap();
    assert_eq!(body["error_code"], "APIGW.0308", "{body}");
    assert!(body["error_msg"].as_str().unwrap().contains("limit:5"), "{body}");
    let calls = emu.store().calls();
    assert_eq!((calls.total, calls.throttled), (6, 1), "429s are calls too, and counted apart");

    // IAM tokens have a bucket of their own.
    let by_token = client()
        .get(format!("{}{}", emu.url(), kps_tasks(PROJECT)))
        .header("X-Auth-Token", TOKEN)
        .header("X-Project-Id", PROJECT)
        .send()
        .await
        .unwrap();
    assert_eq!(by_token.status(), StatusCode::OK);

    // 5 per second: a token is back within a fifth of a second.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(caller.send(Method::GET, &kps_tasks(PROJECT), &[]).await.status(), StatusCode::OK);
    let counted: Value =
        client().get(format!("{}/_emulator/calls", emu.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(counted["throttled"], 1);
}

#[tokio::test]
async fn the_rate_limit_is_set_and_lifted_at_runtime() {
    let emu = start(Seed::Empty).await;
    let caller = Caller::new(&emu);
    let url = format!("{}/_emulator/rate-limit", emu.url());
    let off: Value = client().get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(off, json!({"per_key": 0, "burst": 0}), "no limit by default");
    for _ in 0..20 {
        assert_eq!(caller.send(Method::GET, &kps_tasks(PROJECT), &[]).await.status(), StatusCode::OK);
    }

    let set = client().put(&url).json(&json!({"per_key": 2})).send().await.unwrap();
    assert_eq!(set.status(), StatusCode::OK);
    assert_eq!(emu.store().rate_limit(), RateLimitSetting { per_key: 2, burst: 0 });
    let statuses: Vec<StatusCode> = list_statuses(&caller, 3).await;
    assert_eq!(statuses, [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);
    assert_eq!(emu.store().calls().throttled, 1);

    emu.store().set_rate_limit(RateLimitSetting { per_key: 1, burst: 3 });
    assert_eq!(list_statuses(&caller, 4).await.iter().filter(|s| **s == StatusCode::OK).count(), 3);

    client().put(&url).json(&json!({"per_key": 0})).send().await.unwrap();
    assert!(list_statuses(&caller, 20).await.iter().all(|s| *s == StatusCode::OK), "lifted");
    assert_eq!(emu.store().calls().throttled, 2);
}

/// Statuses of `n` list calls made one after the other.
async fn list_statuses(caller: &Caller, n: usize) -> Vec<StatusCode> {
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses.push(caller.send(Method::GET, &kps_tasks(PROJECT), &[]).await.status());
    }
    statuses
}
