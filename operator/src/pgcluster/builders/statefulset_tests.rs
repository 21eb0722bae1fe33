use super::*;
use crate::pgcluster::test_fixtures::cluster_from_yaml;
use crate::pgcluster::validate::validate;

fn build_for(yaml: &str, ordinal: i32, bootstrap: Bootstrap) -> StatefulSet {
    let cluster = cluster_from_yaml(yaml);
    let valid = validate(&cluster).unwrap();
    build(
        &Owner::of(&cluster).unwrap(),
        &cluster.spec,
        &valid,
        InstanceInput { ordinal, bootstrap, switchover: Default::default(), claim_size: None },
    )
}

fn pod(sts: &StatefulSet) -> (&PodTemplateSpec, &PodSpec) {
    let template = &sts.spec.as_ref().unwrap().template;
    (template, template.spec.as_ref().unwrap())
}

fn env_value<'a>(container: &'a Container, name: &str) -> Option<&'a EnvVar> {
    container.env.as_ref().unwrap().iter().find(|e| e.name == name)
}

#[test]
fn one_replica_named_after_the_instance_behind_the_headless_service() {
    let sts = build_for("spec: {}", 2, Bootstrap::Clone);
    assert_eq!(sts.metadata.name.as_deref(), Some("demo-2"));
    assert_eq!(sts.metadata.labels.as_ref().unwrap()["relevo.dev/instance"], "demo-2");
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.service_name.as_deref(), Some("demo"));
    assert_eq!(spec.update_strategy.as_ref().unwrap().type_.as_deref(), Some("OnDelete"));
    let selector = spec.selector.match_labels.as_ref().unwrap();
    assert_eq!(selector["relevo.dev/instance"], "demo-2");
    assert_eq!(selector["relevo.dev/cluster"], "demo");
}

#[test]
fn template_never_carries_the_role_label() {
    for bootstrap in [Bootstrap::Initdb, Bootstrap::Clone] {
        let sts = build_for("spec: {}", 1, bootstrap);
        let (template, _) = pod(&sts);
        let labels = template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        assert!(!labels.contains_key(names::LABEL_ROLE));
        // Every selector label is on the pod, or the StatefulSet would be rejected.
        for (key, value) in sts.spec.as_ref().unwrap().selector.match_labels.as_ref().unwrap() {
            assert_eq!(labels.get(key), Some(value), "{key}");
        }
    }
}

#[test]
fn pod_is_locked_down() {
    let sts = build_for("spec: {}", 1, Bootstrap::Initdb);
    let (_, spec) = pod(&sts);
    let pod_security = spec.security_context.as_ref().unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(999));
    assert_eq!(pod_security.fs_group, Some(999));
    assert_eq!(pod_security.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    assert_eq!(spec.automount_service_account_token, Some(false));
    // Only the postgres container gets an API token, to renew the primary Lease.
    assert_eq!(spec.service_account_name.as_deref(), Some("demo-instance"));
    for container in &spec.containers {
        let token = container.volume_mounts.iter().flatten().any(|m| m.mount_path.contains("serviceaccount"));
        assert_eq!(token, container.name == "postgres", "{}", container.name);
    }
    assert_eq!(spec.containers.len(), 2);
    for container in &spec.containers {
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.read_only_root_filesystem, Some(true), "{}", container.name);
    }
}

#[test]
fn every_writable_path_is_a_volume() {
    let sts = build_for("spec: {}", 1, Bootstrap::Initdb);
    let (_, spec) = pod(&sts);
    let mounts: Vec<_> =
        spec.containers[0].volume_mounts.as_ref().unwrap().iter().map(|m| &m.mount_path).collect();
    for path in [layout::DATA_MOUNT, layout::SOCKET_DIR, layout::RUN_DIR, "/tmp", layout::CONFIG_DIR] {
        assert!(mounts.iter().any(|m| *m == path), "{path} not mounted");
    }
    let volumes: Vec<_> = spec.volumes.as_ref().unwrap().iter().map(|v| v.name.as_str()).collect();
    for mount in spec.containers.iter().flat_map(|c| c.volume_mounts.as_ref().unwrap()) {
        assert!(mount.name == DATA_VOLUME || volumes.contains(&mount.name.as_str()), "{}", mount.name);
    }
    let mut names = volumes.clone();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), volumes.len(), "volume names are unique: {volumes:?}");
}

