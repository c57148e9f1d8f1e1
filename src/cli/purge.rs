//! `taskreaper purge`: one run of one policy without Kubernetes. Reads files, calls the cloud, prints
//! the resulting status.

use super::rate::RateArgs;
use crate::api::{ConditionType, FailedTaskCleanupPolicy, FailedTaskCleanupPolicyStatus, ValidatedSpec};
use crate::cloud::{Allowlist, CloudHttp, EndpointPolicy, HttpConfig, RateLimiters, SystemClock};
use crate::controller::discover::ProjectDiscovery;
use crate::controller::pipeline::{self, Due, Host, SecretData};
use crate::controller::status::whole_seconds;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args, Debug, Clone)]
pub struct PurgeArgs {
    /// The FailedTaskCleanupPolicy YAML file.
    #[arg(short = 'f', long = "filename")]
    pub policy: PathBuf,
    /// The credentials: a Kubernetes Secret manifest, or a YAML map with accessKeyId and
    /// secretAccessKey (and optionally securityToken), or authToken.
    #[arg(long)]
    pub credentials: PathBuf,
    /// Hosts credentials may be sent to: exact names or `*.suffix`, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "*.myhuaweicloud.com")]
    pub endpoint_allowlist: Vec<String>,
    /// Extra CA certificates (PEM) to trust for cloud endpoints.
    #[arg(long)]
    pub ca_bundle: Option<PathBuf>,
    /// The IAM endpoint that lists the projects of a policy with spec.projectDiscovery (must pass
    /// --endpoint-allowlist).
    #[arg(long, env = "HUAWEICLOUD_SDK_IAM_ENDPOINT", default_value = crate::cloud::iam::DEFAULT_IAM_ENDPOINT)]
    pub iam_endpoint: String,
    /// Most cloud calls in flight.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    #[command(flatten)]
    pub rate: RateArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("reading {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a FailedTaskCleanupPolicy")]
    ParsePolicy {
        path: PathBuf,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    #[error("{path} is neither a Secret manifest nor a map of credential keys")]
    ParseCredentials { path: PathBuf },
    #[error("reading the endpoint allowlist")]
    ParseAllowlist(#[source] crate::cloud::EndpointError),
    #[error("building the cloud client")]
    BuildCloudClient(#[source] crate::cloud::CloudError),
    #[error("printing the status")]
    PrintStatus(#[source] serde_saphyr::ser::Error),
}

fn read(path: &Path) -> Result<String, PurgeError> {
    std::fs::read_to_string(path).map_err(|source| PurgeError::ReadFile { path: path.into(), source })
}

/// Reads credential keys from a Secret manifest (`data` and `stringData`) or a plain map.
pub fn credential_data(text: &str, path: &Path) -> Result<BTreeMap<String, Vec<u8>>, PurgeError> {
    if let Ok(secret) = serde_saphyr::from_str::<Secret>(text)
        && (secret.data.is_some() || secret.string_data.is_some())
    {
        let mut data: BTreeMap<String, Vec<u8>> =
            secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
        data.extend(secret.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())));
        return Ok(data);
    }
    serde_saphyr::from_str::<BTreeMap<String, String>>(text)
        .map(|map| map.into_iter().map(|(k, v)| (k, v.into_bytes())).collect())
        .map_err(|_| PurgeError::ParseCredentials { path: path.into() })
}

/// The `purge` command's side of [`pipeline::run_policy`]: the credentials come from a file, a run
/// is always due, and the status is only returned.
struct Once<'a> {
    credentials: &'a BTreeMap<String, Vec<u8>>,
    /// Where the policy came from: how audit records name it.
    source: &'a str,
    /// IAM, for a policy with `spec.projectDiscovery`.
    discovery: Option<&'a ProjectDiscovery>,
}

impl Host for Once<'_> {
    type Error = Infallible;

    fn policy_name(&self, _: &FailedTaskCleanupPolicy) -> String {
        self.source.to_string()
    }

    async fn secret(&mut self, _name: &str) -> Result<Option<SecretData>, Infallible> {
        Ok(Some(SecretData { data: self.credentials.clone(), version: None }))
    }

    fn discovery(&self) -> Option<&ProjectDiscovery> {
        self.discovery
    }

    fn due(
        &mut self,
        _: &ValidatedSpec,
        _: &FailedTaskCleanupPolicyStatus,
        _: Option<&str>,
        _: Timestamp,
    ) -> Due {
        Due::Now { request: None }
    }

    async fn write(&mut self, _status: &FailedTaskCleanupPolicyStatus) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Runs `policy` once with the given credential keys and returns the status a controller would
