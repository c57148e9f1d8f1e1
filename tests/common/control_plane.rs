//! A real Kubernetes control plane for integration tests: etcd and
//! kube-apiserver, built from Go modules by `tests/control-plane/build.sh`.
//!
//! The binaries are found through `TASKREAPER_CONTROL_PLANE_BIN` (a
//! directory holding `kube-apiserver` and `etcd`); `bash tests/run.sh` builds
//! them and sets it. A test without them panics: it is never skipped.
//!
//! What runs: one etcd and one kube-apiserver on free loopback ports, with
//! their files (serving certificate, service-account key, static token file,
//! kubeconfigs, etcd data, logs) in a fresh temporary directory. The API
//! server authorizes with RBAC and knows two identities (see [`Identity`]).
//! There is no controller manager or scheduler: garbage collection of owned
//! objects, namespace deletion, service-account tokens and pods being run do
//! not happen.
//!
//! Lifetime: [`ControlPlane::shared`] starts one control plane per test binary
//! on first use; [`ControlPlane::start`] starts a private one that is torn
//! down when dropped. Either way the processes are started, through
//! `setpriv --pdeathsig KILL`, by a long-lived thread dedicated to that
//! control plane, so the kernel kills them when that thread ends, which at the
//! latest is when the test binary exits, whether its tests passed, failed or
//! panicked, or the binary itself was killed. The temporary directory is
//! removed by a small `sh` sentinel that sees the test binary go away, and any
//! directory left behind by a binary that died anyway is removed the next
//! time a control plane starts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Config};

/// Environment variable naming the directory with `kube-apiserver` and `etcd`.
pub const BIN_ENV: &str = "TASKREAPER_CONTROL_PLANE_BIN";

/// Field manager the helpers use for server-side apply.
pub const FIELD_MANAGER: &str = "taskreaper-tests";

/// Label put on every namespace made by [`ControlPlane::new_namespace`].
pub const TEST_NAMESPACE_LABEL: &str = "taskreaper.io/test-namespace";

/// How long etcd plus kube-apiserver may take to become ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a CRD may take to become Established.
const CRD_TIMEOUT: Duration = Duration::from_secs(60);

/// Lines of each process log quoted when something goes wrong.
const LOG_TAIL_LINES: usize = 40;

/// Prefix of the temporary directories; the owning process id follows it.
const DIR_PREFIX: &str = "taskreaper-control-plane-";

/// Who a client or kubeconfig authenticates as (static bearer tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// User `admin` in group `system:masters`: allowed everything.
    Admin,
    /// User `taskreaper-controller` with no groups beyond
    /// `system:authenticated`: allowed only what RBAC objects grant it.
    Controller,
}

impl Identity {
    pub const ALL: [Identity; 2] = [Identity::Admin, Identity::Controller];

    /// The Kubernetes user name.
    pub fn user(self) -> &'static str {
        match self {
            Identity::Admin => "admin",
            Identity::Controller => "taskreaper-controller",
        }
    }

    /// Groups given in the token file (besides `system:authenticated`).
    pub fn groups(self) -> &'static [&'static str] {
        match self {
            Identity::Admin => &["system:masters"],
            Identity::Controller => &[],
        }
    }
}

