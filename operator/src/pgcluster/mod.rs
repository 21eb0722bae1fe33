//! The PgCluster: validation, pure builders of its children, and status from the database.
//!
//! A reconcile validates ([`validate`], pure), then runs the named stages of [`stages`]:
//! observe → status ([`status`], pure) → failover check ([`failover_check`]) → apply ([`builders`],
//! pure; [`apply`] writes), each reported on its own ([`reconcile`] carries them out).

pub mod applied;
pub mod apply;
pub mod builders;
pub mod certificates;
pub mod connect;
pub mod controller;
pub mod drain;
pub mod failover_check;
pub mod parameters;
pub mod passwords;
pub mod pod_trouble;
pub mod pooler;
pub mod rebuild_push;
pub mod reconcile;
pub mod slots;
pub mod spec_error;
pub mod stages;
pub mod status;
pub mod synchronous;
pub mod synchronous_io;
pub mod topology;
pub mod validate;
pub mod volumes;

#[cfg(test)]
pub(crate) mod test_fixtures;
