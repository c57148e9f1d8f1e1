//! What one purge run works from: a policy already validated and compiled (regexes built, durations
//! parsed), independent of Kubernetes. No I/O.

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

/// The cloud service a target purges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    Sdrs,
    Kps,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sdrs => "SDRS",
            Self::Kps => "KPS",
        }
    }
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

    /// The scope name as the policy spells it.
    pub fn scope(&self) -> &'static str {
        match self {
            Self::SdrsAll | Self::KpsAll => "All",
            Self::SdrsProtectionGroups(_) => "ProtectionGroups",
            Self::SdrsMatching(_) | Self::KpsMatching(_) => "Matching",
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
