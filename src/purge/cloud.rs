//! [`FailedTaskApi`] over the real SDRS and KPS clients, behind a [`Fence`] that decides whether
//! this replica may still delete. Does network I/O through them.

use super::execute::FailedTaskApi;
use super::fence::{Fence, Refusal};
use super::plan::{DeleteCall, ListQuery, Page};
use super::policy::{Project, PurgePolicy, Target};
use super::report::{CallFailure, FailureKind};
use crate::api::{Endpoints, Service};
use crate::cloud::credentials::Credentials;
use crate::cloud::model::FailureJobFilter;
use crate::cloud::{CloudError, CloudHttp, DeleteOutcome, ErrorClass, KpsClient, SdrsClient};
use std::future::Future;
use std::sync::Arc;
use tokio::time::Instant;

/// The cloud as one policy reaches it: its credentials and endpoint overrides.
#[derive(Clone, Debug)]
pub struct CloudApi {
    http: CloudHttp,
    credentials: Arc<Credentials>,
    endpoints: Endpoints,
    fence: Fence,
}

impl CloudApi {
    pub fn new(http: CloudHttp, credentials: Credentials, endpoints: Endpoints) -> Self {
        Self { http, credentials: Arc::new(credentials), endpoints, fence: Fence::unfenced() }
    }

    /// The same cloud behind `fence`: each DELETE starts only while the fence admits it and is
    /// abandoned when it would outlive the Lease; on shutdown every call still running at the
    /// fence's cut is abandoned. The fence is asked again right before each DELETE goes on the
    /// wire, so one that waited for a rate limit or an in-flight slot is not sent once the fence
    /// has closed.
    pub fn with_fence(self, fence: Fence) -> Self {
        let gate = fence.clone();
        let http = self.http.with_delete_gate(Arc::new(move || {
            gate.admit(Instant::now()).map_err(|refusal| refusal.to_string())
        }));
        Self { fence, http, ..self }
    }

    /// Runs `call` until it ends, `deadline` passes or shutdown cuts it.
    async fn bounded<T>(
        &self,
        deadline: Option<Instant>,
        call: impl Future<Output = Result<T, CallFailure>>,
    ) -> Result<T, CallFailure> {
        let lapse = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = call => result,
            () = lapse => Err(CallFailure::new(
                FailureKind::Unavailable,
                None,
                "LeaseDeadline",
                "the DELETE was abandoned so that it could not outlive this replica's Lease",
            )),
            () = self.fence.cut() => Err(CallFailure::new(
                FailureKind::Unavailable,
                None,
                "ShuttingDown",
                "the call was cut: the controller is shutting down and its grace period ended",
            )),
        }
    }

    /// Resolves every endpoint the policy will call and checks it against the allowlist, so a
    /// refused endpoint stops the run before any request carries credentials.
    pub fn check_endpoints(&self, policy: &PurgePolicy) -> Result<(), CloudError> {
        for project in &policy.projects {
            for service in policy.targets.iter().map(Target::service) {
                let url = match service {
                    Service::Sdrs => self.endpoints.sdrs.as_deref(),
                    Service::Kps => self.endpoints.kps.as_deref(),
                };
                self.http.endpoint(service, &project.region, url)?;
            }
        }
        Ok(())
    }

    fn sdrs(&self, project: &Project) -> Result<SdrsClient, CallFailure> {
        let url = self.endpoints.sdrs.as_deref();
        SdrsClient::new(self.http.clone(), self.credentials.clone(), &project.id, &project.region, url)
            .map_err(|e| failure(&e))
    }

    fn kps(&self, project: &Project) -> Result<KpsClient, CallFailure> {
        let url = self.endpoints.kps.as_deref();
        KpsClient::new(self.http.clone(), self.credentials.clone(), &project.id, &project.region, url)
            .map_err(|e| failure(&e))
    }
}

