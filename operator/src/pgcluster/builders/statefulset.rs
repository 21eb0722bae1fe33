//! One StatefulSet per instance (`<cluster>-<N>`, replicas 1), running the `relevo instance`
//! entrypoint of the postgres image on the instance's own volume.
//!
//! Two choices matter here:
//! - `updateStrategy: OnDelete`. The operator decides when a database restarts (standbys
//!   first, the primary only after a switchover), so a template change never restarts a pod
//!   by itself. It also lets the bootstrap mode flip from initdb to clone once the cluster
//!   exists, without touching the running primary.
//! - no role label in the template: the role is a pod label the operator sets from what
//!   PostgreSQL reports, so a switchover never changes a StatefulSet.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, DownwardAPIVolumeFile, DownwardAPIVolumeSource, EnvVar,
    ExecAction, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec,
    PodTemplateSpec, Probe, Volume, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::crd::PgClusterSpec;
use crate::crd::pgcluster::cipher_secret;
use crate::instance::plan::Bootstrap;
use crate::pgbackrest::config::{CIPHER_TYPE, CIPHER_TYPE_ENV};
use crate::pgcluster::validate::ValidSpec;
use crate::protocol::layout::{self, env};
use crate::protocol::markers;
use crate::protocol::names;

use super::Owner;
use super::instance_access;
use super::pgbackrest;
use super::placement;
use super::pod::{DATA_VOLUME, container_security, empty_dir, mount, postgres_pod_security};
use super::secrets::PASSWORD_KEY;

/// Seconds PostgreSQL gets to shut down. The entrypoint turns SIGTERM into a fast shutdown,
/// which finishes in well under this even with a large shared_buffers to flush.
const TERMINATION_GRACE_SECONDS: i64 = 60;

/// What the StatefulSet of one instance needs beyond the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInput {
    /// 1-based ordinal: instance `<cluster>-<ordinal>`.
    pub ordinal: i32,
    /// What the entrypoint does with an empty data directory. The controller chooses initdb
    /// only for the first instance of a cluster that has never had a primary.
    pub bootstrap: Bootstrap,
    /// What a switchover decided for this instance (see `switchover::markers`).
    pub switchover: SwitchoverOverrides,
    /// The size the existing StatefulSet's claim template was created with
    /// ([`crate::pgcluster::volumes::template_size`]): the API server refuses any change to
    /// it, so a larger `spec.storage.size` grows the claim itself instead.
    pub claim_size: Option<String>,
}

/// The part of an instance's StatefulSet that switchovers own. The PgCluster controller
/// carries it over from the existing object ([`SwitchoverOverrides::carried_over`]), and the
/// switchover executor changes it; both apply the whole object under the one field manager,
/// with the resourceVersion they read as a precondition, so neither undoes the other.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SwitchoverOverrides {
    /// Replicas set by a switchover (0 = fenced by scale-down); `None` = the normal 1.
    pub replicas: Option<(i32, String)>,
    /// relevo's marker annotations on the pod template (the rebuild request).
    pub template_markers: BTreeMap<String, String>,
    /// resourceVersion of the object read, as a precondition; `None` when it did not exist.
    pub resource_version: Option<String>,
}

impl SwitchoverOverrides {
    pub fn carried_over(existing: Option<&StatefulSet>) -> Self {
        let Some(sts) = existing else { return Self::default() };
        let scaled_by = sts.metadata.annotations.as_ref().and_then(|a| a.get(markers::SCALED_BY));
        let replicas = sts.spec.as_ref().and_then(|s| s.replicas);
        let template = sts.spec.as_ref().and_then(|s| s.template.metadata.as_ref());
        SwitchoverOverrides {
            replicas: scaled_by.zip(replicas).map(|(by, n)| (n, by.clone())),
            template_markers: markers::owned(
                template.and_then(|m| m.annotations.as_ref()),
                &markers::TEMPLATE_MARKERS,
            ),
            resource_version: sts.metadata.resource_version.clone(),
        }
    }
}

