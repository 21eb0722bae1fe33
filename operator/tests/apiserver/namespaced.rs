//! The namespaced install (manifests/namespaced): the operator's ClusterRole bound by the
//! RoleBindings of `role-bindings.yaml` in one namespace only, and `--watch-namespace`. Run as
//! a ServiceAccount that has nothing else, the operator starts (its CRD check lists in the
//! namespace) and reconciles a cluster there, and it can touch nothing in another namespace.

use k8s_openapi::api::rbac::v1::RoleBinding;

use super::*;

/// A ServiceAccount of its own, so that the cluster-wide binding of [`setup`] does not count.
const NAMESPACED_SA: &str = "relevo-namespaced-it";

/// The RoleBindings of manifests/namespaced/role-bindings.yaml, moved from `relevo-apps` to
/// `watched` and given to [`NAMESPACED_SA`].
async fn bind_as_the_namespaced_install(admin: &Client, watched: &str) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/namespaced/role-bindings.yaml"
    ))
    .expect("manifests/namespaced/role-bindings.yaml");
    let apply = PatchParams::apply("relevo-integration-test").force();
    let mut bound = 0;
    for document in text.split("\n---\n") {
        let value: serde_json::Value = serde_saphyr::from_str(document).expect("RoleBinding YAML");
        let mut binding: RoleBinding = serde_json::from_value(value).unwrap();
        let namespace = match binding.metadata.namespace.as_deref() {
            Some("relevo-apps") => watched.to_owned(),
            Some(other) => other.to_owned(),
            None => panic!("a RoleBinding without a namespace"),
        };
        binding.metadata.namespace = Some(namespace.clone());
        binding.metadata.name = Some(format!("{NAMESPACED_SA}-{watched}"));
        assert_eq!(binding.role_ref.name, "relevo-operator", "the same ClusterRole as the full install");
        for subject in binding.subjects.iter_mut().flatten() {
            subject.name = NAMESPACED_SA.into();
        }
        let api: Api<RoleBinding> = Api::namespaced(admin.clone(), &namespace);
        api.patch(&binding.name_any(), &apply, &Patch::Apply(&binding)).await.expect("RoleBinding");
        bound += 1;
    }
    assert_eq!(bound, 2, "one RoleBinding in the watched namespace, one in relevo-system");
}

#[tokio::test]
async fn a_namespaced_operator_works_in_its_namespace_and_nowhere_else() {
    setup().await;
    let admin = Client::try_from(admin_config().await).unwrap();
    let watched = namespace(&admin, "it-watched").await;
    let other = namespace(&admin, "it-unwatched").await;
    bind_as_the_namespaced_install(&admin, &watched).await;
    let mut config = admin_config().await;
    config.auth_info.impersonate = Some(format!("system:serviceaccount:relevo-system:{NAMESPACED_SA}"));
    let client = Client::try_from(config).unwrap();
    let run = Cli::try_parse_from(["relevo", "--watch-namespace", &watched, "--postgres-timeout", "200ms"])
        .unwrap()
        .run;

    // Before 2026-12-07 the CRD check listed cluster-wide and waited forever here.
    tokio::time::timeout(Duration::from_secs(10), relevo::operator::wait_for_crds(&client, &run))
        .await
        .expect("the CRD check passes with namespace-scoped permissions");

    let metrics = Metrics::register(&mut Registry::default());
    let ctx = Context::new(client, run, metrics, Readiness::default());
    let cluster = create_cluster(&admin, &watched, "scoped", serde_json::json!({})).await;
    reconcile(cluster.clone(), ctx.clone()).await.expect("a reconcile in the watched namespace");
    let statefulsets: Api<StatefulSet> = Api::namespaced(admin.clone(), &watched);
    assert!(statefulsets.get_opt("scoped-1").await.unwrap().is_some(), "the instance's StatefulSet is built");

    let outside = create_cluster(&admin, &other, "outside", serde_json::json!({})).await;
    let refused = reconcile(outside, ctx.clone()).await.expect_err("nothing outside the watched namespace");
    let forbidden =
        matches!(&refused, relevo::error::Error::Kube { source: kube::Error::Api(e), .. } if e.code == 403);
    assert!(forbidden, "refused by RBAC: {refused:?}");
    let statefulsets: Api<StatefulSet> = Api::namespaced(admin.clone(), &other);
    assert!(statefulsets.list(&Default::default()).await.unwrap().items.is_empty(), "nothing built outside");
}
