//! The Backup state machine: a pure function from (Backup, what the operator observed) to the
//! next status and the one step to take. The controller persists the status first and only
//! then takes the step, so an operator restart at any point resumes safely:
//!
//! ```text
//! (new) ─► Pending ──(its turn, primary known, repo host Ready: record primary and Job name)
//!             │         └─► CreateJob ─► Running ─► Completed ─► Record (Redis) ─► done
//!             │                             └────► Failed
//!             └─(PgCluster missing)─► Failed
//! ```
//!
//! - **One at a time per cluster.** A Backup waits while another Backup of its cluster has
//!   started, or while an older one has not finished ([`first_in_line`]). The order is
//!   creation order, so day 3's incr runs before its diff.
//! - **The primary is recorded before the Job exists,** and Backups wait while a Switchover is
//!   moving the primary, so `maestro_usado` names the instance pgBackRest backed up.
//! - **Pending with a Job name** means "the Job may not exist yet": creating it is idempotent
//!   (deterministic name). **Running** means it was seen, so a Job that vanishes is a failure,
//!   never a silent second backup.
//! - **Completed is final for the repository;** the Redis record follows, retried with a
//!   bounded backoff while Redis is unreachable (`redisRecorded: false` until then).

use std::time::Duration;

use chrono::SecondsFormat;
use kube::ResourceExt;

use super::job::{JobView, job_name};
use super::result::{BackupDone, DecodeError, JobResult, decode, human_size};
use crate::crd::{Backup, BackupPhase, BackupStatus};

/// While waiting for another Backup or a Switchover: a short poll, since nothing else wakes
/// a waiting Backup when the one ahead of it finishes.
pub const QUEUED_INTERVAL: Duration = Duration::from_secs(2);
/// While the cluster is not ready for a backup (no primary, repo host not Ready).
pub const NOT_READY_INTERVAL: Duration = Duration::from_secs(5);
/// While the Job runs; its status changes wake the controller earlier.
pub const RUNNING_INTERVAL: Duration = Duration::from_secs(30);
/// First and longest delay between attempts to write the Redis record.
pub const REDIS_FIRST_RETRY: Duration = Duration::from_secs(5);
pub const REDIS_MAX_RETRY: Duration = Duration::from_secs(300);

/// The PgCluster, as far as a backup cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterView {
    Missing,
    Present {
        /// status.currentPrimary.
        current_primary: Option<String>,
        /// Whether the repo host pod is Ready (its volume is mounted and pgBackRest serves).
        repo_host_ready: bool,
    },
}

/// Everything [`next`] decides on, besides the Backup itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupObservation {
    pub cluster: ClusterView,
    /// Another Backup of the cluster that goes first ([`first_in_line`]).
    pub ahead: Option<String>,
    /// A Switchover of the cluster that is moving the primary right now.
    pub switchover: Option<String>,
    /// The Backup's Job.
    pub job: JobView,
}

/// What the controller does after persisting [`BackupDecision::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupStep {
    /// Nothing but look again after this long.
    Wait(Duration),
    /// Create the Job named in the status.
    CreateJob,
    /// Write the Redis record (and the PgCluster's lastBackup).
    Record,
    /// Nothing left to do.
    Done,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackupDecision {
    pub status: BackupStatus,
    pub step: BackupStep,
}

fn decide(status: BackupStatus, step: BackupStep) -> BackupDecision {
    BackupDecision { status, step }
}

/// The next status and step of `backup`.
pub fn next(backup: &Backup, observed: &BackupObservation) -> BackupDecision {
    let status = backup.status.clone().unwrap_or_default();
    match status.phase {
        None | Some(BackupPhase::Pending) => pending(backup, status, observed),
        Some(BackupPhase::Running) => running(status, observed),
        Some(BackupPhase::Completed) if !status.redis_recorded => completed(backup, status, observed),
        Some(BackupPhase::Completed | BackupPhase::Failed | BackupPhase::Expired) => {
            decide(status, BackupStep::Done)
        }
    }
}

