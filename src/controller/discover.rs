//! The projects of a run whose policy has `spec.projectDiscovery`: IAM is asked with the run's own
//! credentials ([`crate::cloud::discovery::discover`]), the answer kept per (credentials identity,
//! selection) for [`DISCOVERY_TTL`], and failures turned into the reasons users already know.
//! Shared by the controller and `taskreaper purge` through [`super::pipeline::run_policy`]. Does
//! IAM I/O.

use std::time::Duration;

use jiff::Timestamp;

use super::pipeline::{Blocked, error_chain};
use crate::api::{Reason, ValidDiscovery};
use crate::cloud::HttpConfig;
use crate::cloud::credentials::Credentials;
use crate::cloud::discovery::{self, Discovered, DiscoveryCache, DiscoveryError, ProjectSelector};
use crate::cloud::error::ErrorClass;
use crate::cloud::iam::{IamClient, IamError};
use crate::purge::Project;

/// How long discovered projects are used before IAM is asked again: long enough that policies
/// sharing credentials (and a controller's retries) do not list projects on every pass, short
/// enough that a new project is purged within minutes.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(5 * 60);

/// The cache key: whose credentials (their public identity, never a secret) and which selection.
type Key = (String, String);

/// IAM and the cache of its answers, shared by every run of a process.
#[derive(Debug)]
pub struct ProjectDiscovery {
    /// The IAM client, or why it could not be built (an endpoint the allowlist refuses): kept so
    /// that only policies that discover are refused, with a message, rather than the process.
    iam: Result<IamClient, String>,
    cache: DiscoveryCache<Key>,
}

impl ProjectDiscovery {
    /// IAM at `endpoint` (default `https://iam.myhuaweicloud.com`), reached with `http`'s CA roots,
    /// timeouts and endpoint allowlist.
    pub fn new(http: &HttpConfig, endpoint: Option<&str>) -> Self {
        let iam = IamClient::new(http, endpoint).map_err(|e| error_chain(&e));
        Self { iam, cache: DiscoveryCache::new(DISCOVERY_TTL) }
    }

    /// The projects `discovery` selects for `credentials` at `now`: from the cache when a fresh
    /// answer is there, else from IAM. Sorted by id, each with its region.
    pub async fn projects(
        &self,
        discovery: &ValidDiscovery,
        credentials: &Credentials,
        now: Timestamp,
    ) -> Result<Vec<Project>, Blocked> {
        let key = (credentials.identity(), discovery.key());
        let found = match self.cache.get(&key, now) {
            Some(found) => found,
            None => {
                let iam = self.iam.as_ref().map_err(|e| Blocked {
                    reason: Reason::EndpointNotAllowed,
                    message: format!(
                        "projectDiscovery needs IAM: {e}; allow the IAM host with --endpoint-allowlist or set --iam-endpoint"
                    ),
                })?;
                let found = discovery::discover(iam, credentials, &selector(discovery), now)
                    .await
                    .map_err(|e| blocked(&e))?;
                self.cache.put(key, now, found.clone());
                found
            }
        };
        to_projects(discovery, found)
    }
}

/// The cloud layer's view of a validated selection.
fn selector(d: &ValidDiscovery) -> ProjectSelector {
    ProjectSelector {
        regions: d.regions.clone(),
        all_projects: d.all_projects,
        name_pattern: d.name_pattern.clone(),
        max_projects: d.max_projects,
    }
}

/// The purge's projects; none found is refused, since a run over nothing would report success.
fn to_projects(d: &ValidDiscovery, found: Vec<Discovered>) -> Result<Vec<Project>, Blocked> {
    if found.is_empty() {
        return Err(Blocked {
            reason: Reason::InvalidSpec,
            message: format!(
                "spec.projectDiscovery found no project{}{}: check regions and namePattern, and that the credentials may use the projects",
                if d.regions.is_empty() { String::new() } else { format!(" in {}", d.regions.join(", ")) },
                d.name_pattern.as_ref().map(|p| format!(" named like {:?}", p.as_str())).unwrap_or_default(),
            ),
        });
    }
    Ok(found.into_iter().map(|p| Project { id: p.id, region: p.region }).collect())
}

/// A failed discovery as the reason a user acts on: refused credentials, an unreachable IAM, a
/// refused endpoint, or a selection that needs changing.
pub fn blocked(error: &DiscoveryError) -> Blocked {
    let reason = match error {
        DiscoveryError::List(IamError::Endpoint(_)) => Reason::EndpointNotAllowed,
        DiscoveryError::List(e) => match e.class() {
            ErrorClass::Authentication => Reason::AuthenticationFailed,
            ErrorClass::Throttled => Reason::Throttled,
            ErrorClass::Transient | ErrorClass::Decode | ErrorClass::NotFound | ErrorClass::Permanent => {
                Reason::CloudUnavailable
            }
        },
        DiscoveryError::NoProjectForRegion(_) | DiscoveryError::TooMany { .. } => Reason::InvalidSpec,
    };
    let hint = match error {
        DiscoveryError::List(e) if e.class() == ErrorClass::Authentication => {
            "; the credentials need permission to list IAM projects (iam:projects:list)"
        }
        DiscoveryError::TooMany { .. } => {
            "; narrow spec.projectDiscovery.regions or namePattern, or raise maxProjects (at most 256)"
        }
        _ => "",
    };
    Blocked { reason, message: format!("project discovery: {}{hint}", error_chain(error)) }
}

