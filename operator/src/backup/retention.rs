//! Retention: pgBackRest decides, relevo follows (what the users' `limpiar_backups.sh` did).
//!
//! pgBackRest expires old backups itself at the end of every backup, keeping
//! `repo1-retention-full` full backups and whatever depends on them. Retention is a property
//! of the repository, not of a schedule, so every backup of a cluster (manual ones too) runs
//! with the largest `retention.full` of the cluster's BackupSchedules ([`retention_full_for`]),
//! or the repo host's configured default without any.
//!
//! The backup Job then reports what the repository still holds ([`RepoContents`]), and the
//! operator, from that one [`RepoView`]:
//! - marks Expired every Completed Backup of the cluster whose label is gone
//!   ([`expired_backups`], [`expired_status`]);
//! - deletes the Redis record of every label that is gone, whether a Backup object still
//!   knows it or not, keeping the index and latest pointers consistent ([`records_to_delete`],
//!   executed by [`super::redis_io::delete_expired`]). Records without a label (the old
//!   scripts') are never touched.
//!
//! A label newer than the backup that made the report is never judged by it: a Backup that
//! completed after the report cannot be in it. Labels sort in time order (a dependant's label
//! starts with its full backup's, and a later backup always depends on the newest full), so
//! "newer" is a string comparison. Everything is idempotent and the next backup's report
//! covers anything a failed pass (Redis down, API conflict) left behind.

use kube::ResourceExt;

use super::job::JobView;
use super::result::{BackupDone, JobResult, RepoContents, decode};
use crate::crd::{Backup, BackupPhase, BackupSchedule, BackupStatus};

/// Full backups pgBackRest keeps for `cluster`: the largest `retention.full` among its
/// BackupSchedules (suspended ones too: their backups are still wanted); `None` when it has
/// none, which keeps the repo host's configured value.
pub fn retention_full_for(cluster: &str, schedules: &[BackupSchedule]) -> Option<u32> {
    schedules
        .iter()
        .filter(|s| s.spec.cluster == cluster)
        .filter_map(|s| u32::try_from(s.spec.retention.full).ok())
        .max()
}

/// The repository as one finished backup saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoView {
    /// Label of the backup that reported.
    pub reporter: String,
    pub contents: RepoContents,
}

impl RepoView {
    /// The view a completed backup's result carries, if it carries one.
    pub fn of_done(done: &BackupDone) -> Option<Self> {
        Some(Self { reporter: done.label.clone(), contents: done.repository.clone()? })
    }

    /// The view in the termination message of a Job that succeeded.
    pub fn of_job(job: &JobView) -> Option<Self> {
        let JobView::Succeeded { message: Some(message) } = job else { return None };
        match decode(message) {
            Ok(JobResult::Completed(done)) => Self::of_done(&done),
            _ => None,
        }
    }

    /// Whether pgBackRest no longer has the set `label`, as far as this view can tell.
    pub fn is_gone(&self, label: &str) -> bool {
        if label.is_empty() || label > self.reporter.as_str() {
            return false;
        }
        match &self.contents.labels {
            Some(labels) => !labels.iter().any(|l| l == label),
            None => label < self.contents.oldest.as_str(),
        }
    }
}

/// The Completed Backups of `cluster` (among `backups`, those of its namespace) whose
/// backup set is gone.
pub fn expired_backups<'a>(view: &RepoView, cluster: &str, backups: &'a [Backup]) -> Vec<&'a Backup> {
    backups
        .iter()
        .filter(|b| b.spec.cluster == cluster)
        .filter(|b| {
            let status = b.status.as_ref();
            status.and_then(|s| s.phase) == Some(BackupPhase::Completed)
                && status.and_then(|s| s.label.as_deref()).is_some_and(|label| view.is_gone(label))
        })
        .collect()
}

/// The status of a Backup whose set retention removed. `redis_cleaned`: the records of every
/// expired label were deleted by this pass, so this one's is gone too.
pub fn expired_status(mut status: BackupStatus, view: &RepoView, redis_cleaned: bool) -> BackupStatus {
    status.phase = Some(BackupPhase::Expired);
    let seen = format!("pgBackRest no longer lists it after backup {}", view.reporter);
    status.message = Some(if redis_cleaned {
        status.redis_recorded = false;
        status.redis_key = None;
        status.redis_attempts = 0;
        format!("removed from the repository by retention ({seen}); its Redis record is deleted")
    } else if status.redis_recorded {
        format!("removed from the repository by retention ({seen}); its Redis record goes at the next backup")
    } else {
        format!("removed from the repository by retention ({seen})")
    });
    status
}

/// Keys of the records (key, label) whose backup set is gone.
pub fn records_to_delete<'a>(
    view: &RepoView,
    records: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<String> {
    records.into_iter().filter(|(_, label)| view.is_gone(label)).map(|(key, _)| key.to_string()).collect()
}

/// Names of Backups, for messages.
pub fn names(backups: &[&Backup]) -> String {
    backups.iter().map(|b| b.name_any()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
