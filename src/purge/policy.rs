//! What one purge run works from: a policy already validated and compiled (regexes built, durations
//! parsed). No I/O.

use crate::api::{FailedTaskCleanupPolicySpec, Scope, Service, ValidatedSpec};
use regex::Regex;
use std::time::Duration;

/// A validated policy, ready to plan and execute.
#[derive(Clone, Debug)]
pub struct PurgePolicy {
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
    /// Every protection-group-level SDRS failure, through the batch endpoint.
    SdrsAll,
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
            Self::SdrsAll | Self::SdrsProtectionGroups(_) | Self::SdrsMatching(_) => Service::Sdrs,
            Self::KpsAll | Self::KpsMatching(_) => Service::Kps,
        }
    }

    pub fn scope(&self) -> Scope {
        match self {
            Self::SdrsAll | Self::KpsAll => Scope::All,
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

/// A target that [`crate::api::validate`] should have refused; never turned into a broader one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("spec.targets[{index}]: service {service} has no scope {scope}")]
pub struct UnsupportedTarget {
    pub index: usize,
    pub service: &'static str,
    pub scope: &'static str,
}

impl PurgePolicy {
    /// Builds the run's view of a spec that [`crate::api::validate`] accepted.
    pub fn new(spec: &FailedTaskCleanupPolicySpec, valid: &ValidatedSpec) -> Result<Self, UnsupportedTarget> {
        let projects = spec
            .projects
            .iter()
            .map(|p| Project {
                id: p.id.clone(),
                region: p.region.clone().unwrap_or_else(|| spec.region.clone()),
            })
            .collect();
        let targets = spec
            .targets
            .iter()
            .zip(&valid.filters)
            .enumerate()
            .map(|(index, (target, compiled))| {
                let filter = target.filter.clone().unwrap_or_default();
                let compiled = compiled.clone().unwrap_or_default();
                Ok(match (target.service, target.scope) {
                    (Service::Sdrs, Scope::All) => Target::SdrsAll,
                    (Service::Sdrs, Scope::ProtectionGroups) => {
                        Target::SdrsProtectionGroups(target.protection_group_ids.clone().unwrap_or_default())
                    }
                    (Service::Sdrs, Scope::Matching) => Target::SdrsMatching(SdrsMatch {
                        resource_types: names(
                            filter.resource_types.as_ref(),
                            |v: &crate::api::SdrsResourceType| v.as_str(),
                        ),
                        failure_statuses: names(
                            filter.failure_statuses.as_ref(),
                            |v: &crate::api::SdrsFailureStatus| v.as_str(),
                        ),
                        name_pattern: compiled.name_pattern,
                        older_than: compiled.older_than,
                    }),
                    (Service::Kps, Scope::All) => Target::KpsAll,
                    (Service::Kps, Scope::ProtectionGroups) => {
                        return Err(UnsupportedTarget {
                            index,
                            service: target.service.as_str(),
                            scope: target.scope.as_str(),
                        });
                    }
                    (Service::Kps, Scope::Matching) => Target::KpsMatching(KpsMatch {
                        operate_types: names(
                            filter.operate_types.as_ref(),
                            |v: &crate::api::KpsOperateType| v.as_str(),
                        ),
                        name_pattern: compiled.name_pattern,
                        older_than: compiled.older_than,
                    }),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            projects,
            targets,
            dry_run: spec.dry_run,
            max_deletions: u64::from(spec.max_deletions_per_run),
        })
    }
}

/// The wire names of a list of enum values; none when the list is absent.
fn names<T>(values: Option<&Vec<T>>, name: fn(&T) -> &'static str) -> Vec<String> {
    values.into_iter().flatten().map(|v| name(v).to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_from_the_example_policy() {
        let policy: crate::api::FailedTaskCleanupPolicy =
            serde_yaml::from_str(crate::api::EXAMPLE_POLICY).unwrap();
        let valid = crate::api::validate(&policy.spec).unwrap();
        let purge = PurgePolicy::new(&policy.spec, &valid).unwrap();
        assert_eq!(purge.projects.len(), policy.spec.projects.len());
        assert_eq!(purge.targets.len(), policy.spec.targets.len());
        for (built, declared) in purge.targets.iter().zip(&policy.spec.targets) {
            assert_eq!((built.service(), built.scope()), (declared.service, declared.scope));
        }
        assert_eq!(purge.max_deletions, u64::from(policy.spec.max_deletions_per_run));
    }

    #[test]
    fn a_kps_protection_group_target_is_refused_not_widened() {
        let mut policy: crate::api::FailedTaskCleanupPolicy =
            serde_yaml::from_str(crate::api::EXAMPLE_POLICY).unwrap();
        let valid = crate::api::validate(&policy.spec).unwrap();
        let index = policy.spec.targets.iter().position(|t| t.scope == Scope::ProtectionGroups).unwrap();
        policy.spec.targets[index].service = Service::Kps;
        let error = PurgePolicy::new(&policy.spec, &valid).unwrap_err();
        assert_eq!(error, UnsupportedTarget { index, service: "KPS", scope: "ProtectionGroups" });
    }
}
