//! The Backup status writes and their Events, shared by the Backup controller and the
//! retention pass.

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::transitions::transition_note;
use crate::context::Context;
use crate::crd::{Backup, BackupStatus};
use crate::error::Result;
use crate::pgcluster::names::FIELD_MANAGER;
use crate::runtime::{events, kube_error};

/// Server-side apply of the whole status, with the resourceVersion read as a precondition:
/// two operator pods can never interleave transitions. Returns the updated Backup.
pub async fn write_status(api: &Api<Backup>, backup: &Backup, status: &BackupStatus) -> Result<Backup> {
    let patch = json!({
        "apiVersion": Backup::api_version(&()),
        "kind": Backup::kind(&()),
        "metadata": { "name": backup.name_any(), "resourceVersion": backup.metadata.resource_version },
        "status": status,
    });
    api.patch_status(&backup.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(kube_error("writing the Backup status"))
}

pub async fn publish_transition(ctx: &Context, backup: &Backup, before: &BackupStatus, after: &BackupStatus) {
    let Some((type_, reason, note)) = transition_note(backup, before, after) else { return };
    info!(reason, phase = ?after.phase, "backup transition");
    events::publish(ctx, &backup.object_ref(&()), events::transition(type_, reason, note, "Backup")).await;
}
