//! A replica's life and death under leader election: two `taskreaper run --leader-election`
//! processes against the real kube-apiserver and the emulator, with the emulator slowed down so
//! that a run is in progress when it matters.
//!
//! - SIGTERM mid-run: the leader stops deleting, writes what it measured, gives the Lease up and
//!   exits 0; the standby leads at once.
//! - SIGINT without leader election, with a call stuck: the grace period ends it; exit 0.
//! - Fencing: the leader is cut off from the API server mid-run; from the emulator's call log, no
//!   DELETE of the old leader arrives after the new leader's first call.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::control_plane::Identity;
use common::e2e::{AK, Env, PROJECT_A, SK, condition, kps_matching};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use taskreaper::api::{ConditionType, TaskMatch};
use taskreaper::cloud::model::FailedTask;
use taskreaper::emulator::{CallRecord, Faults, Seed};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Child;
use tokio::task::AbortHandle;

const LEASE: &str = "taskreaper-leader";
/// Tasks seeded; with the latency below and one call at a time, deleting them takes ~10 s.
const TASKS: usize = 40;
const LATENCY_MS: u64 = 250;

struct Replica {
    child: Child,
    log: PathBuf,
}

impl Replica {
    /// Starts a replica with a 6 s Lease, a 3 s renew deadline and a 3 s shutdown grace, one cloud
    /// call at a time, talking to the API server through `kubeconfig`.
    fn start(env: &Env, name: &'static str, kubeconfig: &Path, dir: &Path) -> Replica {
        Self::start_with(env, name, kubeconfig, dir, &["--leader-election"])
    }

