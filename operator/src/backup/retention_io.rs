//! Applies what a finished backup's Job saw of the repository ([`super::retention`], pure):
//! deletes the Redis records of the backups retention removed, then marks their Backups
//! Expired. Run by the Backup controller right after a Backup completes. A pass that fails
//! half-way is only logged: every later backup's view covers what it left behind.

use kube::ResourceExt;
use kube::api::Api;
use tracing::{info, warn};

use super::persist::{publish_transition, write_status};
use super::redis_io;
use super::redis_target::connect_in_cluster;
use super::retention::{self, RepoView};
use crate::crd::{Backup, PgCluster};
use crate::runtime::context::Context;
use crate::runtime::list_now;

/// One retention pass for `cluster` from `view`.
pub async fn apply(ctx: &Context, cluster: &PgCluster, view: &RepoView) {
    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();

    let deleted = async {
        let mut conn = connect_in_cluster(&ctx.client, cluster).await.map_err(|e| e.to_string())?;
        redis_io::delete_expired(&mut conn, &namespace, &name, view).await.map_err(|e| e.to_string())
    }
    .await;
    let redis_cleaned = match &deleted {
        Ok(keys) if keys.is_empty() => true,
        Ok(keys) => {
            info!(cluster = %name, keys = %keys.join(", "), "deleted the Redis records of expired backups");
            true
        }
        Err(error) => {
            warn!(cluster = %name, %error, "could not delete the Redis records of expired backups; the next backup retries");
            false
        }
    };

    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &namespace);
    // Read fresh: a Backup that completed a moment ago may not be in a watch cache yet.
    let backups: Vec<Backup> = match list_now(&ctx.client, &namespace, "listing the Backups").await {
        Ok(backups) => backups,
        Err(error) => {
            warn!(cluster = %name, %error, "could not read Backups to mark the expired ones");
            return;
        }
    };
    let expired = retention::expired_backups(view, &name, &backups);
    if expired.is_empty() {
        return;
    }
    info!(cluster = %name, backups = %retention::names(&expired), after = %view.reporter, "backups expired by retention");
    for backup in expired {
        let before = backup.status.clone().unwrap_or_default();
        let after = retention::expired_status(before.clone(), view, redis_cleaned);
        match write_status(&api, backup, &after).await {
            Ok(written) => publish_transition(ctx, &written, &before, &after).await,
            Err(error) => warn!(backup = %backup.name_any(), %error, "could not mark the Backup Expired"),
        }
    }
}
