//! The PgCluster controller. Reconcile is a named pipeline:
//! dereference → validate → build → apply → observe → update status,
//! where validate, build and the status computation are pure (see [`super::validate`],
//! [`super::builders`], [`super::topology`], [`super::status`]) and only apply and observe
//! do I/O.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt, predicates, reflector, watcher};
use kube::{Resource, ResourceExt};
use tracing::{debug, instrument, warn};

use crate::context::Context;
use crate::crd::PgCluster;
use crate::error::{Error, Result, Retry};
use crate::instance::plan::Bootstrap;
use crate::metrics::InstanceLabels;

use super::apply;
use super::builders::statefulset::{InstanceInput, SwitchoverState};
use super::builders::{self, Owner};
use super::failover;
use super::names;
use super::observe::{self, Connection};
use super::status::{self, ArchiverObservation, InstanceObservation, Observation, SpecProblem};
use super::topology;
use super::validate::{ValidSpec, validate};

/// Label value of this controller in metrics.
pub const CONTROLLER: &str = "pgcluster";
/// Re-observation while something is changing (bootstrap, scaling), for a fast Ready.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

fn scoped<K>(ctx: &Context) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match &ctx.config.watch_namespace {
        Some(namespace) => Api::namespaced(ctx.client.clone(), namespace),
        None => Api::all(ctx.client.clone()),
    }
}

/// Runs the controller until the process is asked to stop.
pub async fn run(ctx: Arc<Context>) {
    let (reader, writer) = reflector::store();
    // Only spec changes (generation) trigger from the PgCluster itself: the status this
    // controller writes must not wake it up again. Children and the timer do the rest.
    let trigger = watcher(scoped::<PgCluster>(&ctx), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, PredicateConfig::default());
    let ours = watcher::Config::default().labels(&format!("{}={}", names::LABEL_NAME, names::APP_NAME));
    Controller::for_stream(trigger, reader)
        .owns(scoped::<StatefulSet>(&ctx), ours.clone())
        .owns(scoped::<Deployment>(&ctx), ours)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(%object, "reconciled"),
                Err(error) => warn!(error = %error, "reconcile failed"),
            }
        })
        .await;
}

#[instrument(skip(cluster, ctx), fields(namespace = cluster.namespace(), name = cluster.name_any()))]
pub async fn reconcile(cluster: Arc<PgCluster>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_cluster(&cluster, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, started.elapsed(), result.as_ref().err().map(Error::metric_label));
    result
}

/// Invalid specs wait for a change; anything else is retried after a pause.
pub fn error_policy(_cluster: Arc<PgCluster>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(error = %error, source = ?std::error::Error::source(error).map(ToString::to_string), "reconcile error");
    match error.retry() {
        Retry::WaitForChange => Action::await_change(),
        Retry::After(delay) => Action::requeue(delay),
    }
}

