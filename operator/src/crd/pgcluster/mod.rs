//! `PgCluster`: a PostgreSQL primary with hot standbys, its Services, credentials and Redis.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod encryption;
mod pooler;
mod replication;
mod status;

pub use encryption::{BackupEncryptionSpec, PASSPHRASE_KEY, cipher_secret, generates_cipher_secret};
pub use pooler::{DEFAULT_POOLER_IMAGE, PoolMode, PoolerSpec};
pub use replication::{
    DataDurability, ReplicationSpec, SynchronousMethod, SynchronousSpec, SynchronousStatus,
};
pub use status::{ArchivingStatus, ClusterPhase, InstanceRole, InstanceStatus, LastBackup, PgClusterStatus};

use super::common::{
    DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN, RFC3339_PATTERN, STORAGE_SIZE_PATTERN,
};

/// Image of PostgreSQL 15 with pgBackRest 2.45 and the relevo instance entrypoint.
/// A fixed tag, never `latest`, so that a node never silently runs another build.
pub const DEFAULT_POSTGRES_IMAGE: &str = "relevo/postgres:15-2.45-1";
/// Image of the managed Redis that records backups.
pub const DEFAULT_REDIS_IMAGE: &str = "relevo/redis:7-1";
/// Most instances a cluster may have: every standby costs a WAL sender and a slot on the
/// primary, and nine is already far beyond what a primary/standby pair needs.
pub const MAX_INSTANCES: i32 = 9;

/// Desired state of a PostgreSQL cluster.
// Clippy reads the repeated `type_ = "string"` of separate printcolumn(...) entries as
// duplicated attributes; they are distinct columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "relevo.dev",
    version = "v1alpha1",
    kind = "PgCluster",
    plural = "pgclusters",
    shortname = "pg",
    category = "relevo",
    namespaced,
    status = "PgClusterStatus",
    derive = "PartialEq",
    doc = "A PostgreSQL primary with streaming hot standbys, managed by relevo.",
    // Pod `<name>-9-0` must be a valid hostname, and StatefulSet `<name>-9` plus its revision
    // hash a valid label value; see pgcluster::validate::MAX_CLUSTER_NAME_LEN.
    validation = Rule::new("self.metadata.name.size() <= 50").message("metadata.name must be at most 50 characters"),
    // Services and pod host names are DNS labels that start with a letter; the apiserver only
    // checks that a custom resource's name is a DNS subdomain (dots, leading digits).
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must start with a letter and hold only lower-case letters, digits and '-' (it names Services and pods)"),
    // The schema alone cannot compare two fields: more synchronous standbys than standbys
    // would block every commit for good.
    validation = Rule::new("!has(self.spec.replication) || !has(self.spec.replication.synchronous) || self.spec.replication.synchronous.number <= self.spec.instances - 1").message("spec.replication.synchronous.number must be at most spec.instances - 1 (the number of standbys)").field_path(".spec.replication.synchronous.number"),
    printcolumn(name = "Instances", type_ = "integer", json_path = ".spec.instances", description = "Desired number of instances"),
    printcolumn(name = "Primary", type_ = "string", json_path = ".status.currentPrimary", description = "Instance that is primary"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Ready condition"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct PgClusterSpec {
    /// Number of PostgreSQL instances: one primary plus (instances - 1) hot standbys.
    /// The first instance (<cluster>-1) initialises the database; the others clone it.
    #[serde(default = "default_instances")]
    #[schemars(range(min = 1, max = 9))]
    pub instances: i32,

    /// Container image with PostgreSQL, pgBackRest and the relevo binary. Use a fixed tag.
    #[serde(default = "default_postgres_image")]
    #[schemars(length(min = 1, max = 256))]
    pub image: String,

    /// Persistent volume of each instance's data directory.
    #[serde(default)]
    pub storage: StorageSpec,

    /// CPU and memory for each PostgreSQL container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::crd::common::resource_quantities)]
    pub resources: Option<ResourceRequirements>,

    /// PostgreSQL configuration, merged over relevo's safe defaults.
    #[serde(default)]
    pub postgresql: PostgresqlSpec,

    /// Automatic failover when the primary stops answering.
    #[serde(default)]
    pub failover: FailoverSpec,

    /// pgBackRest repository of this cluster.
    #[serde(default)]
    pub backup: ClusterBackupSpec,

    /// Redis that records one hash per backup: a managed Deployment (default) or an external URL.
    #[serde(default)]
    pub redis: RedisSpec,

    /// TLS of every PostgreSQL connection. TLS is always on; this chooses the certificate.
    #[serde(default, skip_serializing_if = "TlsSpec::is_default")]
    pub tls: TlsSpec,

    /// Streaming replication: asynchronous unless `synchronous` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationSpec>,

    /// A managed PgBouncer in front of the primary, Service `<cluster>-pooler`. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler: Option<PoolerSpec>,

    /// Where the cluster's pods run relative to each other.
    #[serde(default)]
    pub placement: PlacementSpec,

    /// How the first instance gets its data. Fixed at creation.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("bootstrap is immutable: it only matters when the cluster is created"))]
    pub bootstrap: BootstrapSpec,
}

