//! Full validation of a policy spec in Rust: everything the CRD's admission rules check, plus what
//! CEL can only approximate (cron parsing, the time zone database, regular expression
//! compilation). Used by the controller (to report Stalled with an actionable message) and by
//! the `purge` command, which runs without an apiserver. No I/O.

use std::collections::BTreeSet;
use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use regex::Regex;

use super::duration::{DurationError, parse_duration};
use super::patterns::{
    PROJECT_ID_PATTERN, PROTECTION_GROUP_ID_PATTERN, REGION_PATTERN, SECRET_NAME_PATTERN, TIME_ZONE_PATTERN,
    cron_pattern,
};
use super::policy::{
    ENDPOINT_ORIGIN_PATTERN, ENDPOINT_PATH_MESSAGE, ENDPOINT_QUERY_MESSAGE, ENDPOINT_USERINFO_MESSAGE,
    ENDPOINT_USERINFO_PATTERN, Endpoints, FailedTaskCleanupPolicySpec, IDENTITY_PROVIDER_ID_PATTERN,
    KpsOperateType, MAX_DELETIONS_PER_RUN_LIMIT, MAX_DISCOVERED_PROJECTS_LIMIT, MAX_DISCOVERY_REGIONS,
    MAX_PROJECTS, MAX_TARGETS, MIN_INTERVAL, ProjectDiscovery, Schedule, Scope, SdrsFailureStatus,
    SdrsResourceType, Service, Target, TaskMatch,
};

/// Where a policy's credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// A Secret in the policy's namespace.
    Secret(String),
    /// A token for this ServiceAccount of the policy's namespace, exchanged at IAM.
    ServiceAccount { name: String, identity_provider_id: String },
    /// The controller's own projected token, exchanged at IAM.
    ControllerToken { identity_provider_id: String },
}

impl CredentialSource {
    /// Which identity it is, for status and events: never a secret.
    pub fn describe(&self) -> String {
        match self {
            Self::Secret(name) => format!("Secret {name}"),
            Self::ServiceAccount { name, identity_provider_id } => {
                format!("ServiceAccount {name} via identity provider {identity_provider_id}")
            }
            Self::ControllerToken { identity_provider_id } => {
                format!("the controller's token via identity provider {identity_provider_id}")
            }
        }
    }
}

/// A spec that passed [`validate`], compiled: everything a run and its schedule need, so nothing
/// downstream reads the raw spec again.
#[derive(Clone, Debug)]
pub struct ValidatedSpec {
    /// Where the credentials come from.
    pub credentials: CredentialSource,
    /// Each project with its region resolved (its own, else `spec.region`); empty when the
    /// projects are discovered.
    pub projects: Vec<ValidProject>,
    /// How to discover the projects at each run, instead of `projects`.
    pub discovery: Option<ValidDiscovery>,
    /// Each target with its filter compiled, in the order of `spec.targets`.
    pub targets: Vec<ValidTarget>,
    /// Endpoint overrides (none set means the regional defaults).
    pub endpoints: Endpoints,
    /// The parsed schedule.
    pub schedule: ValidSchedule,
    /// No cloud calls while true.
    pub suspend: bool,
    /// List and report only; never send a DELETE.
    pub dry_run: bool,
    /// Most single deletes a run may send (`spec.maxDeletionsPerRun`).
    pub max_deletions: u64,
}

/// A project and the region its endpoints live in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidProject {
    /// The 32-hex project id.
    pub id: String,
    /// The project's region, or `spec.region` when it has none.
    pub region: String,
}

/// A parsed `spec.projectDiscovery`.
#[derive(Clone, Debug)]
pub struct ValidDiscovery {
    /// Region ids, each once, in spec order.
    pub regions: Vec<String>,
    /// Every project of the credentials (filtered by `regions` when not empty).
    pub all_projects: bool,
    /// The compiled `namePattern`.
    pub name_pattern: Option<Regex>,
    /// Most projects a discovery may yield.
    pub max_projects: usize,
}

