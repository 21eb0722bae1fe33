//! Growing volumes as the operator's ServiceAccount: a larger `spec.storage.size` grows each
//! existing claim in place where its StorageClass allows expansion, keeps the StatefulSets'
//! immutable claim templates as they were created (so every later apply still succeeds), and
//! makes the cluster Degraded with the API server's refusal where the StorageClass does not
//! allow it, or when the spec asks less than a claim holds. The schema refuses another
//! StorageClass.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::json;

use super::*;

const EXPANDABLE: &str = "relevo-it-expandable";
const FIXED: &str = "relevo-it-fixed";

async fn storage_classes(admin: &Client) {
    let api: Api<StorageClass> = Api::all(admin.clone());
    for (name, expandable) in [(EXPANDABLE, true), (FIXED, false)] {
        let class: StorageClass = serde_json::from_value(json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name},
            "provisioner": "relevo.dev/integration-test",
            "allowVolumeExpansion": expandable,
        }))
        .unwrap();
        api.patch(name, &PatchParams::apply("relevo-integration-test").force(), &Patch::Apply(&class))
            .await
            .expect("StorageClass");
    }
}

async fn cluster_on(admin: &Client, ns: &str, name: &str, class: &str) -> Arc<PgCluster> {
    let api: Api<PgCluster> = Api::namespaced(admin.clone(), ns);
    let cluster: PgCluster = serde_json::from_value(json!({
        "apiVersion": "relevo.dev/v1alpha1", "kind": "PgCluster",
        "metadata": {"name": name},
        "spec": {"instances": 2, "storage": {"size": "1Gi", "storageClass": class}, "redis": {"managed": {}}},
    }))
    .unwrap();
    Arc::new(api.create(&PostParams::default(), &cluster).await.expect("PgCluster accepted"))
}

/// What the StatefulSet controller and a provisioner would have made (neither runs on the
/// bare apiserver): a Bound claim of `size` in `class`, labelled like the template's.
async fn bound_claim(admin: &Client, ns: &str, cluster: &str, name: &str, class: &str) {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), ns);
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"relevo.dev/cluster": cluster}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                 "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &claim).await.expect("volume claim");
    let bound = json!({"status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&bound)).await.expect("claim Bound");
}

async fn requested(admin: &Client, ns: &str, claim: &str) -> String {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), ns);
    let claim = api.get(claim).await.unwrap();
    relevo::pgcluster::volumes::requested(&claim).unwrap().to_owned()
}

async fn template_size(admin: &Client, ns: &str, statefulset: &str) -> String {
    let api: Api<StatefulSet> = Api::namespaced(admin.clone(), ns);
    let sts = api.get(statefulset).await.unwrap();
    relevo::pgcluster::volumes::template_size(Some(&sts)).unwrap()
}

/// Sets `spec.storage.size` as a user would, and returns the cluster as the API now has it.
async fn resize(admin: &Client, ns: &str, name: &str, size: &str) -> Result<Arc<PgCluster>, kube::Error> {
    let api: Api<PgCluster> = Api::namespaced(admin.clone(), ns);
    let patch = json!({"spec": {"storage": {"size": size}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(Arc::new)
}

#[tokio::test]
async fn a_larger_size_grows_the_claims_and_keeps_the_templates() {
    let operator = setup().await;
    let admin = Client::try_from(admin_config().await).unwrap();
    storage_classes(&admin).await;
    let ns = &namespace(&admin, "it-grow").await;
    let ctx = context(operator);
    let cluster = cluster_on(&admin, ns, "grow", EXPANDABLE).await;
    reconcile(cluster.clone(), ctx.clone()).await.expect("first reconcile");
    for instance in ["grow-1", "grow-2"] {
        bound_claim(&admin, ns, "grow", &format!("pgdata-{instance}-0"), EXPANDABLE).await;
    }

    let cluster = resize(&admin, ns, "grow", "2Gi").await.expect("a larger size is accepted");
    reconcile(cluster.clone(), ctx.clone()).await.expect("the reconcile after the resize succeeds");

    for instance in ["grow-1", "grow-2"] {
        assert_eq!(
            requested(&admin, ns, &format!("pgdata-{instance}-0")).await,
            "2Gi",
            "{instance}'s claim grew"
        );
        assert_eq!(template_size(&admin, ns, instance).await, "1Gi", "{instance}'s template is kept");
    }
    let degraded = degraded_now(&admin, ns, "grow").await;
    assert_ne!(degraded.reason, "VolumeExpansionRefused", "{degraded:?}");

    // Less than the claims hold: Degraded, and nothing shrinks.
    let cluster = resize(&admin, ns, "grow", "1Gi").await.expect("a smaller size is accepted");
    reconcile(cluster.clone(), ctx.clone()).await.expect("the reconcile after the shrink succeeds");
    assert_eq!(requested(&admin, ns, "pgdata-grow-1-0").await, "2Gi", "nothing shrinks");
    let degraded = degraded_now(&admin, ns, "grow").await;
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "VolumeShrinkRefused"));
    assert!(degraded.message.contains("spec.storage.size"), "{degraded:?}");

    // Another StorageClass is refused at apply, naming the field.
    let api: Api<PgCluster> = Api::namespaced(admin.clone(), ns);
    let move_class = json!({"spec": {"storage": {"storageClass": FIXED}}});
    let moved = api.patch("grow", &PatchParams::default(), &Patch::Merge(&move_class)).await;
    let refused = moved.expect_err("another StorageClass is refused");
    assert!(refused.to_string().contains("spec.storage.storageClass"), "{refused}");
    assert!(refused.to_string().contains("immutable"), "{refused}");
}

#[tokio::test]
async fn a_claim_its_storage_class_cannot_grow_degrades_the_cluster_and_changes_nothing() {
    let operator = setup().await;
    let admin = Client::try_from(admin_config().await).unwrap();
    storage_classes(&admin).await;
    let ns = &namespace(&admin, "it-fixed").await;
    let ctx = context(operator);
    let cluster = cluster_on(&admin, ns, "fixed", FIXED).await;
    reconcile(cluster.clone(), ctx.clone()).await.expect("first reconcile");
    bound_claim(&admin, ns, "fixed", "pgdata-fixed-1-0", FIXED).await;

    let cluster = resize(&admin, ns, "fixed", "2Gi").await.expect("a larger size is accepted");
    // The StatefulSet applies still succeed: the refusal is reported, not an error.
    reconcile(cluster.clone(), ctx.clone()).await.expect("the reconcile after the resize succeeds");

    assert_eq!(requested(&admin, ns, "pgdata-fixed-1-0").await, "1Gi", "the claim is unchanged");
    assert_eq!(template_size(&admin, ns, "fixed-1").await, "1Gi");
    let degraded = degraded_now(&admin, ns, "fixed").await;
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "VolumeExpansionRefused"));
    for part in ["spec.storage.size", "pgdata-fixed-1-0", "from 1Gi to 2Gi", "storageclass"] {
        assert!(degraded.message.contains(part), "{part} in {:?}", degraded.message);
    }

    // Set back, the cluster is no longer Degraded for its volumes.
    let cluster = resize(&admin, ns, "fixed", "1Gi").await.expect("the size set back is accepted");
    reconcile(cluster.clone(), ctx.clone()).await.expect("the reconcile after setting it back");
    let degraded = degraded_now(&admin, ns, "fixed").await;
    assert!(!degraded.reason.starts_with("Volume"), "{degraded:?}");
}
