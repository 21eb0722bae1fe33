//! The repo host: a one-pod StatefulSet `<cluster>-repo` that owns the pgBackRest repository
//! volume and runs `relevo repo-host` (a `pgbackrest server` in TLS mode, plus the stanza's
//! creation), and the headless Service that gives its pod the DNS name in the certificate.
//!
//! Its volume outlives the cluster (retention policy Retain): deleting a PgCluster must not
//! delete its backups.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Container, ExecAction, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe,
    Service, ServicePort, ServiceSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::PgClusterSpec;
use crate::crd::pgcluster::cipher_secret;
use crate::protocol::layout;
use crate::protocol::names;
use crate::repohost;

use super::Owner;
use super::pgbackrest::{
    self, REPO_HOST_CONF_KEY, TLS_PORT, conf_path, config_and_tls_mounts, config_and_tls_volumes,
};
use super::placement;
use super::pod::{container_security, empty_dir, mount, postgres_pod_security};

/// Value of `app.kubernetes.io/component` on the repo host's objects. The instance
/// StatefulSets are `postgres`, so listing those never picks up the repo host.
pub const COMPONENT: &str = "repo-host";

/// Seconds the repo host gets to stop: its server ends on SIGTERM within a second; an
/// archive-push in flight is retried by PostgreSQL.
const TERMINATION_GRACE_SECONDS: i64 = 30;

fn selector(cluster: &str) -> BTreeMap<String, String> {
    [(names::LABEL_CLUSTER, cluster), (names::LABEL_COMPONENT, COMPONENT)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `created_size`: the size of the existing StatefulSet's claim template, kept because the
/// API server refuses any change to it (see [`crate::pgcluster::volumes`]).
pub fn statefulset(owner: &Owner, spec: &PgClusterSpec, created_size: Option<&str>) -> StatefulSet {
    let name = names::repo_host(&owner.name);
    StatefulSet {
        metadata: owner.child_meta(&name, COMPONENT),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name),
            selector: LabelSelector { match_labels: Some(selector(&owner.name)), ..LabelSelector::default() },
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Retain".into()),
                when_scaled: Some("Retain".into()),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(names::cluster_labels(&owner.name, COMPONENT)),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(owner, spec)),
            },
            volume_claim_templates: Some(vec![repo_claim(owner, spec, created_size)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

fn pod_spec(owner: &Owner, spec: &PgClusterSpec) -> PodSpec {
    let mut volumes = config_and_tls_volumes(&owner.name).to_vec();
    volumes.extend([empty_dir("tmp", None), empty_dir("run", Some("Memory"))]);
    PodSpec {
        containers: vec![container(owner, spec)],
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        security_context: Some(postgres_pod_security()),
        affinity: Some(placement::away_from_primary(&owner.name)),
        volumes: Some(volumes),
        ..PodSpec::default()
    }
}

fn container(owner: &Owner, spec: &PgClusterSpec) -> Container {
    let mut mounts = config_and_tls_mounts().to_vec();
    mounts.extend([
        mount(names::REPO_VOLUME, names::REPO_MOUNT, false),
        // pgBackRest's locks and temporary files.
        mount("tmp", "/tmp", false),
        // The readiness file.
        mount("run", layout::RUN_DIR, false),
    ]);
    Container {
        name: pgbackrest::SIDECAR.into(),
        image: Some(spec.image.clone()),
        command: Some(vec![
            layout::RELEVO_BINARY.to_string(),
            "repo-host".to_string(),
            format!("--config={}", conf_path(REPO_HOST_CONF_KEY)),
            format!("--stanza={}", names::stanza(&owner.name)),
            format!("--ready-file={}", repohost::READY_FILE),
            format!("--port={TLS_PORT}"),
        ]),
        ports: Some(vec![pgbackrest::tls_port()]),
        // The repo host opens the repository: with encryption, it needs the passphrase.
        env: cipher_secret(&owner.name, spec.backup.encryption.as_ref())
            .map(|secret| vec![pgbackrest::cipher_pass_env(&secret)]),
        // Ready = the TLS server runs and the stanza exists, so archive-push can succeed.
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(["test", "-f", repohost::READY_FILE].map(String::from).to_vec()),
            }),
            period_seconds: Some(2),
            timeout_seconds: Some(2),
            failure_threshold: Some(1),
            ..Probe::default()
        }),
        security_context: Some(container_security()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

fn repo_claim(owner: &Owner, spec: &PgClusterSpec, created_size: Option<&str>) -> PersistentVolumeClaim {
    let storage = &spec.backup.repo_storage;
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(names::REPO_VOLUME.into()),
            labels: Some(names::cluster_labels(&owner.name, COMPONENT)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(created_size.unwrap_or(&storage.size).to_owned()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// Headless, and publishing the pod before it is ready: instances must reach the server
/// (archive-push) while the stanza is still being created, and the name must resolve for that.
pub fn service(owner: &Owner) -> Service {
    Service {
        metadata: owner.child_meta(names::repo_host(&owner.name), COMPONENT),
        spec: Some(ServiceSpec {
            selector: Some(selector(&owner.name)),
            ports: Some(vec![ServicePort {
                name: Some("pgbackrest".into()),
                port: i32::from(TLS_PORT),
                target_port: Some(IntOrString::String("pgbackrest".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            type_: Some("ClusterIP".into()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
#[path = "repo_host_tests.rs"]
mod tests;
