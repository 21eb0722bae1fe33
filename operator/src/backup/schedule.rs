//! When a BackupSchedule runs, and which Backup objects one run creates.
//!
//! Everything here is a pure function of the spec, the last run and "now", so the controller
//! can requeue exactly until the next slot and a restart can never run a slot twice:
//!
//! - **Slots.** A five-field cron expression evaluated in the schedule's IANA time zone
//!   (croner, which follows Vixie cron and resolves DST gaps and repeats). Without a cron
//!   expression, and only when `dayLength` is shorter than 24 h, every `dayLength` from
//!   `cycleStart` is a slot (`cycleStart + k·dayLength`, absolute time, k ≥ 0): a demo needs
//!   no cron line that matches its day length. No slot lies before `cycleStart`.
//! - **Catch-up once.** [`due_runs`] / [`Schedule::due_run`] return only the *latest* slot in
//!   `(last_run, now]`: after an outage that missed several slots, one run catches up, never a
//!   burst. `last_run` is the last slot that was run, or the schedule's creation time.
//! - **Names.** `<schedule>-<YYYYMMDDHHMMSS of the slot, UTC>-<n>`, n being the 1-based
//!   position of the backup in its day's list, so re-planning a slot after a crash yields the
//!   same names and the apiserver refuses duplicates. Names longer than 63 characters keep a
//!   prefix of the schedule name plus a hash of the whole name.
//! - **Order.** The backups of one slot run one after the other ([`next_step`]): the second
//!   starts only once the first has finished. A failed first backup does not cancel the
//!   second (day 3's diff is still worth having when its incr failed); the slot then reports
//!   the failure.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::cycle::{Cycle, CycleClock, CycleError};
use crate::crd::BackupType;
use crate::protocol::hash::fnv1a32;

/// Longest Kubernetes object name we produce (a DNS label, so it also fits Job labels).
pub const MAX_NAME_LEN: usize = 63;

/// Why a schedule cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression {expr:?}: {reason}")]
    InvalidCron { expr: String, reason: String },
    #[error("cron expression {expr:?} has no run around {at}")]
    NoRun { expr: String, at: DateTime<Utc> },
    #[error("a cron schedule is required unless dayLength is shorter than 24h")]
    CronRequired,
    #[error(transparent)]
    Cycle(#[from] CycleError),
}

/// Parses a standard five-field cron expression (minute hour day-of-month month day-of-week).
/// Seconds and years are refused so that the expression means what crontab(5) says.
pub fn parse_cron(expr: &str) -> Result<Cron, ScheduleError> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| ScheduleError::InvalidCron { expr: expr.to_string(), reason: e.to_string() })
}

/// First slot of `expr`, in `tz`, strictly after `after`.
pub fn next_run_after(expr: &str, tz: Tz, after: DateTime<Utc>) -> Result<DateTime<Utc>, ScheduleError> {
    cron_next(&parse_cron(expr)?, expr, tz, after, false)
}

/// The slot to run now, if any: the latest slot in `(last_run, now]`. Several missed slots
/// collapse into that one (catch up once).
pub fn due_runs(
    expr: &str,
    tz: Tz,
    last_run: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, ScheduleError> {
    let latest = cron_previous(&parse_cron(expr)?, expr, tz, now)?;
    Ok(latest.filter(|slot| *slot > last_run))
}

fn cron_next(
    cron: &Cron,
    expr: &str,
    tz: Tz,
    from: DateTime<Utc>,
    inclusive: bool,
) -> Result<DateTime<Utc>, ScheduleError> {
    cron.find_next_occurrence(&from.with_timezone(&tz), inclusive)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ScheduleError::NoRun { expr: expr.to_string(), at: from })
}

/// Latest slot at or before `now`; `None` when the expression has no slot in the past.
fn cron_previous(
    cron: &Cron,
    expr: &str,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, ScheduleError> {
    match cron.find_previous_occurrence(&now.with_timezone(&tz), true) {
        Ok(t) => Ok(Some(t.with_timezone(&Utc))),
        Err(croner::errors::CronError::TimeSearchLimitExceeded) => Ok(None),
        Err(_) => Err(ScheduleError::NoRun { expr: expr.to_string(), at: now }),
    }
}

/// What produces the slots of a schedule.
#[derive(Debug, Clone)]
enum Trigger {
    Cron { cron: Box<Cron>, expr: String },
    EveryDayLength,
}

/// A validated BackupSchedule: its slots, its cycle and its clock.
#[derive(Debug, Clone)]
pub struct Schedule {
    trigger: Trigger,
    clock: CycleClock,
    cycle: Cycle,
}

/// One Backup object that a slot creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBackup {
    /// Deterministic object name, see [`backup_name`].
    pub name: String,
    pub backup_type: BackupType,
    /// 1-based day of the cycle.
    pub cycle_day: u32,
    /// The slot, which is also what the cycle day was computed from.
    pub scheduled: DateTime<Utc>,
    /// The backup of the same slot that must have finished before this one starts.
    pub waits_for: Option<String>,
}

impl Schedule {
    /// `cron` may be absent only when `dayLength` is shorter than 24 h (see the module doc).
    pub fn new(cron: Option<&str>, clock: CycleClock, cycle: Cycle) -> Result<Self, ScheduleError> {
        let trigger = match cron {
            Some(expr) => Trigger::Cron { cron: Box::new(parse_cron(expr)?), expr: expr.to_string() },
            None if clock.day_length() < std::time::Duration::from_secs(24 * 3600) => Trigger::EveryDayLength,
            None => return Err(ScheduleError::CronRequired),
        };
        Ok(Self { trigger, clock, cycle })
    }

