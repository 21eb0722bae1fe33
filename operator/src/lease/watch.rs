//! The operator's watch on primary Leases: it feeds the [`Tracker`] (the age of each Lease on
//! the operator's own clock) and wakes the PgCluster controller when a Lease turns stale or
//! expires, so a lost primary is looked at within a fraction of a second instead of at the
//! next periodic observation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio::sync::mpsc;
use tracing::warn;

use super::{LABEL_LEASE, LABEL_LEASE_PRIMARY, SKEW_MARGIN, STALE_AFTER, TTL, Tracker, api::holder_of};
use crate::crd::PgCluster;
use crate::runtime::context::Context;

/// How often ages are compared with the stale and expiry thresholds.
const TICK: Duration = Duration::from_millis(250);

/// The PgCluster a primary Lease belongs to (its name is `<cluster>-primary`).
pub fn cluster_of(key: &str) -> Option<ObjectRef<PgCluster>> {
    let (namespace, lease) = key.split_once('/')?;
    let cluster = lease.strip_suffix("-primary")?;
    Some(ObjectRef::new(cluster).within(namespace))
}

/// Runs until the operator stops. `wake` receives the clusters to reconcile now.
pub async fn run(ctx: Arc<Context>, wake: mpsc::Sender<ObjectRef<PgCluster>>) {
    let api: Api<Lease> = ctx.scoped();
    let config = watcher::Config::default().labels(&format!("{LABEL_LEASE}={LABEL_LEASE_PRIMARY}"));
    let tracker = &ctx.leases;
    let events = watcher(api, config).for_each(|event| async move {
        match event {
            Ok(watcher::Event::Apply(lease) | watcher::Event::InitApply(lease)) => record(tracker, &lease),
            Ok(watcher::Event::Delete(lease)) => {
                tracker.forget(&key_of(&lease));
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(error) => warn!(%error, "primary lease watch failed; retrying"),
        }
    });
    let ticks = async {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let mut due = tracker.aged_between(STALE_AFTER, STALE_AFTER + TICK, now);
            due.extend(tracker.aged_between(TTL + SKEW_MARGIN, TTL + SKEW_MARGIN + TICK, now));
            for cluster in due.iter().filter_map(|key| cluster_of(key)) {
                if wake.send(cluster).await.is_err() {
                    return;
                }
            }
        }
    };
    tokio::select! {
        () = events => {}
        () = ticks => {}
    }
}

fn key_of(lease: &Lease) -> String {
    format!("{}/{}", lease.namespace().unwrap_or_default(), lease.name_any())
}

fn record(tracker: &Tracker, lease: &Lease) {
    let version = lease.resource_version().unwrap_or_default();
    tracker.record(&key_of(lease), holder_of(lease), &version, Instant::now());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_key_names_its_cluster() {
        let cluster = cluster_of("db/demo-primary").unwrap();
        assert_eq!(cluster.name, "demo");
        assert_eq!(cluster.namespace.as_deref(), Some("db"));
        assert!(cluster_of("db/other-lease").is_none());
        assert!(cluster_of("nonamespace").is_none());
    }
}
