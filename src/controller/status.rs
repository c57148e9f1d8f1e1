//! The next status of a policy, from the previous one and what this reconcile saw or did. Pure: the
//! clock is passed in; timestamps move only when something changed, so an unchanged status compares
//! equal and is not written.

use crate::api::conditions::{ConditionType, Reason};
use crate::api::status::{CallError, FailedTaskCleanupPolicyStatus, FailureClass, RunSummary, TargetResult};
use crate::controller::schedule;
use crate::purge::{CallFailure, FailureKind, NOT_REMOVED, RunReport};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// What this reconcile found.
#[derive(Clone, Debug)]
pub enum Verdict<'a> {
    /// The user must change something before the policy can run.
    Blocked { reason: Reason, message: String },
    /// `spec.suspend` is true.
    Suspended,
    /// Nothing to do until `next`; earlier results stand.
    Waiting,
    /// A run has started.
    Running,
    /// A run finished.
    Ran {
        report: &'a RunReport,
        started: Timestamp,
        dry_run: bool,
        /// How the projects were discovered, when they were: added to the Ready message.
        discovered: Option<&'a str>,
        /// Whose credentials the run used ([`crate::api::CredentialSource::describe`]).
        credentials: Option<&'a str>,
    },
}

/// The inputs every status carries.
#[derive(Clone, Debug)]
pub struct Observed {
    pub generation: Option<i64>,
    pub next_run: Option<Timestamp>,
    /// The `taskreaper.io/requested-at` value this reconcile handled, if it ran because of it.
    pub handled_request: Option<String>,
    pub now: Timestamp,
}

/// `t` to whole seconds, the precision of the API server's `metav1.Time`.
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// A status time as the API server will store it, so that a status computed again from the stored
/// one compares equal and is not written again.
fn api_time(t: Timestamp) -> Time {
    Time(whole_seconds(t))
}

/// Whether a Ready reason describes the outcome of a run, as opposed to why no run could happen.
fn is_run_reason(reason: Reason) -> bool {
    match reason {
        Reason::Purged
        | Reason::DryRun
        | Reason::DeletionLimitReached
        | Reason::AuthenticationFailed
        | Reason::Throttled
        | Reason::PartialFailure
        | Reason::CloudUnavailable => true,
        Reason::Suspended
        | Reason::Waiting
        | Reason::Running
        | Reason::Idle
        | Reason::AsExpected
        | Reason::CredentialsNotFound
        | Reason::CredentialsInvalid
        | Reason::EndpointNotAllowed
        | Reason::InvalidSpec => false,
    }
}

/// Sets a condition, keeping `lastTransitionTime` unless the status flips.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: ConditionType,
    status: bool,
    reason: Reason,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" };
    set_condition_status(conditions, type_, status, reason, message, generation, now);
}

fn set_condition_status(
    conditions: &mut Vec<Condition>,
    type_: ConditionType,
    status: &str,
    reason: Reason,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) {
    let last_transition_time = conditions
        .iter()
        .find(|c| c.type_ == type_.as_str() && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| api_time(now));
    let condition = Condition {
        type_: type_.as_str().to_string(),
        status: status.to_string(),
        reason: reason.as_str().to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_.as_str()) {
        Some(existing) => *existing = condition,
        None => conditions.push(condition),
    }
    conditions.sort_by_key(|c| {
        ConditionType::ALL.iter().position(|t| t.as_str() == c.type_).unwrap_or(ConditionType::ALL.len())
    });
}

/// The Ready reason and message a finished run earns. Tasks left alone because of unsafe ids do
/// not change the reason (nobody can fix the cloud's ids by editing the policy) but the message
/// says how many there are.
pub fn run_verdict(report: &RunReport, dry_run: bool, max_deletions: Option<u64>) -> (bool, Reason, String) {
    let (ok, reason, mut message) = outcome_verdict(report, dry_run, max_deletions);
    if let Some(note) = unsafe_ids_note(report.unsafe_ids()) {
        message.push_str("; ");
        message.push_str(&note);
    }
    (ok, reason, message)
}

/// "2 failed tasks left alone: ...", or `None` when every covered task had a safe id.
pub fn unsafe_ids_note(unsafe_ids: u64) -> Option<String> {
    (unsafe_ids > 0).then(|| {
        let s = if unsafe_ids == 1 { "" } else { "s" };
        format!(
            "{unsafe_ids} failed task{s} left alone because the cloud listed {} with an id that is not \
             safe in a URL path (see lastRun.unsafeIds)",
            if unsafe_ids == 1 { "it" } else { "them" }
        )
    })
}

