use super::*;

fn files() -> TlsFiles {
    TlsFiles {
        ca_file: "/etc/pgbackrest/tls/ca.crt".into(),
        cert_file: "/etc/pgbackrest/tls/tls.crt".into(),
        key_file: "/etc/pgbackrest/tls/tls.key".into(),
    }
}

fn pg_host() -> PgHostConfig {
    PgHostConfig {
        stanza: "db".into(),
        repo_host: "pg-repo-0.pg.prod.svc.cluster.local".into(),
        repo_host_port: DEFAULT_TLS_PORT,
        repo_path: "/pgbackrest/repo".into(),
        spool_path: "/pgdata/pgbackrest-spool".into(),
        log: LogLevels::default(),
        server: TlsServer {
            port: DEFAULT_TLS_PORT,
            files: files(),
            authorized_clients: vec!["pg-repo".into()],
        },
        pg_path: "/pgdata/pg15".into(),
        pg_port: 5432,
        pg_socket_path: "/var/run/postgresql".into(),
    }
}

fn instance(n: u32) -> PgHost {
    PgHost {
        host: format!("pg-{n}-0.pg.prod.svc.cluster.local"),
        path: "/pgdata/pg15".into(),
        port: 5432,
        socket_path: Some("/var/run/postgresql".into()),
    }
}

fn repo_host() -> RepoHostConfig {
    RepoHostConfig {
        stanza: "db".into(),
        repo_path: "/pgbackrest/repo".into(),
        retention_full: 2,
        log: LogLevels::default(),
        server: TlsServer {
            port: DEFAULT_TLS_PORT,
            files: files(),
            authorized_clients: vec!["pg-instance".into()],
        },
        pg_hosts: vec![instance(1), instance(2)],
        pg_host_port: DEFAULT_TLS_PORT,
        encrypted: false,
    }
}

#[test]
fn pg_host_config_text() {
    let expected = "\
[global]
repo1-host=pg-repo-0.pg.prod.svc.cluster.local
repo1-host-type=tls
repo1-host-port=8432
repo1-host-ca-file=/etc/pgbackrest/tls/ca.crt
repo1-host-cert-file=/etc/pgbackrest/tls/tls.crt
repo1-host-key-file=/etc/pgbackrest/tls/tls.key
repo1-path=/pgbackrest/repo
archive-async=y
spool-path=/pgdata/pgbackrest-spool
log-level-console=info
log-level-file=off
tls-server-address=*
tls-server-port=8432
tls-server-ca-file=/etc/pgbackrest/tls/ca.crt
tls-server-cert-file=/etc/pgbackrest/tls/tls.crt
tls-server-key-file=/etc/pgbackrest/tls/tls.key
tls-server-auth=pg-repo=db

[db]
pg1-path=/pgdata/pg15
pg1-port=5432
pg1-socket-path=/var/run/postgresql
";
    assert_eq!(pg_host().render().unwrap(), expected);
}

#[test]
fn repo_host_config_text_lists_every_instance() {
    let expected = "\
[global]
repo1-path=/pgbackrest/repo
repo1-retention-full=2
start-fast=y
log-level-console=info
log-level-file=off
tls-server-address=*
tls-server-port=8432
tls-server-ca-file=/etc/pgbackrest/tls/ca.crt
tls-server-cert-file=/etc/pgbackrest/tls/tls.crt
tls-server-key-file=/etc/pgbackrest/tls/tls.key
tls-server-auth=pg-instance=db

[db]
pg1-host=pg-1-0.pg.prod.svc.cluster.local
pg1-host-type=tls
pg1-host-port=8432
pg1-host-ca-file=/etc/pgbackrest/tls/ca.crt
pg1-host-cert-file=/etc/pgbackrest/tls/tls.crt
pg1-host-key-file=/etc/pgbackrest/tls/tls.key
pg1-path=/pgdata/pg15
pg1-port=5432
pg1-socket-path=/var/run/postgresql
pg2-host=pg-2-0.pg.prod.svc.cluster.local
pg2-host-type=tls
pg2-host-port=8432
pg2-host-ca-file=/etc/pgbackrest/tls/ca.crt
pg2-host-cert-file=/etc/pgbackrest/tls/tls.crt
pg2-host-key-file=/etc/pgbackrest/tls/tls.key
pg2-path=/pgdata/pg15
pg2-port=5432
pg2-socket-path=/var/run/postgresql
";
    assert_eq!(repo_host().render().unwrap(), expected);
}

