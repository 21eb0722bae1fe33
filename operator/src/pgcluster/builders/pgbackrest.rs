//! The cluster's pgBackRest: its ConfigMap (pg-host.conf for the instance pods, repo-host.conf
//! for the repo host), its two certificate Secrets, and the pieces of the instance pods that
//! run or call pgBackRest (the `pgbackrest` sidecar, the mounts of the postgres container).
//!
//! Every pgBackRest host runs `pgbackrest server` in TLS mode and presents the cluster's one
//! certificate (see [`crate::pki`]); each side dials the other by its pod DNS name.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, Secret, SecretVolumeSource, Volume,
    VolumeMount,
};

use crate::crd::pgcluster::{PASSPHRASE_KEY, RecoverySpec};
use crate::pgbackrest::command::{CommandError, PGBACKREST, Pgbackrest};
use crate::pgbackrest::config::{
    CIPHER_PASS_ENV, ConfigError, DEFAULT_TLS_PORT, LogLevels, PgHost, PgHostConfig, RepoHostConfig,
    TlsFiles, TlsServer,
};
use crate::pki::CertifiedKey;
use crate::protocol::layout;
use crate::protocol::names;

use super::Owner;
use super::pod::{DATA_VOLUME, container_security, empty_dir, mount};

/// Keys of the pgBackRest ConfigMap.
pub use crate::protocol::names::PG_HOST_CONF_KEY;
pub const REPO_HOST_CONF_KEY: &str = "repo-host.conf";
pub const RESTORE_CONF_KEY: &str = "restore.conf";
/// Where the instance restoring from another cluster mounts that cluster's TLS Secret.
pub const SOURCE_TLS_DIR: &str = "/etc/pgbackrest/source-tls";
pub const SOURCE_TLS_VOLUME: &str = "pgbackrest-source-tls";
/// Keys of the TLS Secret (mounted) and of the CA Secret (never mounted).
pub const CA_CERT_KEY: &str = "ca.crt";
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";
pub const CA_KEY_KEY: &str = "ca.key";
/// Port of every pgBackRest TLS server of a cluster.
pub const TLS_PORT: u16 = DEFAULT_TLS_PORT;
/// `repo1-retention-full` (DESIGN.md section 1).
pub const RETENTION_FULL: u32 = 2;
/// archive-async's spool, an emptyDir of the postgres container: it holds only status files
/// and prefetched WAL, which pgBackRest recreates after a restart.
pub const SPOOL_DIR: &str = "/var/spool/pgbackrest";
/// Mode of the mounted TLS files. pgBackRest 2.45 refuses a key with group or other access
/// unless root owns it, and then accepts at most 0640; the kubelet makes Secret files
/// root-owned with the pod's fsGroup as group, so 0440 is readable by uid 999 and accepted.
pub const TLS_FILE_MODE: i32 = 0o440;

/// Volume names in the pods.
pub const CONFIG_VOLUME: &str = "pgbackrest-config";
pub const TLS_VOLUME: &str = "pgbackrest-tls";
pub const SPOOL_VOLUME: &str = "pgbackrest-spool";
pub const SIDECAR_TMP_VOLUME: &str = "pgbackrest-tmp";
/// Name of the sidecar container of the instance pods.
pub const SIDECAR: &str = "pgbackrest";

/// Path of a file of the pgBackRest ConfigMap inside a pod.
pub use crate::protocol::names::pgbackrest_conf_path as conf_path;

fn tls_path(key: &str) -> String {
    format!("{}/{key}", names::PGBACKREST_TLS_DIR)
}

pub fn tls_files() -> TlsFiles {
    TlsFiles {
        ca_file: tls_path(CA_CERT_KEY),
        cert_file: tls_path(TLS_CERT_KEY),
        key_file: tls_path(TLS_KEY_KEY),
    }
}

fn tls_server() -> TlsServer {
    TlsServer {
        port: TLS_PORT,
        files: tls_files(),
        authorized_clients: vec![names::PGBACKREST_CLIENT_CN.to_string()],
    }
}

pub use crate::pgbackrest::command::instance_pgbackrest;

/// pgBackRest as the repo host (and whoever mounts repo-host.conf) runs it.
pub fn repo_host_pgbackrest(cluster: &str) -> Result<Pgbackrest, CommandError> {
    Ok(Pgbackrest::new(&names::stanza(cluster))?.with_config(&conf_path(REPO_HOST_CONF_KEY)))
}