    /// [`Self::start`], with `election` instead of `--leader-election`.
    fn start_with(
        env: &Env,
        name: &'static str,
        kubeconfig: &Path,
        dir: &Path,
        election: &[&str],
    ) -> Replica {
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("create the replica's log");
        let child = common::binary::taskreaper()
            .arg("run")
            .args(election)
            .args(["--lease-duration-secs", "6", "--renew-deadline-secs", "3"])
            .args(["--shutdown-grace-secs", "3", "--concurrency", "1", "--metrics-addr", "127.0.0.1:0"])
            .args(["--namespace", &env.ns, "--lease-namespace", &env.ns, "--endpoint-allowlist", "127.0.0.1"])
            .arg("--ca-bundle")
            .arg(dir.join("ca.pem"))
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", name)
            .env("RUST_LOG", "taskreaper=info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect(common::binary::START_FAILED);
        Replica { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

async fn holder(env: &Env) -> Option<String> {
    let lease = Api::<Lease>::namespaced(env.admin.clone(), &env.ns).get_opt(LEASE).await.ok()??;
    lease.spec?.holder_identity
}

async fn wait_holder(env: &Env, want: &str, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        if holder(env).await.as_deref() == Some(want) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{want} did not hold the Lease within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn task(i: usize) -> FailedTask {
    FailedTask {
        task_id: format!("t-{i:03}"),
        operate_type: "FAILED_UNBIND".into(),
        keypair_name: "kp-1".into(),
        ..FailedTask::default()
    }
}

/// A world with the credentials Secret, the emulator's CA in `dir`, [`TASKS`] KPS failed tasks
/// and every cloud call slowed by [`LATENCY_MS`].
async fn world(prefix: &str, dir: &Path) -> Env {
    let env = Env::without_controller(prefix, Seed::Empty).await;
    // The shipped lease Role, in the namespace the replicas keep their Lease in.
    common::e2e::grant_leases(env.cp, &env.ns).await;
    env.create_secret(AK, SK).await;
    std::fs::write(dir.join("ca.pem"), env.emulator.ca_pem().expect("HTTPS emulator")).expect("write the CA");
    env.emulator.store().add_failed_tasks(PROJECT_A, (0..TASKS).map(task));
    env.emulator.store().set_faults(Faults { latency_ms: LATENCY_MS, ..Faults::default() });
    env
}

/// Now, as the emulator's call log stamps arrivals.
fn unix_micros() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970");
    u64::try_from(since.as_micros()).expect("fits")
}

/// The emulator's log of calls from one replica (by the name in its User-Agent).
fn calls_of(log: &[CallRecord], replica: &str) -> Vec<CallRecord> {
    let tag = format!("({replica})");
    log.iter().filter(|c| c.user_agent.ends_with(&tag)).cloned().collect()
}

async fn wait_deletes(env: &Env, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.calls().deletes < at_least {
        assert!(Instant::now() < deadline, "fewer than {at_least} DELETEs within 60 s: {:?}", env.calls());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigterm_mid_run_writes_what_was_measured_releases_the_lease_and_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = world("e2e-sigterm", dir.path()).await;
    let kubeconfig = env.cp.kubeconfig_path(Identity::Controller);
    let mut a = Replica::start(&env, "replica-a", &kubeconfig, dir.path());
    wait_holder(&env, "replica-a", Duration::from_secs(30)).await;
    let mut b = Replica::start(&env, "replica-b", &kubeconfig, dir.path());

    env.create(&env.policy("life", &[PROJECT_A], vec![kps_matching(TaskMatch::default())])).await;
    wait_deletes(&env, 4).await;
    let pid = a.child.id().expect("the leader runs");
    let signalled = Instant::now();
    let signalled_at = unix_micros();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    assert!(killed.expect("run kill").success(), "SIGTERM sent");

    let exit = tokio::time::timeout(Duration::from_secs(30), a.child.wait())
        .await
        .unwrap_or_else(|_| panic!("the leader did not exit within 30 s of SIGTERM; its log:\n{}", a.log()))
        .expect("wait for the leader");
    let exited = Instant::now();
    assert_eq!(exit.code(), Some(0), "the leader exits 0 on SIGTERM; its log:\n{}", a.log());
    let leads = wait_holder(&env, "replica-b", Duration::from_secs(10)).await;
    let takeover = leads.saturating_duration_since(exited);
    println!(
        "SIGTERM -> exit {:?}; exit -> standby holds the Lease {takeover:?} (SIGTERM -> standby {:?})",
        exited - signalled,
        leads - signalled,
    );
    assert!(takeover <= Duration::from_secs(2), "the standby led {takeover:?} after the leader exited");

    // The leader's status: written at shutdown, with the deletions it measured.
    let policy = env.get("life").await;
    let status = policy.status.clone().expect("status written");
    let reconciling = condition(&policy, ConditionType::Reconciling).expect("Reconciling condition");
    assert_eq!(reconciling.status, "False", "the cut run is not left in progress: {status:?}");
    let gone = (TASKS - env.task_ids(PROJECT_A).len()) as u64;
    let last = status.last_run.clone().expect("lastRun written");
    println!(
        "cut run: found {}, deleted {} (measured), totalDeleted {}, gone from the emulator {gone}; Ready {:?}",
        last.found,
        last.deleted,
        status.total_deleted,
        condition(&policy, ConditionType::Ready).map(|c| (&c.status, &c.reason)),
    );
    assert_eq!(last.found, TASKS as u64);
    assert!(last.deleted >= 4 && (last.deleted as usize) < TASKS, "deleted {}", last.deleted);
    assert_eq!(status.total_deleted, last.deleted, "the measured deletions are added to totalDeleted");
    assert_eq!(last.deleted, gone, "what status says was deleted is what left the emulator");
    // No DELETE starts after the signal; one admitted in the instant the signal took to arrive may.
    let log = env.calls().log;
    let a_deletes: Vec<_> =
        calls_of(&log, "replica-a").into_iter().filter(|c| c.method == "DELETE").collect();
    let late = a_deletes.iter().filter(|c| c.at_micros > signalled_at).count();
    println!("replica-a sent {} DELETEs, {late} arriving after SIGTERM was sent", a_deletes.len());
    assert!(late <= 1, "DELETEs sent after SIGTERM: {late}");
    assert!(
        calls_of(&log, "replica-b").is_empty(),
        "the standby made no cloud call: it led only after the leader left, and the cut run's retry is 30 s away"
    );

    // A leader that has just taken over (its policy list may not be done) stops at once and leaves
    // the Lease free.
    let pid = b.child.id().expect("the new leader runs");
    let signalled = Instant::now();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    assert!(killed.expect("run kill").success(), "SIGTERM sent");
    let exit = tokio::time::timeout(Duration::from_secs(10), b.child.wait())
        .await
        .unwrap_or_else(|_| panic!("the idle leader did not exit within 10 s; its log:\n{}", b.log()))
        .expect("wait for the new leader");
    println!("new leader: SIGTERM -> exit {:?}", signalled.elapsed());
    assert_eq!(exit.code(), Some(0), "the idle leader exits 0; its log:\n{}", b.log());
    assert_eq!(holder(&env).await, None, "the Lease was given up");
    env.finish().await;
}

#[tokio::test]
async fn sigint_without_leader_election_cuts_a_stuck_call_after_the_grace_and_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = world("e2e-sigint", dir.path()).await;
    let kubeconfig = env.cp.kubeconfig_path(Identity::Controller);
    let mut solo = Replica::start_with(&env, "solo", &kubeconfig, dir.path(), &[]);
    env.create(&env.policy("solo", &[PROJECT_A], vec![kps_matching(TaskMatch::default())])).await;
    wait_deletes(&env, 3).await;
    // The next call hangs for 60 s: only the grace (3 s) can end it.
    env.emulator.store().set_faults(Faults { latency_ms: 60_000, ..Faults::default() });
    let hung = env.calls().total;
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.calls().total == hung {
        assert!(Instant::now() < deadline, "no call reached the slow emulator");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signalled = Instant::now();
    let pid = solo.child.id().expect("the controller runs");
    let killed = std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status();
    assert!(killed.expect("run kill").success(), "SIGINT sent");
    let exit = tokio::time::timeout(Duration::from_secs(30), solo.child.wait())
        .await
        .unwrap_or_else(|_| panic!("no exit within 30 s of SIGINT; the log:\n{}", solo.log()))
        .expect("wait for the controller");
    let took = signalled.elapsed();
    println!("SIGINT -> exit {took:?} with a call stuck for 60 s and a 3 s grace");
    assert_eq!(exit.code(), Some(0), "exit 0 on SIGINT; the log:\n{}", solo.log());
    assert!(took < Duration::from_secs(8), "the grace bounds the stuck call: exit took {took:?}");

    let policy = env.get("solo").await;
    let status = policy.status.clone().expect("status written");
    let reconciling = condition(&policy, ConditionType::Reconciling).expect("Reconciling condition");
    assert_eq!(reconciling.status, "False", "the cut run is not left in progress: {status:?}");
    let last = status.last_run.clone().expect("lastRun written");
    println!(
        "cut run: found {}, deleted {} (measured), totalDeleted {}, remaining {:?}; Ready {:?}",
        last.found,
        last.deleted,
        status.total_deleted,
        last.remaining,
        condition(&policy, ConditionType::Ready).map(|c| (&c.status, &c.reason, &c.message)),
    );
    assert_eq!(status.total_deleted, last.deleted, "totalDeleted holds what was measured");
    env.finish().await;
}

/// A TCP proxy on loopback to `upstream`, which the test can cut: every connection is dropped and
/// no new one is accepted.
struct Proxy {
    port: u16,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let registry = tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().expect("proxy registry").push(conn.abort_handle());
            }
        });
        tasks.lock().expect("proxy registry").push(accept.abort_handle());
        Proxy { port, tasks }
    }

    fn cut(&self) {
        for task in self.tasks.lock().expect("proxy registry").drain(..) {
            task.abort();
        }
    }
}

#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_sends_no_delete_once_a_standby_may_lead() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = world("e2e-fence", dir.path()).await;
    let server = env.cp.server_url().to_string();
    let proxy = Proxy::start(server.trim_start_matches("https://").to_string()).await;
    let direct = env.cp.kubeconfig_path(Identity::Controller);
    let proxied = dir.path().join("kubeconfig-proxied.yaml");
    let text = std::fs::read_to_string(&direct).expect("read the controller kubeconfig");
    assert!(text.contains(&server), "the kubeconfig names the API server {server}");
    let through_proxy = text.replace(&server, &format!("https://127.0.0.1:{}", proxy.port));
    std::fs::write(&proxied, through_proxy).expect("write the proxied kubeconfig");

