//! What one purge run works from: a policy already validated and compiled (regexes built, durations
//! parsed). No I/O.

use crate::api::{
    KpsOperateType, Scope, SdrsFailureStatus, SdrsResourceType, Service, ValidTarget, ValidatedSpec,
};
use regex::Regex;
use std::time::Duration;

/// A validated policy, ready to plan and execute.
#[derive(Clone, Debug)]
pub struct PurgePolicy {
    /// Names the policy in audit records: `namespace/name`, or the file `taskreaper purge` read.
    pub name: String,
    pub projects: Vec<Project>,
    pub targets: Vec<Target>,
    /// List and report only; never send a DELETE.
    pub dry_run: bool,
    /// Most single deletes a run may send across all `Matching` targets and projects.
    pub max_deletions: u64,
}

/// One project and the region its endpoints live in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Project {
    pub id: String,
    pub region: String,
}

/// What to purge in each project.
#[derive(Clone, Debug)]
pub enum Target {
    /// Every SDRS failure: the group-level batch, then every protection group's batch.
    SdrsAll,
    /// Every protection-group-level SDRS failure, through the group-level batch endpoint only.
    SdrsGroupLevel,
    /// The failures of each listed protection group, through the per-group batch endpoint.
    SdrsProtectionGroups(Vec<String>),
    /// SDRS failures that match, deleted one by one.
    SdrsMatching(SdrsMatch),
    /// Every failed KPS task, through the delete-all endpoint.
    KpsAll,
    /// KPS failed tasks that match, deleted one by one.
    KpsMatching(KpsMatch),
}

impl Target {
    pub fn service(&self) -> Service {
        match self {
            Self::SdrsAll | Self::SdrsGroupLevel | Self::SdrsProtectionGroups(_) | Self::SdrsMatching(_) => {
                Service::Sdrs
            }
            Self::KpsAll | Self::KpsMatching(_) => Service::Kps,
        }
    }

    pub fn scope(&self) -> Scope {
        match self {
            Self::SdrsAll | Self::KpsAll => Scope::All,
            Self::SdrsGroupLevel => Scope::GroupLevel,
            Self::SdrsProtectionGroups(_) => Scope::ProtectionGroups,
            Self::SdrsMatching(_) | Self::KpsMatching(_) => Scope::Matching,
        }
    }
}

/// Filters for SDRS failures; an empty list matches everything.
#[derive(Clone, Debug, Default)]
pub struct SdrsMatch {
    pub resource_types: Vec<String>,
    pub failure_statuses: Vec<String>,
    /// Matched against `resource_name`.
    pub name_pattern: Option<Regex>,
    /// Only failures that began at least this long ago.
    pub older_than: Option<Duration>,
}

/// Filters for KPS failed tasks; an empty list matches everything.
#[derive(Clone, Debug, Default)]
pub struct KpsMatch {
    pub operate_types: Vec<String>,
    /// Matched against `keypair_name`.
    pub name_pattern: Option<Regex>,
    /// Only tasks at least this old.
    pub older_than: Option<Duration>,
}

impl PurgePolicy {
    /// The run's view of a compiled policy. Every target [`crate::api::validate`] accepts has a
    /// purge form, so this cannot fail and never widens a target.
    pub fn new(name: String, valid: &ValidatedSpec) -> Self {
        Self {
            name,
            projects: valid
                .projects
                .iter()
                .map(|p| Project { id: p.id.clone(), region: p.region.clone() })
                .collect(),
            targets: valid.targets.iter().map(Target::new).collect(),
            dry_run: valid.dry_run,
            max_deletions: valid.max_deletions,
        }
    }
}

impl Target {
    fn new(target: &ValidTarget) -> Self {
        match target {
            ValidTarget::SdrsAll => Target::SdrsAll,
            ValidTarget::SdrsGroupLevel => Target::SdrsGroupLevel,
            ValidTarget::SdrsProtectionGroups(ids) => Target::SdrsProtectionGroups(ids.clone()),
            ValidTarget::SdrsMatching { resource_types, failure_statuses, filter } => {
                Target::SdrsMatching(SdrsMatch {
                    resource_types: names(resource_types, SdrsResourceType::as_str),
                    failure_statuses: names(failure_statuses, SdrsFailureStatus::as_str),
                    name_pattern: filter.name_pattern.clone(),
                    older_than: filter.older_than,
                })
            }
            ValidTarget::KpsAll => Target::KpsAll,
            ValidTarget::KpsMatching { operate_types, filter } => Target::KpsMatching(KpsMatch {
                operate_types: names(operate_types, KpsOperateType::as_str),
                name_pattern: filter.name_pattern.clone(),
                older_than: filter.older_than,
            }),
        }
    }
}

/// The wire names of a list of enum values.
fn names<T: Copy>(values: &[T], name: fn(T) -> &'static str) -> Vec<String> {
    values.iter().map(|v| name(*v).to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_from_the_example_policy() {
        let policy: crate::api::FailedTaskCleanupPolicy =
            serde_saphyr::from_str(crate::api::EXAMPLE_POLICY).unwrap();
        let valid = crate::api::validate(&policy.spec).unwrap();
        let purge = PurgePolicy::new("team-a/p".into(), &valid);
        let regions: Vec<&str> = purge.projects.iter().map(|p| p.region.as_str()).collect();
        assert_eq!(regions, ["cn-north-4", "cn-east-3"]);
        assert_eq!(purge.targets.len(), policy.spec.targets.len());
        for (built, declared) in purge.targets.iter().zip(&policy.spec.targets) {
            assert_eq!((built.service(), built.scope()), (declared.service, declared.scope));
        }
        let Target::SdrsMatching(m) = &purge.targets[2] else { panic!("expected SDRS Matching") };
        assert_eq!(
            (m.resource_types.as_slice(), m.failure_statuses.as_slice()),
            (&["protected_instances".to_string()][..], &["createFail".to_string()][..])
        );
        assert_eq!(purge.max_deletions, u64::from(policy.spec.max_deletions_per_run));
    }

    #[test]
    fn a_kps_protection_group_target_is_refused_not_widened() {
        let mut policy: crate::api::FailedTaskCleanupPolicy =
            serde_saphyr::from_str(crate::api::EXAMPLE_POLICY).unwrap();
        let index = policy.spec.targets.iter().position(|t| t.scope == Scope::ProtectionGroups).unwrap();
        policy.spec.targets[index].service = Service::Kps;
        assert!(crate::api::validate(&policy.spec).is_err());
    }
}