/// write; a suspended policy makes no call and says Suspended. Audit records name the policy
/// `source` (the file it was read from). A policy with `spec.projectDiscovery` needs `discovery`.
pub async fn purge_once(
    policy: &FailedTaskCleanupPolicy,
    source: &str,
    credentials: &BTreeMap<String, Vec<u8>>,
    http: &CloudHttp,
    discovery: Option<&ProjectDiscovery>,
) -> FailedTaskCleanupPolicyStatus {
    let now = whole_seconds(Timestamp::now());
    match pipeline::run_policy(policy, &mut Once { credentials, source, discovery }, http, now).await {
        Ok(finished) => finished.status,
        Err(never) => match never {},
    }
}

/// True when the status says the run did what the policy asks.
pub fn is_ready(status: &FailedTaskCleanupPolicyStatus) -> bool {
    status.condition(ConditionType::Ready).is_some_and(|c| c.status == "True")
}

pub async fn run(args: PurgeArgs) -> Result<ExitCode, PurgeError> {
    let policy: FailedTaskCleanupPolicy = serde_saphyr::from_str(&read(&args.policy)?)
        .map_err(|source| PurgeError::ParsePolicy { path: args.policy.clone(), source: Box::new(source) })?;
    let credentials = credential_data(&read(&args.credentials)?, &args.credentials)?;
    let ca_bundle_pem = match &args.ca_bundle {
        Some(path) => {
            Some(std::fs::read(path).map_err(|source| PurgeError::ReadFile { path: path.clone(), source })?)
        }
        None => None,
    };
    let allowlist = Allowlist::parse(&args.endpoint_allowlist).map_err(PurgeError::ParseAllowlist)?;
    let config = HttpConfig {
        ca_bundle_pem,
        endpoints: EndpointPolicy { allowlist, allow_http: false },
        max_in_flight: args.concurrency.max(1),
        ..Default::default()
    };
    let discovery = ProjectDiscovery::new(&config, Some(&args.iam_endpoint));
    let http = CloudHttp::new(config, RateLimiters::new(args.rate.control()), Arc::new(SystemClock))
        .map_err(PurgeError::BuildCloudClient)?;
    let source = args.policy.file_name().unwrap_or(args.policy.as_os_str()).to_string_lossy();
    let status = purge_once(&policy, &source, &credentials, &http, Some(&discovery)).await;
    print!(
        "{}",
        crate::api::to_yaml(&serde_json::json!({ "status": status })).map_err(PurgeError::PrintStatus)?
    );
    Ok(if is_ready(&status) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{AdaptiveRate, RateControl, RateLimit};
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        purge: PurgeArgs,
    }

    fn control(args: &[&str]) -> RateControl {
        let base = ["purge", "-f", "p.yaml", "--credentials", "c.yaml"];
        Command::parse_from(base.iter().chain(args)).purge.rate.control()
    }

    #[test]
    fn purge_takes_the_rate_flags_of_run() {
        assert_eq!(control(&[]), RateControl::Adaptive(AdaptiveRate::default()));
        assert_eq!(
            control(&["--max-requests-per-second", "1000"]),
            RateControl::Adaptive(AdaptiveRate { start: 20.0, max: 1000.0, floor: 1.0 })
        );
        let fixed = std::num::NonZeroU32::new(50).unwrap();
        assert_eq!(
            control(&["--requests-per-second", "50"]),
            RateControl::Fixed(RateLimit::per_second(fixed))
        );
    }

    #[test]
    fn credentials_come_from_a_secret_or_a_map() {
        let manifest = "apiVersion: v1\nkind: Secret\nmetadata: {name: c}\ndata: {accessKeyId: QUs=}\nstringData: {secretAccessKey: sk}\n";
        let data = credential_data(manifest, Path::new("c.yaml")).unwrap();
        assert_eq!(data["accessKeyId"], b"AK");
        assert_eq!(data["secretAccessKey"], b"sk");
        let map = credential_data("authToken: tok\n", Path::new("c.yaml")).unwrap();
        assert_eq!(map["authToken"], b"tok");
        assert!(credential_data("- not a map", Path::new("c.yaml")).is_err());
    }
}
