//! The emulator's IAM over real HTTP: OIDC federation (an RS256 ID token from a local issuer for an
//! IAM token, that token for temporary AK/SK + security token), refusal of tokens with a bad
//! signature, issuer, audience or expiry, temporary keys accepted by SDRS and KPS with their signed
//! `X-Security-Token` and refused once expired, and the project lists by region and in full.

mod common;

use common::iam::{AUDIENCE, IDP, ISSUER, federated_iam};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use taskreaper::cloud::credentials::Secret;
use taskreaper::cloud::signing;
use taskreaper::emulator::{
    ADMIN_PREFIX, Clock, Config, Emulator, IAM_AUTH_PROJECTS, IAM_ID_TOKEN, IAM_PROJECTS,
    IAM_SECURITY_TOKENS, IamSettings, LocalIssuer, Seed, TokenClaims, iam_code,
};

const SUBJECT: &str = "system:serviceaccount:team-a:cleaner";
const PROJECT: &str = "0605767b5c00d4bb2f10c01a1e3b3a7e";
const EAST: &str = "1b2c3d4e5f60718293a4b5c6d7e8f901";
const AK: &str = "HPUAXXXXXXXXEXAMPLEAK";
const SK: &str = "exampleSecretKeyDoNotUse0123456789abcdEF";

fn start_time() -> Timestamp {
    "2026-11-22T05:30:00Z".parse().expect("timestamp")
}

fn after(secs: i64) -> Timestamp {
    start_time().checked_add(SignedDuration::from_secs(secs)).expect("in range")
}

fn claims() -> TokenClaims {
    TokenClaims {
        sub: SUBJECT.into(),
        aud: vec![AUDIENCE.into()],
        issued_at: start_time(),
        expires_at: after(600),
        iss: None,
    }
}

async fn start(issuer: &LocalIssuer) -> Emulator {
    let config = Config {
        access_keys: BTreeMap::from([(AK.to_string(), Secret::new(SK))]),
        clock: Clock::Fixed(start_time()),
        iam: IamSettings {
            min_duration: Duration::from_secs(1),
            ..federated_iam(issuer, PROJECT, EAST, Duration::from_secs(120))
        },
        ..Config::default()
    };
    let seed = Seed::Generated { projects: vec![PROJECT.into()], tasks_per_kind: 2, seed: 7 };
    Emulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), config, seed).await.expect("emulator starts")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client")
}

async fn exchange(emu: &Emulator, idp: Option<&str>, id_token: &str) -> reqwest::Response {
    let mut request = client()
        .post(format!("{}{IAM_ID_TOKEN}", emu.url()))
        .header("Content-Type", "application/json;charset=UTF-8")
        .body(json!({"auth": {"id_token": {"id": id_token}}}).to_string());
    if let Some(idp) = idp {
        request = request.header("X-Idp-Id", idp);
    }
    request.send().await.expect("IAM answers")
}

async fn error_of(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON error");
    (
        status,
        body["error_code"].as_str().unwrap_or("").into(),
        body["error_msg"].as_str().unwrap_or("").into(),
    )
}

/// Temporary credentials as the securitytokens call returned them.
struct Temporary {
    access: String,
    secret: String,
    security_token: String,
    expires_at: String,
}

async fn temporary(emu: &Emulator, token: &str, duration_seconds: u64) -> Temporary {
    let response = client()
        .post(format!("{}{IAM_SECURITY_TOKENS}", emu.url()))
        .header("Content-Type", "application/json;charset=UTF-8")
        .body(
            json!({"auth": {"identity": {"methods": ["token"],
                "token": {"id": token, "duration_seconds": duration_seconds}}}})
            .to_string(),
        )
        .send()
        .await
        .expect("IAM answers");
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.expect("JSON");
    let text =
        |k: &str| body["credential"][k].as_str().unwrap_or_else(|| panic!("{k} in {body}")).to_string();
    Temporary {
        access: text("access"),
        secret: text("secret"),
        security_token: text("securitytoken"),
        expires_at: text("expires_at"),
    }
}

/// A GET signed with `ak`/`sk` at the emulator's clock, with `extra` headers signed too.
async fn signed_get(
    emu: &Emulator,
    path: &str,
    query: &[(&str, &str)],
    ak: &str,
    sk: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let query: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let date = signing::format_sdk_date(emu.store().now());
    let mut headers: Vec<(String, String)> = vec![
        ("Host".into(), format!("127.0.0.1:{}", emu.addr().port())),
        (signing::DATE_HEADER.into(), date.clone()),
    ];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let req = signing::Request { method: "GET", path, query: &query, headers: &headers, body: b"" };
    let auth = signing::authorize(&req, ak, sk.as_bytes(), &date);
    let qs = signing::canonical_query(&query);
    let url =
        if qs.is_empty() { format!("{}{path}", emu.url()) } else { format!("{}{path}?{qs}", emu.url()) };
    let mut builder = client().request(Method::GET, url);
    for (k, v) in headers.iter().filter(|(k, _)| k != "Host") {
        builder = builder.header(k, v);
    }
    builder.header("Authorization", auth.header_value()).send().await.expect("answered")
}

