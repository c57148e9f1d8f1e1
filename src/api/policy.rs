//! The `FailedTaskCleanupPolicy` v1alpha1 spec and its admission rules (OpenAPI bounds and CEL
//! `x-kubernetes-validations`). The generated root type comes from `#[derive(CustomResource)]`.
//! No I/O.

use kube::core::{Message, Reason as RuleReason, Rule};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::{DURATION_EXAMPLES, DURATION_PATTERN};
use super::patterns::{
    PROJECT_ID_PATTERN, PROTECTION_GROUP_ID_PATTERN, REGION_PATTERN, SECRET_NAME_PATTERN, TIME_ZONE_PATTERN,
    cron_pattern,
};
use super::status::FailedTaskCleanupPolicyStatus;

/// Default of `spec.maxDeletionsPerRun`.
pub const DEFAULT_MAX_DELETIONS_PER_RUN: u32 = 1000;
/// Upper bound of `spec.maxDeletionsPerRun`.
pub const MAX_DELETIONS_PER_RUN_LIMIT: u32 = 1_000_000;
/// Shortest allowed `spec.schedule.interval`.
pub const MIN_INTERVAL: &str = "1m";
/// Most projects one policy may list.
pub const MAX_PROJECTS: usize = 64;
/// Most regions `spec.projectDiscovery.regions` may list.
pub const MAX_DISCOVERY_REGIONS: usize = 16;
/// Default of `spec.projectDiscovery.maxProjects`.
pub const DEFAULT_MAX_DISCOVERED_PROJECTS: u32 = 64;
/// Upper bound of `spec.projectDiscovery.maxProjects`.
pub const MAX_DISCOVERED_PROJECTS_LIMIT: u32 = 256;
/// Most targets one policy may list.
pub const MAX_TARGETS: usize = 16;
/// Most protection group ids one target may list.
pub const MAX_PROTECTION_GROUP_IDS: usize = 100;
/// Longest `match.namePattern`.
pub const MAX_NAME_PATTERN_LEN: usize = 256;

/// Why an endpoint override holding a user name or password is refused, at admission and by
/// `taskreaper purge`.
pub const ENDPOINT_USERINFO_MESSAGE: &str = "must not hold a user name or password (user:password@host); \
    credentials belong in the Secret named by spec.credentialsRef: give only https://host or https://host:port";
/// Why an endpoint override with a path is refused.
pub const ENDPOINT_PATH_MESSAGE: &str = "must not have a path (only empty or /); the controller adds the API \
    paths itself: give only https://host or https://host:port";
/// Why an endpoint override with a query or a fragment is refused.
pub const ENDPOINT_QUERY_MESSAGE: &str = "must not have a query (?...) or a fragment (#...): give only \
    https://host or https://host:port";
/// Scheme, `://`, then an authority that holds an `@`: a user name or password.
pub const ENDPOINT_USERINFO_PATTERN: &str = "^[^:/?#]+://[^/?#]*@";
/// Scheme, `://`, an authority, then at most `/`, before any query or fragment.
pub const ENDPOINT_ORIGIN_PATTERN: &str = "^[^:/?#]+://[^/?#]*/?([?#].*)?$";

/// Removes failed SDRS and KPS tasks from Huawei Cloud projects on a schedule. The controller
/// lists the failed tasks each target selects, deletes them (unless dryRun is set), counts what is
/// left, and reports the measured result in status.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
// Every printcolumn(...) names the same keys, which this lint mistakes for repeated attributes.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "taskreaper.io",
    version = "v1alpha1",
    kind = "FailedTaskCleanupPolicy",
    plural = "failedtaskcleanuppolicies",
    singular = "failedtaskcleanuppolicy",
    shortname = "ftcp",
    category = "taskreaper",
    namespaced,
    status = "FailedTaskCleanupPolicyStatus",
    derive = "PartialEq",
    doc = "FailedTaskCleanupPolicy removes failed SDRS and KPS tasks from Huawei Cloud projects on a schedule and reports what it deleted.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the last run did what the policy asks"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#,
        description = "Why the policy is or is not ready"
    ),
    printcolumn(
        name = "Suspended",
        type_ = "boolean",
        json_path = ".spec.suspend",
        description = "Whether runs are suspended (spec.suspend)"
    ),
    printcolumn(
        name = "Last Run",
        type_ = "date",
        json_path = ".status.lastScheduleTime",
        description = "When the last run started"
    ),
    printcolumn(
        name = "Next Run",
        type_ = "string",
        json_path = ".status.nextScheduleTime",
        description = "When the next scheduled run starts"
    ),
    printcolumn(
        name = "Deleted",
        type_ = "integer",
        json_path = ".status.totalDeleted",
        description = "Failed tasks deleted since the policy was created"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.credentialsRef) != has(self.workloadIdentity)")
    .message("give exactly one credential source: credentialsRef (a Secret with keys) or workloadIdentity (a ServiceAccount token exchanged at IAM for temporary credentials)"))]
