//! The `taskreaper emulator` command's flags and their translation into the emulator's plain
//! [`RunOptions`]; running it does network, file and terminal I/O (in [`crate::emulator::run`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::cloud::credentials::Secret;
use crate::emulator::{
    Config, DEMO_ACCESS_KEY, DEMO_PROJECTS, DEMO_SECRET_KEY, EmulatorError, Faults, IamSettings, KpsTaskTime,
    OidcProvider, RateLimitSetting, RunOptions, SdrsListing, Seed,
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

fn parse_project_name(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((id, name)) if !id.is_empty() && !name.is_empty() => Ok((id.to_string(), name.to_string())),
        _ => Err("expected PROJECT_ID=NAME with both parts non-empty".to_string()),
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
    /// Chance (0..1) that any call, DELETEs included, is answered 200 with an HTML page and not
    /// handled.
    #[arg(long, default_value_t = 0.0)]
    pub html_rate: f64,
    /// Chance (0..1) that a DELETE is answered as a success without deleting anything.
    #[arg(long, default_value_t = 0.0)]
    pub ignore_delete_rate: f64,
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
    /// IAM: the identity provider id (X-Idp-Id) whose ID tokens --oidc-jwks-file verifies.
    #[arg(long, default_value = "kubernetes")]
    pub oidc_idp_id: String,
    /// IAM: the issuer (iss) the identity provider's ID tokens must carry, e.g. the cluster's
    /// --service-account-issuer.
    #[arg(long)]
    pub oidc_issuer: Option<String>,
    /// IAM: an audience (aud) the identity provider accepts; repeatable.
    #[arg(long = "oidc-audience")]
    pub oidc_audiences: Vec<String>,
    /// IAM: the issuer's public keys as a JWKS file (a cluster serves it at /openid/v1/jwks).
    /// Changeable later with PUT /_emulator/iam/providers/{idp_id}.
    #[arg(long, requires = "oidc_issuer")]
    pub oidc_jwks_file: Option<PathBuf>,
    /// IAM: a project's name, as PROJECT_ID=NAME (a region's main project is named after the
    /// region); repeatable. GET /v3/projects?name= and /v3/auth/projects list these.
    #[arg(long = "project-name", value_name = "PROJECT_ID=NAME", value_parser = parse_project_name)]
    pub project_names: Vec<(String, String)>,
    /// IAM: the shortest duration_seconds accepted for temporary credentials.
    #[arg(long, default_value_t = 900)]
    pub min_credential_seconds: u64,
    /// IAM: the longest temporary credentials last, whatever was asked (lower it to see refreshes).
    #[arg(long, default_value_t = 86400)]
    pub max_credential_seconds: u64,
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
                html_rate: self.html_rate,
                ignore_delete_rate: self.ignore_delete_rate,
                fail_next: Vec::new(),
                hostile_ids: self.hostile_ids,
            },
            tls: self.tls,
            fault_seed: self.seed,
            sdrs_listing: self.sdrs_listing.into(),
            kps_task_time: self.kps_task_time.into(),
            rate_limit: RateLimitSetting { per_key: self.rate_limit_per_key, burst: 0 },
            iam: IamSettings {
                providers: BTreeMap::new(),
                projects: self.project_names.iter().cloned().collect(),
                min_duration: std::time::Duration::from_secs(self.min_credential_seconds),
                max_duration: std::time::Duration::from_secs(self.max_credential_seconds),
            },
            ..Config::default()
        }
    }

    /// The identity provider of `--oidc-*`, its JWKS read from the file; `None` without one.
    pub fn oidc_provider(&self) -> Result<Option<(String, OidcProvider)>, EmulatorError> {
        let Some(path) = &self.oidc_jwks_file else { return Ok(None) };
        let (Some(issuer), false) = (&self.oidc_issuer, self.oidc_audiences.is_empty()) else {
            return Err(EmulatorError::IncompleteOidc);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|source| EmulatorError::ReadJwks { path: path.clone(), source })?;
        let jwks = serde_json::from_str(&text)
            .map_err(|source| EmulatorError::ParseJwks { path: path.clone(), source })?;
        let provider = OidcProvider { issuer: issuer.clone(), audiences: self.oidc_audiences.clone(), jwks };
        Ok(Some((self.oidc_idp_id.clone(), provider)))
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
    let mut options = args.options();
    if let Some((idp_id, provider)) = args.oidc_provider()? {
        options.config.iam.providers.insert(idp_id, provider);
    }
    crate::emulator::run(options).await
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
            "--html-rate=0.05",
            "--ignore-delete-rate=0.25",
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
                html_rate: 0.05,
                ignore_delete_rate: 0.25,
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
    fn oidc_flags_give_an_identity_provider() {
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, r#"{"keys":[{"kty":"RSA","kid":"k","n":"sXch","e":"AQAB"}]}"#).unwrap();
        let jwks_arg = format!("--oidc-jwks-file={}", jwks.display());
        let args = parse(&[
            "--oidc-issuer=https://kubernetes.default.svc",
            "--oidc-audience=iam",
            &jwks_arg,
            "--project-name=p1=cn-north-4",
            "--max-credential-seconds=30",
            "--min-credential-seconds=1",
        ])
        .unwrap();
        let (idp, provider) = args.oidc_provider().unwrap().unwrap();
        assert_eq!(
            (idp.as_str(), provider.issuer.as_str()),
            ("kubernetes", "https://kubernetes.default.svc")
        );
        assert_eq!(provider.jwks.keys.len(), 1);
        let iam = args.config().iam;
        assert_eq!(iam.projects["p1"], "cn-north-4");
        assert_eq!(iam.max_duration.as_secs(), 30);
        assert!(parse(&[]).unwrap().oidc_provider().unwrap().is_none());
        let no_audience = parse(&["--oidc-issuer=https://x", &jwks_arg]).unwrap();
        assert!(matches!(no_audience.oidc_provider(), Err(EmulatorError::IncompleteOidc)));
        assert!(parse(&[&jwks_arg]).is_err(), "--oidc-jwks-file needs --oidc-issuer");
        assert!(parse(&["--project-name=p1"]).is_err());
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
