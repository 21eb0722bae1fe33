//! Carries out one [`Step`] of the machine. Every step is idempotent (see the table in
//! `machine`'s module doc): markers and replicas are server-side applied with the content
//! they must have, SQL steps are guarded. What a pod or StatefulSet must look like is
//! computed purely ([`pod_markers_for`], [`sts_change_for`]); this file only writes it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tracing::{info, warn};

use super::instance_channel;
use super::model::{Mode, Step, SwitchoverState};
use super::observe::Snapshot;
use super::sql;
use crate::error::{Error, Result};
use crate::lease;
use crate::pgcluster::builders::statefulset::SwitchoverOverrides as StsState;
use crate::pgcluster::builders::{Owner, instance_access};
use crate::pgcluster::slots;
use crate::postgres::Connection;
use crate::protocol::markers;
use crate::protocol::names;
use crate::runtime::context::Context;
use crate::runtime::conventions::FIELD_MANAGER;
use crate::runtime::conventions::{is_conflict, is_not_found};
use crate::runtime::kube_error;

/// A server-side apply is retried this often when the object changed since it was read
/// (kubelet updates pod status all the time).
const CONFLICT_ATTEMPTS: usize = 4;

/// Who asks, for markers and records: the Switchover's name and what the machine persisted.
pub struct Requester<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub mode: Mode,
    pub state: &'a SwitchoverState,
}