fn outcome_verdict(report: &RunReport, dry_run: bool, max_deletions: Option<u64>) -> (bool, Reason, String) {
    let projects = report.projects();
    let plural = if projects == 1 { "" } else { "s" };
    if let Some(failure) = report.worst_failure() {
        let failed = report.targets.iter().filter(|t| t.error.is_some()).count();
        let reason = match failure.kind {
            FailureKind::Authentication => Reason::AuthenticationFailed,
            FailureKind::Throttled => Reason::Throttled,
            // The cloud answered; it did not do what it said.
            _ if failed < report.targets.len() || failure.code == NOT_REMOVED => Reason::PartialFailure,
            FailureKind::Unavailable => Reason::CloudUnavailable,
            FailureKind::Rejected => Reason::PartialFailure,
        };
        let message = format!(
            "{failed} of {} targets failed; first: {}; {} deleted, {}",
            report.targets.len(),
            describe_failure(failure),
            report.deleted(),
            remaining(report)
        );
        return (false, reason, message);
    }
    if dry_run {
        return (
            true,
            Reason::DryRun,
            format!(
                "{projects} project{plural}: {} would be deleted, {} found",
                report.would_delete(),
                report.found()
            ),
        );
    }
    if report.limited() {
        let limit = max_deletions.map(|m| format!("maxDeletionsPerRun={m}")).unwrap_or_default();
        return (
            true,
            Reason::DeletionLimitReached,
            format!(
                "stopped at {limit}: {projects} project{plural}: {} deleted, {}",
                report.deleted(),
                remaining(report)
            ),
        );
    }
    (
        true,
        Reason::Purged,
        format!("{projects} project{plural}: {} deleted, {}", report.deleted(), remaining(report)),
    )
}

/// "3 remaining", or why the number is unknown.
fn remaining(report: &RunReport) -> String {
    match report.remaining() {
        Some(n) => format!("{n} remaining"),
        None => {
            let n = report.unmeasured();
            format!("remaining unknown ({n} target{} could not be measured)", if n == 1 { "" } else { "s" })
        }
    }
}

/// A one-line account of a failed call, for messages and events.
pub fn describe_failure(f: &CallFailure) -> String {
    let status = f.http_status.map(|s| format!("HTTP {s} ")).unwrap_or_default();
    let request = f.request_id.as_deref().map(|r| format!(" (request {r})")).unwrap_or_default();
    format!("{status}{}: {}{request}", f.code, f.message)
}

/// The class a failure keeps in the status, where the retry decision reads it.
pub fn failure_class(kind: FailureKind) -> FailureClass {
    match kind {
        FailureKind::Authentication => FailureClass::Authentication,
        FailureKind::Throttled => FailureClass::Throttled,
        FailureKind::Unavailable => FailureClass::Unavailable,
        FailureKind::Rejected => FailureClass::Rejected,
    }
}

fn call_error(f: &CallFailure) -> CallError {
    CallError {
        class: Some(failure_class(f.kind)),
        http_status: f.http_status,
        code: f.code.clone(),
        message: f.message.clone(),
        request_id: f.request_id.clone(),
    }
}

/// Most rows `lastRun.targets` lists one by one; the CRD's `maxItems` on it leaves room for the
/// per-project-and-service rows that sum the rest.
pub const MAX_ROWS: usize = 128;
/// Longest error message and unmeasured note a row keeps, in bytes.
pub const MAX_ROW_TEXT: usize = 200;
/// Longest error message a row that sums others keeps, in bytes.
const MAX_SUM_TEXT: usize = 64;

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The rows of a run bounded so the status always fits: failed rows first, then the others, each
/// kept as it is up to [`MAX_ROWS`]; the rest summed into one row per project and service
/// (`summedRows` says how many it stands for, `targetIndex` is the first of them). Texts are cut
/// by bytes.
fn bounded_rows(mut rows: Vec<TargetResult>) -> Vec<TargetResult> {
    for row in &mut rows {
        row.unmeasured = row.unmeasured.take().map(|t| cut(t, MAX_ROW_TEXT));
        if let Some(error) = &mut row.error {
            error.message = cut(std::mem::take(&mut error.message), MAX_ROW_TEXT);
            error.code = cut(std::mem::take(&mut error.code), 64);
        }
    }
    if rows.len() <= MAX_ROWS {
        return rows;
    }
    // Stable: within failed and not failed, the report's order (project, then target) stays.
    rows.sort_by_key(|r| r.error.is_none());
    let rest = rows.split_off(MAX_ROWS);
    let mut sums: Vec<TargetResult> = Vec::new();
    for row in rest {
        match sums.iter_mut().find(|s| s.project == row.project && s.service == row.service) {
            Some(sum) => {
                let add = |a: Option<u64>, b: Option<u64>| Some(a? + b?);
                sum.found = add(sum.found, row.found);
                sum.deleted = add(sum.deleted, row.deleted);
                sum.remaining = add(sum.remaining, row.remaining);
                sum.would_delete += row.would_delete;
                sum.unsafe_ids += row.unsafe_ids;
                sum.not_removed += row.not_removed;
                sum.summed_rows += 1;
                if sum.scope != row.scope {
                    sum.scope = crate::api::Scope::All;
                }
                if sum.error.is_none() && row.error.is_some() {
                    (sum.outcome, sum.error) = (row.outcome, row.error);
                }
            }
            None => sums.push(TargetResult { summed_rows: 1, unmeasured: None, ..row }),
        }
    }
    for sum in &mut sums {
        if let Some(error) = &mut sum.error {
            error.message = cut(std::mem::take(&mut error.message), MAX_SUM_TEXT);
        }
    }
    rows.extend(sums);
    rows
}

