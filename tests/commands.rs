//! The `taskreaper` binary's one-shot commands, run as a user would: `purge` against the emulator
//! over HTTPS, `demo`, and `crd`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use taskreaper::cloud::credentials::Secret;
use taskreaper::emulator::{Config, Emulator, Seed};

const PROJECT: &str = "0605767b5c00d4bb2f10c01a1e3b3a7e";
const AK: &str = "HPUACOMMANDTESTKEY";
const SK: &str = "command-test-secret-key-0123";

async fn emulator() -> Emulator {
    let config = Config {
        access_keys: BTreeMap::from([(AK.to_string(), Secret::new(SK))]),
        tls: true,
        ..Config::default()
    };
    let seed = Seed::Generated { projects: vec![PROJECT.into()], tasks_per_kind: 4, seed: 3 };
    Emulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), config, seed).await.expect("emulator starts")
}

/// Runs the binary to completion.
async fn taskreaper(args: &[&str]) -> Output {
    common::binary::taskreaper().args(args).output().await.expect(common::binary::START_FAILED)
}

/// KPS tasks the generator makes with 4 per kind: 4 of each of the 3 operate types and one odd one.
const KPS_TASKS: usize = 3 * 4 + 1;

fn policy(url: &str, dry_run: bool) -> String {
    format!(
        "apiVersion: taskreaper.io/v1alpha1
kind: FailedTaskCleanupPolicy
metadata: {{name: one-shot, namespace: platform}}
spec:
  credentialsRef: {{name: creds}}
  region: cn-north-4
  endpoints: {{sdrs: \"{url}\", kps: \"{url}\"}}
  projects: [{{id: {PROJECT}}}]
  targets:
    - {{service: SDRS, scope: All}}
    - {{service: KPS, scope: All}}
  schedule: {{interval: 1h}}
  dryRun: {dry_run}
"
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a temporary file");
    path.to_string_lossy().into_owned()
}

fn status_of(output: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&output.stdout);
    let doc: serde_json::Value =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("status YAML ({e}):\n{text}"));
    doc["status"].clone()
}

fn ready(status: &serde_json::Value) -> (String, String) {
    let conditions = status["conditions"].as_array().expect("conditions");
    let ready = conditions.iter().find(|c| c["type"] == "Ready").expect("a Ready condition");
    (ready["status"].as_str().unwrap_or("").into(), ready["reason"].as_str().unwrap_or("").into())
}

#[tokio::test]
async fn purge_runs_one_policy_and_prints_its_status() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = write(dir.path(), "ca.pem", emu.ca_pem().expect("TLS emulator"));
    let creds = write(dir.path(), "creds.yaml", &format!("accessKeyId: {AK}\nsecretAccessKey: {SK}\n"));
    let jobs = |emu: &Emulator| emu.store().failure_jobs(PROJECT).len();
    let in_group = |emu: &Emulator| {
        emu.store().seeded_failure_jobs(PROJECT).iter().filter(|j| !j.is_group_level()).count()
    };
    let before_jobs = jobs(&emu);
    assert!(
        in_group(&emu) > 0 && before_jobs > in_group(&emu) && !emu.store().failed_tasks(PROJECT).is_empty()
    );
    let common = ["--credentials", &creds, "--endpoint-allowlist", "127.0.0.1", "--ca-bundle", &ca];

    // A suspended policy makes no call, says so, and exits non-zero: it did not run.
    let suspended = policy(&emu.url(), false).replace("dryRun: false", "dryRun: false\n  suspend: true");
    let file = write(dir.path(), "suspended.yaml", &suspended);
    let out = taskreaper(&[&["purge", "-f", &file], &common[..]].concat()).await;
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ready(&status_of(&out)), ("False".into(), "Suspended".into()));
    assert_eq!(emu.store().calls().total, 0);

    // A dry run reports and deletes nothing.
    let file = write(dir.path(), "dry.yaml", &policy(&emu.url(), true));
    let out = taskreaper(&[&["purge", "-f", &file], &common[..]].concat()).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = status_of(&out);
    assert_eq!(ready(&status), ("True".into(), "DryRun".into()));
    assert_eq!(status["lastRun"]["wouldDelete"].as_u64(), Some((before_jobs + KPS_TASKS) as u64));
    assert_eq!(emu.store().calls().deletes, 0);

    // The real run deletes what it covers, and the status says so.
    let file = write(dir.path(), "policy.yaml", &policy(&emu.url(), false));
    let out = taskreaper(&[&["purge", "-f", &file], &common[..]].concat()).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = status_of(&out);
    assert_eq!(ready(&status), ("True".into(), "Purged".into()));
    assert_eq!(status["lastRun"]["deleted"].as_u64(), Some((before_jobs + KPS_TASKS) as u64));
    assert_eq!(status["lastRun"]["remaining"].as_u64(), Some(0));
    assert_eq!(status["totalDeleted"].as_u64(), Some((before_jobs + KPS_TASKS) as u64));
    assert_eq!(jobs(&emu), 0, "group-level and in-group failures alike");
    assert!(emu.store().failed_tasks(PROJECT).is_empty());
}

