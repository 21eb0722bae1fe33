//! How the reconcile reaches a running instance: its pod IP, verified under its DNS name
//! with the cluster's CA, as the superuser.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::crd::PgClusterStatus;
use crate::crd::pgcluster::InstanceRole;
use crate::postgres::{ClusterCa, Connection};
use crate::protocol::names;
use crate::runtime::context::Context;

use super::builders::Owner;

/// An instance and how to reach it.
pub struct InstanceConnection<'a> {
    pub name: String,
    pub connection: Connection<'a>,
}

/// The ready primary the status names, and how to reach it.
pub fn primary_connection<'a>(
    ctx: &Context,
    owner: &Owner,
    status: &PgClusterStatus,
    pods: &[Pod],
    password: &'a str,
    ca: &'a ClusterCa,
) -> Option<InstanceConnection<'a>> {
    let primary = status.instances.iter().find(|i| i.role == InstanceRole::Primary && i.ready)?;
    if status.current_primary.as_deref() != Some(primary.name.as_str()) {
        return None;
    }
    instance_connection(ctx, owner, &primary.name, pods, password, ca)
}

/// Every ready standby, and how to reach it.
pub fn standby_connections<'a>(
    ctx: &Context,
    owner: &Owner,
    status: &PgClusterStatus,
    pods: &[Pod],
    password: &'a str,
    ca: &'a ClusterCa,
) -> Vec<InstanceConnection<'a>> {
    status
        .instances
        .iter()
        .filter(|i| i.role == InstanceRole::Standby && i.ready)
        .filter_map(|i| instance_connection(ctx, owner, &i.name, pods, password, ca))
        .collect()
}

fn instance_connection<'a>(
    ctx: &Context,
    owner: &Owner,
    instance: &str,
    pods: &[Pod],
    password: &'a str,
    ca: &'a ClusterCa,
) -> Option<InstanceConnection<'a>> {
    let host = pods
        .iter()
        .find(|pod| pod.name_any() == names::pod(instance))
        .and_then(|pod| pod.status.as_ref())
        .and_then(|s| s.pod_ip.clone())?;
    let connection = Connection {
        host,
        server_name: names::pod_fqdn(&owner.name, instance, &owner.namespace),
        superuser_password: password,
        ca,
        timeout: ctx.config.postgres_timeout,
        connect_timeout: None,
    };
    Some(InstanceConnection { name: instance.to_owned(), connection })
}
