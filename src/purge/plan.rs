//! The planner: what a project must list for its targets, what a listing holds, which tasks each
//! target covers, and the exact calls that remove them. Pure: no I/O, no clock.
//!
//! SDRS lists by protection group: without `server_group_id` the list shows protection-group-level
//! failures, with it the failures inside that group. A [`Snapshot`] joins those lists, remembering
//! which group's list showed each failure, so the planner can choose the batch call that removes it.
//!
//! A snapshot keeps of each task only what planning and counting need (its id, its time, its group
//! and which targets cover it, decided page by page as the lists arrive): about 24 bytes and its
//! id a task, plus a 16-byte index entry. A snapshot for a run that deletes also keeps, for each
//! task a target covers, the fields of its audit record ([`AuditFields`]) next to its id: its type,
//! status and error code as an index into a table of the distinct triples (2 bytes), its resource
//! name (cut to [`MAX_AUDIT_FIELD`] bytes), and its time only when it cannot be read (otherwise it
//! is the task's time, already kept).

use super::policy::{KpsMatch, SdrsMatch, Target};
use crate::cloud::model::{FailedTask, FailureJob, SERVER_GROUPS, parse_task_time};
use jiff::Timestamp;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

/// A list call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListQuery {
    /// `GET /v1/{p}/server-groups`, every page.
    SdrsGroups,
    /// `GET /v1/{p}/task-center/failure-jobs`, every page; with `server_group_id` when `group` is set.
    SdrsJobs { group: Option<String> },
    /// `GET /v3/{p}/failed-tasks`, every page.
    Kps,
}

/// One page of a list call, with only the items not seen on earlier pages.
#[derive(Clone, Debug, PartialEq)]
pub enum Page {
    /// Protection group ids.
    SdrsGroups(Vec<String>),
    SdrsJobs(Vec<FailureJob>),
    Kps(Vec<FailedTask>),
}

/// A call that changes something in the cloud.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeleteCall {
    /// `DELETE /v1/{p}/task-center/failure-jobs/batch`
    SdrsBatch,
    /// `DELETE /v1/{p}/task-center/{server_group_id}/failure-jobs/batch`
    SdrsGroupBatch(String),
    /// `DELETE /v1/{p}/task-center/failure-jobs/{failure_job_id}`
    SdrsDelete(String),
    /// `DELETE /v3/{p}/failed-tasks`
    KpsDeleteAll,
    /// `DELETE /v3/{p}/failed-tasks/{task_id}`
    KpsDelete(String),
}

/// Which protection groups an SDRS snapshot lists the failures of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Groups {
    #[default]
    None,
    /// These ids, as given.
    Ids(BTreeSet<String>),
    /// Every group `GET /v1/{p}/server-groups` lists, and these ids too.
    All(BTreeSet<String>),
}

impl Groups {
    fn union(self, other: Groups) -> Groups {
        match (self, other) {
            (Groups::None, g) | (g, Groups::None) => g,
            (Groups::Ids(mut a), Groups::Ids(b)) => {
                a.extend(b);
                Groups::Ids(a)
            }
            (Groups::All(mut a), Groups::Ids(b) | Groups::All(b)) | (Groups::Ids(b), Groups::All(mut a)) => {
                a.extend(b);
                Groups::All(a)
            }
        }
    }
}

/// The lists a project must take for a set of targets of one service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// SDRS: the list without `server_group_id` (protection-group-level failures).
    pub group_level: bool,
    /// SDRS: the protection groups whose failures are listed.
    pub groups: Groups,
    /// KPS: the failed-task list.
    pub kps: bool,
}

/// What `target` needs listed; for `Matching`, only the lists its `resourceTypes` can match in.
pub fn scope(target: &Target) -> Scope {
    let all_groups = || Groups::All(BTreeSet::new());
    match target {
        Target::SdrsAll => Scope { group_level: true, groups: all_groups(), kps: false },
        Target::SdrsGroupLevel => Scope { group_level: true, groups: Groups::None, kps: false },
        Target::SdrsProtectionGroups(ids) => {
            Scope { group_level: false, groups: Groups::Ids(ids.iter().cloned().collect()), kps: false }
        }
        Target::SdrsMatching(m) => {
            let any = m.resource_types.is_empty();
            let group_level = any || m.resource_types.iter().any(|t| t == SERVER_GROUPS);
            let in_group = any || m.resource_types.iter().any(|t| t != SERVER_GROUPS);
            Scope { group_level, groups: if in_group { all_groups() } else { Groups::None }, kps: false }
        }
        Target::KpsAll | Target::KpsMatching(_) => Scope { kps: true, ..Scope::default() },
    }
}

/// The union of what several targets need.
pub fn joint_scope<'a>(targets: impl IntoIterator<Item = &'a Target>) -> Scope {
    targets.into_iter().map(scope).fold(Scope::default(), |a, b| Scope {
        group_level: a.group_level || b.group_level,
        groups: a.groups.union(b.groups),
        kps: a.kps || b.kps,
    })
}

/// One task as a run keeps it: 24 bytes, plus its id (and audit fields) in the snapshot's arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Item {
    /// When it began, in epoch milliseconds; `i64::MAX` when unreadable, so it sorts last.
    created_ms: i64,
    /// Its id: `ids[id_start .. id_start + id_len]`.
    id_start: u32,
    id_len: u32,
    /// Bytes of its audit fields, right after its id in the arena; 0 when none are kept. See
    /// [`Snapshot::push_record`].
    audit_len: u16,
    /// Bit `i` is set when target `i` of the lane (the targets of one service, in spec order)
    /// covers the task.
    covers: u32,
    /// SDRS: the protection group whose list showed it, an index into `groups`; [`NO_GROUP`] for
    /// the group-level list.
    group: u16,
}

