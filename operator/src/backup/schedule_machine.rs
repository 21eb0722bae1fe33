//! The BackupSchedule's decision: a pure function from (BackupSchedule, what the operator
//! observed, now) to the next status, the one Backup to create (if any) and when to look
//! again. [`super::schedule_controller`] creates the Backup first and then writes the status,
//! so a crash in between only makes the next reconcile create the same Backup again, which
//! the apiserver refuses (deterministic names, see [`super::schedule::backup_name`]).
//!
//! - **A run** is one slot: its cycle day comes from the slot's *scheduled* time, never from
//!   when it ran, so a late, retried or caught-up run does the backups of its own day.
//! - **In order.** The backups of a run are created one after the other: the second (day 3's
//!   diff, day 6's full) once the first has finished, failed or not. A new run starts only
//!   once every backup of the previous one has finished, so no day's backup is ever skipped
//!   half-way; a run that outlasts its slot delays the next, which then catches up once.
//! - **Catch up once.** Of the slots since the last run (or since `cycleStart` for a new
//!   schedule), only the latest runs; a backup deleted by hand is never created again.
//! - **Suspended, invalid, or no PgCluster:** nothing is created; the `Ready` condition says
//!   why. An invalid spec waits for the next change; a missing cluster is looked for again.

use std::collections::BTreeMap;
use std::str::FromStr as _;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use chrono_tz::Tz;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::cycle::{Cycle, CycleClock};
use super::schedule::{BackupState, PlannedBackup, Schedule, SlotStep, next_step};
use crate::crd::backup_schedule::{BackupSchedule, BackupScheduleStatus, RunResult};
use crate::crd::common::Condition;
use crate::crd::{Backup, BackupPhase, BackupSpec, BackupType};
use kube::runtime::events::EventType;

/// Condition type that says whether the schedule will create Backups.
pub const READY: &str = "Ready";
/// While a run's Backups are in progress: their watch events wake the controller, this is
/// only a safety net.
pub const IN_PROGRESS_POLL: Duration = Duration::from_secs(300);
/// While the PgCluster does not exist.
pub const CLUSTER_POLL: Duration = Duration::from_secs(30);

/// What [`decide`] looks at besides the BackupSchedule.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleObservation {
    pub now: DateTime<Utc>,
    /// Whether the PgCluster of `spec.cluster` exists.
    pub cluster_exists: bool,
    /// Phase of each Backup of the current run that exists, by name (`None` until the Backup
    /// controller has looked at it).
    pub backups: BTreeMap<String, Option<BackupPhase>>,
}

/// The next status, and what to do after writing it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleDecision {
    pub status: BackupScheduleStatus,
    /// Create this Backup (before writing the status).
    pub create: Option<PlannedBackup>,
    /// Reconcile again after this long; `None` waits for a change of the schedule or of one
    /// of its Backups.
    pub requeue: Option<Duration>,
}

/// Why a BackupSchedule that passed the apiserver's validation still cannot be used.
pub fn schedule_of(schedule: &BackupSchedule) -> Result<Schedule, String> {
    let spec = &schedule.spec;
    let tz = Tz::from_str(&spec.time_zone).map_err(|_| format!("unknown time zone {:?}", spec.time_zone))?;
    let day_length = crate::duration::parse(&spec.day_length).map_err(|e| format!("dayLength: {e}"))?;
    let start = match &spec.cycle_start {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| format!("cycleStart {text:?} is not an RFC 3339 time: {e}"))?
            .with_timezone(&Utc),
        None => created_at(schedule).ok_or("the BackupSchedule has no creationTimestamp yet")?,
    };
    let cycle = Cycle::new(spec.cycle.clone()).map_err(|e| e.to_string())?;
    let clock = CycleClock::new(start.with_timezone(&tz), day_length).map_err(|e| e.to_string())?;
    Schedule::new(spec.schedule.as_deref(), clock, cycle).map_err(|e| e.to_string())
}

fn created_at(schedule: &BackupSchedule) -> Option<DateTime<Utc>> {
    let created = schedule.metadata.creation_timestamp.as_ref()?;
    DateTime::from_timestamp_micros(created.0.as_microsecond())
}

