//! Kubernetes Events for what happened to a policy: one per run (plus a Warning when the run left
//! tasks alone because of unsafe ids, and one when the cloud kept tasks whose DELETE it accepted),
//! and one when a policy becomes blocked. Does Kubernetes I/O;
//! a failed event is logged, never fatal.

use std::collections::BTreeMap;

use super::pipeline::Blocked;
use crate::api::{
    ConditionType, FailedTaskCleanupPolicy, FailedTaskCleanupPolicyStatus, Reason, RunSummary, Service,
    TargetResult,
};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};

/// The event a run's Ready reason earns: its type and reason; `None` for a reason no run ends with.
pub fn run_event(reason: Reason) -> Option<(EventType, &'static str)> {
    match reason {
        Reason::Purged => Some((EventType::Normal, "Purged")),
        Reason::DryRun => Some((EventType::Normal, "DryRun")),
        Reason::DeletionLimitReached => Some((EventType::Warning, "DeletionLimitReached")),
        Reason::AuthenticationFailed => Some((EventType::Warning, "AuthenticationFailed")),
        Reason::Throttled => Some((EventType::Warning, "Throttled")),
        Reason::PartialFailure | Reason::CloudUnavailable => Some((EventType::Warning, "PurgeFailed")),
        Reason::Suspended
        | Reason::Waiting
        | Reason::Running
        | Reason::Idle
        | Reason::AsExpected
        | Reason::CredentialsNotFound
        | Reason::CredentialsInvalid
        | Reason::EndpointNotAllowed
        | Reason::InvalidSpec => None,
    }
}

async fn publish(
    recorder: &Recorder,
    policy: &FailedTaskCleanupPolicy,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(note)),
        action: "Purge".to_string(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &policy.object_ref(&())).await {
        tracing::warn!(policy = %policy.name_any(), %error, "publishing event failed");
    }
}

/// A run's note: the Ready message, then whose credentials it used (never a secret).
pub fn run_note(message: &str, identity: &str) -> String {
    format!("{message} (credentials: {identity})")
}

/// Events notes are limited to 1 kB.
fn truncate(mut note: String) -> String {
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    note
}

/// The reason of the Warning a run earns when it left tasks alone because the cloud gave them ids
/// that are not safe in a URL path.
pub const UNSAFE_TASK_IDS: &str = "UnsafeTaskIds";

/// After a run: Purged / DryRun (Normal) or a Warning saying what went wrong, with the counts and
/// the identity whose credentials the run used; and a second Warning, [`UNSAFE_TASK_IDS`], when
/// tasks were left alone because of unsafe ids.
pub async fn ran(
    recorder: &Recorder,
    policy: &FailedTaskCleanupPolicy,
    status: &FailedTaskCleanupPolicyStatus,
    identity: &str,
) {
    let Some(ready) = status.condition(ConditionType::Ready) else { return };
    let Some((type_, reason)) = status.reason(ConditionType::Ready).and_then(run_event) else { return };
    publish(recorder, policy, type_, reason, run_note(&ready.message, identity)).await;
    if let Some(note) = status.last_run.as_ref().and_then(unsafe_ids_note) {
        publish(recorder, policy, EventType::Warning, UNSAFE_TASK_IDS, note).await;
    }
    if let Some(note) = status.last_run.as_ref().and_then(not_removed_note) {
        publish(recorder, policy, EventType::Warning, TASKS_NOT_REMOVED, note).await;
    }
}

/// The reason of the Warning a run earns when the cloud accepted DELETEs of tasks that the list
/// after them still showed.
pub const TASKS_NOT_REMOVED: &str = "TasksNotRemoved";

/// The note of the [`TASKS_NOT_REMOVED`] event: counts per project and service; `None` when the
/// cloud removed every task whose DELETE it accepted.
pub fn not_removed_note(run: &RunSummary) -> Option<String> {
    if run.not_removed == 0 {
        return None;
    }
    let counts = per_project_and_service(run, |t| t.not_removed);
    let s = if run.not_removed == 1 { "" } else { "s" };
    Some(format!(
        "the cloud accepted the DELETE of {} failed task{s} twice and still lists them; they count as \
         remaining, not deleted, and the policy runs again soon ({})",
        run.not_removed,
        counts.join(", ")
    ))
}

