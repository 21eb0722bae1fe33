//! The PgCluster reconcile as the operator's ServiceAccount: children, owners, credentials,
//! the primary Lease and the instances' Role; a refused spec builds nothing.

use super::*;

#[tokio::test]
async fn reconcile_builds_owned_children_with_least_privilege() {
    let operator = setup().await;
    let admin = Client::try_from(admin_config().await).unwrap();
    let ns = &namespace(&admin, "it-reconcile").await;
    let cluster = create_cluster(&admin, ns, "alpha", serde_json::json!({"work_mem": "8MB"})).await;
    let ctx = context(operator);

    reconcile(cluster.clone(), ctx.clone()).await.expect("reconcile as the operator's ServiceAccount");

    let statefulsets: Api<StatefulSet> = Api::namespaced(admin.clone(), ns);
    for name in ["alpha-1", "alpha-2"] {
        let sts = statefulsets.get(name).await.unwrap_or_else(|e| panic!("StatefulSet {name}: {e}"));
        assert!(owned_by(&sts, &cluster), "{name} lacks a controller owner reference");
        assert!(managed_by_relevo(&sts), "{name} is not applied under the relevo field manager");
        assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(1));
        let labels = &sts.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels;
        assert!(
            !labels.as_ref().unwrap().contains_key("relevo.dev/role"),
            "role must not be in {name}'s identity"
        );
    }
    let services: Api<Service> = Api::namespaced(admin.clone(), ns);
    for name in ["alpha-rw", "alpha-ro", "alpha-r", "alpha"] {
        let svc = services.get(name).await.unwrap_or_else(|e| panic!("Service {name}: {e}"));
        assert!(owned_by(&svc, &cluster), "Service {name} lacks an owner reference");
    }
    let rw_selector = services.get("alpha-rw").await.unwrap().spec.unwrap().selector.unwrap();
    assert_eq!(rw_selector.get("relevo.dev/role").map(String::as_str), Some("primary"));
    let config_maps: Api<ConfigMap> = Api::namespaced(admin.clone(), ns);
    let config = config_maps.get("alpha-config").await.expect("ConfigMap alpha-config");
    let conf = &config.data.as_ref().unwrap()["postgresql.conf"];
    assert!(
        conf.contains("work_mem = '8MB'") || conf.contains("work_mem = 8MB"),
        "user parameter merged: {conf}"
    );
    assert!(conf.contains("archive_mode = 'on'"), "archiving on: {conf}");
    assert!(conf.contains("archive-push %p"), "archive_command: {conf}");
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), ns);
    let redis = deployments.get("alpha-redis").await.expect("managed Redis Deployment");
    assert!(owned_by(&redis, &cluster));

    // pgBackRest: the repo host, its Service, the configuration and the certificates.
    let repo = statefulsets.get("alpha-repo").await.expect("repo host StatefulSet");
    assert!(owned_by(&repo, &cluster) && managed_by_relevo(&repo));
    assert_eq!(repo.metadata.labels.as_ref().unwrap()["app.kubernetes.io/component"], "repo-host");
    let repo_svc = services.get("alpha-repo").await.expect("repo host Service");
    assert!(owned_by(&repo_svc, &cluster));
    let pgbackrest = config_maps.get("alpha-pgbackrest").await.expect("ConfigMap alpha-pgbackrest");
    assert!(owned_by(&pgbackrest, &cluster));
    let repo_conf = &pgbackrest.data.as_ref().unwrap()["repo-host.conf"];
    for line in [format!("pg1-host=alpha-1-0.alpha.{ns}.svc"), format!("pg2-host=alpha-2-0.alpha.{ns}.svc")] {
        assert!(repo_conf.lines().any(|l| l == line), "{line} in {repo_conf}");
    }
    let pg_conf = &pgbackrest.data.as_ref().unwrap()["pg-host.conf"];
    assert!(pg_conf.contains(&format!("repo1-host=alpha-repo-0.alpha-repo.{ns}.svc")), "{pg_conf}");

    let secrets: Api<Secret> = Api::namespaced(admin.clone(), ns);
    let passwords = |s: Secret| -> BTreeMap<String, String> {
        s.data.unwrap().into_iter().map(|(k, v)| (k, String::from_utf8(v.0).unwrap())).collect()
    };
    let mut before = BTreeMap::new();
    for name in ["alpha-superuser", "alpha-replication", "alpha-app", "alpha-redis"] {
        let secret = secrets.get(name).await.unwrap_or_else(|e| panic!("Secret {name}: {e}"));
        assert!(owned_by(&secret, &cluster), "Secret {name} lacks an owner reference");
        let data = passwords(secret);
        assert!(data["password"].len() >= 24, "{name}: a generated password of at least 24 characters");
        before.insert(name, data);
    }
    assert_ne!(before["alpha-superuser"]["password"], before["alpha-app"]["password"]);
    for (name, keys) in [
        ("alpha-pgbackrest-tls", ["ca.crt", "tls.crt", "tls.key"]),
        ("alpha-pgbackrest-ca", ["ca.crt", "ca.key", "ca.crt"]),
        ("alpha-server-tls", ["ca.crt", "tls.crt", "tls.key"]),
    ] {
        let secret = secrets.get(name).await.unwrap_or_else(|e| panic!("Secret {name}: {e}"));
        assert!(owned_by(&secret, &cluster), "Secret {name} lacks an owner reference");
        let data = passwords(secret);
        for key in keys {
            assert!(data[key].starts_with("-----BEGIN "), "{name}/{key} is PEM");
        }
        before.insert(name, data);
    }
    assert_eq!(before["alpha-pgbackrest-tls"]["ca.crt"], before["alpha-pgbackrest-ca"]["ca.crt"]);
    // PostgreSQL's certificate comes from the same CA, which applications find in alpha-ca.
    assert_eq!(before["alpha-server-tls"]["ca.crt"], before["alpha-pgbackrest-ca"]["ca.crt"]);
    assert_ne!(before["alpha-server-tls"]["tls.crt"], before["alpha-pgbackrest-tls"]["tls.crt"]);
    let published = config_maps.get("alpha-ca").await.expect("ConfigMap alpha-ca");
    assert!(owned_by(&published, &cluster));
    assert_eq!(published.data.as_ref().unwrap()["ca.crt"], before["alpha-pgbackrest-ca"]["ca.crt"]);
    assert!(conf.contains("ssl = 'on'"), "TLS on: {conf}");
    let hba = &config.data.as_ref().unwrap()["pg_hba.conf"];
    assert!(!hba.lines().any(|l| l.starts_with("host ")), "hostssl only: {hba}");

    reconcile(cluster.clone(), ctx.clone()).await.expect("second reconcile");
    for (name, data) in &before {
        assert_eq!(&passwords(secrets.get(name).await.unwrap()), data, "{name} changed on re-reconcile");
    }

    // A lost TLS Secret is re-issued by the same CA, which running pods already trust.
    secrets.delete("alpha-pgbackrest-tls", &Default::default()).await.expect("deleting the TLS Secret");
    reconcile(cluster.clone(), ctx.clone()).await.expect("reconcile after losing the TLS Secret");
    let reissued = passwords(secrets.get("alpha-pgbackrest-tls").await.expect("TLS Secret re-issued"));
    assert_eq!(reissued["ca.crt"], before["alpha-pgbackrest-ca"]["ca.crt"]);
    assert_ne!(reissued["tls.key"], before["alpha-pgbackrest-tls"]["tls.key"]);

    // The primary Lease names the bootstrap primary, and the instances may touch nothing else.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(admin.clone(), ns);
    let lease = leases.get("alpha-primary").await.expect("the primary Lease");
    assert!(owned_by(&lease, &cluster));
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("alpha-1"));
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(admin.clone(), ns);
    let rules = roles.get("alpha-instance").await.expect("the instances' Role").rules.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].resource_names.as_deref(), Some(&["alpha-primary".to_string()][..]));

    let status = Api::<PgCluster>::namespaced(admin.clone(), ns).get("alpha").await.unwrap().status;
    let status = status.expect("status written");
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").expect("a Ready condition");
    assert_eq!(ready.status, "False", "no pod runs without a node, so not Ready");
    assert_eq!(ready.observed_generation, cluster.metadata.generation);
}

