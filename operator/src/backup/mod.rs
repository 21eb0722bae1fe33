//! Backups: scheduled on the users' cycle of days, run as Kubernetes Jobs with pgBackRest,
//! recorded in Redis.
//!
//! Pure pieces, exhaustively unit-testable without a cluster: [`cycle`] says which backups a
//! day runs and which day a scheduled time is, [`schedule`] says when a BackupSchedule runs
//! and which Backup objects a run creates, [`schedule_machine`] decides a BackupSchedule's
//! next step, [`machine`] a Backup's and [`transitions`] which of its changes deserve an Event, [`job`] builds its Job and reads it back, [`result`] is
//! what the Job hands back, [`record`] and [`redis_record`] turn a finished Backup into the
//! Redis hash users' scripts read, [`retention`] says which Backups and records expired.
//!
//! I/O at the edges: [`schedule_controller`], [`controller`] and [`observe`] (Kubernetes),
//! [`run`] (`relevo backup-job`, pgBackRest inside the Job's pod), [`redis_io`] and
//! [`redis_target`] (Redis), [`repository`] (`pgbackrest info` on the repo host, for the CLI),
//! [`retention_io`] (both), [`persist`] (the status writes and Events both
//! share).

pub mod controller;
pub mod cycle;
pub mod job;
pub mod machine;
pub mod observe;
pub mod persist;
pub mod record;
pub mod redis_io;
pub mod redis_record;
pub mod redis_target;
pub mod repository;
pub mod result;
pub mod retention;
pub mod retention_io;
pub mod run;
pub mod schedule;
pub mod schedule_controller;
pub mod schedule_machine;
pub mod transitions;