    let mut a = Replica::start(&env, "replica-a", &proxied, dir.path());
    wait_holder(&env, "replica-a", Duration::from_secs(30)).await;
    let mut b = Replica::start(&env, "replica-b", &direct, dir.path());

    env.create(&env.policy("fence", &[PROJECT_A], vec![kps_matching(TaskMatch::default())])).await;
    wait_deletes(&env, 3).await;
    proxy.cut();
    let cut = Instant::now();
    let cut_at = unix_micros();
    println!("cut replica-a off from the API server after {} DELETEs", env.calls().deletes);

    // Unable to renew, the old leader steps down (and exits) before its Lease can pass on.
    let exit = tokio::time::timeout(Duration::from_secs(30), a.child.wait())
        .await
        .unwrap_or_else(|_| panic!("the cut-off leader did not stop within 30 s; its log:\n{}", a.log()))
        .expect("wait for the old leader");
    let stopped = cut.elapsed();
    let leads = wait_holder(&env, "replica-b", Duration::from_secs(30)).await;
    println!(
        "replica-a stepped down and stopped ({exit}) {stopped:?} after the cut; replica-b holds the Lease {:?} after the cut",
        leads - cut
    );
    // The new leader runs the policy now.
    env.request_run("fence", "after-cut", "1").await;
    env.wait_handled("fence", "after-cut").await;

