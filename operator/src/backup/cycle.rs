//! The backup cycle: which backups each day runs, and which day a scheduled run belongs to.
//!
//! The users' `dia1.sh` … `dia6.sh` become a [`Cycle`] (by default the 6-day table of
//! DESIGN.md) and a [`CycleClock`] that maps a *scheduled* time to its cycle day. The day is
//! derived from the scheduled time, never from the wall clock at execution, so a run that is
//! late, retried or caught up after an outage still does the backups of its own day.
//!
//! How days are counted:
//! - `dayLength` a whole number of 24 h days: days are counted on the wall clock of the
//!   cycle's time zone, from the local time of day of `cycleStart`. A DST change (a 23 h or
//!   25 h day) therefore never shifts the cycle: `02:00` local on the 31st is exactly 30 days
//!   after `02:00` local on the 1st, whatever the clocks did in between. Counting from
//!   `cycleStart`'s time of day, rather than from midnight, keeps day 1 (the full backup) when
//!   `cycleStart` is, say, 14:37 and the cron runs at 02:00: the 02:00 run the next morning is
//!   still day 1 instead of skipping straight to day 2.
//! - any other `dayLength` (minutes, for demos and tests): absolute elapsed time.
//! - a scheduled time before `cycleStart` is an error ([`CycleError::BeforeStart`]): no cycle
//!   day exists yet, so nothing may run.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::crd::BackupType;

/// Longest cycle accepted, in days.
pub use crate::crd::backup_schedule::MAX_CYCLE_DAYS;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a cycle or a cycle-day computation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CycleError {
    #[error("the cycle has {len} days; it must have 1 to {MAX_CYCLE_DAYS}")]
    Length { len: usize },
    #[error("day {day} of the cycle has no backups")]
    EmptyDay { day: usize },
    #[error("day {day} of the cycle starts with a {found} backup; the cycle must open with a full backup")]
    NoFullFirst { day: usize, found: &'static str },
    #[error("dayLength must be at least one second")]
    DayLengthTooShort,
    #[error("scheduled time {scheduled} is before cycleStart {start}")]
    BeforeStart { scheduled: DateTime<Utc>, start: DateTime<Utc> },
}

/// Backups of each day of the cycle, in order; validated on construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    days: Vec<Vec<BackupType>>,
}

impl Default for Cycle {
    /// The users' 6-day cycle of DESIGN.md; keep it exactly.
    fn default() -> Self {
        use BackupType::{Diff, Full, Incr};
        Self {
            days: vec![
                vec![Full],
                vec![Incr],
                vec![Incr, Diff],
                vec![Incr],
                vec![Incr, Diff],
                vec![Diff, Full],
            ],
        }
    }
}

impl Cycle {
    /// A cycle of 1 to [`MAX_CYCLE_DAYS`] non-empty days whose very first backup is a full one,
    /// because a diff or incr needs a full backup to depend on.
    pub fn new(days: Vec<Vec<BackupType>>) -> Result<Self, CycleError> {
        if days.is_empty() || days.len() > MAX_CYCLE_DAYS {
            return Err(CycleError::Length { len: days.len() });
        }
        if let Some(day) = days.iter().position(Vec::is_empty) {
            return Err(CycleError::EmptyDay { day: day + 1 });
        }
        let first = days[0][0];
        if first != BackupType::Full {
            return Err(CycleError::NoFullFirst { day: 1, found: first.as_pgbackrest() });
        }
        Ok(Self { days })
    }

    /// Number of days in the cycle.
    pub fn len(&self) -> usize {
        self.days.len()
    }

    /// Always false: a valid cycle has at least one day. Here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// Backups of a 1-based day, in the order they must run.
    pub fn day(&self, day: u32) -> Option<&[BackupType]> {
        let index = usize::try_from(day).ok()?.checked_sub(1)?;
        self.days.get(index).map(Vec::as_slice)
    }

    /// Every day, day 1 first.
    pub fn days(&self) -> &[Vec<BackupType>] {
        &self.days
    }
}

/// Maps scheduled times to cycle days: where the cycle starts and how long a day lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleClock {
    start: DateTime<Tz>,
    day_length: Duration,
}

impl CycleClock {
    /// `start` carries the schedule's time zone, which decides the calendar for 24 h days.
    pub fn new(start: DateTime<Tz>, day_length: Duration) -> Result<Self, CycleError> {
        if day_length < Duration::from_secs(1) {
            return Err(CycleError::DayLengthTooShort);
        }
        Ok(Self { start, day_length })
    }

    /// When day 1 of the first cycle starts.
    pub fn start(&self) -> DateTime<Tz> {
        self.start
    }