#[tokio::test]
async fn operator_owned_parameter_is_refused_and_builds_nothing() {
    let operator = setup().await;
    let admin = Client::try_from(admin_config().await).unwrap();
    let ns = &namespace(&admin, "it-refused").await;
    let cluster =
        create_cluster(&admin, ns, "beta", serde_json::json!({"archive_command": "/bin/true"})).await;

    let _ = reconcile(cluster.clone(), context(operator)).await;

    let status = Api::<PgCluster>::namespaced(admin.clone(), ns).get("beta").await.unwrap().status.unwrap();
    let degraded = status.conditions.iter().find(|c| c.type_ == "Degraded").expect("a Degraded condition");
    assert_eq!(degraded.status, "True");
    assert!(
        degraded.message.contains("archive_command"),
        "the reason names the parameter: {}",
        degraded.message
    );
    let statefulsets: Api<StatefulSet> = Api::namespaced(admin.clone(), ns);
    assert!(statefulsets.list(&Default::default()).await.unwrap().items.is_empty(), "nothing is built");
}

/// The operator's client (its ServiceAccount, as [`setup`] makes it), counting the PATCHes it
/// sends to Services.
async fn counting_service_patches() -> (Client, Arc<std::sync::atomic::AtomicUsize>) {
    let patches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = patches.clone();
    let count = tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
        if request.method() == http::Method::PATCH && request.uri().path().contains("/services/") {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        request
    });
    let mut config = admin_config().await;
    config.auth_info.impersonate = Some(OPERATOR_SA.into());
    let client = kube::client::ClientBuilder::try_from(config).unwrap().with_layer(&count).build();
    (client, patches)
}

