//! The operator's view of a cluster's pooler pods, and the calls that carry a plan out.
//! Calls go to every pod at once (pod IP and control port): a switchover waits for the
//! slowest pod, not for their sum.

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use tracing::{info, warn};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::pgcluster::names;

use super::client::{PoolerClient, PoolerStatus};
use super::plan::{AfterStep, PoolerView};
use super::{CONTROL_PORT, TOKEN_KEY};

/// One call to a pooler pod may take this long; a switchover is held for no longer per call.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The pooler pods of one cluster that can be called, with the cluster's token.
pub struct PoolerPods {
    client: PoolerClient,
    /// (pod name, "ip:port") of every pod that has an address and is not being deleted.
    pods: Vec<(String, String)>,
}

/// None when the cluster has no pooler (no pooler Secret, hence no token).
pub async fn discover(ctx: &Context, namespace: &str, cluster: &str) -> Result<Option<PoolerPods>> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = secrets
        .get_opt(&names::pooler(cluster))
        .await
        .map_err(|source| Error::Kube { action: "reading the pooler Secret", source })?;
    let token = secret
        .and_then(|s| s.data)
        .and_then(|mut data| data.remove(TOKEN_KEY))
        .and_then(|bytes| String::from_utf8(bytes.0).ok())
        .filter(|token| !token.is_empty());
    let Some(token) = token else { return Ok(None) };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let selector =
        names::pooler_selector(cluster).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::Kube { action: "listing pooler pods", source })?;
    Ok(Some(PoolerPods { client: PoolerClient::new(token, CALL_TIMEOUT), pods: addresses(&list.items) }))
}

/// Pods that clients can be connected to: an IP, not being deleted.
fn addresses(pods: &[Pod]) -> Vec<(String, String)> {
    pods.iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter_map(|pod| {
            let ip = pod.status.as_ref()?.pod_ip.as_ref()?;
            Some((pod.name_any(), format!("{ip}:{CONTROL_PORT}")))
        })
        .collect()
}

impl PoolerPods {
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    fn address(&self, pod: &str) -> Option<&str> {
        self.pods.iter().find(|(name, _)| name == pod).map(|(_, addr)| addr.as_str())
    }

    async fn each<'a, F, Fut>(&'a self, call: F) -> Vec<PoolerView>
    where
        F: Fn(&'a PoolerClient, &'a str) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<PoolerStatus, super::client::ClientError>>,
    {
        let answers = join_all(self.pods.iter().map(|(_, addr)| call(&self.client, addr))).await;
        self.pods
            .iter()
            .zip(answers)
            .map(|((pod, _), answer)| PoolerView {
                pod: pod.clone(),
                answer: answer.map_err(|e| e.to_string()),
            })
            .collect()
    }

    pub async fn status(&self) -> Vec<PoolerView> {
        self.each(|client, addr| client.status(addr)).await
    }

    /// Pauses (or renews the pause of) every pod; each waits up to `wait` to drain.
    pub async fn pause(&self, wait: Duration) -> Vec<PoolerView> {
        self.each(move |client, addr| client.pause(addr, wait)).await
    }

    /// Points pods at their new targets, and returns the pods that could not be. Failures are
    /// logged: the next reconcile retries.
    pub async fn retarget(&self, targets: &[(String, String)]) -> Vec<String> {
        let calls = targets.iter().filter_map(|(pod, host)| {
            let addr = self.address(pod)?;
            Some(async move { (pod, host, self.client.target(addr, host).await) })
        });
        let mut failed = Vec::new();
        for (pod, host, result) in join_all(calls).await {
            match result {
                Ok(_) => info!(pod = %pod, target = %host, "pooler re-pointed"),
                Err(error) => {
                    warn!(pod = %pod, %error, "could not re-point a pooler pod");
                    failed.push(pod.clone());
                }
            }
        }
        failed
    }

    /// Targets first, then resumes, and never resumes a pod whose target could not be set:
    /// it would send clients to the old primary (the next reconcile retries both).
    pub async fn carry_out(&self, after: &AfterStep) {
        if after.target.is_empty() && after.resume.is_empty() {
            return;
        }
        let not_retargeted = self.retarget(&after.target).await;
        let calls = after.resume.iter().filter(|pod| !not_retargeted.contains(pod)).filter_map(|pod| {
            let addr = self.address(pod)?;
            Some(async move { (pod, self.client.resume(addr).await) })
        });
        for (pod, result) in join_all(calls).await {
            match result {
                Ok(_) => info!(pod = %pod, "pooler resumed"),
                Err(error) => warn!(pod = %pod, %error, "could not resume a pooler pod (its own bound will)"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: Option<&str>, deleting: bool) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        if deleting {
            pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        }
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            pod_ip: ip.map(String::from),
            ..Default::default()
        });
        pod
    }

    #[test]
    fn only_pods_with_an_address_that_are_not_leaving_are_called() {
        let pods =
            [pod("a", Some("10.0.0.1"), false), pod("b", None, false), pod("c", Some("10.0.0.3"), true)];
        assert_eq!(addresses(&pods), vec![("a".to_string(), "10.0.0.1:8008".to_string())]);
    }
}
