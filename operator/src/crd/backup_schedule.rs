//! `BackupSchedule`: the users' cycle of full, differential and incremental backups, on a
//! cron schedule or, for demos and tests, every `dayLength`.
//!
//! What the apiserver refuses at `kubectl apply`, each with a message on its field:
//! a cron expression that is not five valid fields (or an `@daily`-style nickname), a time
//! zone chrono-tz does not know, a `dayLength` under 10 s or of a day or more that is not a
//! whole number of days, a cycle that is empty, longer than 31 days, has an empty day or an
//! unknown type, or does not open with a full backup, and a missing `schedule` when days are
//! 24 h or longer. What passes the schema but the operator still cannot use (an impossible
//! date in `cycleStart`) ends in the `Ready` condition with reason `InvalidSpec`.

use std::sync::LazyLock;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::backup::BackupType;
use super::common::{Condition, DNS_LABEL_PATTERN, DURATION_PATTERN, RFC3339_PATTERN};

/// Number of days in the users' cycle, as in their dia1.sh … dia6.sh.
pub const CYCLE_DAYS: usize = 6;
/// Longest cycle accepted, in days (also the largest `cycleDay` of a Backup).
pub const MAX_CYCLE_DAYS: usize = 31;

/// Backups of a PgCluster on a schedule, following a cycle of days.
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
    printcolumn(name = "Day", type_ = "integer", json_path = ".status.currentCycleDay", description = "Cycle day of the last run"),
    printcolumn(name = "Result", type_ = "string", json_path = ".status.lastResult", description = "Result of the last run's backups"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Last", type_ = "date", json_path = ".status.lastRunTime"),
    // A string, not a date: kubectl prints future dates as "<invalid>".
    printcolumn(name = "Next", type_ = "string", json_path = ".status.nextRunTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.schedule) || duration(self.dayLength) < duration('24h')")
    .message("schedule (a cron expression such as \"0 2 * * *\") is required when dayLength is 24h or more")
    .field_path(".schedule")
    .reason(Reason::FieldValueRequired))]
pub struct BackupScheduleSpec {
    /// Name of the PgCluster, in the same namespace.
    #[schemars(regex(pattern = DNS_LABEL_PATTERN), length(min = 1, max = 50))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("cluster is immutable: create another BackupSchedule"))]
    pub cluster: String,

    /// When a cycle day's backups run: a five-field cron expression (minute hour
    /// day-of-month month day-of-week, e.g. "0 2 * * *") or a nickname such as "@daily",
    /// evaluated in timeZone. Optional when dayLength is shorter than 24h: the backups then
    /// run at cycleStart and every dayLength after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new(cron_rule()).message(CRON_MESSAGE))]
    pub schedule: Option<String>,

    /// IANA time zone of the schedule and of the cycle's calendar days, e.g. "Europe/Madrid".
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new(time_zone_rule()).message("timeZone must be an IANA time zone name such as UTC or Europe/Madrid"))]
    pub time_zone: String,

    /// Backups of each day, in order; day 1 first; 1 to 31 days of 1 to 3 backups each,
    /// opening with a full backup. The default is the users' 6-day cycle:
    /// full; incr; incr, diff; incr; incr, diff; diff, full.
    #[serde(default = "default_cycle")]
    #[schemars(length(min = 1, max = 31), inner(length(min = 1, max = 3)))]
    #[x_kube(validation = Rule::new("self.size() == 0 || self[0].size() == 0 || self[0][0] == 'full'").message("the cycle must open with a full backup: day 1's first backup must be full"))]
    pub cycle: Vec<Vec<BackupType>>,

    /// When day 1 of the first cycle starts, RFC 3339. Unset means when the BackupSchedule
    /// was created. Slots before it never run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = RFC3339_PATTERN), length(max = 64))]
    pub cycle_start: Option<String>,

    /// Length of a cycle day, as a duration ("24h"). Days of 24h or more are whole calendar
    /// days in timeZone (a DST change never shifts the cycle); shorter days ("2m") are for
    /// demos and tests and are counted in absolute time.
    #[serde(default = "default_day_length")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 16))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s')").message("dayLength must be at least 10s"))]
    #[x_kube(validation = Rule::new("duration(self) < duration('24h') || duration(self).getMilliseconds() % 86400000 == 0").message("a dayLength of 24h or more must be a whole number of days (24h, 48h, ...)"))]
    pub day_length: String,

    /// How many backups pgBackRest keeps.
    #[serde(default)]
    pub retention: RetentionSpec,

    /// Create no more Backups; those already created finish. When it is set back to false,
    /// the latest slot missed meanwhile runs once.
    #[serde(default)]
    pub suspend: bool,
}