/// RFC 3339 as the status shows times: seconds, and fractions only when a slot has them.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text?).ok().map(|t| t.with_timezone(&Utc))
}

fn state_of_phase(phase: Option<BackupPhase>) -> BackupState {
    match phase {
        None | Some(BackupPhase::Pending | BackupPhase::Running) => BackupState::InProgress,
        Some(BackupPhase::Completed | BackupPhase::Expired) => BackupState::Succeeded,
        Some(BackupPhase::Failed) => BackupState::Failed,
    }
}

/// The backup types of a plan, for messages: "incr, then diff".
pub fn describe_types(types: impl IntoIterator<Item = BackupType>) -> String {
    types.into_iter().map(BackupType::as_pgbackrest).collect::<Vec<_>>().join(", then ")
}

/// The next status and action of `schedule`.
pub fn decide(schedule: &BackupSchedule, observed: &ScheduleObservation) -> ScheduleDecision {
    let before = schedule.status.clone().unwrap_or_default();
    let mut status = before.clone();
    status.observed_generation = schedule.metadata.generation;
    let now = observed.now;
    let ready = |status: &mut BackupScheduleStatus, ok: bool, reason: &str, message: String| {
        let condition = condition(&before.conditions, ok, reason, message, schedule.metadata.generation, now);
        status.conditions = vec![condition];
    };

    let parsed = match schedule_of(schedule) {
        Ok(parsed) => parsed,
        Err(reason) => {
            status.next_run_time = None;
            status.next_cycle_day = None;
            ready(&mut status, false, "InvalidSpec", reason);
            return ScheduleDecision { status, create: None, requeue: None };
        }
    };
    let name = schedule.name_any();
    let cluster = &schedule.spec.cluster;
    let may_create = !schedule.spec.suspend && observed.cluster_exists;

    // The last run first: it finishes before another starts.
    let last_run = parse_time(before.last_run_time.as_deref());
    let mut blocked_by: Option<String> = None;
    // A slot that can no longer be planned (cycleStart moved after it) is over, its result kept.
    if let Some((slot, plan)) = last_run.and_then(|slot| Some((slot, parsed.plan(&name, slot).ok()?))) {
        let state_of = |backup: &str| match observed.backups.get(backup) {
            Some(phase) => state_of_phase(*phase),
            // Created, then deleted by someone: never created again.
            None if before.last_run_backups.iter().any(|b| b == backup) => BackupState::Failed,
            None => BackupState::Absent,
        };
        match next_step(&plan, state_of) {
            SlotStep::Create(next) => {
                status.last_result = Some(RunResult::Running);
                if may_create {
                    status.last_run_backups.push(next.name.clone());
                    let requeue = requeue_while_running(&parsed, now, &mut status);
                    ready(&mut status, true, "Scheduled", format!("creating Backup {}", next.name));
                    return ScheduleDecision { status, create: Some(next.clone()), requeue: Some(requeue) };
                }
                blocked_by =
                    Some(format!("the run of {} still has Backup {} to create", rfc3339(slot), next.name));
            }
            SlotStep::Wait(backup) => {
                status.last_result = Some(RunResult::Running);
                blocked_by =
                    Some(format!("Backup {backup} of the run of {} has not finished", rfc3339(slot)));
            }
            SlotStep::Done { failed } => {
                status.last_result =
                    Some(if failed.is_empty() { RunResult::Completed } else { RunResult::Failed });
            }
        }
    }

    // A new run: the latest slot since the last one, or since cycleStart.
    let start = parsed.clock().start().with_timezone(&Utc);
    let since = last_run.unwrap_or(start - TimeDelta::milliseconds(1));
    let due = match parsed.due_run(since, now) {
        Ok(due) => due,
        Err(error) => {
            ready(&mut status, false, "InvalidSpec", error.to_string());
            return ScheduleDecision { status, create: None, requeue: None };
        }
    };
    if let Some(slot) = due
        && blocked_by.is_none()
        && may_create
    {
        match parsed.plan(&name, slot) {
            Ok(plan) if !plan.is_empty() => {
                let first = plan[0].clone();
                status.last_run_time = Some(rfc3339(slot));
                status.current_cycle_day = i32::try_from(first.cycle_day).ok();
                status.last_run_backups = vec![first.name.clone()];
                status.last_result = Some(RunResult::Running);
                let requeue = requeue_while_running(&parsed, now, &mut status);
                let types = describe_types(plan.iter().map(|b| b.backup_type));
                let message = format!(
                    "day {} run of {}: {types}; creating Backup {}",
                    first.cycle_day,
                    rfc3339(slot),
                    first.name
                );
                ready(&mut status, true, "Scheduled", message);
                return ScheduleDecision { status, create: Some(first), requeue: Some(requeue) };
            }
            Ok(_) => {}
            Err(error) => {
                ready(&mut status, false, "InvalidSpec", error.to_string());
                return ScheduleDecision { status, create: None, requeue: None };
            }
        }
    }

    // Nothing to create now: say why, and when to look again.
    if schedule.spec.suspend {
        status.next_run_time = None;
        status.next_cycle_day = None;
        ready(&mut status, false, "Suspended", "suspended: no Backups are created".to_string());
        return ScheduleDecision { status, create: None, requeue: None };
    }
    let next = match due {
        // Overdue, waiting for the cluster or for the last run to finish.
        Some(slot) => Ok(slot),
        None => parsed.next_run_after(now.max(since)),
    };
    let next = match next {
        Ok(next) => next,
        Err(error) => {
            ready(&mut status, false, "InvalidSpec", error.to_string());
            return ScheduleDecision { status, create: None, requeue: None };
        }
    };
    status.next_run_time = Some(rfc3339(next));
    status.next_cycle_day = parsed.cycle_day(next).ok().and_then(|d| i32::try_from(d).ok());
    let until_next = (next - now).to_std().unwrap_or(Duration::ZERO);
    if !observed.cluster_exists {
        let message = format!("PgCluster {cluster} does not exist in this namespace");
        ready(&mut status, false, "ClusterNotFound", message);
        return ScheduleDecision { status, create: None, requeue: Some(CLUSTER_POLL) };
    }
    let day = status.next_cycle_day.map(|d| d.to_string()).unwrap_or_else(|| "?".into());
    let types = parsed
        .cycle_day(next)
        .ok()
        .and_then(|d| parsed.cycle().day(d))
        .map(|types| describe_types(types.iter().copied()))
        .unwrap_or_default();
    match blocked_by {
        Some(reason) => {
            ready(
                &mut status,
                true,
                "Scheduled",
                format!("day {day} run of {} waits: {reason}", rfc3339(next)),
            );
            ScheduleDecision { status, create: None, requeue: Some(IN_PROGRESS_POLL) }
        }
        None => {
            ready(&mut status, true, "Scheduled", format!("next run {}: day {day}, {types}", rfc3339(next)));
            ScheduleDecision { status, create: None, requeue: Some(until_next) }
        }
    }
}

