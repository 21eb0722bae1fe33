//! Pure builders of every object a PgCluster owns: one file per resource kind. Each takes
//! the cluster (through [`Owner`]) and the validated spec, and returns the object to
//! server-side apply. Nothing here touches the API.

pub mod config_map;
pub mod instance_access;
pub mod pgbackrest;
pub mod placement;
pub mod pod;
pub mod pooler;
pub mod redis;
pub mod repo_host;
pub mod secrets;
pub mod services;
pub mod statefulset;
pub mod tls;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::PgCluster;

use crate::protocol::names;

/// The PgCluster as the owner of its children: name, namespace and controller reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Owner {
    pub name: String,
    pub namespace: String,
    reference: OwnerReference,
}

impl Owner {
    /// None for a PgCluster that has not been stored yet (no uid or namespace), which the
    /// controller never sees.
    pub fn of(cluster: &PgCluster) -> Option<Self> {
        Some(Self {
            name: cluster.name_any(),
            namespace: cluster.namespace()?,
            reference: cluster.controller_owner_ref(&())?,
        })
    }

    /// Metadata of a child: its name, the cluster's namespace and labels, and the owner
    /// reference that makes Kubernetes delete it with the cluster.
    pub fn child_meta(&self, name: impl Into<String>, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(self.namespace.clone()),
            labels: Some(names::cluster_labels(&self.name, component)),
            owner_references: Some(vec![self.reference.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// The controller of an existing object named like one of our children, when it is not
    /// this cluster ("PgCluster demo", "Deployment x"): applying would take it over.
    pub fn foreign_controller(&self, existing: &ObjectMeta) -> Option<String> {
        let controller = existing.owner_references.iter().flatten().find(|r| r.controller == Some(true))?;
        (controller.uid != self.reference.uid).then(|| format!("{} {}", controller.kind, controller.name))
    }

    /// Like [`Owner::child_meta`], plus the instance label.
    pub fn instance_meta(&self, instance: &str, component: &str) -> ObjectMeta {
        let mut meta = self.child_meta(instance, component);
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(names::LABEL_PG_INSTANCE.into(), instance.into());
        meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgcluster::test_fixtures::cluster_from_yaml;

    #[test]
    fn children_are_owned_by_the_cluster_as_controller() {
        let owner = Owner::of(&cluster_from_yaml("spec: {}")).unwrap();
        let meta = owner.child_meta("demo-config", "config");
        let reference = &meta.owner_references.unwrap()[0];
        assert_eq!((reference.kind.as_str(), reference.name.as_str()), ("PgCluster", "demo"));
        assert_eq!(reference.controller, Some(true));
        assert_eq!(meta.namespace.as_deref(), Some("db"));
        let labels = meta.labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/name"], "relevo");
        assert_eq!(labels["app.kubernetes.io/instance"], "demo");
        assert_eq!(labels["relevo.dev/cluster"], "demo");
    }

    #[test]
    fn only_another_controller_is_foreign() {
        let demo = Owner::of(&cluster_from_yaml("spec: {}")).unwrap();
        let mut other = cluster_from_yaml("spec: {}");
        other.metadata.name = Some("demo-rw".into());
        other.metadata.uid = Some("another-uid".into());
        let other = Owner::of(&other).unwrap();
        let taken = other.child_meta("demo-rw", "postgres");
        assert_eq!(demo.foreign_controller(&taken), Some("PgCluster demo-rw".into()));
        assert_eq!(other.foreign_controller(&taken), None, "our own child");
        assert_eq!(demo.foreign_controller(&ObjectMeta::default()), None, "unowned: ours to manage");
        let mut not_controller = taken.clone();
        not_controller.owner_references.as_mut().unwrap()[0].controller = Some(false);
        assert_eq!(demo.foreign_controller(&not_controller), None);
    }

    #[test]
    fn unsaved_cluster_has_no_owner() {
        let mut cluster = cluster_from_yaml("spec: {}");
        cluster.metadata.uid = None;
        assert_eq!(Owner::of(&cluster), None);
    }
}