/// `status` without the rows of its last run, for a write the API server refused for its size.
pub fn without_rows(status: &FailedTaskCleanupPolicyStatus) -> FailedTaskCleanupPolicyStatus {
    let mut shrunk = status.clone();
    if let Some(run) = &mut shrunk.last_run {
        run.targets.clear();
    }
    shrunk
}

/// The `lastRun` summary of a report.
pub fn run_summary(report: &RunReport, started: Timestamp, completed: Timestamp) -> RunSummary {
    RunSummary {
        start_time: Some(api_time(started)),
        completion_time: Some(api_time(completed)),
        found: report.found(),
        deleted: report.deleted(),
        would_delete: report.would_delete(),
        remaining: report.remaining(),
        failed_calls: report.failed_calls,
        budget_used: report.budget_spent,
        unsafe_ids: report.unsafe_ids(),
        not_removed: report.not_removed(),
        credentials: None,
        targets: bounded_rows(
            report
                .targets
                .iter()
                .map(|t| TargetResult {
                    project: t.project.clone(),
                    target_index: u32::try_from(t.target_index).unwrap_or(u32::MAX),
                    service: t.service,
                    scope: t.scope,
                    outcome: t.outcome,
                    found: t.found,
                    deleted: t.deleted,
                    would_delete: t.would_delete,
                    remaining: t.remaining,
                    unmeasured: t.unmeasured.clone(),
                    unsafe_ids: t.unsafe_ids,
                    not_removed: t.not_removed,
                    summed_rows: 0,
                    error: t.error.as_ref().map(call_error),
                })
                .collect(),
        ),
    }
}

/// Whether the last run failed in a way that simply trying again soon can fix, decided from the
/// failure classes kept in its rows: some call was throttled or found the cloud unavailable, and
/// no call had its credentials refused (those wait for the Secret to change or a slow retry).
/// Rejections, and rows without a class (written by earlier versions), wait for the schedule.
fn retry_can_fix(run: &RunSummary) -> bool {
    let classes: Vec<FailureClass> = run.targets.iter().filter_map(|t| t.error.as_ref()?.class).collect();
    classes.iter().any(|c| c.is_transient()) && !classes.contains(&FailureClass::Authentication)
}

/// When the policy should run again because its last run failed in a way a retry can fix
/// (see [`schedule::retry_run`]); `None` when it did not.
pub fn retry_time(status: &FailedTaskCleanupPolicyStatus) -> Option<Timestamp> {
    let ready = status.condition(ConditionType::Ready)?;
    let failed_run =
        ready.status == "False" && status.reason(ConditionType::Ready).is_some_and(is_run_reason);
    let last_run = status.last_schedule_time.as_ref()?.0;
    (failed_run && retry_can_fix(status.last_run.as_ref()?))
        .then(|| whole_seconds(schedule::retry_run(last_run, ready.last_transition_time.0)))
}

/// Single deletes already spent of the budget (`max`) a run starting at `now` has. A manual run has
/// the whole budget. A run that follows one that never finished (the status still says a run is in
/// progress: the process was killed, or its last write was lost) cannot know what that run spent,
/// so it has none: it lists, measures and uses the batch calls, and single deletes wait for the
/// next scheduled run. A run that retries one that failed in a way a retry can fix, the next
/// scheduled run still ahead, has what that run and its earlier retries left. Any other run has
/// the whole budget.
pub fn budget_spent_before(
    status: &FailedTaskCleanupPolicyStatus,
    scheduled: Option<Timestamp>,
    manual: bool,
    now: Timestamp,
    max: u64,
) -> u64 {
    if manual {
        return 0;
    }
    let interrupted = status.condition(ConditionType::Reconciling).is_some_and(|c| c.status == "True");
    if interrupted {
        return max;
    }
    let retrying = retry_time(status).is_some() && scheduled.is_none_or(|s| s > now);
    if retrying { status.last_run.as_ref().map_or(0, |r| r.budget_used) } else { 0 }
}

