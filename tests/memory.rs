//! Memory of one run at scale, measured on the `taskreaper` binary as a user runs it: a dry run of a
//! KPS Matching policy over one project holding 175,000 failed tasks, with the peak resident set size
//! (`VmHWM`) read from `/proc` while it runs.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use taskreaper::cloud::credentials::Secret;
use taskreaper::cloud::model::FailedTask;
use taskreaper::emulator::{Config, Emulator, Seed};

const PROJECT: &str = "0605767b5c00d4bb2f10c01a1e3b3a7e";
const AK: &str = "HPUAMEMORYTESTKEY";
const SK: &str = "memory-test-secret-key-0123";
const TASKS: usize = 175_000;
/// The bound the README states.
const PEAK_LIMIT_KIB: u64 = 64 * 1024;

/// Tasks in the documented shape, with fields as long as real ones.
fn tasks() -> Vec<FailedTask> {
    let ops = ["FAILED_RESET", "FAILED_REPLACE", "FAILED_UNBIND"];
    (0..TASKS)
        .map(|i| FailedTask {
            task_id: format!("{:08x}-5484-4753-9177-{:012x}", i, i * 7919),
            operate_type: ops[i % 3].into(),
            task_time: (1_700_000_000_000u64 + i as u64 * 1000).to_string(),
            task_error_code: if i % 5 == 2 { String::new() } else { "KPS.2011".into() },
            task_error_msg: "Failed to inject the public key: the server is not running.".into(),
            server_name: format!("ecs-prod-web-{i:06}"),
            server_id: format!("c9aa197b-a6b6-4c33-b3a6-{:012x}", i),
            keypair_name: format!("{}-deploy-{:02}", if i % 2 == 0 { "kp" } else { "ops" }, i % 100),
        })
        .collect()
}

/// The kernel's peak resident set of `pid`, in KiB, while the process lives.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_over_175000_tasks_stays_under_64_mib() {
    let config = Config {
        access_keys: BTreeMap::from([(AK.to_string(), Secret::new(SK))]),
        tls: true,
        ..Config::default()
    };
    let emulator = Emulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), config, Seed::Empty)
        .await
        .expect("emulator starts");
    emulator.store().add_failed_tasks(PROJECT, tasks());
    let url = emulator.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write a temporary file");
        path.to_string_lossy().into_owned()
    };
    let ca = write("ca.pem", emulator.ca_pem().expect("TLS emulator"));
    let creds = write("creds.yaml", &format!("accessKeyId: {AK}\nsecretAccessKey: {SK}\n"));
    let policy = write(
        "policy.yaml",
        &format!(
            "apiVersion: taskreaper.io/v1alpha1
kind: FailedTaskCleanupPolicy
metadata: {{name: large, namespace: platform}}
spec:
  credentialsRef: {{name: creds}}
  region: cn-north-4
  endpoints: {{kps: \"{url}\"}}
  projects: [{{id: {PROJECT}}}]
  targets:
    - {{service: KPS, scope: Matching, match: {{operateTypes: [FAILED_UNBIND], namePattern: \"^kp-\", olderThan: 24h}}}}
  schedule: {{interval: 1h}}
  dryRun: true
"
        ),
    );

    let started = Instant::now();
    let mut child = common::binary::taskreaper()
        .args([
            "purge",
            "-f",
            &policy,
            "--credentials",
            &creds,
            "--endpoint-allowlist",
            "127.0.0.1",
            "--ca-bundle",
            &ca,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect(common::binary::START_FAILED);
    let pid = child.id().expect("the child has a pid");
    let mut peak = 0u64;
    let waited = loop {
        if let Some(kib) = peak_kib(pid) {
            peak = peak.max(kib);
        }
        match tokio::time::timeout(Duration::from_millis(5), child.wait()).await {
            Ok(status) => break status.expect("wait for taskreaper purge"),
            Err(_) if started.elapsed() > Duration::from_secs(300) => {
                panic!("taskreaper purge ran over 300 s")
            }
            Err(_) => {}
        }
    };
    let output = child.wait_with_output().await.expect("collect the output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(waited.success(), "purge failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let status: serde_json::Value = serde_saphyr::from_str(&stdout).expect("status YAML");
    let run = &status["status"]["lastRun"];
    // FAILED_UNBIND is every third task; of those, the even ones have a `kp-` key pair.
    let expected = (0..TASKS).filter(|i| i % 3 == 2 && i % 2 == 0).count() as u64;
    assert_eq!(run["found"].as_u64(), Some(expected), "{stdout}");
    // maxDeletionsPerRun (default 1000) bounds what a run would delete.
    assert_eq!(run["wouldDelete"].as_u64(), Some(expected.min(1000)), "{stdout}");
    assert!(peak > 0, "VmHWM was never read");
    println!(
        "dry run over {TASKS} KPS tasks: {expected} matched, peak RSS {:.1} MiB (limit {} MiB), {:.1} s",
        peak as f64 / 1024.0,
        PEAK_LIMIT_KIB / 1024,
        started.elapsed().as_secs_f64()
    );
    assert!(peak < PEAK_LIMIT_KIB, "peak RSS {peak} KiB is over {PEAK_LIMIT_KIB} KiB");
    emulator.shutdown().await;
}
