//! Kubernetes Events for what happened to a policy: one per run, and one when a policy becomes
//! blocked. Does Kubernetes I/O; a failed event is logged, never fatal.

use super::pipeline::Blocked;
use crate::api::{ConditionType, FailedTaskCleanupPolicy, FailedTaskCleanupPolicyStatus, Reason};
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

/// After a run: Purged / DryRun (Normal) or a Warning saying what went wrong, with the counts.
pub async fn ran(
    recorder: &Recorder,
    policy: &FailedTaskCleanupPolicy,
    status: &FailedTaskCleanupPolicyStatus,
) {
    let Some(ready) = status.condition(ConditionType::Ready) else { return };
    let Some((type_, reason)) = status.reason(ConditionType::Ready).and_then(run_event) else { return };
    publish(recorder, policy, type_, reason, ready.message.clone()).await;
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
    fn notes_fit_the_event_limit() {
        assert_eq!(truncate("é".repeat(600)).len(), 1000);
        assert_eq!(truncate("short".into()), "short");
    }
}
