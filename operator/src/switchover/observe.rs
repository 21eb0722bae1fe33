//! Gathers the machine's [`Observed`] for one cluster: Kubernetes objects (PgCluster,
//! StatefulSets, pods; other Switchovers from the shared watch cache) and what each instance
//! answers to the one probe ([`crate::postgres::probe`]), all instances at once.
//! The mapping from those raw answers to [`InstanceView`]s is pure ([`instance_view`]), so it
//! is tested without a cluster; only [`observe`] does I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use tracing::debug;

use super::convert::request_from;
use super::model::{ActiveSwitchover, InstanceView, Observed, Role};
use crate::crd::{PgCluster, Switchover};
use crate::error::Result;
use crate::postgres::ClusterCa;
use crate::postgres::probe::{Probe, ProbeTarget, probe_all};
use crate::protocol::markers;
use crate::protocol::names;
use crate::runtime::context::Context;
use crate::runtime::{is_ready, kube_error};

/// Everything read for one decision; the executor needs the objects too.
pub struct Snapshot {
    pub cluster: Option<PgCluster>,
    pub statefulsets: Vec<StatefulSet>,
    pub pods: Vec<Pod>,
    /// Superuser password, for the executor's SQL steps. Never logged.
    pub password: Option<String>,
    /// The CA the instances' server certificate chains to (TLS verify-full).
    pub ca: Option<ClusterCa>,
    pub observed: Observed,
    /// The pooler pods with an address, for the executor's pooler steps.
    pub pooler_pods: super::pooler_channel::PoolerPods,
}

impl Snapshot {
    pub fn pod(&self, instance: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| p.name_any() == names::pod(instance))
    }

    pub fn pod_ip(&self, instance: &str) -> Option<String> {
        self.pod(instance).and_then(|p| p.status.as_ref()).and_then(|s| s.pod_ip.clone())
    }

    /// The DNS name `instance`'s server certificate is verified for.
    pub fn server_name(&self, instance: &str) -> Option<String> {
        let cluster = self.cluster.as_ref()?;
        Some(names::pod_fqdn(&cluster.name_any(), instance, &cluster.namespace()?))
    }
}

/// The instance a failover takes for lost, probed with a short bound once it has gone silent
/// ([`crate::postgres::probe::Unanswered::bounds`]): every decision waits for its slowest
/// probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lost<'a> {
    /// A planned switchover: nothing is presumed lost.
    Nothing,
    /// A failover that has recorded the instance it fails over from.
    Instance(&'a str),
    /// A failover before that: the cluster's recorded primary.
    CurrentPrimary,
}