#[x_kube(validation = Rule::new("has(self.projects) != has(self.projectDiscovery)")
    .message("give exactly one of projects (a list of project ids) or projectDiscovery (regions whose projects IAM lists at each run)"))]
pub struct FailedTaskCleanupPolicySpec {
    /// The Secret, in the same namespace as this policy, that holds the Huawei Cloud credentials:
    /// either accessKeyId and secretAccessKey (plus securityToken for temporary credentials),
    /// or authToken. A Secret in another namespace cannot be referenced. Exactly one of
    /// credentialsRef and workloadIdentity is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<CredentialsRef>,

    /// Credentials without long-lived keys: an OIDC ID token (a ServiceAccount token) exchanged
    /// at Huawei Cloud IAM, through the named identity provider, for temporary credentials that
    /// the controller caches and refreshes before they expire. Exactly one of credentialsRef and
    /// workloadIdentity is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<WorkloadIdentity>,

    /// Default Huawei Cloud region of every project, such as cn-north-4. It selects the endpoints
    /// https://sdrs.{region}.myhuaweicloud.com and https://kms.{region}.myhuaweicloud.com.
    /// Projects found by projectDiscovery use their own region instead.
    #[schemars(length(max = 32))]
    #[x_kube(validation = region_rule())]
    pub region: String,

    /// Optional endpoint overrides, for example a private or partner cloud. Each must be a bare
    /// https origin (https://host or https://host:port: no user name or password, no path other
    /// than /, no query, no fragment) and must be allowed by the controller's endpoint allowlist,
    /// otherwise the policy reports EndpointNotAllowed. When set, they apply to every project of the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,

    /// The Huawei Cloud projects to clean, each listed once (1 to 64 entries). Exactly one of
    /// projects and projectDiscovery is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.id == p.id))")
        .message("each project id may appear only once in projects"))]
    pub projects: Vec<Project>,

    /// Instead of projects: the projects are found at each run by asking Huawei Cloud IAM, with
    /// the policy's own credentials, for the projects of the given regions (or every project the
    /// credentials can use, with allProjects), kept for 5 minutes. Exactly one of projects and
    /// projectDiscovery is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_discovery: Option<ProjectDiscovery>,

    /// What to delete in every project (1 to 16 entries). Each target names a service (SDRS or
    /// KPS) and a scope: All (the service's batch delete), ProtectionGroups (SDRS only: the batch
    /// delete of each listed protection group) or Matching (list, filter with match, delete each).
    #[schemars(length(min = 1, max = 16))]
    pub targets: Vec<Target>,

    /// When the policy runs: either interval (a fixed period such as 1h) or cron (with an
    /// optional timeZone), plus an optional random jitter. Setting the annotation
    /// taskreaper.io/requested-at to a new value also runs the policy once, right away.
    pub schedule: Schedule,

    /// While true the controller makes no cloud calls for this policy; scheduled runs are
    /// skipped and the Ready condition says Suspended. Defaults to false.
    #[serde(default)]
    pub suspend: bool,

    /// When true the controller lists and counts what each target would delete and reports it
    /// in status.lastRun.wouldDelete, but never sends a DELETE. Defaults to false.
    #[serde(default)]
    pub dry_run: bool,

    /// Most failed tasks deleted one by one per run, summed over every Matching target of every
    /// project; the rest wait for the next run and the Ready condition says
    /// DeletionLimitReached. Limits the damage of a too broad match. Defaults to 1000.
    #[serde(default = "default_max_deletions_per_run")]
    #[schemars(range(min = 1, max = 1_000_000), extend("format" = "int32"))]
    pub max_deletions_per_run: u32,
}

