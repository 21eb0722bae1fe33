//! The Backup controller: observe → decide ([`machine::next`], pure) → persist the status →
//! take the step (create the Job, or write the Redis record). The status is persisted before
//! each external step, so after a restart the next reconcile resumes where this one stopped;
//! both steps are idempotent (a deterministic Job name, a Redis key reused for the same label).
//!
//! The controller watches Backups and the Jobs they own, so a finished Job is seen at once.
//! When a Backup completes, the repository its Job reported drives retention
//! ([`super::retention_io`]): the Backups and Redis records of expired sets are cleaned up.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use serde_json::json;
use tracing::{info, warn};

use super::machine::{self, BackupStep};
use super::observe::{BackupSnapshot, observe};
use super::persist::{publish_transition, write_status};
use super::redis_target::connect_in_cluster;
use super::retention::{self, RepoView};
use super::{job, record, redis_io, retention_io};
use crate::crd::pgcluster::cipher_secret;
use crate::crd::{Backup, BackupPhase, PgCluster};
use crate::error::{Error, Result};
use crate::protocol::names;
use crate::runtime::context::Context;
use crate::runtime::conventions::FIELD_MANAGER;
use crate::runtime::conventions::is_conflict;
use crate::runtime::{self, kube_error, list_now};

/// Label value of this controller in metrics.
pub const CONTROLLER: &str = "backup";
/// After creating the Job, in case its watch event is missed.
const AFTER_CREATE_INTERVAL: Duration = Duration::from_secs(5);

pub async fn run(ctx: Arc<Context>) {
    let ours =
        format!("{}={},{}={}", names::LABEL_NAME, names::APP_NAME, names::LABEL_COMPONENT, job::COMPONENT);
    let controller = Controller::new(ctx.scoped::<Backup>(), watcher::Config::default())
        .owns(ctx.scoped::<Job>(), watcher::Config::default().labels(&ours));
    runtime::run(CONTROLLER, controller, ctx, reconcile).await;
}

pub async fn reconcile(backup: Arc<Backup>, ctx: Arc<Context>) -> Result<Action> {
    reconcile_backup(&backup, &ctx).await
}

async fn reconcile_backup(cached: &Backup, ctx: &Context) -> Result<Action> {
    let namespace = cached.namespace().unwrap_or_default();
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    // The cache may not have our own last status write yet: read the object itself.
    let Some(backup) = api.get_opt(&cached.name_any()).await.map_err(kube_error("reading the Backup"))?
    else {
        return Ok(Action::await_change());
    };
    let before = backup.status.clone().unwrap_or_default();
    if before.phase.is_some_and(BackupPhase::is_terminal)
        && (before.phase != Some(BackupPhase::Completed) || before.redis_recorded)
    {
        return Ok(Action::await_change());
    }
    let BackupSnapshot { cluster, observed } = observe(ctx, &backup).await?;
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
        BackupStep::Wait(after) => Ok(Action::requeue(after)),
        BackupStep::Done => Ok(Action::await_change()),
        BackupStep::CreateJob => {
            let image = cluster.as_ref().map(|c| c.spec.image.clone()).unwrap_or_default();
            let cipher = cluster
                .as_ref()
                .and_then(|c| cipher_secret(&c.name_any(), c.spec.backup.encryption.as_ref()));
            create_job(ctx, &backup, &image, cipher.as_deref()).await?;
            Ok(Action::requeue(AFTER_CREATE_INTERVAL))
        }
        BackupStep::Record => match &cluster {
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

async fn create_job(ctx: &Context, backup: &Backup, image: &str, cipher_secret: Option<&str>) -> Result<()> {
    let namespace = backup.namespace().unwrap_or_default();
    // Read fresh: the retention pgBackRest applies deletes backups.
    let schedules = list_now(&ctx.client, &namespace, "listing the BackupSchedules").await?;
    let retention_full = retention::retention_full_for(&backup.spec.cluster, &schedules);
    let Some(job) = job::build_with_retention(backup, image, retention_full) else {
        return Err(Error::Missing { kind: "Backup uid", name: backup.name_any() });
    };
    let job = match cipher_secret {
        Some(secret) => job::with_cipher_pass(job, secret),
        None => job,
    };
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
    match jobs.create(&params, &job).await {
        Ok(_) => {
            info!(job = %job.name_any(), "backup Job created");
            Ok(())
        }
        // Created by an earlier reconcile that stopped before seeing it: the same Job.
        Err(error) if is_conflict(&error) => Ok(()),
        Err(source) => Err(kube_error("creating the backup Job")(source)),
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
    let namespace = backup.namespace().unwrap_or_default();
    let schedules = list_now(&ctx.client, &namespace, "listing the BackupSchedules").await?;
    let tz = record::record_time_zone(backup, &schedules);

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

#[cfg(test)]
mod tests {
    use super::*;

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
