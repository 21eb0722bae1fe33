//! Gathers what [`super::machine::next`] decides on: the PgCluster, its repo host pod, the
//! other Backups and Switchovers of the cluster, and the Backup's Job with its pods. Only
//! reads. What this controller writes itself (Backups, Jobs) is read fresh from the API, so a
//! decision never rests on a status it wrote a moment ago that a cache has not seen yet; the
//! Switchovers come from the shared watch cache ([`crate::runtime::cache`]): a switchover that
//! starts a moment after that read is no different from one that starts a moment after a LIST.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::job::{JOB_NAME_LABEL, JobView, job_name, job_view};
use super::machine::{BackupObservation, ClusterView, first_in_line};
use crate::crd::{Backup, PgCluster, Switchover, SwitchoverPhase};
use crate::error::Result;
use crate::protocol::names;
use crate::runtime::context::Context;
use crate::runtime::{is_ready, kube_error, list_now};

/// The observation, plus the PgCluster itself (its image, its Redis). Only what the
/// Backup's phase needs is looked up: the queue, the Switchovers and the repo host only while
/// it waits for its turn, the Job only until it has finished; the rest is left at its
/// "nothing to report" value.
pub struct BackupSnapshot {
    pub cluster: Option<PgCluster>,
    pub observed: BackupObservation,
}

pub async fn observe(ctx: &Context, backup: &Backup) -> Result<BackupSnapshot> {
    let namespace = backup.namespace().unwrap_or_default();
    let cluster_name = &backup.spec.cluster;
    let clusters: Api<PgCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let cluster = clusters.get_opt(cluster_name).await.map_err(kube_error("reading the PgCluster"))?;

    let status = backup.status.as_ref();
    let started = status.is_some_and(|s| s.job.is_some());
    let pending = status.and_then(|s| s.phase).is_none_or(|p| p == crate::crd::BackupPhase::Pending);
    let queue_matters = pending && !started && cluster.is_some();

    let cluster_view = match &cluster {
        None => ClusterView::Missing,
        Some(cluster) => ClusterView::Present {
            current_primary: cluster.status.as_ref().and_then(|s| s.current_primary.clone()),
            repo_host_ready: queue_matters && repo_host_ready(ctx, &namespace, cluster_name).await?,
        },
    };
    let ahead = if queue_matters {
        let all: Vec<Backup> = list_now(&ctx.client, &namespace, "listing the Backups").await?;
        first_in_line(backup, &all)
    } else {
        None
    };
    let switchover =
        if queue_matters { moving_switchover(ctx, &namespace, cluster_name).await? } else { None };
    // A finished backup's Job no longer matters (the Redis record comes from the status).
    let finished = status.and_then(|s| s.phase).is_some_and(crate::crd::BackupPhase::is_terminal);
    let job = if finished { JobView::Absent } else { observe_job(ctx, backup, &namespace).await? };
    Ok(BackupSnapshot {
        cluster,
        observed: BackupObservation { cluster: cluster_view, ahead, switchover, job },
    })
}

async fn repo_host_ready(ctx: &Context, namespace: &str, cluster: &str) -> Result<bool> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let pod =
        pods.get_opt(&names::repo_pod(cluster)).await.map_err(kube_error("reading the repo host pod"))?;
    Ok(pod.as_ref().is_some_and(is_ready))
}

/// A Switchover of the cluster that is moving the primary (after Promoting the new primary
/// is in place, and a backup of it is sound).
async fn moving_switchover(ctx: &Context, namespace: &str, cluster: &str) -> Result<Option<String>> {
    let all = ctx.caches.switchovers(namespace).await?;
    let moving = |so: &&std::sync::Arc<Switchover>| {
        so.spec.cluster == cluster
            && matches!(
                so.status.as_ref().and_then(|s| s.phase),
                Some(SwitchoverPhase::Fencing | SwitchoverPhase::CatchingUp | SwitchoverPhase::Promoting)
            )
    };
    Ok(all.iter().find(moving).map(|so| so.name_any()))
}

async fn observe_job(ctx: &Context, backup: &Backup, namespace: &str) -> Result<JobView> {
    let name = job_name(&backup.name_any());
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let job = jobs.get_opt(&name).await.map_err(kube_error("reading the backup Job"))?;
    let finished = job
        .as_ref()
        .and_then(|j| j.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        });
    // The pods only matter for the termination message of a finished Job.
    let pods = if finished {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
        let selector = ListParams::default().labels(&format!("{JOB_NAME_LABEL}={name}"));
        api.list(&selector).await.map_err(kube_error("listing the backup Job's pods"))?.items
    } else {
        Vec::new()
    };
    Ok(job_view(job.as_ref(), backup.uid().as_deref().unwrap_or_default(), &pods))
}