fn mounts_of(container: &Container) -> Vec<(&str, &str, bool)> {
    container
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only == Some(true)))
        .collect()
}

#[test]
fn postgres_can_run_archive_command() {
    let sts = build_for("spec: {}", 1, Bootstrap::Initdb);
    let mounts = mounts_of(&pod(&sts).1.containers[0]);
    for mount in [
        ("pgbackrest-config", "/etc/pgbackrest/conf", true),
        ("pgbackrest-tls", "/etc/pgbackrest/tls", true),
        ("pgbackrest-spool", "/var/spool/pgbackrest", false),
        // archive-push's lock
        ("tmp", "/tmp", false),
    ] {
        assert!(mounts.contains(&mount), "{mount:?} not in {mounts:?}");
    }
}

#[test]
fn pgbackrest_sidecar_serves_the_data_directory_read_only() {
    let sts = build_for("spec: {image: 'registry.local/pg:15-x'}", 2, Bootstrap::Clone);
    let sidecar = &pod(&sts).1.containers[1];
    assert_eq!(sidecar.name, "pgbackrest");
    assert_eq!(sidecar.image.as_deref(), Some("registry.local/pg:15-x"));
    assert_eq!(
        sidecar.command.as_ref().unwrap(),
        &["pgbackrest", "--config=/etc/pgbackrest/conf/pg-host.conf", "server"]
    );
    assert_eq!(sidecar.ports.as_ref().unwrap()[0].container_port, 8432);
    // A pgBackRest problem must not make the pod unready (and drop the primary from -rw).
    assert!(sidecar.readiness_probe.is_none());
    assert_eq!(
        mounts_of(sidecar),
        [
            ("pgbackrest-config", "/etc/pgbackrest/conf", true),
            ("pgbackrest-tls", "/etc/pgbackrest/tls", true),
            (DATA_VOLUME, layout::DATA_MOUNT, true),
            ("socket", layout::SOCKET_DIR, false),
            ("pgbackrest-tmp", "/tmp", false),
        ]
    );
    let tls = pod(&sts).1.volumes.as_ref().unwrap().iter().find(|v| v.name == "pgbackrest-tls").unwrap();
    assert_eq!(tls.secret.as_ref().unwrap().secret_name.as_deref(), Some("demo-pgbackrest-tls"));
}

#[test]
fn entrypoint_gets_its_identity_and_passwords_only_by_reference() {
    let sts = build_for("spec: {}", 1, Bootstrap::Initdb);
    let (_, spec) = pod(&sts);
    let container = &spec.containers[0];
    assert_eq!(container.command.as_deref(), Some(&["/usr/local/bin/relevo".into(), "instance".into()][..]));
    assert_eq!(env_value(container, env::INSTANCE).unwrap().value.as_deref(), Some("demo-1"));
    assert_eq!(env_value(container, env::BOOTSTRAP).unwrap().value.as_deref(), Some("initdb"));
    assert_eq!(env_value(container, env::PRIMARY_HOST).unwrap().value.as_deref(), Some("demo-rw"));
    for (var, secret) in [
        (env::SUPERUSER_PASSWORD, "demo-superuser"),
        (env::REPLICATION_PASSWORD, "demo-replication"),
        (env::APP_PASSWORD, "demo-app"),
    ] {
        let var = env_value(container, var).unwrap();
        assert_eq!(var.value, None, "{} must not be inline", var.name);
        let reference = var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((reference.name.as_str(), reference.key.as_str()), (secret, "password"));
    }
}

#[test]
fn clones_do_not_get_the_application_password() {
    let sts = build_for("spec: {}", 2, Bootstrap::Clone);
    let container = &pod(&sts).1.containers[0];
    assert_eq!(env_value(container, env::BOOTSTRAP).unwrap().value.as_deref(), Some("clone"));
    assert!(env_value(container, env::APP_PASSWORD).is_none());
}