/// Marker changes on one pod: (key, value), `None` removes the annotation.
pub type MarkerChanges = Vec<(&'static str, Option<String>)>;

/// The marker change a step makes on an instance pod, and on which instance.
pub fn pod_markers_for(step: &Step, who: &Requester<'_>) -> Option<(String, MarkerChanges)> {
    let so = || Some(who.name.to_owned());
    match step {
        Step::Fence { instance } => {
            Some((instance.clone(), vec![(markers::FENCE, so()), (markers::RESTORE_PRIMARY, None)]))
        }
        Step::Unfence { instance } => {
            // Only before any promotion, and only for the old primary of a planned switchover,
            // may the instance come back as primary; otherwise it comes back as a standby.
            let restore = who.mode == Mode::Planned
                && !who.state.phase.promotion_may_have_happened()
                && who.state.from.as_deref() == Some(instance.as_str());
            let value = if restore { so() } else { None };
            Some((instance.clone(), vec![(markers::FENCE, None), (markers::RESTORE_PRIMARY, value)]))
        }
        // A fenced standby has no upstream; lifting its fence (after promotion, so never with
        // restore-primary) makes it follow `<cluster>-rw`, i.e. the new primary.
        Step::RepointStandby { instance, .. } => {
            Some((instance.clone(), vec![(markers::FENCE, None), (markers::RESTORE_PRIMARY, None)]))
        }
        Step::Rebuild { instance, source, token } => Some((
            instance.clone(),
            vec![
                (markers::FENCE, None),
                (markers::RESTORE_PRIMARY, None),
                (markers::REBUILD, Some(token.clone())),
                (markers::REBUILD_SOURCE, Some(source.clone())),
            ],
        )),
        _ => None,
    }
}

/// The StatefulSet change a step makes: replicas (`Some(0)` fenced; `None` back to normal)
/// and template rebuild markers.
pub fn sts_change_for(step: &Step, current: &StsState, who: &Requester<'_>) -> Option<(String, StsState)> {
    let mut next = current.clone();
    let instance = match step {
        Step::ScaleToZero { instance } => {
            next.replicas = Some((0, who.name.to_owned()));
            instance
        }
        Step::Unfence { instance } => {
            next.replicas = None;
            instance
        }
        Step::Rebuild { instance, source, token } => {
            next.replicas = None;
            next.template_markers.insert(markers::REBUILD.into(), token.clone());
            next.template_markers.insert(markers::REBUILD_SOURCE.into(), source.clone());
            instance
        }
        _ => return None,
    };
    (next != *current).then(|| (instance.clone(), next))
}

pub async fn execute(ctx: &Context, snap: &Snapshot, step: &Step, who: &Requester<'_>) -> Result<()> {
    if let Some((instance, changes)) = pod_markers_for(step, who) {
        set_pod_markers(ctx, who.namespace, &instance, &changes).await?;
        push_markers(ctx, snap, who.namespace, &instance, &changes).await;
    }
    if let Some(instance) = step_sts_instance(step) {
        let current = snap.statefulsets.iter().find(|s| s.name_any() == instance);
        let carried = StsState::carried_over(current);
        if let Some((instance, next)) = sts_change_for(step, &carried, who) {
            patch_statefulset(ctx, who.namespace, &instance, next).await?;
        }
    }
    match step {
        Step::Checkpoint { instance } => {
            sql_step(
                ctx,
                snap,
                instance,
                |client| async move { client.batch_execute(sql::CHECKPOINT).await },
            )
            .await?;
        }
        Step::Promote { target, wait_seconds } => {
            let promoted = sql_step(ctx, snap, target, |client| async move {
                client.query_one(&sql::promote(*wait_seconds), &[]).await.map(|r| r.get::<_, bool>(0))
            })
            .await?;
            info!(target, promoted, "pg_promote");
        }
        Step::MoveRoleLabels { primary, standbys } => {
            set_role(ctx, who.namespace, primary, names::RoleLabel::Primary).await?;
            for standby in standbys {
                set_role(ctx, who.namespace, standby, names::RoleLabel::Standby).await?;
            }
        }
        Step::FixSlots { instance, wanted } => fix_slots(ctx, snap, instance, wanted).await?,
        Step::RevokeLease { from, resource_version } => {
            let holders = [Some(from.as_str())];
            let expect = lease::api::Expect { resource_version: Some(resource_version), holders: &holders };
            transfer_lease(ctx, snap, who.namespace, &expect, None).await?;
            info!(from, "revoked the primary lease of the lost primary");
        }
        Step::HandOverLease { from, to } => {
            let holders = [Some(from.as_str()), None];
            let expect = lease::api::Expect { resource_version: None, holders: &holders };
            transfer_lease(ctx, snap, who.namespace, &expect, Some(to)).await?;
            info!(from, to, "handed the primary lease over");
        }
        Step::ForceDeletePod { instance } => force_delete_pod(ctx, snap, who.namespace, instance).await?,
        Step::ClaimRoleMove { switchover, cluster_version } => {
            let cluster = snap
                .cluster
                .as_ref()
                .ok_or_else(|| Error::Missing { kind: "PgCluster", name: String::new() })?;
            super::role_move::claim(ctx, cluster, switchover, cluster_version).await?;
        }
        Step::PausePoolers { pods } => {
            if let Some(cluster) = &snap.cluster {
                let cluster = cluster.name_any();
                super::pooler_channel::pause(ctx, &cluster, who.namespace, &snap.pooler_pods, pods).await;
            }
        }
        Step::ResumePoolers { pods, primary } => {
            if let Some(cluster) = &snap.cluster {
                let cluster = cluster.name_any();
                let all = &snap.pooler_pods;
                super::pooler_channel::resume(ctx, &cluster, who.namespace, all, pods, primary).await;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Writes the primary Lease by compare-and-swap and records what was written, so the next
/// decision sees it without waiting for the watch. A missing Lease is created for the new
/// holder (never for a revocation: there is nothing to revoke).
async fn transfer_lease(
    ctx: &Context,
    snap: &Snapshot,
    namespace: &str,
    expect: &lease::api::Expect<'_>,
    to: Option<&str>,
) -> Result<()> {
    let cluster =
        snap.cluster.as_ref().ok_or_else(|| Error::Missing { kind: "PgCluster", name: String::new() })?;
    let cluster_name = cluster.name_any();
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), namespace);
    let name = lease::name(&cluster_name);
    let written = match lease::api::transfer(&api, &name, expect, to).await {
        Ok(written) => written,
        Err(lease::api::TransferError::Missing) if to.is_some() => {
            let owner = Owner::of(cluster)
                .ok_or_else(|| Error::Missing { kind: "PgCluster uid", name: cluster_name.clone() })?;
            let fresh = instance_access::primary_lease(&owner, to.unwrap_or_default());
            api.create(&kube::api::PostParams::default(), &fresh)
                .await
                .map_err(kube_error("creating the primary Lease"))?
        }
        Err(error) => return Err(Error::Lease(error)),
    };
    let version = written.resource_version().unwrap_or_default();
    let key = lease::Tracker::key(namespace, &cluster_name);
    ctx.leases.record(&key, lease::api::holder_of(&written), &version, std::time::Instant::now());
    Ok(())
}

/// Deletes a pod without waiting for its kubelet, which is gone. The machine asks only for a
/// pod whose node is not ready and whose instance no longer holds the Lease: it has stopped
/// writing by itself, and the StatefulSet may create its successor (which starts fenced,
/// and is rebuilt from its markers).
async fn force_delete_pod(ctx: &Context, snap: &Snapshot, namespace: &str, instance: &str) -> Result<()> {
    let Some(pod) = snap.pod(instance) else { return Ok(()) };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let mut params = kube::api::DeleteParams::default().grace_period(0);
    params.preconditions =
        Some(kube::api::Preconditions { uid: pod.metadata.uid.clone(), resource_version: None });
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => {
            warn!(instance, "force-deleted the pod of a lost instance (its node is not ready)");
            Ok(())
        }
        Err(error) if is_not_found(&error) || is_conflict(&error) => Ok(()),
        Err(source) => Err(kube_error("force-deleting a lost instance's pod")(source)),
    }
}

/// Delivers a marker change straight to the instance manager, so it acts now instead of when
/// kubelet refreshes the annotations file: the fence part always, the rebuild part when the
/// change requests one. Best effort: the annotation is written already, and a failure only
/// costs that delay (the PgCluster reconcile delivers a pending rebuild again,
/// [`crate::pgcluster::rebuild_push`]).
async fn push_markers(
    ctx: &Context,
    snap: &Snapshot,
    namespace: &str,
    instance: &str,
    changes: &MarkerChanges,
) {
    use crate::protocol::markers::{FenceMarkers, PORT, RebuildMarkers};
    let value = |key: &str| changes.iter().find(|(k, _)| *k == key).and_then(|(_, v)| v.clone());
    let fence =
        FenceMarkers { fence: value(markers::FENCE), restore_primary: value(markers::RESTORE_PRIMARY) };
    let rebuild =
        RebuildMarkers { rebuild: value(markers::REBUILD), rebuild_source: value(markers::REBUILD_SOURCE) };
    let (Some(cluster), Some(address)) = (snap.cluster.as_ref(), snap.pod_ip(instance)) else { return };
    let cluster = cluster.name_any();
    let started = std::time::Instant::now();
    let result = async {
        let tls = instance_channel::ClusterTls::read(&ctx.client, namespace, &cluster).await?;
        let server_name = names::pod_fqdn(&cluster, instance, namespace);
        let to = instance_channel::Endpoint { address: &address, port: PORT, server_name: &server_name };
        instance_channel::push(tls.client_config()?, &to, &fence).await?;
        if rebuild.is_complete() {
            instance_channel::push_rebuild(tls.client_config()?, &to, &rebuild).await?;
        }
        Ok::<_, String>(())
    }
    .await;
    let took_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(()) => info!(instance, ?fence, ?rebuild, took_ms, "markers delivered"),
        Err(error) => {
            warn!(instance, %error, "markers not delivered directly; the annotation will carry them")
        }
    }
}

fn step_sts_instance(step: &Step) -> Option<&str> {
    match step {
        Step::ScaleToZero { instance } | Step::Unfence { instance } | Step::Rebuild { instance, .. } => {
            Some(instance)
        }
        _ => None,
    }
}

/// Runs `work` on a fresh connection to `instance`; a longer deadline than observation, as a
/// promotion waits up to `promote_wait_seconds`.
async fn sql_step<T, F, Fut>(ctx: &Context, snap: &Snapshot, instance: &str, work: F) -> Result<T>
where
    F: FnOnce(tokio_postgres::Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
{
    let postgres = |source: Box<dyn std::error::Error + Send + Sync>| Error::Postgres {
        instance: instance.to_owned(),
        source,
    };
    let host =
        snap.pod_ip(instance).ok_or_else(|| Error::Missing { kind: "pod IP", name: instance.into() })?;
    let password = snap
        .password
        .as_deref()
        .ok_or_else(|| Error::Missing { kind: "Secret", name: "superuser".into() })?;
    let ca =
        snap.ca.as_ref().ok_or_else(|| Error::Missing { kind: "Secret", name: "server TLS CA".into() })?;
    let connection = Connection {
        host,
        server_name: snap
            .server_name(instance)
            .ok_or_else(|| Error::Missing { kind: "PgCluster", name: instance.into() })?,
        superuser_password: password,
        ca,
        timeout: ctx.config.postgres_timeout,
        connect_timeout: None,
    };
    let client = connection.connect().await.map_err(postgres)?;
    let deadline = ctx.config.postgres_timeout + std::time::Duration::from_secs(40);
    match tokio::time::timeout(deadline, work(client)).await {
        Ok(result) => result.map_err(|e| postgres(Box::new(e))),
        Err(elapsed) => Err(postgres(Box::new(elapsed))),
    }
}

/// The machine's slots, through the one slot writer ([`slots::converge`]); an active slot
/// that should go is dropped when the machine asks again.
async fn fix_slots(ctx: &Context, snap: &Snapshot, instance: &str, wanted: &[String]) -> Result<()> {
    let cluster = snap.cluster.as_ref().map(ResourceExt::name_any).unwrap_or_default();
    let wanted: BTreeSet<String> = wanted.iter().cloned().collect();
    sql_step(ctx, snap, instance, |client| async move { slots::converge(&client, &wanted, &cluster).await })
        .await
}

/// Applies relevo's pod metadata (role label as it is, markers changed), re-reading on a
/// conflict. A pod that does not exist has nothing to mark (the template carries rebuilds).
async fn set_pod_markers(
    ctx: &Context,
    namespace: &str,
    instance: &str,
    changes: &[(&'static str, Option<String>)],
) -> Result<()> {
    update_pod(ctx, namespace, instance, |labels, annotations| {
        let _ = labels;
        for (key, value) in changes {
            match value {
                Some(v) => annotations.insert((*key).to_owned(), v.clone()),
                None => annotations.remove(*key),
            };
        }
    })
    .await
}

async fn set_role(ctx: &Context, namespace: &str, instance: &str, role: names::RoleLabel) -> Result<()> {
    update_pod(ctx, namespace, instance, |labels, _| {
        labels.insert(names::LABEL_ROLE.into(), role.as_str().into());
    })
    .await
}

async fn update_pod(
    ctx: &Context,
    namespace: &str,
    instance: &str,
    change: impl Fn(&mut BTreeMap<String, String>, &mut BTreeMap<String, String>),
) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let name = names::pod(instance);
    for attempt in 1..=CONFLICT_ATTEMPTS {
        let Some(pod) = api.get_opt(&name).await.map_err(kube_error("reading an instance pod"))? else {
            return Ok(());
        };
        let mut labels: BTreeMap<String, String> = pod
            .labels()
            .get(names::LABEL_ROLE)
            .map(|r| (names::LABEL_ROLE.to_string(), r.clone()))
            .into_iter()
            .collect();
        let mut annotations = markers::owned(pod.metadata.annotations.as_ref(), &markers::POD_MARKERS);
        let before = (labels.clone(), annotations.clone());
        change(&mut labels, &mut annotations);
        if before == (labels.clone(), annotations.clone()) {
            return Ok(());
        }
        let patch = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name,
            "resourceVersion": pod.metadata.resource_version,
            "labels": labels,
            "annotations": annotations,
        }});
        match api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await {
            Ok(_) => return Ok(()),
            Err(error) if is_conflict(&error) && attempt < CONFLICT_ATTEMPTS => continue,
            Err(source) => return Err(kube_error("writing pod markers")(source)),
        }
    }
    Ok(())
}