async fn reconcile_cluster(cluster: &PgCluster, ctx: &Context) -> Result<Action> {
    // dereference
    let owner = Owner::of(cluster)
        .ok_or_else(|| Error::Missing { kind: "PgCluster uid", name: cluster.name_any() })?;
    let previous = cluster.status.clone().unwrap_or_default();
    let statefulsets = apply::list_statefulsets(ctx, &owner.namespace, &owner.name).await?;
    let existing: Vec<String> = statefulsets.iter().map(ResourceExt::name_any).collect();
    let topology = topology::plan(
        &owner.name,
        cluster.spec.instances,
        &existing,
        previous.current_primary.as_deref(),
        topology::first_bootstrap(&cluster.spec),
    );

    // validate
    let validation = validate(cluster);
    let mut spec_problem = validation
        .as_ref()
        .err()
        .map(|error| SpecProblem { reason: error.reason(), message: error.to_string() });

    // build and apply, only for a valid spec: an invalid one leaves the cluster as it runs.
    if let Ok(valid) = &validation {
        build_and_apply(ctx, cluster, &owner, valid, &topology, &statefulsets).await?;
        if let Some(primary) = &topology.blocked_removal {
            spec_problem = Some(SpecProblem {
                reason: "ScaleDownBlocked",
                message: format!(
                    "{primary} is the primary: create a Switchover to a lower instance before scaling below it"
                ),
            });
        }
    }

    // observe
    // A valid spec: the desired instances, plus surplus ones that stay (a primary waiting
    // for a switchover). An invalid one built nothing, so only what already exists.
    let observed: Vec<String> = if validation.is_ok() {
        let desired: Vec<String> =
            topology.apply.iter().map(|(n, _)| names::instance(&owner.name, *n)).collect();
        let staying =
            existing.iter().filter(|name| !topology.remove.contains(name) && !desired.contains(name));
        desired.iter().chain(staying).cloned().collect()
    } else {
        existing.clone()
    };
    let password = apply::read_password(ctx, &owner.namespace, &names::secret_superuser(&owner.name)).await?;
    let Observed { instances, archivers, pods } =
        observe_instances(ctx, &owner, &observed, password.as_deref()).await?;

    // update status
    let observations = instances.clone();
    let computed = status::compute(&Observation {
        cluster: &owner.name,
        generation: cluster.metadata.generation,
        desired_instances: cluster.spec.instances,
        instances,
        spec_problem,
        archivers,
        previous: &previous,
        now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    });
    for (instance, change) in &computed.role_labels {
        if let Some(pod) = pods.iter().find(|pod| pod.name_any() == names::pod(instance)) {
            apply::label_role(ctx, &owner.namespace, pod, *change).await?;
        }
    }
    if validation.is_ok() {
        maintain_slots(ctx, &owner, cluster, &computed.status, &pods, password.as_deref()).await;
    }
    let mut computed = computed;
    computed.status.synchronous =
        observe_synchronous(ctx, &owner, cluster, &computed.status, &pods, password.as_deref(), &previous)
            .await;
    if validation.is_ok() {
        crate::pooler::reconcile::follow_primary(ctx, &owner, cluster, &computed.status).await;
    }
    record_instance_metrics(ctx, &owner, &computed.status);
    if computed.status != previous {
        apply::write_status(ctx, cluster, &computed.status).await?;
    }
    let changed = status::transitions(&previous.conditions, &computed.status.conditions);
    apply::publish_transitions(ctx, cluster, &changed).await;

    // automatic failover: judged on the primary the status records
    let mut look_again = None;
    if validation.is_ok() {
        let has_pod = |instance: &str| pods.iter().any(|pod| pod.name_any() == names::pod(instance));
        let view =
            failover::observed_from(computed.status.current_primary.as_deref(), &observations, has_pod);
        look_again = failover::check(ctx, cluster, &owner, view).await?;
    }

    let progressing = computed
        .status
        .conditions
        .iter()
        .any(|c| c.type_ == status::CONDITION_PROGRESSING && c.status == "True");
    if let Some(after) = look_again {
        return Ok(Action::requeue(after));
    }
    Ok(next_action(validation.is_ok(), observed.is_empty(), progressing, ctx.config.observe_interval))
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

async fn build_and_apply(
    ctx: &Context,
    cluster: &PgCluster,
    owner: &Owner,
    valid: &ValidSpec,
    topology: &topology::Topology,
    statefulsets: &[StatefulSet],
) -> Result<()> {
    apply::ensure_secrets(ctx, owner, cluster, valid).await?;
    apply::ensure_pgbackrest_certificates(ctx, owner).await?;
    let config_map =
        builders::config_map::build(owner, valid).map_err(Error::pgbackrest("building archive_command"))?;
    apply::apply(ctx, owner, &config_map, "applying the ConfigMap").await?;
    let ordinals = pgbackrest_ordinals(&owner.name, topology);
    let pgbackrest = builders::pgbackrest::config_map(owner, &ordinals, valid.recovery.as_ref())
        .map_err(Error::pgbackrest("rendering the pgBackRest configuration"))?;
    apply::apply(ctx, owner, &pgbackrest, "applying the pgBackRest ConfigMap").await?;
    for service in builders::services::build(owner) {
        apply::apply(ctx, owner, &service, "applying a Service").await?;
    }
    apply::apply(ctx, owner, &builders::repo_host::service(owner), "applying the repo host Service").await?;
    let repo_host = builders::repo_host::statefulset(owner, &cluster.spec);
    apply::apply(ctx, owner, &repo_host, "applying the repo host StatefulSet").await?;
    for (ordinal, bootstrap) in &topology.apply {
        let name = names::instance(&owner.name, *ordinal);
        let current = statefulsets.iter().find(|sts| sts.name_any() == name);
        // What a switchover set (replicas, rebuild markers) is kept, never reset.
        let switchover = SwitchoverState::carried_over(current);
        let input = InstanceInput { ordinal: *ordinal, bootstrap: *bootstrap, switchover };
        let statefulset = builders::statefulset::build(owner, &cluster.spec, valid, input);
        apply::apply(ctx, owner, &statefulset, "applying a StatefulSet").await?;
    }
    for instance in &topology.remove {
        apply::remove_instance(ctx, owner, instance).await?;
    }
    if let Some(redis) = &cluster.spec.redis.managed {
        let objects = builders::redis::build(owner, redis);
        apply::apply(ctx, owner, &objects.config_map, "applying the Redis ConfigMap").await?;
        apply::apply(ctx, owner, &objects.volume_claim, "applying the Redis volume claim").await?;
        apply::apply(ctx, owner, &objects.deployment, "applying the Redis Deployment").await?;
        apply::apply(ctx, owner, &objects.service, "applying the Redis Service").await?;
    }
    crate::pooler::reconcile::reconcile(ctx, owner, cluster, &valid.initdb.owner, &valid.initdb.database)
        .await?;
    Ok(())
}

/// Instances the repo host lists as pg hosts: every desired one, plus a surplus primary that
/// waits for a switchover before it can go.
fn pgbackrest_ordinals(cluster: &str, topology: &topology::Topology) -> Vec<i32> {
    let mut ordinals: Vec<i32> = topology.apply.iter().map(|(ordinal, _)| *ordinal).collect();
    ordinals.extend(topology.blocked_removal.as_deref().and_then(|name| names::ordinal(cluster, name)));
    ordinals.sort_unstable();
    ordinals.dedup();
    ordinals
}

/// What the instances report: per instance, and the archiver of those that are primaries.
struct Observed {
    instances: Vec<InstanceObservation>,
    archivers: Vec<ArchiverObservation>,
    pods: Vec<Pod>,
}

/// Pod readiness and what PostgreSQL says, per instance. PostgreSQL is asked only on a
/// running pod; an instance that does not answer is observed as unreachable, not an error.
async fn observe_instances(
    ctx: &Context,
    owner: &Owner,
    instances: &[String],
    password: Option<&str>,
) -> Result<Observed> {
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let mut observations = Vec::new();
    let mut archivers = Vec::new();
    let mut pods = Vec::new();
    for instance in instances {
        let pod = pods_api
            .get_opt(&names::pod(instance))
            .await
            .map_err(|source| Error::Kube { action: "reading an instance pod", source })?;
        let pod_ready = pod.as_ref().is_some_and(is_ready);
        let pod_ip = pod.as_ref().and_then(|p| p.status.as_ref()).and_then(|s| s.pod_ip.clone());
        let postgres = match (pod_ip, password) {
            (Some(host), Some(password)) => {
                let connection =
                    Connection { host, superuser_password: password, timeout: ctx.config.postgres_timeout };
                match observe::instance_state(&connection).await {
                    Ok(state) => {
                        if !state.in_recovery {
                            match observe::archiver_state(&connection).await {
                                Ok(state) => {
                                    archivers.push(ArchiverObservation { instance: instance.clone(), state })
                                }
                                Err(error) => debug!(instance, %error, "pg_stat_archiver did not answer"),
                            }
                        }
                        Some(state)
                    }
                    Err(error) => {
                        debug!(instance, %error, "PostgreSQL did not answer");
                        None
                    }
                }
            }
            _ => None,
        };
        observations.push(InstanceObservation { name: instance.clone(), pod_ready, postgres });
        pods.extend(pod);
    }
    Ok(Observed { instances: observations, archivers, pods })
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Gives the primary one slot per other instance and drops slots of removed instances. A
/// failure is logged and retried next time: standbys keep streaming meanwhile (wal_keep_size).
async fn maintain_slots(
    ctx: &Context,
    owner: &Owner,
    cluster: &PgCluster,
    status: &crate::crd::PgClusterStatus,
    pods: &[Pod],
    password: Option<&str>,
) {
    let primary =
        status.instances.iter().find(|i| i.role == crate::crd::pgcluster::InstanceRole::Primary && i.ready);
    let (Some(primary), Some(password)) = (primary, password) else { return };
    if status.current_primary.as_deref() != Some(primary.name.as_str()) {
        return;
    }
    let pod_ip = pods
        .iter()
        .find(|pod| pod.name_any() == names::pod(&primary.name))
        .and_then(|pod| pod.status.as_ref())
        .and_then(|s| s.pod_ip.clone());
    let Some(host) = pod_ip else { return };
    let wanted =
        topology::plan(&owner.name, cluster.spec.instances, &[], Some(&primary.name), Bootstrap::Clone).slots;
    let connection = Connection { host, superuser_password: password, timeout: ctx.config.postgres_timeout };
    if let Err(error) = observe::reconcile_slots(&connection, &wanted, &owner.name).await {
        warn!(primary = %primary.name, %error, "could not reconcile replication slots");
    }
}

/// Synchronous replication as the ready primary reports it; the last report is kept while
/// the primary does not answer, because a failover must know who was synchronous.
async fn observe_synchronous(
    ctx: &Context,
    owner: &Owner,
    cluster: &PgCluster,
    status: &crate::crd::PgClusterStatus,
    pods: &[Pod],
    password: Option<&str>,
    previous: &crate::crd::PgClusterStatus,
) -> Option<crate::crd::replication::SynchronousStatus> {
    let spec = cluster.spec.replication.as_ref()?.synchronous.as_ref()?;
    let kept = previous.synchronous.clone();
    let primary = status.current_primary.as_deref()?;
    let host = pods
        .iter()
        .find(|pod| pod.name_any() == names::pod(primary))
        .and_then(|pod| pod.status.as_ref())
        .and_then(|s| s.pod_ip.clone());
    let (Some(host), Some(password)) = (host, password) else { return kept };
    let connection = Connection { host, superuser_password: password, timeout: ctx.config.postgres_timeout };
    match super::synchronous_io::maintain(&connection, &owner.name, spec).await {
        Ok(observed) => Some(observed),
        Err(error) => {
            warn!(primary, %error, "could not read synchronous replication");
            kept
        }
    }
}

fn record_instance_metrics(ctx: &Context, owner: &Owner, status: &crate::crd::PgClusterStatus) {
    use crate::crd::pgcluster::InstanceRole;
    for instance in &status.instances {
        let labels = InstanceLabels {
            namespace: owner.namespace.clone(),
            cluster: owner.name.clone(),
            instance: instance.name.clone(),
        };
        let is_primary = match instance.role {
            InstanceRole::Primary => Some(true),
            InstanceRole::Standby => Some(false),
            InstanceRole::Unknown => None,
        };
        ctx.metrics.instance(labels, is_primary, instance.replay_lag_bytes);
    }
    let present: Vec<String> = status.instances.iter().map(|i| i.name.clone()).collect();
    ctx.metrics.retain_instances(&owner.namespace, &owner.name, &present);
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