fn default_max_deletions_per_run() -> u32 {
    DEFAULT_MAX_DELETIONS_PER_RUN
}

/// Names the Secret that holds the credentials.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRef {
    /// Name of a Secret in the policy's own namespace.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = matches_rule(
        SECRET_NAME_PATTERN,
        "must be the name of a Secret in this namespace: lowercase letters, digits, '-' and '.'"
    ))]
    pub name: String,
}

/// Where the ID token for IAM federation comes from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.serviceAccountName) != (has(self.useControllerToken) && self.useControllerToken)")
    .message("give either serviceAccountName (a ServiceAccount of this namespace) or useControllerToken: true, not both"))]
pub struct WorkloadIdentity {
    /// A ServiceAccount in this policy's namespace (only a name: another namespace cannot be
    /// named). The controller requests a short-lived token for it with the TokenRequest API, for
    /// the audience of its --token-audience flag; it needs a Role allowing create on
    /// serviceaccounts/token for this name (see deploy/examples/workload-identity-rbac.yaml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = matches_rule(
        SECRET_NAME_PATTERN,
        "must be the name of a ServiceAccount in this namespace: lowercase letters, digits, '-' and '.'"
    ))]
    pub service_account_name: Option<String>,

    /// Use the controller's own projected ServiceAccount token (its --id-token-file) instead of a
    /// ServiceAccount of this namespace. Only for controllers whose operator enabled that file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_controller_token: Option<bool>,

    /// The id of the IAM identity provider (X-Idp-Id) that trusts the cluster's
    /// service-account issuer and maps its tokens to an IAM agency or user group.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = matches_rule(
        IDENTITY_PROVIDER_ID_PATTERN,
        "must be an IAM identity provider id: letters, digits, '-' and '_'"
    ))]
    pub identity_provider_id: String,
}

/// An IAM identity provider id.
pub const IDENTITY_PROVIDER_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// Endpoint overrides.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// SDRS endpoint, such as https://sdrs.cn-north-4.myhuaweicloud.com. Defaults to
    /// https://sdrs.{region}.myhuaweicloud.com.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[x_kube(
        validation = https_url_rule(),
        validation = endpoint_userinfo_rule(),
        validation = endpoint_path_rule(),
        validation = endpoint_query_rule(),
    )]
    pub sdrs: Option<String>,

    /// KPS endpoint, such as https://kms.cn-north-4.myhuaweicloud.com. Defaults to
    /// https://kms.{region}.myhuaweicloud.com.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[x_kube(
        validation = https_url_rule(),
        validation = endpoint_userinfo_rule(),
        validation = endpoint_path_rule(),
        validation = endpoint_query_rule(),
    )]
    pub kps: Option<String>,
}

/// One Huawei Cloud project.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    /// The project id: 32 lowercase hexadecimal characters, as shown in the console under
    /// My Credentials > API Credentials. A project belongs to one region.
    #[schemars(length(max = 32))]
    #[x_kube(validation = matches_rule(
        PROJECT_ID_PATTERN,
        "must be a Huawei Cloud project id: 32 lowercase hexadecimal characters"
    ))]
    pub id: String,

    /// The project's region when it differs from spec.region, such as cn-east-3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = region_rule())]
    pub region: Option<String>,
}

/// Which projects IAM is asked for at each run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.regions) || (has(self.allProjects) && self.allProjects)")
    .message("projectDiscovery needs regions (such as [cn-north-4]) unless allProjects is true")
    .reason(RuleReason::FieldValueRequired)
    .field_path(".regions"))]
