//! Scheduled backups on the users' cycle of days, and their Redis records.
//!
//! Pure pieces only, so that the cycle, the schedule and the Redis layout are exhaustively
//! unit-testable without a cluster: [`cycle`] says which backups a day runs and which day a
//! scheduled time is, [`schedule`] says when a BackupSchedule runs and which Backup objects a
//! run creates, [`redis_record`] builds the Redis hash users' scripts read. The one piece of
//! I/O, executing Redis commands, is in [`redis_io`].

pub mod cycle;
pub mod redis_io;
pub mod redis_record;
pub mod schedule;
