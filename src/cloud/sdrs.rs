//! Typed client of the SDRS failed-task API (network I/O through [`CloudHttp`]): list failure jobs
//! page by page or to the end, delete them in batches or one by one.

use std::sync::Arc;

use reqwest::Method;

use crate::cloud::credentials::Credentials;
use crate::cloud::endpoint::Service;
use crate::cloud::error::{Call, CloudError};
use crate::cloud::http::{ApiRequest, ClientContext, CloudHttp, DeleteOutcome, delete_body, json};
use crate::cloud::model::{
    FailureJob, FailureJobFilter, FailureJobPage, MAX_PAGE, ProtectionGroup, ProtectionGroupPage,
};
use crate::cloud::paging::{MAX_LIST_ITEMS, Next, Pager};
use crate::cloud::signing::encode;

const LIST_FAILURE_JOBS: &str = "ListFailureJobs";
const LIST_PROTECTION_GROUPS: &str = "ListProtectionGroups";
const DELETE_ALL_SERVER_GROUP_FAILURE_JOBS: &str = "DeleteAllServerGroupFailureJobs";
const DELETE_SERVER_GROUP_FAILURE_JOBS: &str = "DeleteServerGroupFailureJobs";
const DELETE_FAILURE_JOB: &str = "DeleteFailureJob";

/// Every operation of this client, as the cloud call spans and metrics name them.
pub const OPERATIONS: [&str; 5] = [
    LIST_FAILURE_JOBS,
    LIST_PROTECTION_GROUPS,
    DELETE_ALL_SERVER_GROUP_FAILURE_JOBS,
    DELETE_SERVER_GROUP_FAILURE_JOBS,
    DELETE_FAILURE_JOB,
];

/// SDRS for one project.
#[derive(Clone, Debug)]
pub struct SdrsClient {
    http: CloudHttp,
    ctx: ClientContext,
    page_size: u32,
}

impl SdrsClient {
    /// A client for `project_id`, at the endpoint override or else the region's SDRS endpoint, which
    /// must pass the allowlist of `http`.
    pub fn new(
        http: CloudHttp,
        credentials: Arc<Credentials>,
        project_id: impl Into<String>,
        region: &str,
        endpoint_override: Option<&str>,
    ) -> Result<Self, CloudError> {
        let endpoint = http.endpoint(Service::Sdrs, region, endpoint_override)?;
        let ctx = ClientContext { credentials, project_id: project_id.into(), endpoint };
        Ok(Self { http, ctx, page_size: MAX_PAGE })
    }

