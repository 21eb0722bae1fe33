//! The PgCluster controller. A reconcile dereferences (owner, StatefulSets, topology),
//! validates (pure), then runs the named stages of [`super::stages`]: observe → status →
//! failover check → apply, and reports. Validation, the builders and the status are pure
//! ([`super::validate`], [`super::builders`], [`super::topology`], [`super::status`]); the
//! I/O is in [`super::reconcile`], [`super::apply`], [`super::certificates`],
//! [`super::slots`], [`super::failover_check`], [`super::drain`] and [`crate::postgres`].

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt, predicates, reflector, watcher};

use crate::crd::PgCluster;
use crate::error::{Error, Result};
use crate::runtime;
use crate::runtime::context::Context;

use super::apply;
use super::builders::Owner;
use super::failover_check::FAILOVER_CLOCK;
use super::reconcile::ClusterStages;
use super::stages;
use super::status::Problem;
use super::topology;
use super::validate::validate;
use crate::protocol::names;

/// Label value of this controller in metrics.
pub const CONTROLLER: &str = "pgcluster";
/// Re-observation while something is changing (bootstrap, scaling), for a fast Ready.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// Runs the controller until the process is asked to stop.
pub async fn run(ctx: Arc<Context>) {
    let (reader, writer) = reflector::store();
    let metrics = ctx.metrics.clone();
    // Only spec changes (generation) trigger from the PgCluster itself: the status this
    // controller writes must not wake it up again. Children and the timer do the rest. A
    // deleted cluster takes its metrics series and its failover clock with it.
    let trigger = watcher(ctx.scoped::<PgCluster>(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .inspect_ok(move |event| forget_deleted(&metrics, event))
        .applied_objects()
        .predicate_filter(predicates::generation, PredicateConfig::default());
    let ours = watcher::Config::default().labels(&format!("{}={}", names::LABEL_NAME, names::APP_NAME));
    // A primary Lease that turns stale or expires wakes its cluster at once (lease::watch).
    let cluster_wake = ctx.cluster_wake.take().map(|receiver| {
        futures::stream::unfold(receiver, |mut r| async move { r.recv().await.map(|c| (c, r)) })
    });
    let controller = Controller::for_stream(trigger, reader)
        .owns(ctx.scoped::<StatefulSet>(), ours.clone())
        .owns(ctx.scoped::<Deployment>(), ours);
    let controller = match cluster_wake {
        Some(wake) => controller.reconcile_on(wake),
        None => controller,
    };
    runtime::run(CONTROLLER, controller, ctx, reconcile).await;
}

/// On a deletion, and after every re-list (which a deletion during a broken watch only shows
/// as an absence): drop what is kept per cluster.
fn forget_deleted(metrics: &crate::metrics::Metrics, event: &watcher::Event<PgCluster>) {
    let key = |c: &PgCluster| (c.namespace().unwrap_or_default(), c.name_any());
    match event {
        watcher::Event::Delete(cluster) => {
            let (namespace, name) = key(cluster);
            metrics.forget_cluster(&namespace, &name);
            FAILOVER_CLOCK.forget(&format!("{namespace}/{name}"));
            super::applied::APPLIED.forget_cluster(&namespace, &name);
        }
        watcher::Event::Init => metrics.relist_started(),
        watcher::Event::InitApply(cluster) => metrics.relist_saw(key(cluster)),
        watcher::Event::InitDone => metrics.relist_done(),
        watcher::Event::Apply(_) => {}
    }
}

pub async fn reconcile(cluster: Arc<PgCluster>, ctx: Arc<Context>) -> Result<Action> {
    // dereference
    let owner = Owner::of(&cluster)
        .ok_or_else(|| Error::Missing { kind: "PgCluster uid", name: cluster.name_any() })?;
    let previous = cluster.status.clone().unwrap_or_default();
    let statefulsets = apply::list_statefulsets(&ctx, &owner.namespace, &owner.name).await?;
    let existing: Vec<String> = statefulsets.iter().map(ResourceExt::name_any).collect();
    let topology = topology::plan(
        &owner.name,
        cluster.spec.instances,
        &existing,
        previous.current_primary.as_deref(),
        topology::first_bootstrap(&cluster.spec),
    );
    // validate
    let validation = validate(&cluster);
    let spec_valid = validation.is_ok();
    let nothing_runs = existing.is_empty();
    let problem = match (&validation, &topology.blocked_removal) {
        (Err(error), _) => Some(Problem { reason: error.reason(), message: error.to_string() }),
        (Ok(_), Some(primary)) => Some(Problem {
            reason: "ScaleDownBlocked",
            message: format!(
                "{primary} is the primary: create a Switchover to a lower instance before scaling below it"
            ),
        }),
        (Ok(_), None) => None,
    };
    let observed = observed_instances(spec_valid, &owner, &topology, &existing);

    let mut stages = ClusterStages {
        ctx: &ctx,
        clock: &FAILOVER_CLOCK,
        cluster: &cluster,
        owner: &owner,
        previous: &previous,
        validation,
        topology: &topology,
        statefulsets: &statefulsets,
        instances: observed,
        problem,
        password: None,
        ca: None,
        switchover_active: false,
        apply_problem: None,
        written: None,
    };
    let outcome = stages::run(&mut stages).await;
    match (outcome.look_again, outcome.failures.into_iter().next()) {
        // A failover decision is pending: its cadence wins over the failed stage's backoff
        // (already reported in the status), or an apply error could delay a failover.
        (Some(after), Some(failure)) => {
            tracing::warn!(stage = ?failure.stage, error = %failure.message(), "reconcile stage failed");
            return Ok(Action::requeue(after));
        }
        (Some(after), None) => return Ok(Action::requeue(after)),
        (None, Some(failure)) => return Err(failure.error),
        (None, None) => {}
    }
    let progressing = stages.progressing();
    Ok(next_action(spec_valid, nothing_runs, progressing, ctx.config.observe_interval))
}

/// The instances to observe. A valid spec: the desired ones, plus surplus ones that stay (a
/// primary waiting for a switchover). An invalid one builds nothing, so only what exists.
fn observed_instances(
    spec_valid: bool,
    owner: &Owner,
    topology: &topology::Topology,
    existing: &[String],
) -> Vec<String> {
    if !spec_valid {
        return existing.to_vec();
    }
    let desired: Vec<String> = topology.apply.iter().map(|(n, _)| names::instance(&owner.name, *n)).collect();
    let staying = existing.iter().filter(|name| !topology.remove.contains(name) && !desired.contains(name));
    desired.iter().chain(staying).cloned().collect()
}

/// When to look again. Never fast for a refused spec: nothing is being built, so there is
/// nothing to wait for but the user (and the status of what already runs).
fn next_action(
    spec_valid: bool,
    nothing_runs: bool,
    progressing: bool,
    observe_interval: Duration,
) -> Action {
    match (spec_valid, nothing_runs, progressing) {
        (false, true, _) => Action::await_change(),
        (true, _, true) => Action::requeue(PROGRESS_INTERVAL),
        _ => Action::requeue(observe_interval),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBSERVE: Duration = Duration::from_secs(10);

    #[test]
    fn refused_spec_never_hot_loops() {
        assert_eq!(next_action(false, true, true, OBSERVE), Action::await_change());
        assert_eq!(next_action(false, false, true, OBSERVE), Action::requeue(OBSERVE));
    }

    #[test]
    fn progress_is_watched_closely_and_steady_state_slowly() {
        assert_eq!(next_action(true, false, true, OBSERVE), Action::requeue(PROGRESS_INTERVAL));
        assert_eq!(next_action(true, false, false, OBSERVE), Action::requeue(OBSERVE));
    }
}
