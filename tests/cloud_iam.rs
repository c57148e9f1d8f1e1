//! The crate's IAM client and federation cache against the emulator: an ID token becomes temporary
//! credentials that the KPS and SDRS clients sign with (X-Security-Token), the project of a region
//! and every project are discovered with them, the cache serves one exchange until the refresh
//! point, refreshes across expiry, keeps valid credentials when a refresh fails, and the cloud
//! refuses expired ones.

mod common;

use common::iam::{AUDIENCE, IDP, ISSUER, federated_iam};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use taskreaper::cloud::credentials::Secret;
use taskreaper::cloud::discovery::{DiscoveryError, ProjectSelector, discover};
use taskreaper::cloud::federation::{FederationCache, FederationError, Freshness, RefreshPolicy};
use taskreaper::cloud::iam::{IamClient, IamError};
use taskreaper::cloud::{Allowlist, CloudHttp, EndpointPolicy, ErrorClass, HttpConfig, KpsClient, RateLimit};
use taskreaper::cloud::{RateLimiters, RetryPolicy, SdrsClient};
use taskreaper::emulator::{Clock, Config, Emulator, IamSettings, LocalIssuer, Seed, TokenClaims};

const PROJECT: &str = "0605767b5c00d4bb2f10c01a1e3b3a7e";
const EAST: &str = "1b2c3d4e5f60718293a4b5c6d7e8f901";

fn t0() -> Timestamp {
    "2026-11-22T05:30:00Z".parse().expect("timestamp")
}

fn after(secs: i64) -> Timestamp {
    t0().checked_add(SignedDuration::from_secs(secs)).expect("in range")
}

async fn start(issuer: &LocalIssuer, max_duration: Duration) -> Emulator {
    let config = Config {
        clock: Clock::Fixed(t0()),
        iam: IamSettings {
            min_duration: Duration::from_secs(1),
            ..federated_iam(issuer, PROJECT, EAST, max_duration)
        },
        ..Config::default()
    };
    let seed = Seed::Generated { projects: vec![PROJECT.into(), EAST.into()], tasks_per_kind: 3, seed: 5 };
    Emulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), config, seed).await.expect("emulator starts")
}

fn http_config() -> HttpConfig {
    HttpConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        endpoints: EndpointPolicy {
            allowlist: Allowlist::parse(["127.0.0.1"]).expect("pattern"),
            allow_http: true,
        },
        retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
        ..HttpConfig::default()
    }
}

/// A client core whose clock is the emulator's, so signatures are dated as the emulator expects.
fn http(emu: &Emulator) -> CloudHttp {
    let store = emu.store().clone();
    let n = NonZeroU32::new(1000).expect("non-zero");
    CloudHttp::new(
        http_config(),
        RateLimiters::new(RateLimit { per_second: n, burst: n }),
        Arc::new(move || store.now()),
    )
    .expect("client core")
}

fn id_token(issuer: &LocalIssuer, lifetime_secs: i64) -> Secret {
    let claims = TokenClaims {
        sub: "system:serviceaccount:team-a:cleaner".into(),
        aud: vec![AUDIENCE.into()],
        issued_at: t0(),
        expires_at: after(lifetime_secs),
        iss: None,
    };
    Secret::new(issuer.token(&claims).expect("token"))
}

#[tokio::test]
async fn federated_credentials_purge_kps_and_discover_projects() {
    let issuer = LocalIssuer::generate(ISSUER, "key-1").expect("issuer");
    let emu = start(&issuer, Duration::from_secs(3600)).await;
    let iam = IamClient::new(&http_config(), Some(&emu.url())).expect("IAM client");
    let temp = iam.federate(IDP, &id_token(&issuer, 600), Duration::from_secs(900)).await.expect("federated");
    assert_eq!(temp.expires_at, after(900));
    let credentials = Arc::new(temp.credentials());

    let north = iam.projects_named(&credentials, "cn-north-4", t0()).await.expect("projects by name");
    assert_eq!(north.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), [PROJECT]);
    let all = iam.auth_projects(&credentials, t0()).await.expect("every project");
    assert_eq!(all.len(), 2);
    assert!(iam.projects_named(&credentials, "ap-southeast-1", t0()).await.expect("none").is_empty());

    let http = http(&emu);
    let kps = KpsClient::new(http.clone(), credentials.clone(), PROJECT, "cn-north-4", Some(&emu.url()))
        .expect("KPS client");
    let tasks = kps.list_failed_tasks().await.expect("listed with temporary credentials");
    assert!(!tasks.is_empty());
    kps.delete_all_failed_tasks().await.expect("deleted with temporary credentials");
    assert!(emu.store().failed_tasks(PROJECT).is_empty());
    let sdrs =
        SdrsClient::new(http, credentials.clone(), PROJECT, "cn-north-4", Some(&emu.url())).expect("SDRS");
    sdrs.list_failure_jobs(&Default::default()).await.expect("SDRS accepts them too");
    assert_eq!(emu.iam().issued()[0].calls, 3 + 3, "3 IAM lists, 3 cloud calls");

    // Once expired, the cloud refuses them, and a wrong ID token gets nothing.
    emu.store().set_clock(Clock::Fixed(after(900)));
    let err = kps.list_failed_tasks().await.expect_err("expired");
    assert_eq!(err.class(), ErrorClass::Authentication, "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
    let other = LocalIssuer::generate(ISSUER, "key-1").expect("issuer");
    let refused =
        iam.federate(IDP, &id_token(&other, 3600), Duration::from_secs(900)).await.expect_err("refused");
    assert_eq!(refused.class(), ErrorClass::Authentication, "{refused}");
    assert!(matches!(&refused, IamError::Api { error, .. } if error.code == "IAM.0003"), "{refused}");
    emu.shutdown().await;
}