impl ValidDiscovery {
    /// A stable text of the selection, to key cached answers.
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.regions.join(","),
            self.all_projects,
            self.name_pattern.as_ref().map_or("", Regex::as_str),
            self.max_projects
        )
    }
}

/// A target whose scope and fields agree; a combination validation refuses has no value here.
#[derive(Clone, Debug)]
pub enum ValidTarget {
    /// Every SDRS failure, through the batch endpoints.
    SdrsAll,
    /// The protection-group-level SDRS failures, through the group-level batch endpoint.
    SdrsGroupLevel,
    /// The failures of the listed protection groups.
    SdrsProtectionGroups(Vec<String>),
    /// SDRS failures that match, deleted one by one; empty lists match everything.
    SdrsMatching {
        resource_types: Vec<SdrsResourceType>,
        failure_statuses: Vec<SdrsFailureStatus>,
        filter: ValidMatch,
    },
    /// Every failed KPS task.
    KpsAll,
    /// KPS failed tasks that match, deleted one by one; an empty list matches everything.
    KpsMatching { operate_types: Vec<KpsOperateType>, filter: ValidMatch },
}

/// A parsed `spec.schedule`.
#[derive(Clone, Debug)]
pub struct ValidSchedule {
    /// Interval or cron.
    pub kind: ScheduleKind,
    /// The largest random delay of a scheduled run (zero when not set).
    pub jitter: Duration,
}

/// How runs are spaced.
#[derive(Clone, Debug)]
pub enum ScheduleKind {
    /// Every `interval`.
    Interval(Duration),
    /// At the times of a cron expression, read in a time zone (UTC by default).
    Cron { cron: Box<Cron>, time_zone: TimeZone },
}

/// A parsed `targets[].match`.
#[derive(Clone, Debug, Default)]
pub struct ValidMatch {
    /// The compiled `namePattern`.
    pub name_pattern: Option<Regex>,
    /// The parsed `olderThan`.
    pub older_than: Option<Duration>,
}

