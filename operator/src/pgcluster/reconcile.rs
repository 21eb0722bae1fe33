//! The stages of a PgCluster reconcile ([`super::stages`]) over the API and PostgreSQL.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;

use crate::crd::pgcluster::{InstanceRole, SynchronousSpec, cipher_secret};
use crate::crd::{PgCluster, PgClusterStatus};
use crate::error::{Error, Result};
use crate::instance::plan::Bootstrap;
use crate::metrics::InstanceLabels;
use crate::pgcluster::validate::SpecError;
use crate::postgres::probe::{ProbeTarget, probe_all};
use crate::postgres::{ClusterCa, PgError};
use crate::runtime::context::Context;
use crate::runtime::{is_ready, kube_error};
use crate::switchover::observe::active_of;

use super::apply;
use super::builders::statefulset::{InstanceInput, SwitchoverOverrides};
use super::builders::tls::ServerTls;
use super::builders::{self, Owner};
use super::certificates;
use super::connect::{InstanceConnection, primary_connection, standby_connections};
use super::failover_check::{self, FailoverClock};
use super::slots;
use super::stages::{StageFailure, Stages};
use super::status::{
    self, ArchiverObservation, ComputedStatus, InstanceObservation, Observation, PostgresState, Problem,
    SenderObservation,
};
use super::topology::{self, Topology};
use super::validate::ValidSpec;
use super::{pod_trouble, rebuild_push, synchronous, synchronous_io, volumes};
use crate::protocol::names;

/// What the observe stage found.
pub struct Instances {
    pub observations: Vec<InstanceObservation>,
    pub archivers: Vec<ArchiverObservation>,
    pub senders: Vec<SenderObservation>,
    /// synchronous_standby_names of every instance that answered, primaries and standbys.
    pub synchronous_standby_names: BTreeMap<String, String>,
    pub pods: Vec<Pod>,
}

/// One reconcile's inputs and what its stages hand on.
pub struct ClusterStages<'a> {
    pub ctx: &'a Context,
    pub clock: &'a FailoverClock,
    pub cluster: &'a PgCluster,
    pub owner: &'a Owner,
    pub previous: &'a PgClusterStatus,
    pub validation: Result<ValidSpec, SpecError>,
    pub topology: &'a Topology,
    pub statefulsets: &'a [StatefulSet],
    /// The instances to observe.
    pub instances: Vec<String>,
    /// A refused spec or a blocked scale-down: Degraded whatever the stages do.
    pub problem: Option<Problem>,
    /// Set by the observe stage. Never logged.
    pub password: Option<String>,
    /// The CA the instances' server certificates chain to; set by the observe stage.
    pub ca: Option<ClusterCa>,
    /// A Switchover of the cluster is active (or the Switchover cache cannot tell): it is
    /// then the only writer of role labels and slots; set by the observe stage.
    pub switchover_active: bool,
    /// What the apply stage found wrong with what the spec refers to (the server
    /// certificate, a name taken by another owner, the Redis password Secret): Degraded,
    /// but not a failure to retry.
    pub apply_problem: Option<Problem>,
    /// Set by the report: the status as written.
    pub written: Option<PgClusterStatus>,
}

/// The status stage's result: the computed status and the observation it came from.
pub struct Computed {
    pub computed: ComputedStatus,
    pub instances: Instances,
}

impl ClusterStages<'_> {
    fn compute(&self, instances: &Instances, problem: Option<Problem>) -> ComputedStatus {
        status::compute(&Observation {
            cluster: &self.owner.name,
            generation: self.cluster.metadata.generation,
            desired_instances: self.cluster.spec.instances,
            instances: instances.observations.clone(),
            problem,
            archivers: instances.archivers.clone(),
            senders: instances.senders.clone(),
            synchronous: self.synchronous(),
            troubles: instances
                .pods
                .iter()
                .filter_map(|pod| Some(format!("pod {}: {}", pod.name_any(), pod_trouble::trouble(pod)?)))
                .collect(),
            previous: self.previous,
            now: now(),
        })
    }

    fn synchronous(&self) -> Option<&SynchronousSpec> {
        self.cluster.spec.replication.as_ref()?.synchronous.as_ref()
    }

    /// Whether the status as written says the cluster is still being built or scaled.
    pub fn progressing(&self) -> bool {
        let progressing = |s: &PgClusterStatus| {
            s.conditions.iter().any(|c| c.type_ == status::CONDITION_PROGRESSING && c.status == "True")
        };
        self.written.as_ref().is_some_and(progressing)
    }
}

