//! Typed client of the KPS failed-task API (network I/O through [`CloudHttp`]): list failed key-pair
//! tasks page by page or to the end, delete them all or one by one.

use std::sync::Arc;

use reqwest::Method;

use crate::cloud::credentials::Credentials;
use crate::cloud::endpoint::Service;
use crate::cloud::error::{Call, CloudError};
use crate::cloud::http::{ApiRequest, ClientContext, CloudHttp, DeleteOutcome, delete_body, json};
use crate::cloud::model::{FailedTask, FailedTaskPage, MAX_PAGE};
use crate::cloud::paging::{MAX_LIST_ITEMS, Next, Pager};
use crate::cloud::signing::encode;

const LIST_FAILED_TASK: &str = "ListFailedTask";
const DELETE_ALL_FAILED_TASK: &str = "DeleteAllFailedTask";
const DELETE_FAILED_TASK: &str = "DeleteFailedTask";

/// Every operation of this client, as the cloud call spans and metrics name them.
pub const OPERATIONS: [&str; 3] = [LIST_FAILED_TASK, DELETE_ALL_FAILED_TASK, DELETE_FAILED_TASK];

/// KPS for one project.
#[derive(Clone, Debug)]
pub struct KpsClient {
    http: CloudHttp,
    ctx: ClientContext,
    page_size: u32,
}

impl KpsClient {
    /// A client for `project_id`, at the endpoint override or else the region's KMS endpoint, which
    /// must pass the allowlist of `http`.
    pub fn new(
        http: CloudHttp,
        credentials: Arc<Credentials>,
        project_id: impl Into<String>,
        region: &str,
        endpoint_override: Option<&str>,
    ) -> Result<Self, CloudError> {
        let endpoint = http.endpoint(Service::Kps, region, endpoint_override)?;
        let ctx = ClientContext { credentials, project_id: project_id.into(), endpoint };
        Ok(Self { http, ctx, page_size: MAX_PAGE })
    }

    /// Sets the page size [`Self::list_failed_tasks`] uses, clamped to 1..=1000 (default 1000).
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.clamp(1, MAX_PAGE);
        self
    }

    /// The project this client works on.
    pub fn project_id(&self) -> &str {
        &self.ctx.project_id
    }

    fn tasks_path(&self) -> String {
        format!("/v3/{}/failed-tasks", encode(&self.ctx.project_id))
    }

    /// `GET /v3/{project_id}/failed-tasks?limit=&offset=`.
    pub async fn list_failed_tasks_page(
        &self,
        limit: u32,
        offset: u64,
    ) -> Result<FailedTaskPage, CloudError> {
        let req = ApiRequest {
            operation: LIST_FAILED_TASK,
            method: Method::GET,
            path: self.tasks_path(),
            query: vec![("limit".into(), limit.to_string()), ("offset".into(), offset.to_string())],
        };
        self.http.call(&self.ctx, &req, json).await
    }

    /// Every failed task, page by page: `each` gets each page's tasks not seen on an earlier page.
    /// Paging stops when `total` is reached, a page is empty or brings nothing new.
    pub async fn list_failed_tasks_by_page(
        &self,
        mut each: impl FnMut(Vec<FailedTask>),
    ) -> Result<(), CloudError> {
        let mut pager = Pager::new(MAX_LIST_ITEMS);
        let mut offset = 0;
        loop {
            let page = self.list_failed_tasks_page(self.page_size, offset).await?;
            match pager.take(page.tasks, page.total, |t| t.task_id.as_str()) {
                Ok((fresh, next)) => {
                    each(fresh);
                    match next {
                        Next::Fetch(next) => offset = next,
                        Next::Done => return Ok(()),
                    }
                }
                Err(runaway) => {
                    return Err(CloudError::Paging {
                        call: Call {
                            service: Service::Kps,
                            operation: LIST_FAILED_TASK,
                            project_id: self.ctx.project_id.clone(),
                        },
                        collected: runaway.collected,
                    });
                }
            }
        }
    }

    /// Every failed task, collected; see [`Self::list_failed_tasks_by_page`].
    pub async fn list_failed_tasks(&self) -> Result<Vec<FailedTask>, CloudError> {
        let mut all = Vec::new();
        self.list_failed_tasks_by_page(|page| all.extend(page)).await?;
        Ok(all)
    }

    /// `DELETE /v3/{project_id}/failed-tasks`: every failed task of the project.
    pub async fn delete_all_failed_tasks(&self) -> Result<(), CloudError> {
        self.delete(DELETE_ALL_FAILED_TASK, self.tasks_path()).await
    }

    /// `DELETE /v3/{project_id}/failed-tasks/{task_id}`; a 404 is `AlreadyGone`.
    pub async fn delete_failed_task(&self, task_id: &str) -> Result<DeleteOutcome, CloudError> {
        let path = format!("{}/{}", self.tasks_path(), encode(task_id));
        DeleteOutcome::of(self.delete(DELETE_FAILED_TASK, path).await)
    }

    async fn delete(&self, operation: &'static str, path: String) -> Result<(), CloudError> {
        let req = ApiRequest { operation, method: Method::DELETE, path, query: Vec::new() };
        self.http.call(&self.ctx, &req, delete_body).await
    }
}