    pub fn clock(&self) -> &CycleClock {
        &self.clock
    }

    pub fn cycle(&self) -> &Cycle {
        &self.cycle
    }

    fn start_utc(&self) -> DateTime<Utc> {
        self.clock.start().with_timezone(&Utc)
    }

    /// First slot strictly after `after`, and never before `cycleStart`.
    pub fn next_run_after(&self, after: DateTime<Utc>) -> Result<DateTime<Utc>, ScheduleError> {
        let start = self.start_utc();
        match &self.trigger {
            Trigger::Cron { cron, expr } if after < start => cron_next(cron, expr, self.tz(), start, true),
            Trigger::Cron { cron, expr } => cron_next(cron, expr, self.tz(), after, false),
            Trigger::EveryDayLength if after < start => Ok(start),
            Trigger::EveryDayLength => Ok(self.day_slot(self.clock.days_elapsed(after)? + 1)),
        }
    }

    /// The slot to run now, if any: the latest slot in `(last_run, now]` that is not before
    /// `cycleStart`. Missed slots are caught up once, by that single latest slot.
    pub fn due_run(
        &self,
        last_run: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, ScheduleError> {
        let start = self.start_utc();
        if now < start {
            return Ok(None);
        }
        let latest = match &self.trigger {
            Trigger::Cron { cron, expr } => cron_previous(cron, expr, self.tz(), now)?,
            Trigger::EveryDayLength => Some(self.day_slot(self.clock.days_elapsed(now)?)),
        };
        Ok(latest.filter(|slot| *slot > last_run && *slot >= start))
    }

    /// The 1-based cycle day of a slot.
    pub fn cycle_day(&self, scheduled: DateTime<Utc>) -> Result<u32, ScheduleError> {
        Ok(self.clock.cycle_day(self.cycle.len(), scheduled)?)
    }

    /// The Backup objects of a slot, in the order they must run.
    pub fn plan(
        &self,
        schedule_name: &str,
        scheduled: DateTime<Utc>,
    ) -> Result<Vec<PlannedBackup>, ScheduleError> {
        let cycle_day = self.cycle_day(scheduled)?;
        let types = self.cycle.day(cycle_day).unwrap_or_default();
        let mut previous: Option<String> = None;
        let plan = types
            .iter()
            .enumerate()
            .map(|(i, &backup_type)| {
                let name = backup_name(schedule_name, scheduled, i + 1);
                let waits_for = previous.replace(name.clone());
                PlannedBackup { name, backup_type, cycle_day, scheduled, waits_for }
            })
            .collect();
        Ok(plan)
    }

    fn tz(&self) -> Tz {
        self.clock.start().timezone()
    }

    /// `cycleStart + days·dayLength`; only used for sub-day lengths, so absolute time is right.
    fn day_slot(&self, days: u64) -> DateTime<Utc> {
        let offset = self.clock.day_length().saturating_mul(u32::try_from(days).unwrap_or(u32::MAX));
        self.start_utc() + chrono::TimeDelta::from_std(offset).unwrap_or(chrono::TimeDelta::MAX)
    }
}

/// Deterministic name of the `index`-th (1-based) backup of a slot:
/// `<schedule>-<YYYYMMDDHHMMSS UTC>-<index>`, a valid DNS label of at most 63 characters.
pub fn backup_name(schedule: &str, scheduled: DateTime<Utc>, index: usize) -> String {
    let suffix = format!("-{}-{index}", scheduled.format("%Y%m%d%H%M%S"));
    let sanitized: String = schedule
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_string();
    if !sanitized.is_empty() && sanitized == schedule && sanitized.len() + suffix.len() <= MAX_NAME_LEN {
        return format!("{sanitized}{suffix}");
    }
    // Too long or not a valid name as it is: a hash of the original keeps schedules apart.
    let hash = format!("{:08x}", fnv1a32(schedule.as_bytes()));
    let room = MAX_NAME_LEN - suffix.len() - hash.len() - 1;
    let mut prefix = if sanitized.is_empty() { "backup".to_string() } else { sanitized };
    prefix.truncate(room);
    format!("{}-{hash}{suffix}", prefix.trim_end_matches('-'))
}

/// What is known of one planned Backup object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupState {
    /// Not created yet.
    Absent,
    /// Created, not finished (Pending or Running).
    InProgress,
    /// Completed (or since Expired).
    Succeeded,
    Failed,
}

/// What the controller does next for a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotStep<'a> {
    /// Create this Backup: every backup before it has finished.
    Create(&'a PlannedBackup),
    /// This Backup is still running; check again later.
    Wait(&'a str),
    /// Every backup of the slot has finished; these failed.
    Done { failed: Vec<&'a str> },
}

/// Next step of a slot, given the state of each planned Backup by name.
pub fn next_step<'a>(plan: &'a [PlannedBackup], state_of: impl Fn(&str) -> BackupState) -> SlotStep<'a> {
    let mut failed = Vec::new();
    for backup in plan {
        match state_of(&backup.name) {
            BackupState::Absent => return SlotStep::Create(backup),
            BackupState::InProgress => return SlotStep::Wait(&backup.name),
            BackupState::Failed => failed.push(backup.name.as_str()),
            BackupState::Succeeded => {}
        }
    }
    SlotStep::Done { failed }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