pub fn build(owner: &Owner, spec: &PgClusterSpec, valid: &ValidSpec, input: InstanceInput) -> StatefulSet {
    let instance = names::instance(&owner.name, input.ordinal);
    let mut selector = names::postgres_selector(&owner.name);
    selector.insert(names::LABEL_PG_INSTANCE.into(), instance.clone());
    let mut pod_labels = names::cluster_labels(&owner.name, "postgres");
    pod_labels.extend(selector.clone());
    let mut metadata = owner.instance_meta(&instance, "postgres");
    metadata.resource_version = input.switchover.resource_version.clone();
    let replicas = match &input.switchover.replicas {
        Some((replicas, by)) => {
            metadata.annotations = Some(BTreeMap::from([(markers::SCALED_BY.to_string(), by.clone())]));
            *replicas
        }
        None => 1,
    };
    let template_annotations =
        (!input.switchover.template_markers.is_empty()).then(|| input.switchover.template_markers.clone());

    StatefulSet {
        metadata,
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(names::service_headless(&owner.name)),
            selector: LabelSelector { match_labels: Some(selector), ..LabelSelector::default() },
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            // Scaling down removes an instance for good, so its volume goes with its
            // StatefulSet: a stale volume coming back later would need a rewind at best.
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Delete".into()),
                when_scaled: Some("Retain".into()),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: template_annotations,
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(owner, spec, valid, &instance, input.bootstrap)),
            },
            volume_claim_templates: Some(vec![data_claim(owner, spec, input.claim_size.as_deref())]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

fn pod_spec(
    owner: &Owner,
    spec: &PgClusterSpec,
    valid: &ValidSpec,
    instance: &str,
    bootstrap: Bootstrap,
) -> PodSpec {
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::config_map(&owner.name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        empty_dir("socket", None),
        empty_dir("run", Some("Memory")),
        empty_dir("tmp", None),
        // PostgreSQL's dynamic shared memory; the runtime's default /dev/shm is only 64 MiB.
        empty_dir("shm", Some("Memory")),
        // The operator's markers (fence, rebuild) reach the instance manager as a file.
        Volume {
            name: "podinfo".into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: "annotations".into(),
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.annotations".into(),
                        ..ObjectFieldSelector::default()
                    }),
                    ..DownwardAPIVolumeFile::default()
                }]),
                ..DownwardAPIVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    volumes.extend(pgbackrest::instance_volumes(&owner.name));
    volumes.push(instance_access::token_volume());
    volumes.push(super::tls::server_volume(&owner.name));
    if let (Bootstrap::Restore, Some(recovery)) = (bootstrap, &valid.recovery) {
        volumes.push(pgbackrest::source_tls_volume(&recovery.source));
    }
    PodSpec {
        containers: vec![
            postgres_container(owner, spec, valid, instance, bootstrap),
            pgbackrest::sidecar(&spec.image),
        ],
        // Only the postgres container talks to the API, to renew the primary Lease: its
        // token comes through a projected volume mounted there alone.
        service_account_name: Some(instance_access::service_account_name(&owner.name)),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        security_context: Some(postgres_pod_security()),
        affinity: Some(placement::instance_affinity(&owner.name, spec.placement.instance_spread)),
        volumes: Some(volumes),
        ..PodSpec::default()
    }
}

