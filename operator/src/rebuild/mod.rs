//! Rebuilding an instance as a standby of a new primary: pg_rewind, falling back to
//! pg_basebackup, in Rust rather than shell.
//!
//! - `plan`: the pure planner (data directory state in, ordered steps out);
//! - `controldata`, `standby_config`: pure parsing and file rewriting;
//! - `process`: running PostgreSQL's tools with deadlines, no shell, no secrets in argv;
//! - `exec`: the executor that inspects, plans and runs.
//!
//! The switchover machine requests a rebuild (`Step::Rebuild`) by setting a marker on the
//! instance; the instance manager (`instance::supervise`) stops PostgreSQL, runs
//! [`exec::Executor::rebuild`] and starts it again as a standby. The integration test in `pg_tests` runs all of it against real PostgreSQL 15.

pub mod controldata;
pub mod exec;
pub mod plan;
pub mod process;
pub mod standby_config;

#[cfg(test)]
mod pg_tests;

pub use exec::{Executor, RebuildReport, RebuildSource, StartMode};
pub use plan::{ClusterState, DataDirState, RebuildInput, RebuildStep, plan};
pub use process::ToolError;
