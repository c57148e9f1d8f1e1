//! `taskreaper run`: the controller's flags, turned into the plain settings it takes. Reads the CA
//! bundle file and the POD_NAME environment variable.

use super::rate::RateArgs;
use crate::cloud::federation::RefreshPolicy;
use crate::cloud::http::USER_AGENT;
use crate::cloud::{Allowlist, EndpointPolicy, HttpConfig};
use crate::controller::identity::WorkloadIdentitySettings;
use crate::controller::leader::{LeaseTiming, SKEW};
use crate::controller::{ControllerError, LeaderElection, RunSettings, Settings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `taskreaper run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Watch policies in these namespaces only (default: all namespaces). Repeat the flag or
    /// separate namespaces with commas; the install must grant the controller a Role in each.
    #[arg(long = "namespace", env = "TASKREAPER_NAMESPACE", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Handle only policies matching this label selector, to shard policies across deployments.
    #[arg(long, env = "TASKREAPER_LABEL_SELECTOR")]
    pub label_selector: Option<String>,
    /// Most cloud calls in flight across all policies.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    #[command(flatten)]
    pub rate: RateArgs,
    /// Most policies reconciled at once; the others wait their turn (0: no bound). Each reconcile
    /// in flight holds a connection to the API server.
    #[arg(long, default_value_t = 32)]
    pub max_concurrent_reconciles: u16,
    /// Address of /metrics, /livez and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Run only while holding a Lease, so several replicas can run with one active.
    #[arg(long)]
    pub leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "taskreaper-leader")]
    pub lease_name: String,
    /// How long a leader's Lease lasts without renewal; a standby takes over after it lapses.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(6..))]
    pub lease_duration_secs: u64,
    /// A leader that has not renewed its Lease for this long sends no more DELETEs and steps down
    /// [default: two thirds of --lease-duration-secs, 10 for 15]. Must be at most
    /// --lease-duration-secs minus 2: renew deadline + longest DELETE + 1 s clock skew < lease
    /// duration, and a DELETE still running when that would be broken is abandoned, so no DELETE of
    /// an old leader can land once a standby may lead.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub renew_deadline_secs: Option<u64>,
    /// On SIGTERM or SIGINT: how long cloud calls in flight may still run before they are cut.
    /// No run or DELETE starts after the signal; runs cut short write what they measured. Keep it
    /// at least 10 s below the pod's terminationGracePeriodSeconds (the default 20 fits the default 30).
    #[arg(long, default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// Namespace of the Lease (default: POD_NAMESPACE, else the client's default namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Hosts policies may send credentials to: exact names or `*.suffix`, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "*.myhuaweicloud.com")]
    pub endpoint_allowlist: Vec<String>,
    /// Extra CA certificates (PEM) to trust for cloud endpoints, besides the system roots.
    #[arg(long)]
    pub ca_bundle: Option<PathBuf>,
    /// Timeout of one cloud request, in seconds.
    #[arg(long, default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Enables workload identity: the audience of the ServiceAccount tokens the controller requests
    /// (TokenRequest API) for policies with spec.workloadIdentity, i.e. what the IAM identity
    /// provider accepts. Never taken from a policy.
    #[arg(long, env = "TASKREAPER_TOKEN_AUDIENCE")]
    pub token_audience: Option<String>,
    /// Lifetime of requested ServiceAccount tokens, in seconds (the API's minimum is 600).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(600..))]
    pub token_expiration_secs: u64,
    /// The controller's own projected ServiceAccount token, for policies with
    /// workloadIdentity.useControllerToken: true. Read again on every exchange.
    #[arg(long, requires = "token_audience")]
    pub id_token_file: Option<PathBuf>,
    /// The IAM endpoint for federation and project discovery (must pass --endpoint-allowlist).
    #[arg(long, env = "HUAWEICLOUD_SDK_IAM_ENDPOINT", default_value = crate::cloud::iam::DEFAULT_IAM_ENDPOINT)]
    pub iam_endpoint: String,
    /// duration_seconds asked of IAM for temporary credentials (IAM: 900 to 86400). They are
    /// refreshed when less than min(40 minutes, half their lifetime) remains.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub credential_duration_secs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "--renew-deadline-secs ({renew_deadline}) must be at most --lease-duration-secs ({duration}) minus 2, leaving a DELETE at least 1 s before the Lease could lapse"
    )]
    ValidateLeaseTiming { renew_deadline: u64, duration: u64 },
    #[error("reading the endpoint allowlist")]
    ParseAllowlist(#[source] crate::cloud::EndpointError),
    #[error("reading the CA bundle {path}")]
    ReadCaBundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The controller's own errors say what failed; no prefix is added.
    #[error(transparent)]
    RunController(#[from] ControllerError),
}

impl RunArgs {
    /// The settings these flags describe.
    pub fn settings(&self) -> Result<RunSettings, RunError> {
        let allowlist = Allowlist::parse(&self.endpoint_allowlist).map_err(RunError::ParseAllowlist)?;
        let ca_bundle_pem = match &self.ca_bundle {
            None => None,
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|source| RunError::ReadCaBundle { path: path.clone(), source })?,
            ),
        };
        let instance = std::env::var("POD_NAME").ok();
        // The replica's name in every cloud call, so the cloud's logs tell replicas apart.
        let user_agent = match &instance {
            Some(name) => format!("{USER_AGENT} ({name})"),
            None => USER_AGENT.to_string(),
        };
        let http = HttpConfig {
            user_agent,
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            ca_bundle_pem,
            endpoints: EndpointPolicy { allowlist, allow_http: false },
            max_in_flight: self.concurrency.max(1),
            ..HttpConfig::default()
        };
        let rate_limit = self.rate.control();
        let settings = Settings {
            namespaces: watched_namespaces(&self.namespaces),
            label_selector: self.label_selector.clone(),
            http,
            rate_limit,
            instance,
            max_concurrent_reconciles: self.max_concurrent_reconciles,
            workload_identity: self.token_audience.as_ref().map(|audience| WorkloadIdentitySettings {
                token_audience: audience.clone(),
                token_expiration: Duration::from_secs(self.token_expiration_secs),
                id_token_file: self.id_token_file.clone(),
                iam_endpoint: Some(self.iam_endpoint.clone()),
                credential_duration: Duration::from_secs(self.credential_duration_secs),
                refresh: RefreshPolicy::default(),
            }),
            iam_endpoint: Some(self.iam_endpoint.clone()),
        };
        let timing = self.lease_timing()?;
        let leader_election = self.leader_election.then(|| LeaderElection {
            lease_name: self.lease_name.clone(),
            timing,
            lease_namespace: self.lease_namespace.clone(),
        });
        Ok(RunSettings {
            settings,
            metrics_addr: self.metrics_addr,
            leader_election,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        })
    }

    /// The Lease's duration and renew deadline, checked against each other.
    fn lease_timing(&self) -> Result<LeaseTiming, RunError> {
        let duration = self.lease_duration_secs;
        let renew_deadline = self.renew_deadline_secs.unwrap_or(duration.saturating_mul(2) / 3);
        // What is left of the Lease after the renew deadline and the skew must fit a DELETE.
        if renew_deadline.saturating_add(SKEW.as_secs()).saturating_add(1) > duration {
            return Err(RunError::ValidateLeaseTiming { renew_deadline, duration });
        }
        Ok(LeaseTiming {
            duration: Duration::from_secs(duration),
            renew_deadline: Duration::from_secs(renew_deadline),
        })
    }
}

/// The namespaces named, trimmed, without blanks and duplicates, in the order given.
fn watched_namespaces(given: &[String]) -> Vec<String> {
    let mut namespaces: Vec<String> = Vec::new();
    for ns in given.iter().map(|ns| ns.trim()).filter(|ns| !ns.is_empty()) {
        if !namespaces.iter().any(|seen| seen == ns) {
            namespaces.push(ns.to_string());
        }
    }
    namespaces
}

/// Runs the controller with these flags.
pub async fn run(args: RunArgs) -> Result<(), RunError> {
    crate::controller::run(args.settings()?).await.map_err(RunError::RunController)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        run: RunArgs,
    }

    fn timing(args: &[&str]) -> Result<LeaseTiming, RunError> {
        Command::parse_from(std::iter::once("run").chain(args.iter().copied())).run.lease_timing()
    }

    #[test]
    fn the_renew_deadline_leaves_a_delete_room_before_the_lease_can_lapse() {
        let secs = Duration::from_secs;
        let default = timing(&[]).unwrap();
        assert_eq!((default.duration, default.renew_deadline), (secs(15), secs(10)));
        assert_eq!(timing(&["--lease-duration-secs", "6"]).unwrap().renew_deadline, secs(4));
        assert!(timing(&["--lease-duration-secs", "6", "--renew-deadline-secs", "4"]).is_ok());
        let error = timing(&["--lease-duration-secs", "6", "--renew-deadline-secs", "5"]).unwrap_err();
        assert!(error.to_string().contains("at most --lease-duration-secs (6) minus 2"), "{error}");
    }

    fn namespaces(args: &[&str]) -> Vec<String> {
        let command = Command::try_parse_from(std::iter::once("run").chain(args.iter().copied())).unwrap();
        command.run.settings().unwrap().settings.namespaces
    }

    #[test]
    fn namespaces_are_repeated_or_comma_separated_and_default_to_all() {
        assert!(namespaces(&[]).is_empty(), "no flag watches every namespace");
        assert_eq!(namespaces(&["--namespace", "team-a"]), ["team-a"]);
        assert_eq!(
            namespaces(&["--namespace", "team-a,team-b", "--namespace=team-c", "--namespace", "team-a, "]),
            ["team-a", "team-b", "team-c"]
        );
    }
}
