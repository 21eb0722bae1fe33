//! Names and labels of everything a PgCluster owns. One place, so that the builders, the
//! controller and the e2e tests agree on them.

use std::collections::BTreeMap;

/// Labels every child object carries.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Cluster a child belongs to.
pub const LABEL_CLUSTER: &str = "relevo.dev/cluster";
/// PostgreSQL instance (`<cluster>-<N>`) a pod, StatefulSet or PVC belongs to.
pub const LABEL_PG_INSTANCE: &str = "relevo.dev/instance";
/// Role of a pod, set by the operator from what PostgreSQL reports; never part of a
/// StatefulSet template, so that a role change never restarts a pod.
pub const LABEL_ROLE: &str = "relevo.dev/role";

/// Value of `app.kubernetes.io/name`.
pub const APP_NAME: &str = "relevo";

/// Value of [`LABEL_ROLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleLabel {
    Primary,
    Standby,
}

impl RoleLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleLabel::Primary => "primary",
            RoleLabel::Standby => "standby",
        }
    }
}

/// Name of instance `ordinal` (1-based): its StatefulSet and the `relevo.dev/instance` label.
pub fn instance(cluster: &str, ordinal: i32) -> String {
    format!("{cluster}-{ordinal}")
}

/// The single pod of an instance's StatefulSet.
pub fn pod(instance: &str) -> String {
    format!("{instance}-0")
}

/// Ordinal of an instance name of this cluster, e.g. ("demo", "demo-2") -> Some(2).
pub fn ordinal(cluster: &str, instance: &str) -> Option<i32> {
    let suffix = instance.strip_prefix(cluster)?.strip_prefix('-')?;
    suffix.parse().ok().filter(|n| *n >= 1 && !suffix.starts_with('0'))
}

pub fn service_rw(cluster: &str) -> String {
    format!("{cluster}-rw")
}
pub fn service_ro(cluster: &str) -> String {
    format!("{cluster}-ro")
}
pub fn service_r(cluster: &str) -> String {
    format!("{cluster}-r")
}
/// Headless Service that gives pods their DNS names; also the StatefulSets' serviceName.
pub fn service_headless(cluster: &str) -> String {
    cluster.to_string()
}
pub fn config_map(cluster: &str) -> String {
    format!("{cluster}-config")
}
pub fn secret_superuser(cluster: &str) -> String {
    format!("{cluster}-superuser")
}
pub fn secret_replication(cluster: &str) -> String {
    format!("{cluster}-replication")
}
pub fn secret_app(cluster: &str) -> String {
    format!("{cluster}-app")
}
/// Name of the managed Redis' Deployment, Service, PVC, ConfigMap and Secret.
pub fn redis(cluster: &str) -> String {
    format!("{cluster}-redis")
}

/// Pod DNS name of an instance through the headless Service, as pgBackRest and certificates
/// need it (pgBackRest 2.45 does not match IP SANs).
pub fn pod_fqdn(cluster: &str, instance: &str, namespace: &str) -> String {
    format!("{}.{}.{namespace}.svc", pod(instance), service_headless(cluster))
}

/// Most instances a PgCluster may have (the CRD's maximum); certificates name them all, so
/// scaling up never needs a new certificate.
pub const MAX_INSTANCES: i32 = 9;

/// The pgBackRest repo host: StatefulSet, its headless Service and (with [`repo_pod`]) the
/// pod DNS name pgBackRest clients use.
pub fn repo_host(cluster: &str) -> String {
    format!("{cluster}-repo")
}
/// The repo host's single pod.
pub fn repo_pod(cluster: &str) -> String {
    pod(&repo_host(cluster))
}
/// Pod DNS name of the repo host through its own headless Service.
pub fn repo_fqdn(cluster: &str, namespace: &str) -> String {
    format!("{}.{}.{namespace}.svc", repo_pod(cluster), repo_host(cluster))
}
/// volumeClaimTemplate of the repo host, hence its PVC `repo-<cluster>-repo-0`, which backup
/// Jobs mount too.
pub const REPO_VOLUME: &str = "repo";
pub fn repo_pvc(cluster: &str) -> String {
    format!("{REPO_VOLUME}-{}", repo_pod(cluster))
}
/// volumeClaimTemplate of every instance, hence its PVC `pgdata-<instance>-0`.
pub const DATA_VOLUME: &str = "pgdata";
pub fn data_pvc(instance: &str) -> String {
    format!("{DATA_VOLUME}-{}", pod(instance))
}
/// Where the repository volume is mounted, and the repository inside it.
pub const REPO_MOUNT: &str = "/pgbackrest";
pub const REPO_PATH: &str = "/pgbackrest/repo";
/// pgBackRest stanza of a cluster: the cluster's name (unique in its namespace, and each
/// cluster has its own repository).
pub fn stanza(cluster: &str) -> String {
    cluster.to_string()
}
/// Secret with the pgBackRest TLS material mounted in pods: `ca.crt`, `tls.crt`, `tls.key`.
pub fn secret_pgbackrest_tls(cluster: &str) -> String {
    format!("{cluster}-pgbackrest-tls")
}
/// Secret with the cluster's pgBackRest CA key (`ca.crt`, `ca.key`); never mounted.
pub fn secret_pgbackrest_ca(cluster: &str) -> String {
    format!("{cluster}-pgbackrest-ca")
}
/// Secret with the generated passphrase of an encrypted repository (`passphrase`). It has no
/// owner: it must outlive the cluster as long as the repository volume does.
pub fn secret_pgbackrest_cipher(cluster: &str) -> String {
    format!("{cluster}-pgbackrest-cipher")
}
/// ConfigMap with the pgBackRest configuration files (`pg-host.conf`, `repo-host.conf`).
pub fn config_map_pgbackrest(cluster: &str) -> String {
    format!("{cluster}-pgbackrest")
}
/// Where pods mount the pgBackRest ConfigMap and TLS Secret.
pub const PGBACKREST_CONF_DIR: &str = "/etc/pgbackrest/conf";
/// The instance pods' pgBackRest configuration, a key of that ConfigMap.
pub const PG_HOST_CONF_KEY: &str = "pg-host.conf";

