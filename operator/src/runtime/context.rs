//! What every reconcile shares, infrastructure only: the client, the parsed configuration,
//! metrics, the Event recorder, the readiness flag served on /readyz, the watch caches and the
//! primary Leases' ages.
//! What a controller remembers between reconciles is its own (e.g. the PgCluster
//! controller's failover clock), never here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;

use super::cache::Caches;
use crate::config::RunArgs;
use crate::crd::PgCluster;
use crate::metrics::Metrics;

/// Name of the operator in Events and as the reporting controller.
pub const CONTROLLER_NAME: &str = "relevo-operator";

pub struct Context {
    pub client: Client,
    pub config: RunArgs,
    pub metrics: Metrics,
    pub recorder: Recorder,
    pub readiness: Readiness,
    pub caches: Caches,
    /// The age of every primary Lease on the operator's own clock (fed by the Lease watch).
    pub leases: crate::lease::Tracker,
    /// Clusters to reconcile now (a primary Lease turned stale, a role move ended); the
    /// PgCluster controller takes the receiver when it starts.
    pub cluster_wake: ClusterWake,
    /// When this operator started leading (the Context is made right after the operator
    /// Lease is acquired); the switchover machine's timeouts count from no earlier than this.
    pub leading_since: chrono::DateTime<chrono::Utc>,
    /// Pod IPs whose last PostgreSQL probe went unanswered (they get a short timeout).
    pub unanswered: crate::postgres::probe::Unanswered,
}

type WakeReceiver = tokio::sync::mpsc::Receiver<ObjectRef<PgCluster>>;

/// The channel to the PgCluster controller from the Lease watcher and the Switchover
/// controller.
pub struct ClusterWake {
    pub sender: tokio::sync::mpsc::Sender<ObjectRef<PgCluster>>,
    receiver: std::sync::Mutex<Option<WakeReceiver>>,
}

impl Default for ClusterWake {
    fn default() -> Self {
        let (sender, receiver) = tokio::sync::mpsc::channel(256);
        Self { sender, receiver: std::sync::Mutex::new(Some(receiver)) }
    }
}

impl ClusterWake {
    /// Asks for `cluster` to be reconciled now; a full channel drops the wish (the cluster's
    /// own timer still comes).
    pub fn wake(&self, namespace: &str, cluster: &str) {
        let _ = self.sender.try_send(ObjectRef::new(cluster).within(namespace));
    }

    /// The receiving end, once.
    pub fn take(&self) -> Option<WakeReceiver> {
        self.receiver.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

impl Context {
    /// Also starts the watch caches, on the current tokio runtime.
    pub fn new(client: Client, config: RunArgs, metrics: Metrics, readiness: Readiness) -> Arc<Self> {
        let reporter = Reporter { controller: CONTROLLER_NAME.into(), instance: config.pod_name.clone() };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            caches: Caches::start(&client, &config),
            client,
            config,
            metrics,
            readiness,
            leases: Default::default(),
            cluster_wake: Default::default(),
            leading_since: chrono::Utc::now(),
            unanswered: Default::default(),
        })
    }

    /// The API of `K` in the watched namespace, or in all ([`crate::runtime::scoped`]).
    pub fn scoped<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        super::api::scoped(&self.client, &self.config)
    }
}

/// Where this operator process stands; shared with the HTTP server (`/readyz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessStage {
    WaitingForCrds,
    /// The CRDs are served and another replica holds the operator Lease: this one is a hot
    /// standby, watching the Lease to take over.
    StandingBy,
    Leading,
}

/// The process's [`ProcessStage`]. Ready (for the Deployment) once the CRDs are served, leading or
/// not: a rollout of two replicas must not wait for the standby to lead.
#[derive(Clone)]
pub struct Readiness(Arc<AtomicU8>);

impl Default for Readiness {
    fn default() -> Self {
        Self(Arc::new(AtomicU8::new(ProcessStage::WaitingForCrds as u8)))
    }
}

impl Readiness {
    pub fn set(&self, stage: ProcessStage) {
        self.0.store(stage as u8, Ordering::Relaxed);
    }

    pub fn stage(&self) -> ProcessStage {
        match self.0.load(Ordering::Relaxed) {
            x if x == ProcessStage::Leading as u8 => ProcessStage::Leading,
            x if x == ProcessStage::StandingBy as u8 => ProcessStage::StandingBy,
            _ => ProcessStage::WaitingForCrds,
        }
    }
}