/// Everything `switchover` (the requester) decides on, for the cluster `cluster_name`.
pub async fn observe(
    ctx: &Context,
    namespace: &str,
    cluster_name: &str,
    switchover: &str,
    lost: Lost<'_>,
) -> Result<Snapshot> {
    let clusters: Api<PgCluster> = Api::namespaced(ctx.client.clone(), namespace);
    let cluster = clusters.get_opt(cluster_name).await.map_err(kube_error("reading the PgCluster"))?;
    let all = ctx.caches.switchovers(namespace).await?;
    let active_switchovers = active_of(all.iter().map(AsRef::as_ref), cluster_name);
    let Some(cluster) = cluster else {
        let observed = Observed { active_switchovers, ..Observed::default() };
        return Ok(Snapshot {
            cluster: None,
            statefulsets: vec![],
            pods: vec![],
            password: None,
            ca: None,
            observed,
            pooler_pods: vec![],
        });
    };
    let statefulsets = crate::pgcluster::apply::list_statefulsets(ctx, namespace, cluster_name).await?;
    let pods = crate::pgcluster::apply::list_instance_pods(ctx, namespace, cluster_name).await?;
    let password =
        crate::pgcluster::apply::read_password(ctx, namespace, &names::secret_superuser(cluster_name))
            .await?;
    let ca = crate::pgcluster::certificates::read_cluster_ca(ctx, namespace, cluster_name).await?;

    let current_primary = cluster.status.as_ref().and_then(|s| s.current_primary.clone());
    let lost = match lost {
        Lost::Nothing => None,
        Lost::Instance(instance) => Some(instance),
        Lost::CurrentPrimary => current_primary.as_deref(),
    };
    let targets = statefulsets.iter().filter_map(|sts| {
        let instance = sts.name_any();
        let pod = pods.iter().find(|p| p.name_any() == names::pod(&instance))?;
        let host = pod.status.as_ref().and_then(|s| s.pod_ip.clone())?;
        let server_name = names::pod_fqdn(cluster_name, &instance, namespace);
        let presumed_lost = lost == Some(instance.as_str());
        Some(ProbeTarget { instance, host, server_name, presumed_lost })
    });
    let answers = match (password.as_deref(), ca.as_ref()) {
        (Some(password), Some(ca)) => {
            probe_all(targets, password, ca, ctx.config.postgres_timeout, &ctx.unanswered).await
        }
        _ => BTreeMap::new(),
    };
    let mut instances: Vec<InstanceView> = statefulsets
        .iter()
        .map(|sts| {
            let name = sts.name_any();
            let pod = pods.iter().find(|p| p.name_any() == names::pod(&name));
            instance_view(cluster_name, sts, pod, &pods, &answers)
        })
        .collect();
    // Node readiness matters only for a pod stuck terminating (a force-delete decision) or an
    // instance that does not answer (away on a lost node, or just restarting?).
    for view in instances.iter_mut().filter(|v| v.pod_terminating || !v.reachable) {
        let node = pods
            .iter()
            .find(|p| p.name_any() == names::pod(&view.name))
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.node_name.clone());
        if let Some(node) = node {
            view.node_ready = node_ready(ctx, &node).await;
        }
    }
    let lease =
        ctx.leases.view(&crate::lease::Tracker::key(namespace, cluster_name), std::time::Instant::now());
    let role_move = super::role_move::observe(ctx, &cluster, switchover).await?;
    let (poolers, pooler_pods) = super::pooler_channel::observe(ctx, &cluster, namespace).await?;
    let observed = Observed {
        cluster_exists: true,
        current_primary,
        instances,
        active_switchovers,
        lease,
        role_move,
        watching_since: Some(ctx.leading_since),
        synchronous_standbys: crate::pgcluster::synchronous::promotable(
            cluster.spec.replication.as_ref().and_then(|r| r.synchronous.as_ref()),
            cluster.status.as_ref().and_then(|s| s.synchronous.as_ref()),
        ),
        poolers,
    };
    Ok(Snapshot { cluster: Some(cluster), statefulsets, pods, password, ca, observed, pooler_pods })
}

/// Whether a node reports Ready; `None` when it cannot be read. A node that is gone counts as
/// not ready: nothing runs there any more.
async fn node_ready(ctx: &Context, node: &str) -> Option<bool> {
    let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(ctx.client.clone());
    match api.get_opt(node).await {
        Ok(Some(node)) => Some(
            node.status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
        ),
        Ok(None) => Some(false),
        Err(error) => {
            debug!(node, %error, "could not read a node");
            None
        }
    }
}

/// Non-terminal Switchovers of `cluster`, for the queue.
pub fn active_of<'a>(
    switchovers: impl IntoIterator<Item = &'a Switchover>,
    cluster: &str,
) -> Vec<ActiveSwitchover> {
    switchovers
        .into_iter()
        .filter(|so| so.spec.cluster == cluster)
        .filter_map(|so| {
            let request = request_from(so).ok()?;
            let state = super::convert::from_status(so.status.as_ref()).ok()?;
            (!state.phase.is_terminal()).then_some(ActiveSwitchover {
                name: request.name,
                mode: request.mode,
                phase: state.phase,
                created: request.created,
            })
        })
        .collect()
}