#[tokio::test]
async fn federation_gives_temporary_keys_that_sdrs_and_kps_accept_until_they_expire() {
    let issuer = LocalIssuer::generate(ISSUER, "key-1").expect("an issuer");
    let emu = start(&issuer).await;
    let response = exchange(&emu, Some(IDP), &issuer.token(&claims()).expect("a token")).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let token = response.headers()["X-Subject-Token"].to_str().expect("ASCII").to_string();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["token"]["user"]["name"], SUBJECT);
    assert_eq!(body["token"]["user"]["OS-FEDERATION"]["identity_provider"]["id"], IDP);

    let temp = temporary(&emu, &token, 60).await;
    assert_eq!(temp.expires_at, "2026-11-22T05:31:00.000000Z");
    let sts = [("X-Security-Token", temp.security_token.as_str())];
    let kps = format!("/v3/{PROJECT}/failed-tasks");
    let sdrs = format!("/v1/{PROJECT}/task-center/failure-jobs");
    for path in [&kps, &sdrs] {
        let ok = signed_get(&emu, path, &[], &temp.access, &temp.secret, &sts).await;
        assert_eq!(ok.status(), StatusCode::OK, "{path}");
    }
    let issued = emu.iam().issued();
    assert_eq!((issued.len(), issued[0].calls, issued[0].subject.as_str()), (1, 2, SUBJECT));

    let without = signed_get(&emu, &kps, &[], &temp.access, &temp.secret, &[]).await;
    let (status, _, msg) = error_of(without).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(msg.contains("no X-Security-Token"), "{msg}");
    let wrong = signed_get(&emu, &kps, &[], &temp.access, &temp.secret, &[("X-Security-Token", "x")]).await;
    assert!(error_of(wrong).await.2.contains("does not belong"));

    emu.store().set_clock(Clock::Fixed(after(60)));
    let expired = signed_get(&emu, &kps, &[], &temp.access, &temp.secret, &sts).await;
    let (status, _, msg) = error_of(expired).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(msg.contains("expired at 2026-11-22T05:31:00Z"), "{msg}");
    assert!(!msg.contains(&temp.security_token) && !msg.contains(&temp.secret), "{msg}");

    // A new exchange after expiry gives keys that work again; a long request is capped.
    let again = temporary(&emu, &token, 21600).await;
    assert_eq!(again.expires_at, "2026-11-22T05:33:00.000000Z", "capped at max_duration");
    let sts = [("X-Security-Token", again.security_token.as_str())];
    assert_eq!(
        signed_get(&emu, &kps, &[], &again.access, &again.secret, &sts).await.status(),
        StatusCode::OK
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn refuses_id_tokens_with_a_bad_signature_issuer_audience_or_expiry() {
    let issuer = LocalIssuer::generate(ISSUER, "key-1").expect("an issuer");
    let impostor = LocalIssuer::generate(ISSUER, "key-1").expect("another key, same kid");
    let emu = start(&issuer).await;
    let cases: Vec<(&str, String, &str)> = vec![
        ("another key", impostor.token(&claims()).expect("token"), "signature does not verify"),
        (
            "another issuer",
            issuer
                .token(&TokenClaims { iss: Some("https://evil.example".into()), ..claims() })
                .expect("token"),
            "issuer https://evil.example",
        ),
        (
            "another audience",
            issuer.token(&TokenClaims { aud: vec!["kubernetes".into()], ..claims() }).expect("token"),
            "audience",
        ),
        (
            "expired",
            issuer.token(&TokenClaims { expires_at: after(-1), ..claims() }).expect("token"),
            "expired at 2026-11-22T05:29:59Z",
        ),
        ("not a JWT", "abc.def".to_string(), "not a JWT"),
    ];
    for (what, id_token, expected) in cases {
        let (status, code, msg) = error_of(exchange(&emu, Some(IDP), &id_token).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {msg}");
        assert_eq!(code, iam_code::ID_TOKEN_REFUSED, "{what}");
        assert!(msg.contains(expected), "{what}: {msg}");
    }
    let good = issuer.token(&claims()).expect("token");
    let (status, code, _) = error_of(exchange(&emu, Some("other-idp"), &good).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, iam_code::UNKNOWN_IDP));
    let (status, _, msg) = error_of(exchange(&emu, None, &good).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("X-Idp-Id"), "{msg}");
    let (status, code, _) = error_of(
        client()
            .post(format!("{}{IAM_SECURITY_TOKENS}", emu.url()))
            .body(
                json!({"auth": {"identity": {"methods": ["token"], "token": {"id": "MIIFforged"}}}})
                    .to_string(),
            )
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, iam_code::TOKEN_INVALID));
    assert!(emu.iam().issued().is_empty(), "no key was issued");
    emu.shutdown().await;
}