/// Writes only the switchover's part of the instance's StatefulSet: replicas with the
/// annotation that says who scaled it, and the template's rebuild markers. A merge patch, with
/// the resourceVersion read as a precondition, so a fence never depends on the PgCluster spec
/// being valid, and the PgCluster controller carries the values over when it applies the
/// whole object ([`StsState::carried_over`]).
async fn patch_statefulset(ctx: &Context, namespace: &str, instance: &str, next: StsState) -> Result<()> {
    let resource_version = next
        .resource_version
        .as_deref()
        .ok_or_else(|| Error::Missing { kind: "StatefulSet", name: instance.into() })?;
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), namespace);
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
    api.patch(instance, &params, &Patch::Merge(&statefulset_patch(&next, resource_version)))
        .await
        .map_err(kube_error("patching a StatefulSet for a switchover"))?;
    Ok(())
}

/// The merge patch of [`patch_statefulset`]: absent markers are removed (`null`).
fn statefulset_patch(next: &StsState, resource_version: &str) -> serde_json::Value {
    let (replicas, scaled_by) = match &next.replicas {
        Some((replicas, by)) => (*replicas, Some(by.as_str())),
        None => (1, None),
    };
    let template: serde_json::Map<String, serde_json::Value> = markers::TEMPLATE_MARKERS
        .iter()
        .map(|key| (key.to_string(), json!(next.template_markers.get(*key))))
        .collect();
    json!({
        "metadata": { "resourceVersion": resource_version, "annotations": { markers::SCALED_BY: scaled_by } },
        "spec": { "replicas": replicas, "template": { "metadata": { "annotations": template } } },
    })
}

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;
