//! The Backup controller: observe → decide ([`machine::next`], pure) → persist the status →
//! take the step (create the Job, or write the Redis record). The status is persisted before
//! each external step, so after a restart the next reconcile resumes where this one stopped;
//! both steps are idempotent (a deterministic Job name, a Redis key reused for the same label).
//!
//! The controller watches Backups and the Jobs they own, so a finished Job is seen at once.
//! When a Backup completes, the repository its Job reported drives retention
//! ([`super::retention_io`]): the Backups and Redis records of expired sets are cleaned up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, instrument, warn};

use super::machine::{self, Step};
use super::observe::{Snapshot, observe};
use super::redis_target::connect_in_cluster;
use super::retention::{self, RepoView};
use super::{job, record, redis_io, retention_io};
use crate::context::Context;
use crate::crd::{Backup, BackupPhase, BackupSchedule, BackupStatus, PgCluster};
use crate::error::{Error, Result};
use crate::pgcluster::names::{self, FIELD_MANAGER};

/// Label value of this controller in metrics.
pub const CONTROLLER: &str = "backup";
/// After creating the Job, in case its watch event is missed.
const AFTER_CREATE_INTERVAL: Duration = Duration::from_secs(5);
/// After an error (API conflict, apiserver hiccup).
const ERROR_INTERVAL: Duration = Duration::from_secs(5);
/// Events notes are limited to 1 kB by the API.
const MAX_NOTE_BYTES: usize = 1000;

fn scoped<K>(ctx: &Context) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match &ctx.config.watch_namespace {
        Some(namespace) => Api::namespaced(ctx.client.clone(), namespace),
        None => Api::all(ctx.client.clone()),
    }
}

pub async fn run(ctx: Arc<Context>) {
    let ours =
        format!("{}={},{}={}", names::LABEL_NAME, names::APP_NAME, names::LABEL_COMPONENT, job::COMPONENT);
    Controller::new(scoped::<Backup>(&ctx), watcher::Config::default())
        .owns(scoped::<Job>(&ctx), watcher::Config::default().labels(&ours))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(%object, "reconciled"),
                Err(error) => warn!(error = %error, "backup reconcile failed"),
            }
        })
        .await;
}

#[instrument(skip(backup, ctx), fields(namespace = backup.namespace(), name = backup.name_any()))]
pub async fn reconcile(backup: Arc<Backup>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_backup(&backup, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, started.elapsed(), result.as_ref().err().map(Error::metric_label));
    result
}

pub fn error_policy(_backup: Arc<Backup>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(error = %error, source = ?std::error::Error::source(error).map(ToString::to_string), "backup error");
    Action::requeue(ERROR_INTERVAL)
}

async fn reconcile_backup(cached: &Backup, ctx: &Context) -> Result<Action> {
    let namespace = cached.namespace().unwrap_or_default();
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    // The cache may not have our own last status write yet: read the object itself.
    let Some(backup) = api
        .get_opt(&cached.name_any())
        .await
        .map_err(|source| Error::Kube { action: "reading the Backup", source })?
    else {
        return Ok(Action::await_change());
    };
    let before = backup.status.clone().unwrap_or_default();
    if before.phase.is_some_and(BackupPhase::is_terminal)
        && (before.phase != Some(BackupPhase::Completed) || before.redis_recorded)
    {
        return Ok(Action::await_change());
    }
    let Snapshot { cluster, observed } = observe(ctx, &backup).await?;
    let decision = machine::next(&backup, &observed);
    // What the Job saw of the repository, on the reconcile that sees it complete.
    let just_completed =
        decision.status.phase == Some(BackupPhase::Completed) && before.phase != Some(BackupPhase::Completed);
    let repository = if just_completed { RepoView::of_job(&observed.job) } else { None };

    // Persist first, then act.
    let backup =
        if decision.status != before { write_status(&api, &backup, &decision.status).await? } else { backup };
    publish_transition(ctx, &backup, &before, &decision.status).await;

    match decision.step {
        Step::Wait(after) => Ok(Action::requeue(after)),
        Step::Done => Ok(Action::await_change()),
        Step::CreateJob => {
            let image = cluster.as_ref().map(|c| c.spec.image.clone()).unwrap_or_default();
            create_job(ctx, &backup, &image).await?;
            Ok(Action::requeue(AFTER_CREATE_INTERVAL))
        }
        Step::Record => match &cluster {
            Some(cluster) => {
                let action = record(ctx, &api, &backup, cluster).await;
                if let Some(view) = &repository {
                    retention_io::apply(ctx, cluster, view).await;
                }
                action
            }
            None => Ok(Action::await_change()),
        },
    }
}

