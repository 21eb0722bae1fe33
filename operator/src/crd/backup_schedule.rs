//! `BackupSchedule`: the 6-day cycle of full, differential and incremental backups.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::backup::BackupType;
use super::common::{CRON_PATTERN, DNS_LABEL_PATTERN, DURATION_PATTERN, RFC3339_PATTERN};

/// Number of days in a backup cycle, as in the users' dia1.sh … dia6.sh.
pub const CYCLE_DAYS: usize = 6;

/// Backups of a PgCluster on a cron schedule, following a cycle of days.
// Clippy reads the repeated `type_ = "string"` of separate printcolumn(...) entries as
// duplicated attributes; they are distinct columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "relevo.dev",
    version = "v1alpha1",
    kind = "BackupSchedule",
    plural = "backupschedules",
    shortname = "bs",
    category = "relevo",
    namespaced,
    status = "BackupScheduleStatus",
    derive = "PartialEq",
    doc = "Scheduled pgBackRest backups of a PgCluster, following a cycle of days.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Day", type_ = "integer", json_path = ".status.currentCycleDay", description = "Current day of the cycle"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Last", type_ = "date", json_path = ".status.lastRunTime"),
    // A string, not a date: kubectl prints future dates as "<invalid>".
    printcolumn(name = "Next", type_ = "string", json_path = ".status.nextRunTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct BackupScheduleSpec {
    /// Name of the PgCluster, in the same namespace.
    #[schemars(regex(pattern = DNS_LABEL_PATTERN), length(min = 1, max = 50))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("cluster is immutable: create another BackupSchedule"))]
    pub cluster: String,

    /// When a cycle day's backups run: a five-field cron expression ("0 2 * * *").
    #[schemars(regex(pattern = CRON_PATTERN), length(max = 128))]
    pub schedule: String,

    /// IANA time zone of the schedule, e.g. "Europe/Madrid".
    #[serde(default = "default_time_zone")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$"), length(max = 64))]
    pub time_zone: String,

    /// Backups of each day, in order; day 1 first. The default is the users' cycle:
    /// full; incr; incr, diff; incr; incr, diff; diff, full.
    #[serde(default = "default_cycle")]
    #[schemars(length(min = 6, max = 6), inner(length(min = 1, max = 3)))]
    pub cycle: Vec<Vec<BackupType>>,

    /// When day 1 of the first cycle starts, RFC 3339. Unset means when the schedule is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = RFC3339_PATTERN), length(max = 64))]
    pub cycle_start: Option<String>,

    /// Length of a cycle day, as a duration ("24h"). Shorter days are for demos and tests.
    #[serde(default = "default_day_length")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 16))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s')").message("dayLength must be at least 10s"))]
    pub day_length: String,

    /// How many backups to keep.
    #[serde(default)]
    pub retention: RetentionSpec,

    /// Stop creating backups; those already running finish.
    #[serde(default)]
    pub suspend: bool,
}

fn default_time_zone() -> String {
    "UTC".to_string()
}

fn default_day_length() -> String {
    "24h".to_string()
}

/// The users' 6-day cycle; see DESIGN.md, "The 6-day cycle".
pub fn default_cycle() -> Vec<Vec<BackupType>> {
    use BackupType::{Diff, Full, Incr};
    vec![vec![Full], vec![Incr], vec![Incr, Diff], vec![Incr], vec![Incr, Diff], vec![Diff, Full]]
}

/// Retention, in pgBackRest's terms.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Full backups to keep, with the differential and incremental backups that depend on them
    /// (pgBackRest repo1-retention-full).
    #[serde(default = "default_retention_full")]
    #[schemars(range(min = 1, max = 100))]
    pub full: i32,
}

fn default_retention_full() -> i32 {
    2
}

impl Default for RetentionSpec {
    fn default() -> Self {
        Self { full: default_retention_full() }
    }
}

/// Where the schedule is in its cycle.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupScheduleStatus {
    /// Day of the cycle, 1 to 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_cycle_day: Option<i32>,
    /// When backups were last started, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_time: Option<String>,
    /// When backups start next, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_time: Option<String>,
    /// Phase of the last Backup created, or why none could be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
    /// Name of the last Backup created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<String>,
}