const NO_GROUP: u16 = u16::MAX;

/// Longest audit field kept, in bytes; longer values are cut at a character boundary.
pub const MAX_AUDIT_FIELD: usize = 127;

/// What the audit record of a deleted task says about it besides its id, as the cloud listed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFields<'a> {
    /// SDRS `job_type`, KPS `operate_type`.
    pub kind: &'a str,
    /// SDRS `resource_name`, KPS `keypair_name`.
    pub resource: &'a str,
    /// SDRS `failure_status`; KPS: the state part of `operate_type` (`FAILED` of `FAILED_UNBIND`).
    pub status: &'a str,
    /// SDRS `error_code`, KPS `task_error_code`.
    pub error_code: &'a str,
    /// SDRS `begin_time`, KPS `task_time`: RFC 3339 in UTC to the millisecond, or as listed when
    /// it cannot be read.
    pub task_time: Cow<'a, str>,
}

impl<'a> AuditFields<'a> {
    fn of_job(job: &'a FailureJob) -> Self {
        Self {
            kind: &job.job_type,
            resource: &job.resource_name,
            status: &job.failure_status,
            error_code: &job.error_code,
            task_time: Cow::Borrowed(&job.begin_time),
        }
    }

    fn of_task(task: &'a FailedTask) -> Self {
        let status = task.operate_type.split_once('_').map_or("", |(state, _)| state);
        Self {
            kind: &task.operate_type,
            resource: &task.keypair_name,
            status,
            error_code: &task.task_error_code,
            task_time: Cow::Borrowed(&task.task_time),
        }
    }
}

/// Most distinct (type, status, error code) triples a snapshot tells apart; later ones show empty.
const MAX_KINDS: usize = 128 * 128 - 1;

/// `value` cut to at most [`MAX_AUDIT_FIELD`] bytes, at a character boundary.
fn cut(value: &str) -> &str {
    let mut end = value.len().min(MAX_AUDIT_FIELD);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// Most targets one lane can tell apart (the CRD allows 16 per policy).
pub const MAX_LANE_TARGETS: usize = 32;

/// The targets of one lane and the run's clock: decides, page by page, which targets cover a task.
#[derive(Clone, Copy)]
pub struct Coverage<'a> {
    pub targets: &'a [&'a Target],
    pub now: Timestamp,
}

impl Coverage<'_> {
    fn bits(&self, covers: impl Fn(&Target) -> bool) -> u32 {
        self.targets
            .iter()
            .take(MAX_LANE_TARGETS)
            .enumerate()
            .filter(|(_, t)| covers(t))
            .fold(0, |b, (i, _)| b | 1 << i)
    }

    /// Adds SDRS failures from the list of `group` (`None`: the group-level list).
    pub fn add_jobs(&self, snapshot: &mut Snapshot, group: Option<&str>, jobs: Vec<FailureJob>) {
        for job in jobs {
            let covers = self.bits(|t| match t {
                Target::SdrsAll => true,
                // What the group-level batch clears: the group-level list's server_groups failures
                // (under the looser reading that list shows in-group failures too).
                Target::SdrsGroupLevel => group.is_none() && job.resource_type == SERVER_GROUPS,
                Target::SdrsProtectionGroups(ids) => group.is_some_and(|g| ids.iter().any(|id| id == g)),
                Target::SdrsMatching(m) => sdrs_matches(m, &job, self.now),
                Target::KpsAll | Target::KpsMatching(_) => false,
            });
            snapshot.add(&job.job_id, millis(&job.begin_time), group, covers, AuditFields::of_job(&job));
        }
    }

    /// Adds KPS failed tasks.
    pub fn add_tasks(&self, snapshot: &mut Snapshot, tasks: Vec<FailedTask>) {
        for task in tasks {
            let covers = self.bits(|t| match t {
                Target::KpsAll => true,
                Target::KpsMatching(m) => kps_matches(m, &task, self.now),
                Target::SdrsAll
                | Target::SdrsGroupLevel
                | Target::SdrsProtectionGroups(_)
                | Target::SdrsMatching(_) => false,
            });
            snapshot.add(&task.task_id, millis(&task.task_time), None, covers, AuditFields::of_task(&task));
        }
    }
}

fn millis(time: &str) -> i64 {
    parse_task_time(time).map_or(i64::MAX, |t| t.as_millisecond())
}

/// Hashes ids the same way for every snapshot of the process, so snapshots can be compared.
fn id_hash(id: &str) -> u64 {
    static HASHER: std::sync::LazyLock<RandomState> = std::sync::LazyLock::new(RandomState::new);
    HASHER.hash_one(id)
}

/// What one project holds of one service, as its lists showed it at one moment: each task's id in
/// one arena, its time, its group and which targets cover it.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    ids: String,
    items: Vec<Item>,
    groups: Vec<Arc<str>>,
    /// Item index by id hash, for tasks with an id.
    index: HashMap<u64, u32>,
    /// Whether covered tasks keep their audit fields.
    audit: bool,
    /// The distinct (type, status, error code) triples of the audit fields, and their index by hash.
    kinds: Vec<[Box<str>; 3]>,
    kind_index: HashMap<u64, u16>,
}

