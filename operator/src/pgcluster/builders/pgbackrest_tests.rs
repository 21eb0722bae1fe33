use super::*;
use crate::pgcluster::test_fixtures::cluster_from_yaml;
use crate::pki::{CertificateAuthority, pgbackrest_leaf};

fn owner() -> Owner {
    Owner::of(&cluster_from_yaml("spec: {}")).unwrap()
}

#[test]
fn pg_host_conf_points_at_the_repo_host_by_its_certificate_name() {
    let config = config_map(&owner(), &[1, 2], None).unwrap();
    assert_eq!(config.metadata.name.as_deref(), Some("demo-pgbackrest"));
    let text = &config.data.as_ref().unwrap()[PG_HOST_CONF_KEY];
    for line in [
        "repo1-host=demo-repo-0.demo-repo.db.svc",
        "repo1-host-type=tls",
        "repo1-host-port=8432",
        "repo1-host-cert-file=/etc/pgbackrest/tls/tls.crt",
        "repo1-host-key-file=/etc/pgbackrest/tls/tls.key",
        "repo1-host-ca-file=/etc/pgbackrest/tls/ca.crt",
        "repo1-path=/pgbackrest/repo",
        "archive-async=y",
        "spool-path=/var/spool/pgbackrest",
        "tls-server-auth=relevo-pgbackrest=demo",
        "[demo]",
        "pg1-path=/var/lib/postgresql/data/pgdata",
        "pg1-socket-path=/var/run/postgresql",
        "pg1-port=5432",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn repo_host_conf_lists_every_instance_and_keeps_two_fulls() {
    let config = config_map(&owner(), &[1, 2, 3], None).unwrap();
    let text = &config.data.as_ref().unwrap()[REPO_HOST_CONF_KEY];
    for line in [
        "repo1-path=/pgbackrest/repo",
        "repo1-retention-full=2",
        "tls-server-auth=relevo-pgbackrest=demo",
        "pg1-host=demo-1-0.demo.db.svc",
        "pg2-host=demo-2-0.demo.db.svc",
        "pg3-host=demo-3-0.demo.db.svc",
        "pg3-host-type=tls",
        "pg3-path=/var/lib/postgresql/data/pgdata",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("pg4-"), "{text}");
}

#[test]
fn every_host_name_in_the_configs_is_in_the_certificate() {
    let ca = CertificateAuthority::generate("demo").unwrap();
    let leaf = pgbackrest_leaf(&ca, "demo", "db").unwrap();
    let sans = crate::pki::pgbackrest_dns_names("demo", "db");
    assert!(!leaf.cert_pem.is_empty());
    let all: Vec<i32> = (1..=names::MAX_INSTANCES).collect();
    let repo = repo_host_config("demo", "db", &all);
    for host in repo.pg_hosts.iter().map(|pg| &pg.host).chain([&pg_host_config("demo", "db").repo_host]) {
        assert!(sans.contains(host), "{host} is not in {sans:?}");
    }
}

#[test]
fn archive_command_uses_pg_host_conf_and_the_stanza() {
    assert_eq!(
        instance_pgbackrest("demo").unwrap().archive_command().unwrap(),
        "pgbackrest --config=/etc/pgbackrest/conf/pg-host.conf --stanza=demo archive-push %p"
    );
    assert_eq!(
        repo_host_pgbackrest("demo").unwrap().stanza_create(),
        ["pgbackrest", "--config=/etc/pgbackrest/conf/repo-host.conf", "--stanza=demo", "stanza-create"]
    );
}

#[test]
fn secrets_carry_the_pem_under_their_keys() {
    let pem = |what: &str| CertifiedKey { cert_pem: format!("{what} cert"), key_pem: format!("{what} key") };
    let ca = ca_secret(&owner(), &pem("ca"));
    assert_eq!(ca.metadata.name.as_deref(), Some("demo-pgbackrest-ca"));
    let data = ca.string_data.unwrap();
    assert_eq!((data["ca.crt"].as_str(), data["ca.key"].as_str()), ("ca cert", "ca key"));

    let tls = tls_secret(&owner(), "ca cert", &pem("leaf"));
    assert_eq!(tls.metadata.name.as_deref(), Some("demo-pgbackrest-tls"));
    assert_eq!(tls.metadata.owner_references.as_ref().unwrap()[0].name, "demo");
    let data = tls.string_data.unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["ca.crt", "tls.crt", "tls.key"]);
    assert_eq!(data["tls.key"], "leaf key");
}

#[test]
fn tls_volume_is_group_readable_only() {
    let [config, tls] = config_and_tls_volumes("demo");
    assert_eq!(config.config_map.unwrap().name, "demo-pgbackrest");
    let secret = tls.secret.unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("demo-pgbackrest-tls"));
    // pgBackRest refuses a key readable by others; root-owned 0440 (the kubelet's, with
    // fsGroup) is accepted, as the integration test checks for real.
    assert_eq!(secret.default_mode, Some(0o440));
}

