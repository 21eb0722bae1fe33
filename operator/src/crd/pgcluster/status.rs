//! What the operator observes of a `PgCluster`: its status, as PostgreSQL itself reports it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::replication::SynchronousStatus;
use crate::crd::common::Condition;

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

    /// Synchronous replication as the primary reports it; only with spec.replication.synchronous.
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
