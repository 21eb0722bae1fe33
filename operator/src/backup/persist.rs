//! The Backup status writes and their Events, shared by the Backup controller and the
//! retention pass.

use kube::Resource;
use kube::api::Api;
use tracing::info;

use super::transitions::transition_note;
use crate::crd::{Backup, BackupStatus};
use crate::error::Result;
use crate::runtime::api::apply_status;
use crate::runtime::context::Context;
use crate::runtime::events;

/// The whole status, with the resourceVersion read as a precondition
/// ([`apply_status`]). Returns the updated Backup.
pub async fn write_status(api: &Api<Backup>, backup: &Backup, status: &BackupStatus) -> Result<Backup> {
    apply_status(api, backup, status, "writing the Backup status").await
}

pub async fn publish_transition(ctx: &Context, backup: &Backup, before: &BackupStatus, after: &BackupStatus) {
    let Some((type_, reason, note)) = transition_note(backup, before, after) else { return };
    info!(reason, phase = ?after.phase, "backup transition");
    events::publish(ctx, &backup.object_ref(&()), events::transition(type_, reason, note, "Backup")).await;
}
