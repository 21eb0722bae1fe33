//! The managed Redis that records backups: a one-replica Deployment on its own volume with
//! append-only persistence, a Service, and its configuration. The password comes from the
//! `<cluster>-redis` Secret through an included file, so it is never on a command line
//! (where `ps` and the pod spec would show it).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource, SecurityContext, Service, ServicePort,
    ServiceSpec, TCPSocketAction, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::pgcluster::ManagedRedisSpec;
use crate::protocol::names;

use super::Owner;
use super::placement;

/// Key of the Redis Secret holding its users ([`acl_conf`]), included by redis.conf so that
/// the password is never on a command line.
pub const AUTH_CONF_KEY: &str = "auth.conf";

pub const REDIS_PORT: i32 = 6379;
/// uid of `redis` in the relevo/redis image (created with this fixed id, like postgres).
pub const REDIS_UID: i64 = 999;
const CONFIG_DIR: &str = "/etc/relevo/redis";
const AUTH_DIR: &str = "/etc/relevo/redis-auth";
const DATA_DIR: &str = "/data";
const REDIS_CONF_KEY: &str = "redis.conf";

/// The user relevo's operator and `relevo backups` connect as, to the managed Redis.
pub const REDIS_USER: &str = "relevo";

/// The managed Redis' users, included by redis.conf from the Secret (so that the password is
/// never on a command line): `default` is off, and relevo's user may only read (what the
/// users' `listar_backups.sh` and `ver_backups.sh` do too) and run the few writes the backup
/// records need, on the record keys only: `backup:*` hashes, `backups:*` indexes and
/// pointers. No administration, no scripts, no other keys.
pub fn acl_conf(password: &str) -> String {
    format!(
        "user default off resetpass -@all\n\
         user {REDIS_USER} on >{password} resetkeys ~backup:* ~backups:* resetchannels -@all \
         +@read +ping +multi +exec +discard +set +del +hset +zadd +zrem\n"
    )
}

/// Everything the managed Redis needs except its Secret (see [`super::secrets`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RedisObjects {
    pub config_map: ConfigMap,
    pub volume_claim: PersistentVolumeClaim,
    pub deployment: Deployment,
    pub service: Service,
}