#[test]
fn a_cluster_from_a_backup_reaches_the_source_repository_with_the_source_certificate() {
    let plain = config_map(&owner(), &[1], None).unwrap();
    assert!(!plain.data.as_ref().unwrap().contains_key(RESTORE_CONF_KEY));
    let recovery = RecoverySpec { source: "orig".into(), label: None, target_time: None };
    let config = config_map(&owner(), &[1], Some(&recovery)).unwrap();
    let text = &config.data.as_ref().unwrap()[RESTORE_CONF_KEY];
    for line in [
        "repo1-host=orig-repo-0.orig-repo.db.svc",
        "repo1-host-cert-file=/etc/pgbackrest/source-tls/tls.crt",
        "repo1-host-key-file=/etc/pgbackrest/source-tls/tls.key",
        "repo1-host-ca-file=/etc/pgbackrest/source-tls/ca.crt",
        "repo1-path=/pgbackrest/repo",
        "[orig]",
        "pg1-path=/var/lib/postgresql/data/pgdata",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert_eq!(source_tls_volume("orig").secret.unwrap().secret_name.as_deref(), Some("orig-pgbackrest-tls"));
}

#[test]
fn only_an_encrypted_repo_host_conf_names_the_cipher_and_no_file_holds_a_passphrase() {
    let plain = config_map(&owner(), &[1, 2], None).unwrap();
    assert_eq!(config_map_with_cipher(&owner(), &[1, 2], None, false).unwrap(), plain);
    let encrypted = config_map_with_cipher(&owner(), &[1, 2], None, true).unwrap();
    let data = encrypted.data.as_ref().unwrap();
    assert!(data[REPO_HOST_CONF_KEY].lines().any(|l| l == "repo1-cipher-type=aes-256-cbc"));
    // The postgres container gets the cipher type from its environment instead.
    assert_eq!(data[PG_HOST_CONF_KEY], plain.data.as_ref().unwrap()[PG_HOST_CONF_KEY]);
    assert!(
        data.values().chain(plain.data.as_ref().unwrap().values()).all(|text| !text.contains("cipher-pass"))
    );
    assert!(!plain.data.as_ref().unwrap()[REPO_HOST_CONF_KEY].contains("cipher"));
}

#[test]
fn the_generated_passphrase_secret_outlives_the_cluster() {
    let secret = cipher_secret(&owner(), "s3cret");
    assert_eq!(secret.metadata.name.as_deref(), Some("demo-pgbackrest-cipher"));
    assert_eq!(secret.metadata.namespace.as_deref(), Some("db"));
    assert_eq!(secret.metadata.owner_references, None, "deleting the PgCluster must keep it");
    assert_eq!(secret.metadata.labels.as_ref().unwrap()["relevo.dev/cluster"], "demo");
    assert_eq!(secret.string_data.as_ref().unwrap()["passphrase"], "s3cret");
    let env = cipher_pass_env("demo-pgbackrest-cipher");
    assert_eq!(env.name, "PGBACKREST_REPO1_CIPHER_PASS");
    assert_eq!(env.value, None);
    let key = env.value_from.unwrap().secret_key_ref.unwrap();
    assert_eq!((key.name.as_str(), key.key.as_str()), ("demo-pgbackrest-cipher", "passphrase"));
}
