//! Kubernetes API helpers every controller uses.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::conventions::FIELD_MANAGER;
use crate::config::RunArgs;
use crate::error::{Error, Result};

/// For `map_err`: an API call that failed while doing `action`.
pub fn kube_error(action: &'static str) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Kube { action, source }
}

/// The API of `K` in the namespace the operator watches (`--watch-namespace`), or in all.
pub fn scoped<K>(client: &Client, config: &RunArgs) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match &config.watch_namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// The objects of `K` in `namespace` as the apiserver has them now (a quorum read), for a
/// decision a watch cache one event behind would get wrong.
pub async fn list_now<K>(client: &Client, namespace: &str, action: &'static str) -> Result<Vec<K>>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    Ok(api.list(&ListParams::default()).await.map_err(kube_error(action))?.items)
}

/// Server-side apply of the whole status of `object`, with the resourceVersion it was read at
/// as a precondition: two writers (an old and a new operator pod) can never interleave
/// transitions; the loser gets a conflict and decides again. Returns the updated object.
pub async fn apply_status<K, S>(api: &Api<K>, object: &K, status: &S, action: &'static str) -> Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "name": object.name_any(), "resourceVersion": object.meta().resource_version },
        "status": status,
    });
    api.patch_status(&object.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(kube_error(action))
}