#[tokio::test]
async fn the_cache_refreshes_before_expiry_and_keeps_valid_credentials_when_a_refresh_fails() {
    let issuer = LocalIssuer::generate(ISSUER, "key-1").expect("issuer");
    // IAM caps temporary keys at 60 s whatever is asked.
    let emu = start(&issuer, Duration::from_secs(60)).await;
    let iam = IamClient::new(&http_config(), Some(&emu.url())).expect("IAM client");
    let cache = FederationCache::new(iam, Duration::from_secs(900), RefreshPolicy::default());
    let key = ("team-a".to_string(), "cleaner".to_string(), IDP.to_string());
    let tokens = AtomicUsize::new(0);
    let fetch = || async {
        tokens.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::io::Error>(id_token(&issuer, 3600))
    };

    let (first, how) = cache.credentials(&key, IDP, fetch, t0()).await.expect("exchanged");
    assert_eq!((how, first.expires_at), (Freshness::Exchanged, after(60)));
    let (again, how) = cache.credentials(&key, IDP, fetch, after(30)).await.expect("cached");
    assert_eq!((how, &again.access_key_id), (Freshness::Cached, &first.access_key_id));
    assert_eq!(tokens.load(Ordering::SeqCst), 1, "no ID token needed while cached");

    // Past half the lifetime: refreshed, and the new key works where the old one has expired.
    emu.store().set_clock(Clock::Fixed(after(61)));
    let (fresh, how) = cache.credentials(&key, IDP, fetch, after(61)).await.expect("refreshed");
    assert_eq!(how, Freshness::Exchanged);
    assert_ne!(fresh.access_key_id, first.access_key_id);
    assert_eq!(fresh.expires_at, after(121));
    let kps = |c: &taskreaper::cloud::iam::TemporaryCredentials| {
        KpsClient::new(http(&emu), Arc::new(c.credentials()), PROJECT, "cn-north-4", Some(&emu.url()))
            .expect("KPS client")
    };
    assert!(kps(&first).list_failed_tasks().await.is_err(), "the old key expired");
    kps(&fresh).list_failed_tasks().await.expect("the refreshed key works");

    // Due for a refresh, the ID token source fails: the still-valid credentials are kept; once they
    // have expired, the failure is the caller's.
    let broken = || async { Err::<Secret, _>(std::io::Error::other("token request refused")) };
    let (kept, how) = cache.credentials(&key, IDP, broken, after(100)).await.expect("kept");
    assert_eq!((how, &kept.access_key_id), (Freshness::KeptAfterFailedRefresh, &fresh.access_key_id));
    let err = cache.credentials(&key, IDP, broken, after(121)).await.expect_err("expired and not refreshed");
    assert!(matches!(err, FederationError::IdToken(_)), "{err}");
    // Another identity never sees these credentials.
    let other = ("team-b".to_string(), "cleaner".to_string(), IDP.to_string());
    let (theirs, _) = cache.credentials(&other, IDP, fetch, after(121)).await.expect("their own");
    assert_ne!(theirs.access_key_id, fresh.access_key_id);
    assert_eq!(emu.iam().issued().len(), 3);
    emu.shutdown().await;
}

#[tokio::test]
async fn discovery_by_region_and_over_every_project() {
    let issuer = LocalIssuer::generate(ISSUER, "key-1").expect("issuer");
    let emu = start(&issuer, Duration::from_secs(3600)).await;
    emu.iam()
        .name_projects([("2c3d4e5f60718293a4b5c6d7e8f90112".to_string(), "cn-east-3_team-b".to_string())]);
    let iam = IamClient::new(&http_config(), Some(&emu.url())).expect("IAM client");
    let temp = iam.federate(IDP, &id_token(&issuer, 600), Duration::from_secs(900)).await.expect("federated");
    let credentials = temp.credentials();
    let selector = |regions: &[&str], all_projects: bool, pattern: Option<&str>| ProjectSelector {
        regions: regions.iter().map(|r| r.to_string()).collect(),
        all_projects,
        name_pattern: pattern.map(|p| regex::Regex::new(p).expect("regex")),
        max_projects: 8,
    };
    let ids = |found: Vec<taskreaper::cloud::discovery::Discovered>| {
        found.into_iter().map(|d| (d.id, d.region)).collect::<Vec<_>>()
    };
    let by_region =
        discover(&iam, &credentials, &selector(&["cn-north-4", "cn-east-3"], false, None), t0()).await;
    assert_eq!(
        ids(by_region.expect("by region")),
        [(PROJECT.to_string(), "cn-north-4".to_string()), (EAST.to_string(), "cn-east-3".to_string())]
    );
    let east =
        discover(&iam, &credentials, &selector(&["cn-east-3"], true, None), t0()).await.expect("all in east");
    assert_eq!(east.len(), 2, "the main project and its sub-project: {east:?}");
    let teams =
        discover(&iam, &credentials, &selector(&[], true, Some("_team-")), t0()).await.expect("by name");
    assert_eq!(ids(teams), [("2c3d4e5f60718293a4b5c6d7e8f90112".to_string(), "cn-east-3".to_string())]);
    let none = discover(&iam, &credentials, &selector(&["ap-southeast-1"], false, None), t0()).await;
    assert!(matches!(none, Err(DiscoveryError::NoProjectForRegion(_))), "{none:?}");
    emu.shutdown().await;
}
