//! Draining the primary's node: a PodDisruptionBudget holds the primary pod (it may not be
//! evicted while it carries the primary label), and when its node is cordoned relevo switches
//! over first, to a ready standby on a node that stays. Once the role label has moved, the
//! budget no longer covers the old pod and the drain goes on. No commit is lost: it is a
//! planned switchover.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use tracing::{info, warn};

use super::builders::Owner;
use crate::crd::{Switchover, SwitchoverMode, SwitchoverSpec};
use crate::error::Result;
use crate::protocol::names;
use crate::runtime::context::Context;
use crate::runtime::conventions::is_conflict;
use crate::runtime::kube_error;

/// The budget that keeps the primary pod from being evicted.
pub fn primary_budget(owner: &Owner) -> PodDisruptionBudget {
    let mut selector = names::postgres_selector(&owner.name);
    selector.insert(names::LABEL_ROLE.into(), names::RoleLabel::Primary.as_str().into());
    PodDisruptionBudget {
        metadata: owner.child_meta(format!("{}-primary", owner.name), "primary-budget"),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(0)),
            selector: Some(LabelSelector { match_labels: Some(selector), ..LabelSelector::default() }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// One instance pod as the drain decision sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub instance: String,
    pub node: Option<String>,
    pub primary: bool,
    pub ready: bool,
}

/// The standby to switch over to when the primary's node is cordoned: ready, on a node that
/// is not cordoned. `None` when the primary's node stays, or no standby can take over.
pub fn drain_target(pods: &[Placed], cordoned: &BTreeMap<String, bool>) -> Option<String> {
    let is_cordoned = |node: &Option<String>| node.as_ref().is_some_and(|n| cordoned.get(n) == Some(&true));
    let primary = pods.iter().find(|p| p.primary)?;
    if !is_cordoned(&primary.node) {
        return None;
    }
    let mut candidates: Vec<&Placed> = pods
        .iter()
        .filter(|p| {
            !p.primary && p.ready && p.node.is_some() && !is_cordoned(&p.node) && p.node != primary.node
        })
        .collect();
    candidates.sort_by(|a, b| a.instance.cmp(&b.instance));
    candidates.first().map(|p| p.instance.clone())
}

/// Starts a planned Switchover away from a cordoned node, unless one is already active.
pub async fn check(ctx: &Context, owner: &Owner, pods: &[Pod], primary: Option<&str>) -> Result<()> {
    let Some(primary) = primary else { return Ok(()) };
    let placed: Vec<Placed> = pods
        .iter()
        .filter_map(|pod| {
            let instance = pod.labels().get(names::LABEL_PG_INSTANCE)?.clone();
            Some(Placed {
                primary: instance == primary,
                instance,
                node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                ready: crate::runtime::conventions::is_ready(pod),
            })
        })
        .collect();
    let Some(primary_node) = placed.iter().find(|p| p.primary).and_then(|p| p.node.clone()) else {
        return Ok(());
    };
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let unschedulable =
        |node: Option<Node>| node.and_then(|n| n.spec).and_then(|s| s.unschedulable) == Some(true);
    let primary_cordoned =
        unschedulable(nodes.get_opt(&primary_node).await.map_err(kube_error("reading a node"))?);
    if !primary_cordoned {
        return Ok(());
    }
    let mut cordoned = BTreeMap::from([(primary_node.clone(), true)]);
    for node in placed.iter().filter_map(|p| p.node.clone()) {
        if let std::collections::btree_map::Entry::Vacant(slot) = cordoned.entry(node) {
            let read = nodes.get_opt(slot.key()).await.map_err(kube_error("reading a node"))?;
            slot.insert(unschedulable(read));
        }
    }
    let Some(target) = drain_target(&placed, &cordoned) else { return Ok(()) };
    let api: Api<Switchover> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let all = ctx.caches.switchovers(&owner.namespace).await?;
    if !crate::switchover::observe::active_of(all.iter().map(AsRef::as_ref), &owner.name).is_empty() {
        return Ok(());
    }
    let name = format!("{}-drain-{}", owner.name, chrono::Utc::now().timestamp());
    let mut switchover = Switchover::new(
        &name,
        SwitchoverSpec {
            cluster: owner.name.clone(),
            target_instance: Some(target.clone()),
            mode: SwitchoverMode::Planned,
        },
    );
    switchover.metadata = owner.child_meta(&name, "switchover");
    let params = PostParams {
        field_manager: Some(crate::runtime::conventions::FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&params, &switchover).await {
        Ok(_) => {
            info!(switchover = %name, node = %primary_node, %target, "primary's node is cordoned: switching over")
        }
        Err(error) if is_conflict(&error) => {}
        Err(error) => warn!(%error, "could not create the drain Switchover"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(instance: &str, node: &str, primary: bool, ready: bool) -> Placed {
        Placed { instance: instance.into(), node: Some(node.into()), primary, ready }
    }

    #[test]
    fn a_cordoned_primary_node_moves_the_primary_to_a_standby_elsewhere() {
        let pods = vec![
            placed("pg-1", "a", true, true),
            placed("pg-2", "a", false, true),
            placed("pg-3", "b", false, true),
        ];
        let cordoned = BTreeMap::from([("a".to_string(), true), ("b".to_string(), false)]);
        assert_eq!(drain_target(&pods, &cordoned).as_deref(), Some("pg-3"));
        // Not cordoned: nothing to do.
        let open = BTreeMap::from([("a".to_string(), false), ("b".to_string(), false)]);
        assert_eq!(drain_target(&pods, &open), None);
        // No ready standby on another schedulable node (a single node, or all cordoned).
        let all = BTreeMap::from([("a".to_string(), true), ("b".to_string(), true)]);
        assert_eq!(drain_target(&pods, &all), None);
        let unready = vec![placed("pg-1", "a", true, true), placed("pg-3", "b", false, false)];
        assert_eq!(drain_target(&unready, &cordoned), None);
    }

    #[test]
    fn the_budget_holds_only_the_primary() {
        let owner = Owner::of(&crate::pgcluster::test_fixtures::cluster_from_yaml("spec: {}")).unwrap();
        let budget = primary_budget(&owner);
        let spec = budget.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(0)));
        let labels = spec.selector.unwrap().match_labels.unwrap();
        assert_eq!(labels["relevo.dev/role"], "primary");
        assert_eq!(labels["relevo.dev/cluster"], "demo");
    }
}