fn pending(backup: &Backup, mut status: BackupStatus, observed: &BackupObservation) -> BackupDecision {
    status.phase = Some(BackupPhase::Pending);
    let cluster = &backup.spec.cluster;
    let job = job_name(&backup.name_any());
    if status.job.is_some() {
        // The primary is recorded and the Job may or may not have been created.
        return match &observed.job {
            JobView::Absent if observed.cluster == ClusterView::Missing => {
                fail(status, format!("PgCluster {cluster} does not exist in this namespace"))
            }
            JobView::Absent => {
                status.message = Some(format!("creating Job {job}"));
                decide(status, BackupStep::CreateJob)
            }
            JobView::NotOurs => {
                wait_with(status, format!("Job {job} belongs to another object"), NOT_READY_INTERVAL)
            }
            _ => running(status, observed),
        };
    }
    let (current_primary, repo_host_ready) = match &observed.cluster {
        ClusterView::Missing => {
            return fail(status, format!("PgCluster {cluster} does not exist in this namespace"));
        }
        ClusterView::Present { current_primary, repo_host_ready } => (current_primary, *repo_host_ready),
    };
    if let Some(other) = &observed.ahead {
        return wait_with(
            status,
            format!("waiting for Backup {other} of cluster {cluster} to finish"),
            QUEUED_INTERVAL,
        );
    }
    if let Some(switchover) = &observed.switchover {
        return wait_with(status, format!("waiting for Switchover {switchover} to finish"), QUEUED_INTERVAL);
    }
    let Some(primary) = current_primary else {
        return wait_with(
            status,
            format!("waiting for PgCluster {cluster} to have a primary"),
            NOT_READY_INTERVAL,
        );
    };
    if !repo_host_ready {
        let pod = crate::protocol::names::repo_pod(cluster);
        return wait_with(
            status,
            format!("waiting for the repo host pod {pod} to be Ready"),
            NOT_READY_INTERVAL,
        );
    }
    match &observed.job {
        JobView::NotOurs => {
            wait_with(status, format!("Job {job} belongs to another object"), NOT_READY_INTERVAL)
        }
        // A Job already ours with no name in the status: the status was lost; adopt the Job.
        JobView::Active | JobView::Succeeded { .. } | JobView::Failed { .. } => {
            status.job = Some(job);
            running(status, observed)
        }
        JobView::Absent => {
            status.primary = Some(primary.clone());
            status.job = Some(job.clone());
            status.error = None;
            status.message = Some(format!("creating Job {job}; primary {primary}"));
            decide(status, BackupStep::CreateJob)
        }
    }
}

fn running(mut status: BackupStatus, observed: &BackupObservation) -> BackupDecision {
    status.phase = Some(BackupPhase::Running);
    let job = status.job.clone().unwrap_or_default();
    match &observed.job {
        JobView::Absent => fail(status, format!("Job {job} disappeared before it finished")),
        JobView::NotOurs => fail(status, format!("Job {job} now belongs to another object")),
        JobView::Active => {
            let primary = status.primary.clone().unwrap_or_else(|| "?".into());
            wait_with(
                status,
                format!("pgBackRest is running in Job {job} (primary {primary})"),
                RUNNING_INTERVAL,
            )
        }
        JobView::Succeeded { message } => match decode(message.as_deref().unwrap_or_default()) {
            Ok(JobResult::Completed(done)) => {
                let status = complete(status, &done);
                decide(status, BackupStep::Record)
            }
            Ok(JobResult::Failed { error }) => fail(status, error),
            Err(error) => fail(status, unreadable(&job, &error)),
        },
        JobView::Failed { reason, message, exit } => {
            let error = match message.as_deref().map(decode) {
                Some(Ok(JobResult::Failed { error })) => error,
                _ => match exit {
                    Some(exit) => format!("Job {job} failed: {reason}; {exit}"),
                    None => format!("Job {job} failed: {reason}"),
                },
            };
            fail(status, error)
        }
    }
}

