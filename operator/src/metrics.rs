//! Prometheus metrics, all under the `relevo_` prefix. Labels are bounded: controller names
//! and error kinds are fixed sets; instance series exist only for instances that exist, and
//! are removed when an instance goes away or its cluster is deleted.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    Ok,
    Error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub controller: &'static str,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    /// [`crate::error::Error::metric_label`]: the variant, never the message.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

/// A finished switchover: two fixed sets of values.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SwitchoverLabels {
    /// `planned` or `failover`.
    pub mode: &'static str,
    /// `completed` or `failed`.
    pub outcome: &'static str,
}

/// One request of the operator to the Kubernetes API: its verb, a fixed set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or `other`.
    pub verb: &'static str,
}

impl ApiRequestLabels {
    /// The verb of a request, as the apiserver would name it.
    pub fn of<B>(request: &http::Request<B>) -> Self {
        let query = request.uri().query().unwrap_or_default();
        let watch = query.split('&').any(|pair| pair == "watch=true" || pair == "watch=1");
        let verb = match *request.method() {
            http::Method::GET if watch => "watch",
            // A collection GET (no name after the resource) is a list; telling them apart
            // needs the path's shape, so both count as reads of the same kind here.
            http::Method::GET => "get",
            http::Method::POST => "create",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE => "delete",
            _ => "other",
        };
        Self { verb }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    pub namespace: String,
    pub cluster: String,
    pub instance: String,
}

/// Every metric the operator exports, registered once at start.
#[derive(Clone)]
pub struct Metrics {
    reconciles: Family<ReconcileLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
    is_primary: Family<InstanceLabels, Gauge>,
    replay_lag_bytes: Family<InstanceLabels, Gauge>,
    switchover_duration: Family<SwitchoverLabels, Histogram>,
    failovers: Counter,
    leading: Gauge,
    api_requests: Family<ApiRequestLabels, Counter>,
    /// The instance series that exist, so that a cluster's can all be removed.
    instances: Arc<Mutex<HashSet<InstanceLabels>>>,
    /// The clusters a re-list of PgClusters has shown so far (`Some` while one runs).
    relist: Arc<Mutex<Option<HashSet<ClusterKey>>>>,
}

/// `(namespace, name)` of a PgCluster.
type ClusterKey = (String, String);

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(|| {
                // 5 ms .. ~20 s: a reconcile is API calls plus one query per instance.
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 12))
            }),
            is_primary: Family::default(),
            replay_lag_bytes: Family::default(),
            switchover_duration: Family::new_with_constructor(|| {
                // 0.25 s .. ~4 min: a planned switchover takes seconds, a failover with a
                // rebuild up to minutes.
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.25, 2.0, 11))
            }),
            failovers: Counter::default(),
            leading: Gauge::default(),
            api_requests: Family::default(),
            instances: Arc::default(),
            relist: Arc::default(),
        };
        registry.register("reconciles", "Reconciles by controller and outcome", metrics.reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconcile errors by controller and kind",
            metrics.errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            metrics.duration.clone(),
        );
        registry.register(
            "instance_is_primary",
            "1 when PostgreSQL reports the instance is not in recovery",
            metrics.is_primary.clone(),
        );
        registry.register(
            "instance_replay_lag_bytes",
            "Bytes of WAL a standby has yet to replay",
            metrics.replay_lag_bytes.clone(),
        );
        registry.register(
            "switchover_duration_seconds",
            "Time from Pending to Completed or Failed, by mode and outcome",
            metrics.switchover_duration.clone(),
        );
        registry.register(
            "failovers",
            "Automatic failovers started (Switchovers of mode Failover created by the operator)",
            metrics.failovers.clone(),
        );
        registry.register(
            "leading",
            "1 while this replica holds the relevo-operator Lease and runs the controllers, 0 while it stands by",
            metrics.leading.clone(),
        );
        registry.register(
            "api_requests",
            "Requests of the operator to the Kubernetes API, by verb (a watch counts once, when it starts)",
            metrics.api_requests.clone(),
        );
        metrics
    }

    /// Counts one request to the Kubernetes API ([`crate::operator`]'s client layer).
    pub fn api_request<B>(&self, request: &http::Request<B>) {
        self.api_requests.get_or_create(&ApiRequestLabels::of(request)).inc();
    }

    pub fn switchover_finished(&self, failover: bool, completed: bool, seconds: f64) {
        let labels = SwitchoverLabels {
            mode: if failover { "failover" } else { "planned" },
            outcome: if completed { "completed" } else { "failed" },
        };
        self.switchover_duration.get_or_create(&labels).observe(seconds);
    }

    pub fn set_leading(&self, leading: bool) {
        self.leading.set(i64::from(leading));
    }

    pub fn failover_started(&self) {
        self.failovers.inc();
    }

    pub fn reconciled(&self, controller: &'static str, elapsed: Duration, error_kind: Option<&'static str>) {
        let outcome = if error_kind.is_some() { Outcome::Error } else { Outcome::Ok };
        self.reconciles.get_or_create(&ReconcileLabels { controller, outcome }).inc();
        if let Some(kind) = error_kind {
            self.errors.get_or_create(&ErrorLabels { controller, kind }).inc();
        }
        self.duration.get_or_create(&ControllerLabels { controller }).observe(elapsed.as_secs_f64());
    }

    /// Sets the gauges of one instance; `None` values remove the series (no stale numbers).
    pub fn instance(&self, labels: InstanceLabels, is_primary: Option<bool>, replay_lag_bytes: Option<i64>) {
        match is_primary {
            Some(primary) => {
                self.is_primary.get_or_create(&labels).set(i64::from(primary));
            }
            None => {
                self.is_primary.remove(&labels);
            }
        }
        match replay_lag_bytes {
            Some(lag) => {
                self.replay_lag_bytes.get_or_create(&labels).set(lag);
            }
            None => {
                self.replay_lag_bytes.remove(&labels);
            }
        }
        let mut instances = locked(&self.instances);
        if is_primary.is_none() && replay_lag_bytes.is_none() {
            instances.remove(&labels);
        } else {
            instances.insert(labels);
        }
    }

    /// Removes every instance series of a cluster except `keep`, after a scale-down.
    pub fn retain_instances(&self, namespace: &str, cluster: &str, keep: &[String]) {
        let gone: Vec<InstanceLabels> = locked(&self.instances)
            .iter()
            .filter(|l| l.namespace == namespace && l.cluster == cluster && !keep.contains(&l.instance))
            .cloned()
            .collect();
        for labels in gone {
            self.instance(labels, None, None);
        }
    }

    /// Removes every series of a deleted cluster.
    pub fn forget_cluster(&self, namespace: &str, cluster: &str) {
        self.retain_instances(namespace, cluster, &[]);
    }

    /// A re-list of PgClusters starts: a cluster deleted while the watch was broken shows only
    /// by its absence from it.
    pub fn relist_started(&self) {
        *locked(&self.relist) = Some(HashSet::new());
    }

    pub fn relist_saw(&self, (namespace, cluster): ClusterKey) {
        if let Some(seen) = locked(&self.relist).as_mut() {
            seen.insert((namespace, cluster));
        }
    }

    /// The re-list is complete: forgets every cluster it did not show.
    pub fn relist_done(&self) {
        let Some(seen) = locked(&self.relist).take() else { return };
        let gone: HashSet<ClusterKey> = locked(&self.instances)
            .iter()
            .map(|l| (l.namespace.clone(), l.cluster.clone()))
            .filter(|key| !seen.contains(key))
            .collect();
        for (namespace, cluster) in gone {
            self.forget_cluster(&namespace, &cluster);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn reconciles_and_errors_are_counted_with_bounded_labels() {
        let mut registry = Registry::with_prefix("relevo");
        let metrics = Metrics::register(&mut registry);
        metrics.reconciled("pgcluster", Duration::from_millis(20), None);
        metrics.reconciled("pgcluster", Duration::from_millis(20), Some("kube"));
        let text = render(&registry);
        assert!(text.contains(r#"relevo_reconciles_total{controller="pgcluster",outcome="Ok"} 1"#), "{text}");
        assert!(
            text.contains(r#"relevo_reconcile_errors_total{controller="pgcluster",kind="kube"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("relevo_reconcile_duration_seconds_count{controller=\"pgcluster\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn switchovers_and_failovers_are_measured() {
        let mut registry = Registry::with_prefix("relevo");
        let metrics = Metrics::register(&mut registry);
        metrics.switchover_finished(false, true, 1.5);
        metrics.failover_started();
        let text = render(&registry);
        assert!(
            text.contains(
                r#"relevo_switchover_duration_seconds_count{mode="planned",outcome="completed"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("relevo_failovers_total 1"), "{text}");
    }

    #[test]
    fn instance_series_disappear_with_their_instance() {
        let mut registry = Registry::with_prefix("relevo");
        let metrics = Metrics::register(&mut registry);
        let labels = |instance: &str| InstanceLabels {
            namespace: "db".into(),
            cluster: "demo".into(),
            instance: instance.into(),
        };
        metrics.instance(labels("demo-1"), Some(true), None);
        metrics.instance(labels("demo-2"), Some(false), Some(4096));
        assert!(render(&registry).contains(r#"instance="demo-2"} 4096"#));
        metrics.retain_instances("db", "demo", &["demo-1".to_string()]);
        let text = render(&registry);
        assert!(!text.contains("demo-2"), "{text}");
        assert!(
            text.contains(r#"relevo_instance_is_primary{namespace="db",cluster="demo",instance="demo-1"} 1"#)
        );
    }

    #[test]
    fn a_deleted_cluster_leaves_no_series() {
        let mut registry = Registry::with_prefix("relevo");
        let metrics = Metrics::register(&mut registry);
        let labels = |cluster: &str, instance: &str| InstanceLabels {
            namespace: "db".into(),
            cluster: cluster.into(),
            instance: instance.into(),
        };
        metrics.instance(labels("gone", "gone-1"), Some(true), None);
        metrics.instance(labels("gone", "gone-2"), Some(false), Some(0));
        metrics.instance(labels("kept", "kept-1"), Some(true), None);
        metrics.forget_cluster("db", "gone");
        let text = render(&registry);
        assert!(!text.contains("gone"), "{text}");
        assert!(text.contains(r#"cluster="kept",instance="kept-1"} 1"#), "{text}");
    }

    #[test]
    fn a_relist_forgets_the_clusters_it_no_longer_shows() {
        let mut registry = Registry::with_prefix("relevo");
        let metrics = Metrics::register(&mut registry);
        let labels = |cluster: &str| InstanceLabels {
            namespace: "db".into(),
            cluster: cluster.into(),
            instance: format!("{cluster}-1"),
        };
        metrics.instance(labels("a"), Some(true), None);
        metrics.instance(labels("b"), Some(true), None);
        metrics.relist_started();
        metrics.relist_saw(("db".into(), "a".into()));
        metrics.relist_done();
        let text = render(&registry);
        assert!(text.contains(r#"instance="a-1"} 1"#), "{text}");
        assert!(!text.contains("b-1"), "deleted while the watch was down: {text}");
    }

    #[test]
    fn api_requests_are_counted_by_verb() {
        let mut registry = Registry::with_prefix("relevo");
        let metrics = Metrics::register(&mut registry);
        let request = |method: http::Method, uri: &str| {
            http::Request::builder().method(method).uri(uri).body(()).unwrap()
        };
        metrics.api_request(&request(
            http::Method::GET,
            "/api/v1/namespaces/db/pods?watch=true&timeoutSeconds=290",
        ));
        metrics.api_request(&request(http::Method::GET, "/api/v1/namespaces/db/pods?labelSelector=a%3Db"));
        metrics.api_request(&request(http::Method::PATCH, "/apis/apps/v1/namespaces/db/statefulsets/pg-1"));
        metrics.api_request(&request(http::Method::PATCH, "/apis/apps/v1/namespaces/db/statefulsets/pg-2"));
        let text = render(&registry);
        assert!(text.contains(r#"relevo_api_requests_total{verb="watch"} 1"#), "{text}");
        assert!(text.contains(r#"relevo_api_requests_total{verb="get"} 1"#), "{text}");
        assert!(text.contains(r#"relevo_api_requests_total{verb="patch"} 2"#), "{text}");
    }
}