/// The note of the [`UNSAFE_TASK_IDS`] event: counts per project and service, never the ids
/// themselves (they come from the cloud and may hold anything); `None` when there were none.
pub fn unsafe_ids_note(run: &RunSummary) -> Option<String> {
    if run.unsafe_ids == 0 {
        return None;
    }
    let counts = per_project_and_service(run, |t| t.unsafe_ids);
    let s = if run.unsafe_ids == 1 { "" } else { "s" };
    Some(format!(
        "{} failed task{s} left alone because the cloud listed them with ids that are not safe in a URL \
         path (empty, over 128 characters, anything but letters, digits, '-' and '_', or batch); no \
         DELETE was sent for them ({})",
        run.unsafe_ids,
        counts.join(", ")
    ))
}

/// `count` of the run's rows summed per project and service, as "p1 SDRS: 3" entries.
fn per_project_and_service(run: &RunSummary, count: impl Fn(&TargetResult) -> u64) -> Vec<String> {
    let mut per: BTreeMap<(&str, Service), u64> = BTreeMap::new();
    for row in run.targets.iter().filter(|t| count(t) > 0) {
        *per.entry((row.project.as_str(), row.service)).or_default() += count(row);
    }
    per.iter().map(|((project, service), n)| format!("{project} {service}: {n}")).collect()
}

/// When a policy becomes blocked: a Warning named after the reason.
pub async fn blocked(recorder: &Recorder, policy: &FailedTaskCleanupPolicy, blocked: &Blocked) {
    publish(recorder, policy, EventType::Warning, blocked.reason.as_str(), blocked.message.clone()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_reasons_map_to_the_documented_events() {
        assert_eq!(run_event(Reason::Purged), Some((EventType::Normal, "Purged")));
        assert_eq!(run_event(Reason::DryRun), Some((EventType::Normal, "DryRun")));
        assert_eq!(
            run_event(Reason::AuthenticationFailed),
            Some((EventType::Warning, "AuthenticationFailed"))
        );
        assert_eq!(run_event(Reason::Throttled), Some((EventType::Warning, "Throttled")));
        assert_eq!(run_event(Reason::CloudUnavailable), Some((EventType::Warning, "PurgeFailed")));
        assert_eq!(run_event(Reason::PartialFailure), Some((EventType::Warning, "PurgeFailed")));
        assert_eq!(run_event(Reason::CredentialsNotFound), None);
    }

    #[test]
    fn unsafe_ids_are_counted_per_project_and_service_without_the_ids() {
        use crate::api::{Scope, TargetOutcome, TargetResult};
        let row = |project: &str, service, unsafe_ids| TargetResult {
            project: project.into(),
            target_index: 0,
            service,
            scope: Scope::Matching,
            outcome: TargetOutcome::Purged,
            found: Some(5),
            deleted: Some(2),
            would_delete: 0,
            remaining: Some(3),
            unmeasured: None,
            unsafe_ids,
            not_removed: 0,
            summed_rows: 0,
            error: None,
        };
        let mut run = RunSummary {
            unsafe_ids: 6,
            targets: vec![
                row("p1", Service::Sdrs, 2),
                row("p1", Service::Sdrs, 1),
                row("p1", Service::Kps, 3),
                row("p2", Service::Kps, 0),
            ],
            ..RunSummary::default()
        };
        let note = unsafe_ids_note(&run).unwrap();
        assert!(note.starts_with("6 failed tasks left alone"), "{note}");
        assert!(note.ends_with("(p1 SDRS: 3, p1 KPS: 3)"), "{note}");
        assert!(!note.contains("p2"), "{note}");
        run.unsafe_ids = 0;
        assert_eq!(unsafe_ids_note(&run), None);
    }

    #[test]
    fn notes_fit_the_event_limit() {
        assert_eq!(truncate("é".repeat(600)).len(), 1000);
        assert_eq!(truncate("short".into()), "short");
    }
}
