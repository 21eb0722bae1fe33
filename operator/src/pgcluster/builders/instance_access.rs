//! What the instance pods may do in the Kubernetes API: read and renew their cluster's
//! primary Lease, and nothing else. One ServiceAccount per cluster, a Role limited by
//! resourceName to that one Lease, its RoleBinding, and the Lease itself.
//!
//! The token reaches only the postgres container, through a projected volume at the path
//! in-cluster clients read; the pgBackRest sidecar gets none.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMapProjection, DownwardAPIProjection, DownwardAPIVolumeFile, KeyToPath, ObjectFieldSelector,
    ProjectedVolumeSource, ServiceAccount, ServiceAccountTokenProjection, Volume, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::Owner;
use crate::lease;

pub const COMPONENT: &str = "instance-access";
/// Where in-cluster Kubernetes clients look for the token, CA and namespace.
pub const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const TOKEN_VOLUME: &str = "lease-token";
/// Short-lived, rotated by kubelet; kube's client rereads the file.
const TOKEN_SECONDS: i64 = 3600;

pub fn service_account_name(cluster: &str) -> String {
    format!("{cluster}-instance")
}

pub fn service_account(owner: &Owner) -> ServiceAccount {
    ServiceAccount {
        metadata: owner.child_meta(service_account_name(&owner.name), COMPONENT),
        // Tokens only through the projected volume of the postgres container.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

pub fn role(owner: &Owner) -> Role {
    Role {
        metadata: owner.child_meta(service_account_name(&owner.name), COMPONENT),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["coordination.k8s.io".into()]),
            resources: Some(vec!["leases".into()]),
            resource_names: Some(vec![lease::name(&owner.name)]),
            verbs: vec!["get".into(), "update".into()],
            ..PolicyRule::default()
        }]),
    }
}

pub fn role_binding(owner: &Owner) -> RoleBinding {
    let name = service_account_name(&owner.name);
    RoleBinding {
        metadata: owner.child_meta(name.clone(), COMPONENT),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name,
            namespace: Some(owner.namespace.clone()),
            ..Subject::default()
        }]),
    }
}

/// The Lease as first created: held by the instance that is (or will be) the primary.
pub fn primary_lease(owner: &Owner, holder: &str) -> Lease {
    lease::api::new_lease(owner.child_meta(lease::name(&owner.name), COMPONENT), holder)
}

pub fn token_volume() -> Volume {
    Volume {
        name: TOKEN_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        expiration_seconds: Some(TOKEN_SECONDS),
                        ..ServiceAccountTokenProjection::default()
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            mode: None,
                        }]),
                        ..ConfigMapProjection::default()
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.namespace".into(),
                                ..ObjectFieldSelector::default()
                            }),
                            ..DownwardAPIVolumeFile::default()
                        }]),
                    }),
                    ..VolumeProjection::default()
                },
            ]),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
}

pub fn token_mount() -> VolumeMount {
    VolumeMount {
        name: TOKEN_VOLUME.into(),
        mount_path: TOKEN_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgcluster::test_fixtures::cluster_from_yaml;

    #[test]
    fn the_role_reaches_one_lease_with_two_verbs() {
        let owner = Owner::of(&cluster_from_yaml("spec: {}")).unwrap();
        let role = role(&owner);
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].resource_names.as_deref(), Some(&["demo-primary".to_string()][..]));
        assert_eq!(rules[0].verbs, vec!["get", "update"]);
        let binding = role_binding(&owner);
        assert_eq!(binding.role_ref.name, "demo-instance");
        assert_eq!(binding.subjects.unwrap()[0].namespace.as_deref(), Some("db"));
        assert_eq!(service_account(&owner).automount_service_account_token, Some(false));
    }

    #[test]
    fn the_lease_names_its_holder_and_is_owned_by_the_cluster() {
        let owner = Owner::of(&cluster_from_yaml("spec: {}")).unwrap();
        let lease = primary_lease(&owner, "demo-1");
        assert_eq!(lease.metadata.name.as_deref(), Some("demo-primary"));
        assert_eq!(lease.metadata.labels.as_ref().unwrap()[lease::LABEL_LEASE], "primary");
        assert!(lease.metadata.owner_references.is_some());
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("demo-1"));
        assert_eq!(spec.lease_duration_seconds, Some(10));
    }
}
