//! Secrets never appear: representative scenarios (AK/SK with a security token, an IAM token,
//! rejected keys then fixed, throttling and garbage from the cloud) run against the real
//! kube-apiserver and the emulator with distinctive secret values, while everything the controller
//! can show is captured: every log line of this process (the in-process controller, the emulator,
//! kube and the HTTP stacks), every Event of the scenarios' namespaces, and every version of every
//! policy (and so every status written) seen by a watch opened before the policy existed. The test
//! fails if any secret value, or any request signature the emulator received, appears anywhere.
//!
//! Run through `bash tests/run.sh`, or with `TASKREAPER_CONTROL_PLANE_BIN` set.

mod common;

use std::sync::{Arc, Mutex, PoisonError};

use common::e2e::{
    AK, AUTH_TOKEN, Env, PROJECT_A, SECRET_PICKUP, SECURITY_TOKEN, SK, assert_not_logged, captured_logs,
    kps_all, sdrs_all,
};
use futures::StreamExt as _;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::watcher;
use taskreaper::api::FailedTaskCleanupPolicy;
use taskreaper::emulator::{Faults, Seed};
use tokio::task::JoinHandle;

/// A secret key the emulator rejects; distinctive, never to be shown either.
const WRONG_SK: &str = "e2e-wrong-sk-never-shown-4c1e9b7d2a60";

fn generated() -> Seed {
    Seed::Generated { projects: vec![PROJECT_A.into()], tasks_per_kind: 2, seed: 5 }
}

