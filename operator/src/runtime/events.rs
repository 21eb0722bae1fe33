//! Events, written once: a controller computes *which* transitions deserve an Event (purely,
//! next to its state machine) and publishes them here. A failed publish is logged, never
//! fatal: an Event is a notice, the status is the record.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType};
use tracing::warn;

use super::context::Context;

/// Publishes `event` about `regarding`, warning when the apiserver refuses it.
pub async fn publish(ctx: &Context, regarding: &ObjectReference, event: Event) {
    if let Err(error) = ctx.recorder.publish(&event, regarding).await {
        warn!(%error, reason = %event.reason, object = ?regarding.name, "could not publish an Event");
    }
}

/// An Event of a transition: `action` names what the controller did (Reconcile, Backup…).
pub fn transition(type_: EventType, reason: impl Into<String>, note: String, action: &str) -> Event {
    Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None }
}
