//! The controller runtime every controller runs on: one harness ([`run`]) that starts a
//! kube-rs `Controller` with shutdown on SIGTERM, a tracing span and the reconcile metrics
//! around each reconcile, and one error policy driven by [`crate::error::Error::retry`]
//! ([`backoff`]); plus the helpers every controller needs, each written once: the Event
//! publisher ([`events`]), the Kubernetes API helpers ([`api`]) and conventions
//! ([`conventions`]: the field manager, 409/404, `is_ready`), the watch caches the
//! controllers share ([`cache`]), and the [`context::Context`] every reconcile gets.

pub mod api;
pub mod backoff;
pub mod cache;
pub mod context;
pub mod conventions;
pub mod events;

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::{Instrument, debug, info_span, warn};

pub use api::{kube_error, list_now, scoped};
pub use conventions::{FIELD_MANAGER, is_conflict, is_not_found, is_ready};

use crate::error::{Error, Result};
use backoff::Failures;
use context::Context;

/// Runs `controller` with `reconcile` until the process is asked to stop. `name` is the
/// controller's label in metrics and logs.
///
/// Every reconcile is timed and counted ([`crate::metrics::Metrics::reconciled`]); an error
/// is logged with its source and retried as [`backoff::next_action`] says for its class and
/// the number of consecutive failures of that object, which a success resets.
pub async fn run<K, F, Fut>(name: &'static str, controller: Controller<K>, ctx: Arc<Context>, reconcile: F)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Debug + Default + Eq + Hash + Unpin + Send + Sync,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action>> + Send + 'static,
{
    let failures = Arc::new(Failures::default());
    let reconcile = Arc::new(reconcile);
    let on_success = failures.clone();
    let reconciler = move |object: Arc<K>, ctx: Arc<Context>| {
        let key = Failures::key(object.as_ref());
        let span = info_span!(
            "reconcile",
            controller = name,
            namespace = object.namespace(),
            name = object.name_any()
        );
        let work = reconcile(object, ctx.clone());
        let failures = on_success.clone();
        async move {
            let started = Instant::now();
            let result = work.await;
            ctx.metrics.reconciled(name, started.elapsed(), result.as_ref().err().map(Error::metric_label));
            if result.is_ok() {
                failures.reset(&key);
            }
            result
        }
        .instrument(span)
    };
    let error_policy = move |object: Arc<K>, error: &Error, _ctx: Arc<Context>| {
        let attempt = failures.record(Failures::key(object.as_ref()));
        let action = backoff::next_action(error.retry(), attempt);
        warn!(
            controller = name,
            namespace = object.namespace(),
            name = object.name_any(),
            error = %error,
            source = ?std::error::Error::source(error).map(ToString::to_string),
            attempt,
            next = ?action,
            "reconcile failed"
        );
        action
    };
    controller
        .shutdown_on_signal()
        .run(reconciler, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(controller = name, %object, "reconciled"),
                // Already logged by the error policy with its object; this is the queue's
                // own errors (e.g. an object that vanished before its turn).
                Err(error) => debug!(controller = name, %error, "controller queue"),
            }
        })
        .await;
}