fn default_instances() -> i32 {
    2
}

fn default_postgres_image() -> String {
    DEFAULT_POSTGRES_IMAGE.to_string()
}

/// PostgreSQL's server certificate. Clients find its CA in the ConfigMap `<cluster>-ca`
/// (key `ca.crt`) and connect with `sslmode=verify-full`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// A Secret of yours in the cluster's namespace, with `tls.crt`, `tls.key` and `ca.crt`
    /// (cert-manager's layout), used instead of a certificate from the cluster's own CA. It
    /// must name `<cluster>-rw` and every pod, short and qualified, e.g. with
    /// `*.<cluster>` and `*.<cluster>.<namespace>.svc`. relevo copies it into
    /// `<cluster>-server-tls` on each reconcile, so a renewal reaches the instances. Unset:
    /// relevo issues a 90-day certificate and renews it when 30 days are left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DNS_SUBDOMAIN_PATTERN), length(max = 253))]
    pub server_secret: Option<String>,
}

impl TlsSpec {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// A persistent volume request. The volume grows in place when `size` grows and its
/// StorageClass allows expansion; it never shrinks, and never moves to another StorageClass.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(STORAGE_CLASS_KEPT).message(STORAGE_CLASS_KEPT_MESSAGE).field_path(".storageClass"))]
pub struct StorageSpec {
    /// Size of the volume, as a Kubernetes quantity such as "1Gi" or "500Mi". A larger size
    /// expands existing volumes in place, if their StorageClass allows it; volumes never shrink.
    #[serde(default = "default_data_size")]
    #[schemars(regex(pattern = STORAGE_SIZE_PATTERN), length(max = 32))]
    pub size: String,

    /// StorageClass of the volume. Unset means the cluster's default StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DNS_SUBDOMAIN_PATTERN), length(max = 253))]
    pub storage_class: Option<String>,
}

/// A volume's StorageClass is set when it is created: a claim cannot move to another.
const STORAGE_CLASS_KEPT: &str = "has(self.storageClass) == has(oldSelf.storageClass) && \
     (!has(self.storageClass) || self.storageClass == oldSelf.storageClass)";
const STORAGE_CLASS_KEPT_MESSAGE: &str =
    "storageClass is immutable: a volume cannot move to another StorageClass";

fn default_data_size() -> String {
    "1Gi".to_string()
}

fn default_repo_size() -> String {
    "2Gi".to_string()
}

fn default_redis_size() -> String {
    "256Mi".to_string()
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self { size: default_data_size(), storage_class: None }
    }
}

/// PostgreSQL server configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresqlSpec {
    /// postgresql.conf parameters, as strings ("max_connections": "200"). They are merged over
    /// relevo's defaults. Parameters that replication, failover or backups depend on
    /// (wal_level, primary_conninfo, archive_command, port, ...) are refused with a reason.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 200))]
    pub parameters: BTreeMap<String, String>,
}

