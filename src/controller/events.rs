//! Kubernetes Events for what happened to a policy: one per run, and one when a policy becomes
//! blocked. Does Kubernetes I/O; a failed event is logged, never fatal.

use super::pipeline::Blocked;
use crate::api::{ConditionType, FailedTaskCleanupPolicy, FailedTaskCleanupPolicyStatus, Reason};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};

/// The event a run's Ready reason earns: its type and reason.
pub fn run_event(reason: &str) -> (EventType, &'static str) {
    match reason {
        r if r == Reason::Purged.as_str() => (EventType::Normal, "Purged"),
        r if r == Reason::DryRun.as_str() => (EventType::Normal, "DryRun"),
        r if r == Reason::DeletionLimitReached.as_str() => (EventType::Warning, "DeletionLimitReached"),
        r if r == Reason::AuthenticationFailed.as_str() => (EventType::Warning, "AuthenticationFailed"),
        r if r == Reason::Throttled.as_str() => (EventType::Warning, "Throttled"),
        _ => (EventType::Warning, "PurgeFailed"),
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
    let (type_, reason) = run_event(&ready.reason);
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
        assert_eq!(run_event("Purged"), (EventType::Normal, "Purged"));
        assert_eq!(run_event("DryRun"), (EventType::Normal, "DryRun"));
        assert_eq!(run_event("AuthenticationFailed"), (EventType::Warning, "AuthenticationFailed"));
        assert_eq!(run_event("Throttled"), (EventType::Warning, "Throttled"));
        assert_eq!(run_event("CloudUnavailable"), (EventType::Warning, "PurgeFailed"));
        assert_eq!(run_event("PartialFailure"), (EventType::Warning, "PurgeFailed"));
    }

    #[test]
    fn notes_fit_the_event_limit() {
        assert_eq!(truncate("é".repeat(600)).len(), 1000);
        assert_eq!(truncate("short".into()), "short");
    }
}
