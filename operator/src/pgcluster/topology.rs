//! Which instances should exist, which one bootstraps, which may be removed, and which
//! replication slots the primary must hold. Pure decisions for the controller.

use std::collections::BTreeSet;

use crate::crd::pgcluster::PgClusterSpec;
use crate::instance::plan::Bootstrap;
use crate::protocol::layout;

use crate::protocol::names;

/// WAL senders and slots beyond one per instance: pg_basebackup streams WAL over a second
/// connection while cloning, and a backup may hold another.
pub const SPARE_WAL_SENDERS: i64 = 2;

/// What the controller does about the instance set on this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Ordinals whose StatefulSet is applied, with their bootstrap mode.
    pub apply: Vec<(i32, Bootstrap)>,
    /// Instances whose StatefulSet is deleted (scale-down), highest first.
    pub remove: Vec<String>,
    /// Set when scale-down would remove the primary: it waits for a switchover.
    pub blocked_removal: Option<String>,
    /// Replication slots the primary must have: one per other desired instance.
    pub slots: BTreeSet<String>,
}

/// How the first instance of a new cluster gets its data.
pub fn first_bootstrap(spec: &PgClusterSpec) -> Bootstrap {
    if spec.bootstrap.recovery.is_some() { Bootstrap::Restore } else { Bootstrap::Initdb }
}

/// `existing` are instance names that have a StatefulSet; `current_primary` is the status';
/// `first` is how the first instance of a cluster that never had a primary gets its data
/// (initdb, or restore from another cluster's backup).
pub fn plan(
    cluster: &str,
    desired: i32,
    existing: &[String],
    current_primary: Option<&str>,
    first: Bootstrap,
) -> Topology {
    // Only the first instance of a cluster that never had a primary initialises (or
    // restores). Once a primary has been seen, every empty volume clones, including
    // instance 1's: a lost volume must never become a second, empty database.
    let bootstrap_of =
        |ordinal: i32| if ordinal == 1 && current_primary.is_none() { first } else { Bootstrap::Clone };
    let apply = (1..=desired).map(|ordinal| (ordinal, bootstrap_of(ordinal))).collect();

    let mut surplus: Vec<(i32, &String)> = existing
        .iter()
        .filter_map(|name| names::ordinal(cluster, name).map(|ordinal| (ordinal, name)))
        .filter(|(ordinal, _)| *ordinal > desired)
        .collect();
    surplus.sort_by_key(|(ordinal, _)| std::cmp::Reverse(*ordinal));
    let blocked_removal = surplus
        .iter()
        .find(|(_, name)| Some(name.as_str()) == current_primary)
        .map(|(_, name)| (*name).clone());
    let remove = surplus
        .into_iter()
        .filter(|(_, name)| Some(name.as_str()) != current_primary)
        .map(|(_, name)| name.clone())
        .collect();

    let slots = (1..=desired)
        .map(|ordinal| names::instance(cluster, ordinal))
        .filter(|instance| Some(instance.as_str()) != current_primary)
        .map(|instance| layout::slot_name(&instance))
        .collect();

    Topology { apply, remove, blocked_removal, slots }
}

/// Slots relevo created for instances of this cluster that no longer should exist. Slots
/// of other tools (not prefixed `relevo_`) are never touched.
pub fn stale_slots<'a>(cluster: &str, present: &'a [String], wanted: &BTreeSet<String>) -> Vec<&'a String> {
    let prefix = layout::slot_name(&format!("{cluster}-"));
    present.iter().filter(|slot| slot.starts_with(&prefix) && !wanted.contains(*slot)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn new_cluster_initialises_instance_one_and_clones_the_rest() {
        let topology = plan("demo", 3, &[], None, Bootstrap::Initdb);
        assert_eq!(topology.apply, [(1, Bootstrap::Initdb), (2, Bootstrap::Clone), (3, Bootstrap::Clone)]);
        assert!(topology.remove.is_empty());
    }

    #[test]
    fn a_cluster_from_a_backup_restores_instance_one_once() {
        let topology = plan("demo", 2, &[], None, Bootstrap::Restore);
        assert_eq!(topology.apply, [(1, Bootstrap::Restore), (2, Bootstrap::Clone)]);
        let topology = plan("demo", 2, &names(&["demo-1", "demo-2"]), Some("demo-1"), Bootstrap::Restore);
        assert_eq!(topology.apply, [(1, Bootstrap::Clone), (2, Bootstrap::Clone)]);
    }

    #[test]
    fn once_a_primary_exists_nobody_runs_initdb_again() {
        let topology = plan("demo", 2, &names(&["demo-1", "demo-2"]), Some("demo-2"), Bootstrap::Initdb);
        assert_eq!(topology.apply, [(1, Bootstrap::Clone), (2, Bootstrap::Clone)]);
    }

    #[test]
    fn scale_down_removes_the_highest_standbys() {
        let topology =
            plan("demo", 1, &names(&["demo-1", "demo-2", "demo-3"]), Some("demo-1"), Bootstrap::Initdb);
        assert_eq!(topology.remove, ["demo-3", "demo-2"]);
        assert_eq!(topology.blocked_removal, None);
        assert!(topology.slots.is_empty(), "a lone primary needs no slot");
    }

    #[test]
    fn scale_down_never_removes_the_primary() {
        let topology =
            plan("demo", 2, &names(&["demo-1", "demo-2", "demo-3"]), Some("demo-3"), Bootstrap::Initdb);
        assert_eq!(topology.remove, Vec::<String>::new());
        assert_eq!(topology.blocked_removal.as_deref(), Some("demo-3"));
    }

    #[test]
    fn other_clusters_objects_are_not_ours_to_remove() {
        let topology =
            plan("demo", 1, &names(&["demo-1", "demo-2-1", "demox-2"]), Some("demo-1"), Bootstrap::Initdb);
        assert!(topology.remove.is_empty());
    }

    #[test]
    fn primary_holds_a_slot_for_every_other_instance() {
        let topology = plan("demo", 3, &[], Some("demo-2"), Bootstrap::Initdb);
        assert_eq!(
            topology.slots,
            BTreeSet::from(["relevo_demo_1".to_string(), "relevo_demo_3".to_string()])
        );
    }

    #[test]
    fn only_our_own_stale_slots_are_dropped() {
        let present =
            names(&["relevo_demo_1", "relevo_demo_3", "relevo_demox_1", "barman", "relevo_demo_10"]);
        let wanted = BTreeSet::from(["relevo_demo_1".to_string()]);
        let stale = stale_slots("demo", &present, &wanted);
        assert_eq!(stale, [&present[1], &present[4]]);
    }
}