impl Stages for ClusterStages<'_> {
    type Observation = Instances;
    type Status = Computed;

    async fn observe(&mut self) -> Result<Instances> {
        let secret = names::secret_superuser(&self.owner.name);
        self.password = apply::read_password(self.ctx, &self.owner.namespace, &secret).await?;
        self.ca = certificates::read_cluster_ca(self.ctx, &self.owner.namespace, &self.owner.name).await?;
        self.switchover_active = match self.ctx.caches.switchovers(&self.owner.namespace).await {
            Ok(all) => !active_of(all.iter().map(AsRef::as_ref), &self.owner.name).is_empty(),
            // The failover stage reads the same cache and reports why.
            Err(_) => true,
        };
        let (password, ca) = (self.password.as_deref(), self.ca.as_ref());
        observe_instances(self.ctx, self.owner, &self.instances, password, ca).await
    }

    async fn status(&mut self, observed: Instances) -> (Computed, Result<()>) {
        let computed = self.compute(&observed, self.problem.clone());
        record_instance_metrics(self.ctx, self.owner, &computed.status);
        let mut labelled = Ok(());
        let role_labels = if self.switchover_active { &[][..] } else { &computed.role_labels[..] };
        for (instance, change) in role_labels {
            let Some(pod) = observed.pods.iter().find(|pod| pod.name_any() == names::pod(instance)) else {
                continue;
            };
            // Every pod is tried: one refused label must not leave the others stale.
            if let Err(error) = apply::label_role(self.ctx, &self.owner.namespace, pod, *change).await {
                labelled = labelled.and(Err(error));
            }
        }
        (Computed { computed, instances: observed }, labelled)
    }

    async fn failover(&mut self, status: &Computed) -> Result<Option<Duration>> {
        // An invalid spec builds nothing; what runs is judged again once it is valid.
        if self.validation.is_err() {
            return Ok(None);
        }
        let pods = &status.instances.pods;
        let has_pod = |instance: &str| pods.iter().any(|pod| pod.name_any() == names::pod(instance));
        let current = status.computed.status.current_primary.as_deref();
        let mut view = failover_check::observed_from(current, &status.instances.observations, has_pod);
        view.synchronous_standbys =
            synchronous::promotable(self.synchronous(), status.computed.status.synchronous.as_ref());
        let look_again = failover_check::check(self.ctx, self.clock, self.cluster, self.owner, view).await?;
        // A cordoned primary node (a drain): switch over first, while the budget holds it.
        if look_again.is_none()
            && let Err(error) = super::drain::check(self.ctx, self.owner, pods, current).await
        {
            tracing::warn!(%error, "could not check the primary's node for a drain");
        }
        Ok(look_again)
    }

    async fn apply(&mut self, status: Option<&Computed>) -> Result<()> {
        // An invalid spec leaves the cluster as it runs.
        let Ok(valid) = &self.validation else { return Ok(()) };
        let applied =
            build_and_apply(self.ctx, self.cluster, self.owner, valid, self.topology, self.statefulsets)
                .await;
        let server_tls = match applied {
            Ok(Applied { server_tls: Ok(tls), volumes }) => {
                self.apply_problem = volumes;
                Some(tls)
            }
            Ok(Applied { server_tls: Err(problem), .. }) => {
                self.apply_problem = Some(problem);
                None
            }
            // Reported, never taken over; what was applied before it stays.
            Err(error @ Error::ForeignChild { .. }) => {
                self.apply_problem = Some(Problem { reason: "NameCollision", message: error.to_string() });
                None
            }
            Err(error) => return Err(error),
        };
        if let Some(problem) = redis_problem(self.ctx, self.cluster, &self.owner.namespace).await? {
            self.apply_problem = Some(problem);
        }
        if let Some(status) = status
            && !self.switchover_active
        {
            let primary = status.computed.status.current_primary.as_deref();
            let streaming = status.instances.senders.iter().find(|s| Some(s.instance.as_str()) == primary);
            let streaming = streaming.map(|s| &s.streaming[..]).unwrap_or_default();
            let due = rebuild_push::due_now(&status.instances.pods, primary, streaming);
            rebuild_push::deliver(self.ctx, self.owner, &due).await;
        }
        let (Some(status), Some(password)) = (status, self.password.as_deref()) else { return Ok(()) };
        let pods = &status.instances.pods;
        if let Some(tls) = &server_tls {
            certificates::reload_where_stale(self.ctx, self.owner, pods, tls, password).await;
        }
        // The CA just ensured, or (with no TLS this time) the one observed.
        let fresh_ca = server_tls.as_ref().and_then(|tls| ClusterCa::from_pem(&tls.ca_pem).ok());
        if let Some(ca) = fresh_ca.as_ref().or(self.ca.as_ref())
            && !self.switchover_active
        {
            let observed = &status.instances;
            let status = &status.computed.status;
            if let Some(primary) = primary_connection(self.ctx, self.owner, status, pods, password, ca) {
                maintain_slots(self.owner, self.cluster, &primary).await;
                maintain_synchronous(self.owner, self.synchronous(), observed, &primary).await;
            }
            for standby in standby_connections(self.ctx, self.owner, status, pods, password, ca) {
                if let Some(current) = observed.synchronous_standby_names.get(&standby.name) {
                    synchronous_io::ready_standby(&self.owner.name, self.synchronous(), &standby, current)
                        .await;
                }
            }
        }
        Ok(())
    }

    async fn report(&mut self, status: Option<&Computed>, failures: &[StageFailure]) -> Result<()> {
        let stage_problem = failures
            .first()
            .map(|failure| Problem { reason: failure.stage.reason(), message: failure.message() });
        let problem = self.problem.clone().or(self.apply_problem.clone()).or(stage_problem);
        let next = match (status, &problem) {
            (Some(status), _) if problem == self.problem => status.computed.status.clone(),
            (Some(status), _) => self.compute(&status.instances, problem.clone()).status,
            (None, Some(problem)) => {
                status::with_problem(self.previous, self.cluster.metadata.generation, problem, now())
            }
            (None, None) => self.previous.clone(),
        };
        if next != *self.previous {
            apply::write_status(self.ctx, self.cluster, &next).await?;
        }
        let changed = status::transitions(&self.previous.conditions, &next.conditions);
        apply::publish_transitions(self.ctx, self.cluster, &changed).await;
        self.written = Some(next);
        Ok(())
    }
}

