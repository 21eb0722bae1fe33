//! The API writes of a PgCluster reconcile, all under the one field manager: server-side
//! apply of children, create-only Secrets, scale-down deletes, pod role labels, the status
//! and transition Events.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::info;

use crate::crd::common::Condition;
use crate::crd::pgcluster::generates_cipher_secret;
use crate::crd::{PgCluster, PgClusterStatus};
use crate::error::{Error, Result};
use crate::protocol::markers;
use crate::runtime::context::Context;
use crate::runtime::conventions::{is_conflict, is_not_found};
use crate::runtime::{events, kube_error};

use super::applied::{self, APPLIED, ChildKey};
use super::builders::{self, Owner};
use super::passwords::{Passwords, generate_password};
use super::status::{CONDITION_DEGRADED, CONDITION_READY, RoleLabelChange};
use super::validate::ValidSpec;
use crate::protocol::names::{self, RoleLabel};
use crate::runtime::conventions::FIELD_MANAGER;

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Server-side applies one child object in the cluster's namespace, unless an object of that
/// name is controlled by someone else: every PgCluster applies as the same field manager, so
/// applying would silently take over another cluster's child (a cluster `demo-rw` and the
/// Service `demo-rw` of the cluster `demo`).
pub async fn apply<K>(ctx: &Context, owner: &Owner, object: &K, action: &'static str) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let name = object.meta().name.clone().unwrap_or_default();
    let existing = api.get_metadata_opt(&name).await.map_err(kube_error(action))?;
    if let Some(controller) = existing.as_ref().and_then(|e| owner.foreign_controller(&e.metadata)) {
        return Err(Error::ForeignChild { kind: K::kind(&()).into_owned(), name, owner: controller });
    }
    let key = ChildKey {
        namespace: owner.namespace.clone(),
        cluster: owner.name.clone(),
        kind: K::kind(&()).into_owned(),
        name: name.clone(),
    };
    let digest = applied::digest(object);
    let current = existing.as_ref().and_then(|e| e.metadata.resource_version.as_deref());
    if APPLIED.unchanged(&key, digest, current) {
        return Ok(());
    }
    match api.patch(&name, &apply_params(), &Patch::Apply(object)).await {
        Ok(stored) => {
            APPLIED.record(key, digest, stored.meta().resource_version.clone());
            Ok(())
        }
        Err(error) => {
            APPLIED.invalidate(&key);
            Err(kube_error(action)(error))
        }
    }
}

/// Creates the Secrets that do not exist yet, with freshly generated passwords. Existing
/// Secrets are never rewritten: their passwords are already in the database, and the
/// repository's passphrase in every file of an encrypted repository.
pub async fn ensure_secrets(
    ctx: &Context,
    owner: &Owner,
    cluster: &PgCluster,
    valid: &ValidSpec,
) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let mut missing = Vec::new();
    // Cheap (a few hundred random bytes), and only the absent Secrets use them.
    let passwords = Passwords::generate().map_err(Error::Randomness)?;
    let mut wanted = builders::secrets::build(owner, &cluster.spec, valid, &passwords);
    if generates_cipher_secret(cluster.spec.backup.encryption.as_ref()) {
        let passphrase = generate_password().map_err(Error::Randomness)?;
        wanted.push(builders::pgbackrest::cipher_secret(owner, &passphrase));
    }
    for secret in wanted {
        let name = secret.name_any();
        if api.get_opt(&name).await.map_err(kube_error("reading a Secret"))?.is_none() {
            missing.push(secret);
        }
    }
    let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() };
    for secret in missing {
        match api.create(&params, &secret).await {
            Ok(_) => info!(secret = %secret.name_any(), "created credentials"),
            // Another reconcile won the race; its passwords stand.
            Err(error) if is_conflict(&error) => {}
            Err(source) => return Err(kube_error("creating a Secret")(source)),
        }
    }
    Ok(())
}

