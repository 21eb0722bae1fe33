//! The BackupSchedule controller: observe (the schedule, its PgCluster, its Backups) →
//! decide ([`schedule_machine::decide`], pure) → create the one Backup due, if any → write
//! the status → requeue exactly at the next run.
//!
//! The Backup is created *before* the status that lists it is written: if the operator stops
//! in between, the next reconcile plans the same slot, gets the same deterministic name, and
//! the apiserver's AlreadyExists makes the creation a no-op. The opposite order could record
//! a Backup that was never created.
//!
//! The controller watches BackupSchedules and every Backup that names one in
//! `spec.schedule`, so a run's second backup is created as soon as its first one finishes.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Resource, ResourceExt};
use tracing::info;

use super::schedule::PlannedBackup;
use super::schedule_machine::{self, ScheduleDecision, ScheduleObservation};
use crate::crd::{Backup, BackupPhase, BackupSchedule, BackupScheduleStatus, PgCluster};
use crate::error::Result;
use crate::runtime::api::apply_status;
use crate::runtime::context::Context;
use crate::runtime::conventions::FIELD_MANAGER;
use crate::runtime::conventions::is_conflict;
use crate::runtime::{self, events, kube_error, list_now};

/// Label value of this controller in metrics.
pub const CONTROLLER: &str = "backupschedule";

pub async fn run(ctx: Arc<Context>) {
    let controller = Controller::new(ctx.scoped::<BackupSchedule>(), watcher::Config::default()).watches(
        ctx.scoped::<Backup>(),
        watcher::Config::default(),
        |backup: Backup| {
            let namespace = backup.namespace()?;
            backup.spec.schedule.map(|name| ObjectRef::<BackupSchedule>::new(&name).within(&namespace))
        },
    );
    runtime::run(CONTROLLER, controller, ctx, reconcile).await;
}

pub async fn reconcile(schedule: Arc<BackupSchedule>, ctx: Arc<Context>) -> Result<Action> {
    reconcile_schedule(&schedule, &ctx).await
}

async fn reconcile_schedule(cached: &BackupSchedule, ctx: &Context) -> Result<Action> {
    let namespace = cached.namespace().unwrap_or_default();
    let api: Api<BackupSchedule> = Api::namespaced(ctx.client.clone(), &namespace);
    // The cache may not have our own last status write yet: read the object itself.
    let Some(schedule) =
        api.get_opt(&cached.name_any()).await.map_err(kube_error("reading the BackupSchedule"))?
    else {
        return Ok(Action::await_change());
    };
    let clusters: Api<PgCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let cluster =
        clusters.get_opt(&schedule.spec.cluster).await.map_err(kube_error("reading the PgCluster"))?;
    let backups: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = schedule.name_any();
    // Read fresh, not from a watch cache: a Backup created or finished a moment ago must not
    // look absent (the machine counts an absent Backup of the last run as deleted, failed).
    let ours: BTreeMap<String, Option<BackupPhase>> =
        list_now::<Backup>(&ctx.client, &namespace, "listing the Backups")
            .await?
            .into_iter()
            .filter(|b| b.spec.schedule.as_deref() == Some(name.as_str()))
            .map(|b| (b.name_any(), b.status.as_ref().and_then(|s| s.phase)))
            .collect();
    let observed = ScheduleObservation { now: Utc::now(), cluster_exists: cluster.is_some(), backups: ours };

    let ScheduleDecision { status, create, requeue } = schedule_machine::decide(&schedule, &observed);
    if let (Some(planned), Some(cluster)) = (&create, &cluster) {
        create_backup(&backups, &schedule, cluster, planned).await?;
    }
    let before = schedule.status.clone().unwrap_or_default();
    if status != before {
        write_status(&api, &schedule, &status).await?;
    }
    publish(ctx, &schedule, &before, &status, create.as_ref()).await;
    Ok(match requeue {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

async fn create_backup(
    api: &Api<Backup>,
    schedule: &BackupSchedule,
    cluster: &PgCluster,
    planned: &PlannedBackup,
) -> Result<()> {
    let backup = schedule_machine::backup_of(schedule, cluster, planned);
    let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
    match api.create(&params, &backup).await {
        Ok(_) => {
            info!(backup = %planned.name, day = planned.cycle_day, kind = planned.backup_type.as_pgbackrest(), "Backup created");
            Ok(())
        }
        // Created by an earlier reconcile that stopped before writing the status.
        Err(error) if is_conflict(&error) => Ok(()),
        Err(source) => Err(kube_error("creating a scheduled Backup")(source)),
    }
}

/// The whole status, with the resourceVersion read as a precondition ([`apply_status`]): two
/// operator pods can never both start a run.
async fn write_status(
    api: &Api<BackupSchedule>,
    schedule: &BackupSchedule,
    status: &BackupScheduleStatus,
) -> Result<()> {
    apply_status(api, schedule, status, "writing the BackupSchedule status").await?;
    Ok(())
}

async fn publish(
    ctx: &Context,
    schedule: &BackupSchedule,
    before: &BackupScheduleStatus,
    after: &BackupScheduleStatus,
    created: Option<&PlannedBackup>,
) {
    for (type_, reason, note) in schedule_machine::events(before, after, created) {
        info!(reason, %note, "backup schedule event");
        let event = events::transition(type_, reason, note, "BackupSchedule");
        events::publish(ctx, &schedule.object_ref(&()), event).await;
    }
}
