//! The PgCluster's pooler at the API edge: with `spec.pooler`, its certificate, ConfigMap,
//! Deployment and Service applied; without, all four deleted, so that turning the pooler
//! off leaves nothing behind. The objects are built purely in [`super::builders::pooler`].

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::Resource;
use kube::api::{Api, DeleteParams};
use serde::de::DeserializeOwned;
use tracing::info;

use crate::crd::PgCluster;
use crate::error::Result;
use crate::protocol::names;
use crate::runtime::context::Context;
use crate::runtime::conventions::is_not_found;
use crate::runtime::kube_error;

use super::builders::{self, Owner};
use super::validate::ValidSpec;
use super::{apply, certificates};

/// After the server certificate (the pods mount its CA) and the application Secret.
pub async fn apply_or_remove(
    ctx: &Context,
    cluster: &PgCluster,
    owner: &Owner,
    valid: &ValidSpec,
) -> Result<()> {
    let Some(spec) = &cluster.spec.pooler else { return remove(ctx, owner).await };
    certificates::ensure_pooler_certificate(ctx, owner).await?;
    let objects = builders::pooler::build(owner, spec, &valid.initdb.database);
    apply::apply(ctx, owner, &objects.config_map, "applying the pooler ConfigMap").await?;
    apply::apply(ctx, owner, &objects.deployment, "applying the pooler Deployment").await?;
    apply::apply(ctx, owner, &objects.service, "applying the pooler Service").await?;
    Ok(())
}

async fn remove(ctx: &Context, owner: &Owner) -> Result<()> {
    let cluster = &owner.name;
    // The certificate Secret is created first and deleted last: without it, nothing of the
    // pooler is left, and a cluster that never had one costs one GET per reconcile.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let tls = names::secret_pooler_tls(cluster);
    if secrets.get_metadata_opt(&tls).await.map_err(kube_error("reading a Secret"))?.is_none() {
        return Ok(());
    }
    delete::<Service>(ctx, owner, &names::pooler(cluster)).await?;
    delete::<Deployment>(ctx, owner, &names::pooler(cluster)).await?;
    delete::<ConfigMap>(ctx, owner, &names::config_map_pooler(cluster)).await?;
    delete::<Secret>(ctx, owner, &tls).await?;
    info!("spec.pooler removed: deleted the pooler's objects");
    Ok(())
}

/// Deletes one of the cluster's pooler objects; true when it existed. An object of that name
/// that another controller owns is left alone.
async fn delete<K>(ctx: &Context, owner: &Owner, name: &str) -> Result<bool>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    // Nothing to do most of the time: one GET of metadata, not a DELETE per reconcile.
    let Some(existing) = api.get_metadata_opt(name).await.map_err(kube_error("reading a pooler object"))?
    else {
        return Ok(false);
    };
    if owner.foreign_controller(&existing.metadata).is_some() || existing.metadata.owner_references.is_none()
    {
        return Ok(false);
    }
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(error) if is_not_found(&error) => Ok(false),
        Err(source) => Err(kube_error("deleting a pooler object")(source)),
    }
}
