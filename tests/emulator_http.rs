//! The emulator over real HTTP: a reqwest client signs requests with the crate's SDK-HMAC-SHA256
//! signer and checks paging, each delete call, authentication failures, the project check, token
//! auth, injected faults, the admin API and HTTPS with the emulator's own CA.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskreaper::cloud::credentials::Secret;
use taskreaper::cloud::model::{FailedTask, FailedTaskPage, FailureJob, FailureJobPage};
use taskreaper::cloud::signing;
use taskreaper::emulator::{
    Clock, Config, Emulator, Faults, KPS_ONE, KPS_TASKS, SDRS_BATCH, SDRS_GROUP_BATCH, SDRS_LIST, SDRS_ONE,
    Seed, SeededJob,
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

fn seed_jobs(emu: &Emulator) {
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
        task_time: "2026-11-01T12:00:00Z".into(),
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
    assert_eq!(page.count, 5);
    assert_eq!(ids(&page.failure_jobs), ["j2", "j3"]);
    assert_eq!(page.failure_jobs[0].resource_name, "tmp-j2");

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
    assert_eq!(page.count, 3, "count is every match even when limit is 0");
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
    let page: FailureJobPage =
        caller.send(Method::GET, &sdrs_list(PROJECT), &[("limit", "5")]).await.json().await.unwrap();
    assert_eq!(page.count, 16);
    assert_eq!(page.failure_jobs.len(), 5);
    let page: FailedTaskPage =
        caller.send(Method::GET, &kps_tasks(PROJECT), &[("offset", "10")]).await.json().await.unwrap();
    assert_eq!(page.total, 12);
    assert_eq!(page.tasks.len(), 2);
    assert_eq!(emu.store().failed_tasks(OTHER_PROJECT).len(), 12);
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
    assert_eq!(ids(&emu.store().failure_jobs(PROJECT)), ["j3", "j4"]);
    assert_eq!(emu.store().calls().route("DELETE", SDRS_GROUP_BATCH), 1);
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
    assert_eq!(projects[PROJECT], json!({"failure_jobs": 2, "failed_tasks": 1}));

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
    assert!(jobs.is_empty(), "the group's jobs are gone: {jobs:?}");

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