pub struct ProjectDiscovery {
    /// Region ids such as cn-north-4, each listed once (1 to 16 entries). Without allProjects:
    /// the main project of each region (the project named after the region; a region without
    /// one fails the run). With allProjects: only projects in these regions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 16), inner(length(max = 32)))]
    #[x_kube(
        validation = Rule::new(format!("self.all(r, r.matches('{REGION_PATTERN}'))"))
            .message("regions must be Huawei Cloud region ids such as cn-north-4 or ap-southeast-1"),
        validation = Rule::new("self.all(r, self.exists_one(q, q == r))")
            .message("each region may appear only once in projectDiscovery.regions"),
    )]
    pub regions: Vec<String>,

    /// Every project the credentials can use (IAM's GET /v3/auth/projects), sub-projects such as
    /// cn-north-4_team included, filtered by regions when given. Defaults to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_projects: Option<bool>,

    /// An RE2 regular expression searched for in each discovered project's name (a region's main
    /// project is named after the region, a sub-project {region}_{name}), such as _team- ;
    /// projects whose name does not match are left alone. Unanchored unless it uses ^ or $.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("'x'.matches(self) == 'x'.matches(self)")
        .message("projectDiscovery.namePattern must be a valid RE2 regular expression, such as ^cn-north-4_"))]
    pub name_pattern: Option<String>,

    /// Most projects a discovery may yield (1 to 256). When IAM lists more matching projects the
    /// run does not start and Ready says how many matched: narrow regions or namePattern, or raise
    /// this. Defaults to 64.
    #[serde(default = "default_max_discovered_projects")]
    #[schemars(range(min = 1, max = 256), extend("format" = "int32"))]
    pub max_projects: u32,
}

fn default_max_discovered_projects() -> u32 {
    DEFAULT_MAX_DISCOVERED_PROJECTS
}

/// The cloud service whose failed tasks a target deletes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// Storage Disaster Recovery Service.
    #[serde(rename = "SDRS")]
    Sdrs,
    /// Key Pair Service.
    #[serde(rename = "KPS")]
    Kps,
}

impl Service {
    /// The name used in the spec, status, events and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Service::Sdrs => "SDRS",
            Service::Kps => "KPS",
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which failed tasks of a service a target deletes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every failed task of the service: for SDRS the protection-group-level batch delete and then
    /// the batch delete of every protection group listed; for KPS the delete-all.
    All,
    /// SDRS only: the protection-group-level failures (resource type server_groups), through
    /// exactly one call, `DELETE /v1/{project_id}/task-center/failure-jobs/batch`.
    GroupLevel,
    /// SDRS only: the failed tasks of each protection group in protectionGroupIds.
    ProtectionGroups,
    /// The failed tasks selected by match, deleted one by one.
    Matching,
}

impl Scope {
    /// The name used in the spec, status, events and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::All => "All",
            Scope::GroupLevel => "GroupLevel",
            Scope::ProtectionGroups => "ProtectionGroups",
            Scope::Matching => "Matching",
        }
    }
}

/// One kind of cleanup applied to every project.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.scope != 'ProtectionGroups' || has(self.protectionGroupIds)")
        .message("scope ProtectionGroups needs protectionGroupIds: the SDRS protection groups whose failed tasks to delete")
        .reason(RuleReason::FieldValueRequired)
        .field_path(".protectionGroupIds"),
    validation = Rule::new("self.scope == 'ProtectionGroups' || !has(self.protectionGroupIds)")
        .message("protectionGroupIds is only allowed with scope ProtectionGroups; remove it or change the scope")
        .reason(RuleReason::FieldValueForbidden)
        .field_path(".protectionGroupIds"),
    validation = Rule::new("self.scope != 'ProtectionGroups' || self.service == 'SDRS'")
        .message("scope ProtectionGroups exists only for service SDRS; use All or Matching for KPS")
        .reason(RuleReason::FieldValueForbidden)
        .field_path(".scope"),
    validation = Rule::new("self.scope != 'GroupLevel' || self.service == 'SDRS'")
        .message("scope GroupLevel exists only for service SDRS; use All or Matching for KPS")
        .reason(RuleReason::FieldValueForbidden)
        .field_path(".scope"),
    validation = Rule::new("self.scope != 'Matching' || has(self.match)")
        .message("scope Matching needs match: the filter that selects which failed tasks to delete")
        .reason(RuleReason::FieldValueRequired)
        .field_path(".match"),
    validation = Rule::new("self.scope == 'Matching' || !has(self.match)")
        .message("match is only allowed with scope Matching; remove it or set scope: Matching")
        .reason(RuleReason::FieldValueForbidden)
        .field_path(".match"),
    validation = Rule::new("!has(self.match) || !has(self.match.operateTypes) || self.service == 'KPS'")
        .message("match.operateTypes is only allowed for service KPS; filter SDRS tasks with resourceTypes and failureStatuses")
        .reason(RuleReason::FieldValueForbidden)
        .field_path(".match.operateTypes"),
    validation = Rule::new("!has(self.match) || !has(self.match.resourceTypes) || self.service == 'SDRS'")
        .message("match.resourceTypes is only allowed for service SDRS; filter KPS tasks with operateTypes")
        .reason(RuleReason::FieldValueForbidden)
        .field_path(".match.resourceTypes"),
    validation = Rule::new("!has(self.match) || !has(self.match.failureStatuses) || self.service == 'SDRS'")
        .message("match.failureStatuses is only allowed for service SDRS; filter KPS tasks with operateTypes")
        .reason(RuleReason::FieldValueForbidden)
        .field_path(".match.failureStatuses"),
)]
pub struct Target {
    /// The service: SDRS (Storage Disaster Recovery Service) or KPS (Key Pair Service).
    pub service: Service,