fn unreadable(job: &str, error: &DecodeError) -> String {
    format!("Job {job} succeeded, but its result cannot be read: {error}")
}

fn completed(backup: &Backup, status: BackupStatus, observed: &BackupObservation) -> BackupDecision {
    match observed.cluster {
        ClusterView::Missing => {
            let cluster = &backup.spec.cluster;
            let message =
                format!("in the repository; not recorded in Redis: PgCluster {cluster} no longer exists");
            let mut status = status;
            status.message = Some(message);
            decide(status, BackupStep::Done)
        }
        ClusterView::Present { .. } => decide(status, BackupStep::Record),
    }
}

/// The status of a backup whose Job left `done`.
pub fn complete(mut status: BackupStatus, done: &BackupDone) -> BackupStatus {
    let time = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let bytes = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    status.phase = Some(BackupPhase::Completed);
    status.label = Some(done.label.clone());
    status.start_time = Some(time(done.start));
    status.stop_time = Some(time(done.stop));
    status.size_bytes = Some(bytes(done.size_bytes));
    status.repo_size_bytes = Some(bytes(done.repo_size_bytes));
    status.size = Some(human_size(done.size_bytes));
    status.wal_start = done.wal_start.clone();
    status.wal_stop = done.wal_stop.clone();
    status.error = None;
    status.redis_recorded = false;
    status.message =
        Some(format!("{} backup {} is in the repository", done.backup_type.as_pgbackrest(), done.label));
    status
}

/// The status once the Redis record is written under `key`.
pub fn recorded(mut status: BackupStatus, key: &str) -> BackupStatus {
    status.redis_recorded = true;
    status.redis_key = Some(key.to_string());
    status.redis_attempts = 0;
    status.message = Some(format!("in the repository and recorded in Redis as {key}"));
    status
}

/// The status after a failed attempt to write the Redis record, and when to try again.
pub fn record_failed(mut status: BackupStatus, error: &str) -> (BackupStatus, Duration) {
    status.redis_attempts = status.redis_attempts.saturating_add(1);
    let retry = redis_backoff(status.redis_attempts);
    status.message = Some(format!(
        "in the repository; Redis record not written (attempt {}, next in {}s): {error}",
        status.redis_attempts,
        retry.as_secs()
    ));
    (status, retry)
}

/// Delay after the `attempts`-th failed Redis write: doubling from 5 s, at most 5 min.
pub fn redis_backoff(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(16);
    REDIS_FIRST_RETRY.saturating_mul(1 << doublings).min(REDIS_MAX_RETRY)
}

fn wait_with(mut status: BackupStatus, message: String, after: Duration) -> BackupDecision {
    status.message = Some(message);
    decide(status, BackupStep::Wait(after))
}

fn fail(mut status: BackupStatus, error: String) -> BackupDecision {
    status.phase = Some(BackupPhase::Failed);
    status.message = None;
    status.error = Some(error);
    decide(status, BackupStep::Done)
}

/// The Backup of the same cluster that must go before `me`, if any: one that has started
/// (has a Job) and not finished, otherwise the oldest unfinished one (creation time, then
/// name) when it is not `me`. `all` are the Backups of `me`'s namespace.
pub fn first_in_line(me: &Backup, all: &[Backup]) -> Option<String> {
    let unfinished = |b: &&Backup| {
        b.spec.cluster == me.spec.cluster
            && !b.status.as_ref().and_then(|s| s.phase).is_some_and(BackupPhase::is_terminal)
    };
    let others: Vec<&Backup> =
        all.iter().filter(unfinished).filter(|b| b.name_any() != me.name_any()).collect();
    if let Some(started) = others.iter().find(|b| b.status.as_ref().is_some_and(|s| s.job.is_some())) {
        return Some(started.name_any());
    }
    let key = |b: &Backup| (b.metadata.creation_timestamp.clone(), b.name_any());
    let oldest = others.into_iter().min_by_key(|b| key(b))?;
    (key(oldest) < key(me)).then(|| oldest.name_any())
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