    /// Length of one cycle day.
    pub fn day_length(&self) -> Duration {
        self.day_length
    }

    /// Whether days are counted on the local wall clock (whole 24 h days) rather than as
    /// absolute durations.
    pub fn counts_calendar_days(&self) -> bool {
        self.day_length.subsec_nanos() == 0 && self.day_length.as_secs().is_multiple_of(DAY.as_secs())
    }

    /// Whole days elapsed from `cycleStart` to `scheduled`: 0 on the first day.
    pub fn days_elapsed(&self, scheduled: DateTime<Utc>) -> Result<u64, CycleError> {
        let elapsed: TimeDelta = if self.counts_calendar_days() {
            scheduled.with_timezone(&self.start.timezone()).naive_local() - self.start.naive_local()
        } else {
            scheduled - self.start.with_timezone(&Utc)
        };
        let before_start = || CycleError::BeforeStart { scheduled, start: self.start.with_timezone(&Utc) };
        let elapsed = elapsed.to_std().map_err(|_| before_start())?;
        // Fits: a u128 of nanoseconds covers any TimeDelta, and the quotient is below 2^64.
        Ok((elapsed.as_nanos() / self.day_length.as_nanos()) as u64)
    }

    /// The 1-based day of a cycle of `cycle_len` days that `scheduled` belongs to:
    /// `days_elapsed mod cycle_len + 1`.
    pub fn cycle_day(&self, cycle_len: usize, scheduled: DateTime<Utc>) -> Result<u32, CycleError> {
        if cycle_len == 0 || cycle_len > MAX_CYCLE_DAYS {
            return Err(CycleError::Length { len: cycle_len });
        }
        let day = self.days_elapsed(scheduled)? % cycle_len as u64 + 1;
        Ok(day as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BackupType::{Diff, Full, Incr};
    use chrono::TimeZone;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Madrid;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn local(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Tz> {
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0).earliest().unwrap()
    }

    fn daily(start: DateTime<Tz>) -> CycleClock {
        CycleClock::new(start, DAY).unwrap()
    }

    fn day_at(clock: &CycleClock, at: DateTime<Tz>) -> u32 {
        clock.cycle_day(6, at.with_timezone(&Utc)).unwrap()
    }

    #[test]
    fn default_cycle_is_the_design_table() {
        let cycle = Cycle::default();
        assert_eq!(cycle.len(), 6);
        assert_eq!(cycle.day(1), Some(&[Full][..]));
        assert_eq!(cycle.day(2), Some(&[Incr][..]));
        assert_eq!(cycle.day(3), Some(&[Incr, Diff][..]));
        assert_eq!(cycle.day(4), Some(&[Incr][..]));
        assert_eq!(cycle.day(5), Some(&[Incr, Diff][..]));
        assert_eq!(cycle.day(6), Some(&[Diff, Full][..]));
        assert_eq!(cycle.day(0), None);
        assert_eq!(cycle.day(7), None);
        assert_eq!(Cycle::new(cycle.days().to_vec()), Ok(cycle));
    }

    #[test]
    fn default_cycle_matches_the_crd_default() {
        assert_eq!(Cycle::default().days(), crate::crd::backup_schedule::default_cycle().as_slice());
    }

    #[test]
    fn cycle_length_must_be_1_to_31_days() {
        assert_eq!(Cycle::new(vec![]), Err(CycleError::Length { len: 0 }));
        assert_eq!(Cycle::new(vec![vec![Full]; 32]), Err(CycleError::Length { len: 32 }));
        assert_eq!(Cycle::new(vec![vec![Full]]).unwrap().len(), 1);
        assert_eq!(Cycle::new(vec![vec![Full]; 31]).unwrap().len(), 31);
    }

    #[test]
    fn empty_day_is_named() {
        let err = Cycle::new(vec![vec![Full], vec![Incr], vec![], vec![Diff]]).unwrap_err();
        assert_eq!(err, CycleError::EmptyDay { day: 3 });
        assert_eq!(err.to_string(), "day 3 of the cycle has no backups");
    }

    #[test]
    fn cycle_must_open_with_a_full_backup() {
        assert_eq!(
            Cycle::new(vec![vec![Incr], vec![Full]]),
            Err(CycleError::NoFullFirst { day: 1, found: "incr" })
        );
        let err = Cycle::new(vec![vec![Diff, Full]]).unwrap_err();
        assert_eq!(err, CycleError::NoFullFirst { day: 1, found: "diff" });
        assert_eq!(
            err.to_string(),
            "day 1 of the cycle starts with a diff backup; the cycle must open with a full backup"
        );
        assert!(Cycle::new(vec![vec![Full, Incr], vec![Diff]]).is_ok());
    }

    #[test]
    fn day_length_below_one_second_is_refused() {
        let start = local(Madrid, 2025, 1, 1, 0, 0);
        assert_eq!(CycleClock::new(start, Duration::from_millis(999)), Err(CycleError::DayLengthTooShort));
        assert_eq!(CycleClock::new(start, Duration::ZERO), Err(CycleError::DayLengthTooShort));
    }

    #[test]
    fn calendar_counting_only_for_whole_days() {
        let start = local(Madrid, 2025, 1, 1, 0, 0);
        assert!(daily(start).counts_calendar_days());
        assert!(CycleClock::new(start, 2 * DAY).unwrap().counts_calendar_days());
        assert!(!CycleClock::new(start, Duration::from_secs(120)).unwrap().counts_calendar_days());
        assert!(!CycleClock::new(start, Duration::from_secs(36 * 3600)).unwrap().counts_calendar_days());
    }

    #[test]
    fn days_follow_each_other_and_wrap_after_six() {
        let clock = daily(local(Madrid, 2025, 10, 7, 2, 0));
        let days: Vec<u32> = (0..14).map(|d| day_at(&clock, local(Madrid, 2025, 10, 7 + d, 2, 0))).collect();
        assert_eq!(days, vec![1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6, 1, 2]);
    }

    #[test]
    fn day_changes_at_the_time_of_day_of_cycle_start() {
        let clock = daily(local(Madrid, 2025, 10, 7, 14, 37));
        assert_eq!(day_at(&clock, local(Madrid, 2025, 10, 7, 14, 37)), 1);
        // The first 02:00 run after a 14:37 start is still day 1: the full is not skipped.
        assert_eq!(day_at(&clock, local(Madrid, 2025, 10, 8, 2, 0)), 1);
        assert_eq!(day_at(&clock, local(Madrid, 2025, 10, 8, 14, 36)), 1);
        assert_eq!(day_at(&clock, local(Madrid, 2025, 10, 8, 14, 37)), 2);
        assert_eq!(day_at(&clock, local(Madrid, 2025, 10, 9, 2, 0)), 2);
    }

    #[test]
    fn month_end() {
        let clock = daily(local(Madrid, 2025, 1, 29, 2, 0));
        assert_eq!(day_at(&clock, local(Madrid, 2025, 1, 31, 2, 0)), 3);
        assert_eq!(day_at(&clock, local(Madrid, 2025, 2, 1, 2, 0)), 4);
        assert_eq!(day_at(&clock, local(Madrid, 2025, 2, 28, 2, 0)), 1);
        assert_eq!(day_at(&clock, local(Madrid, 2025, 3, 1, 2, 0)), 2);
    }

    #[test]
    fn year_end() {
        let clock = daily(local(New_York, 2025, 12, 28, 2, 0));
        assert_eq!(day_at(&clock, local(New_York, 2025, 12, 31, 2, 0)), 4);
        assert_eq!(day_at(&clock, local(New_York, 2026, 1, 1, 2, 0)), 5);
        assert_eq!(day_at(&clock, local(New_York, 2026, 1, 2, 2, 0)), 6);
        assert_eq!(day_at(&clock, local(New_York, 2026, 1, 3, 2, 0)), 1);
    }

    #[test]
    fn leap_day() {
        let clock =
            CycleClock::new(Utc.with_ymd_and_hms(2024, 2, 26, 0, 0, 0).unwrap().with_timezone(&Tz::UTC), DAY)
                .unwrap();
        assert_eq!(clock.cycle_day(6, utc(2024, 2, 28, 23, 59, 59)).unwrap(), 3);
        assert_eq!(clock.cycle_day(6, utc(2024, 2, 29, 0, 0, 0)).unwrap(), 4);
        assert_eq!(clock.cycle_day(6, utc(2024, 3, 1, 0, 0, 0)).unwrap(), 5);
        assert_eq!(clock.cycle_day(6, utc(2024, 3, 3, 0, 0, 0)).unwrap(), 1);
    }

    #[test]
    fn madrid_spring_forward_does_not_shift_the_cycle() {
        // 2025-03-30 02:00 CET jumps to 03:00 CEST: that day has 23 hours.
        let clock = daily(local(Madrid, 2025, 3, 28, 2, 0));
        assert_eq!(day_at(&clock, local(Madrid, 2025, 3, 29, 2, 0)), 2);
        // 02:00 does not exist on the 30th; cron runs it at 03:00 CEST.
        assert_eq!(day_at(&clock, local(Madrid, 2025, 3, 30, 3, 0)), 3);
        // Only 71 hours after the start, but on the wall clock exactly 3 days.
        let march_31 = local(Madrid, 2025, 3, 31, 2, 0);
        assert_eq!(
            march_31.with_timezone(&Utc) - local(Madrid, 2025, 3, 28, 2, 0).with_timezone(&Utc),
            TimeDelta::hours(71)
        );
        assert_eq!(day_at(&clock, march_31), 4);
    }

    #[test]
    fn madrid_fall_back_does_not_shift_the_cycle() {
        // 2025-10-26 03:00 CEST falls back to 02:00 CET: that day has 25 hours.
        let clock = daily(local(Madrid, 2025, 10, 25, 2, 30));
        assert_eq!(day_at(&clock, local(Madrid, 2025, 10, 26, 2, 30)), 2);
        // The second 02:30 of the 26th (CET) is still day 2.
        let second = Madrid.with_ymd_and_hms(2025, 10, 26, 2, 30, 0).latest().unwrap();
        assert_eq!(day_at(&clock, second), 2);
        assert_eq!(day_at(&clock, local(Madrid, 2025, 10, 27, 2, 30)), 3);
        // 48 h 59 min after the start, which absolute counting would call day 3; on the wall
        // clock it is a minute before the day boundary, so still day 2.
        assert_eq!(day_at(&clock, local(Madrid, 2025, 10, 27, 2, 29)), 2);
    }

    #[test]
    fn new_york_both_transitions() {
        // 2025-03-09: 02:00 EST jumps to 03:00 EDT. 2025-11-02: 02:00 EDT falls back to 01:00 EST.
        let clock = daily(local(New_York, 2025, 3, 8, 1, 0));
        assert_eq!(day_at(&clock, local(New_York, 2025, 3, 9, 1, 0)), 2);
        assert_eq!(day_at(&clock, local(New_York, 2025, 3, 10, 1, 0)), 3);
        assert_eq!(day_at(&clock, local(New_York, 2025, 3, 10, 0, 59)), 2);
        let clock = daily(local(New_York, 2025, 10, 31, 1, 0));
        assert_eq!(day_at(&clock, local(New_York, 2025, 11, 2, 1, 0)), 3);
        let repeated_one_am = New_York.with_ymd_and_hms(2025, 11, 2, 1, 0, 0).latest().unwrap();
        assert_eq!(day_at(&clock, repeated_one_am), 3);
        assert_eq!(day_at(&clock, local(New_York, 2025, 11, 3, 0, 59)), 3);
        assert_eq!(day_at(&clock, local(New_York, 2025, 11, 3, 1, 0)), 4);
    }

    #[test]
    fn short_days_use_absolute_time_even_across_dst() {
        let start = local(Madrid, 2025, 3, 30, 1, 58); // 00:58 UTC, CET
        let clock = CycleClock::new(start, Duration::from_secs(120)).unwrap();
        // 03:00 CEST is 01:00 UTC: two minutes later, although the wall clock moved 62 minutes.
        assert_eq!(clock.cycle_day(6, utc(2025, 3, 30, 1, 0, 0)).unwrap(), 2);
        assert_eq!(clock.cycle_day(6, utc(2025, 3, 30, 0, 59, 59)).unwrap(), 1);
        assert_eq!(clock.cycle_day(6, utc(2025, 3, 30, 1, 8, 0)).unwrap(), 6);
        assert_eq!(clock.cycle_day(6, utc(2025, 3, 30, 1, 10, 0)).unwrap(), 1);
        assert_eq!(clock.days_elapsed(utc(2025, 3, 30, 1, 10, 0)).unwrap(), 6);
    }

    #[test]
    fn before_cycle_start_is_an_error() {
        let clock = daily(local(Madrid, 2025, 10, 7, 2, 0));
        let at = utc(2025, 10, 6, 23, 59, 59);
        assert_eq!(
            clock.cycle_day(6, at),
            Err(CycleError::BeforeStart { scheduled: at, start: utc(2025, 10, 7, 0, 0, 0) })
        );
        assert_eq!(clock.cycle_day(6, utc(2025, 10, 7, 0, 0, 0)), Ok(1));
    }

    #[test]
    fn other_cycle_lengths() {
        let clock = daily(local(Madrid, 2025, 10, 1, 2, 0));
        assert_eq!(clock.cycle_day(1, local(Madrid, 2025, 10, 9, 2, 0).with_timezone(&Utc)), Ok(1));
        assert_eq!(clock.cycle_day(31, local(Madrid, 2025, 10, 31, 2, 0).with_timezone(&Utc)), Ok(31));
        assert_eq!(clock.cycle_day(31, local(Madrid, 2025, 11, 1, 2, 0).with_timezone(&Utc)), Ok(1));
        assert_eq!(clock.cycle_day(0, utc(2025, 11, 1, 0, 0, 0)), Err(CycleError::Length { len: 0 }));
    }
}