/// `claim_size`: what the existing volume claim requests. A larger `storage.size` is not
/// applied here: [`crate::pgcluster::volumes::grow`] grows the claim, and reports a refusal.
pub fn build(owner: &Owner, redis: &ManagedRedisSpec, claim_size: Option<&str>) -> RedisObjects {
    let name = names::redis(&owner.name);
    RedisObjects {
        config_map: ConfigMap {
            metadata: owner.child_meta(&name, "redis"),
            data: Some(BTreeMap::from([(REDIS_CONF_KEY.to_string(), redis_conf())])),
            ..ConfigMap::default()
        },
        volume_claim: PersistentVolumeClaim {
            metadata: owner.child_meta(&name, "redis"),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: redis.storage.storage_class.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity(claim_size.unwrap_or(&redis.storage.size).to_owned()),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        },
        deployment: deployment(owner, &name, redis),
        service: Service {
            metadata: owner.child_meta(&name, "redis"),
            spec: Some(ServiceSpec {
                selector: Some(selector(&owner.name)),
                ports: Some(vec![ServicePort {
                    name: Some("redis".into()),
                    port: REDIS_PORT,
                    target_port: Some(IntOrString::String("redis".into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        },
    }
}

/// Every write is fsynced once a second to the append-only file, which is what the users'
/// docker-compose Redis did; backup records are small and rare.
fn redis_conf() -> String {
    format!(
        "# Rendered by relevo; do not edit.\n\
         port {REDIS_PORT}\n\
         dir {DATA_DIR}\n\
         appendonly yes\n\
         appendfsync everysec\n\
         save \"\"\n\
         protected-mode no\n\
         include {AUTH_DIR}/{AUTH_CONF_KEY}\n"
    )
}

fn selector(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::LABEL_CLUSTER.to_string(), cluster.to_string()),
        (names::LABEL_COMPONENT.to_string(), "redis".to_string()),
    ])
}

fn deployment(owner: &Owner, name: &str, redis: &ManagedRedisSpec) -> Deployment {
    let mut pod_labels = names::cluster_labels(&owner.name, "redis");
    pod_labels.extend(selector(&owner.name));
    let volume = |volume_name: &str, source: Volume| Volume { name: volume_name.into(), ..source };
    Deployment {
        metadata: owner.child_meta(name, "redis"),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector { match_labels: Some(selector(&owner.name)), ..LabelSelector::default() },
            // The volume is ReadWriteOnce: the old pod must release it before the new one starts.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..DeploymentStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(REDIS_UID),
                        run_as_group: Some(REDIS_UID),
                        fs_group: Some(REDIS_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    affinity: Some(placement::away_from_primary(&owner.name)),
                    containers: vec![container(redis)],
                    volumes: Some(vec![
                        volume(
                            "data",
                            Volume {
                                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                    claim_name: name.into(),
                                    ..PersistentVolumeClaimVolumeSource::default()
                                }),
                                ..Volume::default()
                            },
                        ),
                        volume(
                            "config",
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
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn container(redis: &ManagedRedisSpec) -> Container {
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    };
    Container {
        name: "redis".into(),
        image: Some(redis.image.clone()),
        command: Some(vec!["redis-server".into(), format!("{CONFIG_DIR}/{REDIS_CONF_KEY}")]),
        ports: Some(vec![ContainerPort {
            name: Some("redis".into()),
            container_port: REDIS_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        // A TCP check: `redis-cli ping` would need the password in the probe.
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("redis".into()),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount("data", DATA_DIR, false),
            mount("config", CONFIG_DIR, true),
            mount("auth", AUTH_DIR, true),
        ]),
        ..Container::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgcluster::test_fixtures::cluster_from_yaml;

    fn build_default() -> RedisObjects {
        let cluster = cluster_from_yaml("spec: {redis: {managed: {storage: {size: 300Mi}}}}");
        build(&Owner::of(&cluster).unwrap(), cluster.spec.redis.managed.as_ref().unwrap(), None)
    }

    #[test]
    fn prefers_a_node_other_than_the_primarys() {
        let objects = build_default();
        let pod = objects.deployment.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.affinity, Some(placement::away_from_primary("demo")));
    }

    #[test]
    fn config_is_append_only_and_includes_the_password_file() {
        let objects = build_default();
        let conf = &objects.config_map.data.as_ref().unwrap()[REDIS_CONF_KEY];
        assert!(conf.lines().any(|l| l == "appendonly yes"));
        assert!(conf.lines().any(|l| l == "dir /data"));
        assert!(conf.lines().any(|l| l == "include /etc/relevo/redis-auth/auth.conf"));
        assert!(!conf.contains("requirepass"), "the password belongs in the Secret");
    }

    #[test]
    fn password_is_never_an_argument_or_env() {
        let objects = build_default();
        let pod = objects.deployment.spec.unwrap().template.spec.unwrap();
        let container = &pod.containers[0];
        assert_eq!(container.command.as_deref().unwrap(), ["redis-server", "/etc/relevo/redis/redis.conf"]);
        assert!(container.args.is_none() && container.env.is_none());
        let auth = pod.volumes.unwrap().into_iter().find(|v| v.name == "auth").unwrap();
        assert_eq!(auth.secret.unwrap().secret_name.as_deref(), Some("demo-redis"));
    }

    #[test]
    fn data_lives_on_its_own_claim_with_recreate_strategy() {
        let objects = build_default();
        let claim = objects.volume_claim.spec.unwrap().resources.unwrap().requests.unwrap();
        assert_eq!(claim["storage"], Quantity("300Mi".into()));
        let spec = objects.deployment.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
        let service_selector = objects.service.spec.unwrap().selector.unwrap();
        assert_eq!(&service_selector, spec.selector.match_labels.as_ref().unwrap());
    }
}