fn postgres_container(
    owner: &Owner,
    spec: &PgClusterSpec,
    valid: &ValidSpec,
    instance: &str,
    bootstrap: Bootstrap,
) -> Container {
    let cluster = &owner.name;
    let mut env_vars = vec![
        plain(env::CLUSTER, cluster),
        plain(env::INSTANCE, instance),
        plain(env::BOOTSTRAP, bootstrap.as_str()),
        plain(env::PRIMARY_HOST, &names::service_rw(cluster)),
        plain(env::PGDATA, layout::PGDATA),
        secret(env::SUPERUSER_PASSWORD, &names::secret_superuser(cluster)),
        secret(env::REPLICATION_PASSWORD, &names::secret_replication(cluster)),
    ];
    // archive-push and archive-get decrypt archive.info themselves (pgBackRest 2.45, tried):
    // the repo host does not lend them its cipher, so they get the type and the passphrase.
    if let Some(secret) = cipher_secret(cluster, spec.backup.encryption.as_ref()) {
        env_vars.push(plain(CIPHER_TYPE_ENV, CIPHER_TYPE));
        env_vars.push(pgbackrest::cipher_pass_env(&secret));
    }
    if matches!(bootstrap, Bootstrap::Initdb | Bootstrap::Restore) {
        env_vars.push(plain(env::APP_DATABASE, &valid.initdb.database));
        env_vars.push(plain(env::APP_OWNER, &valid.initdb.owner));
        env_vars.push(secret(env::APP_PASSWORD, &names::secret_app(cluster)));
    }
    if let (Bootstrap::Restore, Some(recovery)) = (bootstrap, &valid.recovery) {
        env_vars.push(plain(env::RESTORE_STANZA, &names::stanza(&recovery.source)));
        env_vars.push(plain(env::RESTORE_CONFIG, &pgbackrest::conf_path(pgbackrest::RESTORE_CONF_KEY)));
        if let Some(label) = &recovery.label {
            env_vars.push(plain(env::RESTORE_LABEL, label));
        }
        if let Some(time) = &recovery.target_time {
            env_vars.push(plain(env::RESTORE_TARGET_TIME, time));
        }
    }
    let mut mounts = vec![
        mount(DATA_VOLUME, layout::DATA_MOUNT, false),
        mount("config", layout::CONFIG_DIR, true),
        mount("socket", layout::SOCKET_DIR, false),
        mount("run", layout::RUN_DIR, false),
        mount("tmp", "/tmp", false),
        mount("shm", "/dev/shm", false),
        mount("podinfo", markers::PODINFO_DIR, true),
        instance_access::token_mount(),
    ];
    // ssl_cert_file and friends, and the CA this pod's own clients verify against.
    mounts.push(super::tls::server_mount());
    // archive_command runs here.
    mounts.extend(pgbackrest::postgres_mounts());
    if bootstrap == Bootstrap::Restore && valid.recovery.is_some() {
        mounts.push(pgbackrest::source_tls_mount());
    }
    Container {
        name: "postgres".into(),
        image: Some(spec.image.clone()),
        command: Some(vec![layout::RELEVO_BINARY.into(), "instance".into()]),
        env: Some(env_vars),
        ports: Some(vec![
            ContainerPort {
                name: Some("postgres".into()),
                container_port: layout::POSTGRES_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            // The operator's direct fence channel (mutual TLS, see instance::control).
            ContainerPort {
                name: Some("control".into()),
                container_port: i32::from(crate::protocol::markers::PORT),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        // Ready means "accepts connections", which a hot standby does too; the role label,
        // not readiness, decides which Service a pod is in. No liveness probe: restarting a
        // busy database because it answered slowly makes an outage worse.
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(
                    [
                        "pg_isready",
                        "-q",
                        "-h",
                        layout::SOCKET_DIR,
                        "-p",
                        &layout::POSTGRES_PORT.to_string(),
                        "-U",
                        layout::SUPERUSER,
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
            }),
            period_seconds: Some(2),
            timeout_seconds: Some(2),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        resources: spec.resources.clone(),
        security_context: Some(container_security()),
        volume_mounts: Some(mounts),
        // A crash keeps the last lines of output (PostgreSQL's FATAL line) in the pod's
        // status, where the PgCluster's Degraded condition reads them (pod_trouble).
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    }
}

fn data_claim(owner: &Owner, spec: &PgClusterSpec, created_size: Option<&str>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(names::cluster_labels(&owner.name, "postgres")),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: spec.storage.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(created_size.unwrap_or(&spec.storage.size).to_owned()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

fn plain(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..EnvVar::default() }
}

/// A password from a generated Secret: the pod spec names the Secret, never the value.
fn secret(name: &str, secret_name: &str) -> EnvVar {
    super::secrets::env_from_secret(name, secret_name, PASSWORD_KEY)
}

#[cfg(test)]
#[path = "statefulset_tests.rs"]
mod tests;