    /// Sets the page size [`Self::list_failure_jobs`] uses, clamped to 1..=1000 (default 1000).
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.clamp(1, MAX_PAGE);
        self
    }

    /// The project this client works on.
    pub fn project_id(&self) -> &str {
        &self.ctx.project_id
    }

    fn base_path(&self) -> String {
        format!("/v1/{}/task-center", encode(&self.ctx.project_id))
    }

    /// `GET /v1/{project_id}/task-center/failure-jobs` with the filter, `limit` and `offset`.
    pub async fn list_failure_jobs_page(
        &self,
        filter: &FailureJobFilter,
        limit: u32,
        offset: u64,
    ) -> Result<FailureJobPage, CloudError> {
        let mut query: Vec<(String, String)> = [
            ("failure_status", &filter.failure_status),
            ("resource_name", &filter.resource_name),
            ("server_group_id", &filter.server_group_id),
            ("resource_type", &filter.resource_type),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| (k.to_string(), v.to_string())))
        .collect();
        query.push(("limit".into(), limit.to_string()));
        query.push(("offset".into(), offset.to_string()));
        let req = ApiRequest {
            operation: LIST_FAILURE_JOBS,
            method: Method::GET,
            path: format!("{}/failure-jobs", self.base_path()),
            query,
        };
        self.http.call(&self.ctx, &req, json).await
    }

    /// Every failure job matching the filter, page by page: `each` gets each page's jobs not seen on
    /// an earlier page. Paging stops when `count` is reached, a page is empty or brings nothing new.
    pub async fn list_failure_jobs_by_page(
        &self,
        filter: &FailureJobFilter,
        mut each: impl FnMut(Vec<FailureJob>),
    ) -> Result<(), CloudError> {
        let mut pager = Pager::new(MAX_LIST_ITEMS);
        let mut offset = 0;
        loop {
            let page = self.list_failure_jobs_page(filter, self.page_size, offset).await?;
            match pager.take(page.failure_jobs, page.count, |j| j.job_id.as_str()) {
                Ok((fresh, next)) => {
                    each(fresh);
                    match next {
                        Next::Fetch(next) => offset = next,
                        Next::Done => return Ok(()),
                    }
                }
                Err(runaway) => {
                    return Err(CloudError::Paging {
                        call: self.call(LIST_FAILURE_JOBS),
                        collected: runaway.collected,
                    });
                }
            }
        }
    }

    /// Every failure job matching the filter, collected; see [`Self::list_failure_jobs_by_page`].
    pub async fn list_failure_jobs(&self, filter: &FailureJobFilter) -> Result<Vec<FailureJob>, CloudError> {
        let mut all = Vec::new();
        self.list_failure_jobs_by_page(filter, |page| all.extend(page)).await?;
        Ok(all)
    }

    /// `GET /v1/{project_id}/server-groups` with `limit` and `offset`.
    pub async fn list_protection_groups_page(
        &self,
        limit: u32,
        offset: u64,
    ) -> Result<ProtectionGroupPage, CloudError> {
        let req = ApiRequest {
            operation: LIST_PROTECTION_GROUPS,
            method: Method::GET,
            path: format!("/v1/{}/server-groups", encode(&self.ctx.project_id)),
            query: vec![("limit".into(), limit.to_string()), ("offset".into(), offset.to_string())],
        };
        self.http.call(&self.ctx, &req, json).await
    }

    /// Every protection group of the project, paging until `count` is reached or a page is empty.
    pub async fn list_protection_groups(&self) -> Result<Vec<ProtectionGroup>, CloudError> {
        let mut pager = Pager::new(MAX_LIST_ITEMS);
        let mut groups = Vec::new();
        let mut offset = 0;
        loop {
            let page = self.list_protection_groups_page(self.page_size, offset).await?;
            match pager.take(page.server_groups, page.count, |g| g.id.as_str()) {
                Ok((fresh, next)) => {
                    groups.extend(fresh);
                    match next {
                        Next::Fetch(next) => offset = next,
                        Next::Done => return Ok(groups),
                    }
                }
                Err(runaway) => {
                    return Err(CloudError::Paging {
                        call: self.call(LIST_PROTECTION_GROUPS),
                        collected: runaway.collected,
                    });
                }
            }
        }
    }

    /// `DELETE /v1/{project_id}/task-center/failure-jobs/batch`: every protection-group-level
    /// (`resource_type=server_groups`) failure job. Other resource types are not touched.
    pub async fn delete_all_server_group_failure_jobs(&self) -> Result<(), CloudError> {
        let path = format!("{}/failure-jobs/batch", self.base_path());
        self.delete(DELETE_ALL_SERVER_GROUP_FAILURE_JOBS, path).await
    }

    /// `DELETE /v1/{project_id}/task-center/{server_group_id}/failure-jobs/batch`.
    pub async fn delete_server_group_failure_jobs(&self, server_group_id: &str) -> Result<(), CloudError> {
        let path = format!("{}/{}/failure-jobs/batch", self.base_path(), encode(server_group_id));
        self.delete(DELETE_SERVER_GROUP_FAILURE_JOBS, path).await
    }

    /// `DELETE /v1/{project_id}/task-center/failure-jobs/{failure_job_id}`; a 404 is `AlreadyGone`.
    pub async fn delete_failure_job(&self, failure_job_id: &str) -> Result<DeleteOutcome, CloudError> {
        let path = format!("{}/failure-jobs/{}", self.base_path(), encode(failure_job_id));
        DeleteOutcome::of(self.delete(DELETE_FAILURE_JOB, path).await)
    }

    async fn delete(&self, operation: &'static str, path: String) -> Result<(), CloudError> {
        let req = ApiRequest { operation, method: Method::DELETE, path, query: Vec::new() };
        self.http.call(&self.ctx, &req, delete_body).await
    }

    fn call(&self, operation: &'static str) -> Call {
        Call { service: Service::Sdrs, operation, project_id: self.ctx.project_id.clone() }
    }
}