/// One instance, from its StatefulSet, its pod (if any) and the SQL answers of all instances
/// (streaming is seen from the sender's side, where application_name names the standby).
pub fn instance_view(
    cluster: &str,
    sts: &StatefulSet,
    pod: Option<&Pod>,
    pods: &[Pod],
    answers: &BTreeMap<String, Probe>,
) -> InstanceView {
    let name = sts.name_any();
    let answer = answers.get(&name);
    let pod_annotations = pod.and_then(|p| p.metadata.annotations.as_ref());
    let template_annotations =
        sts.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).and_then(|m| m.annotations.as_ref());
    // The pod's own marker is what the instance manager sees; with no pod, the template's is
    // what the next pod will see. A Rebuild step writes the pod, then the StatefulSet (its
    // template, and its replicas back from a fence's zero): a conflict on the second write
    // left a frozen node's old primary scaled to zero for good, its pod carrying the token.
    // So a rebuild counts as requested only once both carry it, and is asked again otherwise.
    let template_token = template_annotations.and_then(|a| a.get(markers::REBUILD)).cloned();
    let rebuild_token = match pod {
        Some(_) => pod_annotations
            .and_then(|a| a.get(markers::REBUILD))
            .cloned()
            .filter(|t| Some(t) == template_token.as_ref()),
        None => template_token,
    };
    let role_label = pod.and_then(|p| p.labels().get(names::LABEL_ROLE)).and_then(|r| match r.as_str() {
        "primary" => Some(Role::Primary),
        "standby" => Some(Role::Standby),
        _ => None,
    });
    let streams_from = answers
        .iter()
        .find(|(sender, a)| **sender != name && a.streaming_standbys.contains(&name))
        .map(|(sender, _)| sender.clone());
    let upstream = answer.and_then(|a| upstream_of(cluster, &a.primary_conninfo, pods));
    InstanceView {
        name: name.clone(),
        sts_replicas: sts.spec.as_ref().and_then(|s| s.replicas).map_or(1, |r| u32::try_from(r).unwrap_or(0)),
        pod_exists: pod.is_some(),
        ready: pod.is_some_and(is_ready),
        reachable: answer.is_some(),
        in_recovery: answer.map(|a| a.in_recovery),
        timeline: answer.and_then(|a| a.timeline),
        checkpoint_timeline: answer.and_then(|a| a.checkpoint_timeline),
        current_lsn: answer.filter(|a| !a.in_recovery).and_then(|a| a.flush_lsn),
        receive_lsn: answer.and_then(|a| a.receive_lsn),
        replay_lsn: answer.and_then(|a| a.replay_lsn),
        streams_from,
        upstream,
        slots: answer.map(|a| a.slots.clone()).unwrap_or_default(),
        role_label,
        fence_marker: pod_annotations.is_some_and(|a| a.get(markers::FENCE).is_some_and(|v| !v.is_empty())),
        rebuild_token,
        pod_terminating: pod.is_some_and(|p| p.metadata.deletion_timestamp.is_some()),
        node_ready: None,
    }
}

/// The instance a `primary_conninfo` points at: `<cluster>-rw` is whichever pod carries the
/// primary label (that is where the Service sends it), a pod DNS name is that instance.
pub fn upstream_of(cluster: &str, conninfo: &str, pods: &[Pod]) -> Option<String> {
    let host = conninfo_host(conninfo)?;
    if host == names::service_rw(cluster) || host.starts_with(&format!("{}.", names::service_rw(cluster))) {
        let primary =
            pods.iter().find(|p| p.labels().get(names::LABEL_ROLE).map(String::as_str) == Some("primary"))?;
        return primary.labels().get(names::LABEL_PG_INSTANCE).cloned();
    }
    let pod_name = host.split('.').next()?;
    pod_name.strip_suffix("-0").filter(|i| names::ordinal(cluster, i).is_some()).map(str::to_owned)
}

/// The `host` of a libpq keyword/value string (values possibly single-quoted).
pub fn conninfo_host(conninfo: &str) -> Option<String> {
    let mut rest = conninfo.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('\'') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    '\'' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        if key.trim() == "host" {
            return Some(value).filter(|v| !v.is_empty());
        }
        rest = next.trim_start();
    }
    None
}

#[cfg(test)]
#[path = "observe_tests.rs"]
mod tests;
