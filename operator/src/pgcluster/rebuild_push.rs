//! Delivers again, over the direct channel, a rebuild that an instance has not carried out.
//!
//! A failover asks for the lost primary's rebuild while that instance cannot be reached, so
//! the Switchover executor's own push fails, and the request waits in the pod's annotations.
//! kubelet writes those to the instance's file only at its next sync of the pod: up to about
//! a minute after the node or the network comes back, while the old primary sits fenced and
//! no standby of the new one. So every reconcile with no active Switchover (the executor is
//! then the only writer of markers) pushes the rebuild markers of each instance that has an
//! address and carries them, and is neither the primary nor streaming from it. The instance
//! manager does a rebuild once per token, so pushing one already done changes nothing; still,
//! each is sent once per pod and container start ([`Delivered`]), not at every reconcile.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use tracing::{debug, info};

use crate::protocol::markers::{self, Markers, PORT, RebuildMarkers};
use crate::protocol::names;
use crate::runtime::context::Context;
use crate::switchover::instance_channel::{self, ClusterTls, Endpoint};

use super::builders::Owner;

/// A rebuild to deliver to one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub instance: String,
    pub address: String,
    pub markers: RebuildMarkers,
    /// The pod's UID and its containers' restarts: a new container reads the annotations file
    /// as kubelet last wrote it, which may still be stale, so it is sent the rebuild again.
    pub receiver: String,
}

/// What was delivered to which receiver ([`Due::receiver`]): the token.
pub type Delivered = BTreeMap<String, String>;

/// Past this many entries the memo starts afresh (pods that are gone leave theirs behind);
/// the cost is one more push each.
const DELIVERED_LIMIT: usize = 1024;

static DELIVERED: LazyLock<Mutex<Delivered>> = LazyLock::new(Mutex::default);

/// The rebuilds to deliver: pods that carry rebuild markers, have an address and are not
/// being deleted, of instances that are neither `primary` nor among the `streaming`, unless
/// that rebuild was `delivered` to the same pod and containers already.
pub fn due(pods: &[Pod], primary: Option<&str>, streaming: &[String], delivered: &Delivered) -> Vec<Due> {
    pods.iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter_map(|pod| {
            let instance = pod.labels().get(names::LABEL_PG_INSTANCE)?.clone();
            if primary == Some(instance.as_str()) || streaming.contains(&instance) {
                return None;
            }
            let status = pod.status.as_ref()?;
            let address = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
            let carried = markers::owned(pod.metadata.annotations.as_ref(), &markers::POD_MARKERS);
            let markers = RebuildMarkers::wanted(&Markers::from_annotations(&carried))?;
            let restarts: i32 = status.container_statuses.iter().flatten().map(|c| c.restart_count).sum();
            let receiver = format!("{}/{restarts}", pod.metadata.uid.as_deref().unwrap_or_default());
            (delivered.get(&receiver) != markers.rebuild.as_ref()).then_some(Due {
                instance,
                address,
                markers,
                receiver,
            })
        })
        .collect()
}

/// [`due`], against what this process has delivered.
pub fn due_now(pods: &[Pod], primary: Option<&str>, streaming: &[String]) -> Vec<Due> {
    due(pods, primary, streaming, &DELIVERED.lock().unwrap_or_else(PoisonError::into_inner))
}

fn remember(due: &Due) {
    let mut delivered = DELIVERED.lock().unwrap_or_else(PoisonError::into_inner);
    if delivered.len() >= DELIVERED_LIMIT {
        delivered.clear();
    }
    delivered.insert(due.receiver.clone(), due.markers.rebuild.clone().unwrap_or_default());
}