/// pg-host.conf: the pod's own data directory as pg1, the repo host as repo1.
pub fn pg_host_config(cluster: &str, namespace: &str) -> PgHostConfig {
    PgHostConfig {
        stanza: names::stanza(cluster),
        repo_host: names::repo_fqdn(cluster, namespace),
        repo_host_port: TLS_PORT,
        repo_path: names::REPO_PATH.to_string(),
        spool_path: SPOOL_DIR.to_string(),
        log: LogLevels::default(),
        server: tls_server(),
        pg_path: layout::PGDATA.to_string(),
        pg_port: layout::POSTGRES_PORT as u16,
        pg_socket_path: layout::SOCKET_DIR.to_string(),
    }
}

/// repo-host.conf: the repository on the repo volume, and every instance as a pg host, so
/// that pgBackRest finds the current primary by itself after a switchover.
pub fn repo_host_config(cluster: &str, namespace: &str, ordinals: &[i32]) -> RepoHostConfig {
    RepoHostConfig {
        stanza: names::stanza(cluster),
        repo_path: names::REPO_PATH.to_string(),
        retention_full: RETENTION_FULL,
        log: LogLevels::default(),
        server: tls_server(),
        pg_hosts: ordinals
            .iter()
            .map(|ordinal| PgHost {
                host: names::pod_fqdn(cluster, &names::instance(cluster, *ordinal), namespace),
                path: layout::PGDATA.to_string(),
                port: layout::POSTGRES_PORT as u16,
                socket_path: Some(layout::SOCKET_DIR.to_string()),
            })
            .collect(),
        pg_host_port: TLS_PORT,
        encrypted: false,
    }
}

/// restore.conf: how the first instance of a cluster bootstrapped from a backup reaches the
/// *source* cluster's repository, as a client with the source's certificate (its repo host
/// admits only certificates of its own CA). Also what the restored PostgreSQL's
/// `restore_command` uses until it is promoted.
pub fn restore_config(source: &str, namespace: &str) -> PgHostConfig {
    let source_tls = |key: &str| format!("{SOURCE_TLS_DIR}/{key}");
    let mut config = pg_host_config(source, namespace);
    config.server.files = TlsFiles {
        ca_file: source_tls(CA_CERT_KEY),
        cert_file: source_tls(TLS_CERT_KEY),
        key_file: source_tls(TLS_KEY_KEY),
    };
    config
}

/// The ConfigMap with pg-host.conf and repo-host.conf, plus restore.conf when the cluster
/// bootstraps from a backup; `ordinals` are the instances that exist or are wanted.
pub fn config_map(
    owner: &Owner,
    ordinals: &[i32],
    recovery: Option<&RecoverySpec>,
) -> Result<ConfigMap, ConfigError> {
    config_map_with_cipher(owner, ordinals, recovery, false)
}

/// [`config_map`], with `repo1-cipher-type` in repo-host.conf when the repository is
/// `encrypted`. pg-host.conf stays as it is: the postgres container gets the cipher type from
/// its environment, and the sidecar never needs it.
pub fn config_map_with_cipher(
    owner: &Owner,
    ordinals: &[i32],
    recovery: Option<&RecoverySpec>,
    encrypted: bool,
) -> Result<ConfigMap, ConfigError> {
    let pg_host = pg_host_config(&owner.name, &owner.namespace).render()?;
    let repo_host =
        RepoHostConfig { encrypted, ..repo_host_config(&owner.name, &owner.namespace, ordinals) }.render()?;
    let mut data = BTreeMap::from([
        (PG_HOST_CONF_KEY.to_string(), pg_host),
        (REPO_HOST_CONF_KEY.to_string(), repo_host),
    ]);
    if let Some(recovery) = recovery {
        data.insert(
            RESTORE_CONF_KEY.to_string(),
            restore_config(&recovery.source, &owner.namespace).render()?,
        );
    }
    Ok(ConfigMap {
        metadata: owner.child_meta(names::config_map_pgbackrest(&owner.name), "pgbackrest"),
        data: Some(data),
        ..ConfigMap::default()
    })
}

/// The source cluster's TLS Secret, for the instance that restores from it.
pub fn source_tls_volume(source: &str) -> Volume {
    Volume {
        name: SOURCE_TLS_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(names::secret_pgbackrest_tls(source)),
            default_mode: Some(TLS_FILE_MODE),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

pub fn source_tls_mount() -> VolumeMount {
    mount(SOURCE_TLS_VOLUME, SOURCE_TLS_DIR, true)
}

/// `PGBACKREST_REPO1_CIPHER_PASS` from the passphrase Secret: for the containers that read or
/// write the repository's files (the repo host, the backup Jobs, and the instances' postgres
/// container, whose archive-push and archive-get decrypt archive.info themselves), not for the
/// pgBackRest sidecar, which only serves the data directory.
pub fn cipher_pass_env(secret: &str) -> EnvVar {
    super::secrets::env_from_secret(CIPHER_PASS_ENV, secret, PASSPHRASE_KEY)
}

/// The generated passphrase of an encrypted repository. No owner reference, on purpose:
/// deleting the PgCluster keeps the repository volume, and the volume is unreadable without
/// this. Created once, never re-applied (see [`crate::pgcluster::apply::ensure_secrets`]).
pub fn cipher_secret(owner: &Owner, passphrase: &str) -> Secret {
    let mut metadata = owner.child_meta(names::secret_pgbackrest_cipher(&owner.name), "pgbackrest");
    metadata.owner_references = None;
    Secret {
        metadata,
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(PASSPHRASE_KEY.to_string(), passphrase.to_string())])),
        ..Secret::default()
    }
}