/// A running etcd + kube-apiserver pair. See the module documentation.
pub struct ControlPlane {
    dir: PathBuf,
    server: String,
    etcd_url: String,
    tokens: BTreeMap<&'static str, String>,
    pids: Vec<(&'static str, u32)>,
    ports: Vec<(&'static str, u16)>,
    sentinel_pid: u32,
    /// Requests to the supervisor thread; dropping it stops the control plane.
    stop: Option<mpsc::Sender<Request>>,
    supervisor: Option<thread::JoinHandle<()>>,
}

/// What the supervisor thread can be asked to do besides tearing down (which dropping the sender
/// asks). The answer comes back on the enclosed channel.
enum Request {
    /// Kill and reap kube-apiserver, keeping etcd and the files.
    StopApiserver(mpsc::Sender<Result<(), String>>),
    /// Start kube-apiserver again with the same flags and port; answers its pid once ready.
    StartApiserver(mpsc::Sender<Result<u32, String>>),
}

static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
static NAMESPACE_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ControlPlane {
    /// The control plane shared by all tests of this test binary, started on
    /// first use. Tests share it, so each should work in its own namespace
    /// ([`Self::new_namespace`]) and give cluster-scoped objects unique names.
    pub fn shared() -> &'static ControlPlane {
        match SHARED.get_or_init(Self::launch) {
            Ok(control_plane) => control_plane,
            Err(message) => panic!("the shared test control plane failed to start:\n{message}"),
        }
    }

    /// A private control plane, stopped (processes killed and reaped, files
    /// removed) when the value is dropped. Slower than [`Self::shared`]; use
    /// it for tests that need a pristine or disposable cluster.
    pub fn start() -> ControlPlane {
        Self::launch().unwrap_or_else(|message| panic!("the test control plane failed to start:\n{message}"))
    }

    /// `https://127.0.0.1:<port>` of the API server.
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// `http://127.0.0.1:<port>` of etcd.
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// The temporary directory holding everything of this control plane.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The PEM certificate of the CA that signed the API server's certificate.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("pki/ca.crt")
    }

    /// The bearer token of an identity.
    pub fn token(&self, identity: Identity) -> &str {
        &self.tokens[identity.user()]
    }

    /// Process ids of the running `etcd` and `kube-apiserver`.
    pub fn pids(&self) -> &[(&'static str, u32)] {
        &self.pids
    }

    /// Loopback ports the control plane listens on: etcd's client and peer
    /// ports and the API server's.
    pub fn ports(&self) -> &[(&'static str, u16)] {
        &self.ports
    }

    /// Process id of the `sh` sentinel that removes [`Self::dir`] once the
    /// test binary has gone (it is not part of the control plane and outlives
    /// the binary by a second or so).
    pub fn sentinel_pid(&self) -> u32 {
        self.sentinel_pid
    }

    /// A kubeconfig file for an identity, usable with `kubectl --kubeconfig`.
    pub fn kubeconfig_path(&self, identity: Identity) -> PathBuf {
        self.dir.join(format!("kubeconfig-{}.yaml", identity.user()))
    }

    /// A client authenticated as `identity`. Make clients inside the test's
    /// own runtime (they are bound to it), not in a shared static.
    pub async fn client(&self, identity: Identity) -> Client {
        let path = self.kubeconfig_path(identity);
        let kubeconfig =
            Kubeconfig::read_from(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
        Client::try_from(config).unwrap_or_else(|e| panic!("building a client from {}: {e}", path.display()))
    }

    /// A client for user `admin` (group `system:masters`).
    pub async fn admin_client(&self) -> Client {
        self.client(Identity::Admin).await
    }

    /// A client for user `taskreaper-controller` (RBAC grants only).
    pub async fn controller_client(&self) -> Client {
        self.client(Identity::Controller).await
    }

    /// Creates a namespace with a unique name starting with `prefix` and
    /// returns its name.
    pub async fn new_namespace(&self, prefix: &str) -> String {
        let name = unique_name(prefix);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(TEST_NAMESPACE_LABEL.to_owned(), "true".to_owned())])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.admin_client().await)
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        name
    }

    /// Server-side applies (as admin) the one CustomResourceDefinition in
    /// `yaml` and waits until it is Established.
    pub async fn apply_crd(&self, yaml: &str) -> CustomResourceDefinition {
        let mut crds = self.apply_crds(yaml).await;
        assert_eq!(crds.len(), 1, "apply_crd expects exactly one CustomResourceDefinition in the YAML");
        crds.remove(0)
    }

