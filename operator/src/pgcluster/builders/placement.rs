//! Where a cluster's pods go relative to each other: the instances spread over nodes, and
//! the repo host and Redis away from the primary, so that losing one node loses at most one
//! copy of the data and never the primary together with its backups or its backup records.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, PodAffinityTerm, PodAntiAffinity, WeightedPodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::crd::pgcluster::InstanceSpread;
use crate::protocol::names::{self, RoleLabel};

/// Nodes are told apart by their hostname label, which every kubelet sets.
const NODE_TOPOLOGY: &str = "kubernetes.io/hostname";

/// Anti-affinity between the instances of one cluster: preferred (the scheduler still
/// places them when there are fewer nodes than instances) or required.
pub fn instance_affinity(cluster: &str, spread: InstanceSpread) -> Affinity {
    let term = term(names::postgres_selector(cluster));
    let anti_affinity = match spread {
        InstanceSpread::Preferred => PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![weighted(term)]),
            ..PodAntiAffinity::default()
        },
        InstanceSpread::Required => PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term]),
            ..PodAntiAffinity::default()
        },
    };
    Affinity { pod_anti_affinity: Some(anti_affinity), ..Affinity::default() }
}

/// Preferred anti-affinity to the cluster's current primary, for the repo host and Redis.
/// Only preferred: on one node they must still run, and the primary moves with every
/// switchover while these pods stay where they are until they are rescheduled.
pub fn away_from_primary(cluster: &str) -> Affinity {
    let primary = BTreeMap::from([
        (names::LABEL_CLUSTER.to_string(), cluster.to_string()),
        (names::LABEL_ROLE.to_string(), RoleLabel::Primary.as_str().to_string()),
    ]);
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![weighted(term(primary))]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// Preferred anti-affinity between the pods `match_labels` selects (the pooler's): losing
/// one node then loses at most one of them while there are nodes enough, and the clients
/// of the others keep their connections.
pub fn spread_over_nodes(match_labels: BTreeMap<String, String>) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![weighted(term(match_labels))]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn term(match_labels: BTreeMap<String, String>) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(LabelSelector { match_labels: Some(match_labels), ..LabelSelector::default() }),
        topology_key: NODE_TOPOLOGY.into(),
        ..PodAffinityTerm::default()
    }
}

fn weighted(term: PodAffinityTerm) -> WeightedPodAffinityTerm {
    WeightedPodAffinityTerm { weight: 100, pod_affinity_term: term }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(term: &PodAffinityTerm) -> BTreeMap<String, String> {
        term.label_selector.clone().unwrap().match_labels.unwrap()
    }

    #[test]
    fn instances_prefer_distinct_nodes_by_default() {
        let anti = instance_affinity("demo", InstanceSpread::default()).pod_anti_affinity.unwrap();
        assert_eq!(anti.required_during_scheduling_ignored_during_execution, None);
        let preferred = anti.preferred_during_scheduling_ignored_during_execution.unwrap();
        assert_eq!(preferred.len(), 1);
        assert_eq!(preferred[0].weight, 100);
        let term = &preferred[0].pod_affinity_term;
        assert_eq!(term.topology_key, "kubernetes.io/hostname");
        assert_eq!(labels(term), names::postgres_selector("demo"));
    }

    #[test]
    fn required_spread_never_shares_a_node() {
        let anti = instance_affinity("demo", InstanceSpread::Required).pod_anti_affinity.unwrap();
        assert_eq!(anti.preferred_during_scheduling_ignored_during_execution, None);
        let required = anti.required_during_scheduling_ignored_during_execution.unwrap();
        assert_eq!(required.len(), 1);
        assert_eq!(required[0].topology_key, "kubernetes.io/hostname");
        assert_eq!(labels(&required[0]), names::postgres_selector("demo"));
    }

    #[test]
    fn others_avoid_only_this_clusters_primary() {
        let anti = away_from_primary("demo").pod_anti_affinity.unwrap();
        assert_eq!(anti.required_during_scheduling_ignored_during_execution, None);
        let preferred = anti.preferred_during_scheduling_ignored_during_execution.unwrap();
        let term = &preferred[0].pod_affinity_term;
        assert_eq!(term.topology_key, "kubernetes.io/hostname");
        assert_eq!(
            labels(term),
            BTreeMap::from([
                ("relevo.dev/cluster".to_string(), "demo".to_string()),
                ("relevo.dev/role".to_string(), "primary".to_string()),
            ])
        );
    }
}