    /// Which failed tasks to delete. All: every failed task of the service; for SDRS the
    /// protection-group-level batch DELETE .../task-center/failure-jobs/batch, then
    /// DELETE .../task-center/{server_group_id}/failure-jobs/batch for every protection group
    /// listed (protection-group-level, protected-instance, replication and drill failures alike);
    /// for KPS DELETE /v3/{project_id}/failed-tasks. GroupLevel (SDRS only): only the
    /// protection-group-level failures (resource type server_groups), through the one call
    /// DELETE .../task-center/failure-jobs/batch. ProtectionGroups (SDRS only): every failed task
    /// of each protection group in protectionGroupIds, through that group's batch DELETE.
    /// Matching: the failed tasks selected by match, deleted one by one, at most
    /// spec.maxDeletionsPerRun per run.
    pub scope: Scope,

    /// SDRS protection group ids (UUIDs) whose failed tasks to delete. Required with scope
    /// ProtectionGroups and not allowed otherwise. 1 to 100 distinct entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100), inner(length(max = 36)))]
    #[x_kube(
        validation = Rule::new(format!("self.all(id, id.matches('{PROTECTION_GROUP_ID_PATTERN}'))"))
            .message("protectionGroupIds must be SDRS protection group ids: lowercase UUIDs such as 897f57b2-6e94-4179-b414-9532726c59f2"),
        merge_strategy = ListMerge::Set
    )]
    pub protection_group_ids: Option<Vec<String>>,

    /// Selects the failed tasks to delete; required with scope Matching and not allowed
    /// otherwise. A task is deleted when it passes every filter that is set.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub filter: Option<TaskMatch>,
}

/// A filter over failed tasks. Filters that are not set match every task.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TaskMatch {
    /// SDRS only: resource types whose failed tasks match. Values: server_groups (protection
    /// groups), protected_instances, replications, disaster_recovery_drills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub resource_types: Option<Vec<SdrsResourceType>>,

    /// SDRS only: failure statuses that match. Values: createFail, deleteFail, attachFail,
    /// detachFail, expandFail, resizeFail, startFail, stopFail, reverseFail, failoverFail,
    /// reprotectFail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 11))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub failure_statuses: Option<Vec<SdrsFailureStatus>>,

    /// KPS only: failed operations that match. Values: FAILED_RESET, FAILED_REPLACE,
    /// FAILED_UNBIND.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 3))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub operate_types: Option<Vec<KpsOperateType>>,

    /// An RE2 regular expression searched for in the task's resource name (SDRS resource_name,
    /// KPS keypair_name), such as ^tmp- for names starting with tmp-. Unanchored unless it uses
    /// ^ or $.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("'x'.matches(self) == 'x'.matches(self)")
        .message("namePattern must be a valid RE2 regular expression, such as ^tmp-"))]
    pub name_pattern: Option<String>,

    /// Only tasks that failed at least this long ago match, such as 24h or 72h: hours,
    /// minutes and seconds, in that order (168h is a week).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 24))]
    #[x_kube(validation = duration_rule())]
    pub older_than: Option<String>,
}

