//! `relevo pooler`, the program of each PgBouncer pod: it runs PgBouncer, writes its userlist
//! from the mounted Secret, and serves the control channel through which the operator
//! PAUSEs it, points it at a new primary and RESUMEs it; a pause with no RESUME within the
//! bound ends by itself. It depends on [`crate::protocol`], never on operator modules.
//!
//! - `ini`: pure rendering of pgbouncer.ini (template and `[databases]`) and the userlist.
//! - `pause`: the pause bound, a pure state machine.
//! - `admin`: PgBouncer's admin console, over its Unix socket.
//! - `supervisor`: pause, re-point and resume, and the files behind them.
//! - `control`: the mutual-TLS control channel.
//! - `run`: the process: files, PgBouncer child, channel, bound, signals.

pub mod admin;
pub mod control;
pub mod ini;
pub mod pause;
pub mod run;
pub mod supervisor;

pub use run::{PoolerArgs, run};

#[cfg(test)]
mod pg_tests;
