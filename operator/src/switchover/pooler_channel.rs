//! The operator's end of the pooler pods' control channel (see [`crate::pooler::control`]):
//! the same mutual TLS as the instances' fence channel, to each pod's own address, verified
//! under the pooler's Service name. Reads every pod's state for the machine, and carries out
//! its PausePoolers and ResumePoolers steps.

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use tracing::{info, warn};

use crate::crd::PgCluster;
use crate::error::Result;
use crate::pgcluster::builders::pooler::selector;
use crate::protocol::names;
use crate::protocol::pooler::{
    CONTROL_PORT, PAUSE_PATH, PauseRequest, PoolerState, RESUME_PATH, ResumeRequest, STATUS_PATH,
};
use crate::runtime::context::Context;
use crate::runtime::kube_error;

use super::instance_channel::{ClusterTls, exchange};
use super::model::PoolerView;

/// How long one status or resume call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a PAUSE call waits for in-flight transactions before it answers `pausing`; the
/// machine asks again on its next decision, within its own bound.
const PAUSE_WAIT: Duration = Duration::from_millis(1500);

/// The cluster's pooler pods that have an address: (pod name, pod IP).
pub type PoolerPods = Vec<(String, String)>;

/// The pooler pods and what each answered; nothing (and no request) without `spec.pooler`.
pub async fn observe(
    ctx: &Context,
    cluster: &PgCluster,
    namespace: &str,
) -> Result<(Vec<PoolerView>, PoolerPods)> {
    if cluster.spec.pooler.is_none() {
        return Ok((vec![], vec![]));
    }
    let cluster_name = cluster.name_any();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let labels: Vec<String> = selector(&cluster_name).iter().map(|(k, v)| format!("{k}={v}")).collect();
    let list = api
        .list(&ListParams::default().labels(&labels.join(",")))
        .await
        .map_err(kube_error("listing pooler pods"))?;
    let pods: PoolerPods = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| Some((p.name_any(), p.status.as_ref()?.pod_ip.clone()?)))
        .collect();
    let tls = ClusterTls::read(&ctx.client, namespace, &cluster_name).await;
    let instances: Vec<String> =
        (1..=cluster.spec.instances).map(|ordinal| names::instance(&cluster_name, ordinal)).collect();
    let answers = join_all(pods.iter().map(|(_, ip)| async {
        let tls = tls.as_ref().ok()?;
        call(tls, ip, &cluster_name, namespace, "GET", STATUS_PATH, Vec::new(), CALL_TIMEOUT).await.ok()
    }))
    .await;
    let views = pods
        .iter()
        .zip(answers)
        .map(|((pod, _), answer)| PoolerView {
            pod: pod.clone(),
            state: answer.as_ref().map(|a| a.state),
            points_at: answer.and_then(|a| {
                instances.iter().find(|i| names::pod_fqdn(&cluster_name, i, namespace) == a.target).cloned()
            }),
        })
        .collect();
    Ok((views, pods))
}

/// PAUSE each of `pods`, all at once. Failures are logged: the next observation shows who
/// has not confirmed, and the machine decides.
pub async fn pause(ctx: &Context, cluster: &str, namespace: &str, all: &PoolerPods, pods: &[String]) {
    let body =
        serde_json::to_vec(&PauseRequest { wait_ms: PAUSE_WAIT.as_millis() as u64 }).unwrap_or_default();
    send(ctx, cluster, namespace, all, pods, PAUSE_PATH, body, PAUSE_WAIT + CALL_TIMEOUT).await;
}

/// Point each of `pods` at `primary`'s own pod address, then RESUME it, all at once.
pub async fn resume(
    ctx: &Context,
    cluster: &str,
    namespace: &str,
    all: &PoolerPods,
    pods: &[String],
    primary: &str,
) {
    let target = Some(names::pod_fqdn(cluster, primary, namespace));
    let body = serde_json::to_vec(&ResumeRequest { target, port: None }).unwrap_or_default();
    send(ctx, cluster, namespace, all, pods, RESUME_PATH, body, CALL_TIMEOUT).await;
}

#[allow(clippy::too_many_arguments)]
async fn send(
    ctx: &Context,
    cluster: &str,
    namespace: &str,
    all: &PoolerPods,
    pods: &[String],
    path: &str,
    body: Vec<u8>,
    timeout: Duration,
) {
    let tls = match ClusterTls::read(&ctx.client, namespace, cluster).await {
        Ok(tls) => tls,
        Err(error) => return warn!(%error, "cannot reach the pooler pods"),
    };
    let started = std::time::Instant::now();
    let calls = pods.iter().filter_map(|pod| all.iter().find(|(name, _)| name == pod)).map(|(pod, ip)| {
        let tls = &tls;
        let body = body.clone();
        async move { (pod, call(tls, ip, cluster, namespace, "POST", path, body, timeout).await) }
    });
    for (pod, result) in join_all(calls).await {
        match result {
            Ok(answer) => info!(
                pod = %pod,
                state = ?answer.state,
                target = %answer.target,
                took_ms = started.elapsed().as_millis() as u64,
                "pooler {path}"
            ),
            Err(error) => warn!(pod = %pod, %error, "pooler {path} not delivered"),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn call(
    tls: &ClusterTls,
    address: &str,
    cluster: &str,
    namespace: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> std::result::Result<PoolerState, String> {
    let server_name = format!("{}.{namespace}.svc", names::pooler(cluster));
    let config = tls.client_config()?;
    let (status, body) =
        exchange(config, (address, CONTROL_PORT), &server_name, method, path, body, timeout).await?;
    if !status.is_success() {
        return Err(format!("the pooler answered {status}: {}", String::from_utf8_lossy(&body)));
    }
    serde_json::from_slice(&body).map_err(|e| format!("unreadable answer: {e}"))
}
