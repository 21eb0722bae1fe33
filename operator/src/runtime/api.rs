//! Kubernetes API helpers every controller uses.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::config::RunArgs;
use crate::error::{Error, Result};

/// The one field manager of every write the operator makes (server-side apply and creates).
pub const FIELD_MANAGER: &str = "relevo";

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

/// HTTP 409: the object was changed since it was read, or (on create) it already exists.
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// HTTP 404.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// The pod's Ready condition is True (kubelet's readiness probe passed).
pub fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_a_true_ready_condition() {
        let pod = |status: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "pg-1-0"},
                "status": {"conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": status},
                ]},
            }))
            .unwrap()
        };
        assert!(is_ready(&pod("True")));
        assert!(!is_ready(&pod("False")));
        assert!(!is_ready(&Pod::default()));
    }

    #[test]
    fn conflicts_and_absence_are_recognised() {
        let api = |code| kube::Error::Api(kube::core::Status::failure("x", "X").with_code(code).boxed());
        assert!(is_conflict(&api(409)) && !is_conflict(&api(404)));
        assert!(is_not_found(&api(404)) && !is_not_found(&api(409)));
    }
}