/// Pod readiness and the probe of every instance, all at once. PostgreSQL is asked only on a
/// pod with an address, over TLS verified against the cluster CA; an instance that does not
/// answer is observed as unreachable, not an error. One LIST of the cluster's pods, not one
/// GET per instance.
async fn observe_instances(
    ctx: &Context,
    owner: &Owner,
    instances: &[String],
    password: Option<&str>,
    ca: Option<&ClusterCa>,
) -> Result<Instances> {
    let pods: Vec<Pod> = apply::list_instance_pods(ctx, &owner.namespace, &owner.name)
        .await?
        .into_iter()
        .filter(|pod| instances.iter().any(|instance| pod.name_any() == names::pod(instance)))
        .collect();
    let pod_of = |instance: &str| pods.iter().find(|pod| pod.name_any() == names::pod(instance));
    let lease = ctx.leases.view(&crate::lease::Tracker::key(&owner.namespace, &owner.name), Instant::now());
    let stale_holder = lease.as_ref().and_then(crate::lease::LeaseView::stale_holder);
    let targets = instances.iter().filter_map(|instance| {
        let host = pod_of(instance)?.status.as_ref()?.pod_ip.clone()?;
        let server_name = names::pod_fqdn(&owner.name, instance, &owner.namespace);
        let presumed_lost = stale_holder == Some(instance.as_str());
        Some(ProbeTarget { instance: instance.clone(), host, server_name, presumed_lost })
    });
    let probes = match (password, ca) {
        (Some(password), Some(ca)) => {
            probe_all(targets, password, ca, ctx.config.postgres_timeout, &ctx.unanswered).await
        }
        _ => Default::default(),
    };
    let mut observations = Vec::new();
    let mut archivers = Vec::new();
    let mut senders = Vec::new();
    let mut synchronous_standby_names = BTreeMap::new();
    for instance in instances {
        let probe = probes.get(instance);
        if let Some(primary) = probe.filter(|p| !p.in_recovery) {
            senders.push(SenderObservation {
                instance: instance.clone(),
                streaming: primary.streaming_standbys.clone(),
                synchronous: primary.synchronous_standbys.clone(),
            });
        }
        if let Some(probe) = probe {
            synchronous_standby_names.insert(instance.clone(), probe.synchronous_standby_names.clone());
        }
        if let Some(state) = probe.and_then(|p| p.archiver.clone()) {
            archivers.push(ArchiverObservation { instance: instance.clone(), state });
        }
        observations.push(InstanceObservation {
            name: instance.clone(),
            pod_ready: pod_of(instance).is_some_and(is_ready),
            postgres: probe.map(|p| PostgresState {
                in_recovery: p.in_recovery,
                timeline: p.timeline.map(i64::from),
                lsn: p.lsn(),
            }),
        });
    }
    Ok(Instances { observations, archivers, senders, synchronous_standby_names, pods })
}