#[tokio::test]
async fn purge_fails_loudly_without_leaking_the_secret() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = write(dir.path(), "ca.pem", emu.ca_pem().expect("TLS emulator"));
    let file = write(dir.path(), "policy.yaml", &policy(&emu.url(), false));
    let wrong = "not-the-secret-key-but-a-long-one";
    let creds = write(
        dir.path(),
        "creds.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: creds}}\nstringData: {{accessKeyId: {AK}, secretAccessKey: {wrong}}}\n"
        ),
    );
    let args = [
        "purge",
        "-f",
        &file,
        "--credentials",
        &creds,
        "--endpoint-allowlist",
        "127.0.0.1",
        "--ca-bundle",
        &ca,
    ];
    let out = taskreaper(&args).await;
    assert!(!out.status.success());
    let status = status_of(&out);
    assert_eq!(ready(&status), ("False".into(), "AuthenticationFailed".into()));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains(wrong), "the secret key leaked:\n{all}");
    assert_eq!(emu.store().calls().deletes, 0);
    assert!(emu.store().calls().total <= 2, "one refused list per target, no retries");

    // An endpoint off the allowlist: nothing is sent at all.
    let before = emu.store().calls().total;
    let args = ["purge", "-f", &file, "--credentials", &creds, "--ca-bundle", &ca];
    let out = taskreaper(&args).await;
    assert!(!out.status.success());
    assert_eq!(ready(&status_of(&out)), ("False".into(), "EndpointNotAllowed".into()));
    assert_eq!(emu.store().calls().total, before);
}

/// `purge` refuses an endpoint with a password, a path or a query with the CRD's own messages,
/// without quoting the password and without a call.
#[tokio::test]
async fn purge_refuses_endpoints_that_are_more_than_an_origin() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let creds = write(dir.path(), "creds.yaml", &format!("accessKeyId: {AK}\nsecretAccessKey: {SK}\n"));
    let host = emu.url().trim_start_matches("https://").to_string();
    let text = policy(&emu.url(), false)
        .replace(&format!("sdrs: \"{}\"", emu.url()), &format!("sdrs: \"https://admin:hunter2@{host}/v1\""))
        .replace(&format!("kps: \"{}\"", emu.url()), &format!("kps: \"https://{host}/?debug=1\""));
    let file = write(dir.path(), "policy.yaml", &text);
    let out =
        taskreaper(&["purge", "-f", &file, "--credentials", &creds, "--endpoint-allowlist", "127.0.0.1"])
            .await;
    assert!(!out.status.success());
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let flat = all.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(ready(&status_of(&out)), ("False".into(), "InvalidSpec".into()), "{all}");
    for expected in [
        "spec.endpoints.sdrs must not hold a user name or password (user:password@host)",
        "spec.endpoints.sdrs must not have a path (only empty or /)",
        "spec.endpoints.kps must not have a query (?...) or a fragment (#...)",
    ] {
        assert!(flat.contains(expected), "{expected:?} missing from:\n{all}");
    }
    assert!(!all.contains("hunter2"), "the password was quoted:\n{all}");
    assert_eq!(emu.store().calls().total, 0);
}

