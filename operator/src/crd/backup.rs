//! `Backup`: one pgBackRest backup, taken from whichever instance is primary at that moment.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::DNS_LABEL_PATTERN;

/// One pgBackRest backup of a PgCluster.
// Clippy reads the repeated `type_ = "string"` of separate printcolumn(...) entries as
// duplicated attributes; they are distinct columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "relevo.dev",
    version = "v1alpha1",
    kind = "Backup",
    plural = "backups",
    shortname = "bk",
    category = "relevo",
    namespaced,
    status = "BackupStatus",
    derive = "PartialEq",
    doc = "One pgBackRest backup of a PgCluster. Immutable once created.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(
        name = "Day",
        type_ = "integer",
        json_path = ".spec.cycleDay",
        description = "Day of the backup cycle"
    ),
    printcolumn(
        name = "Primary",
        type_ = "string",
        json_path = ".status.primary",
        description = "Instance that was primary"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Size", type_ = "string", json_path = ".status.size"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("a Backup is immutable: create a new one"))]
pub struct BackupSpec {
    /// Name of the PgCluster, in the same namespace.
    #[schemars(regex(pattern = DNS_LABEL_PATTERN), length(min = 1, max = 50))]
    pub cluster: String,

    /// full, diff (changes since the last full) or incr (changes since the last backup).
    #[serde(rename = "type")]
    pub backup_type: BackupType,

    /// Day of the backup cycle this backup belongs to (1 to 6 in the default cycle; a
    /// BackupSchedule's cycle may have up to 31 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 31))]
    pub cycle_day: Option<i32>,

    /// BackupSchedule that created this backup, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DNS_LABEL_PATTERN), length(max = 63))]
    pub schedule: Option<String>,
}

/// Kind of pgBackRest backup.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    /// Everything.
    Full,
    /// Changes since the last full backup.
    Diff,
    /// Changes since the last backup of any type.
    Incr,
}

impl std::str::FromStr for BackupType {
    type Err = String;

    /// The CRD's (and pgBackRest's) words: `full`, `diff`, `incr`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "full" => Ok(BackupType::Full),
            "diff" => Ok(BackupType::Diff),
            "incr" => Ok(BackupType::Incr),
            other => Err(format!("unknown backup type {other:?}: use full, diff or incr")),
        }
    }
}

impl BackupType {
    /// pgBackRest's own name for the type (`--type=`).
    pub fn as_pgbackrest(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Diff => "diff",
            BackupType::Incr => "incr",
        }
    }
}

/// Progress and result of a backup.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// Where the backup is in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// Job that runs pgBackRest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Instance that was primary when the backup ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// pgBackRest label, e.g. "20251007-120000F".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// When pgBackRest started, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When pgBackRest finished, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_time: Option<String>,
    /// Size of the database that was backed up, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// Size of the backup as stored in the repository, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_size_bytes: Option<i64>,
    /// sizeBytes for people, e.g. "24.1MiB".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// First WAL segment needed to restore the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_start: Option<String>,
    /// Last WAL segment needed to restore the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_stop: Option<String>,
    /// Why the backup failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the backup is doing or waiting for, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Whether the backup's Redis hash has been written. False on a Completed backup means
    /// Redis was unreachable and the record will be retried.
    #[serde(default)]
    pub redis_recorded: bool,
    /// Key of the backup's Redis hash, e.g. "backup:2025-10-07_12-00-00".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_key: Option<String>,
    /// Failed attempts to write the Redis record so far; sets the retry backoff.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redis_attempts: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Life of a backup.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BackupPhase {
    /// Waiting for its Job.
    Pending,
    /// pgBackRest is running.
    Running,
    /// In the repository.
    Completed,
    /// pgBackRest failed; see error.
    Failed,
    /// Removed from the repository by retention.
    Expired,
}

impl BackupPhase {
    /// Whether the backup will never run again: it is in the repository, failed, or gone.
    pub fn is_terminal(self) -> bool {
        matches!(self, BackupPhase::Completed | BackupPhase::Failed | BackupPhase::Expired)
    }
}