/// "Now" for the status's transition times.
fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

async fn build_and_apply(
    ctx: &Context,
    cluster: &PgCluster,
    owner: &Owner,
    valid: &ValidSpec,
    topology: &Topology,
    statefulsets: &[StatefulSet],
) -> Result<Applied> {
    apply::ensure_secrets(ctx, owner, cluster, valid).await?;
    certificates::ensure_pgbackrest_certificates(ctx, owner).await?;
    // Before the StatefulSets: the instance pods mount the server certificate.
    let server_tls = certificates::ensure_server_tls(ctx, owner, &cluster.spec.tls).await?;
    let claims = volumes::list_claims(ctx, owner).await?;
    let config_map =
        builders::config_map::build(owner, valid).map_err(Error::pgbackrest("building archive_command"))?;
    apply::apply(ctx, owner, &config_map, "applying the ConfigMap").await?;
    let ordinals = pgbackrest_ordinals(&owner.name, topology);
    let encrypted = cipher_secret(&owner.name, cluster.spec.backup.encryption.as_ref()).is_some();
    let pgbackrest =
        builders::pgbackrest::config_map_with_cipher(owner, &ordinals, valid.recovery.as_ref(), encrypted)
            .map_err(Error::pgbackrest("rendering the pgBackRest configuration"))?;
    apply::apply(ctx, owner, &pgbackrest, "applying the pgBackRest ConfigMap").await?;
    for service in builders::services::build(owner) {
        apply::apply(ctx, owner, &service, "applying a Service").await?;
    }
    apply::apply(ctx, owner, &builders::repo_host::service(owner), "applying the repo host Service").await?;
    let repo_hosts: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let existing_repo_host = repo_hosts
        .get_opt(&names::repo_host(&owner.name))
        .await
        .map_err(kube_error("reading the repo host"))?;
    let repo_claim_size = volumes::template_size(existing_repo_host.as_ref());
    let repo_host = builders::repo_host::statefulset(owner, &cluster.spec, repo_claim_size.as_deref());
    apply::apply(ctx, owner, &repo_host, "applying the repo host StatefulSet").await?;
    apply_instance_access(ctx, cluster, owner).await?;
    let budget = super::drain::primary_budget(owner);
    apply::apply(ctx, owner, &budget, "applying the primary's PodDisruptionBudget").await?;
    for (ordinal, bootstrap) in &topology.apply {
        let name = names::instance(&owner.name, *ordinal);
        let current = statefulsets.iter().find(|sts| sts.name_any() == name);
        // What a switchover set (replicas, rebuild markers) is kept, never reset.
        let switchover = SwitchoverOverrides::carried_over(current);
        let claim_size = volumes::template_size(current);
        let input = InstanceInput { ordinal: *ordinal, bootstrap: *bootstrap, switchover, claim_size };
        let statefulset = builders::statefulset::build(owner, &cluster.spec, valid, input);
        apply::apply(ctx, owner, &statefulset, "applying a StatefulSet").await?;
    }
    for instance in &topology.remove {
        apply::remove_instance(ctx, owner, instance).await?;
    }
    super::pooler::apply_or_remove(ctx, cluster, owner, valid).await?;
    if let Some(redis) = &cluster.spec.redis.managed {
        let redis_claim =
            claims.iter().find(|c| c.metadata.name.as_deref() == Some(&names::redis(&owner.name)));
        let objects = builders::redis::build(owner, redis, redis_claim.and_then(volumes::requested));
        apply::apply(ctx, owner, &objects.config_map, "applying the Redis ConfigMap").await?;
        apply::apply(ctx, owner, &objects.volume_claim, "applying the Redis volume claim").await?;
        apply::apply(ctx, owner, &objects.deployment, "applying the Redis Deployment").await?;
        apply::apply(ctx, owner, &objects.service, "applying the Redis Service").await?;
    }
    let instances = topology.apply.iter().map(|(ordinal, _)| names::instance(&owner.name, *ordinal));
    let wanted = volumes::wanted_claims(&owner.name, &cluster.spec, instances);
    let volumes = volumes::grow(ctx, owner, &volumes::changes(&wanted, &claims)).await?;
    Ok(Applied { server_tls, volumes })
}

/// What an apply pass leaves to report: the server certificate (or why there is none), and
/// a volume claim the API server would not grow.
struct Applied {
    server_tls: std::result::Result<ServerTls, Problem>,
    volumes: Option<Problem>,
}

