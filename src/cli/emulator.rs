//! The `taskreaper emulator` command's flags and their translation into the emulator's plain
//! [`RunOptions`]; running it does network, file and terminal I/O (in [`crate::emulator::run`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::cloud::credentials::Secret;
use crate::emulator::{
    Config, DEMO_ACCESS_KEY, DEMO_PROJECTS, DEMO_SECRET_KEY, EmulatorError, Faults, KpsTaskTime,
    RateLimitSetting, RunOptions, SdrsListing, Seed,
};

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
    /// JSON seed file: {"projects": {"<project_id>": {"server_groups": [...], "failure_jobs": [...],
    /// "failed_tasks": [...]}}}. Replaces the generated tasks.
    #[arg(long)]
    pub seed_file: Option<PathBuf>,
    /// Project ids to generate tasks for, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = DEMO_PROJECTS.map(String::from))]
    pub projects: Vec<String>,
    /// Generated SDRS jobs per documented resource type and KPS tasks per documented operate type, in
    /// each project (plus one dangling group-level job, one job of an undocumented resource type and
    /// one task of an undocumented operate type per project).
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
    /// Requests per second each access key may make (bursts of one second's worth) before the
    /// gateway answers 429 APIGW.0308 with Retry-After; 0 for no limit.
    #[arg(long, default_value_t = 0)]
    pub rate_limit_per_key: u32,
    /// Chance (0..1) that a connection is closed without an answer.
    #[arg(long, default_value_t = 0.0)]
    pub reset_rate: f64,
    /// Chance (0..1) that a list answer is cut short or not JSON.
    #[arg(long, default_value_t = 0.0)]
    pub malformed_rate: f64,
    /// List answers also show tasks, and a protection group, whose ids are not safe in a URL path
    /// (empty, ., .., batch, a/b, ...). Changeable later with PUT /_emulator/faults.
    #[arg(long)]
    pub hostile_ids: bool,
    /// Serve HTTPS with a certificate made at start.
    #[arg(long)]
    pub tls: bool,
    /// Write the CA certificate (PEM) clients should trust to this file; needs --tls.
    #[arg(long, requires = "tls")]
    pub ca_out: Option<PathBuf>,
    /// Which SDRS failures the list shows without server_group_id: only protection-group-level
    /// ones (strict, as the API reference says) or every failure (loose). Changeable later with
    /// PUT /_emulator/modes.
    #[arg(long, value_enum, default_value_t = SdrsListingArg::Strict)]
    pub sdrs_listing: SdrsListingArg,
    /// How KPS writes task_time: epoch milliseconds as a JSON string (as documented) or as a JSON
    /// number. Changeable later with PUT /_emulator/modes.
    #[arg(long, value_enum, default_value_t = KpsTaskTimeArg::String)]
    pub kps_task_time: KpsTaskTimeArg,
}

/// `--sdrs-listing`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SdrsListingArg {
    Strict,
    Loose,
}

impl From<SdrsListingArg> for SdrsListing {
    fn from(arg: SdrsListingArg) -> Self {
        match arg {
            SdrsListingArg::Strict => SdrsListing::Strict,
            SdrsListingArg::Loose => SdrsListing::Loose,
        }
    }
}

/// `--kps-task-time`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KpsTaskTimeArg {
    String,
    Number,
}

impl From<KpsTaskTimeArg> for KpsTaskTime {
    fn from(arg: KpsTaskTimeArg) -> Self {
        match arg {
            KpsTaskTimeArg::String => KpsTaskTime::String,
            KpsTaskTimeArg::Number => KpsTaskTime::Number,
        }
    }
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
                hostile_ids: self.hostile_ids,
            },
            tls: self.tls,
            fault_seed: self.seed,
            sdrs_listing: self.sdrs_listing.into(),
            kps_task_time: self.kps_task_time.into(),
            rate_limit: RateLimitSetting { per_key: self.rate_limit_per_key, burst: 0 },
            ..Config::default()
        }
    }

    /// Everything the emulator process needs from these flags.
    pub fn options(&self) -> RunOptions {
        RunOptions {
            listen: self.listen,
            config: self.config(),
            seed: self.seed(),
            ca_out: self.ca_out.clone(),
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
    crate::emulator::run(args.options()).await
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
        assert_eq!(config.rate_limit.per_key, 0, "no rate limit unless asked");
        assert_eq!(config.faults.error_statuses, [429, 500, 503]);
        assert_eq!((config.sdrs_listing, config.kps_task_time), (SdrsListing::Strict, KpsTaskTime::String));
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
            "--rate-limit-per-key=50",
            "--latency-ms=7",
            "--reset-rate=0.1",
            "--malformed-rate=0.2",
            "--hostile-ids",
            "--tls",
            "--ca-out=/tmp/ca.pem",
            "--seed-file=/tmp/seed.json",
            "--sdrs-listing=loose",
            "--kps-task-time",
            "number",
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
                hostile_ids: true,
            }
        );
        assert!(config.tls);
        assert_eq!(config.rate_limit, RateLimitSetting { per_key: 50, burst: 0 });
        assert_eq!((config.sdrs_listing, config.kps_task_time), (SdrsListing::Loose, KpsTaskTime::Number));
        assert_eq!(args.seed(), Seed::File("/tmp/seed.json".into()));
        let options = args.options();
        assert_eq!(options.ca_out, Some("/tmp/ca.pem".into()));
        assert_eq!(options.listen, "0.0.0.0:0".parse().unwrap());
        assert!(!format!("{args:?}").contains("SK1"), "secrets stay hidden");
    }

    #[test]
    fn rejects_bad_flags() {
        assert!(parse(&["--access-key=nosecret"]).is_err());
        assert!(parse(&["--access-key=:sk"]).is_err());
        assert!(parse(&["--ca-out=/tmp/x.pem"]).is_err(), "--ca-out needs --tls");
        assert!(parse(&["--sdrs-listing=lax"]).is_err());
        assert!(parse(&["--kps-task-time=seconds"]).is_err());
    }
}