/// Automatic failover settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverSpec {
    /// Promote a standby automatically when the primary has been unreachable for `delay`.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// How long the primary must be unreachable before failover, as a duration of at least
    /// one second ("5s", "1m"); for a primary that does not answer at all, counted from its
    /// first missed primary-Lease renewal when that came first. Shorter delays fail over faster
    /// but risk promoting on a blip.
    #[serde(default = "default_failover_delay")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 16))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s')").message("failover.delay must be at least 1s"))]
    pub delay: String,
}

fn default_true() -> bool {
    true
}

fn default_failover_delay() -> String {
    "5s".to_string()
}

impl Default for FailoverSpec {
    fn default() -> Self {
        Self { enabled: true, delay: default_failover_delay() }
    }
}

/// Placement of the cluster's pods on nodes. Instances always prefer distinct nodes, and
/// the repo host and the managed Redis prefer a node other than the primary's, so that one
/// lost node takes at most one copy of the data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// `Preferred` (default): instances on distinct nodes when there are enough, sharing
    /// nodes otherwise. `Required`: never two instances on one node; an instance with no
    /// free node stays Pending.
    #[serde(default)]
    pub instance_spread: InstanceSpread,
}

/// How strictly instances are spread over nodes (`kubernetes.io/hostname`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum InstanceSpread {
    #[default]
    Preferred,
    Required,
}

/// The cluster's pgBackRest repository.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(encryption::ENCRYPTION_KEPT).message(encryption::ENCRYPTION_KEPT_MESSAGE).field_path(".encryption"))]
pub struct ClusterBackupSpec {
    /// Volume of the repository host, which holds every backup and the archived WAL.
    #[serde(default = "default_repo_storage")]
    pub repo_storage: RepoStorageSpec,

    /// Encryption of the repository. Off when absent; fixed when the cluster is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<BackupEncryptionSpec>,
}

fn default_repo_storage() -> RepoStorageSpec {
    RepoStorageSpec::default()
}

/// Volume of the backup repository; it grows like [`StorageSpec`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(STORAGE_CLASS_KEPT).message(STORAGE_CLASS_KEPT_MESSAGE).field_path(".storageClass"))]
pub struct RepoStorageSpec {
    /// Size of the repository volume, as a Kubernetes quantity such as "2Gi". It grows in
    /// place like `storage.size`.
    #[serde(default = "default_repo_size")]
    #[schemars(regex(pattern = STORAGE_SIZE_PATTERN), length(max = 32))]
    pub size: String,

    /// StorageClass of the repository volume. Unset means the default StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DNS_SUBDOMAIN_PATTERN), length(max = 253))]
    pub storage_class: Option<String>,
}

impl Default for RepoStorageSpec {
    fn default() -> Self {
        Self { size: default_repo_size(), storage_class: None }
    }
}

/// Where backup records go. Exactly one of `managed` and `external`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.managed) != has(self.external)").message("set exactly one of redis.managed and redis.external"))]
pub struct RedisSpec {
    /// A Redis Deployment run by relevo for this cluster, with a volume and a generated password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedRedisSpec>,

    /// A Redis that you run yourself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalRedisSpec>,
}

impl Default for RedisSpec {
    fn default() -> Self {
        Self { managed: Some(ManagedRedisSpec::default()), external: None }
    }
}

/// The Redis Deployment that relevo runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRedisSpec {
    /// Container image of Redis. Use a fixed tag.
    #[serde(default = "default_redis_image")]
    #[schemars(length(min = 1, max = 256))]
    pub image: String,

    /// Volume for Redis' append-only file.
    #[serde(default = "default_redis_storage")]
    pub storage: StorageSpec,
}

fn default_redis_image() -> String {
    DEFAULT_REDIS_IMAGE.to_string()
}

fn default_redis_storage() -> StorageSpec {
    StorageSpec { size: default_redis_size(), storage_class: None }
}

