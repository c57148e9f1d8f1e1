//! Project discovery: which projects a policy that names regions (or asks for every project of its
//! credentials) works on. The choice is pure ([`select`]); [`discover`] asks IAM through
//! [`IamClient`]; [`DiscoveryCache`] keeps an answer briefly so that a run does not list projects
//! again for every policy that shares credentials.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use regex::Regex;

use crate::cloud::credentials::Credentials;
use crate::cloud::iam::{IamClient, IamError, Project};

/// What to discover.
#[derive(Clone, Debug)]
pub struct ProjectSelector {
    /// Regions such as cn-north-4. Without `all_projects`: the main project of each (the project
    /// named after the region). With it: only projects in these regions (none: every region).
    pub regions: Vec<String>,
    /// Every project the credentials can use (`GET /v3/auth/projects`), sub-projects included.
    pub all_projects: bool,
    /// Keeps only projects whose name matches.
    pub name_pattern: Option<Regex>,
    /// Most projects a selection may yield; more is an error rather than a silent cut.
    pub max_projects: usize,
}

/// A discovered project and the region it is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovered {
    pub id: String,
    pub name: String,
    pub region: String,
}

/// Why discovery gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("listing projects at IAM failed")]
    List(#[source] IamError),
    #[error("region {0} has no project these credentials can use")]
    NoProjectForRegion(String),
    #[error("{found} projects match, more than the {max} allowed")]
    TooMany { found: usize, max: usize },
}

/// The region of a project from its name: `cn-north-4` and its sub-project `cn-north-4_team` are
/// both in cn-north-4.
pub fn region_of(name: &str) -> &str {
    name.split_once('_').map_or(name, |(region, _)| region)
}

/// Chooses from what IAM listed. `by_region` holds, per requested region, the projects named
/// after it (without `all_projects`); `all` holds every project (with it). Ids come out sorted and
/// unique.
pub fn select(
    selector: &ProjectSelector,
    by_region: &[(String, Vec<Project>)],
    all: &[Project],
) -> Result<Vec<Discovered>, DiscoveryError> {
    let keep_name = |name: &str| selector.name_pattern.as_ref().is_none_or(|p| p.is_match(name));
    let mut chosen: Vec<Discovered> = Vec::new();
    if selector.all_projects {
        for p in all {
            let region = region_of(&p.name);
            let in_region = selector.regions.is_empty() || selector.regions.iter().any(|r| r == region);
            if in_region && keep_name(&p.name) {
                chosen.push(Discovered {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    region: region.to_string(),
                });
            }
        }
    } else {
        for (region, projects) in by_region {
            let main: Vec<&Project> = projects.iter().filter(|p| p.name == *region).collect();
            if main.is_empty() {
                return Err(DiscoveryError::NoProjectForRegion(region.clone()));
            }
            for p in main.into_iter().filter(|p| keep_name(&p.name)) {
                chosen.push(Discovered { id: p.id.clone(), name: p.name.clone(), region: region.clone() });
            }
        }
    }
    chosen.sort_by(|a, b| a.id.cmp(&b.id));
    chosen.dedup_by(|a, b| a.id == b.id);
    if chosen.len() > selector.max_projects {
        return Err(DiscoveryError::TooMany { found: chosen.len(), max: selector.max_projects });
    }
    Ok(chosen)
}

/// Asks IAM and chooses: one `GET /v3/projects?name=` per region, or one `GET /v3/auth/projects`.
pub async fn discover(
    iam: &IamClient,
    credentials: &Credentials,
    selector: &ProjectSelector,
    now: Timestamp,
) -> Result<Vec<Discovered>, DiscoveryError> {
    if selector.all_projects {
        let all = iam.auth_projects(credentials, now).await.map_err(DiscoveryError::List)?;
        return select(selector, &[], &all);
    }
    let mut by_region = Vec::with_capacity(selector.regions.len());
    for region in &selector.regions {
        let projects = iam.projects_named(credentials, region, now).await.map_err(DiscoveryError::List)?;
        by_region.push((region.clone(), projects));
    }
    select(selector, &by_region, &[])
}