/// SDRS resource types (the `resource_type` of a failed job).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum SdrsResourceType {
    ServerGroups,
    ProtectedInstances,
    Replications,
    DisasterRecoveryDrills,
}

impl SdrsResourceType {
    /// Every value.
    pub const ALL: [SdrsResourceType; 4] = [
        SdrsResourceType::ServerGroups,
        SdrsResourceType::ProtectedInstances,
        SdrsResourceType::Replications,
        SdrsResourceType::DisasterRecoveryDrills,
    ];

    /// The value on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            SdrsResourceType::ServerGroups => "server_groups",
            SdrsResourceType::ProtectedInstances => "protected_instances",
            SdrsResourceType::Replications => "replications",
            SdrsResourceType::DisasterRecoveryDrills => "disaster_recovery_drills",
        }
    }
}

/// SDRS failure statuses (the `failure_status` of a failed job).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum SdrsFailureStatus {
    CreateFail,
    DeleteFail,
    AttachFail,
    DetachFail,
    ExpandFail,
    ResizeFail,
    StartFail,
    StopFail,
    ReverseFail,
    FailoverFail,
    ReprotectFail,
}

impl SdrsFailureStatus {
    /// Every value.
    pub const ALL: [SdrsFailureStatus; 11] = [
        SdrsFailureStatus::CreateFail,
        SdrsFailureStatus::DeleteFail,
        SdrsFailureStatus::AttachFail,
        SdrsFailureStatus::DetachFail,
        SdrsFailureStatus::ExpandFail,
        SdrsFailureStatus::ResizeFail,
        SdrsFailureStatus::StartFail,
        SdrsFailureStatus::StopFail,
        SdrsFailureStatus::ReverseFail,
        SdrsFailureStatus::FailoverFail,
        SdrsFailureStatus::ReprotectFail,
    ];

    /// The value on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            SdrsFailureStatus::CreateFail => "createFail",
            SdrsFailureStatus::DeleteFail => "deleteFail",
            SdrsFailureStatus::AttachFail => "attachFail",
            SdrsFailureStatus::DetachFail => "detachFail",
            SdrsFailureStatus::ExpandFail => "expandFail",
            SdrsFailureStatus::ResizeFail => "resizeFail",
            SdrsFailureStatus::StartFail => "startFail",
            SdrsFailureStatus::StopFail => "stopFail",
            SdrsFailureStatus::ReverseFail => "reverseFail",
            SdrsFailureStatus::FailoverFail => "failoverFail",
            SdrsFailureStatus::ReprotectFail => "reprotectFail",
        }
    }
}

/// KPS failed operations (the `operate_type` of a failed task).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KpsOperateType {
    FailedReset,
    FailedReplace,
    FailedUnbind,
}

impl KpsOperateType {
    /// Every value.
    pub const ALL: [KpsOperateType; 3] =
        [KpsOperateType::FailedReset, KpsOperateType::FailedReplace, KpsOperateType::FailedUnbind];

    /// The value on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            KpsOperateType::FailedReset => "FAILED_RESET",
            KpsOperateType::FailedReplace => "FAILED_REPLACE",
            KpsOperateType::FailedUnbind => "FAILED_UNBIND",
        }
    }
}