#[tokio::test]
async fn a_reconcile_writes_only_what_changed_and_still_undoes_an_edit() {
    use std::sync::atomic::Ordering;
    setup().await;
    let admin = Client::try_from(admin_config().await).unwrap();
    let ns = &namespace(&admin, "it-applied").await;
    let cluster = create_cluster(&admin, ns, "gamma", serde_json::json!({})).await;
    let (operator, service_patches) = counting_service_patches().await;
    let ctx = context(operator);

    reconcile(cluster.clone(), ctx.clone()).await.expect("first reconcile");
    let first = service_patches.swap(0, Ordering::SeqCst);
    assert!(first >= 4, "the first reconcile applies the Services (-rw, -ro, -r, headless): {first} PATCHes");

    reconcile(cluster.clone(), ctx.clone()).await.expect("second reconcile");
    assert_eq!(
        service_patches.swap(0, Ordering::SeqCst),
        0,
        "nothing changed, so no Service is written again"
    );

    // Someone edits -rw's selector: the next reconcile puts it back.
    let services: Api<Service> = Api::namespaced(admin.clone(), ns);
    let edit = serde_json::json!({"spec": {"selector": {"relevo.dev/role": "standby"}}});
    services.patch("gamma-rw", &PatchParams::default(), &Patch::Merge(&edit)).await.expect("user's edit");
    reconcile(cluster.clone(), ctx.clone()).await.expect("reconcile after the edit");
    assert_eq!(service_patches.swap(0, Ordering::SeqCst), 1, "only the edited Service is written again");
    let selector = services.get("gamma-rw").await.unwrap().spec.unwrap().selector.unwrap();
    assert_eq!(selector.get("relevo.dev/role").map(String::as_str), Some("primary"), "the edit is undone");
}

#[tokio::test]
async fn an_external_redis_that_does_not_answer_degrades_the_cluster_until_it_does() {
    let operator = setup().await;
    let admin = Client::try_from(admin_config().await).unwrap();
    let ns = &namespace(&admin, "it-redis").await;
    let ctx = context(operator);
    // A loopback port nothing listens on, until the redis-server below does.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let api: Api<PgCluster> = Api::namespaced(admin.clone(), ns);
    let cluster: PgCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "relevo.dev/v1alpha1", "kind": "PgCluster",
        "metadata": {"name": "far"},
        "spec": {"instances": 1, "redis": {"external": {"url": url}}},
    }))
    .unwrap();
    let cluster = Arc::new(api.create(&PostParams::default(), &cluster).await.expect("PgCluster accepted"));

    reconcile(cluster, ctx.clone()).await.expect("a reconcile with Redis down");
    let degraded = degraded_now(&admin, ns, "far").await;
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "RedisUnreachable"));
    assert!(degraded.message.contains(&url), "{degraded:?}");

    let mut redis = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (Debian: apt-get install redis-server)");
    let deadline = std::time::Instant::now() + WAIT;
    let answered = loop {
        let cluster = Arc::new(api.get("far").await.unwrap());
        reconcile(cluster, ctx.clone()).await.expect("a reconcile with Redis up");
        let degraded = degraded_now(&admin, ns, "far").await;
        if degraded.reason != "RedisUnreachable" || std::time::Instant::now() > deadline {
            break degraded;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = redis.kill();
    let _ = redis.wait();
    assert_ne!(answered.reason, "RedisUnreachable", "cleared once Redis answers: {answered:?}");
}