/// The CA, kept only to sign a new leaf if the TLS Secret is ever deleted.
pub fn ca_secret(owner: &Owner, ca: &CertifiedKey) -> Secret {
    Secret {
        metadata: owner.child_meta(names::secret_pgbackrest_ca(&owner.name), "pgbackrest"),
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([
            (CA_CERT_KEY.to_string(), ca.cert_pem.clone()),
            (CA_KEY_KEY.to_string(), ca.key_pem.clone()),
        ])),
        ..Secret::default()
    }
}

/// What the pods mount: the CA certificate, and the leaf with its key.
pub fn tls_secret(owner: &Owner, ca_cert_pem: &str, leaf: &CertifiedKey) -> Secret {
    Secret {
        metadata: owner.child_meta(names::secret_pgbackrest_tls(&owner.name), "pgbackrest"),
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([
            (CA_CERT_KEY.to_string(), ca_cert_pem.to_string()),
            (TLS_CERT_KEY.to_string(), leaf.cert_pem.clone()),
            (TLS_KEY_KEY.to_string(), leaf.key_pem.clone()),
        ])),
        ..Secret::default()
    }
}

/// The ConfigMap and TLS Secret volumes every pgBackRest pod has.
pub fn config_and_tls_volumes(cluster: &str) -> [Volume; 2] {
    [
        Volume {
            name: CONFIG_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::config_map_pgbackrest(cluster),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: TLS_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names::secret_pgbackrest_tls(cluster)),
                default_mode: Some(TLS_FILE_MODE),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}

/// Volumes the instance pods add for pgBackRest.
pub fn instance_volumes(cluster: &str) -> Vec<Volume> {
    let mut volumes = config_and_tls_volumes(cluster).to_vec();
    volumes.push(empty_dir(SPOOL_VOLUME, None));
    volumes.push(empty_dir(SIDECAR_TMP_VOLUME, None));
    volumes
}

pub fn config_and_tls_mounts() -> [VolumeMount; 2] {
    [
        mount(CONFIG_VOLUME, names::PGBACKREST_CONF_DIR, true),
        mount(TLS_VOLUME, names::PGBACKREST_TLS_DIR, true),
    ]
}

/// What the postgres container needs to run `archive_command`: config, certificates, and the
/// spool of asynchronous archiving (its lock goes to /tmp, which the container has).
pub fn postgres_mounts() -> Vec<VolumeMount> {
    let mut mounts = config_and_tls_mounts().to_vec();
    mounts.push(mount(SPOOL_VOLUME, SPOOL_DIR, false));
    mounts
}

/// The instance's pgBackRest TLS server, through which the repo host backs up the data
/// directory (read-only here) and asks PostgreSQL over the shared socket directory.
///
/// No readiness probe: a pod is ready only when all its containers are, and a pgBackRest
/// problem must never take the primary out of the `-rw` Service.
pub fn sidecar(image: &str) -> Container {
    let mut mounts = config_and_tls_mounts().to_vec();
    mounts.extend([
        mount(DATA_VOLUME, layout::DATA_MOUNT, true),
        mount("socket", layout::SOCKET_DIR, false),
        // pgBackRest's lock and temporary files; the root filesystem is read-only.
        mount(SIDECAR_TMP_VOLUME, "/tmp", false),
    ]);
    Container {
        name: SIDECAR.into(),
        image: Some(image.to_string()),
        command: Some(vec![
            PGBACKREST.to_string(),
            format!("--config={}", conf_path(PG_HOST_CONF_KEY)),
            "server".to_string(),
        ]),
        ports: Some(vec![tls_port()]),
        security_context: Some(container_security()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

pub fn tls_port() -> ContainerPort {
    ContainerPort {
        name: Some("pgbackrest".into()),
        container_port: i32::from(TLS_PORT),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

#[cfg(test)]
#[path = "pgbackrest_tests.rs"]
mod tests;