/// One problem in a spec. The message names the field and says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Reading the Secret name failed.
    #[error(
        "spec.credentialsRef.name {name:?} must be the name of a Secret in this namespace: lowercase letters, digits, '-' and '.'"
    )]
    ParseSecretName { name: String },
    /// Not exactly one of credentialsRef and workloadIdentity.
    #[error(
        "give exactly one credential source: spec.credentialsRef (a Secret with keys) or spec.workloadIdentity (a ServiceAccount token exchanged at IAM)"
    )]
    ChooseCredentialSource,
    /// Not exactly one of serviceAccountName and useControllerToken.
    #[error(
        "spec.workloadIdentity needs either serviceAccountName (a ServiceAccount of this namespace) or useControllerToken: true, not both"
    )]
    ChooseTokenSource,
    /// Reading the ServiceAccount name failed.
    #[error(
        "spec.workloadIdentity.serviceAccountName {name:?} must be the name of a ServiceAccount in this namespace: lowercase letters, digits, '-' and '.'"
    )]
    ParseServiceAccountName { name: String },
    /// Reading the identity provider id failed.
    #[error(
        "spec.workloadIdentity.identityProviderId {value:?} must be an IAM identity provider id: letters, digits, '-' and '_'"
    )]
    ParseIdentityProviderId { value: String },
    /// Reading a region failed.
    #[error("{path} {value:?} must be a Huawei Cloud region id such as cn-north-4 or ap-southeast-1")]
    ParseRegion { path: String, value: String },
    /// Reading an endpoint override failed. `value` has any user name or password masked.
    #[error("{path} {value:?} must be an https:// URL such as https://sdrs.cn-north-4.myhuaweicloud.com")]
    ParseEndpoint { path: String, value: String },
    /// An endpoint override is more than an origin. Never echoes the value, which may hold a
    /// password.
    #[error("{path} {problem}")]
    CheckEndpointOrigin { path: String, problem: EndpointProblem },
    /// The project list is empty or too long.
    #[error("spec.projects must list between 1 and {MAX_PROJECTS} projects, not {count}")]
    CountProjects { count: usize },
    /// Not exactly one of projects and projectDiscovery.
    #[error(
        "give exactly one of spec.projects (a list of project ids) or spec.projectDiscovery (regions whose projects IAM lists at each run)"
    )]
    ChooseProjectSource,
    /// Discovery by region without regions.
    #[error(
        "spec.projectDiscovery.regions must list between 1 and {MAX_DISCOVERY_REGIONS} regions (or set allProjects: true), not {count}"
    )]
    CountDiscoveryRegions { count: usize },
    /// A discovery region appears twice.
    #[error(
        "spec.projectDiscovery.regions lists {region:?} more than once; each region may appear only once"
    )]
    DuplicateDiscoveryRegion { region: String },
    /// Compiling the discovery name pattern failed.
    #[error(
        "spec.projectDiscovery.namePattern {pattern:?}: {source}; write an RE2 expression such as ^cn-north-4_"
    )]
    CompileDiscoveryNamePattern {
        pattern: String,
        #[source]
        source: Box<super::patterns::NamePatternError>,
    },
    /// maxProjects is out of range.
    #[error(
        "spec.projectDiscovery.maxProjects must be between 1 and {MAX_DISCOVERED_PROJECTS_LIMIT}, not {value}"
    )]
    CheckMaxProjects { value: u32 },
    /// Reading a project id failed.
    #[error(
        "spec.projects[{index}].id {id:?} must be a Huawei Cloud project id: 32 lowercase hexadecimal characters"
    )]
    ParseProjectId { index: usize, id: String },
    /// A project id appears twice.
    #[error(
        "spec.projects[{index}].id {id:?} is listed more than once; each project id may appear only once"
    )]
    DuplicateProjectId { index: usize, id: String },
    /// The target list is empty or too long.
    #[error("spec.targets must list between 1 and {MAX_TARGETS} targets, not {count}")]
    CountTargets { count: usize },
    /// Checking a target's scope against its fields failed.
    #[error("spec.targets[{index}]: {problem}")]
    CheckTargetFields { index: usize, problem: TargetProblem },
    /// Reading a protection group id failed.
    #[error(
        "spec.targets[{index}].protectionGroupIds {id:?} must be an SDRS protection group id: a lowercase UUID such as 897f57b2-6e94-4179-b414-9532726c59f2"
    )]
    ParseProtectionGroupId { index: usize, id: String },
    /// A protection group id appears twice in one target.
    #[error("spec.targets[{index}].protectionGroupIds lists {id:?} more than once")]
    DuplicateProtectionGroupId { index: usize, id: String },
    /// Compiling a name pattern failed.
    #[error(
        "spec.targets[{index}].match.namePattern {pattern:?}: {source}; write an RE2 expression such as ^tmp-"
    )]
    CompileNamePattern {
        index: usize,
        pattern: String,
        #[source]
        source: Box<super::patterns::NamePatternError>,
    },
    /// Reading an olderThan duration failed.
    #[error("spec.targets[{index}].match.olderThan: {source}")]
    ParseOlderThan {
        index: usize,
        #[source]
        source: DurationError,
    },
    /// Both or neither of interval and cron are set.
    #[error("spec.schedule needs exactly one of interval (such as 1h) or cron (such as \"0 3 * * *\")")]
    ChooseScheduleKind,
    /// Reading the interval failed.
    #[error("spec.schedule.interval: {source}")]
    ParseInterval {
        #[source]
        source: DurationError,
    },
    /// The interval is shorter than the minimum.
    #[error("spec.schedule.interval {value:?} must be at least {MIN_INTERVAL}")]
    CheckIntervalMinimum { value: String },
    /// Parsing the cron expression failed.
    #[error("spec.schedule.cron {value:?} must be a five-field cron expression (minute hour day-of-month month day-of-week) such as \"0 3 * * *\"{}", detail.as_ref().map(|e| format!(" ({e})")).unwrap_or_default())]
    ParseCron {
        value: String,
        #[source]
        detail: Option<croner::errors::CronError>,
    },
    /// timeZone is set without cron.
    #[error("spec.schedule.timeZone is only used with spec.schedule.cron; remove it or use cron")]
    CheckTimeZoneUse,
    /// Looking up the time zone failed.
    #[error(
        "spec.schedule.timeZone {value:?} is not a known IANA time zone; use a name such as Asia/Shanghai or UTC"
    )]
    LookupTimeZone {
        value: String,
        #[source]
        source: Option<jiff::Error>,
    },
    /// Reading the jitter failed.
    #[error("spec.schedule.jitter: {source}")]
    ParseJitter {
        #[source]
        source: DurationError,
    },
    /// The jitter is not shorter than the interval.
    #[error("spec.schedule.jitter must be shorter than spec.schedule.interval")]
    CheckJitterBound,
    /// maxDeletionsPerRun is out of range.
    #[error("spec.maxDeletionsPerRun must be between 1 and {MAX_DELETIONS_PER_RUN_LIMIT}, not {value}")]
    CheckMaxDeletions { value: u32 },
}