impl Snapshot {
    /// An empty snapshot that keeps the audit fields of every task a target covers, for a run
    /// that deletes. ([`Snapshot::default`] keeps none: a dry run deletes nothing to audit.)
    pub fn with_audit() -> Self {
        Self { audit: true, ..Self::default() }
    }

    /// The index of a (type, status, error code) triple, added to the table when new.
    fn kind(&mut self, fields: [&str; 3]) -> u16 {
        static HASHER: std::sync::LazyLock<RandomState> = std::sync::LazyLock::new(RandomState::new);
        let hash = HASHER.hash_one(fields);
        let same = |known: &[Box<str>; 3]| known.iter().zip(fields).all(|(a, b)| &**a == b);
        if let Some(&i) = self.kind_index.get(&hash)
            && self.kinds.get(usize::from(i)).is_some_and(same)
        {
            return i;
        }
        if let Some(i) = self.kinds.iter().position(same) {
            return i as u16;
        }
        if self.kinds.len() >= MAX_KINDS {
            return MAX_KINDS as u16;
        }
        self.kinds.push(fields.map(Box::from));
        let i = (self.kinds.len() - 1) as u16;
        self.kind_index.entry(hash).or_insert(i);
        i
    }

    /// Appends `id` and, when kept, its audit fields to the arena; returns where they start, the
    /// id's length and the fields' length. The fields are two characters for the triple's index
    /// (7 bits each), then the resource name and the time as listed (only when `created_ms` says it
    /// could not be read), each as one length character (at most [`MAX_AUDIT_FIELD`]) and its bytes;
    /// every character written for an index or a length is ASCII.
    fn push_record(
        &mut self,
        id: &str,
        created_ms: i64,
        covers: u32,
        audit: &AuditFields<'_>,
    ) -> Option<(u32, u32, u16)> {
        let id_start = u32::try_from(self.ids.len()).ok()?;
        let id_len = u32::try_from(id.len()).ok()?;
        self.ids.push_str(id);
        if !self.audit || covers == 0 {
            return Some((id_start, id_len, 0));
        }
        let kind = self.kind([audit.kind, audit.status, audit.error_code]);
        self.ids.push(char::from((kind >> 7) as u8));
        self.ids.push(char::from((kind & 0x7f) as u8));
        let raw_time = if created_ms == i64::MAX { &*audit.task_time } else { "" };
        let mut audit_len = 2u16;
        for field in [audit.resource, raw_time].map(cut) {
            self.ids.push(char::from(field.len() as u8));
            self.ids.push_str(field);
            audit_len += 1 + field.len() as u16;
        }
        Some((id_start, id_len, audit_len))
    }

    /// Adds a task. A task that several lists show (a looser reading of the SDRS list call) is
    /// kept once, with the group of the group's list. Tasks without an id are all kept.
    fn add(&mut self, id: &str, created_ms: i64, group: Option<&str>, covers: u32, audit: AuditFields<'_>) {
        let group = match group {
            None => NO_GROUP,
            Some(g) => match self.groups.iter().position(|known| &**known == g) {
                Some(i) => u16::try_from(i).unwrap_or(NO_GROUP),
                None if self.groups.len() < usize::from(NO_GROUP) => {
                    self.groups.push(Arc::from(g));
                    (self.groups.len() - 1) as u16
                }
                None => NO_GROUP,
            },
        };
        if !id.is_empty()
            && let Some(&i) = self.index.get(&id_hash(id))
        {
            let known = self.items[i as usize];
            if known.group == NO_GROUP && group != NO_GROUP {
                // Now covered, it may need audit fields it was not given: keep its record anew.
                let (id_start, id_len, audit_len) = match known.audit_len == 0 && self.audit && covers != 0 {
                    true => self.push_record(id, known.created_ms, covers, &audit).unwrap_or((
                        known.id_start,
                        known.id_len,
                        0,
                    )),
                    false => (known.id_start, known.id_len, known.audit_len),
                };
                self.items[i as usize] = Item { group, covers, id_start, id_len, audit_len, ..known };
            }
            return;
        }
        let Ok(position) = u32::try_from(self.items.len()) else { return };
        let Some((id_start, id_len, audit_len)) = self.push_record(id, created_ms, covers, &audit) else {
            return;
        };
        if !id.is_empty() {
            self.index.insert(id_hash(id), position);
        }
        self.items.push(Item { created_ms, id_start, id_len, audit_len, covers, group });
    }

    /// The audit fields of the task at `index`; `None` when the snapshot keeps none for it.
    pub fn audit_at(&self, index: u32) -> Option<AuditFields<'_>> {
        let item = self.items.get(index as usize)?;
        if item.audit_len == 0 {
            return None;
        }
        let start = item.id_start as usize + item.id_len as usize;
        let record = self.ids.get(start..start + usize::from(item.audit_len))?.as_bytes();
        let kind = usize::from(*record.first()?) << 7 | usize::from(*record.get(1)?);
        let [kind, status, error_code] =
            self.kinds.get(kind).map_or(["", "", ""], |k| [&*k[0], &*k[1], &*k[2]]);
        let mut at = start + 2;
        let mut field = || {
            let len = usize::from(*self.ids.as_bytes().get(at)?);
            let value = self.ids.get(at + 1..at + 1 + len)?;
            at += 1 + len;
            Some(value)
        };
        let resource = field()?;
        let raw_time = field()?;
        let task_time = match item.created_ms {
            i64::MAX => Cow::Borrowed(raw_time),
            ms => Cow::Owned(
                Timestamp::from_millisecond(ms).map_or_else(|_| raw_time.to_string(), |t| format!("{t:.3}")),
            ),
        };
        Some(AuditFields { kind, resource, status, error_code, task_time })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn id(&self, item: &Item) -> &str {
        let start = item.id_start as usize;
        self.ids.get(start..start + item.id_len as usize).unwrap_or("")
    }