/// Path of a file of the pgBackRest ConfigMap inside a pod.
pub fn pgbackrest_conf_path(key: &str) -> String {
    format!("{PGBACKREST_CONF_DIR}/{key}")
}
pub const PGBACKREST_TLS_DIR: &str = "/etc/pgbackrest/tls";
/// Common name of the one certificate a cluster's pgBackRest hosts present, as servers and as
/// clients; `tls-server-auth` admits it for the cluster's stanza.
pub const PGBACKREST_CLIENT_CN: &str = "relevo-pgbackrest";

/// Secret with PostgreSQL's server certificate, mounted by the instance pods: `tls.crt`,
/// `tls.key`, and `ca.crt`, the CA clients verify it against. Operator-owned: issued from
/// the cluster CA, or copied from `spec.tls.serverSecret`.
pub fn secret_server_tls(cluster: &str) -> String {
    format!("{cluster}-server-tls")
}
/// ConfigMap publishing `ca.crt`, the CA that PostgreSQL's server certificate chains to, for
/// applications to mount and connect with `sslmode=verify-full`.
pub fn config_map_ca(cluster: &str) -> String {
    format!("{cluster}-ca")
}
/// The pooler's Deployment and Service (port 5432): what applications dial instead of `-rw`.
pub fn pooler(cluster: &str) -> String {
    format!("{cluster}-pooler")
}
/// ConfigMap holding the pooler's pgbouncer.ini (no password in it).
pub fn config_map_pooler(cluster: &str) -> String {
    format!("{cluster}-pooler-config")
}
/// Secret with the pooler's certificate for its Service names, issued from the cluster CA:
/// `tls.crt`, `tls.key`, `ca.crt`. PgBouncer presents it to clients, and the control
/// channel to the operator.
pub fn secret_pooler_tls(cluster: &str) -> String {
    format!("{cluster}-pooler-tls")
}
/// Label a Secret must carry before `spec.redis.external.passwordSecret` may name it.
pub const LABEL_REDIS_CREDENTIALS: &str = "relevo.dev/redis-credentials";

/// Labels shared by every object of a cluster.
pub fn cluster_labels(cluster: &str, component: &str) -> BTreeMap<String, String> {
    [
        (LABEL_NAME, APP_NAME),
        (LABEL_INSTANCE, cluster),
        (LABEL_COMPONENT, component),
        (LABEL_MANAGED_BY, "relevo-operator"),
        (LABEL_CLUSTER, cluster),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Selector of every PostgreSQL pod of a cluster. Deliberately small and stable: selectors
/// of StatefulSets are immutable.
pub fn postgres_selector(cluster: &str) -> BTreeMap<String, String> {
    [(LABEL_CLUSTER, cluster), (LABEL_COMPONENT, "postgres")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_round_trip_and_reject_strangers() {
        assert_eq!(ordinal("demo", &instance("demo", 3)), Some(3));
        assert_eq!(ordinal("demo", "demo-0"), None);
        assert_eq!(ordinal("demo", "demo-02"), None);
        assert_eq!(ordinal("demo", "demo-x"), None);
        assert_eq!(ordinal("demo", "demox-1"), None);
        // A cluster whose name is another's prefix must not claim its instances.
        assert_eq!(ordinal("demo", "demo-2-1"), None);
    }

    #[test]
    fn pod_dns_goes_through_the_headless_service() {
        assert_eq!(pod_fqdn("demo", "demo-2", "db"), "demo-2-0.demo.db.svc");
        assert_eq!(repo_fqdn("demo", "db"), "demo-repo-0.demo-repo.db.svc");
        assert_eq!(repo_pvc("demo"), "repo-demo-repo-0");
    }
}
