//! Query strings of the list calls: decoding, validation as the services do it, filtering and
//! paging. Pure.

use percent_encoding::percent_decode_str;

use crate::cloud::model::{
    FailureJobFilter, MAX_PAGE, ProtectionGroup, SDRS_FAILURE_STATUSES, SDRS_RESOURCE_TYPES,
};

use super::modes::SdrsListing;
use super::store::SeededJob;

/// The largest offset the services accept (a Java `int`).
pub const MAX_OFFSET: u64 = i32::MAX as u64;

/// A validated SDRS list query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailureJobQuery {
    pub filter: FailureJobFilter,
    pub page: Page,
}

/// A validated protection-group list query. `query_type` and `availability_zone` are accepted and
/// not applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerGroupQuery {
    /// Exact status, e.g. `available`.
    pub status: Option<String>,
    /// Part of the name.
    pub name: Option<String>,
    pub page: Page,
}

impl ServerGroupQuery {
    /// Whether a group passes the filters.
    pub fn matches(&self, group: &ProtectionGroup) -> bool {
        self.status.as_deref().is_none_or(|s| s == group.status)
            && self.name.as_deref().is_none_or(|n| group.name.contains(n))
    }
}

/// A window over a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub limit: usize,
    pub offset: usize,
}

impl Default for Page {
    fn default() -> Self {
        Self { limit: MAX_PAGE as usize, offset: 0 }
    }
}

/// Why a query was refused; the message goes to the caller as is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("Invalid parameter {name}: must be an integer between {min} and {max}, got {value:?}.")]
    OutOfRange { name: &'static str, value: String, min: u64, max: u64 },
    #[error("Invalid parameter {name}: must be one of [{allowed}], got {value:?}.")]
    NotAllowed { name: &'static str, value: String, allowed: String },
}

/// Splits a raw query string into decoded pairs. `+` stays a literal plus, as the SDK signer
/// encodes a space as `%20`.
pub fn decode_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            (decode(name), decode(value))
        })
        .collect()
}

/// The first non-empty value of `name`; empty values count as absent.
fn value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.as_str())
}

fn integer(
    pairs: &[(String, String)],
    name: &'static str,
    max: u64,
    default: usize,
) -> Result<usize, QueryError> {
    let Some(raw) = value(pairs, name) else { return Ok(default) };
    raw.parse::<u64>()
        .ok()
        .filter(|n| *n <= max)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| QueryError::OutOfRange { name, value: raw.to_string(), min: 0, max })
}

fn one_of(
    pairs: &[(String, String)],
    name: &'static str,
    allowed: &[&str],
) -> Result<Option<String>, QueryError> {
    match value(pairs, name) {
        None => Ok(None),
        Some(v) if allowed.contains(&v) => Ok(Some(v.to_string())),
        Some(v) => Err(QueryError::NotAllowed { name, value: v.to_string(), allowed: allowed.join(", ") }),
    }
}

/// `limit` (0..=1000, default 1000) and `offset` (default 0).
pub fn parse_page(pairs: &[(String, String)]) -> Result<Page, QueryError> {
    Ok(Page {
        limit: integer(pairs, "limit", u64::from(MAX_PAGE), MAX_PAGE as usize)?,
        offset: integer(pairs, "offset", MAX_OFFSET, 0)?,
    })
}

/// The SDRS list query: enum filters are checked against the documented values.
pub fn parse_failure_job_query(pairs: &[(String, String)]) -> Result<FailureJobQuery, QueryError> {
    Ok(FailureJobQuery {
        filter: FailureJobFilter {
            failure_status: one_of(pairs, "failure_status", &SDRS_FAILURE_STATUSES)?,
            resource_name: value(pairs, "resource_name").map(str::to_string),
            server_group_id: value(pairs, "server_group_id").map(str::to_string),
            resource_type: one_of(pairs, "resource_type", &SDRS_RESOURCE_TYPES)?,
        },
        page: parse_page(pairs)?,
    })
}