/// Pushes every due rebuild at once, each bounded by the channel's timeout. Failures are
/// expected while an instance is cut off, and wait for the next reconcile.
pub async fn deliver(ctx: &Context, owner: &Owner, due: &[Due]) {
    if due.is_empty() {
        return;
    }
    let tls = match ClusterTls::read(&ctx.client, &owner.namespace, &owner.name).await {
        Ok(tls) => tls,
        Err(error) => {
            return debug!(%error, "no rebuild delivered: the cluster's certificate is not readable");
        }
    };
    join_all(due.iter().map(|due| async {
        let server_name = names::pod_fqdn(&owner.name, &due.instance, &owner.namespace);
        let to = Endpoint { address: &due.address, port: PORT, server_name: &server_name };
        let sent = match tls.client_config() {
            Ok(config) => instance_channel::push_rebuild(config, &to, &due.markers).await,
            Err(error) => Err(error),
        };
        match sent {
            Ok(()) => {
                remember(due);
                info!(instance = due.instance, markers = ?due.markers, "pending rebuild delivered")
            }
            Err(error) => debug!(instance = due.instance, %error, "pending rebuild not delivered"),
        }
    }))
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pod(instance: &str, ip: Option<&str>, rebuild: Option<(&str, &str)>) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(names::pod(instance));
        pod.metadata.uid = Some(format!("uid-{instance}"));
        pod.metadata.labels = Some(BTreeMap::from([(names::LABEL_PG_INSTANCE.into(), instance.into())]));
        let mut annotations = BTreeMap::from([("other/x".to_string(), "y".to_string())]);
        if let Some((token, source)) = rebuild {
            annotations.insert(markers::REBUILD.into(), token.into());
            annotations.insert(markers::REBUILD_SOURCE.into(), source.into());
        }
        pod.metadata.annotations = Some(annotations);
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            pod_ip: ip.map(str::to_owned),
            ..Default::default()
        });
        pod
    }

    #[test]
    fn only_a_reachable_instance_out_of_the_stream_is_sent_its_rebuild() {
        let pods = [
            pod("demo-1", Some("10.0.0.1"), Some(("t-1", "demo-2"))), // the lost primary: due
            pod("demo-2", Some("10.0.0.2"), Some(("t-0", "demo-1"))), // the primary
            pod("demo-3", Some("10.0.0.3"), Some(("t-0", "demo-1"))), // streaming
            pod("demo-4", None, Some(("t-1", "demo-2"))),             // no address yet
            pod("demo-5", Some("10.0.0.5"), None),                    // nothing asked
        ];
        let due = due(&pods, Some("demo-2"), &["demo-3".to_string()], &Delivered::new());
        assert_eq!(
            due,
            vec![Due {
                instance: "demo-1".into(),
                address: "10.0.0.1".into(),
                markers: RebuildMarkers {
                    rebuild: Some("t-1".into()),
                    rebuild_source: Some("demo-2".into())
                },
                receiver: "uid-demo-1/0".into(),
            }]
        );
    }

    #[test]
    fn a_rebuild_goes_once_per_container_start_and_again_for_a_newer_token() {
        let mut pods = [pod("demo-1", Some("10.0.0.1"), Some(("t-1", "demo-2")))];
        let delivered = Delivered::from([("uid-demo-1/0".to_string(), "t-1".to_string())]);
        assert_eq!(due(&pods, Some("demo-2"), &[], &delivered), vec![]);
        // A newer request for the same pod goes.
        let newer = [pod("demo-1", Some("10.0.0.1"), Some(("t-2", "demo-2")))];
        assert_eq!(due(&newer, Some("demo-2"), &[], &delivered).len(), 1);
        // So does the same one to a restarted container, whose file may still be stale.
        let restarted =
            k8s_openapi::api::core::v1::ContainerStatus { restart_count: 1, ..Default::default() };
        pods[0].status.as_mut().unwrap().container_statuses = Some(vec![restarted]);
        assert_eq!(due(&pods, Some("demo-2"), &[], &delivered)[0].receiver, "uid-demo-1/1");
    }

    #[test]
    fn a_pod_being_deleted_or_a_half_request_is_left_alone() {
        let mut leaving = pod("demo-1", Some("10.0.0.1"), Some(("t-1", "demo-2")));
        leaving.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
        let mut half = pod("demo-3", Some("10.0.0.3"), None);
        half.metadata.annotations = Some(BTreeMap::from([(markers::REBUILD.to_string(), "t-1".to_string())]));
        assert_eq!(due(&[leaving, half], Some("demo-2"), &[], &Delivered::new()), vec![]);
    }

    #[test]
    fn with_no_primary_known_every_marked_instance_out_of_the_stream_is_due() {
        let pods = [pod("demo-1", Some("10.0.0.1"), Some(("t-1", "demo-2")))];
        assert_eq!(due(&pods, None, &[], &Delivered::new()).len(), 1);
    }
}