/// What makes an endpoint override more than a bare https origin; the messages are the CRD's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointProblem {
    #[error("{}", ENDPOINT_USERINFO_MESSAGE)]
    UserInfo,
    #[error("{}", ENDPOINT_PATH_MESSAGE)]
    Path,
    #[error("{}", ENDPOINT_QUERY_MESSAGE)]
    QueryOrFragment,
}

/// A scope/field combination that makes no sense.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetProblem {
    #[error(
        "scope ProtectionGroups needs protectionGroupIds: the SDRS protection groups whose failed tasks to delete"
    )]
    ProtectionGroupIdsMissing,
    #[error("protectionGroupIds is only allowed with scope ProtectionGroups; remove it or change the scope")]
    ProtectionGroupIdsNotAllowed,
    #[error("scope ProtectionGroups exists only for service SDRS; use All or Matching for KPS")]
    ProtectionGroupsNeedSdrs,
    #[error("scope GroupLevel exists only for service SDRS; use All or Matching for KPS")]
    GroupLevelNeedsSdrs,
    #[error("scope Matching needs match: the filter that selects which failed tasks to delete")]
    MatchMissing,
    #[error("match is only allowed with scope Matching; remove it or set scope: Matching")]
    MatchNotAllowed,
    #[error(
        "match.operateTypes is only allowed for service KPS; filter SDRS tasks with resourceTypes and failureStatuses"
    )]
    OperateTypesNeedKps,
    #[error("match.resourceTypes is only allowed for service SDRS; filter KPS tasks with operateTypes")]
    ResourceTypesNeedSdrs,
    #[error("match.failureStatuses is only allowed for service SDRS; filter KPS tasks with operateTypes")]
    FailureStatusesNeedSdrs,
    #[error("protectionGroupIds must list between 1 and 100 ids")]
    CountProtectionGroupIds,
}

impl FailedTaskCleanupPolicySpec {
    /// Checks the whole spec; see [`validate`].
    pub fn validate(&self) -> Result<ValidatedSpec, Vec<SpecError>> {
        validate(self)
    }
}