async fn create_job(ctx: &Context, backup: &Backup, image: &str) -> Result<()> {
    let namespace = backup.namespace().unwrap_or_default();
    let schedules: Api<BackupSchedule> = Api::namespaced(ctx.client.clone(), &namespace);
    let schedules = schedules
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::Kube { action: "listing BackupSchedules", source })?;
    let retention_full = retention::retention_full_for(&backup.spec.cluster, &schedules.items);
    let Some(job) = job::build_with_retention(backup, image, retention_full) else {
        return Err(Error::Missing { kind: "Backup uid", name: backup.name_any() });
    };
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
    match jobs.create(&params, &job).await {
        Ok(_) => {
            info!(job = %job.name_any(), "backup Job created");
            Ok(())
        }
        // Created by an earlier reconcile that stopped before seeing it: the same Job.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(source) => Err(Error::Kube { action: "creating the backup Job", source }),
    }
}

/// Writes the Redis record and the PgCluster's lastBackup; a Redis that cannot be reached
/// is retried with a growing delay, the Backup staying Completed meanwhile.
async fn record(ctx: &Context, api: &Api<Backup>, backup: &Backup, cluster: &PgCluster) -> Result<Action> {
    update_last_backup(ctx, backup, cluster).await;
    let before = backup.status.clone().unwrap_or_default();
    let Some(entry) = record::record_of(backup) else {
        warn!("a Completed Backup without label or start time cannot be recorded");
        return Ok(Action::await_change());
    };
    let schedules: Api<BackupSchedule> =
        Api::namespaced(ctx.client.clone(), &backup.namespace().unwrap_or_default());
    let schedules = schedules
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::Kube { action: "listing BackupSchedules", source })?;
    let tz = record::record_time_zone(backup, &schedules.items);

    let written = async {
        let mut conn = connect_in_cluster(&ctx.client, cluster).await.map_err(|e| error_chain(&e))?;
        redis_io::write_record(&mut conn, &entry, tz).await.map_err(|e| error_chain(&e))
    }
    .await;
    let (status, action) = match written {
        Ok(key) => (machine::recorded(before.clone(), &key), Action::await_change()),
        Err(error) => {
            let (status, retry) = machine::record_failed(before.clone(), &error);
            (status, Action::requeue(retry))
        }
    };
    let backup = write_status(api, backup, &status).await?;
    publish_transition(ctx, &backup, &before, &status).await;
    Ok(action)
}

/// Moves the PgCluster's `status.lastBackup` to this backup unless a later one is there. A
/// failure only costs the field being stale, so it is logged, not retried.
///
/// A JSON merge patch, not an apply: the PgCluster controller applies the rest of that
/// status under the same field manager, and an apply of ours would make its next apply (which
/// carries lastBackup over from what it read) the field's only owner and free to drop it.
async fn update_last_backup(ctx: &Context, backup: &Backup, cluster: &PgCluster) {
    let candidate = record::last_backup_of(backup);
    let current = cluster.status.as_ref().and_then(|s| s.last_backup.as_ref());
    if !record::is_newer(&candidate, current) {
        return;
    }
    let api: Api<PgCluster> = Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
    let patch = json!({ "status": { "lastBackup": candidate } });
    if let Err(error) = api.patch_status(&cluster.name_any(), &params, &Patch::Merge(&patch)).await {
        warn!(%error, "could not update the PgCluster's lastBackup");
    }
}

/// An error with its sources, on one line: what the status message shows.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Server-side apply of the whole status, with the resourceVersion read as a precondition:
/// two operator pods can never interleave transitions. Returns the updated Backup.
pub(super) async fn write_status(
    api: &Api<Backup>,
    backup: &Backup,
    status: &BackupStatus,
) -> Result<Backup> {
    let patch = json!({
        "apiVersion": Backup::api_version(&()),
        "kind": Backup::kind(&()),
        "metadata": { "name": backup.name_any(), "resourceVersion": backup.metadata.resource_version },
        "status": status,
    });
    api.patch_status(&backup.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::Kube { action: "writing the Backup status", source })
}

pub(super) async fn publish_transition(
    ctx: &Context,
    backup: &Backup,
    before: &BackupStatus,
    after: &BackupStatus,
) {
    let Some((type_, reason, note)) = transition_note(backup, before, after) else { return };
    info!(reason, phase = ?after.phase, "backup transition");
    let event =
        Event { type_, reason: reason.into(), note: Some(note), action: "Backup".into(), secondary: None };
    if let Err(error) = ctx.recorder.publish(&event, &backup.object_ref(&())).await {
        warn!(%error, "could not publish an Event");
    }
}