/// The instances' ServiceAccount, its Role on the one primary Lease, and the Lease itself,
/// before any instance pod: a primary starts only once the Lease names it.
async fn apply_instance_access(ctx: &Context, cluster: &PgCluster, owner: &Owner) -> Result<()> {
    use builders::instance_access as access;
    apply::apply(ctx, owner, &access::service_account(owner), "applying the instances' ServiceAccount")
        .await?;
    apply::apply(ctx, owner, &access::role(owner), "applying the instances' Role").await?;
    apply::apply(ctx, owner, &access::role_binding(owner), "applying the instances' RoleBinding").await?;
    let status = cluster.status.as_ref();
    let holder =
        status.and_then(|s| s.current_primary.clone()).unwrap_or_else(|| names::instance(&owner.name, 1));
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let created = crate::lease::api::create_if_missing(&api, &access::primary_lease(owner, &holder))
        .await
        .map_err(kube_error("creating the primary Lease"))?;
    if created {
        tracing::info!(holder, "created the primary lease");
    }
    Ok(())
}

/// Why an external Redis could not record backups: its password Secret is missing or not
/// labelled for it (relevo will not read it, see `backup::redis_target::may_read_password`),
/// or it does not answer a PING with that password. The managed Redis is relevo's own and is
/// judged by its Deployment.
async fn redis_problem(ctx: &Context, cluster: &PgCluster, namespace: &str) -> Result<Option<Problem>> {
    use crate::backup::redis_target::{self, RedisTarget};
    let target = redis_target::target_of(cluster);
    let RedisTarget::External { password, .. } = &target else { return Ok(None) };
    if let Some(reference) = password {
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
        let secret = api.get_metadata_opt(&reference.name).await.map_err(kube_error("reading a Secret"))?;
        let refused = match secret {
            None => Some(format!("Secret {} does not exist", reference.name)),
            Some(secret) => redis_target::may_read_password(&target, secret.metadata.labels.as_ref())
                .err()
                .map(|e| e.to_string()),
        };
        if let Some(why) = refused {
            let message = format!("spec.redis.external.passwordSecret: {why}");
            return Ok(Some(Problem { reason: "RedisPasswordSecretRefused", message }));
        }
    }
    // Answers every reconcile (bounded by redis_io::TIMEOUT), so an outage shows before a
    // backup fails to record, and its end clears the condition.
    match redis_target::connect(&ctx.client, namespace, &target, "").await {
        Ok(_) => Ok(None),
        Err(error) => Ok(Some(Problem {
            reason: "RedisUnreachable",
            message: format!(
                "spec.redis.external: {error}; backups are taken, but their records wait until it answers"
            ),
        })),
    }
}

/// Instances the repo host lists as pg hosts: every desired one, plus a surplus primary that
/// waits for a switchover before it can go.
fn pgbackrest_ordinals(cluster: &str, topology: &Topology) -> Vec<i32> {
    let mut ordinals: Vec<i32> = topology.apply.iter().map(|(ordinal, _)| *ordinal).collect();
    ordinals.extend(topology.blocked_removal.as_deref().and_then(|name| names::ordinal(cluster, name)));
    ordinals.sort_unstable();
    ordinals.dedup();
    ordinals
}

/// Gives the primary one slot per other instance and drops slots of removed instances. A
/// failure is logged and retried next time: standbys keep streaming meanwhile (wal_keep_size).
async fn maintain_slots(owner: &Owner, cluster: &PgCluster, primary: &InstanceConnection<'_>) {
    let wanted =
        topology::plan(&owner.name, cluster.spec.instances, &[], Some(&primary.name), Bootstrap::Clone).slots;
    let converged = match primary.connection.connect().await {
        Ok(client) => slots::converge(&client, &wanted, &owner.name).await.map_err(PgError::from),
        Err(error) => Err(error),
    };
    if let Err(error) = converged {
        tracing::warn!(primary = %primary.name, %error, "could not reconcile replication slots");
    }
}

/// The primary's synchronous_standby_names kept right, from what this reconcile's probe saw.
async fn maintain_synchronous(
    owner: &Owner,
    spec: Option<&SynchronousSpec>,
    observed: &Instances,
    primary: &InstanceConnection<'_>,
) {
    let Some(current) = observed.synchronous_standby_names.get(&primary.name) else { return };
    let streaming = observed
        .senders
        .iter()
        .find(|s| s.instance == primary.name)
        .map_or(0, |s| synchronous::streaming_instances(&owner.name, &s.streaming));
    synchronous_io::keep_primary(&owner.name, spec, primary, current, streaming).await;
}

fn record_instance_metrics(ctx: &Context, owner: &Owner, status: &PgClusterStatus) {
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