/// Exactly one credential source, with valid names.
fn check_credentials(
    spec: &FailedTaskCleanupPolicySpec,
    errors: &mut Vec<SpecError>,
) -> Option<CredentialSource> {
    let name_ok = |name: &str| is_match(SECRET_NAME_PATTERN, name) && name.len() <= 253;
    match (&spec.credentials_ref, &spec.workload_identity) {
        (Some(secret), None) => {
            if name_ok(&secret.name) {
                return Some(CredentialSource::Secret(secret.name.clone()));
            }
            errors.push(SpecError::ParseSecretName { name: secret.name.clone() });
            None
        }
        (None, Some(wi)) => {
            let idp = wi.identity_provider_id.clone();
            if !is_match(IDENTITY_PROVIDER_ID_PATTERN, &idp) {
                errors.push(SpecError::ParseIdentityProviderId { value: idp });
                return None;
            }
            match (&wi.service_account_name, wi.use_controller_token.unwrap_or(false)) {
                (Some(name), false) if name_ok(name) => {
                    Some(CredentialSource::ServiceAccount { name: name.clone(), identity_provider_id: idp })
                }
                (Some(name), false) => {
                    errors.push(SpecError::ParseServiceAccountName { name: name.clone() });
                    None
                }
                (None, true) => Some(CredentialSource::ControllerToken { identity_provider_id: idp }),
                _ => {
                    errors.push(SpecError::ChooseTokenSource);
                    None
                }
            }
        }
        _ => {
            errors.push(SpecError::ChooseCredentialSource);
            None
        }
    }
}

/// Checks the whole spec and returns it parsed, or every problem found.
pub fn validate(spec: &FailedTaskCleanupPolicySpec) -> Result<ValidatedSpec, Vec<SpecError>> {
    let mut errors = Vec::new();

    let credentials = check_credentials(spec, &mut errors);
    check_region("spec.region", &spec.region, &mut errors);
    if let Some(endpoints) = &spec.endpoints {
        for (path, value) in
            [("spec.endpoints.sdrs", &endpoints.sdrs), ("spec.endpoints.kps", &endpoints.kps)]
        {
            if let Some(value) = value {
                check_endpoint(path, value, &mut errors);
            }
        }
    }
    let discovery = match (&spec.project_discovery, spec.projects.is_empty()) {
        (None, _) => {
            check_projects(spec, &mut errors);
            None
        }
        (Some(d), true) => check_discovery(d, &mut errors),
        (Some(_), false) => {
            errors.push(SpecError::ChooseProjectSource);
            None
        }
    };

    let count = spec.targets.len();
    if count == 0 || count > MAX_TARGETS {
        errors.push(SpecError::CountTargets { count });
    }
    let targets: Vec<Option<ValidTarget>> =
        spec.targets.iter().enumerate().map(|(index, t)| check_target(index, t, &mut errors)).collect();

    let schedule = check_schedule(&spec.schedule, &mut errors);

    if spec.max_deletions_per_run == 0 || spec.max_deletions_per_run > MAX_DELETIONS_PER_RUN_LIMIT {
        errors.push(SpecError::CheckMaxDeletions { value: spec.max_deletions_per_run });
    }

    let targets = targets.into_iter().collect::<Option<Vec<_>>>();
    match (schedule, targets) {
        (Some(schedule), Some(targets)) if errors.is_empty() => Ok(ValidatedSpec {
            credentials: credentials.unwrap_or_else(|| CredentialSource::Secret(String::new())),
            projects: spec
                .projects
                .iter()
                .map(|p| ValidProject {
                    id: p.id.clone(),
                    region: p.region.clone().unwrap_or_else(|| spec.region.clone()),
                })
                .collect(),
            discovery,
            targets,
            endpoints: spec.endpoints.clone().unwrap_or_default(),
            schedule,
            suspend: spec.suspend,
            dry_run: spec.dry_run,
            max_deletions: u64::from(spec.max_deletions_per_run),
        }),
        _ => Err(errors),
    }
}

/// Whether `value` matches one of the built-in patterns of [`super::patterns`].
fn is_match(pattern: &str, value: &str) -> bool {
    // The built-in patterns are unit-tested to compile; a failure would reject the value.
    Regex::new(pattern).is_ok_and(|re| re.is_match(value))
}