#[test]
fn retention_ports_and_several_clients() {
    let mut config = repo_host();
    config.retention_full = 5;
    config.server.port = 9000;
    config.server.authorized_clients = vec!["pg-instance".into(), "pg-backup-job".into()];
    config.pg_hosts = vec![instance(3)];
    config.pg_hosts[0].socket_path = None;
    config.pg_host_port = 9001;
    let text = config.render().unwrap();
    assert!(text.contains("\nrepo1-retention-full=5\n"));
    assert!(text.contains("\ntls-server-port=9000\n"));
    assert!(text.contains("\ntls-server-auth=pg-instance=db\ntls-server-auth=pg-backup-job=db\n"));
    assert!(text.contains("\npg1-host=pg-3-0.pg.prod.svc.cluster.local\n"));
    assert!(text.contains("\npg1-host-port=9001\n"));
    assert!(!text.contains("socket-path"));
    assert!(!text.contains("pg2-"));
}

#[test]
fn pg_host_ports_are_independent() {
    let mut config = pg_host();
    config.repo_host_port = 9100;
    config.server.port = 9200;
    let text = config.render().unwrap();
    assert!(text.contains("\nrepo1-host-port=9100\n"), "{text}");
    assert!(text.contains("\ntls-server-port=9200\n"), "{text}");
}

#[test]
fn repo_host_needs_a_pg_host() {
    let mut config = repo_host();
    config.pg_hosts.clear();
    assert_eq!(config.render(), Err(ConfigError::NoPgHost));
}

#[test]
fn line_breaks_cannot_inject_options() {
    let mut config = pg_host();
    config.pg_path = "/pgdata\nrepo1-path=/tmp".into();
    assert_eq!(
        config.render(),
        Err(ConfigError::Unsafe { option: "pg1-path".into(), value: "/pgdata\nrepo1-path=/tmp".into() })
    );
}

#[test]
fn empty_values_and_bad_names_are_refused() {
    let mut config = pg_host();
    config.repo_host = " ".into();
    assert_eq!(config.render(), Err(ConfigError::Empty { option: "repo1-host".into() }));

    let mut config = pg_host();
    config.stanza = "db]".into();
    assert!(matches!(config.render(), Err(ConfigError::Unsafe { option, .. }) if option == "section name"));

    let mut config = pg_host();
    config.server.authorized_clients = vec!["a=b".into()];
    assert!(
        matches!(config.render(), Err(ConfigError::Unsafe { option, .. }) if option == "tls-server-auth")
    );

    let mut config = pg_host();
    config.server.authorized_clients.clear();
    assert_eq!(config.render(), Err(ConfigError::Empty { option: "tls-server-auth".into() }));
}

#[test]
fn an_encrypted_repository_names_its_cipher_and_never_a_passphrase() {
    let plain = repo_host().render().unwrap();
    assert!(!plain.contains("cipher"), "{plain}");
    let encrypted = RepoHostConfig { encrypted: true, ..repo_host() }.render().unwrap();
    let global = encrypted.split("\n[").next().unwrap();
    assert!(global.contains("\nrepo1-cipher-type=aes-256-cbc\n"), "{encrypted}");
    assert!(!encrypted.contains("cipher-pass"), "{encrypted}");
    assert_eq!(encrypted.replace("repo1-cipher-type=aes-256-cbc\n", ""), plain);
}