#[test]
fn volume_claim_follows_storage_spec() {
    let sts = build_for("spec: {storage: {size: 5Gi, storageClass: fast}}", 1, Bootstrap::Initdb);
    let claim = &sts.spec.as_ref().unwrap().volume_claim_templates.as_ref().unwrap()[0];
    assert_eq!(claim.metadata.name.as_deref(), Some("pgdata"));
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
    let requests = claim_spec.resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert_eq!(requests["storage"], Quantity("5Gi".into()));
}

#[test]
fn image_and_resources_come_from_the_spec() {
    let yaml = "spec: {image: 'registry.local/pg:15-x', resources: {limits: {memory: 1Gi}}}";
    let sts = build_for(yaml, 1, Bootstrap::Initdb);
    let container = &pod(&sts).1.containers[0];
    assert_eq!(container.image.as_deref(), Some("registry.local/pg:15-x"));
    let limits = container.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["memory"], Quantity("1Gi".into()));
}

#[test]
fn readiness_asks_postgres_over_the_socket() {
    let sts = build_for("spec: {}", 1, Bootstrap::Initdb);
    let probe = pod(&sts).1.containers[0].readiness_probe.clone().unwrap();
    let command = probe.exec.unwrap().command.unwrap();
    assert_eq!(command[0], "pg_isready");
    assert!(command.windows(2).any(|w| w == ["-h", layout::SOCKET_DIR]));
    assert!(pod(&sts).1.containers[0].liveness_probe.is_none());
}

#[test]
fn a_switchover_s_replicas_and_rebuild_markers_survive_the_cluster_reconcile() {
    let cluster = cluster_from_yaml("spec: {}");
    let valid = validate(&cluster).unwrap();
    let owner = Owner::of(&cluster).unwrap();
    let mut existing = build_for("spec: {}", 2, Bootstrap::Clone);
    existing.metadata.resource_version = Some("42".into());
    existing.metadata.annotations = Some(BTreeMap::from([(markers::SCALED_BY.into(), "so-1".into())]));
    let spec = existing.spec.as_mut().unwrap();
    spec.replicas = Some(0);
    spec.template.metadata.as_mut().unwrap().annotations = Some(BTreeMap::from([
        (markers::REBUILD.into(), "so-1".into()),
        ("kubectl.kubernetes.io/restartedAt".into(), "x".into()),
    ]));
    let carried = SwitchoverOverrides::carried_over(Some(&existing));
    assert_eq!(carried.replicas, Some((0, "so-1".to_string())));
    let input =
        InstanceInput { ordinal: 2, bootstrap: Bootstrap::Clone, switchover: carried, claim_size: None };
    let sts = build(&owner, &cluster.spec, &valid, input);
    assert_eq!(sts.metadata.resource_version.as_deref(), Some("42"), "a stale read must not win");
    assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(0));
    let annotations = pod(&sts).0.metadata.as_ref().unwrap().annotations.clone().unwrap();
    assert_eq!(annotations, BTreeMap::from([(markers::REBUILD.to_string(), "so-1".to_string())]));

    // Without a switchover's record, replicas are the normal 1 whatever the object says.
    existing.metadata.annotations = None;
    let carried = SwitchoverOverrides::carried_over(Some(&existing));
    assert_eq!(carried.replicas, None);
    let sts = build(
        &owner,
        &cluster.spec,
        &valid,
        InstanceInput { ordinal: 2, bootstrap: Bootstrap::Clone, switchover: carried, claim_size: None },
    );
    assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(1));
}

#[test]
fn markers_reach_the_pod_through_a_downward_api_file() {
    let sts = build_for("spec: {}", 1, Bootstrap::Initdb);
    let (_, spec) = pod(&sts);
    let volume = spec.volumes.as_ref().unwrap().iter().find(|v| v.name == "podinfo").unwrap();
    let item = &volume.downward_api.as_ref().unwrap().items.as_ref().unwrap()[0];
    assert_eq!(item.field_ref.as_ref().unwrap().field_path, "metadata.annotations");
    assert_eq!(format!("{}/{}", markers::PODINFO_DIR, item.path), markers::ANNOTATIONS_FILE);
}

