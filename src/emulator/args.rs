//! The `taskreaper emulator` command: flags, then start, announce the URL on stdout and serve until
//! Ctrl-C or SIGTERM. Does network, file and terminal I/O.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::cloud::credentials::Secret;

use super::{Config, Emulator, EmulatorError, Faults, Seed};

/// Demo access key id, accepted when no `--access-key` is given. For local demos only.
pub const DEMO_ACCESS_KEY: &str = "DEMOACCESSKEY";
/// Secret key of [`DEMO_ACCESS_KEY`]. Public on purpose; never use it outside the emulator.
pub const DEMO_SECRET_KEY: &str = "demo-secret-key";
/// Projects generated when no `--projects` is given.
pub const DEMO_PROJECTS: [&str; 3] = [
    "0605767b5c00d4bb2f10c01a1e3b3a7e",
    "1b2c3d4e5f60718293a4b5c6d7e8f901",
    "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
];

/// An `AK:SK` pair from the command line.
#[derive(Clone, Debug)]
pub struct AccessKeyArg {
    pub access_key: String,
    pub secret_key: Secret,
}

fn parse_access_key(value: &str) -> Result<AccessKeyArg, String> {
    match value.split_once(':') {
        Some((ak, sk)) if !ak.is_empty() && !sk.is_empty() => {
            Ok(AccessKeyArg { access_key: ak.to_string(), secret_key: Secret::new(sk) })
        }
        _ => Err("expected AK:SK with both parts non-empty".to_string()),
    }
}

fn parse_secret(value: &str) -> Result<Secret, String> {
    if value.is_empty() { Err("must not be empty".to_string()) } else { Ok(Secret::new(value)) }
}

/// Runs a local SDRS + KPS failed-task endpoint (plain HTTP unless --tls).
#[derive(clap::Args, Debug, Clone)]
pub struct EmulatorArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8780")]
    pub listen: SocketAddr,
    /// JSON seed file: {"projects": {"<project_id>": {"failure_jobs": [...], "failed_tasks": [...]}}}.
    /// Replaces the generated tasks.
    #[arg(long)]
    pub seed_file: Option<PathBuf>,
    /// Project ids to generate tasks for, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = DEMO_PROJECTS.map(String::from))]
    pub projects: Vec<String>,
    /// Generated SDRS jobs per resource type and KPS tasks per operate type, in each project.
    #[arg(long, default_value_t = 10)]
    pub tasks_per_kind: usize,
    /// Seed of the task generator (and of fault chances); the same seed gives the same tasks.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Accepted access key pair, as AK:SK; repeatable. Without it the demo-only pair
    /// DEMOACCESSKEY:demo-secret-key is accepted.
    #[arg(long = "access-key", value_name = "AK:SK", value_parser = parse_access_key)]
    pub access_keys: Vec<AccessKeyArg>,
    /// Accepted IAM token for X-Auth-Token; repeatable.
    #[arg(long = "auth-token", value_name = "TOKEN", value_parser = parse_secret)]
    pub auth_tokens: Vec<Secret>,
    /// Latency added to every cloud call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Chance (0..1) that a cloud call fails with one of --error-statuses.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Statuses random failures pick from.
    #[arg(long, value_delimiter = ',', default_values_t = [429, 500, 503])]
    pub error_statuses: Vec<u16>,
    /// Retry-After seconds sent with 429.
    #[arg(long, default_value_t = 1)]
    pub retry_after_secs: u64,
    /// Chance (0..1) that a connection is closed without an answer.
    #[arg(long, default_value_t = 0.0)]
    pub reset_rate: f64,
    /// Chance (0..1) that a list answer is cut short or not JSON.
    #[arg(long, default_value_t = 0.0)]
    pub malformed_rate: f64,
    /// Serve HTTPS with a certificate made at start.
    #[arg(long)]
    pub tls: bool,
    /// Write the CA certificate (PEM) clients should trust to this file; needs --tls.
    #[arg(long, requires = "tls")]
    pub ca_out: Option<PathBuf>,
}

impl EmulatorArgs {
    /// The server configuration these flags describe.
    pub fn config(&self) -> Config {
        let access_keys: BTreeMap<String, Secret> = if self.access_keys.is_empty() {
            BTreeMap::from([(DEMO_ACCESS_KEY.to_string(), Secret::new(DEMO_SECRET_KEY))])
        } else {
            self.access_keys.iter().map(|k| (k.access_key.clone(), k.secret_key.clone())).collect()
        };
        Config {
            access_keys,
            auth_tokens: self.auth_tokens.clone(),
            faults: Faults {
                latency_ms: self.latency_ms,
                error_rate: self.error_rate,
                error_statuses: self.error_statuses.clone(),
                retry_after_secs: self.retry_after_secs,
                reset_rate: self.reset_rate,
                malformed_rate: self.malformed_rate,
                fail_next: Vec::new(),
            },
            tls: self.tls,
            fault_seed: self.seed,
            ..Config::default()
        }
    }