/// Discovered projects per key (credentials identity and selection), each kept for `ttl`.
#[derive(Debug)]
pub struct DiscoveryCache<K> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Timestamp, Vec<Discovered>)>>,
}

impl<K: Hash + Eq + Clone> DiscoveryCache<K> {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// The answer for `key` when it is younger than the ttl at `now`.
    pub fn get(&self, key: &K, now: Timestamp) -> Option<Vec<Discovered>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, projects) = entries.get(key)?;
        let age = now.duration_since(*at);
        (age >= jiff::SignedDuration::ZERO && age.unsigned_abs() < self.ttl).then(|| projects.clone())
    }

    /// Keeps an answer, dropping answers older than the ttl.
    pub fn put(&self, key: K, now: Timestamp, projects: Vec<Discovered>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let ttl = self.ttl;
        entries.retain(|_, (at, _)| now.duration_since(*at).unsigned_abs() < ttl);
        entries.insert(key, (now, projects));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(id: &str, name: &str) -> Project {
        Project { id: id.into(), name: name.into() }
    }

    fn selector(regions: &[&str], all_projects: bool, pattern: Option<&str>) -> ProjectSelector {
        ProjectSelector {
            regions: regions.iter().map(|r| r.to_string()).collect(),
            all_projects,
            name_pattern: pattern.map(|p| Regex::new(p).unwrap()),
            max_projects: 3,
        }
    }

    fn ids(found: &[Discovered]) -> Vec<&str> {
        found.iter().map(|d| d.id.as_str()).collect()
    }

    #[test]
    fn a_region_gives_its_main_project() {
        let by_region = vec![
            ("cn-north-4".to_string(), vec![project("b", "cn-north-4")]),
            ("cn-east-3".to_string(), vec![project("a", "cn-east-3"), project("c", "cn-east-3_team")]),
        ];
        let found = select(&selector(&["cn-north-4", "cn-east-3"], false, None), &by_region, &[]).unwrap();
        assert_eq!(ids(&found), ["a", "b"]);
        assert_eq!(found[0].region, "cn-east-3");
        let missing = vec![("ap-southeast-1".to_string(), vec![])];
        let err = select(&selector(&["ap-southeast-1"], false, None), &missing, &[]).unwrap_err();
        assert!(matches!(err, DiscoveryError::NoProjectForRegion(r) if r == "ap-southeast-1"));
    }

    #[test]
    fn all_projects_filtered_by_region_and_name_and_bounded() {
        let all = vec![
            project("p1", "cn-north-4"),
            project("p2", "cn-north-4_team-a"),
            project("p3", "cn-east-3"),
            project("p4", "cn-east-3_team-b"),
            project("p4", "cn-east-3_team-b"),
        ];
        let found = select(&selector(&["cn-north-4"], true, None), &[], &all).unwrap();
        assert_eq!(ids(&found), ["p1", "p2"]);
        assert_eq!(found[1].region, "cn-north-4");
        let found = select(&selector(&[], true, Some("_team-")), &[], &all).unwrap();
        assert_eq!(ids(&found), ["p2", "p4"], "sorted and unique");
        let err = select(&selector(&[], true, None), &[], &all).unwrap_err();
        assert!(matches!(err, DiscoveryError::TooMany { found: 4, max: 3 }));
        assert_eq!(region_of("cn-north-4_x_y"), "cn-north-4");
    }

    #[test]
    fn the_cache_forgets_after_its_ttl() {
        let cache = DiscoveryCache::new(Duration::from_secs(60));
        let t0: Timestamp = "2026-11-22T05:30:00Z".parse().unwrap();
        let later = |s: i64| t0.checked_add(jiff::SignedDuration::from_secs(s)).unwrap();
        let answer =
            vec![Discovered { id: "p".into(), name: "cn-north-4".into(), region: "cn-north-4".into() }];
        cache.put("k", t0, answer.clone());
        assert_eq!(cache.get(&"k", later(59)), Some(answer));
        assert_eq!(cache.get(&"k", later(60)), None);
        assert_eq!(cache.get(&"other", t0), None);
        cache.put("other", later(61), vec![]);
        assert_eq!(cache.get(&"k", later(30)), None, "expired entries are dropped on put");
    }
}
