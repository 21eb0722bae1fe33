//! The cluster's server certificate, and children another cluster already owns.

use super::*;

/// A user-provided server certificate: a missing Secret, then one that lacks names relevo
/// dials, leave the cluster Degraded with the reason; a good one is copied into
/// `<cluster>-server-tls` and its CA published.
#[tokio::test]
async fn a_user_server_certificate_is_checked_then_used() {
    use relevo::pki::CertificateAuthority;

    let (admin, ns, ctx) = operator_bed("it-tls").await;
    let ns = &ns;
    let api: Api<PgCluster> = Api::namespaced(admin.clone(), ns);
    let cluster: PgCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "relevo.dev/v1alpha1", "kind": "PgCluster",
        "metadata": {"name": "delta"},
        "spec": {"instances": 1, "tls": {"serverSecret": "delta-mine"}},
    }))
    .unwrap();
    let cluster = Arc::new(api.create(&PostParams::default(), &cluster).await.expect("PgCluster accepted"));
    let degraded = |status: Option<relevo::crd::PgClusterStatus>| {
        let status = status.expect("status written");
        let condition = status.conditions.into_iter().find(|c| c.type_ == "Degraded").expect("Degraded");
        (condition.status, condition.reason, condition.message)
    };

    let _ = reconcile(cluster.clone(), ctx.clone()).await;
    let (state, reason, message) = degraded(api.get("delta").await.unwrap().status);
    assert_eq!((state.as_str(), reason.as_str()), ("True", "ServerCertificateInvalid"), "{message}");
    assert!(message.contains("spec.tls.serverSecret: Secret delta-mine does not exist"), "{message}");

    let theirs = CertificateAuthority::generate("theirs").unwrap();
    let secret = |names: Vec<String>| -> Secret {
        let leaf = theirs.issue("delta", &names).unwrap();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "delta-mine"},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem, "ca.crt": theirs.pem().cert_pem},
        }))
        .unwrap()
    };
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), ns);
    secrets.create(&PostParams::default(), &secret(vec!["delta-rw".into()])).await.unwrap();
    let _ = reconcile(cluster.clone(), ctx.clone()).await;
    let (state, _, message) = degraded(api.get("delta").await.unwrap().status);
    assert_eq!(state, "True");
    assert!(message.contains("does not name delta-1-0.delta and 17 more"), "{message}");

    let good = secret(vec!["delta-rw".into(), "*.delta".into(), format!("*.delta.{ns}.svc")]);
    secrets.replace("delta-mine", &PostParams::default(), &good).await.unwrap();
    reconcile(cluster.clone(), ctx.clone()).await.expect("reconcile with a good certificate");
    let mounted = secrets.get("delta-server-tls").await.expect("delta-server-tls");
    assert!(owned_by(&mounted, &cluster));
    let data = mounted.data.unwrap();
    assert_eq!(data["tls.crt"].0, good.string_data.as_ref().unwrap()["tls.crt"].as_bytes());
    let published = Api::<ConfigMap>::namespaced(admin.clone(), ns).get("delta-ca").await.unwrap();
    assert_eq!(published.data.unwrap()["ca.crt"], theirs.pem().cert_pem);
    let (_, reason, message) = degraded(api.get("delta").await.unwrap().status);
    assert_ne!(reason, "ServerCertificateInvalid", "{message}");
}

/// A cluster named like another cluster's child (`eps-rw` beside `eps`) is Degraded with the
/// collision named, and the child stays the other cluster's.
#[tokio::test]
async fn a_cluster_never_takes_over_another_clusters_children() {
    let (admin, ns, ctx) = operator_bed("it-collide").await;
    let ns = &ns;
    let first = create_cluster(&admin, ns, "eps", serde_json::json!({})).await;
    reconcile(first.clone(), ctx.clone()).await.expect("reconcile eps");
    let second = create_cluster(&admin, ns, "eps-rw", serde_json::json!({})).await;
    let _ = reconcile(second.clone(), ctx.clone()).await;

    let status = Api::<PgCluster>::namespaced(admin.clone(), ns).get("eps-rw").await.unwrap().status.unwrap();
    let degraded = status.conditions.iter().find(|c| c.type_ == "Degraded").expect("a Degraded condition");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "NameCollision"));
    assert!(
        degraded.message.contains("Service eps-rw already exists and is controlled by PgCluster eps"),
        "{}",
        degraded.message
    );
    let service = Api::<Service>::namespaced(admin.clone(), ns).get("eps-rw").await.unwrap();
    assert!(owned_by(&service, &first) && !owned_by(&service, &second), "still eps's Service");
    assert_eq!(service.spec.unwrap().selector.unwrap()["relevo.dev/cluster"], "eps");
}
