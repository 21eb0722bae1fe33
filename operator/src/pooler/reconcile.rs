//! The PgCluster controller's part of the pooler: apply its objects when `spec.pooler` is on,
//! delete them when it is off, and keep every running pooler pod on the primary's own address.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, DeleteParams};
use tracing::info;

use crate::context::Context;
use crate::crd::PgCluster;
use crate::crd::pgcluster::InstanceRole;
use crate::crd::pooler::PoolerSpec;
use crate::error::{Error, Result};
use crate::pgcluster::apply;
use crate::pgcluster::builders::{Owner, pooler as builders};
use crate::pgcluster::names;

use super::{TOKEN_KEY, USERLIST_KEY, observe, plan};

/// The pooler spec when the pooler should run.
pub fn wanted(cluster: &PgCluster) -> Option<&PoolerSpec> {
    cluster.spec.pooler.as_ref().filter(|pooler| pooler.enabled)
}

/// Applies the pooler's objects, or deletes them when the pooler is off.
pub async fn reconcile(
    ctx: &Context,
    owner: &Owner,
    cluster: &PgCluster,
    app_user: &str,
    app_database: &str,
) -> Result<()> {
    let Some(spec) = wanted(cluster) else { return remove(ctx, owner).await };
    if !ensure_secret(ctx, owner, app_user).await? {
        // The app Secret is created in the same reconcile; the next one finds it.
        return Ok(());
    }
    let objects = builders::build(owner, spec, app_database);
    apply::apply(ctx, owner, &objects.config_map, "applying the pooler ConfigMap").await?;
    apply::apply(ctx, owner, &objects.service, "applying the pooler Service").await?;
    apply::apply(ctx, owner, &objects.deployment, "applying the pooler Deployment").await?;
    Ok(())
}

/// The pooler Secret: the token stays what it is (running pods hold it), the userlist
/// follows the app Secret. Written only when it differs. False when the app Secret is not
/// there yet.
async fn ensure_secret(ctx: &Context, owner: &Owner, app_user: &str) -> Result<bool> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let Some(password) = apply::read_password(ctx, &owner.namespace, &names::secret_app(&owner.name)).await?
    else {
        return Ok(false);
    };
    let name = names::pooler(&owner.name);
    let stored = api
        .get_opt(&name)
        .await
        .map_err(|source| Error::Kube { action: "reading the pooler Secret", source })?
        .and_then(|secret| secret.data)
        .unwrap_or_default();
    let stored_key = |key: &str| stored.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok());
    let token = match stored_key(TOKEN_KEY).filter(|t| !t.is_empty()) {
        Some(token) => token,
        None => new_token()?,
    };
    let secret = builders::secret(owner, &token, &[(app_user.to_string(), password)]);
    let wanted = secret.data.clone().unwrap_or_default();
    let same = |key: &str| stored.get(key) == wanted.get(key);
    if same(TOKEN_KEY) && same(USERLIST_KEY) {
        return Ok(true);
    }
    apply::apply(ctx, owner, &secret, "applying the pooler Secret").await?;
    info!(secret = %name, "pooler credentials written");
    Ok(true)
}

fn new_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(Error::Randomness)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Deletes the pooler's objects; the Secret goes last, so its absence means nothing is
/// left, and a cluster that never had a pooler costs one read.
async fn remove(ctx: &Context, owner: &Owner) -> Result<()> {
    let name = names::pooler(&owner.name);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let present = secrets
        .get_opt(&name)
        .await
        .map_err(|source| Error::Kube { action: "reading the pooler Secret", source })?
        .is_some();
    if !present {
        return Ok(());
    }
    delete::<Deployment>(ctx, owner, &name, "deleting the pooler Deployment").await?;
    delete::<Service>(ctx, owner, &name, "deleting the pooler Service").await?;
    delete::<ConfigMap>(ctx, owner, &name, "deleting the pooler ConfigMap").await?;
    delete::<Secret>(ctx, owner, &name, "deleting the pooler Secret").await?;
    info!(pooler = %name, "pooler switched off: its objects are deleted");
    Ok(())
}

async fn delete<K>(ctx: &Context, owner: &Owner, name: &str, action: &'static str) -> Result<()>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::Kube { action, source }),
    }
}

/// Outside switchovers: every running pooler pod targets the ready primary's own pod.
pub async fn follow_primary(
    ctx: &Context,
    owner: &Owner,
    cluster: &PgCluster,
    status: &crate::crd::PgClusterStatus,
) {
    if wanted(cluster).is_none() {
        return;
    }
    let primary = status
        .current_primary
        .as_deref()
        .and_then(|name| status.instances.iter().find(|i| i.name == name))
        .filter(|i| i.ready && i.role == InstanceRole::Primary);
    let Some(primary) = primary else { return };
    let host = names::pod_fqdn(&owner.name, &primary.name, &owner.namespace);
    match observe::discover(ctx, &owner.namespace, &owner.name).await {
        Ok(Some(pods)) => {
            let targets = plan::steady_targets(&host, &pods.status().await);
            pods.retarget(&targets).await;
        }
        Ok(None) => {}
        Err(error) => tracing::debug!(%error, "pooler pods not listed"),
    }
}