/// The Event of a status change, if it is a transition worth one: a phase change, the Redis
/// record written, or the first failed attempt to write it. Pure; notes never contain
/// secrets (they name instances, labels, Jobs and errors of pgBackRest and Redis).
pub fn transition_note(
    backup: &Backup,
    before: &BackupStatus,
    after: &BackupStatus,
) -> Option<(EventType, &'static str, String)> {
    let kind = backup.spec.backup_type.as_pgbackrest();
    let job = after.job.as_deref().unwrap_or("?");
    let primary = after.primary.as_deref().unwrap_or("?");
    let event = if before.phase != after.phase {
        match after.phase? {
            BackupPhase::Pending => {
                (EventType::Normal, "Pending", after.message.clone().unwrap_or_else(|| "queued".into()))
            }
            BackupPhase::Running => (
                EventType::Normal,
                "Started",
                format!("{kind} backup of primary {primary} running in Job {job}"),
            ),
            BackupPhase::Completed => {
                let label = after.label.as_deref().unwrap_or("?");
                let size = after.size.as_deref().unwrap_or("?");
                (EventType::Normal, "Completed", format!("{label} ({size}) from primary {primary}"))
            }
            BackupPhase::Failed => (EventType::Warning, "Failed", after.error.clone().unwrap_or_default()),
            BackupPhase::Expired => {
                (EventType::Normal, "Expired", "removed from the repository by retention".into())
            }
        }
    } else if after.redis_recorded && !before.redis_recorded {
        let key = after.redis_key.as_deref().unwrap_or("?");
        (EventType::Normal, "Recorded", format!("recorded in Redis as {key}"))
    } else if after.redis_attempts == 1 && before.redis_attempts == 0 {
        (EventType::Warning, "RedisUnavailable", after.message.clone().unwrap_or_default())
    } else {
        return None;
    };
    let (type_, reason, note) = event;
    Some((type_, reason, tail_within(&note, MAX_NOTE_BYTES)))
}

/// `text` cut from the front to at most `max` bytes (pgBackRest's reason is at the end).
fn tail_within(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - (max - '…'.len_utf8());
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup() -> Backup {
        serde_saphyr::from_str(
            "apiVersion: relevo.dev/v1alpha1\nkind: Backup\nmetadata: {name: pg-1, namespace: db}\n\
             spec: {cluster: pg, type: diff}\n",
        )
        .unwrap()
    }

    fn status(phase: Option<BackupPhase>) -> BackupStatus {
        BackupStatus {
            phase,
            job: Some("pg-1".into()),
            primary: Some("pg-2".into()),
            label: Some("20251007-120000F_20251009-120003D".into()),
            size: Some("24.1MiB".into()),
            ..BackupStatus::default()
        }
    }

    #[test]
    fn each_phase_change_has_one_event() {
        let running = status(Some(BackupPhase::Running));
        let (type_, reason, note) =
            transition_note(&backup(), &status(Some(BackupPhase::Pending)), &running).unwrap();
        assert_eq!((type_, reason), (EventType::Normal, "Started"));
        assert_eq!(note, "diff backup of primary pg-2 running in Job pg-1");
        let completed = status(Some(BackupPhase::Completed));
        let (_, reason, note) = transition_note(&backup(), &running, &completed).unwrap();
        assert_eq!(
            (reason, note.as_str()),
            ("Completed", "20251007-120000F_20251009-120003D (24.1MiB) from primary pg-2")
        );
        assert_eq!(transition_note(&backup(), &running, &running), None, "no event without a transition");
    }

    #[test]
    fn failures_are_warnings_with_their_reason_within_the_note_limit() {
        let mut failed = status(Some(BackupPhase::Failed));
        failed.error = Some(format!("{}ERROR: [056]: the reason", "x".repeat(5000)));
        let (type_, reason, note) =
            transition_note(&backup(), &status(Some(BackupPhase::Running)), &failed).unwrap();
        assert_eq!((type_, reason), (EventType::Warning, "Failed"));
        assert!(note.len() <= MAX_NOTE_BYTES && note.ends_with("the reason"), "{note}");
    }

    #[test]
    fn redis_outcomes_have_events_once() {
        let completed = status(Some(BackupPhase::Completed));
        let (failing, _) = machine::record_failed(completed.clone(), "Connection refused");
        let (type_, reason, _) = transition_note(&backup(), &completed, &failing).unwrap();
        assert_eq!((type_, reason), (EventType::Warning, "RedisUnavailable"));
        let (still_failing, _) = machine::record_failed(failing.clone(), "Connection refused");
        assert_eq!(transition_note(&backup(), &failing, &still_failing), None, "not on every retry");
        let recorded = machine::recorded(still_failing.clone(), "backup:2025-10-09_12-00-03");
        let (_, reason, note) = transition_note(&backup(), &still_failing, &recorded).unwrap();
        assert_eq!((reason, note.as_str()), ("Recorded", "recorded in Redis as backup:2025-10-09_12-00-03"));
    }

    #[test]
    fn error_chains_read_as_one_line() {
        use super::super::redis_target::ConnectError;
        let error = ConnectError::MissingPassword { name: "pg-redis".into(), key: "password".into() };
        assert_eq!(error_chain(&error), "Secret pg-redis has no key password");
        let refused = redis::RedisError::from(std::io::Error::other("Connection refused"));
        let error = ConnectError::Redis { url: "redis://pg-redis.db.svc:6379/".into(), source: refused };
        assert_eq!(error_chain(&error), "Redis at redis://pg-redis.db.svc:6379/: Connection refused");
    }
}
