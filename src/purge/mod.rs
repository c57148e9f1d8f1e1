//! Purging: a validated policy ([`policy`]), a pure planner ([`plan`]), an executor that lists,
//! deletes and lists again through a trait over the cloud ([`execute`]), the fence that decides
//! whether this replica may still delete ([`fence`]), what it measured ([`report`]), and the audit
//! record of each task it deleted ([`audit`]).

pub mod audit;
pub mod cloud;
pub mod execute;
pub mod fence;
pub mod plan;
pub mod policy;
pub mod report;

pub use cloud::CloudApi;
pub use execute::{FailedTaskApi, NOT_REMOVED, execute};
pub use fence::{Fence, Refusal};
pub use policy::{KpsMatch, Project, PurgePolicy, SdrsMatch, Target};
pub use report::{CallFailure, FailureKind, Outcome, RunReport, TargetReport, outcome_of};
