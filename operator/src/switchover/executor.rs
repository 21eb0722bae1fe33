//! Carries out one [`Step`] of the machine. Every step is idempotent (see the table in
//! `machine`'s module doc): markers and replicas are server-side applied with the content
//! they must have, SQL steps are guarded. What a pod or StatefulSet must look like is
//! computed purely ([`pod_markers_for`], [`sts_change_for`]); this file only writes it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tracing::{info, warn};

use super::markers;
use super::model::{Mode, Step, SwitchoverState};
use super::observe::Snapshot;
use super::sql;
use crate::error::{Error, Result};
use crate::pgcluster::builders::Owner;
use crate::pgcluster::builders::statefulset::{self, InstanceInput, SwitchoverOverrides as StsState};
use crate::pgcluster::names::{self, FIELD_MANAGER};
use crate::pgcluster::{topology, validate};
use crate::postgres::{Connection, connect};
use crate::runtime::api::is_conflict;
use crate::runtime::context::Context;
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
    }
    if let Some(instance) = step_sts_instance(step) {
        let current = snap.statefulsets.iter().find(|s| s.name_any() == instance);
        let carried = StsState::carried_over(current);
        if let Some((instance, next)) = sts_change_for(step, &carried, who) {
            apply_statefulset(ctx, snap, &instance, next).await?;
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
        _ => {}
    }
    Ok(())
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
    let connection = Connection { host, superuser_password: password, timeout: ctx.config.postgres_timeout };
    let client = connect(&connection).await.map_err(postgres)?;
    let deadline = ctx.config.postgres_timeout + std::time::Duration::from_secs(40);
    match tokio::time::timeout(deadline, work(client)).await {
        Ok(result) => result.map_err(|e| postgres(Box::new(e))),
        Err(elapsed) => Err(postgres(Box::new(elapsed))),
    }
}

async fn fix_slots(ctx: &Context, snap: &Snapshot, instance: &str, wanted: &[String]) -> Result<()> {
    let wanted = wanted.to_vec();
    sql_step(ctx, snap, instance, |client| async move {
        let present: Vec<String> =
            client.query(sql::LIST_SLOTS, &[]).await?.iter().map(|r| r.get(0)).collect();
        for slot in wanted.iter().filter(|s| !present.contains(s)) {
            client.query(sql::CREATE_SLOT_IF_ABSENT, &[slot]).await?;
        }
        for slot in present.iter().filter(|s| !wanted.contains(s)) {
            // An active slot cannot be dropped; the machine asks again next time.
            if let Err(error) = client.query(sql::DROP_SLOT_IF_PRESENT, &[slot]).await {
                warn!(slot, %error, "could not drop a replication slot yet");
            }
        }
        Ok(())
    })
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
            Err(source) => return Err(Error::Kube { action: "writing pod markers", source }),
        }
    }
    Ok(())
}

/// Applies the instance's whole StatefulSet (the same builder as the PgCluster controller),
/// with the switchover's part changed and the resourceVersion read as a precondition.
async fn apply_statefulset(ctx: &Context, snap: &Snapshot, instance: &str, next: StsState) -> Result<()> {
    let cluster =
        snap.cluster.as_ref().ok_or_else(|| Error::Missing { kind: "PgCluster", name: instance.into() })?;
    let owner = Owner::of(cluster)
        .ok_or_else(|| Error::Missing { kind: "PgCluster uid", name: cluster.name_any() })?;
    let valid = validate::validate(cluster)?;
    let ordinal = names::ordinal(&owner.name, instance)
        .ok_or_else(|| Error::Missing { kind: "instance ordinal", name: instance.into() })?;
    let current_primary = cluster.status.as_ref().and_then(|s| s.current_primary.as_deref());
    let first = topology::first_bootstrap(&cluster.spec);
    let plan = topology::plan(&owner.name, cluster.spec.instances.max(ordinal), &[], current_primary, first);
    let bootstrap = plan
        .apply
        .iter()
        .find(|(n, _)| *n == ordinal)
        .map_or(crate::instance::plan::Bootstrap::Clone, |(_, b)| *b);
    let input = InstanceInput { ordinal, bootstrap, switchover: next };
    let sts: StatefulSet = statefulset::build(&owner, &cluster.spec, &valid, input);
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    api.patch(instance, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&sts))
        .await
        .map_err(kube_error("applying a StatefulSet for a switchover"))?;
    Ok(())
}

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;