    /// Server-side applies (as admin) every CustomResourceDefinition in a
    /// (possibly multi-document) YAML text and waits until each is Established.
    pub async fn apply_crds(&self, yaml: &str) -> Vec<CustomResourceDefinition> {
        let mut crds = Vec::new();
        let documents: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("parsing CRD YAML: {e}"));
        for value in documents {
            if value.is_null() {
                continue;
            }
            let crd: CustomResourceDefinition = serde_json::from_value(value)
                .unwrap_or_else(|e| panic!("the YAML is not a CustomResourceDefinition: {e}"));
            crds.push(crd);
        }
        let mut applied = Vec::with_capacity(crds.len());
        for crd in &crds {
            applied.push(self.apply_crd_object(crd).await);
        }
        applied
    }

    /// Server-side applies (as admin) a CustomResourceDefinition, e.g. one
    /// made by `kube::CustomResourceExt::crd()`, and waits until it is
    /// Established.
    pub async fn apply_crd_object(&self, crd: &CustomResourceDefinition) -> CustomResourceDefinition {
        let name = crd.metadata.name.clone().expect("the CustomResourceDefinition has no metadata.name");
        let api = Api::<CustomResourceDefinition>::all(self.admin_client().await);
        api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(crd))
            .await
            .unwrap_or_else(|e| panic!("applying CustomResourceDefinition {name}: {e}"));
        match tokio::time::timeout(
            CRD_TIMEOUT,
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        {
            Ok(Ok(Some(established))) => established,
            Ok(Ok(None)) => panic!("CustomResourceDefinition {name} disappeared while waiting for it"),
            Ok(Err(e)) => panic!("waiting for CustomResourceDefinition {name}: {e}"),
            Err(_) => {
                let status = api.get(&name).await.map(|crd| format!("{:?}", crd.status));
                panic!(
                    "CustomResourceDefinition {name} not Established after {CRD_TIMEOUT:?}; status: {status:?}"
                )
            }
        }
    }

    /// Kills kube-apiserver (SIGKILL) and waits until it has exited; etcd keeps running, so
    /// [`Self::start_apiserver`] brings back the same cluster. Clients see connection errors
    /// meanwhile. Do this only on a private control plane ([`Self::start`]), never the shared one.
    pub fn stop_apiserver(&self) {
        let (tx, rx) = mpsc::channel();
        self.request(Request::StopApiserver(tx));
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => panic!("stopping kube-apiserver: {message}"),
            Err(_) => panic!("the control-plane thread went away while stopping kube-apiserver"),
        }
    }

    /// Starts kube-apiserver again (same flags, port, certificates and tokens) after
    /// [`Self::stop_apiserver`] and waits until it is ready; returns its new process id. Panics
    /// with the logs when it does not become ready within the startup timeout.
    pub fn start_apiserver(&self) -> u32 {
        let (tx, rx) = mpsc::channel();
        self.request(Request::StartApiserver(tx));
        match rx.recv() {
            Ok(Ok(pid)) => pid,
            Ok(Err(message)) => panic!("restarting kube-apiserver: {message}"),
            Err(_) => panic!("the control-plane thread went away while restarting kube-apiserver"),
        }
    }

    fn request(&self, request: Request) {
        let sender = self.stop.as_ref().expect("the control plane is running");
        if sender.send(request).is_err() {
            panic!("the control-plane thread has stopped");
        }
    }

    /// The last lines of the etcd and kube-apiserver logs, for diagnostics.
    pub fn logs_tail(&self) -> String {
        logs_tail(&self.dir)
    }

    fn launch() -> Result<ControlPlane, String> {
        let bin = binaries_dir();
        for tool in ["setpriv", "openssl", "sh"] {
            if find_in_path(tool).is_none() {
                panic!(
                    "the test control plane needs `{tool}` on PATH (setpriv: util-linux; openssl: the openssl package)"
                );
            }
        }
        remove_stale_dirs();
        let dir = make_dir()?;
        let plan = match prepare(&bin, &dir) {
            Ok(plan) => plan,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let server = format!("https://127.0.0.1:{}", plan.apiserver_port);
        let etcd_url = format!("http://127.0.0.1:{}", plan.etcd_port);
        let tokens = plan.tokens.clone();
        let ports = vec![
            ("etcd", plan.etcd_port),
            ("etcd-peer", plan.etcd_peer_port),
            ("kube-apiserver", plan.apiserver_port),
        ];

        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel();
        let supervisor = thread::Builder::new()
            .name("control-plane".into())
            .spawn(move || supervise(plan, ready_tx, stop_rx))
            .map_err(|e| format!("spawning the control-plane thread: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(started)) => Ok(ControlPlane {
                dir,
                server,
                etcd_url,
                tokens,
                pids: started.pids,
                ports,
                sentinel_pid: started.sentinel_pid,
                stop: Some(stop_tx),
                supervisor: Some(supervisor),
            }),
            Ok(Err(message)) => {
                let _ = supervisor.join();
                Err(message)
            }
            Err(_) => {
                let _ = supervisor.join();
                Err("the control-plane thread died while starting (see the panic above)".into())
            }
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Closing the channel tells the supervisor to kill, reap and clean up.
        drop(self.stop.take());
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.join();
        }
    }
}