    fn group(&self, item: &Item) -> Option<&str> {
        self.groups.get(usize::from(item.group)).map(|g| &**g)
    }

    /// The id of the task at `index`.
    pub fn id_at(&self, index: u32) -> &str {
        self.items.get(index as usize).map_or("", |item| self.id(item))
    }

    /// How many of `indexes` (into `self`) name tasks that `later` no longer holds. Tasks without an
    /// id cannot be told apart: they count as gone when `later` holds none.
    pub fn gone_in(&self, indexes: &[u32], later: &Snapshot) -> usize {
        self.gone(indexes, later).count()
    }

    /// Those of `indexes` (into `self`) that name tasks `later` no longer holds; see [`Self::gone_in`].
    pub fn gone<'s>(&'s self, indexes: &'s [u32], later: &'s Snapshot) -> impl Iterator<Item = u32> + 's {
        let later_has_blank = later.items.iter().any(|i| i.id_len == 0);
        indexes.iter().copied().filter(move |&i| {
            let id = self.id_at(i);
            if id.is_empty() { !later_has_blank } else { !later.index.contains_key(&id_hash(id)) }
        })
    }

    /// Whether the snapshot holds a task with `id`; any task without an id, for the empty id.
    pub fn holds(&self, id: &str) -> bool {
        match id {
            "" => self.items.iter().any(|i| i.id_len == 0),
            id => self.index.contains_key(&id_hash(id)),
        }
    }

    /// How many tasks lane target `lane_index` covers.
    pub fn covered(&self, lane_index: usize) -> usize {
        self.items.iter().filter(|i| i.covers & 1 << lane_index != 0).count()
    }

    /// Drops the tasks at `indexes`, as a dry run imagines its deletes.
    pub fn remove(&mut self, indexes: &[u32]) {
        if indexes.is_empty() {
            return;
        }
        let drop: HashSet<u32> = indexes.iter().copied().collect();
        let mut position = 0u32;
        self.items.retain(|_| {
            let keep = !drop.contains(&position);
            position += 1;
            keep
        });
        self.index.clear();
        for (i, item) in self.items.iter().enumerate() {
            let start = item.id_start as usize;
            let id = self.ids.get(start..start + item.id_len as usize).unwrap_or("");
            if !id.is_empty() {
                self.index.insert(id_hash(id), i as u32);
            }
        }
    }
}

/// Longest task or protection-group id the planner puts in a path.
pub const MAX_ID_LEN: usize = 128;

/// Whether an id from the cloud may go into a DELETE path: non-empty, at most [`MAX_ID_LEN`]
/// characters of `A-Z a-z 0-9 - _`, and not a word the API gives a meaning of its own (`batch`).
/// So it can never be read as another path: no `/`, no `.` or `..` segment, not the batch call, not
/// the empty id that would turn a single delete into the delete-all. Anything else is refused.
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !id.eq_ignore_ascii_case("batch")
}

/// True when the task is at least `older_than` old. A task whose time cannot be read is never old
/// enough: the planner only deletes what it can prove matches.
fn old_enough(time: &str, older_than: Option<std::time::Duration>, now: Timestamp) -> bool {
    let Some(min_age) = older_than else { return true };
    let Some(created) = parse_task_time(time) else { return false };
    jiff::SignedDuration::try_from(min_age)
        .ok()
        .and_then(|d| now.checked_sub(d).ok())
        .is_some_and(|cutoff| created <= cutoff)
}

fn in_list(values: &[String], value: &str) -> bool {
    values.is_empty() || values.iter().any(|v| v == value)
}

/// True when an SDRS failure matches the target's filters.
pub fn sdrs_matches(m: &SdrsMatch, job: &FailureJob, now: Timestamp) -> bool {
    in_list(&m.resource_types, &job.resource_type)
        && in_list(&m.failure_statuses, &job.failure_status)
        && m.name_pattern.as_ref().is_none_or(|re| re.is_match(&job.resource_name))
        && old_enough(&job.begin_time, m.older_than, now)
}

/// True when a KPS failed task matches the target's filters.
pub fn kps_matches(m: &KpsMatch, task: &FailedTask, now: Timestamp) -> bool {
    in_list(&m.operate_types, &task.operate_type)
        && m.name_pattern.as_ref().is_none_or(|re| re.is_match(&task.keypair_name))
        && old_enough(&task.task_time, m.older_than, now)
}

/// What one target does to one project.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetPlan {
    /// Indexes (into the snapshot planned from) of the tasks the target covers, oldest first.
    pub found: Vec<u32>,
    /// Indexes of the tasks the plan removes (or would, in a dry run).
    pub selected: Vec<u32>,
    /// The batch calls to send; empty in a dry run and for `Matching`.
    pub batches: Vec<DeleteCall>,
    /// `Matching`: every selected task gets a single delete, built when it is sent (see
    /// [`TargetPlan::calls`]); false in a dry run.
    pub singles: bool,
    /// The deletion budget cut this target short.
    pub limited: bool,
    /// Covered tasks left alone because their id (or their protection group's id) is not safe to
    /// put in a path; see [`is_safe_id`].
    pub unsafe_ids: u64,
}

