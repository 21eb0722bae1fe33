//! The cluster's one role move, as the operator's ServiceAccount, against the real apiserver:
//! a claim made on a resourceVersion that is no longer current is refused (409), so of two
//! Switchovers claiming at once only one can hold the PgCluster's `relevo.dev/role-move`.

use relevo::crd::Switchover;
use relevo::switchover::role_move;

use super::*;

async fn create_switchover(admin: &Client, ns: &str, name: &str) {
    let api: Api<Switchover> = Api::namespaced(admin.clone(), ns);
    let switchover: Switchover = serde_json::from_value(serde_json::json!({
        "apiVersion": "relevo.dev/v1alpha1", "kind": "Switchover",
        "metadata": {"name": name},
        "spec": {"cluster": "gamma"},
    }))
    .unwrap();
    api.create(&PostParams::default(), &switchover).await.expect("Switchover accepted");
}

#[tokio::test]
async fn only_one_of_two_claims_on_the_same_version_wins() {
    let (admin, ns, ctx) = operator_bed("it-role-move").await;
    let ns = &ns;
    let cluster = create_cluster(&admin, ns, "gamma", serde_json::json!({})).await;
    create_switchover(&admin, ns, "so-a").await;
    create_switchover(&admin, ns, "so-b").await;
    let clusters: Api<PgCluster> = Api::namespaced(admin.clone(), ns);

    // Both decided on the same read of the PgCluster.
    let version = cluster.resource_version().unwrap();
    role_move::claim(&ctx, &cluster, "so-a", &version).await.expect("the first claim wins");
    let second = role_move::claim(&ctx, &cluster, "so-b", &version).await;
    match second {
        Err(relevo::error::Error::Kube { source, .. }) => {
            assert!(relevo::runtime::is_conflict(&source), "refused, but not as a conflict: {source}")
        }
        other => panic!("the second claim on a stale version was not refused: {other:?}"),
    }
    let now = clusters.get("gamma").await.unwrap();
    assert_eq!(role_move::holder_of(&now).as_deref(), Some("so-a"));
    let seen = role_move::observe(&ctx, &now, "so-b").await.unwrap();
    assert_eq!(seen.holder.as_deref(), Some("so-a"));
    assert!(seen.holder_active, "so-a has not ended");

    // Only the holder's release clears it.
    role_move::release(&ctx, ns, "gamma", "so-b").await;
    assert_eq!(role_move::holder_of(&clusters.get("gamma").await.unwrap()).as_deref(), Some("so-a"));
    role_move::release(&ctx, ns, "gamma", "so-a").await;
    let released = clusters.get("gamma").await.unwrap();
    assert_eq!(role_move::holder_of(&released), None);

    // A claim whose holder was deleted is not active: the next one may take it over.
    let version = released.resource_version().unwrap();
    role_move::claim(&ctx, &released, "so-b", &version).await.expect("a claim on the current version");
    Api::<Switchover>::namespaced(admin.clone(), ns)
        .delete("so-b", &Default::default())
        .await
        .expect("deleting so-b");
    let orphaned = role_move::observe(&ctx, &clusters.get("gamma").await.unwrap(), "so-a").await.unwrap();
    assert_eq!(orphaned.holder.as_deref(), Some("so-b"));
    assert!(!orphaned.holder_active, "a deleted holder is not active");
}