/// Reads one password from a relevo Secret.
pub async fn read_password(ctx: &Context, namespace: &str, secret: &str) -> Result<Option<String>> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(secret) = api.get_opt(secret).await.map_err(kube_error("reading a Secret"))? else {
        return Ok(None);
    };
    let bytes = secret.data.and_then(|mut data| data.remove(builders::secrets::PASSWORD_KEY));
    Ok(bytes.and_then(|bytes| String::from_utf8(bytes.0).ok()))
}

/// StatefulSets of the cluster's instances.
pub async fn list_statefulsets(ctx: &Context, namespace: &str, cluster: &str) -> Result<Vec<StatefulSet>> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = format!("{}={},{}=postgres", names::LABEL_CLUSTER, cluster, names::LABEL_COMPONENT);
    let list = api
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .map_err(kube_error("listing StatefulSets"))?;
    Ok(list.items)
}

/// Pods of the cluster's instances: one LIST, not one GET per instance.
pub async fn list_instance_pods(ctx: &Context, namespace: &str, cluster: &str) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = names::postgres_selector(cluster)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let list = api
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .map_err(kube_error("listing instance pods"))?;
    Ok(list.items)
}

/// Deletes a surplus instance's StatefulSet; its volume goes with it (retention policy).
pub async fn remove_instance(ctx: &Context, owner: &Owner, instance: &str) -> Result<()> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    match api.delete(instance, &DeleteParams::foreground()).await {
        Ok(_) => {
            info!(instance, "removed instance (scale-down)");
            Ok(())
        }
        Err(error) if is_not_found(&error) => Ok(()),
        Err(source) => Err(kube_error("deleting a StatefulSet")(source)),
    }
}

/// Sets or removes the role label of one pod, if it differs from what the pod has.
pub async fn label_role(ctx: &Context, namespace: &str, pod: &Pod, change: RoleLabelChange) -> Result<()> {
    let current = pod.labels().get(names::LABEL_ROLE).map(String::as_str);
    let wanted = match change {
        RoleLabelChange::Keep => return Ok(()),
        RoleLabelChange::Set(role) => Some(role.as_str()),
        RoleLabelChange::Remove => None,
    };
    if current == wanted {
        return Ok(());
    }
    let labels = wanted.map(|role| json!({ names::LABEL_ROLE: role })).unwrap_or_else(|| json!({}));
    // The switchover markers are part of relevo's pod metadata too: an apply without them
    // would remove them. The resourceVersion makes a stale read fail instead of undoing a
    // marker set in between.
    let markers = markers::owned(pod.metadata.annotations.as_ref(), &markers::POD_MARKERS);
    let patch = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": pod.name_any(),
        "resourceVersion": pod.metadata.resource_version,
        "labels": labels,
        "annotations": markers,
    }});
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch(&pod.name_any(), &apply_params(), &Patch::Apply(&patch))
        .await
        .map_err(kube_error("labelling a pod"))?;
    info!(pod = %pod.name_any(), from = ?current, to = ?wanted, "role label changed");
    if wanted == Some(RoleLabel::Primary.as_str()) {
        info!(pod = %pod.name_any(), "-rw now routes to this pod");
    }
    Ok(())
}

/// Writes the status with server-side apply on /status.
pub async fn write_status(ctx: &Context, cluster: &PgCluster, status: &PgClusterStatus) -> Result<()> {
    let api: Api<PgCluster> = Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": PgCluster::api_version(&()),
        "kind": PgCluster::kind(&()),
        "status": status,
    });
    api.patch_status(&cluster.name_any(), &apply_params(), &Patch::Apply(&patch))
        .await
        .map_err(kube_error("writing the PgCluster status"))?;
    Ok(())
}

/// One Event per condition transition.
pub async fn publish_transitions(ctx: &Context, cluster: &PgCluster, changed: &[&Condition]) {
    for condition in changed {
        let type_ = match (condition.type_.as_str(), condition.status.as_str()) {
            (CONDITION_DEGRADED, "True") | (CONDITION_READY, "False") => EventType::Warning,
            _ => EventType::Normal,
        };
        let note = format!("{} is {}: {}", condition.type_, condition.status, condition.message);
        let event = events::transition(type_, condition.reason.clone(), note, "Reconcile");
        events::publish(ctx, &cluster.object_ref(&()), event).await;
    }
}