    let log = env.calls().log;
    let (old, new) = (calls_of(&log, "replica-a"), calls_of(&log, "replica-b"));
    let first_new = new.first().expect("replica-b called the cloud").at_micros;
    let old_deletes: Vec<&CallRecord> = old.iter().filter(|c| c.method == "DELETE").collect();
    let last_old = old_deletes.last().expect("replica-a deleted before the cut").at_micros;
    let late: Vec<_> = old_deletes.iter().filter(|c| c.at_micros >= first_new).collect();
    let after_cut = old_deletes.iter().filter(|c| c.at_micros > cut_at).count();
    let ms = |micros: i64| micros as f64 / 1000.0;
    println!(
        "replica-a: {} DELETEs ({after_cut} after the cut), the last {} ms after the cut and {} ms before \
         replica-b's first call ({} ms after the cut); replica-b: {} calls",
        old_deletes.len(),
        ms(last_old as i64 - cut_at as i64),
        ms(first_new as i64 - last_old as i64),
        ms(first_new as i64 - cut_at as i64),
        new.len(),
    );
    assert!(late.is_empty(), "DELETEs of the old leader after the new leader's first call: {late:?}");
    // The fence closes at the last renewal (before the cut) plus the renew deadline (3 s), well
    // before the Lease (6 s) can pass to the standby; 1 s allowed for a DELETE to arrive.
    assert!(
        last_old < cut_at + 4_000_000,
        "the old leader deleted {} ms after the cut, past its renew deadline",
        ms(last_old as i64 - cut_at as i64)
    );
    assert!(a.log().contains("stepping down"), "the old leader says it stepped down; its log:\n{}", a.log());
    assert!(env.task_ids(PROJECT_A).is_empty(), "the new leader finished the job");

    b.child.kill().await.expect("stop the standby");
    env.finish().await;
}