/// Every version of every policy in a namespace, as JSON, from a watch opened before any policy.
struct Recorder {
    seen: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Recorder {
    async fn start(env: &Env) -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let api = Api::<FailedTaskCleanupPolicy>::namespaced(env.admin.clone(), &env.ns);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut events = watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                    }
                    Ok(
                        watcher::Event::Apply(p) | watcher::Event::InitApply(p) | watcher::Event::Delete(p),
                    ) => {
                        let json =
                            serde_json::to_string(&p).unwrap_or_else(|e| format!("(unserializable: {e})"));
                        sink.lock().unwrap_or_else(PoisonError::into_inner).push(json);
                    }
                    Ok(watcher::Event::Init) | Err(_) => {}
                }
            }
        });
        ready_rx.await.expect("the policy watch started");
        Recorder { seen, task }
    }

    /// The versions seen, stopping the watch.
    fn finish(self) -> Vec<String> {
        self.task.abort();
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// What one scenario left behind.
struct Shown {
    scenario: &'static str,
    policies: Vec<String>,
    events: Vec<String>,
    signatures: Vec<String>,
    calls: u64,
}

async fn collect(scenario: &'static str, env: Env, recorder: Recorder) -> Shown {
    let events = Api::<Event>::namespaced(env.admin.clone(), &env.ns)
        .list(&ListParams::default())
        .await
        .expect("listing events")
        .items
        .iter()
        .map(|e| serde_json::to_string(e).expect("serializing an event"))
        .collect();
    let signatures = env.emulator.store().signatures();
    let calls = env.calls().total;
    env.finish().await;
    // Status writes made while stopping are in the watch too.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    Shown { scenario, policies: recorder.finish(), events, signatures, calls }
}

async fn ak_sk_with_security_token() -> Shown {
    let env = Env::start("secrets-sts", generated()).await;
    let recorder = Recorder::start(&env).await;
    env.create_secret_with(&[
        ("accessKeyId", AK),
        ("secretAccessKey", SK),
        ("securityToken", SECURITY_TOKEN),
    ])
    .await;
    env.create(&env.policy("sts", &[PROJECT_A], vec![sdrs_all(), kps_all()])).await;
    env.wait_ready("sts", "True", "Purged").await;
    env.wait_event("sts", "Normal", "Purged", |_| true).await;
    collect("AK/SK with a security token", env, recorder).await
}

async fn iam_token() -> Shown {
    let env = Env::start("secrets-token", generated()).await;
    let recorder = Recorder::start(&env).await;
    env.create_secret_with(&[("authToken", AUTH_TOKEN)]).await;
    env.create(&env.policy("token", &[PROJECT_A], vec![kps_all()])).await;
    env.wait_ready("token", "True", "Purged").await;
    env.wait_event("token", "Normal", "Purged", |_| true).await;
    collect("IAM token", env, recorder).await
}

async fn wrong_keys_then_fixed() -> Shown {
    let env = Env::start("secrets-wrong", generated()).await;
    let recorder = Recorder::start(&env).await;
    env.create_secret(AK, WRONG_SK).await;
    env.create(&env.policy("wrong", &[PROJECT_A], vec![sdrs_all(), kps_all()])).await;
    env.wait_ready("wrong", "False", "AuthenticationFailed").await;
    env.wait_event("wrong", "Warning", "AuthenticationFailed", |_| true).await;
    env.set_secret_key(SK).await;
    env.wait_ready_within("wrong", "True", "Purged", SECRET_PICKUP).await;
    collect("rejected keys, then fixed", env, recorder).await
}

async fn throttling_and_garbage() -> Shown {
    let env = Env::with_credentials("secrets-faults", generated()).await;
    let recorder = Recorder::start(&env).await;
    let store = env.emulator.store();
    store.set_faults(Faults { error_rate: 1.0, error_statuses: vec![429], ..Faults::default() });
    env.create(&env.policy("faults", &[PROJECT_A], vec![sdrs_all(), kps_all()])).await;
    env.wait_ready("faults", "False", "Throttled").await;
    store.set_faults(Faults { malformed_rate: 1.0, ..Faults::default() });
    env.request_run("faults", "garbage", "1").await;
    env.wait_handled("faults", "garbage").await;
    store.set_faults(Faults::default());
    env.request_run("faults", "recovered", "2").await;
    env.wait_handled("faults", "recovered").await;
    collect("throttling and garbage", env, recorder).await
}

#[tokio::test]
async fn no_secret_or_signature_shows_in_logs_events_or_any_status() {
    // The capture works: a marker logged here is found (so an empty search cannot pass silently).
    common::e2e::init_tracing();
    tracing::info!(marker = "capture-check-5e0d", "log capture check");

    let shown = tokio::join!(
        ak_sk_with_security_token(),
        iam_token(),
        wrong_keys_then_fixed(),
        throttling_and_garbage()
    );
    let shown = [shown.0, shown.1, shown.2, shown.3];

    let logs = captured_logs();
    assert!(logs.contains("capture-check-5e0d"), "the log capture missed the marker");
    assert!(logs.contains("purge run finished"), "the controller's own logs were captured");
    // The scenarios ran with exactly the shipped permissions: nothing was refused.
    if let Some(line) = logs.lines().find(|l| l.to_ascii_lowercase().contains("forbidden")) {
        panic!("the controller was refused something it needs:\n{line}");
    }
    let mut needles: Vec<String> = [SK, WRONG_SK, SECURITY_TOKEN, AUTH_TOKEN].map(String::from).to_vec();
    for s in &shown {
        println!(
            "{}: {} policy versions, {} events, {} signatures, {} calls",
            s.scenario,
            s.policies.len(),
            s.events.len(),
            s.signatures.len(),
            s.calls
        );
        assert!(s.calls > 0, "{}: the scenario reached the emulator", s.scenario);
        assert!(!s.policies.is_empty() && !s.events.is_empty(), "{}: nothing was captured", s.scenario);
        needles.extend(s.signatures.iter().cloned());
    }
    let signed = shown.iter().map(|s| s.signatures.len()).sum::<usize>();
    assert!(signed >= 10, "the AK/SK scenarios sent signed requests; only {signed} signatures seen");
    assert!(shown[1].signatures.is_empty(), "the token scenario sends no signature");
    println!("{} log bytes, {} secret values and signatures searched", logs.len(), needles.len());

    assert_not_logged("a secret value or a request signature", &needles);
    for s in &shown {
        for (what, texts) in [("a policy version (status)", &s.policies), ("an Event", &s.events)] {
            for text in texts {
                for needle in &needles {
                    assert!(
                        !text.contains(needle.as_str()),
                        "{}: {what} shows {needle:?}:\n{text}",
                        s.scenario
                    );
                }
            }
        }
        let statuses = s.policies.iter().filter(|p| p.contains("\"status\"")).count();
        assert!(statuses > 0, "{}: no status was seen", s.scenario);
    }
}