    /// The tasks to start with: the seed file when given, generated tasks otherwise.
    pub fn seed(&self) -> Seed {
        match &self.seed_file {
            Some(path) => Seed::File(path.clone()),
            None => Seed::Generated {
                projects: self.projects.clone(),
                tasks_per_kind: self.tasks_per_kind,
                seed: self.seed,
            },
        }
    }
}

/// Starts the emulator, prints `taskreaper emulator listening on <url>` and serves until
/// Ctrl-C or SIGTERM.
pub async fn run(args: EmulatorArgs) -> Result<(), EmulatorError> {
    if args.ca_out.is_some() && !args.tls {
        return Err(EmulatorError::CaOutWithoutTls);
    }
    let signals = ShutdownSignals::install()?;
    let emulator = Emulator::start(args.listen, args.config(), args.seed()).await?;
    if let (Some(path), Some(pem)) = (&args.ca_out, emulator.ca_pem()) {
        std::fs::write(path, pem).map_err(|source| EmulatorError::WriteCa { path: path.clone(), source })?;
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "taskreaper emulator listening on {}", emulator.url())
        .map_err(EmulatorError::Announce)?;
    stdout.flush().map_err(EmulatorError::Announce)?;
    drop(stdout);
    signals.wait().await?;
    emulator.shutdown().await;
    Ok(())
}

/// Ctrl-C and SIGTERM, listened to from creation on so that no signal is missed once the address
/// is announced.
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    #[cfg(unix)]
    fn install() -> Result<Self, EmulatorError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).map_err(EmulatorError::Signal)?,
            terminate: signal(SignalKind::terminate()).map_err(EmulatorError::Signal)?,
        })
    }

    #[cfg(unix)]
    async fn wait(mut self) -> Result<(), EmulatorError> {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn install() -> Result<Self, EmulatorError> {
        Ok(Self {})
    }

    #[cfg(not(unix))]
    async fn wait(self) -> Result<(), EmulatorError> {
        tokio::signal::ctrl_c().await.map_err(EmulatorError::Signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulatorArgs,
    }

    fn parse(argv: &[&str]) -> Result<EmulatorArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("emulator").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn defaults_give_the_demo_setup() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.listen, "127.0.0.1:8780".parse().unwrap());
        assert_eq!(args.projects, DEMO_PROJECTS);
        let config = args.config();
        assert_eq!(config.access_keys[DEMO_ACCESS_KEY].expose(), DEMO_SECRET_KEY);
        assert!(!config.tls);
        assert_eq!(config.faults.error_statuses, [429, 500, 503]);
        assert_eq!(
            args.seed(),
            Seed::Generated {
                projects: DEMO_PROJECTS.map(String::from).to_vec(),
                tasks_per_kind: 10,
                seed: 1
            }
        );
    }

    #[test]
    fn flags_fill_the_config() {
        let args = parse(&[
            "--listen=0.0.0.0:0",
            "--projects=a,b",
            "--access-key=AK1:SK1",
            "--access-key",
            "AK2:S:K2",
            "--auth-token=tok",
            "--error-rate=0.5",
            "--error-statuses=429,503",
            "--retry-after-secs=3",
            "--latency-ms=7",
            "--reset-rate=0.1",
            "--malformed-rate=0.2",
            "--tls",
            "--ca-out=/tmp/ca.pem",
            "--seed-file=/tmp/seed.json",
        ])
        .unwrap();
        let config = args.config();
        assert_eq!(config.access_keys.len(), 2);
        assert_eq!(config.access_keys["AK2"].expose(), "S:K2");
        assert_eq!(config.auth_tokens[0].expose(), "tok");
        assert_eq!(
            config.faults,
            Faults {
                latency_ms: 7,
                error_rate: 0.5,
                error_statuses: vec![429, 503],
                retry_after_secs: 3,
                reset_rate: 0.1,
                malformed_rate: 0.2,
                fail_next: vec![],
            }
        );
        assert!(config.tls);
        assert_eq!(args.seed(), Seed::File("/tmp/seed.json".into()));
        assert!(!format!("{args:?}").contains("SK1"), "secrets stay hidden");
    }

    #[test]
    fn rejects_bad_flags() {
        assert!(parse(&["--access-key=nosecret"]).is_err());
        assert!(parse(&["--access-key=:sk"]).is_err());
        assert!(parse(&["--ca-out=/tmp/x.pem"]).is_err(), "--ca-out needs --tls");
    }
}
