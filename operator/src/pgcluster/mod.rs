//! The PgCluster: validation, pure builders of its children, and status from the database.
//!
//! Reconcile pipeline: validate ([`validate`]) → build ([`builders`]) → apply → observe →
//! status ([`status`]). Only apply and observe do I/O.

pub mod apply;
pub mod builders;
pub mod controller;
pub mod failover;
pub mod names;
pub mod observe;
pub mod parameters;
pub mod passwords;
pub mod status;
pub mod synchronous;
pub mod synchronous_io;
pub mod topology;
pub mod validate;

#[cfg(test)]
pub(crate) mod test_fixtures;