#[test]
fn the_restoring_instance_gets_the_source_and_its_certificate() {
    let yaml = "spec: {bootstrap: {recovery: {source: orig, label: 20251007-120000F}}}";
    let sts = build_for(yaml, 1, Bootstrap::Restore);
    let (_, spec) = pod(&sts);
    let postgres = &spec.containers[0];
    let value = |name: &str| env_value(postgres, name).and_then(|e| e.value.clone());
    assert_eq!(value(env::BOOTSTRAP).as_deref(), Some("restore"));
    assert_eq!(value(env::RESTORE_STANZA).as_deref(), Some("orig"));
    assert_eq!(value(env::RESTORE_CONFIG).as_deref(), Some("/etc/pgbackrest/conf/restore.conf"));
    assert_eq!(value(env::RESTORE_LABEL).as_deref(), Some("20251007-120000F"));
    assert!(env_value(postgres, env::RESTORE_TARGET_TIME).is_none());
    assert!(
        env_value(postgres, env::APP_PASSWORD).is_some(),
        "the restored app role gets this cluster's password"
    );
    let mounted =
        postgres.volume_mounts.as_ref().unwrap().iter().any(|m| m.mount_path == "/etc/pgbackrest/source-tls");
    assert!(mounted);
    let volumes = spec.volumes.as_ref().unwrap();
    let source = volumes.iter().find(|v| v.name == "pgbackrest-source-tls").unwrap();
    assert_eq!(source.secret.as_ref().unwrap().secret_name.as_deref(), Some("orig-pgbackrest-tls"));
    // Once the cluster has a primary, instance 1 is a clone like the others: no source.
    let later = build_for(yaml, 1, Bootstrap::Clone);
    let (_, spec) = pod(&later);
    assert!(env_value(&spec.containers[0], env::RESTORE_STANZA).is_none());
    assert!(spec.volumes.as_ref().unwrap().iter().all(|v| v.name != "pgbackrest-source-tls"));
}

#[test]
fn instances_spread_as_the_spec_says() {
    let anti = |yaml: &str| {
        let sts = build_for(yaml, 1, Bootstrap::Initdb);
        pod(&sts).1.affinity.clone().unwrap().pod_anti_affinity.unwrap()
    };
    let preferred = anti("spec: {}");
    assert!(preferred.required_during_scheduling_ignored_during_execution.is_none());
    assert_eq!(preferred.preferred_during_scheduling_ignored_during_execution.unwrap().len(), 1);
    let required = anti("spec: {placement: {instanceSpread: Required}}");
    assert!(required.preferred_during_scheduling_ignored_during_execution.is_none());
    let terms = required.required_during_scheduling_ignored_during_execution.unwrap();
    assert_eq!(terms[0].topology_key, "kubernetes.io/hostname");
    assert_eq!(
        terms[0].label_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["relevo.dev/cluster"],
        "demo"
    );
}

#[test]
fn only_an_encrypted_clusters_postgres_container_gets_the_cipher_and_from_the_secret() {
    let yaml = "spec: {backup: {encryption: {enabled: true}}}";
    let sts = build_for(yaml, 1, Bootstrap::Initdb);
    let (_, spec) = pod(&sts);
    let postgres = &spec.containers[0];
    let pass = env_value(postgres, "PGBACKREST_REPO1_CIPHER_PASS").unwrap();
    assert_eq!(pass.value, None);
    let key = pass.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
    assert_eq!((key.name.as_str(), key.key.as_str()), ("demo-pgbackrest-cipher", "passphrase"));
    let kind = env_value(postgres, "PGBACKREST_REPO1_CIPHER_TYPE").unwrap();
    assert_eq!(kind.value.as_deref(), Some("aes-256-cbc"));
    for container in &spec.containers[1..] {
        assert!(container.env.iter().flatten().all(|e| !e.name.contains("CIPHER")), "{}", container.name);
    }
    let plain = build_for("spec: {}", 1, Bootstrap::Initdb);
    assert_eq!(build_for("spec: {backup: {encryption: {enabled: false}}}", 1, Bootstrap::Initdb), plain);
    assert!(env_value(&pod(&plain).1.containers[0], "PGBACKREST_REPO1_CIPHER_PASS").is_none());
}
