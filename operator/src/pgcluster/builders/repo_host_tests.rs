use k8s_openapi::api::core::v1::PodSpec;

use super::*;
use crate::pgcluster::test_fixtures::cluster_from_yaml;

fn build_for(yaml: &str) -> StatefulSet {
    let cluster = cluster_from_yaml(yaml);
    statefulset(&Owner::of(&cluster).unwrap(), &cluster.spec, None)
}

fn pod(sts: &StatefulSet) -> &PodSpec {
    sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

#[test]
fn one_replica_behind_its_own_headless_service() {
    let sts = build_for("spec: {}");
    assert_eq!(sts.metadata.name.as_deref(), Some("demo-repo"));
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.service_name.as_deref(), Some("demo-repo"));
    let selector = spec.selector.match_labels.as_ref().unwrap();
    assert_eq!(selector["relevo.dev/cluster"], "demo");
    assert_eq!(selector["app.kubernetes.io/component"], "repo-host");
    let labels = spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    for (key, value) in selector {
        assert_eq!(labels.get(key), Some(value), "{key}");
    }
    // Not a postgres component: listing the instances' StatefulSets never returns it.
    assert_eq!(sts.metadata.labels.as_ref().unwrap()["app.kubernetes.io/component"], "repo-host");
    assert_eq!(sts.metadata.owner_references.as_ref().unwrap()[0].kind, "PgCluster");

    let service = service(&Owner::of(&cluster_from_yaml("spec: {}")).unwrap());
    assert_eq!(service.metadata.name.as_deref(), Some("demo-repo"));
    let service = service.spec.unwrap();
    assert_eq!(service.cluster_ip.as_deref(), Some("None"));
    assert_eq!(service.publish_not_ready_addresses, Some(true));
    assert_eq!(service.selector.as_ref(), Some(selector));
    assert_eq!(service.ports.unwrap()[0].port, 8432);
    // pod DNS name = the one in the certificate
    assert_eq!(
        format!(
            "{}-0.{}.db.svc",
            sts.metadata.name.as_deref().unwrap(),
            spec.service_name.as_deref().unwrap()
        ),
        names::repo_fqdn("demo", "db")
    );
}

#[test]
fn repository_volume_is_sized_from_the_spec_and_outlives_the_cluster() {
    let sts = build_for("spec: {backup: {repoStorage: {size: 7Gi, storageClass: fast}}}");
    let spec = sts.spec.as_ref().unwrap();
    let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
    assert_eq!(claim.metadata.name.as_deref(), Some("repo"));
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(claim_spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0, "7Gi");
    let retention = spec.persistent_volume_claim_retention_policy.as_ref().unwrap();
    assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));

    let default = build_for("spec: {}");
    let claim = &default.spec.as_ref().unwrap().volume_claim_templates.as_ref().unwrap()[0];
    assert_eq!(
        claim.spec.as_ref().unwrap().resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
        "2Gi"
    );
}

#[test]
fn runs_relevo_repo_host_with_the_repo_config_and_a_readiness_file() {
    let sts = build_for("spec: {image: 'relevo/postgres:test'}");
    let container = &pod(&sts).containers[0];
    assert_eq!(container.image.as_deref(), Some("relevo/postgres:test"));
    assert_eq!(
        container.command.as_ref().unwrap(),
        &[
            "/usr/local/bin/relevo",
            "repo-host",
            "--config=/etc/pgbackrest/conf/repo-host.conf",
            "--stanza=demo",
            "--ready-file=/run/relevo/repo-host-ready",
            "--port=8432",
        ]
    );
    let probe = container.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap();
    assert_eq!(probe.command.as_ref().unwrap(), &["test", "-f", "/run/relevo/repo-host-ready"]);
    let mounts: Vec<(&str, &str, bool)> = container
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only == Some(true)))
        .collect();
    assert_eq!(
        mounts,
        [
            ("pgbackrest-config", "/etc/pgbackrest/conf", true),
            ("pgbackrest-tls", "/etc/pgbackrest/tls", true),
            ("repo", "/pgbackrest", false),
            ("tmp", "/tmp", false),
            ("run", "/run/relevo", false),
        ]
    );
    // The clap arguments of the binary accept exactly this command line.
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: crate::repohost::RepoHostArgs,
    }
    let parsed = Cli::try_parse_from(container.command.as_ref().unwrap()[1..].iter()).unwrap().args;
    assert_eq!(parsed.stanza, "demo");
    assert_eq!(parsed.port, 8432);
}

#[test]
fn pod_is_locked_down() {
    let sts = build_for("spec: {}");
    let spec = pod(&sts);
    let security = spec.security_context.as_ref().unwrap();
    assert_eq!(
        (security.run_as_non_root, security.run_as_user, security.fs_group),
        (Some(true), Some(999), Some(999))
    );
    assert_eq!(security.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    assert_eq!(spec.automount_service_account_token, Some(false));
    let container = spec.containers[0].security_context.as_ref().unwrap();
    assert_eq!(container.read_only_root_filesystem, Some(true));
    assert_eq!(container.allow_privilege_escalation, Some(false));
    assert_eq!(container.capabilities.as_ref().unwrap().drop.as_ref().unwrap(), &["ALL"]);
}

#[test]
fn prefers_a_node_other_than_the_primarys() {
    let sts = build_for("spec: {}");
    assert_eq!(pod(&sts).affinity, Some(placement::away_from_primary("demo")));
}

fn cipher_env(yaml: &str) -> Option<Vec<k8s_openapi::api::core::v1::EnvVar>> {
    pod(&build_for(yaml)).containers[0].env.clone()
}

#[test]
fn an_encrypted_repo_host_gets_the_passphrase_from_the_secret_and_nothing_else_changes() {
    let generated = cipher_env("spec: {backup: {encryption: {enabled: true}}}").unwrap();
    let key = |env: &[k8s_openapi::api::core::v1::EnvVar]| {
        let selector = env[0].value_from.as_ref().unwrap().secret_key_ref.clone().unwrap();
        (env[0].name.clone(), selector.name, selector.key)
    };
    assert_eq!(
        key(&generated),
        ("PGBACKREST_REPO1_CIPHER_PASS".into(), "demo-pgbackrest-cipher".into(), "passphrase".into())
    );
    assert_eq!(generated[0].value, None);
    let own =
        cipher_env("spec: {backup: {encryption: {enabled: true, passphraseSecret: vault-pass}}}").unwrap();
    assert_eq!(key(&own).1, "vault-pass");
    let plain = build_for("spec: {}");
    assert_eq!(cipher_env("spec: {}"), None);
    assert_eq!(build_for("spec: {backup: {encryption: {enabled: false}}}"), plain, "off is as absent");
    let mut encrypted = build_for("spec: {backup: {encryption: {enabled: true}}}");
    let template = encrypted.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    template.containers[0].env = None;
    assert_eq!(encrypted, plain, "the environment variable is the only difference");
}