#[tokio::test]
async fn demo_takes_every_failed_task_to_zero() {
    let out = taskreaper(&["demo"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let total = stdout.lines().find(|l| l.starts_with("all failed tasks")).expect("a totals line");
    let numbers: Vec<u64> = total.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(numbers.len(), 2, "{total}");
    assert!(numbers[0] > 100 && numbers[1] == 0, "{total}");
    assert!(stdout.contains("reason: Purged"), "{stdout}");
}

#[tokio::test]
async fn crd_prints_what_crds_holds() {
    let out = taskreaper(&["crd"]).await;
    assert!(out.status.success());
    let checked_in = include_str!("../crds/failedtaskcleanuppolicies.taskreaper.io.yaml");
    assert_eq!(String::from_utf8_lossy(&out.stdout), checked_in);
}

/// `purge` with a policy that names a region instead of project ids: the projects come from the
/// emulator's IAM (`--iam-endpoint`), signed with the same keys; other regions are left alone.
#[tokio::test]
async fn purge_discovers_the_projects_of_a_region_at_iam() {
    const OTHER: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";
    let config = Config {
        access_keys: BTreeMap::from([(AK.to_string(), Secret::new(SK))]),
        tls: true,
        ..Config::default()
    };
    let seed = Seed::Generated { projects: vec![PROJECT.into(), OTHER.into()], tasks_per_kind: 2, seed: 5 };
    let emu = Emulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), config, seed).await.expect("emulator");
    emu.iam().name_projects([
        (PROJECT.to_string(), "cn-north-4".to_string()),
        (OTHER.to_string(), "cn-east-3".to_string()),
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = write(dir.path(), "ca.pem", emu.ca_pem().expect("TLS emulator"));
    let creds = write(dir.path(), "creds.yaml", &format!("accessKeyId: {AK}\nsecretAccessKey: {SK}\n"));
    let url = emu.url();
    let text = policy(&url, false)
        .replace(&format!("projects: [{{id: {PROJECT}}}]"), "projectDiscovery: {regions: [cn-north-4]}");
    assert!(text.contains("projectDiscovery"));
    let file = write(dir.path(), "discover.yaml", &text);
    let tasks = |p: &str| emu.store().failed_tasks(p).len();
    let other_before = (tasks(OTHER), emu.store().failure_jobs(OTHER).len());
    let args = ["purge", "-f", &file, "--endpoint-allowlist", "127.0.0.1", "--ca-bundle", &ca];

    // The default IAM endpoint is not on this allowlist: refused before any call.
    let out = taskreaper(&[&args[..], &["--credentials", &creds]].concat()).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(ready(&status_of(&out)), ("False".into(), "EndpointNotAllowed".into()));
    assert_eq!(emu.store().calls().total, 0);

    // Wrong keys: IAM refuses them, and the secret is shown nowhere.
    let wrong = write(dir.path(), "wrong.yaml", &format!("accessKeyId: {AK}\nsecretAccessKey: not-{SK}\n"));
    let out = taskreaper(&[&args[..], &["--credentials", &wrong, "--iam-endpoint", &url]].concat()).await;
    assert_eq!(ready(&status_of(&out)), ("False".into(), "AuthenticationFailed".into()));
    let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!shown.contains(SK), "{shown}");
    assert!(tasks(PROJECT) > 0);

    let out = taskreaper(&[&args[..], &["--credentials", &creds, "--iam-endpoint", &url]].concat()).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = status_of(&out);
    assert_eq!(ready(&status), ("True".into(), "Purged".into()), "{status}");
    let rows = status["lastRun"]["targets"].as_array().expect("rows");
    assert!(!rows.is_empty() && rows.iter().all(|r| r["project"] == PROJECT), "{status}");
    assert_eq!(tasks(PROJECT), 0);
    assert!(emu.store().failure_jobs(PROJECT).is_empty());
    assert_eq!((tasks(OTHER), emu.store().failure_jobs(OTHER).len()), other_before, "cn-east-3 untouched");
}