#[tokio::test]
async fn lists_the_project_of_a_region_and_every_project_to_signed_callers() {
    let issuer = LocalIssuer::generate(ISSUER, "key-1").expect("an issuer");
    let emu = start(&issuer).await;
    let names = |body: &Value| -> Vec<(String, String)> {
        body["projects"]
            .as_array()
            .expect("projects")
            .iter()
            .map(|p| (p["id"].as_str().unwrap_or("").into(), p["name"].as_str().unwrap_or("").into()))
            .collect()
    };
    let east = signed_get(&emu, IAM_PROJECTS, &[("name", "cn-east-3")], AK, SK, &[]).await;
    assert_eq!(east.status(), StatusCode::OK);
    assert_eq!(names(&east.json().await.expect("JSON")), [(EAST.to_string(), "cn-east-3".to_string())]);
    let none = signed_get(&emu, IAM_PROJECTS, &[("name", "ap-southeast-1")], AK, SK, &[]).await;
    assert_eq!(names(&none.json().await.expect("JSON")), []);

    // With temporary keys from federation, as the controller does.
    let response = exchange(&emu, Some(IDP), &issuer.token(&claims()).expect("token")).await;
    let token = response.headers()["X-Subject-Token"].to_str().expect("ASCII").to_string();
    let temp = temporary(&emu, &token, 60).await;
    let sts = [("X-Security-Token", temp.security_token.as_str())];
    let all = signed_get(&emu, IAM_AUTH_PROJECTS, &[], &temp.access, &temp.secret, &sts).await;
    assert_eq!(all.status(), StatusCode::OK);
    assert_eq!(names(&all.json().await.expect("JSON")).len(), 2);

    let (status, code, _) = error_of(signed_get(&emu, IAM_AUTH_PROJECTS, &[], AK, "wrong", &[]).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, iam_code::UNAUTHENTICATED));

    // The admin API shows the issued key without its secret, and counts IAM calls apart.
    let admin: Value = client()
        .get(format!("{}{ADMIN_PREFIX}/iam", emu.url()))
        .send()
        .await
        .expect("admin answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(admin["issued"][0]["subject"], SUBJECT);
    assert_eq!(admin["calls"][format!("GET {IAM_PROJECTS}")], 2);
    assert!(!admin.to_string().contains(&temp.secret) && !admin.to_string().contains(&temp.security_token));
    assert_eq!(emu.store().calls().total, 0, "IAM calls are not SDRS/KPS calls");
    emu.shutdown().await;
}

#[tokio::test]
async fn the_admin_api_sets_identity_providers_durations_and_project_names() {
    let issuer = LocalIssuer::generate(ISSUER, "key-1").expect("an issuer");
    let emu = Emulator::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Config { clock: Clock::Fixed(start_time()), ..Config::default() },
        Seed::Empty,
    )
    .await
    .expect("emulator starts");
    let put = |path: &str, body: Value| {
        let url = format!("{}{ADMIN_PREFIX}{path}", emu.url());
        async move { client().put(url).json(&body).send().await.expect("admin answers").status() }
    };
    let token = issuer.token(&claims()).expect("token");
    assert_eq!(exchange(&emu, Some(IDP), &token).await.status(), StatusCode::NOT_FOUND);
    let provider = json!({"issuer": ISSUER, "audiences": [AUDIENCE], "jwks": issuer.jwks_json()});
    assert_eq!(put(&format!("/iam/providers/{IDP}"), provider).await, StatusCode::NO_CONTENT);
    assert_eq!(
        put("/iam/durations", json!({"min_seconds": 5, "max_seconds": 10})).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(put("/iam/projects", json!({PROJECT: "cn-north-4"})).await, StatusCode::NO_CONTENT);
    let response = exchange(&emu, Some(IDP), &token).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let subject_token = response.headers()["X-Subject-Token"].to_str().expect("ASCII").to_string();
    assert_eq!(temporary(&emu, &subject_token, 900).await.expires_at, "2026-11-22T05:30:10.000000Z");
    assert_eq!(emu.iam().projects(Some("cn-north-4")).len(), 1);
    emu.shutdown().await;
}