fn is_https_url(value: &str) -> bool {
    reqwest::Url::parse(value)
        .is_ok_and(|url| url.scheme() == "https" && url.host_str().is_some_and(|h| !h.is_empty()))
}

/// The problems the CRD's rules find in an endpoint override, in the order they are checked: the
/// same patterns, read the same way, so `taskreaper purge` and the apiserver agree.
pub fn endpoint_problems(value: &str) -> Vec<EndpointProblem> {
    let mut problems = Vec::new();
    if is_match(ENDPOINT_USERINFO_PATTERN, value) {
        problems.push(EndpointProblem::UserInfo);
    }
    if is_match("^[^:/?#]+://", value) && !is_match(ENDPOINT_ORIGIN_PATTERN, value) {
        problems.push(EndpointProblem::Path);
    }
    if value.contains('?') || value.contains('#') {
        problems.push(EndpointProblem::QueryOrFragment);
    }
    problems
}

/// `value` with whatever stands between `://` and the last `@` of its authority masked.
fn mask_user_info(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else { return value.to_owned() };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => value.to_owned(),
    }
}

fn check_endpoint(path: &str, value: &str, errors: &mut Vec<SpecError>) {
    if !is_https_url(value) {
        errors.push(SpecError::ParseEndpoint { path: path.to_owned(), value: mask_user_info(value) });
    }
    for problem in endpoint_problems(value) {
        errors.push(SpecError::CheckEndpointOrigin { path: path.to_owned(), problem });
    }
}

fn check_region(path: &str, value: &str, errors: &mut Vec<SpecError>) {
    if !is_match(REGION_PATTERN, value) {
        errors.push(SpecError::ParseRegion { path: path.to_owned(), value: value.to_owned() });
    }
}

fn check_projects(spec: &FailedTaskCleanupPolicySpec, errors: &mut Vec<SpecError>) {
    let count = spec.projects.len();
    if count == 0 || count > MAX_PROJECTS {
        errors.push(SpecError::CountProjects { count });
    }
    let mut seen = BTreeSet::new();
    for (index, project) in spec.projects.iter().enumerate() {
        if !is_match(PROJECT_ID_PATTERN, &project.id) {
            errors.push(SpecError::ParseProjectId { index, id: project.id.clone() });
        }
        if !seen.insert(project.id.as_str()) {
            errors.push(SpecError::DuplicateProjectId { index, id: project.id.clone() });
        }
        if let Some(region) = &project.region {
            check_region(&format!("spec.projects[{index}].region"), region, errors);
        }
    }
}

fn check_discovery(d: &ProjectDiscovery, errors: &mut Vec<SpecError>) -> Option<ValidDiscovery> {
    let all_projects = d.all_projects.unwrap_or(false);
    let count = d.regions.len();
    if count > MAX_DISCOVERY_REGIONS || (count == 0 && !all_projects) {
        errors.push(SpecError::CountDiscoveryRegions { count });
    }
    let mut seen = BTreeSet::new();
    for (index, region) in d.regions.iter().enumerate() {
        check_region(&format!("spec.projectDiscovery.regions[{index}]"), region, errors);
        if !seen.insert(region.as_str()) {
            errors.push(SpecError::DuplicateDiscoveryRegion { region: region.clone() });
        }
    }
    if d.max_projects == 0 || d.max_projects > MAX_DISCOVERED_PROJECTS_LIMIT {
        errors.push(SpecError::CheckMaxProjects { value: d.max_projects });
    }
    let name_pattern = match &d.name_pattern {
        None => None,
        Some(pattern) => match super::patterns::compile_name_pattern(pattern) {
            Ok(re) => Some(re),
            Err(source) => {
                errors.push(SpecError::CompileDiscoveryNamePattern {
                    pattern: pattern.clone(),
                    source: Box::new(source),
                });
                None
            }
        },
    };
    Some(ValidDiscovery {
        regions: d.regions.clone(),
        all_projects,
        name_pattern,
        max_projects: usize::try_from(d.max_projects).unwrap_or(usize::MAX),
    })
}