/// How a failed call shows in status and events: the API's own code and message when it sent
/// one, otherwise the error class and a description of what failed.
pub fn failure(error: &CloudError) -> CallFailure {
    let kind = match error.class() {
        ErrorClass::Authentication => FailureKind::Authentication,
        ErrorClass::Throttled => FailureKind::Throttled,
        ErrorClass::Transient | ErrorClass::Decode => FailureKind::Unavailable,
        ErrorClass::Permanent | ErrorClass::NotFound => FailureKind::Rejected,
    };
    match error.api_error() {
        Some(api) => CallFailure {
            kind,
            http_status: Some(api.http_status),
            code: api.code.clone(),
            message: api.message.clone(),
            request_id: api.request_id.clone(),
        },
        None => CallFailure {
            kind,
            http_status: None,
            code: match error {
                CloudError::NotSent { .. } => "NotSent".to_string(),
                CloudError::Abandoned { .. } => "LeaseDeadline".to_string(),
                _ => error.class().as_str().to_string(),
            },
            message: error.to_string(),
            request_id: None,
        },
    }
}

impl FailedTaskApi for CloudApi {
    async fn list(
        &self,
        project: &Project,
        query: &ListQuery,
        each: &mut (dyn FnMut(Page) + Send),
    ) -> Result<(), CallFailure> {
        self.bounded(None, self.list_unbounded(project, query, each)).await
    }

    async fn delete(&self, project: &Project, call: &DeleteCall) -> Result<DeleteOutcome, CallFailure> {
        // Checked now, so that a replica that lost its Lease queues nothing more, and again by the
        // gate right before the request goes on the wire, which also bounds how long it may run.
        self.fence.admit(Instant::now()).map_err(refused)?;
        self.bounded(None, self.delete_unbounded(project, call)).await
    }
}

/// A DELETE the fence refused.
fn refused(refusal: Refusal) -> CallFailure {
    let code = match refusal {
        Refusal::NotLeader | Refusal::RenewOverdue => "LeadershipLost",
        Refusal::ShuttingDown => "ShuttingDown",
    };
    CallFailure::new(FailureKind::Unavailable, None, code, &format!("DELETE not sent: {refusal}"))
}

impl CloudApi {
    async fn list_unbounded(
        &self,
        project: &Project,
        query: &ListQuery,
        each: &mut (dyn FnMut(Page) + Send),
    ) -> Result<(), CallFailure> {
        let result = match query {
            ListQuery::SdrsGroups => self
                .sdrs(project)?
                .list_protection_groups()
                .await
                .map(|groups| each(Page::SdrsGroups(groups.into_iter().map(|g| g.id).collect()))),
            ListQuery::SdrsJobs { group } => {
                let filter =
                    FailureJobFilter { server_group_id: group.clone(), ..FailureJobFilter::default() };
                self.sdrs(project)?
                    .list_failure_jobs_by_page(&filter, |jobs| each(Page::SdrsJobs(jobs)))
                    .await
            }
            ListQuery::Kps => {
                self.kps(project)?.list_failed_tasks_by_page(|tasks| each(Page::Kps(tasks))).await
            }
        };
        result.map_err(|e| failure(&e))
    }

    async fn delete_unbounded(
        &self,
        project: &Project,
        call: &DeleteCall,
    ) -> Result<DeleteOutcome, CallFailure> {
        let batch = |result: Result<(), CloudError>| result.map(|()| DeleteOutcome::Deleted);
        let result = match call {
            DeleteCall::SdrsBatch => batch(self.sdrs(project)?.delete_all_server_group_failure_jobs().await),
            DeleteCall::SdrsGroupBatch(group) => {
                batch(self.sdrs(project)?.delete_server_group_failure_jobs(group).await)
            }
            DeleteCall::SdrsDelete(id) => self.sdrs(project)?.delete_failure_job(id).await,
            DeleteCall::KpsDeleteAll => batch(self.kps(project)?.delete_all_failed_tasks().await),
            DeleteCall::KpsDelete(id) => self.kps(project)?.delete_failed_task(id).await,
        };
        result.map_err(|e| failure(&e))
    }
}
