//! High availability: two `taskreaper run --leader-election` processes against the real
//! kube-apiserver, as the controller identity with the shipped RBAC (the ClusterRole, and the
//! leader-election Role in the namespace of the Lease). One holds the Lease and does
//! the work; when it dies, the other takes over.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::control_plane::Identity;
use common::e2e::{AK, Env, PROJECT_A, SK, kps_all};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use taskreaper::cloud::model::FailedTask;
use taskreaper::emulator::Seed;
use tokio::process::Child;

const LEASE: &str = "taskreaper-leader";

/// Starts a replica.
fn replica(env: &Env, name: &str, ca: &std::path::Path) -> Child {
    let kubeconfig = env.cp.kubeconfig_path(Identity::Controller);
    common::binary::taskreaper()
        .args(["run", "--leader-election", "--lease-duration-secs", "6", "--metrics-addr", "127.0.0.1:0"])
        .args(["--namespace", &env.ns, "--lease-namespace", &env.ns, "--endpoint-allowlist", "127.0.0.1"])
        .arg("--ca-bundle")
        .arg(ca)
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", name)
        .stdout(Stdio::null())
        .spawn()
        .expect(common::binary::START_FAILED)
}

async fn holder(env: &Env) -> Option<String> {
    let lease = Api::<Lease>::namespaced(env.admin.clone(), &env.ns).get_opt(LEASE).await.ok()??;
    lease.spec?.holder_identity
}

async fn wait_holder(env: &Env, not: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(h) = holder(env).await
            && Some(h.as_str()) != not
        {
            return h;
        }
        assert!(Instant::now() < deadline, "no new Lease holder (other than {not:?}) within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn task(id: &str) -> FailedTask {
    FailedTask {
        task_id: id.into(),
        operate_type: "FAILED_UNBIND".into(),
        keypair_name: "kp-1".into(),
        ..FailedTask::default()
    }
}

#[tokio::test]
async fn one_replica_leads_and_a_standby_takes_over() {
    let env = Env::without_controller("e2e-ha", Seed::Empty).await;
    // The Lease lives in the test namespace: grant the shipped leader-election Role there.
    common::e2e::grant_leases(env.cp, &env.ns).await;
    env.create_secret(AK, SK).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, env.emulator.ca_pem().expect("HTTPS emulator")).expect("write the CA");
    let mut replicas =
        vec![("replica-a", replica(&env, "replica-a", &ca)), ("replica-b", replica(&env, "replica-b", &ca))];

    let leader = wait_holder(&env, None).await;
    env.emulator.store().add_failed_tasks(PROJECT_A, vec![task("t-1"), task("t-2")]);
    env.create(&env.policy("ha", &[PROJECT_A], vec![kps_all()])).await;
    env.wait_ready("ha", "True", "Purged").await;
    assert!(env.task_ids(PROJECT_A).is_empty());
    let first = env.wait_event("ha", "Normal", "Purged", |note| note.contains("2 deleted")).await;
    assert_eq!(first.reporting_instance.as_deref(), Some(leader.as_str()), "the leader did the work");
    let lists = env.calls().route("GET", taskreaper::emulator::KPS_TASKS);
    assert_eq!(lists, 2, "one replica listed before and after; the standby made no call");

    // The leader dies; the standby takes the Lease and handles the next request.
    let index = replicas.iter().position(|(name, _)| *name == leader).expect("the holder is one of ours");
    let (_, mut dead) = replicas.remove(index);
    dead.kill().await.expect("kill the leader");
    let successor = wait_holder(&env, Some(&leader)).await;
    assert_eq!(successor, replicas[0].0);
    env.emulator.store().add_failed_tasks(PROJECT_A, vec![task("t-3")]);
    env.request_run("ha", "after-failover", "1").await;
    env.wait_handled("ha", "after-failover").await;
    assert!(env.task_ids(PROJECT_A).is_empty());
    let second = env.wait_event("ha", "Normal", "Purged", |note| note.contains("1 deleted")).await;
    assert_eq!(second.reporting_instance.as_deref(), Some(successor.as_str()));

    for (_, mut child) in replicas {
        child.kill().await.expect("stop the replica");
    }
    env.finish().await;
}

/// A Lease left by a dead replica whose clock ran an hour ahead (renewTime an hour in the future)
/// is taken within 2 lease durations: the standby judges it by its own observed time only.
#[tokio::test]
async fn a_lease_renewed_an_hour_in_the_future_is_taken_within_two_lease_durations() {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    let env = Env::without_controller("e2e-ha-clock", Seed::Empty).await;
    common::e2e::grant_leases(env.cp, &env.ns).await;
    let ahead = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let lease = Lease {
        metadata: ObjectMeta { name: Some(LEASE.into()), ..ObjectMeta::default() },
        spec: Some(LeaseSpec {
            holder_identity: Some("dead-replica-clock-ahead".into()),
            lease_duration_seconds: Some(6),
            acquire_time: Some(MicroTime(ahead)),
            renew_time: Some(MicroTime(ahead)),
            ..LeaseSpec::default()
        }),
    };
    Api::<Lease>::namespaced(env.admin.clone(), &env.ns)
        .create(&Default::default(), &lease)
        .await
        .expect("create the dead replica's Lease");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, env.emulator.ca_pem().expect("HTTPS emulator")).expect("write the CA");
    let started = Instant::now();
    let mut standby = replica(&env, "replica-standby", &ca);
    let holder = wait_holder(&env, Some("dead-replica-clock-ahead")).await;
    let took = started.elapsed();
    println!("a Lease renewed an hour ahead (lease 6 s) was taken after {:.1} s", took.as_secs_f64());
    assert_eq!(holder, "replica-standby");
    assert!(took <= Duration::from_secs(12), "taken after {took:?}, more than 2 lease durations");
    standby.kill().await.expect("stop the replica");
    env.finish().await;
}
