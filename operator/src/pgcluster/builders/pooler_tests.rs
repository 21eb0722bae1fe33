use super::*;
use crate::crd::pgcluster::PoolMode;
use crate::pgcluster::test_fixtures::cluster_from_yaml;

fn objects(spec: &PoolerSpec) -> PoolerObjects {
    let owner = Owner::of(&cluster_from_yaml("spec: {pooler: {}}")).unwrap();
    build(&owner, spec, "app")
}

fn pod_spec(objects: &PoolerObjects) -> PodSpec {
    objects.deployment.spec.clone().unwrap().template.spec.unwrap()
}

#[test]
fn the_service_is_cluster_pooler_on_5432_and_selects_only_pooler_pods() {
    let objects = objects(&PoolerSpec::default());
    assert_eq!(objects.service.metadata.name.as_deref(), Some("demo-pooler"));
    let spec = objects.service.spec.unwrap();
    assert_eq!(spec.ports.unwrap()[0].port, 5432);
    assert_eq!(spec.selector.as_ref(), Some(&selector("demo")));
    let deployment = objects.deployment.spec.unwrap();
    assert_eq!(deployment.selector.match_labels.as_ref(), Some(&selector("demo")));
    let labels = deployment.template.metadata.unwrap().labels.unwrap();
    assert!(selector("demo").iter().all(|(k, v)| labels.get(k) == Some(v)));
    // The instances' Services select by relevo.dev/instance-less cluster labels plus
    // component postgres: a pooler pod must never be one of their endpoints.
    assert_ne!(labels[names::LABEL_COMPONENT], "postgres");
}

#[test]
fn the_spec_reaches_the_deployment_and_pgbouncer_ini() {
    let spec = PoolerSpec {
        instances: 3,
        pool_mode: PoolMode::Session,
        default_pool_size: 9,
        max_client_conn: 77,
        pause_bound_seconds: 11,
        ..PoolerSpec::default()
    };
    let objects = objects(&spec);
    assert_eq!(objects.deployment.spec.as_ref().unwrap().replicas, Some(3));
    let ini = &objects.config_map.data.as_ref().unwrap()["pgbouncer.ini"];
    for line in ["pool_mode = session", "default_pool_size = 9", "max_client_conn = 77"] {
        assert!(ini.lines().any(|l| l == line), "{line} in\n{ini}");
    }
    let args = pod_spec(&objects).containers[0].args.clone().unwrap();
    assert_eq!(
        args,
        [
            "pooler",
            "--initial-target",
            "demo-rw.db.svc",
            "--pause-bound-seconds",
            "11",
            "--database",
            "app",
            "--database",
            "postgres"
        ]
    );
    let changed = objects_hash(&PoolerSpec { default_pool_size: 10, ..spec.clone() });
    assert_ne!(objects_hash(&spec), changed, "a changed pgbouncer.ini rolls the pods");
}

fn objects_hash(spec: &PoolerSpec) -> String {
    let objects = objects(spec);
    objects.deployment.spec.unwrap().template.metadata.unwrap().annotations.unwrap()[CONFIG_HASH_ANNOTATION]
        .clone()
}

#[test]
fn no_password_in_the_config_map_arguments_or_environment() {
    let objects = objects(&PoolerSpec::default());
    let container = &pod_spec(&objects).containers[0];
    assert!(container.env.is_none() && container.env_from.is_none(), "describe would show them");
    let ini = &objects.config_map.data.as_ref().unwrap()["pgbouncer.ini"];
    assert!(!ini.contains("password ="), "{ini}");
    // The credentials come from the application Secret's two keys, mounted read-only 0400.
    let volumes = pod_spec(&objects).volumes.unwrap();
    let credentials = volumes.iter().find(|v| v.name == "credentials").unwrap().secret.clone().unwrap();
    assert_eq!(credentials.secret_name.as_deref(), Some("demo-app"));
    assert_eq!(credentials.default_mode, Some(0o400));
    let keys: Vec<_> = credentials.items.unwrap().into_iter().map(|i| i.key).collect();
    assert_eq!(keys, ["username", "password"]);
    // PostgreSQL's server key never reaches the pooler: only the CA of its Secret.
    let server_ca = volumes.iter().find(|v| v.name == "server-ca").unwrap().secret.clone().unwrap();
    assert_eq!(server_ca.items.unwrap().iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), ["ca.crt"]);
    let run = volumes.iter().find(|v| v.name == "run").unwrap();
    assert_eq!(run.empty_dir.as_ref().unwrap().medium.as_deref(), Some("Memory"));
}

#[test]
fn pods_are_hardened_like_the_instances() {
    let pod = pod_spec(&objects(&PoolerSpec::default()));
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.security_context, Some(postgres_pod_security()));
    let container = &pod.containers[0];
    assert_eq!(container.security_context, Some(container_security()));
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    // Every writable path is the memory emptyDir.
    let writable: Vec<_> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.read_only != Some(true))
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(writable, [RUN_DIR]);
}

#[test]
fn the_certificate_secret_carries_the_leaf_and_the_cluster_ca() {
    let owner = Owner::of(&cluster_from_yaml("spec: {pooler: {}}")).unwrap();
    let leaf = CertifiedKey { cert_pem: "LEAF".into(), key_pem: "KEY".into() };
    let secret = tls_secret(&owner, "CA", &leaf);
    assert_eq!(secret.metadata.name.as_deref(), Some("demo-pooler-tls"));
    let data = secret.string_data.unwrap();
    assert_eq!(
        (data["tls.crt"].as_str(), data["tls.key"].as_str(), data["ca.crt"].as_str()),
        ("LEAF", "KEY", "CA")
    );
}

#[test]
fn pooler_pods_prefer_distinct_nodes() {
    let objects = objects(&PoolerSpec::default());
    let affinity = pod_spec(&objects).affinity.expect("an affinity");
    let anti = affinity.pod_anti_affinity.expect("anti-affinity");
    assert!(anti.required_during_scheduling_ignored_during_execution.is_none(), "only preferred");
    let terms = anti.preferred_during_scheduling_ignored_during_execution.expect("preferred terms");
    assert_eq!(terms.len(), 1);
    let term = &terms[0].pod_affinity_term;
    assert_eq!(term.topology_key, "kubernetes.io/hostname");
    let wanted = objects.deployment.spec.as_ref().unwrap().selector.match_labels.clone();
    assert_eq!(term.label_selector.as_ref().unwrap().match_labels, wanted, "its own pods");
}
