//! `PgCluster`: a PostgreSQL primary with hot standbys, its Services, credentials and Redis.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, DNS_LABEL_PATTERN, DURATION_PATTERN, RFC3339_PATTERN, STORAGE_SIZE_PATTERN};
use super::pooler::PoolerSpec;
use super::replication::{ReplicationSpec, SynchronousStatus};

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
    validation = Rule::new("!has(self.spec.replication) || !has(self.spec.replication.synchronous) || self.spec.replication.synchronous.number <= self.spec.instances - 1").message("spec.replication.synchronous.number must be at most spec.instances - 1 (the standbys there are)").field_path(".spec.replication.synchronous.number"),
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
    pub resources: Option<ResourceRequirements>,

    /// PostgreSQL configuration, merged over relevo's safe defaults.
    #[serde(default)]
    pub postgresql: PostgresqlSpec,

    /// Automatic failover when the primary stops answering.
    #[serde(default)]
    pub failover: FailoverSpec,

    /// pgBackRest repository of this cluster.
    #[serde(default)]
    pub backup: BackupSpec,

    /// Redis that records one hash per backup: a managed Deployment (default) or an external URL.
    #[serde(default)]
    pub redis: RedisSpec,

    /// Streaming replication: asynchronous unless `synchronous` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationSpec>,

    /// A managed PgBouncer `<cluster>-pooler` in front of the primary. Off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler: Option<PoolerSpec>,

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

/// A persistent volume request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of the volume, as a Kubernetes quantity such as "1Gi" or "500Mi".
    #[serde(default = "default_data_size")]
    #[schemars(regex(pattern = STORAGE_SIZE_PATTERN), length(max = 32))]
    pub size: String,

    /// StorageClass of the volume. Unset means the cluster's default StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DNS_SUBDOMAIN_PATTERN), length(max = 253))]
    pub storage_class: Option<String>,
}

/// Names of StorageClasses, Secrets and clusters are DNS subdomains.
const DNS_SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

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
    /// one second ("5s", "1m"). Shorter delays fail over faster but risk promoting on a blip.
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

/// The cluster's pgBackRest repository.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Volume of the repository host, which holds every backup and the archived WAL.
    #[serde(default = "default_repo_storage")]
    pub repo_storage: RepoStorageSpec,
}

fn default_repo_storage() -> RepoStorageSpec {
    RepoStorageSpec::default()
}

/// Volume of the backup repository.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepoStorageSpec {
    /// Size of the repository volume, as a Kubernetes quantity such as "2Gi".
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRedisSpec {
    /// Address of the Redis, "redis://host:port/db" (or "rediss://" for TLS), without a password.
    #[schemars(regex(pattern = r"^rediss?://[^\s:@/]+(:[0-9]+)?(/[0-9]+)?$"), length(max = 512))]
    pub url: String,

    /// Secret in the cluster's namespace that holds the Redis password.
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

/// Observed state of a PostgreSQL cluster, as PostgreSQL itself reports it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PgClusterStatus {
    /// Instance that is primary, as reported by pg_is_in_recovery().
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_primary: Option<String>,

    /// Every instance, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceStatus>,

    /// Summary of the cluster's health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ClusterPhase>,

    /// Ready, Progressing and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Last completed Backup of this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<LastBackup>,

    /// WAL archiving into the pgBackRest repository, as the primary's pg_stat_archiver reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archiving: Option<ArchivingStatus>,

    /// Synchronous replication, when spec.replication.synchronous is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous: Option<SynchronousStatus>,

    /// metadata.generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Health summary of a cluster. The conditions hold the reasons.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ClusterPhase {
    /// Nothing observed yet.
    Pending,
    /// The first primary has not come up yet.
    Initializing,
    /// A primary takes writes and every instance is ready.
    Ready,
    /// A primary takes writes, but something needs attention (a standby down, a spec refused).
    Degraded,
    /// No instance takes writes.
    Unavailable,
}

/// One instance as observed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// Instance name, <cluster>-<N>; its pod is <cluster>-<N>-0.
    pub name: String,
    /// Role reported by PostgreSQL.
    pub role: InstanceRole,
    /// Whether the pod is ready and PostgreSQL answered.
    pub ready: bool,
    /// Timeline of the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<i64>,
    /// Bytes of WAL the instance still has to replay to reach the primary's current LSN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lag_bytes: Option<i64>,
    /// Current WAL LSN (primary) or last replayed LSN (standby), e.g. "0/3000060".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<String>,
}

/// Role of an instance, as PostgreSQL reports it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum InstanceRole {
    /// Not in recovery: takes writes.
    Primary,
    /// In recovery: a hot standby.
    Standby,
    /// Did not answer.
    Unknown,
}

/// The primary's pg_stat_archiver. Counters restart with the primary (a switchover, a restart).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchivingStatus {
    /// Instance that reported these figures: the primary.
    pub instance: String,
    /// WAL files archived successfully.
    pub archived_count: i64,
    /// Name of the last WAL file archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_archived_wal: Option<String>,
    /// When the last WAL file was archived, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_archived_time: Option<String>,
    /// Failed attempts to archive a WAL file.
    pub failed_count: i64,
    /// Name of the WAL file of the last failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed_wal: Option<String>,
    /// When the last attempt failed, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed_time: Option<String>,
}

/// The last completed backup.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastBackup {
    /// Name of the Backup object.
    pub name: String,
    /// pgBackRest label of the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// When the backup finished, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
}