/// Everything the supervisor thread needs to start the processes.
struct Plan {
    dir: PathBuf,
    etcd: (PathBuf, Vec<String>),
    apiserver: (PathBuf, Vec<String>),
    etcd_port: u16,
    etcd_peer_port: u16,
    apiserver_port: u16,
    tokens: BTreeMap<&'static str, String>,
    ca_pem: Vec<u8>,
}

fn binaries_dir() -> PathBuf {
    let hint = "run the tests with `bash tests/run.sh` (it builds kube-apiserver and etcd and sets it), \
                or set it to the directory printed by `bash tests/control-plane/build.sh`";
    let Some(dir) = std::env::var_os(BIN_ENV).filter(|v| !v.is_empty()) else {
        panic!("{BIN_ENV} is not set: these tests need a real kube-apiserver and etcd; {hint}");
    };
    let dir = PathBuf::from(dir);
    for name in ["kube-apiserver", "etcd"] {
        if !dir.join(name).is_file() {
            panic!("{BIN_ENV}={} has no `{name}` binary; {hint}", dir.display());
        }
    }
    dir
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|path| path.is_file())
}

fn make_dir() -> Result<PathBuf, String> {
    let base = std::env::temp_dir();
    let dir = base.join(format!("{DIR_PREFIX}{}-{}", std::process::id(), random_hex(6)));
    fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Removes directories left by test binaries that no longer run (normally
/// the sentinel removes them; this catches the rest).
fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else { continue };
        let Some(Ok(pid)) = rest.split('-').next().map(str::parse::<u32>) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Writes certificates, keys, the token file and kubeconfigs; picks ports.
fn prepare(bin: &Path, dir: &Path) -> Result<Plan, String> {
    let pki = dir.join("pki");
    fs::create_dir(&pki).map_err(|e| format!("creating {}: {e}", pki.display()))?;
    fs::write(
        pki.join("serving.ext"),
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n",
    )
    .map_err(|e| format!("writing serving.ext: {e}"))?;
    // EC P-256 keys: quick to generate, and supported by kube-apiserver and rustls.
    let ec_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(
        &pki,
        &format!(
            "req -x509 {ec_key} -keyout ca.key -out ca.crt -days 3650 -subj /CN=taskreaper-test-ca \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
    )?;
    openssl(
        &pki,
        &format!("req -new {ec_key} -keyout serving.key -out serving.csr -subj /CN=kube-apiserver"),
    )?;
    openssl(
        &pki,
        "x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
         -out serving.crt -extfile serving.ext",
    )?;
    openssl(&pki, "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sa.key")?;
    openssl(&pki, "pkey -in sa.key -pubout -out sa.pub")?;
    let ca_pem = fs::read(pki.join("ca.crt")).map_err(|e| format!("reading ca.crt: {e}"))?;

    let tokens: BTreeMap<&'static str, String> =
        Identity::ALL.iter().map(|identity| (identity.user(), random_hex(16))).collect();
    let mut token_file = String::new();
    for identity in Identity::ALL {
        let user = identity.user();
        let _ = write!(token_file, "{},{user},{user}", tokens[user]);
        if !identity.groups().is_empty() {
            let _ = write!(token_file, ",\"{}\"", identity.groups().join(","));
        }
        token_file.push('\n');
    }
    fs::write(dir.join("tokens.csv"), token_file).map_err(|e| format!("writing tokens.csv: {e}"))?;

    let [etcd_port, etcd_peer_port, apiserver_port] = free_ports()?;
    let server = format!("https://127.0.0.1:{apiserver_port}");
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");

    for identity in Identity::ALL {
        let user = identity.user();
        // JSON is YAML, and serde_json gets the quoting right.
        let kubeconfig = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": "taskreaper-test",
                "cluster": { "server": server, "certificate-authority": pki.join("ca.crt") },
            }],
            "users": [{ "name": user, "user": { "token": tokens[user] } }],
            "contexts": [{
                "name": user,
                "context": { "cluster": "taskreaper-test", "user": user, "namespace": "default" },
            }],
            "current-context": user,
        });
        let kubeconfig = serde_json::to_string_pretty(&kubeconfig).expect("serializing a kubeconfig");
        let path = dir.join(format!("kubeconfig-{user}.yaml"));
        fs::write(&path, kubeconfig).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }

    let path = |p: PathBuf| p.display().to_string();
    let etcd_args = vec![
        "--name=taskreaper-test".to_owned(),
        format!("--data-dir={}", path(dir.join("etcd-data"))),
        format!("--listen-client-urls={etcd_url}"),
        format!("--advertise-client-urls={etcd_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=taskreaper-test={peer_url}"),
        "--initial-cluster-state=new".to_owned(),
        // A test cluster survives no crash anyway; skipping fsync is much faster.
        "--unsafe-no-fsync=true".to_owned(),
        "--log-level=warn".to_owned(),
    ];
    let apiserver_args = vec![
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".to_owned(),
        "--advertise-address=127.0.0.1".to_owned(),
        format!("--secure-port={apiserver_port}"),
        format!("--cert-dir={}", path(dir.join("apiserver-certs"))),
        format!("--tls-cert-file={}", path(pki.join("serving.crt"))),
        format!("--tls-private-key-file={}", path(pki.join("serving.key"))),
        format!("--token-auth-file={}", path(dir.join("tokens.csv"))),
        "--authorization-mode=RBAC".to_owned(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
        format!("--service-account-key-file={}", path(pki.join("sa.pub"))),
        format!("--service-account-signing-key-file={}", path(pki.join("sa.key"))),
        "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
        "--allow-privileged=true".to_owned(),
        // No controller manager creates service accounts, so pods would be
        // refused while the ServiceAccount admission plugin waits for them.
        "--disable-admission-plugins=ServiceAccount".to_owned(),
        // Endpoints of the `kubernetes` service may not be loopback addresses.
        "--endpoint-reconciler-type=none".to_owned(),
        "--profiling=false".to_owned(),
    ];
    Ok(Plan {
        dir: dir.to_owned(),
        etcd: (bin.join("etcd"), etcd_args),
        apiserver: (bin.join("kube-apiserver"), apiserver_args),
        etcd_port,
        etcd_peer_port,
        apiserver_port,
        tokens,
        ca_pem,
    })
}