impl TargetPlan {
    /// Whether the plan sends anything.
    pub fn has_calls(&self) -> bool {
        self.singles || !self.batches.is_empty()
    }

    /// The calls of the plan, in order. Single deletes are built one at a time as they are taken,
    /// so a plan of many holds each id only once, in the snapshot.
    pub fn calls<'a>(
        &'a self,
        target: &'a Target,
        snapshot: &'a Snapshot,
    ) -> impl Iterator<Item = DeleteCall> + Send + 'a {
        let singles = if self.singles { &self.selected[..] } else { &[] };
        self.batches.iter().cloned().chain(singles.iter().map(move |&i| removal(target, snapshot, i)))
    }
}

/// The call through which `target` removes the task at `index` of `snapshot`: its single delete for
/// `Matching`, the batch of the list that showed it otherwise (the group-level batch for a failure
/// the group-level list showed, its group's batch for one a group's list showed, the KPS
/// delete-all).
pub fn removal(target: &Target, snapshot: &Snapshot, index: u32) -> DeleteCall {
    let id = || snapshot.id_at(index).to_string();
    match target {
        Target::SdrsMatching(_) => DeleteCall::SdrsDelete(id()),
        Target::KpsMatching(_) => DeleteCall::KpsDelete(id()),
        Target::KpsAll => DeleteCall::KpsDeleteAll,
        Target::SdrsAll | Target::SdrsGroupLevel | Target::SdrsProtectionGroups(_) => {
            match snapshot.items.get(index as usize).and_then(|item| snapshot.group(item)) {
                None => DeleteCall::SdrsBatch,
                Some(g) => DeleteCall::SdrsGroupBatch(g.to_string()),
            }
        }
    }
}