/// Checks one target; its compiled form when its scope and fields agree.
fn check_target(index: usize, target: &Target, errors: &mut Vec<SpecError>) -> Option<ValidTarget> {
    let problems = target_problems(target);
    let agrees = problems.is_empty();
    for problem in problems {
        errors.push(SpecError::CheckTargetFields { index, problem });
    }
    if let Some(ids) = &target.protection_group_ids {
        if ids.is_empty() || ids.len() > super::policy::MAX_PROTECTION_GROUP_IDS {
            errors.push(SpecError::CheckTargetFields {
                index,
                problem: TargetProblem::CountProtectionGroupIds,
            });
        }
        let mut seen = BTreeSet::new();
        for id in ids {
            if !is_match(PROTECTION_GROUP_ID_PATTERN, id) {
                errors.push(SpecError::ParseProtectionGroupId { index, id: id.clone() });
            }
            if !seen.insert(id.as_str()) {
                errors.push(SpecError::DuplicateProtectionGroupId { index, id: id.clone() });
            }
        }
    }
    let filter = target.filter.as_ref().map(|m| check_match(index, m, errors));
    if !agrees {
        return None;
    }
    let m = target.filter.clone().unwrap_or_default();
    Some(match (target.service, target.scope) {
        (Service::Sdrs, Scope::All) => ValidTarget::SdrsAll,
        (Service::Sdrs, Scope::GroupLevel) => ValidTarget::SdrsGroupLevel,
        (Service::Sdrs, Scope::ProtectionGroups) => {
            ValidTarget::SdrsProtectionGroups(target.protection_group_ids.clone().unwrap_or_default())
        }
        (Service::Sdrs, Scope::Matching) => ValidTarget::SdrsMatching {
            resource_types: m.resource_types.unwrap_or_default(),
            failure_statuses: m.failure_statuses.unwrap_or_default(),
            filter: filter.unwrap_or_default(),
        },
        (Service::Kps, Scope::All) => ValidTarget::KpsAll,
        // target_problems refuses ProtectionGroups and GroupLevel for KPS.
        (Service::Kps, Scope::ProtectionGroups | Scope::GroupLevel) => return None,
        (Service::Kps, Scope::Matching) => ValidTarget::KpsMatching {
            operate_types: m.operate_types.unwrap_or_default(),
            filter: filter.unwrap_or_default(),
        },
    })
}

/// The scope/field combinations the CRD's CEL rules on a target reject.
pub fn target_problems(target: &Target) -> Vec<TargetProblem> {
    let mut problems = Vec::new();
    let groups = target.scope == Scope::ProtectionGroups;
    let matching = target.scope == Scope::Matching;
    if groups && target.protection_group_ids.is_none() {
        problems.push(TargetProblem::ProtectionGroupIdsMissing);
    }
    if !groups && target.protection_group_ids.is_some() {
        problems.push(TargetProblem::ProtectionGroupIdsNotAllowed);
    }
    if groups && target.service != Service::Sdrs {
        problems.push(TargetProblem::ProtectionGroupsNeedSdrs);
    }
    if target.scope == Scope::GroupLevel && target.service != Service::Sdrs {
        problems.push(TargetProblem::GroupLevelNeedsSdrs);
    }
    if matching && target.filter.is_none() {
        problems.push(TargetProblem::MatchMissing);
    }
    if !matching && target.filter.is_some() {
        problems.push(TargetProblem::MatchNotAllowed);
    }
    if let Some(m) = &target.filter {
        if m.operate_types.is_some() && target.service != Service::Kps {
            problems.push(TargetProblem::OperateTypesNeedKps);
        }
        if m.resource_types.is_some() && target.service != Service::Sdrs {
            problems.push(TargetProblem::ResourceTypesNeedSdrs);
        }
        if m.failure_statuses.is_some() && target.service != Service::Sdrs {
            problems.push(TargetProblem::FailureStatusesNeedSdrs);
        }
    }
    problems
}