/// The protection-group list query: `status` and `name` filters, `limit` and `offset`.
pub fn parse_server_group_query(pairs: &[(String, String)]) -> Result<ServerGroupQuery, QueryError> {
    Ok(ServerGroupQuery {
        status: value(pairs, "status").map(str::to_string),
        name: value(pairs, "name").map(str::to_string),
        page: parse_page(pairs)?,
    })
}

/// Whether a job is in the list's scope and passes the filter. With `server_group_id` the scope is
/// that group's in-group failures; without it the protection-group-level failures
/// ([`SdrsListing::Strict`]) or every failure ([`SdrsListing::Loose`]). `resource_name` matches as a
/// substring, as the console's fuzzy search does; the other filters match exactly.
pub fn matches(job: &SeededJob, filter: &FailureJobFilter, listing: SdrsListing) -> bool {
    let exact = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    let in_scope = match filter.server_group_id.as_deref() {
        Some(group) => job.group_id() == Some(group),
        None => listing == SdrsListing::Loose || job.is_group_level(),
    };
    in_scope
        && exact(&filter.failure_status, &job.job.failure_status)
        && exact(&filter.resource_type, &job.job.resource_type)
        && filter.resource_name.as_deref().is_none_or(|n| job.job.resource_name.contains(n))
}