const CRON_MESSAGE: &str = "schedule must be five cron fields (minute 0-59, hour 0-23, day of month 1-31, \
    month 1-12 or JAN-DEC, day of week 0-7 or SUN-SAT), e.g. \"0 2 * * *\", or @hourly, @daily, \
    @weekly, @monthly, @yearly";

/// The grammar of one cron field: comma-separated items, each `*`, a value or a range of
/// `atom`, with an optional `/step`; `extra` adds the field's own forms (L, W, #, ?).
fn cron_field(atom: &str, extra: &str) -> String {
    let item = format!(r"(\*|{atom}(-{atom})?{extra})(/[0-9]{{1,2}})?");
    format!("{item}(,{item})*")
}

/// Regular expression (RE2, as CEL's `matches`) for what [`crate::backup::schedule::parse_cron`]
/// accepts: five fields with their ranges, month and weekday names, the nicknames.
pub fn cron_regex() -> String {
    let minute = cron_field("[0-5]?[0-9]", "");
    let hour = cron_field("([01]?[0-9]|2[0-3])", "");
    let day = "(0?[1-9]|[12][0-9]|3[01])";
    let day_of_month = cron_field(day, &format!("|{day}W|L|LW|\\?"));
    let month = cron_field("(0?[1-9]|1[0-2]|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)", "");
    let weekday = "([0-7]|SUN|MON|TUE|WED|THU|FRI|SAT)";
    let day_of_week = cron_field(weekday, &format!("|{weekday}L|{weekday}#[1-5]|\\?"));
    format!(
        r"(?i)^\s*(@(yearly|annually|monthly|weekly|daily|hourly)|{minute}\s+{hour}\s+{day_of_month}\s+{month}\s+{day_of_week})\s*$"
    )
}

fn cron_rule() -> String {
    format!("self.matches('{}')", cron_regex().replace('\\', "\\\\"))
}

/// Every time zone the operator knows (chrono-tz's IANA database), so that the apiserver
/// accepts exactly the names the operator can use.
pub static TIME_ZONES: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect());

fn time_zone_rule() -> String {
    let names: Vec<String> = TIME_ZONES.iter().map(|name| format!("'{name}'")).collect();
    format!("self in [{}]", names.join(", "))
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

/// Retention, in pgBackRest's terms. pgBackRest applies it to the whole repository at the
/// end of every backup of the cluster, so with several BackupSchedules for one cluster the
/// largest `full` applies (manual backups included).
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

/// What the backups of one run (one slot) came to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RunResult {
    /// Some of the run's Backups are pending, running or not created yet.
    Running,
    /// Every Backup of the run completed.
    Completed,
    /// At least one Backup of the run failed or was deleted before it finished.
    Failed,
}

/// Where the schedule is in its cycle.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupScheduleStatus {
    /// Cycle day of the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_cycle_day: Option<i32>,
    /// Scheduled time of the last run, RFC 3339; its cycle day comes from this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_time: Option<String>,
    /// Backups the last run has created so far, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_run_backups: Vec<String>,
    /// What the last run's Backups came to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<RunResult>,
    /// When the next run is due, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_time: Option<String>,
    /// Cycle day of the next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cycle_day: Option<i32>,
    /// Ready: the schedule is valid, its cluster exists and it is not suspended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// metadata.generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