/// The earlier of a scheduled run and a retry.
pub fn earliest(scheduled: Option<Timestamp>, retry: Option<Timestamp>) -> Option<Timestamp> {
    scheduled.into_iter().chain(retry).min()
}

/// Computes the next status. `max_deletions` is quoted when the deletion limit stopped a run.
pub fn next_status(
    prev: &FailedTaskCleanupPolicyStatus,
    observed: &Observed,
    verdict: &Verdict<'_>,
    max_deletions: Option<u64>,
) -> FailedTaskCleanupPolicyStatus {
    let mut next = prev.clone();
    let Observed { generation, now, .. } = observed.clone();
    let conditions = &mut next.conditions;
    next.observed_generation = generation;
    next.next_schedule_time = observed.next_run.map(api_time);
    if let Some(request) = &observed.handled_request {
        next.last_handled_requested_at = Some(request.clone());
    }
    let idle = |conditions: &mut Vec<Condition>| {
        set_condition(
            conditions,
            ConditionType::Reconciling,
            false,
            Reason::Idle,
            "no run in progress".into(),
            generation,
            now,
        )
    };
    match verdict {
        Verdict::Blocked { reason, message } => {
            set_condition(conditions, ConditionType::Ready, false, *reason, message.clone(), generation, now);
            // A cloud that was away (IAM, for project discovery) needs no change from the user:
            // the pass is retried, and the policy is not stalled.
            let stalled = !matches!(reason, Reason::CloudUnavailable | Reason::Throttled);
            let (stalled_reason, stalled_message) =
                if stalled { (*reason, message.clone()) } else { (Reason::AsExpected, String::new()) };
            set_condition(
                conditions,
                ConditionType::Stalled,
                stalled,
                stalled_reason,
                stalled_message,
                generation,
                now,
            );
            idle(conditions);
            next.next_schedule_time = None;
        }
        Verdict::Suspended => {
            let message = "spec.suspend is true: no cloud calls are made".to_string();
            set_condition(
                conditions,
                ConditionType::Ready,
                false,
                Reason::Suspended,
                message,
                generation,
                now,
            );
            set_condition(
                conditions,
                ConditionType::Stalled,
                false,
                Reason::AsExpected,
                String::new(),
                generation,
                now,
            );
            idle(conditions);
            next.next_schedule_time = None;
        }
        Verdict::Waiting => {
            let ran_before = prev.reason(ConditionType::Ready).is_some_and(is_run_reason);
            if ran_before {
                for c in conditions.iter_mut() {
                    c.observed_generation = generation;
                }
            } else {
                let message = match observed.next_run {
                    Some(at) => format!("next run at {at}"),
                    None => "no run is scheduled".to_string(),
                };
                set_condition_status(
                    conditions,
                    ConditionType::Ready,
                    "Unknown",
                    Reason::Waiting,
                    message,
                    generation,
                    now,
                );
                set_condition(
                    conditions,
                    ConditionType::Stalled,
                    false,
                    Reason::AsExpected,
                    String::new(),
                    generation,
                    now,
                );
            }
            idle(conditions);
        }
        Verdict::Running => {
            let message = format!("run started at {now}");
            set_condition(
                conditions,
                ConditionType::Reconciling,
                true,
                Reason::Running,
                message,
                generation,
                now,
            );
        }
        Verdict::Ran { report, started, dry_run, discovered, credentials } => {
            let (ready, reason, mut message) = run_verdict(report, *dry_run, max_deletions);
            if let Some(note) = discovered {
                message = format!("{note}; {message}");
            }
            set_condition(conditions, ConditionType::Ready, ready, reason, message.clone(), generation, now);
            let stalled = reason == Reason::AuthenticationFailed;
            let (stalled_reason, stalled_message) =
                if stalled { (reason, message) } else { (Reason::AsExpected, String::new()) };
            set_condition(
                conditions,
                ConditionType::Stalled,
                stalled,
                stalled_reason,
                stalled_message,
                generation,
                now,
            );
            idle(conditions);
            next.last_schedule_time = Some(api_time(*started));
            if ready {
                next.last_successful_time = Some(api_time(now));
            }
            next.total_deleted = prev.total_deleted.saturating_add(report.deleted());
            next.last_run = Some(RunSummary {
                credentials: credentials.map(str::to_string),
                ..run_summary(report, *started, now)
            });
            let next_run = earliest(observed.next_run, retry_time(&next));
            next.next_schedule_time = next_run.map(api_time);
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::policy::{Scope, Service};
    use crate::api::status::TargetOutcome;
    use crate::purge::TargetReport;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// A finished run that was not a dry run, of projects given by id, with no credentials named.
    fn finished_run(report: &RunReport, started: Timestamp) -> Verdict<'_> {
        Verdict::Ran { report, started, dry_run: false, discovered: None, credentials: None }
    }

    fn observed(now: &str) -> Observed {
        Observed {
            generation: Some(2),
            next_run: Some(t("2026-11-22T01:00:00Z")),
            handled_request: None,
            now: t(now),
        }
    }

    fn report(error: Option<CallFailure>) -> RunReport {
        let row = |project: &str, error: Option<CallFailure>| TargetReport {
            project_index: 0,
            target_index: 0,
            project: project.into(),
            service: Service::Sdrs,
            scope: Scope::All,
            outcome: if error.is_some() { TargetOutcome::Failed } else { TargetOutcome::Purged },
            found: Some(5),
            deleted: Some(if error.is_some() { 0 } else { 5 }),
            would_delete: 0,
            remaining: Some(if error.is_some() { 5 } else { 0 }),
            unmeasured: None,
            unsafe_ids: 0,
            not_removed: 0,
            limited: false,
            error,
        };
        RunReport {
            targets: vec![row("a", None), row("b", error)],
            failed_calls: 0,
            calls: 8,
            budget_spent: 0,
        }
    }

    fn ready(s: &FailedTaskCleanupPolicyStatus) -> &Condition {
        s.condition(ConditionType::Ready).unwrap()
    }

    #[test]
    fn a_clean_run_is_ready_with_counts() {
        let r = report(None);
        let v = finished_run(&r, t("2026-11-22T00:00:00Z"));
        let s = next_status(&Default::default(), &observed("2026-11-22T00:00:05Z"), &v, None);
        assert_eq!((ready(&s).status.as_str(), ready(&s).reason.as_str()), ("True", "Purged"));
        assert_eq!(ready(&s).message, "2 projects: 10 deleted, 0 remaining");
        assert_eq!(s.total_deleted, 10);
        assert_eq!(s.last_schedule_time, Some(Time(t("2026-11-22T00:00:00Z"))));
        assert_eq!(s.last_successful_time, Some(Time(t("2026-11-22T00:00:05Z"))));
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(s.last_run.as_ref().unwrap().targets.len(), 2);
        let types: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "Reconciling", "Stalled"]);
    }

    #[test]
    fn a_run_of_4096_failed_rows_fits_the_status_ceiling() {
        let long = "x".repeat(512);
        let failure = CallFailure::new(FailureKind::Unavailable, Some(503), "SDRS.0001", &long);
        let targets: Vec<TargetReport> = (0..256)
            .flat_map(|p| (0..16).map(move |t| (p, t)))
            .map(|(p, t)| TargetReport {
                project_index: p,
                target_index: t,
                project: format!("{p:032x}"),
                service: if t % 2 == 0 { Service::Sdrs } else { Service::Kps },
                scope: Scope::Matching,
                outcome: TargetOutcome::Failed,
                found: None,
                deleted: None,
                would_delete: 0,
                remaining: None,
                unmeasured: Some(long.clone()),
                unsafe_ids: 0,
                not_removed: 0,
                limited: false,
                error: Some(failure.clone()),
            })
            .collect();
        let report = RunReport { targets, failed_calls: 4096, calls: 4096, budget_spent: 0 };
        let start = t("2026-11-22T00:00:00Z");
        let summary = run_summary(&report, start, start);
        let bytes = serde_json::to_vec(&summary).unwrap().len();
        assert!(bytes < 256 * 1024, "{bytes} bytes");
        // The first 8 projects (128 rows) are kept one by one; the other 248 get one row per service.
        assert_eq!(summary.targets.len(), MAX_ROWS + (256 - MAX_ROWS / 16) * 2);
        let summed: u32 = summary.targets.iter().map(|r| r.summed_rows.max(1)).sum();
        assert_eq!(summed, 4096, "every row is kept or summed");
        assert!(summary.targets.iter().all(|r| r.error.as_ref().unwrap().message.len() <= MAX_ROW_TEXT));
        assert!(
            without_rows(&FailedTaskCleanupPolicyStatus { last_run: Some(summary), ..Default::default() })
                .last_run
                .unwrap()
                .targets
                .is_empty()
        );
        println!("4096 failed rows with 512-byte messages: lastRun is {bytes} bytes");
    }

    #[test]
    fn authentication_failure_stalls() {
        let r =
            report(Some(CallFailure::new(FailureKind::Authentication, Some(401), "APIGW.0301", "bad key")));
        let v = finished_run(&r, t("2026-11-22T00:00:00Z"));
        let s = next_status(&Default::default(), &observed("2026-11-22T00:00:05Z"), &v, None);
        assert_eq!(ready(&s).reason, "AuthenticationFailed");
        assert!(ready(&s).message.contains("HTTP 401 APIGW.0301: bad key"), "{}", ready(&s).message);
        assert_eq!(s.condition(ConditionType::Stalled).unwrap().status, "True");
        assert_eq!(s.last_successful_time, None);
    }

    #[test]
    fn partial_and_unavailable_are_told_apart() {
        let down = CallFailure::new(FailureKind::Unavailable, Some(503), "503", "down");
        let (ok, reason, _) = run_verdict(&report(Some(down.clone())), false, None);
        assert_eq!((ok, reason), (false, Reason::PartialFailure));
        let mut all_down = report(Some(down.clone()));
        all_down.targets[0].error = Some(down);
        assert_eq!(run_verdict(&all_down, false, None).1, Reason::CloudUnavailable);
    }

    #[test]
    fn a_transient_failure_brings_the_next_run_forward_and_a_rejection_does_not() {
        let started = t("2026-11-22T00:00:00Z");
        let ended = observed("2026-11-22T00:00:05Z");
        let ran = |failure: CallFailure| {
            let r = report(Some(failure));
            next_status(&Default::default(), &ended, &finished_run(&r, started), None)
        };
        let retry = Some(Time(t("2026-11-22T00:00:30Z")));
        for (kind, status) in [
            (FailureKind::Unavailable, Some(503)),
            (FailureKind::Unavailable, None),
            (FailureKind::Throttled, Some(429)),
            (FailureKind::Unavailable, Some(200)),
        ] {
            let s = ran(CallFailure::new(kind, status, "x", "y"));
            assert_eq!(s.next_schedule_time, retry, "{kind:?} {status:?}");
            assert_eq!(retry_time(&s), Some(t("2026-11-22T00:00:30Z")));
            // Waiting for the retry recomputes the same status: nothing is written.
            let o = Observed {
                next_run: earliest(ended.next_run, retry_time(&s)),
                ..observed("2026-11-22T00:00:20Z")
            };
            assert_eq!(next_status(&s, &o, &Verdict::Waiting, None), s);
        }
        for (kind, status) in [(FailureKind::Rejected, Some(400)), (FailureKind::Authentication, Some(401))] {
            let s = ran(CallFailure::new(kind, status, "x", "y"));
            assert_eq!(s.next_schedule_time, Some(Time(t("2026-11-22T01:00:00Z"))), "{kind:?}");
            assert_eq!(retry_time(&s), None);
        }
        // A clean run after the retry goes back to the schedule.
        let r = report(None);
        let failed = ran(CallFailure::new(FailureKind::Unavailable, Some(503), "x", "y"));
        let ok = next_status(&failed, &ended, &finished_run(&r, started), None);
        assert_eq!((retry_time(&ok), ok.next_schedule_time), (None, Some(Time(t("2026-11-22T01:00:00Z")))));
    }

    #[test]
    fn a_permanent_failure_without_an_http_status_waits_for_the_schedule() {
        // Paging that never ends, a body too large or of the wrong shape: no HTTP error status, and
        // a retry gets the same answer.
        let r = report(Some(CallFailure::new(FailureKind::Rejected, None, "Permanent", "paging stopped")));
        let v = finished_run(&r, t("2026-11-22T00:00:00Z"));
        let s = next_status(&Default::default(), &observed("2026-11-22T00:00:05Z"), &v, None);
        let error = s.last_run.as_ref().unwrap().targets[1].error.clone().unwrap();
        assert_eq!((error.class, error.http_status), (Some(FailureClass::Rejected), None));
        assert_eq!(retry_time(&s), None);
        assert_eq!(s.next_schedule_time, Some(Time(t("2026-11-22T01:00:00Z"))));
        // Waiting recomputes the same status and still does not bring the run forward.
        let o = Observed {
            next_run: earliest(Some(t("2026-11-22T01:00:00Z")), retry_time(&s)),
            ..observed("2026-11-22T00:10:00Z")
        };
        assert_eq!(next_status(&s, &o, &Verdict::Waiting, None), s);
    }

    #[test]
    fn a_retry_shares_the_budget_of_the_run_it_retries() {
        let mut r = report(Some(CallFailure::new(FailureKind::Unavailable, Some(503), "x", "y")));
        r.budget_spent = 400;
        let v = finished_run(&r, t("2026-11-22T00:00:00Z"));
        let failed = next_status(&Default::default(), &observed("2026-11-22T00:00:05Z"), &v, None);
        assert_eq!(failed.last_run.as_ref().unwrap().budget_used, 400);
        let (at, hourly) = (t("2026-11-22T00:00:30Z"), Some(t("2026-11-22T01:00:00Z")));
        assert_eq!(budget_spent_before(&failed, hourly, false, at, 1000), 400, "the retry at 00:00:30");
        assert_eq!(
            budget_spent_before(&failed, Some(at), false, at, 1000),
            0,
            "the scheduled run is a new one"
        );
        assert_eq!(budget_spent_before(&failed, hourly, true, at, 1000), 0, "a manual run is a new one");
        let running = next_status(&failed, &observed("2026-11-22T00:00:30Z"), &Verdict::Running, None);
        assert_eq!(
            budget_spent_before(&running, Some(at), false, at, 1000),
            1000,
            "a run that never finished"
        );
        assert_eq!(budget_spent_before(&running, Some(at), true, at, 1000), 0, "unless asked by hand");
        let ok = report(None);
        let v = finished_run(&ok, t("2026-11-22T00:00:00Z"));
        let purged = next_status(&Default::default(), &observed("2026-11-22T00:00:05Z"), &v, None);
        assert_eq!(budget_spent_before(&purged, hourly, false, at, 1000), 0, "nothing to retry");
    }

    #[test]
    fn the_retry_reads_the_class_kept_in_the_status_not_the_http_status() {
        let r = report(Some(CallFailure::new(FailureKind::Unavailable, Some(503), "x", "y")));
        let v = finished_run(&r, t("2026-11-22T00:00:00Z"));
        let s = next_status(&Default::default(), &observed("2026-11-22T00:00:05Z"), &v, None);
        assert_eq!(retry_time(&s), Some(t("2026-11-22T00:00:30Z")));
        let with_class = |class: Option<FailureClass>| {
            let mut s = s.clone();
            s.last_run.as_mut().unwrap().targets[1].error.as_mut().unwrap().class = class;
            s
        };
        assert_eq!(retry_time(&with_class(Some(FailureClass::Throttled))), Some(t("2026-11-22T00:00:30Z")));
        assert_eq!(retry_time(&with_class(Some(FailureClass::Rejected))), None, "a 503 kept as Rejected");
        assert_eq!(retry_time(&with_class(None)), None, "a row written before classes were kept");
        // Once a later pass is blocked, the failed run's rows no longer bring a run forward.
        let blocked = Verdict::Blocked { reason: Reason::CredentialsNotFound, message: "gone".into() };
        assert_eq!(retry_time(&next_status(&s, &observed("2026-11-22T00:00:10Z"), &blocked, None)), None);
    }

    #[test]
    fn an_unchanged_wait_changes_nothing() {
        let r = report(None);
        let ran = next_status(
            &Default::default(),
            &observed("2026-11-22T00:00:05Z"),
            &finished_run(&r, t("2026-11-22T00:00:00Z")),
            None,
        );
        let waited = next_status(&ran, &observed("2026-11-22T00:30:00Z"), &Verdict::Waiting, None);
        assert_eq!(waited, ran, "waiting after a run writes nothing");
        let again = next_status(&waited, &observed("2026-11-22T00:40:00Z"), &Verdict::Waiting, None);
        assert_eq!(again, ran);
    }

    #[test]
    fn times_are_whole_seconds_so_a_stored_status_compares_equal() {
        let r = report(None);
        let ran = finished_run(&r, t("2026-11-22T00:00:00.700Z"));
        // A jittered next run is not a whole number of seconds.
        let o =
            Observed { next_run: Some(t("2026-11-22T01:03:20.250Z")), ..observed("2026-11-22T00:00:05.9Z") };
        let s = next_status(&Default::default(), &o, &ran, None);
        assert_eq!(s.last_schedule_time, Some(Time(t("2026-11-22T00:00:00Z"))));
        assert_eq!(s.last_successful_time, Some(Time(t("2026-11-22T00:00:05Z"))));
        assert_eq!(s.next_schedule_time, Some(Time(t("2026-11-22T01:03:20Z"))));
        let run = s.last_run.as_ref().unwrap();
        assert_eq!(run.completion_time, Some(Time(t("2026-11-22T00:00:05Z"))));
        assert!(s.conditions.iter().all(|c| c.last_transition_time.0.subsec_nanosecond() == 0));
        let waited =
            next_status(&s, &Observed { now: t("2026-11-22T00:10:00.5Z"), ..o }, &Verdict::Waiting, None);
        assert_eq!(waited, s, "recomputing the same next run writes nothing");
    }

    #[test]
    fn transition_time_moves_only_on_flips() {
        let blocked =
            Verdict::Blocked { reason: Reason::CredentialsNotFound, message: "secret x not found".into() };
        let a = next_status(&Default::default(), &observed("2026-11-22T00:00:00Z"), &blocked, None);
        let b = next_status(&a, &observed("2026-11-22T00:05:00Z"), &blocked, None);
        assert_eq!(a, b);
        assert_eq!(ready(&a).reason, "CredentialsNotFound");
        assert_eq!(a.condition(ConditionType::Stalled).unwrap().status, "True");
        // The Secret appears: the policy waits for its run and is no longer stalled.
        let c = next_status(&b, &observed("2026-11-22T00:06:00Z"), &Verdict::Waiting, None);
        assert_eq!((ready(&c).status.as_str(), ready(&c).reason.as_str()), ("Unknown", "Waiting"));
        let stalled = c.condition(ConditionType::Stalled).unwrap();
        assert_eq!(
            (stalled.status.as_str(), stalled.last_transition_time.0),
            ("False", t("2026-11-22T00:06:00Z"))
        );
    }

    #[test]
    fn unsafe_ids_reach_the_row_the_sum_and_the_ready_message() {
        let mut r = report(None);
        r.targets[0].unsafe_ids = 2;
        r.targets[1].unsafe_ids = 1;
        let v = finished_run(&r, t("2026-11-22T00:00:00Z"));
        let s = next_status(&Default::default(), &observed("2026-11-22T00:00:05Z"), &v, None);
        assert_eq!((ready(&s).status.as_str(), ready(&s).reason.as_str()), ("True", "Purged"));
        assert!(
            ready(&s).message.ends_with("; 3 failed tasks left alone because the cloud listed them with an id that is not safe in a URL path (see lastRun.unsafeIds)"),
            "{}",
            ready(&s).message
        );
        let run = s.last_run.as_ref().unwrap();
        assert_eq!((run.unsafe_ids, run.targets[0].unsafe_ids, run.targets[1].unsafe_ids), (3, 2, 1));
        let wire = serde_json::to_value(run).unwrap();
        assert_eq!(
            (wire["unsafeIds"].as_u64(), wire["targets"][0]["unsafeIds"].as_u64()),
            (Some(3), Some(2))
        );
        // Zero is left out, so statuses without unsafe ids do not change shape.
        let clean = run_summary(&report(None), t("2026-11-22T00:00:00Z"), t("2026-11-22T00:00:05Z"));
        let wire = serde_json::to_value(&clean).unwrap();
        assert!(wire.get("unsafeIds").is_none() && wire["targets"][0].get("unsafeIds").is_none(), "{wire}");
        assert_eq!(
            unsafe_ids_note(1).unwrap(),
            "1 failed task left alone because the cloud listed it with an id that is not safe in a URL path (see lastRun.unsafeIds)"
        );
    }

    #[test]
    fn dry_run_and_limits_say_so() {
        let mut r = report(None);
        assert_eq!(run_verdict(&r, true, None).1, Reason::DryRun);
        r.targets[1].limited = true;
        let (ok, reason, message) = run_verdict(&r, false, Some(5));
        assert_eq!((ok, reason), (true, Reason::DeletionLimitReached));
        assert!(message.starts_with("stopped at maxDeletionsPerRun=5"), "{message}");
    }

    #[test]
    fn suspension_and_the_manual_trigger_are_recorded() {
        let s =
            next_status(&Default::default(), &observed("2026-11-22T00:00:00Z"), &Verdict::Suspended, None);
        assert_eq!((ready(&s).status.as_str(), ready(&s).reason.as_str()), ("False", "Suspended"));
        assert_eq!(s.next_schedule_time, None);
        let o = Observed { handled_request: Some("now-1".into()), ..observed("2026-11-22T00:00:00Z") };
        let running = next_status(&s, &o, &Verdict::Running, None);
        assert_eq!(running.last_handled_requested_at.as_deref(), Some("now-1"));
        assert_eq!(running.condition(ConditionType::Reconciling).unwrap().status, "True");
    }
}