/// When the policy runs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.interval) && has(self.cron))")
        .message("set either schedule.interval or schedule.cron, not both")
        .reason(RuleReason::FieldValueForbidden),
    validation = Rule::new("has(self.interval) || has(self.cron)")
        .message("schedule needs either interval (such as 1h) or cron (such as \"0 3 * * *\")")
        .reason(RuleReason::FieldValueRequired),
    validation = Rule::new("!has(self.timeZone) || has(self.cron)")
        .message("schedule.timeZone is only used with schedule.cron; remove it or use cron")
        .reason(RuleReason::FieldValueForbidden)
        .field_path(".timeZone"),
    validation = jitter_rule(),
)]
pub struct Schedule {
    /// Run every interval, such as 15m, 1h or 1h30m (hours, minutes and seconds, in that order;
    /// at least 1m). Exclusive with cron.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 24))]
    #[x_kube(
        validation = duration_rule(),
        validation = Rule::new(format!("!self.matches('{DURATION_PATTERN}') || duration(self) >= duration('{MIN_INTERVAL}')"))
            .message(Message::Message(format!("schedule.interval must be at least {MIN_INTERVAL}"))),
    )]
    pub interval: Option<String>,

    /// Run at the times of a five-field cron expression (minute hour day-of-month month
    /// day-of-week), such as "0 3 * * *" for 03:00 every day. Exclusive with interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = matches_rule(
        &cron_pattern(),
        "schedule.cron must be a five-field cron expression (minute hour day-of-month month day-of-week) such as \"0 3 * * *\"; seconds, years, @daily and L/W/# are not supported"
    ))]
    pub cron: Option<String>,

    /// IANA time zone of cron, such as Asia/Shanghai or UTC. Defaults to UTC. Only with cron.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(
        validation = matches_rule(
            TIME_ZONE_PATTERN,
            "schedule.timeZone must be an IANA time zone name such as Asia/Shanghai or UTC"
        ),
        validation = time_zone_known_rule(),
    )]
    pub time_zone: Option<String>,

    /// Delays each scheduled run by a random amount up to jitter, such as 30s or 5m, so that
    /// many policies do not call the cloud at the same moment. Must be shorter than interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 24))]
    #[x_kube(validation = duration_rule())]
    pub jitter: Option<String>,
}

/// `self.matches(pattern)` with a message.
fn matches_rule(pattern: &str, message: &str) -> Rule {
    Rule::new(format!("self.matches('{pattern}')")).message(Message::Message(message.to_owned()))
}

/// Asks the apiserver's own time zone database (the one CronJob's timeZone uses): converting a
/// timestamp into an unknown zone is an evaluation error, which rejects the object.
fn time_zone_known_rule() -> Rule {
    Rule::new(format!(
        "!self.matches('{TIME_ZONE_PATTERN}') || timestamp('2000-07-01T00:00:00Z').getFullYear(self) == 2000"
    ))
    .message("schedule.timeZone is not a time zone the apiserver knows; use an IANA name such as Asia/Shanghai or UTC")
}

fn region_rule() -> Rule {
    matches_rule(REGION_PATTERN, "must be a Huawei Cloud region id such as cn-north-4 or ap-southeast-1")
}

fn duration_rule() -> Rule {
    matches_rule(
        DURATION_PATTERN,
        &format!(
            "must be a duration such as {DURATION_EXAMPLES}: whole hours, minutes and seconds, in that order"
        ),
    )
}

fn https_url_rule() -> Rule {
    Rule::new("isURL(self) && url(self).getScheme() == 'https' && url(self).getHostname() != ''")
        .message("must be an https:// URL such as https://sdrs.cn-north-4.myhuaweicloud.com")
}

/// A password in a policy would sit in etcd and in Git; the Secret is the place for credentials.
fn endpoint_userinfo_rule() -> Rule {
    Rule::new(format!("!self.matches('{ENDPOINT_USERINFO_PATTERN}')")).message(ENDPOINT_USERINFO_MESSAGE)
}

/// Only an origin: the clients add the documented API paths, and a path prefix would change which
/// API the signed requests reach. A value without `://` is left to the https rule.
fn endpoint_path_rule() -> Rule {
    Rule::new(format!("!self.matches('^[^:/?#]+://') || self.matches('{ENDPOINT_ORIGIN_PATTERN}')"))
        .message(ENDPOINT_PATH_MESSAGE)
}

fn endpoint_query_rule() -> Rule {
    Rule::new("!self.contains('?') && !self.contains('#')").message(ENDPOINT_QUERY_MESSAGE)
}

fn jitter_rule() -> Rule {
    Rule::new(format!(
        "!has(self.jitter) || !has(self.interval) || !self.jitter.matches('{DURATION_PATTERN}') \
         || !self.interval.matches('{DURATION_PATTERN}') || duration(self.jitter) < duration(self.interval)"
    ))
    .message("schedule.jitter must be shorter than schedule.interval")
    .field_path(".jitter")
}
