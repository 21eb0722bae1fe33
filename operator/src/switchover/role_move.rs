//! The cluster's one role move ([`RoleMove`]): the `relevo.dev/role-move` annotation of the
//! PgCluster names the Switchover allowed past Pending. It is set and cleared only by merge
//! patches that carry the resourceVersion the decision was made on, so the API server refuses
//! (409) a claim on a PgCluster someone wrote since: of two Switchovers claiming at once, one
//! wins and the other sees the winner on its next decision. The patch builders are pure; the
//! rest is the I/O at the edge.

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tracing::{debug, info};

use super::convert::from_status;
use super::model::RoleMove;
use crate::crd::{PgCluster, Switchover};
use crate::error::Result;
use crate::protocol::markers::ROLE_MOVE;
use crate::runtime::context::Context;
use crate::runtime::conventions::{is_conflict, is_not_found};
use crate::runtime::kube_error;

/// The merge patch that names `holder` (or, with `None`, nobody), valid only on the PgCluster
/// at `version`.
pub fn patch(holder: Option<&str>, version: &str) -> Value {
    json!({ "metadata": { "resourceVersion": version, "annotations": { ROLE_MOVE: holder } } })
}

/// Who the annotation names. An empty value names nobody.
pub fn holder_of(cluster: &PgCluster) -> Option<String> {
    cluster.annotations().get(ROLE_MOVE).filter(|h| !h.is_empty()).cloned()
}

/// The claim as `requester` sees it: the holder is read from the PgCluster, and whether it
/// is still active from its own Switchover (not a cache, which may lag a fresh claim). The
/// requester is active by definition, so its own claim costs no read.
pub async fn observe(ctx: &Context, cluster: &PgCluster, requester: &str) -> Result<RoleMove> {
    let cluster_version = cluster.resource_version().unwrap_or_default();
    let Some(holder) = holder_of(cluster) else {
        return Ok(RoleMove { holder: None, holder_active: false, cluster_version });
    };
    if holder == requester {
        return Ok(RoleMove { holder: Some(holder), holder_active: true, cluster_version });
    }
    let api: Api<Switchover> = Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    let switchover =
        api.get_opt(&holder).await.map_err(kube_error("reading the Switchover holding the role move"))?;
    let holder_active = switchover.is_some_and(|so| {
        let phase = from_status(so.status.as_ref()).map(|s| s.phase);
        // An unreadable status is still somebody's switchover in flight: keep out of its way.
        phase.map_or(true, |p| !p.is_terminal())
    });
    Ok(RoleMove { holder: Some(holder), holder_active, cluster_version })
}

/// The `ClaimRoleMove` step. A conflict is returned as an error (the controller decides again
/// at once, and sees who won).
pub async fn claim(ctx: &Context, cluster: &PgCluster, switchover: &str, version: &str) -> Result<()> {
    let api: Api<PgCluster> = Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    api.patch(&cluster.name_any(), &PatchParams::default(), &Patch::Merge(&patch(Some(switchover), version)))
        .await
        .map_err(kube_error("claiming the cluster's role move"))?;
    info!(cluster = cluster.name_any(), switchover, "holds the cluster's role move");
    Ok(())
}

/// Clears the claim of an ended `switchover`, if it still holds it. Best effort: a claim
/// left behind is taken over by the next Switchover, since its holder has ended.
pub async fn release(ctx: &Context, namespace: &str, cluster_name: &str, switchover: &str) {
    let api: Api<PgCluster> = Api::namespaced(ctx.client.clone(), namespace);
    for _ in 0..3 {
        let cluster = match api.get_opt(cluster_name).await {
            Ok(Some(cluster)) => cluster,
            Ok(None) => return,
            Err(error) => {
                debug!(cluster_name, %error, "could not read the PgCluster to release the role move");
                return;
            }
        };
        if holder_of(&cluster).as_deref() != Some(switchover) {
            return;
        }
        let version = cluster.resource_version().unwrap_or_default();
        match api.patch(cluster_name, &PatchParams::default(), &Patch::Merge(&patch(None, &version))).await {
            Ok(_) => return,
            Err(error) if is_conflict(&error) => continue,
            Err(error) if is_not_found(&error) => return,
            Err(error) => {
                debug!(cluster_name, %error, "could not release the role move");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_carries_its_precondition() {
        let claim = patch(Some("so-1"), "42");
        assert_eq!(claim["metadata"]["resourceVersion"], "42");
        assert_eq!(claim["metadata"]["annotations"][ROLE_MOVE], "so-1");
        let release = patch(None, "43");
        assert_eq!(release["metadata"]["resourceVersion"], "43");
        assert!(release["metadata"]["annotations"][ROLE_MOVE].is_null(), "null removes it in a merge patch");
    }

    #[test]
    fn an_empty_annotation_names_nobody() {
        let mut cluster: PgCluster =
            serde_json::from_value(json!({"metadata": {"name": "pg"}, "spec": {"instances": 1}})).unwrap();
        assert_eq!(holder_of(&cluster), None);
        cluster.annotations_mut().insert(ROLE_MOVE.into(), String::new());
        assert_eq!(holder_of(&cluster), None);
        cluster.annotations_mut().insert(ROLE_MOVE.into(), "so-1".into());
        assert_eq!(holder_of(&cluster).as_deref(), Some("so-1"));
    }
}
