//! The managed PgBouncer: a Deployment and a Service `<cluster>-pooler`, the pgbouncer.ini
//! template (a ConfigMap, with no password and no target in it), and the Secret holding the
//! userlist and the control endpoint's token.
//!
//! The pod's entrypoint is `relevo pooler` (see [`crate::pooler::run`]): it adds the
//! `[databases]` section (the primary's own address, given by the operator) and its own
//! admin user, so neither is part of anything the operator applies.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    HTTPGetAction, PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec, Probe, Secret,
    SecretVolumeSource, Service, ServicePort, ServiceSpec, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::pooler::PoolerSpec;
use crate::pgcluster::names;
use crate::pooler::{self, ini};

use super::Owner;
use super::statefulset::{container_security, postgres_pod_security};

/// Label `component` of every pooler object.
pub const COMPONENT: &str = "pooler";

/// The pooler's objects, except its Secret (see [`secret`]): the controller creates that one
/// only when absent, because the token in it must not change under running pods.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolerObjects {
    pub config_map: ConfigMap,
    pub deployment: Deployment,
    pub service: Service,
}

/// `database`: the cluster's application database, named in the pooler's `[databases]`.
pub fn build(owner: &Owner, spec: &PoolerSpec, database: &str) -> PoolerObjects {
    let name = names::pooler(&owner.name);
    PoolerObjects {
        config_map: ConfigMap {
            metadata: owner.child_meta(&name, COMPONENT),
            data: Some(BTreeMap::from([(pooler::INI_KEY.to_string(), ini::template(spec))])),
            ..ConfigMap::default()
        },
        deployment: deployment(owner, &name, spec, database),
        service: Service {
            metadata: owner.child_meta(&name, COMPONENT),
            spec: Some(ServiceSpec {
                selector: Some(names::pooler_selector(&owner.name)),
                ports: Some(vec![ServicePort {
                    name: Some("postgres".into()),
                    port: pooler::POOLER_PORT,
                    target_port: Some(IntOrString::String("pgbouncer".into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                type_: Some("ClusterIP".into()),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        },
    }
}

/// The pooler Secret: the userlist of the users clients log in as (each with the password of
/// its generated Secret) and the control token. Mounted as a volume, never an env var.
pub fn secret(owner: &Owner, token: &str, users: &[(String, String)]) -> Secret {
    Secret {
        metadata: owner.child_meta(names::pooler(&owner.name), COMPONENT),
        type_: Some("Opaque".into()),
        // `data`, not `stringData`: server-side apply then owns exactly these keys, and the
        // controller can compare them with what is stored.
        data: Some(BTreeMap::from([
            (pooler::TOKEN_KEY.to_string(), ByteString(token.as_bytes().to_vec())),
            (pooler::USERLIST_KEY.to_string(), ByteString(ini::userlist(users).into_bytes())),
        ])),
        ..Secret::default()
    }
}

/// Where a new pooler pod sends clients before the operator gives it the primary's own
/// address: the -rw Service, which is right whenever no switchover is under way.
pub fn initial_target(owner: &Owner) -> String {
    format!("{}.{}.svc", names::service_rw(&owner.name), owner.namespace)
}

fn deployment(owner: &Owner, name: &str, spec: &PoolerSpec, database: &str) -> Deployment {
    let mut pod_labels = names::cluster_labels(&owner.name, COMPONENT);
    pod_labels.extend(names::pooler_selector(&owner.name));
    let volume = |name: &str, source: Volume| Volume { name: name.into(), ..source };
    Deployment {
        metadata: owner.child_meta(name, COMPONENT),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.instances),
            selector: LabelSelector {
                match_labels: Some(names::pooler_selector(&owner.name)),
                ..LabelSelector::default()
            },
            // A new pod is ready before an old one goes: the Service never runs out of poolers.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(postgres_pod_security()),
                    affinity: Some(spread(&owner.name)),
                    containers: vec![container(owner, spec, database)],
                    volumes: Some(vec![
                        volume(
                            "template",
                            Volume {
                                config_map: Some(ConfigMapVolumeSource {
                                    name: name.into(),
                                    ..ConfigMapVolumeSource::default()
                                }),
                                ..Volume::default()
                            },
                        ),
                        volume(
                            "auth",
                            Volume {
                                secret: Some(SecretVolumeSource {
                                    secret_name: Some(name.into()),
                                    default_mode: Some(0o400),
                                    ..SecretVolumeSource::default()
                                }),
                                ..Volume::default()
                            },
                        ),
                        volume(
                            "run",
                            Volume {
                                empty_dir: Some(EmptyDirVolumeSource {
                                    medium: Some("Memory".into()),
                                    ..EmptyDirVolumeSource::default()
                                }),
                                ..Volume::default()
                            },
                        ),
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn container(owner: &Owner, spec: &PoolerSpec, database: &str) -> Container {
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    };
    let port = |name: &str, port: i32| ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    Container {
        name: "pgbouncer".into(),
        image: Some(spec.image.clone()),
        command: Some(vec!["relevo".into(), "pooler".into()]),
        // None is a secret: a Service name, a number of seconds, a database name.
        args: Some(vec![
            "--initial-target".into(),
            initial_target(owner),
            "--pause-bound-seconds".into(),
            spec.pause_bound_seconds.to_string(),
            "--database".into(),
            database.into(),
        ]),
        ports: Some(vec![port("pgbouncer", pooler::POOLER_PORT), port("control", pooler::CONTROL_PORT)]),
        // Ready once PgBouncer's admin console answers the pooler process.
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::String("control".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(2),
            failure_threshold: Some(2),
            ..Probe::default()
        }),
        resources: spec.resources.clone(),
        security_context: Some(container_security()),
        volume_mounts: Some(vec![
            mount("template", pooler::TEMPLATE_DIR, true),
            mount("auth", pooler::AUTH_DIR, true),
            mount("run", pooler::RUN_DIR, false),
        ]),
        ..Container::default()
    }
}

/// Prefer pooler pods on different nodes, so that one node lost keeps a pooler up.
fn spread(cluster: &str) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some(names::pooler_selector(cluster)),
                        ..LabelSelector::default()
                    }),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..PodAffinityTerm::default()
                },
            }]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgcluster::test_fixtures::cluster_from_yaml;

    fn build_from(spec_yaml: &str) -> (Owner, PoolerObjects) {
        let cluster = cluster_from_yaml(spec_yaml);
        let owner = Owner::of(&cluster).unwrap();
        let objects = build(&owner, cluster.spec.pooler.as_ref().expect("fixture has a pooler"), "app");
        (owner, objects)
    }

    #[test]
    fn defaults_are_two_pods_in_transaction_mode() {
        let (_, objects) = build_from("spec: {pooler: {}}");
        let spec = objects.deployment.spec.unwrap();
        assert_eq!(spec.replicas, Some(2));
        let template = &objects.config_map.data.unwrap()[pooler::INI_KEY];
        assert!(template.lines().any(|l| l == "pool_mode = transaction"), "{template}");
        assert!(template.lines().any(|l| l == "default_pool_size = 20"), "{template}");
    }

    #[test]
    fn every_name_is_cluster_pooler_and_the_service_selects_the_pods() {
        let (_, objects) = build_from("spec: {pooler: {instances: 3, poolMode: session}}");
        for name in [
            &objects.config_map.metadata.name,
            &objects.deployment.metadata.name,
            &objects.service.metadata.name,
        ] {
            assert_eq!(name.as_deref(), Some("demo-pooler"));
        }
        let deployment = objects.deployment.spec.unwrap();
        let pod_labels = deployment.template.metadata.unwrap().labels.unwrap();
        let selector = objects.service.spec.unwrap().selector.unwrap();
        assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
        assert_eq!(deployment.selector.match_labels.unwrap(), selector);
        assert_eq!(deployment.replicas, Some(3));
    }

    #[test]
    fn no_password_in_the_config_map_the_arguments_or_the_environment() {
        let (owner, objects) = build_from("spec: {pooler: {}}");
        let template = &objects.config_map.data.unwrap()[pooler::INI_KEY];
        assert!(!template.contains("password"), "{template}");
        let pod = objects.deployment.spec.unwrap().template.spec.unwrap();
        let container = &pod.containers[0];
        assert!(container.env.is_none() && container.env_from.is_none());
        assert_eq!(container.command.as_deref().unwrap(), ["relevo", "pooler"]);
        assert_eq!(
            container.args.as_deref().unwrap(),
            ["--initial-target", "demo-rw.db.svc", "--pause-bound-seconds", "10", "--database", "app"]
        );
        let auth = pod.volumes.unwrap().into_iter().find(|v| v.name == "auth").unwrap().secret.unwrap();
        assert_eq!(auth.secret_name.as_deref(), Some("demo-pooler"));
        assert_eq!(auth.default_mode, Some(0o400));
        let secret = secret(&owner, "t0ken", &[("app".into(), "s3cret".into())]);
        let data = secret.data.unwrap();
        assert_eq!(data[pooler::TOKEN_KEY].0, b"t0ken");
        assert_eq!(data[pooler::USERLIST_KEY].0, b"\"app\" \"s3cret\"\n");
    }

    #[test]
    fn pods_are_unprivileged_and_rolled_without_losing_capacity() {
        let (_, objects) = build_from("spec: {pooler: {}}");
        let spec = objects.deployment.spec.unwrap();
        let rolling = spec.strategy.unwrap().rolling_update.unwrap();
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
        let security = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        let probe = pod.containers[0].readiness_probe.clone().unwrap().http_get.unwrap();
        assert_eq!(probe.path.as_deref(), Some("/healthz"));
    }
}