impl Default for ManagedRedisSpec {
    fn default() -> Self {
        Self { image: default_redis_image(), storage: default_redis_storage() }
    }
}

/// A Redis that relevo connects to but does not run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRedisSpec {
    /// Address of the Redis, "redis://host:port/db", without a password. TLS ("rediss://") is
    /// refused: relevo's Redis client is built without TLS, so it could never connect.
    #[schemars(regex(pattern = r"^rediss?://[^\s:@/]+(:[0-9]+)?(/[0-9]+)?$"), length(max = 512))]
    #[x_kube(validation = Rule::new("!self.startsWith('rediss://')").message("rediss:// (Redis over TLS) is not supported: relevo's Redis client has no TLS; use redis://"))]
    pub url: String,

    /// Secret in the cluster's namespace that holds the Redis password. It must carry the
    /// label `relevo.dev/redis-credentials: "true"`: relevo sends its value to the URL above,
    /// so only Secrets meant for that may be named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeyRef>,
}

/// One key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(regex(pattern = DNS_SUBDOMAIN_PATTERN), length(max = 253))]
    pub name: String,

    /// Key within the Secret.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_password_key() -> String {
    "password".to_string()
}

/// How the cluster's first instance gets its data. Exactly one of `initdb` and `recovery`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.initdb) != has(self.recovery)").message("set exactly one of bootstrap.initdb and bootstrap.recovery"))]
pub struct BootstrapSpec {
    /// A new, empty database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initdb: Option<InitdbSpec>,

    /// A restore of another cluster's backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoverySpec>,
}

impl Default for BootstrapSpec {
    fn default() -> Self {
        Self { initdb: Some(InitdbSpec::default()), recovery: None }
    }
}

/// A new database, owned by an application user whose password relevo generates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitdbSpec {
    /// Name of the application database.
    #[serde(default = "default_app")]
    #[schemars(regex(pattern = SQL_IDENTIFIER_PATTERN), length(max = 63))]
    #[x_kube(validation = Rule::new("!(self in ['postgres', 'template0', 'template1'])").message("database must not be one of PostgreSQL's own databases"))]
    pub database: String,

    /// Name of the application user that owns the database.
    #[serde(default = "default_app")]
    #[schemars(regex(pattern = SQL_IDENTIFIER_PATTERN), length(max = 63))]
    #[x_kube(validation = Rule::new("!(self in ['postgres', 'streaming_replica'])").message("owner must not be a role relevo manages (postgres, streaming_replica)"))]
    #[x_kube(validation = Rule::new("!(self in ['public', 'none']) && !self.startsWith('pg_')").message("owner must not be a name PostgreSQL reserves (public, none, pg_*): initdb would fail"))]
    pub owner: String,
}

/// Plain lower-case SQL identifiers only, so that they never need quoting and can never
/// collide with relevo's own roles (which contain no digits-first or upper case either way).
const SQL_IDENTIFIER_PATTERN: &str = r"^[a-z_][a-z0-9_]*$";

fn default_app() -> String {
    "app".to_string()
}

impl Default for InitdbSpec {
    fn default() -> Self {
        Self { database: default_app(), owner: default_app() }
    }
}

/// Restore from a backup of another PgCluster in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.label) && has(self.targetTime))").message("set at most one of recovery.label and recovery.targetTime"))]
pub struct RecoverySpec {
    /// Name of the PgCluster whose backup repository holds the backup.
    #[schemars(regex(pattern = DNS_LABEL_PATTERN), length(max = 50))]
    pub source: String,

    /// pgBackRest label of the backup to restore, e.g. "20251007-120000F". Unset, together with
    /// targetTime unset, means the latest backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{8}-[0-9]{6}F(_[0-9]{8}-[0-9]{6}[DI])?$"))]
    pub label: Option<String>,

    /// Point in time to recover to, RFC 3339 ("2025-10-07T12:30:00Z").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = RFC3339_PATTERN), length(max = 64))]
    pub target_time: Option<String>,
}
