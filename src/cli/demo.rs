//! `taskreaper demo`: the emulator with seeded failed tasks, the example policies run against it,
//! and the counts before and after. Serves on loopback and prints to standard output.

use super::purge::{credential_data, is_ready, purge_once};
use crate::api::{ConditionType, Endpoints, FailedTaskCleanupPolicy, FailedTaskCleanupPolicyStatus, Scope};
use crate::cloud::{Allowlist, CloudHttp, EndpointPolicy, HttpConfig, RateLimit, RateLimiters, SystemClock};
use crate::emulator::{self, DEMO_ACCESS_KEY, DEMO_PROJECTS, DEMO_SECRET_KEY, Emulator, Seed};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The example policies, in the order the demo applies them: narrow ones first, then the one that
/// clears everything.
const EXAMPLES: [(&str, &str); 4] = [
    ("sdrs-temporary-instances.yaml", include_str!("../../deploy/examples/sdrs-temporary-instances.yaml")),
    ("kps-dry-run.yaml", include_str!("../../deploy/examples/kps-dry-run.yaml")),
    ("sdrs-protection-groups.yaml", include_str!("../../deploy/examples/sdrs-protection-groups.yaml")),
    ("full-cleanup.yaml", include_str!("../../deploy/examples/full-cleanup.yaml")),
];
const CREDENTIALS: &str = include_str!("../../deploy/examples/credentials-secret.yaml");

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Failed tasks seeded per SDRS resource type and per KPS operate type, in each project.
    #[arg(long, default_value_t = 8)]
    pub tasks_per_kind: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("starting the emulator")]
    StartEmulator(#[source] emulator::EmulatorError),
    #[error("reading the endpoint allowlist")]
    ParseAllowlist(#[source] crate::cloud::EndpointError),
    #[error("building the cloud client")]
    BuildCloudClient(#[source] crate::cloud::CloudError),
    #[error("example {0} does not parse")]
    ParseExample(&'static str, #[source] Box<serde_saphyr::Error>),
    #[error("the example credentials do not parse")]
    ParseCredentials(#[source] super::purge::PurgeError),
    #[error("printing a status")]
    PrintStatus(#[source] serde_saphyr::ser::Error),
    #[error("{0} failed tasks remain after the example policies ran; see the statuses above")]
    TasksRemain(usize),
    #[error("policy {0} is not Ready; see its status above")]
    NotReady(String),
}

/// What a project holds: SDRS protection-group-level failures, SDRS failures inside protection
/// groups, KPS failed tasks.
#[derive(Clone, Copy, Debug, Default)]
struct Held {
    group_level: usize,
    in_group: usize,
    kps: usize,
}

impl Held {
    fn total(self) -> usize {
        self.group_level + self.in_group + self.kps
    }
}

type Counts = BTreeMap<String, Held>;

fn counts(emulator: &Emulator) -> Counts {
    let store = emulator.store();
    DEMO_PROJECTS
        .iter()
        .map(|p| {
            let jobs = store.seeded_failure_jobs(p);
            let group_level = jobs.iter().filter(|j| j.is_group_level()).count();
            let held =
                Held { group_level, in_group: jobs.len() - group_level, kps: store.failed_tasks(p).len() };
            (p.to_string(), held)
        })
        .collect()
}

/// Points a `ProtectionGroups` target at the first protection group of each of the policy's
/// projects, as a user would copy the ids from the console.
fn pick_protection_groups(policy: &mut FailedTaskCleanupPolicy, emulator: &Emulator) {
    let store = emulator.store();
    let ids: Vec<String> = policy
        .spec
        .projects
        .iter()
        .filter_map(|p| store.server_groups(&p.id).first().map(|g| g.id.clone()))
        .collect();
    for target in &mut policy.spec.targets {
        if target.scope == Scope::ProtectionGroups {
            target.protection_group_ids = Some(ids.clone());
        }
    }
}

fn summary(status: &FailedTaskCleanupPolicyStatus) -> String {
    let ready = status.condition(ConditionType::Ready);
    let run = status.last_run.clone().unwrap_or_default();
    format!(
        "Ready={} {:<22} found={:<4} deleted={:<4} wouldDelete={:<4} remaining={:<4} failedCalls={}",
        ready.map_or("Unknown", |c| c.status.as_str()),
        ready.map_or("", |c| c.reason.as_str()),
        run.found,
        run.deleted,
        run.would_delete,
        run.remaining.map_or("unknown".to_string(), |n| n.to_string()),
        run.failed_calls
    )
}

pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    let config = emulator::Config {
        access_keys: BTreeMap::from([(
            DEMO_ACCESS_KEY.to_string(),
            crate::cloud::credentials::Secret::new(DEMO_SECRET_KEY),
        )]),
        tls: true,
        ..emulator::Config::default()
    };
    let seed = Seed::Generated {
        projects: DEMO_PROJECTS.map(String::from).to_vec(),
        tasks_per_kind: args.tasks_per_kind,
        seed: 1,
    };
    let localhost = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let emulator = Emulator::start(localhost, config, seed).await.map_err(DemoError::StartEmulator)?;
    println!(
        "SDRS + KPS emulator at {} (HTTPS, self-signed certificate trusted as a CA bundle)\n",
        emulator.url()
    );

    let http_config = HttpConfig {
        ca_bundle_pem: emulator.ca_pem().map(|pem| pem.as_bytes().to_vec()),
        endpoints: EndpointPolicy {
            allowlist: Allowlist::parse(["127.0.0.1"]).map_err(DemoError::ParseAllowlist)?,
            allow_http: false,
        },
        ..HttpConfig::default()
    };
    // The emulator is local: a higher budget than the cloud default keeps the demo quick.
    let per_second = std::num::NonZeroU32::new(200).unwrap_or(std::num::NonZeroU32::MIN);
    let limiters = RateLimiters::new(RateLimit { per_second, burst: per_second });
    let http =
        CloudHttp::new(http_config, limiters, Arc::new(SystemClock)).map_err(DemoError::BuildCloudClient)?;
    let credentials = credential_data(CREDENTIALS, Path::new("credentials-secret.yaml"))
        .map_err(DemoError::ParseCredentials)?;

    let before = counts(&emulator);
    let mut last = None;
    for (file, yaml) in EXAMPLES {
        let mut policy: FailedTaskCleanupPolicy =
            serde_saphyr::from_str(yaml).map_err(|e| DemoError::ParseExample(file, Box::new(e)))?;
        policy.spec.endpoints = Some(Endpoints { sdrs: Some(emulator.url()), kps: Some(emulator.url()) });
        pick_protection_groups(&mut policy, &emulator);
        let status = purge_once(&policy, file, &credentials, &http, None).await;
        println!("{:<28} {}", file, summary(&status));
        if !is_ready(&status) {
            print_status(&status)?;
            return Err(DemoError::NotReady(file.into()));
        }
        last = Some(status);
    }
    let after = counts(&emulator);

    println!(
        "\n{:<34} {:>17} {:>14} {:>11}",
        "failed tasks before -> after", "SDRS group-level", "SDRS in-group", "KPS"
    );
    for (project, held) in &before {
        let left = after.get(project).copied().unwrap_or_default();
        let cell = |b: usize, a: usize| format!("{b} -> {a}");
        println!(
            "{project:<34} {:>17} {:>14} {:>11}",
            cell(held.group_level, left.group_level),
            cell(held.in_group, left.in_group),
            cell(held.kps, left.kps)
        );
    }
    let total = |c: &Counts| c.values().map(|h| h.total()).sum::<usize>();
    println!("{:<34} {} -> {}", "all failed tasks", total(&before), total(&after));
    if let Some(status) = &last {
        println!("\nstatus written for full-cleanup:");
        print_status(status)?;
    }
    emulator.shutdown().await;
    match total(&after) {
        0 => Ok(()),
        left => Err(DemoError::TasksRemain(left)),
    }
}

fn print_status(status: &FailedTaskCleanupPolicyStatus) -> Result<(), DemoError> {
    let yaml =
        crate::api::to_yaml(&serde_json::json!({ "status": status })).map_err(DemoError::PrintStatus)?;
    print!("{yaml}");
    Ok(())
}