/// While a run has Backups in progress: the next slot for the status, and a safety-net poll.
fn requeue_while_running(
    parsed: &Schedule,
    now: DateTime<Utc>,
    status: &mut BackupScheduleStatus,
) -> Duration {
    match parsed.next_run_after(now) {
        Ok(next) => {
            status.next_run_time = Some(rfc3339(next));
            status.next_cycle_day = parsed.cycle_day(next).ok().and_then(|d| i32::try_from(d).ok());
            (next - now).to_std().unwrap_or(Duration::ZERO).min(IN_PROGRESS_POLL)
        }
        Err(_) => IN_PROGRESS_POLL,
    }
}

/// The Ready condition, keeping its lastTransitionTime while its status does not change.
fn condition(
    previous: &[Condition],
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    let status = if ok { "True" } else { "False" }.to_string();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == READY && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(to_jiff(now)));
    Condition {
        type_: READY.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

fn to_jiff(t: DateTime<Utc>) -> k8s_openapi::jiff::Timestamp {
    // Whole seconds: metav1.Time is serialised with second precision anyway.
    k8s_openapi::jiff::Timestamp::from_second(t.timestamp())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

/// The Backup object of a planned backup of `schedule`, for `cluster` (the stored PgCluster).
///
/// Owned by the PgCluster, not by the schedule: a Backup describes a backup set that stays
/// in the repository whatever happens to the schedule, so deleting or recreating a
/// BackupSchedule (the only way to change its cluster) must not erase the catalog that
/// `kubectl get backups` shows; deleting the cluster does, like all its other children. Not
/// a controller reference (the PgCluster controller does not manage Backups) and no
/// blockOwnerDeletion, which would need extra RBAC for nothing.
pub fn backup_of(
    schedule: &BackupSchedule,
    cluster: &crate::crd::PgCluster,
    planned: &PlannedBackup,
) -> Backup {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::Resource as _;
    let mut backup = Backup::new(
        &planned.name,
        BackupSpec {
            cluster: schedule.spec.cluster.clone(),
            backup_type: planned.backup_type,
            cycle_day: i32::try_from(planned.cycle_day).ok(),
            schedule: Some(schedule.name_any()),
        },
    );
    backup.metadata.namespace = schedule.namespace();
    backup.metadata.labels = Some(BTreeMap::from([(
        crate::protocol::names::LABEL_CLUSTER.to_string(),
        schedule.spec.cluster.clone(),
    )]));
    backup.metadata.annotations =
        Some(BTreeMap::from([(SCHEDULED_ANNOTATION.to_string(), rfc3339(planned.scheduled))]));
    if let Some(uid) = cluster.uid() {
        backup.metadata.owner_references = Some(vec![OwnerReference {
            api_version: crate::crd::PgCluster::api_version(&()).into_owned(),
            kind: crate::crd::PgCluster::kind(&()).into_owned(),
            name: cluster.name_any(),
            uid,
            ..OwnerReference::default()
        }]);
    }
    backup
}

/// Annotation of a scheduled Backup: the slot it belongs to, RFC 3339.
pub const SCHEDULED_ANNOTATION: &str = "relevo.dev/scheduled-time";

/// An Event worth publishing: type, reason, note.
pub type Note = (EventType, &'static str, String);

/// The Events of one reconcile: the Backup created, a run that finished, a change of the
/// Ready condition's reason. Steady states produce none.
pub fn events(
    before: &BackupScheduleStatus,
    after: &BackupScheduleStatus,
    created: Option<&PlannedBackup>,
) -> Vec<Note> {
    let mut notes = Vec::new();
    if let Some(backup) = created {
        let note = format!(
            "Backup {}: {} backup of cycle day {} (run of {})",
            backup.name,
            backup.backup_type.as_pgbackrest(),
            backup.cycle_day,
            rfc3339(backup.scheduled)
        );
        notes.push((EventType::Normal, "Created", note));
    }
    if before.last_run_time == after.last_run_time && before.last_result != after.last_result {
        let run = format!(
            "day {} run of {} ({})",
            after.current_cycle_day.map(|d| d.to_string()).unwrap_or_else(|| "?".into()),
            after.last_run_time.as_deref().unwrap_or("?"),
            after.last_run_backups.join(", ")
        );
        match after.last_result {
            Some(RunResult::Completed) => {
                notes.push((EventType::Normal, "RunCompleted", format!("{run}: every backup completed")))
            }
            Some(RunResult::Failed) => notes.push((
                EventType::Warning,
                "RunFailed",
                format!("{run}: a backup failed or was deleted"),
            )),
            _ => {}
        }
    }
    let ready = |s: &BackupScheduleStatus| s.conditions.iter().find(|c| c.type_ == READY).cloned();
    if let Some(now) = ready(after)
        && ready(before).is_none_or(|was| was.reason != now.reason || was.status != now.status)
    {
        let type_ = if now.status == "True" || now.reason == "Suspended" {
            EventType::Normal
        } else {
            EventType::Warning
        };
        let reason = match now.reason.as_str() {
            "InvalidSpec" => "InvalidSpec",
            "ClusterNotFound" => "ClusterNotFound",
            "Suspended" => "Suspended",
            _ => "Scheduled",
        };
        notes.push((type_, reason, now.message));
    }
    notes.into_iter().map(|(type_, reason, note)| (type_, reason, within(note, MAX_NOTE_BYTES))).collect()
}

/// Event notes are limited to 1 kB by the API.
const MAX_NOTE_BYTES: usize = 1000;

fn within(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
#[path = "schedule_machine_tests.rs"]
mod tests;