fn check_match(index: usize, m: &TaskMatch, errors: &mut Vec<SpecError>) -> ValidMatch {
    let name_pattern = m.name_pattern.as_ref().and_then(|pattern| {
        super::patterns::compile_name_pattern(pattern)
            .map_err(|source| {
                errors.push(SpecError::CompileNamePattern {
                    index,
                    pattern: pattern.clone(),
                    source: Box::new(source),
                })
            })
            .ok()
    });
    let older_than = m.older_than.as_ref().and_then(|value| {
        parse_duration(value).map_err(|source| errors.push(SpecError::ParseOlderThan { index, source })).ok()
    });
    ValidMatch { name_pattern, older_than }
}

fn check_schedule(schedule: &Schedule, errors: &mut Vec<SpecError>) -> Option<ValidSchedule> {
    let jitter = match schedule.jitter.as_deref().map(parse_duration) {
        None => Some(Duration::ZERO),
        Some(Ok(jitter)) => Some(jitter),
        Some(Err(source)) => {
            errors.push(SpecError::ParseJitter { source });
            None
        }
    };
    if schedule.time_zone.is_some() && schedule.cron.is_none() {
        errors.push(SpecError::CheckTimeZoneUse);
    }
    let kind = match (&schedule.interval, &schedule.cron) {
        (Some(interval), None) => check_interval(interval, jitter, errors),
        (None, Some(cron)) => check_cron(cron, schedule.time_zone.as_deref(), errors),
        _ => {
            errors.push(SpecError::ChooseScheduleKind);
            None
        }
    };
    Some(ValidSchedule { kind: kind?, jitter: jitter? })
}

fn check_interval(
    value: &str,
    jitter: Option<Duration>,
    errors: &mut Vec<SpecError>,
) -> Option<ScheduleKind> {
    let interval = match parse_duration(value) {
        Ok(interval) => interval,
        Err(source) => {
            errors.push(SpecError::ParseInterval { source });
            return None;
        }
    };
    if interval < Duration::from_secs(60) {
        errors.push(SpecError::CheckIntervalMinimum { value: value.to_owned() });
        return None;
    }
    if jitter.is_some_and(|jitter| jitter >= interval) {
        errors.push(SpecError::CheckJitterBound);
        return None;
    }
    Some(ScheduleKind::Interval(interval))
}

/// Parses a five-field cron expression the way the controller schedules it.
pub fn parse_cron(value: &str) -> Result<Cron, SpecError> {
    if !is_match(&cron_pattern(), value) {
        return Err(SpecError::ParseCron { value: value.to_owned(), detail: None });
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(value)
        .map_err(|e| SpecError::ParseCron { value: value.to_owned(), detail: Some(e) })
}

/// Looks up an IANA time zone name the way the controller schedules with it.
pub fn lookup_time_zone(value: &str) -> Result<TimeZone, SpecError> {
    if !is_match(TIME_ZONE_PATTERN, value) {
        return Err(SpecError::LookupTimeZone { value: value.to_owned(), source: None });
    }
    TimeZone::get(value).map_err(|e| SpecError::LookupTimeZone { value: value.to_owned(), source: Some(e) })
}

fn check_cron(value: &str, time_zone: Option<&str>, errors: &mut Vec<SpecError>) -> Option<ScheduleKind> {
    let cron = parse_cron(value).map_err(|e| errors.push(e)).ok();
    let time_zone = match time_zone {
        None => Some(TimeZone::UTC),
        Some(name) => lookup_time_zone(name).map_err(|e| errors.push(e)).ok(),
    };
    Some(ScheduleKind::Cron { cron: Box::new(cron?), time_zone: time_zone? })
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