/// The items of one page, in order.
pub fn page<'a, T: Clone + 'a>(items: impl Iterator<Item = &'a T>, page: Page) -> Vec<T> {
    items.skip(page.offset).take(page.limit).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::model::FailureJob;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn job(id: &str, kind: &str, status: &str, name: &str, group: Option<&str>) -> SeededJob {
        SeededJob {
            job: FailureJob {
                job_id: id.into(),
                resource_type: kind.into(),
                failure_status: status.into(),
                resource_name: name.into(),
                resource_id: format!("res-{id}"),
                ..FailureJob::default()
            },
            server_group_id: group.map(str::to_string),
        }
    }

    #[test]
    fn decodes_percent_but_keeps_plus() {
        assert_eq!(
            decode_query("resource_name=tmp%20a+b&limit=5&flag&=x"),
            pairs(&[("resource_name", "tmp a+b"), ("limit", "5"), ("flag", ""), ("", "x")])
        );
        assert_eq!(decode_query(""), pairs(&[]));
        assert_eq!(decode_query("n=%E5%90%8D"), pairs(&[("n", "名")]));
    }

    #[test]
    fn pages_default_and_validate() {
        assert_eq!(parse_page(&[]), Ok(Page { limit: 1000, offset: 0 }));
        assert_eq!(parse_page(&pairs(&[("limit", "0"), ("offset", "7")])), Ok(Page { limit: 0, offset: 7 }));
        assert_eq!(parse_page(&pairs(&[("limit", "1000")])).map(|p| p.limit), Ok(1000));
        assert_eq!(parse_page(&pairs(&[("limit", "")])).map(|p| p.limit), Ok(1000));
        for bad in ["1001", "-1", "ten", "1.5"] {
            assert_eq!(
                parse_page(&pairs(&[("limit", bad)])),
                Err(QueryError::OutOfRange { name: "limit", value: bad.into(), min: 0, max: 1000 })
            );
        }
        assert!(matches!(
            parse_page(&pairs(&[("offset", "-3")])),
            Err(QueryError::OutOfRange { name: "offset", .. })
        ));
        assert!(parse_page(&pairs(&[("offset", "2147483648")])).is_err());
    }

    #[test]
    fn failure_job_query_checks_enums() {
        let q = parse_failure_job_query(&pairs(&[
            ("resource_type", "replications"),
            ("failure_status", "stopFail"),
            ("resource_name", "tmp-"),
            ("server_group_id", "g1"),
            ("limit", "2"),
        ]))
        .unwrap();
        assert_eq!(q.filter.resource_type.as_deref(), Some("replications"));
        assert_eq!(q.filter.failure_status.as_deref(), Some("stopFail"));
        assert_eq!(q.filter.resource_name.as_deref(), Some("tmp-"));
        assert_eq!(q.filter.server_group_id.as_deref(), Some("g1"));
        assert_eq!(q.page, Page { limit: 2, offset: 0 });
        let err = parse_failure_job_query(&pairs(&[("resource_type", "volumes")])).unwrap_err();
        assert!(err.to_string().contains("server_groups, protected_instances"), "{err}");
        assert!(parse_failure_job_query(&pairs(&[("failure_status", "createfail")])).is_err());
    }

    #[test]
    fn filters_match_each_field_within_the_scope() {
        let jobs = [
            job("1", "server_groups", "createFail", "prod-pg", None),
            job("2", "protected_instances", "deleteFail", "tmp-vm-1", Some("res-1")),
            job("3", "replications", "deleteFail", "tmp-rep", Some("g9")),
            job("4", "server_groups", "deleteFail", "tmp-pg", None),
        ];
        let ids = |filter: FailureJobFilter, listing: SdrsListing| -> Vec<String> {
            jobs.iter().filter(|j| matches(j, &filter, listing)).map(|j| j.job.job_id.clone()).collect()
        };
        let strict = |filter| ids(filter, SdrsListing::Strict);
        let loose = |filter| ids(filter, SdrsListing::Loose);
        assert_eq!(strict(FailureJobFilter::default()), ["1", "4"]);
        assert_eq!(loose(FailureJobFilter::default()), ["1", "2", "3", "4"]);
        let deleted = FailureJobFilter { failure_status: Some("deleteFail".into()), ..Default::default() };
        assert_eq!(strict(deleted.clone()), ["4"]);
        assert_eq!(loose(deleted), ["2", "3", "4"]);
        let tmp = FailureJobFilter { resource_name: Some("tmp-".into()), ..Default::default() };
        assert_eq!(loose(tmp), ["2", "3", "4"]);
        let groups = FailureJobFilter { resource_type: Some("server_groups".into()), ..Default::default() };
        assert_eq!(strict(groups), ["1", "4"]);
        let instances =
            FailureJobFilter { resource_type: Some("protected_instances".into()), ..Default::default() };
        assert_eq!(strict(instances.clone()), Vec::<String>::new(), "in-group failures need a group");
        assert_eq!(loose(instances), ["2"]);
        let g = |id: &str| FailureJobFilter { server_group_id: Some(id.into()), ..Default::default() };
        for listing in [SdrsListing::Strict, SdrsListing::Loose] {
            assert_eq!(ids(g("res-1"), listing), ["2"], "a group-level job is not inside the group it names");
            assert_eq!(ids(g("g9"), listing), ["3"]);
        }
    }

    #[test]
    fn server_group_query_filters_and_pages() {
        let q = parse_server_group_query(&pairs(&[
            ("status", "available"),
            ("name", "prod"),
            ("query_type", "status_abnormal"),
            ("availability_zone", "az1.dc1"),
            ("limit", "3"),
            ("offset", "1"),
        ]))
        .unwrap();
        assert_eq!(q.status.as_deref(), Some("available"));
        assert_eq!(q.name.as_deref(), Some("prod"));
        assert_eq!(q.page, Page { limit: 3, offset: 1 });
        let group = |name: &str, status: &str| ProtectionGroup {
            id: name.into(),
            name: name.into(),
            status: status.into(),
        };
        assert!(q.matches(&group("prod-pg-01", "available")));
        assert!(!q.matches(&group("prod-pg-01", "protected")));
        assert!(!q.matches(&group("dev-pg-01", "available")));
        assert!(ServerGroupQuery::default().matches(&group("", "")));
        assert!(parse_server_group_query(&pairs(&[("limit", "1001")])).is_err());
        assert!(parse_server_group_query(&pairs(&[("offset", "x")])).is_err());
    }

    #[test]
    fn pages_slice_in_order() {
        let items = [1, 2, 3, 4, 5];
        assert_eq!(page(items.iter(), Page { limit: 2, offset: 0 }), [1, 2]);
        assert_eq!(page(items.iter(), Page { limit: 2, offset: 4 }), [5]);
        assert_eq!(page(items.iter(), Page { limit: 0, offset: 0 }), Vec::<i32>::new());
        assert_eq!(page(items.iter(), Page { limit: 10, offset: 9 }), Vec::<i32>::new());
    }
}