/// Plans the target at `lane_index` of its lane against what its project holds now. A `Matching`
/// target deletes one by one, oldest first, at most `budget` tasks (the rest of
/// `maxDeletionsPerRun`); the other scopes use the batch calls, which take no budget. A dry run
/// selects but sends nothing.
pub fn plan_target(
    target: &Target,
    lane_index: usize,
    snapshot: &Snapshot,
    budget: u64,
    dry_run: bool,
) -> TargetPlan {
    let items = &snapshot.items;
    let mut found: Vec<u32> =
        (0..items.len() as u32).filter(|&i| items[i as usize].covers & 1 << lane_index != 0).collect();
    found.sort_by(|&a, &b| {
        let (x, y) = (&items[a as usize], &items[b as usize]);
        (x.created_ms, snapshot.id(x)).cmp(&(y.created_ms, snapshot.id(y)))
    });
    // The id a task's removal puts in a path: its own for a single delete, its group's for a
    // per-group batch; none for the group-level batch and the KPS delete-all.
    let path_id = |i: u32| -> Option<&str> {
        let item = &items[i as usize];
        match target {
            Target::SdrsMatching(_) | Target::KpsMatching(_) => Some(snapshot.id(item)),
            Target::SdrsAll | Target::SdrsGroupLevel | Target::SdrsProtectionGroups(_) => {
                snapshot.group(item)
            }
            Target::KpsAll => None,
        }
    };
    let (deletable, refused): (Vec<u32>, Vec<u32>) =
        found.iter().partition(|&&i| path_id(i).is_none_or(is_safe_id));
    let (selected, limited): (&[u32], bool) = match target {
        Target::SdrsMatching(_) | Target::KpsMatching(_) => {
            let take = usize::try_from(budget).unwrap_or(usize::MAX).min(deletable.len());
            (&deletable[..take], take < deletable.len())
        }
        Target::SdrsAll | Target::SdrsGroupLevel | Target::SdrsProtectionGroups(_) | Target::KpsAll => {
            (&deletable, false)
        }
    };
    let sends = !dry_run && !selected.is_empty();
    let singles = sends && matches!(target, Target::SdrsMatching(_) | Target::KpsMatching(_));
    let batches = match sends && !singles {
        true => selected
            .iter()
            .map(|&i| removal(target, snapshot, i))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        false => Vec::new(),
    };
    TargetPlan {
        selected: selected.to_vec(),
        unsafe_ids: refused.len() as u64,
        found,
        batches,
        singles,
        limited,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;
    use std::time::Duration;

    fn now() -> Timestamp {
        "2026-11-22T00:00:00Z".parse().unwrap()
    }

    fn job(id: &str, resource_type: &str, status: &str, name: &str, begin: &str) -> FailureJob {
        FailureJob {
            job_id: id.into(),
            resource_type: resource_type.into(),
            failure_status: status.into(),
            resource_name: name.into(),
            begin_time: begin.into(),
            ..FailureJob::default()
        }
    }

    fn task(id: &str, op: &str, keypair: &str, time: &str) -> FailedTask {
        FailedTask {
            task_id: id.into(),
            operate_type: op.into(),
            keypair_name: keypair.into(),
            task_time: time.into(),
            ..FailedTask::default()
        }
    }

    /// SDRS lists as one lane of `targets` sees them, in the order given.
    fn sdrs_snapshot(targets: &[&Target], lists: Vec<(Option<&str>, Vec<FailureJob>)>) -> Snapshot {
        let coverage = Coverage { targets, now: now() };
        let mut snapshot = Snapshot::default();
        for (group, jobs) in lists {
            coverage.add_jobs(&mut snapshot, group, jobs);
        }
        snapshot
    }

    fn kps_snapshot(targets: &[&Target], tasks: Vec<FailedTask>) -> Snapshot {
        let mut snapshot = Snapshot::default();
        Coverage { targets, now: now() }.add_tasks(&mut snapshot, tasks);
        snapshot
    }

    /// A group-level failure `a` and, in groups g1 and g2, instance failures b..f.
    fn sdrs_lists() -> Vec<(Option<&'static str>, Vec<FailureJob>)> {
        vec![
            (None, vec![job("a", "server_groups", "createFail", "tmp-a", "2026-11-01T00:00:00.000Z")]),
            (
                Some("g1"),
                vec![
                    job("b", "protected_instances", "createFail", "tmp-b", "2026-11-20T00:00:00.000Z"),
                    job("c", "protected_instances", "createFail", "prod-c", "2026-11-01T00:00:00.000Z"),
                    job("d", "protected_instances", "deleteFail", "tmp-d", "2026-10-01T00:00:00.000Z"),
                ],
            ),
            (
                Some("g2"),
                vec![
                    job("e", "protected_instances", "createFail", "tmp-e", "not a time"),
                    job("f", "protected_instances", "createFail", "tmp-f", "1760486400000"),
                ],
            ),
        ]
    }

    fn matching(resource_types: &[&str]) -> Target {
        Target::SdrsMatching(SdrsMatch {
            resource_types: resource_types.iter().map(|s| s.to_string()).collect(),
            failure_statuses: vec!["createFail".into()],
            name_pattern: Some(Regex::new("^tmp-").unwrap()),
            older_than: Some(Duration::from_secs(7 * 24 * 3600)),
        })
    }

    fn ids(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn names(snapshot: &Snapshot, indexes: &[u32]) -> BTreeSet<String> {
        indexes.iter().map(|&i| snapshot.id_at(i).to_string()).collect()
    }

    #[test]
    fn scopes_list_only_what_the_targets_need() {
        let all = scope(&Target::SdrsAll);
        assert!(all.group_level && all.groups == Groups::All(BTreeSet::new()) && !all.kps);
        let instances = scope(&matching(&["protected_instances"]));
        assert!(!instances.group_level, "instance failures are only in the groups' lists");
        assert_eq!(instances.groups, Groups::All(BTreeSet::new()));
        let groups_only = scope(&matching(&["server_groups"]));
        assert!(groups_only.group_level);
        assert_eq!(groups_only.groups, Groups::None);
        let pg = Target::SdrsProtectionGroups(vec!["g1".into(), "g2".into()]);
        assert_eq!(scope(&pg).groups, Groups::Ids(ids(&["g1", "g2"])));
        let joint = joint_scope([&pg, &matching(&["server_groups"])]);
        assert!(joint.group_level && joint.groups == Groups::Ids(ids(&["g1", "g2"])));
        assert_eq!(joint_scope([&pg, &Target::SdrsAll]).groups, Groups::All(ids(&["g1", "g2"])));
        assert!(joint_scope([&Target::KpsAll]).kps);
        assert_eq!(joint_scope([]), Scope::default());
    }

    #[test]
    fn a_failure_shown_by_two_lists_is_kept_once_with_its_group() {
        // The looser reading: the unfiltered list shows the in-group failure too, and may come first;
        // the group's list then gives it its group.
        let all = Target::SdrsAll;
        let pg = Target::SdrsProtectionGroups(vec!["g1".into()]);
        let snap = sdrs_snapshot(
            &[&all, &pg],
            vec![
                (None, vec![job("a", SERVER_GROUPS, "", "", ""), job("b", "replications", "", "", "")]),
                (Some("g1"), vec![job("b", "replications", "", "", "")]),
            ],
        );
        assert_eq!(snap.len(), 2);
        let plan = plan_target(&all, 0, &snap, 0, false);
        assert_eq!(plan.batches, vec![DeleteCall::SdrsBatch, DeleteCall::SdrsGroupBatch("g1".into())]);
        assert_eq!(names(&snap, &plan_target(&pg, 1, &snap, 0, false).found), ids(&["b"]));
    }

    #[test]
    fn all_uses_the_group_level_batch_and_each_groups_batch() {
        let snap = sdrs_snapshot(&[&Target::SdrsAll], sdrs_lists());
        let plan = plan_target(&Target::SdrsAll, 0, &snap, 0, false);
        assert_eq!(names(&snap, &plan.found), ids(&["a", "b", "c", "d", "e", "f"]));
        assert_eq!(
            plan.batches,
            vec![
                DeleteCall::SdrsBatch,
                DeleteCall::SdrsGroupBatch("g1".into()),
                DeleteCall::SdrsGroupBatch("g2".into())
            ]
        );
        assert!(!plan.limited, "the budget applies to Matching only");
    }

    #[test]
    fn matching_deletes_only_what_matches_every_filter_across_groups() {
        let target = matching(&["protected_instances"]);
        let snap = sdrs_snapshot(&[&target], sdrs_lists());
        let plan = plan_target(&target, 0, &snap, 1000, false);
        // b is too young, c has the wrong name, d the wrong status, e no readable time, a the wrong
        // type; f (epoch milliseconds, October) matches.
        assert_eq!(names(&snap, &plan.selected), ids(&["f"]));
        assert!(plan.singles && plan.batches.is_empty());
        assert_eq!(plan.calls(&target, &snap).collect::<Vec<_>>(), vec![DeleteCall::SdrsDelete("f".into())]);
    }

    #[test]
    fn group_level_sends_only_the_group_level_batch() {
        let snap = sdrs_snapshot(&[&Target::SdrsGroupLevel], sdrs_lists());
        let plan = plan_target(&Target::SdrsGroupLevel, 0, &snap, 0, false);
        assert_eq!(names(&snap, &plan.found), ids(&["a"]));
        assert_eq!(plan.batches, vec![DeleteCall::SdrsBatch]);
        assert_eq!(
            scope(&Target::SdrsGroupLevel),
            Scope { group_level: true, groups: Groups::None, kps: false }
        );
        // Under the looser reading the group-level list shows in-group failures too: not covered.
        let loose = sdrs_snapshot(
            &[&Target::SdrsGroupLevel],
            vec![(None, vec![job("a", SERVER_GROUPS, "", "", ""), job("b", "replications", "", "", "")])],
        );
        assert_eq!(
            names(&loose, &plan_target(&Target::SdrsGroupLevel, 0, &loose, 0, false).found),
            ids(&["a"])
        );
    }

    #[test]
    fn protection_groups_batch_only_their_groups_with_failures() {
        let target = Target::SdrsProtectionGroups(vec!["g2".into(), "g3".into()]);
        let snap = sdrs_snapshot(&[&target], sdrs_lists());
        let plan = plan_target(&target, 0, &snap, 0, false);
        assert_eq!(names(&snap, &plan.found), ids(&["e", "f"]));
        assert_eq!(plan.batches, vec![DeleteCall::SdrsGroupBatch("g2".into())]);
    }

    #[test]
    fn empty_targets_send_nothing() {
        let empty = kps_snapshot(&[&Target::KpsAll], vec![]);
        assert_eq!(plan_target(&Target::KpsAll, 0, &empty, 9, false), TargetPlan::default());
        let empty = sdrs_snapshot(&[&Target::SdrsAll], vec![]);
        assert_eq!(plan_target(&Target::SdrsAll, 0, &empty, 9, false), TargetPlan::default());
    }

    #[test]
    fn dry_run_selects_but_never_calls_and_imagines_its_deletes() {
        let mut snap = sdrs_snapshot(&[&Target::SdrsAll], sdrs_lists());
        let plan = plan_target(&Target::SdrsAll, 0, &snap, 0, true);
        assert!(!plan.has_calls());
        assert_eq!(plan.selected.len(), 6);
        let all_but_b: Vec<u32> = plan.selected.iter().copied().filter(|&i| snap.id_at(i) != "b").collect();
        snap.remove(&all_but_b);
        assert_eq!((snap.len(), snap.id_at(0)), (1, "b"));
        assert_eq!(snap.covered(0), 1, "the index follows the removal");
    }

    #[test]
    fn the_budget_takes_the_oldest_first() {
        let m = Target::KpsMatching(KpsMatch {
            operate_types: vec!["FAILED_UNBIND".into()],
            name_pattern: Some(Regex::new("^kp-").unwrap()),
            older_than: None,
        });
        let snap = kps_snapshot(
            &[&m, &Target::KpsAll],
            vec![
                task("new", "FAILED_UNBIND", "kp-x", "2026-11-20T00:00:00Z"),
                task("old", "FAILED_UNBIND", "kp-y", "1700000000000"),
                task("older", "FAILED_UNBIND", "kp-y", "1600000000"),
                task("reset", "FAILED_RESET", "kp-z", "2026-11-01T00:00:00Z"),
                task("odd", "RUNNING_RESET", "kp-z", "2026-11-01T00:00:00Z"),
                task("other", "FAILED_UNBIND", "other", "2026-11-01T00:00:00Z"),
            ],
        );
        let plan = plan_target(&m, 0, &snap, 2, false);
        assert_eq!(names(&snap, &plan.found), ids(&["new", "old", "older"]));
        assert_eq!(
            plan.calls(&m, &snap).collect::<Vec<_>>(),
            vec![DeleteCall::KpsDelete("older".into()), DeleteCall::KpsDelete("old".into())]
        );
        assert!(plan.limited);
        let none = plan_target(&m, 0, &snap, 0, false);
        assert!(!none.has_calls() && none.selected.is_empty() && none.limited);
        let all = plan_target(&Target::KpsAll, 1, &snap, 0, false);
        assert_eq!((all.batches, all.found.len()), (vec![DeleteCall::KpsDeleteAll], 6));
    }

    #[test]
    fn counts_compare_snapshots_by_id() {
        let before = kps_snapshot(
            &[&Target::KpsAll],
            vec![task("a", "", "", ""), task("b", "", "", ""), task("c", "", "", "")],
        );
        let after = kps_snapshot(&[&Target::KpsAll], vec![task("b", "", "", "")]);
        let plan = plan_target(&Target::KpsAll, 0, &before, 0, false);
        assert_eq!(before.gone_in(&plan.found, &after), 2);
        assert_eq!(after.covered(0), 1);
        // Tasks without an id count as gone only when none is left.
        let blank = kps_snapshot(&[&Target::KpsAll], vec![task("", "", "", ""), task("", "", "", "")]);
        assert_eq!(blank.len(), 2, "tasks without an id are all kept");
        assert_eq!(blank.gone_in(&[0, 1], &after), 2);
        assert_eq!(blank.gone_in(&[0, 1], &blank), 0);
    }

    #[test]
    fn ids_that_could_name_another_path_are_refused() {
        for good in ["897f57b2-6e94-4179-b414-9532726c59f2", "ff808082686f229a0168707beaab014e", "a_b-C9"] {
            assert!(is_safe_id(good), "{good}");
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        for bad in ["", ".", "..", "batch", "BATCH", "a/b", "%2e%2e", "a b", "a?x=1", "a#b", "é", &long] {
            assert!(!is_safe_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn unsafe_ids_are_never_deleted_and_are_counted() {
        let m = Target::KpsMatching(KpsMatch::default());
        let snap = kps_snapshot(
            &[&m, &Target::KpsAll],
            vec![
                task("", "FAILED_UNBIND", "kp-a", "1600000000"),
                task("batch", "FAILED_UNBIND", "kp-b", "1600000000"),
                task("..", "FAILED_UNBIND", "kp-c", "1600000000"),
                task("ok-1", "FAILED_UNBIND", "kp-d", "1600000000"),
            ],
        );
        let plan = plan_target(&m, 0, &snap, 10, false);
        assert_eq!(plan.calls(&m, &snap).collect::<Vec<_>>(), vec![DeleteCall::KpsDelete("ok-1".into())]);
        assert_eq!((plan.found.len(), plan.unsafe_ids), (4, 3));
        // The delete-all puts no id in its path.
        let all = plan_target(&Target::KpsAll, 1, &snap, 0, false);
        assert_eq!((all.batches, all.unsafe_ids), (vec![DeleteCall::KpsDeleteAll], 0));
        // A protection group id that is not safe gets no per-group batch.
        let groups = sdrs_snapshot(
            &[&Target::SdrsAll],
            vec![
                (Some("../x"), vec![job("j1", "replications", "", "", "")]),
                (Some("g1"), vec![job("j2", "replications", "", "", "")]),
            ],
        );
        let plan = plan_target(&Target::SdrsAll, 0, &groups, 0, false);
        assert_eq!((plan.batches, plan.unsafe_ids), (vec![DeleteCall::SdrsGroupBatch("g1".into())], 1));
    }

    #[test]
    fn an_item_stays_24_bytes() {
        assert_eq!(std::mem::size_of::<Item>(), 24);
    }

    #[test]
    fn a_snapshot_for_a_deleting_run_keeps_the_audit_fields_of_covered_tasks() {
        let m = Target::KpsMatching(KpsMatch {
            operate_types: vec!["FAILED_UNBIND".into()],
            ..KpsMatch::default()
        });
        let long = "é".repeat(100);
        let mut snap = Snapshot::with_audit();
        let tasks = vec![
            FailedTask {
                task_error_code: "KPS.0001".into(),
                ..task("t1", "FAILED_UNBIND", "kp-1", "1600000000")
            },
            task("t2", "FAILED_RESET", "kp-2", "1600000000"),
            task("t3", "FAILED_UNBIND", &long, "not a time"),
            FailedTask {
                task_error_code: "KPS.0001".into(),
                ..task("t4", "FAILED_UNBIND", "kp-4", "1700000000000")
            },
        ];
        Coverage { targets: &[&m], now: now() }.add_tasks(&mut snap, tasks);
        assert_eq!(
            snap.audit_at(0),
            Some(AuditFields {
                kind: "FAILED_UNBIND",
                resource: "kp-1",
                status: "FAILED",
                error_code: "KPS.0001",
                task_time: "2020-09-13T12:26:40.000Z".into()
            })
        );
        assert_eq!(snap.audit_at(1), None, "not covered: nothing to audit");
        let odd = snap.audit_at(2).unwrap();
        let cut_name = odd.resource;
        assert!(cut_name.len() <= MAX_AUDIT_FIELD && long.starts_with(cut_name) && !cut_name.is_empty());
        assert_eq!((odd.error_code, &*odd.task_time), ("", "not a time"), "an unreadable time as listed");
        let t4 = snap.audit_at(3).unwrap();
        assert_eq!((t4.kind, t4.status, t4.error_code), ("FAILED_UNBIND", "FAILED", "KPS.0001"));
        assert_eq!(&*t4.task_time, "2023-11-14T22:13:20.000Z");
        assert_eq!(snap.kinds.len(), 2, "t1 and t4 share their type, status and error code");
        assert_eq!((snap.id_at(0), snap.id_at(1), snap.id_at(2)), ("t1", "t2", "t3"), "ids are intact");
        // A dry run's snapshot keeps none.
        let dry = kps_snapshot(&[&m], vec![task("t1", "FAILED_UNBIND", "kp-1", "")]);
        assert_eq!(dry.audit_at(0), None);
    }

    #[test]
    fn a_failure_first_listed_uncovered_gets_its_audit_fields_from_its_groups_list() {
        let pg = Target::SdrsProtectionGroups(vec!["g1".into()]);
        let mut snap = Snapshot::with_audit();
        let coverage = Coverage { targets: &[&pg], now: now() };
        let b = FailureJob {
            job_type: "createProtectedInstance".into(),
            error_code: "SDRS.1".into(),
            ..job("b", "protected_instances", "createFail", "tmp-b", "2026-11-01T00:00:00.000Z")
        };
        coverage.add_jobs(&mut snap, None, vec![b.clone()]);
        assert_eq!(snap.audit_at(0), None);
        coverage.add_jobs(&mut snap, Some("g1"), vec![b]);
        let fields = snap.audit_at(0).unwrap();
        assert_eq!(
            (fields.kind, fields.resource, fields.status),
            ("createProtectedInstance", "tmp-b", "createFail")
        );
        assert_eq!((fields.error_code, &*fields.task_time), ("SDRS.1", "2026-11-01T00:00:00.000Z"));
        assert_eq!(snap.id_at(0), "b");
        assert_eq!(snap.gone(&[0], &Snapshot::default()).collect::<Vec<_>>(), vec![0]);
    }
}