/// Runs `openssl` in `dir` with whitespace-separated arguments.
fn openssl(dir: &Path, args: &str) -> Result<(), String> {
    let args: Vec<&str> = args.split_whitespace().collect();
    let output = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running openssl: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`openssl {}` failed ({}):\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Distinct free loopback ports (all held open until all are picked).
fn free_ports<const N: usize>() -> Result<[u16; N], String> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("finding a free loopback port: {e}"))?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr().map_err(|e| format!("finding a free loopback port: {e}"))?.port();
    }
    Ok(ports)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).expect("reading /dev/urandom");
    hex::encode(buf)
}

/// `<prefix>-<n>-<random>`, a valid namespace name (DNS label).
fn unique_name(prefix: &str) -> String {
    let mut clean: String = prefix
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    clean.truncate(40);
    let clean = clean.trim_matches('-');
    let clean = if clean.is_empty() { "test" } else { clean };
    let n = NAMESPACE_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{clean}-{n}-{}", random_hex(3))
}

fn logs_tail(dir: &Path) -> String {
    let mut out = String::new();
    for name in ["etcd", "kube-apiserver"] {
        let path = dir.join(format!("{name}.log"));
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        let _ = writeln!(out, "--- last {} lines of {} ---", tail.len(), path.display());
        for line in tail {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// The processes of one control plane, owned by its supervisor thread.
#[derive(Default)]
struct Processes {
    children: Vec<(&'static str, Child)>,
    sentinel: Option<(Child, ChildStdin)>,
}

impl Processes {
    /// Starts `sh` waiting for end-of-file on a pipe whose only writer is
    /// this process; when the test binary exits, however it exits, the pipe
    /// closes and `sh` removes the directory.
    fn start_sentinel(&mut self, dir: &Path) -> Result<u32, String> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"read -r _; sleep 1; rm -rf -- "$1" || { sleep 2; rm -rf -- "$1"; }"#)
            .arg("taskreaper-control-plane-cleanup")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the cleanup sentinel: {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let pid = child.id();
        self.sentinel = Some((child, stdin));
        Ok(pid)
    }

    /// Starts a program under `setpriv --pdeathsig KILL`, so the kernel kills
    /// it when the calling (supervisor) thread ends. Output goes to
    /// `<dir>/<name>.log`.
    fn spawn(
        &mut self,
        name: &'static str,
        dir: &Path,
        program: &(PathBuf, Vec<String>),
    ) -> Result<u32, String> {
        let log_path = dir.join(format!("{name}.log"));
        let log = File::create(&log_path).map_err(|e| format!("creating {}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| format!("duplicating a file handle: {e}"))?;
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--"])
            .arg(&program.0)
            .args(&program.1)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("starting {name} ({}): {e}", program.0.display()))?;
        let pid = child.id();
        self.children.push((name, child));
        Ok(pid)
    }

    /// An error if a started process has already exited.
    fn check_running(&mut self) -> Result<(), String> {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{name} exited early ({status})"));
            }
        }
        Ok(())
    }

    /// Kills (SIGKILL) and reaps one named process, keeping the others.
    fn stop(&mut self, name: &str) -> Result<(), String> {
        let index = self
            .children
            .iter()
            .position(|(n, _)| *n == name)
            .ok_or_else(|| format!("{name} is not running"))?;
        let (_, mut child) = self.children.remove(index);
        child.kill().map_err(|e| format!("killing {name}: {e}"))?;
        child.wait().map_err(|e| format!("reaping {name}: {e}"))?;
        Ok(())
    }

    /// Kills and reaps everything (API server first), then removes `dir`.
    fn shutdown(&mut self, dir: &Path) {
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
        let _ = fs::remove_dir_all(dir);
        if let Some((mut child, stdin)) = self.sentinel.take() {
            let _ = child.kill();
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// What the supervisor thread reports once the control plane is ready.
struct Started {
    pids: Vec<(&'static str, u32)>,
    sentinel_pid: u32,
}

/// Body of the control plane's dedicated thread: starts the processes,
/// reports readiness, then waits for the `ControlPlane` to be dropped (which
/// never happens for the shared one) and tears down.
fn supervise(plan: Plan, ready: mpsc::Sender<Result<Started, String>>, stop: mpsc::Receiver<Request>) {
    let mut processes = Processes::default();
    let result = start_processes(&plan, &mut processes);
    let started = result.is_ok();
    let _ = ready.send(result);
    if started {
        // Ends when the sender is dropped, i.e. when the ControlPlane is.
        while let Ok(request) = stop.recv() {
            match request {
                Request::StopApiserver(answer) => {
                    let _ = answer.send(processes.stop("kube-apiserver"));
                }
                Request::StartApiserver(answer) => {
                    let _ = answer.send(restart_apiserver(&plan, &mut processes));
                }
            }
        }
    }
    processes.shutdown(&plan.dir);
}

/// Starts kube-apiserver again from this (supervisor) thread, so that `--pdeathsig` still ties it
/// to the thread, and waits until it is ready.
fn restart_apiserver(plan: &Plan, processes: &mut Processes) -> Result<u32, String> {
    if processes.children.iter().any(|(name, _)| *name == "kube-apiserver") {
        return Err("kube-apiserver is already running".into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("building a tokio runtime: {e}"))?;
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let pid = processes.spawn("kube-apiserver", &plan.dir, &plan.apiserver)?;
    runtime
        .block_on(wait_for_apiserver(plan, processes, deadline))
        .map_err(|e| format!("{e}\n{}", logs_tail(&plan.dir)))?;
    Ok(pid)
}

fn start_processes(plan: &Plan, processes: &mut Processes) -> Result<Started, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("building a tokio runtime: {e}"))?;
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let result = (|| {
        let sentinel_pid = processes.start_sentinel(&plan.dir)?;
        let etcd_pid = processes.spawn("etcd", &plan.dir, &plan.etcd)?;
        runtime.block_on(wait_for_etcd(plan, processes, deadline))?;
        let apiserver_pid = processes.spawn("kube-apiserver", &plan.dir, &plan.apiserver)?;
        runtime.block_on(wait_for_apiserver(plan, processes, deadline))?;
        Ok(Started { pids: vec![("etcd", etcd_pid), ("kube-apiserver", apiserver_pid)], sentinel_pid })
    })();
    result.map_err(|e: String| {
        format!("{e}\ncontrol plane directory: {}\n{}", plan.dir.display(), logs_tail(&plan.dir))
    })
}

async fn wait_for_etcd(plan: &Plan, processes: &mut Processes, deadline: Instant) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{}/health", plan.etcd_port);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("building an HTTP client: {e}"))?;
    loop {
        processes.check_running()?;
        let last = match http.get(&url).send().await {
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                if status.is_success() && body.contains("\"health\":\"true\"") {
                    return Ok(());
                }
                format!("{status}: {body}")
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            return Err(format!("etcd not healthy at {url} within {STARTUP_TIMEOUT:?}; last answer: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_apiserver(plan: &Plan, processes: &mut Processes, deadline: Instant) -> Result<(), String> {
    let url = format!("https://127.0.0.1:{}/readyz?verbose", plan.apiserver_port);
    let ca = reqwest::Certificate::from_pem(&plan.ca_pem).map_err(|e| format!("loading the test CA: {e}"))?;
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("building an HTTPS client: {e}"))?;
    let token = &plan.tokens[Identity::Admin.user()];
    loop {
        processes.check_running()?;
        let last = match http.get(&url).bearer_auth(token).send().await {
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                if status.is_success() {
                    return Ok(());
                }
                format!("{status}:\n{body}")
            }
            Err(e) => format!("{e:?}"),
        };
        if Instant::now() > deadline {
            return Err(format!(
                "kube-apiserver not ready at {url} within {STARTUP_TIMEOUT:?}; last answer: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
