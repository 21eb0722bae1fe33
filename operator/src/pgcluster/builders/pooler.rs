//! The managed PgBouncer of `spec.pooler`: its pgbouncer.ini ConfigMap (no password), its
//! certificate Secret, its Deployment and the Service `<cluster>-pooler` applications dial.
//! Credentials reach PgBouncer only through the mounted application Secret, from which the
//! supervisor (`relevo pooler`) writes the userlist at start: never a ConfigMap, an argument
//! or an environment variable.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, KeyToPath, PodSpec, PodTemplateSpec, Probe,
    Secret, SecretVolumeSource, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::pgcluster::PoolerSpec;
use crate::pki::CertifiedKey;
use crate::pooler::ini::{self, Paths};
use crate::protocol::hash::fnv1a32;
use crate::protocol::names;
use crate::protocol::pooler::{
    CONTROL_PORT, CREDENTIALS_DIR, POOLER_PORT, RUN_DIR, SERVER_CA_DIR, TEMPLATE_DIR, TEMPLATE_KEY, TLS_DIR,
};

use super::Owner;
use super::pgbackrest::{CA_CERT_KEY, TLS_CERT_KEY, TLS_KEY_KEY};
use super::pod::{container_security, empty_dir, mount, postgres_pod_security};
use super::secrets::{PASSWORD_KEY, USERNAME_KEY};

/// The `app.kubernetes.io/component` of every pooler object.
pub const COMPONENT: &str = "pooler";
/// Pod annotation carrying the hash of pgbouncer.ini, so that a change of spec.pooler rolls
/// the pods (PgBouncer reads its file at start).
pub const CONFIG_HASH_ANNOTATION: &str = "relevo.dev/pooler-config";

/// Everything the pooler needs but its certificate Secret ([`tls_secret`]), which is issued
/// at the API edge from the cluster CA.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolerObjects {
    pub config_map: ConfigMap,
    pub deployment: Deployment,
    pub service: Service,
}

/// Labels that select the pooler pods of a cluster (and nothing else).
pub fn selector(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::LABEL_CLUSTER.to_string(), cluster.to_string()),
        (names::LABEL_COMPONENT.to_string(), COMPONENT.to_string()),
    ])
}

/// Where every pooler pod starts pointing until the operator names the primary's own pod:
/// `<cluster>-rw`, which follows the primary (its certificate names it).
pub fn initial_target(cluster: &str, namespace: &str) -> String {
    format!("{}.{namespace}.svc", names::service_rw(cluster))
}

pub fn build(owner: &Owner, spec: &PoolerSpec, database: &str) -> PoolerObjects {
    let name = names::pooler(&owner.name);
    let template = ini::template(spec, &Paths::in_pod());
    let config_hash = format!("{:08x}", fnv1a32(template.as_bytes()));
    PoolerObjects {
        config_map: ConfigMap {
            metadata: owner.child_meta(names::config_map_pooler(&owner.name), COMPONENT),
            data: Some(BTreeMap::from([(TEMPLATE_KEY.to_string(), template)])),
            ..ConfigMap::default()
        },
        deployment: deployment(owner, &name, spec, database, &config_hash),
        service: Service {
            metadata: owner.child_meta(&name, COMPONENT),
            spec: Some(ServiceSpec {
                selector: Some(selector(&owner.name)),
                ports: Some(vec![ServicePort {
                    name: Some("pgbouncer".into()),
                    port: POOLER_PORT,
                    target_port: Some(IntOrString::String("pgbouncer".into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        },
    }
}

/// `<cluster>-pooler-tls`: the pooler's certificate for its Service names and the cluster CA
/// (which the control channel trusts for client certificates).
pub fn tls_secret(owner: &Owner, ca_cert_pem: &str, leaf: &CertifiedKey) -> Secret {
    Secret {
        metadata: owner.child_meta(names::secret_pooler_tls(&owner.name), COMPONENT),
        type_: Some("kubernetes.io/tls".into()),
        string_data: Some(BTreeMap::from([
            (TLS_CERT_KEY.to_string(), leaf.cert_pem.clone()),
            (TLS_KEY_KEY.to_string(), leaf.key_pem.clone()),
            (CA_CERT_KEY.to_string(), ca_cert_pem.to_string()),
        ])),
        ..Secret::default()
    }
}

fn secret_volume(name: &str, secret: String, items: Option<Vec<KeyToPath>>) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            items,
            default_mode: Some(0o400),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn key(key: &str) -> KeyToPath {
    KeyToPath { key: key.into(), path: key.into(), ..KeyToPath::default() }
}

fn deployment(owner: &Owner, name: &str, spec: &PoolerSpec, database: &str, config_hash: &str) -> Deployment {
    let cluster = &owner.name;
    let mut pod_labels = names::cluster_labels(cluster, COMPONENT);
    pod_labels.extend(selector(cluster));
    let volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::config_map_pooler(cluster),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        // Only the user name and password of the application Secret, not its other keys.
        secret_volume(
            "credentials",
            names::secret_app(cluster),
            Some(vec![key(USERNAME_KEY), key(PASSWORD_KEY)]),
        ),
        secret_volume("tls", names::secret_pooler_tls(cluster), None),
        // PostgreSQL's CA only: the server's key stays out of the pooler pods.
        secret_volume("server-ca", names::secret_server_tls(cluster), Some(vec![key(CA_CERT_KEY)])),
        // The userlist PgBouncer reads holds a password: memory, never the node's disk.
        empty_dir("run", Some("Memory")),
    ];
    Deployment {
        metadata: owner.child_meta(name, COMPONENT),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.instances),
            selector: LabelSelector { match_labels: Some(selector(cluster)), ..LabelSelector::default() },
            // A new pod is ready before an old one goes: the Service never loses every pooler.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_string(),
                        config_hash.to_string(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(postgres_pod_security()),
                    containers: vec![container(owner, spec, database)],
                    volumes: Some(volumes),
                    affinity: Some(super::placement::spread_over_nodes(selector(cluster))),
                    // Leaves time for the supervisor's drain (PAUSE, then SHUTDOWN).
                    termination_grace_period_seconds: Some(30),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn container(owner: &Owner, spec: &PoolerSpec, database: &str) -> Container {
    let tcp = |port: &str| Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(port.into()),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(5),
        ..Probe::default()
    };
    let mut args = vec![
        "pooler".to_string(),
        "--initial-target".into(),
        initial_target(&owner.name, &owner.namespace),
        "--pause-bound-seconds".into(),
        spec.pause_bound_seconds.to_string(),
    ];
    for db in [database, "postgres"] {
        args.extend(["--database".to_string(), db.to_string()]);
    }
    Container {
        name: "pgbouncer".into(),
        image: Some(spec.image.clone()),
        command: Some(vec!["/usr/local/bin/relevo".into()]),
        args: Some(args),
        ports: Some(vec![
            ContainerPort {
                name: Some("pgbouncer".into()),
                container_port: POOLER_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("control".into()),
                container_port: i32::from(CONTROL_PORT),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(tcp("pgbouncer")),
        liveness_probe: Some(Probe { failure_threshold: Some(6), ..tcp("pgbouncer") }),
        resources: spec.resources.clone(),
        security_context: Some(container_security()),
        volume_mounts: Some(vec![
            mount("config", TEMPLATE_DIR, true),
            mount("credentials", CREDENTIALS_DIR, true),
            mount("tls", TLS_DIR, true),
            mount("server-ca", SERVER_CA_DIR, true),
            mount("run", RUN_DIR, false),
        ]),
        ..Container::default()
    }
}

#[cfg(test)]
#[path = "pooler_tests.rs"]
mod tests;