/// The note the Ready message carries after a run over discovered projects.
pub fn note(d: &ValidDiscovery, count: usize) -> String {
    let s = if count == 1 { "" } else { "s" };
    match (d.all_projects, d.regions.is_empty()) {
        (true, true) => format!("{count} project{s} discovered at IAM"),
        _ => format!("{count} project{s} discovered at IAM in {}", d.regions.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::error::ApiError;

    fn valid(regions: &[&str], all_projects: bool) -> ValidDiscovery {
        ValidDiscovery {
            regions: regions.iter().map(|r| r.to_string()).collect(),
            all_projects,
            name_pattern: None,
            max_projects: 2,
        }
    }

    fn api(status: u16) -> DiscoveryError {
        DiscoveryError::List(IamError::Api {
            operation: "list projects",
            error: Box::new(ApiError::from_response(status, None, b"{}")),
        })
    }

    #[test]
    fn failures_map_to_the_reasons_users_act_on() {
        assert_eq!(blocked(&api(401)).reason, Reason::AuthenticationFailed);
        assert!(blocked(&api(403)).message.contains("iam:projects:list"), "{}", blocked(&api(403)).message);
        assert_eq!(blocked(&api(503)).reason, Reason::CloudUnavailable);
        assert_eq!(blocked(&api(429)).reason, Reason::Throttled);
        let many = blocked(&DiscoveryError::TooMany { found: 300, max: 256 });
        assert_eq!(many.reason, Reason::InvalidSpec);
        assert!(many.message.contains("300 projects match, more than the 256 allowed"), "{}", many.message);
        let none = blocked(&DiscoveryError::NoProjectForRegion("cn-east-3".into()));
        assert!(none.message.contains("region cn-east-3 has no project"), "{}", none.message);
    }

    #[test]
    fn nothing_found_is_refused_and_found_projects_keep_their_region() {
        let d = valid(&["cn-north-4"], true);
        let err = to_projects(&d, Vec::new()).unwrap_err();
        assert_eq!(err.reason, Reason::InvalidSpec);
        assert!(err.message.contains("found no project in cn-north-4"), "{}", err.message);
        let found =
            vec![Discovered { id: "p".into(), name: "cn-east-3_a".into(), region: "cn-east-3".into() }];
        assert_eq!(to_projects(&d, found).unwrap(), [Project { id: "p".into(), region: "cn-east-3".into() }]);
        assert_eq!(note(&d, 1), "1 project discovered at IAM in cn-north-4");
        assert_eq!(note(&valid(&[], true), 3), "3 projects discovered at IAM");
    }

    #[tokio::test]
    async fn a_cached_answer_is_used_without_iam_until_it_expires() {
        // IAM cannot be reached at all (port 9 on loopback, plain http allowed): only the cache can
        // answer, and only for the same credentials and selection within the ttl.
        let http = HttpConfig {
            endpoints: crate::cloud::EndpointPolicy {
                allowlist: crate::cloud::Allowlist::parse(["127.0.0.1"]).unwrap(),
                allow_http: true,
            },
            connect_timeout: Duration::from_millis(200),
            request_timeout: Duration::from_millis(200),
            ..HttpConfig::default()
        };
        let discovery = ProjectDiscovery::new(&http, Some("http://127.0.0.1:9"));
        let d = valid(&["cn-north-4"], false);
        let creds = Credentials::Token { auth_token: crate::cloud::credentials::Secret::new("t") };
        let t0: Timestamp = "2026-11-22T05:30:00Z".parse().unwrap();
        let answer =
            vec![Discovered { id: "p".into(), name: "cn-north-4".into(), region: "cn-north-4".into() }];
        discovery.cache.put((creds.identity(), d.key()), t0, answer);
        let at = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        let got = discovery.projects(&d, &creds, at(299)).await.unwrap();
        assert_eq!(got, [Project { id: "p".into(), region: "cn-north-4".into() }]);
        let other = valid(&["cn-east-3"], false);
        assert_eq!(
            discovery.projects(&other, &creds, at(1)).await.unwrap_err().reason,
            Reason::CloudUnavailable
        );
        assert_eq!(
            discovery.projects(&d, &creds, at(300)).await.unwrap_err().reason,
            Reason::CloudUnavailable
        );
        let refused = ProjectDiscovery::new(&HttpConfig::default(), Some("https://iam.example.com"));
        assert_eq!(refused.projects(&d, &creds, t0).await.unwrap_err().reason, Reason::EndpointNotAllowed);
    }
}
