//! What relevo refuses in a PgCluster spec, field by field: the error of [`super::validate`]
//! and of the parameter merge ([`super::parameters`]), and its Degraded reason.

use crate::duration::DurationError;

use super::topology::SPARE_WAL_SENDERS;

/// Longest PgCluster name: `<name>-9-0` must fit a 63-character hostname, and StatefulSet
/// `<name>-9` plus its 11-character controller-revision-hash suffix must fit a label value.
pub const MAX_CLUSTER_NAME_LEN: usize = 50;

/// A spec relevo refuses. Each variant names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("metadata.name: {name:?} is longer than {MAX_CLUSTER_NAME_LEN} characters")]
    NameTooLong { name: String },

    #[error("spec.postgresql.parameters.{parameter}: owned by relevo ({reason})")]
    OwnedParameter { parameter: String, reason: &'static str },

    #[error(
        "spec.postgresql.parameters.{parameter}: not a parameter name (lower-case letters, digits, _ and one optional '.')"
    )]
    InvalidParameterName { parameter: String },

    #[error("spec.postgresql.parameters.{parameter}: {reason}")]
    InvalidParameterValue { parameter: String, reason: &'static str },

    #[error("spec.postgresql.parameters.{parameter}: {value} is below {minimum} (one per instance plus {spare} for cloning and backups)", spare = SPARE_WAL_SENDERS)]
    TooSmall { parameter: String, value: i64, minimum: i64 },

    #[error("{field}: {source}")]
    InvalidDuration {
        field: &'static str,
        #[source]
        source: DurationError,
    },

    #[error("spec.bootstrap.recovery.source: a cluster cannot be restored from its own backups")]
    RecoveryFromItself,

    #[error("spec.bootstrap: set exactly one of initdb and recovery")]
    AmbiguousBootstrap,

    #[error("spec.redis: set exactly one of managed and external")]
    AmbiguousRedis,

    #[error("spec.replication.synchronous.number: {number} synchronous standbys, but {instances} instances have {} standbys (at least 1, at most spec.instances - 1)", instances - 1)]
    SynchronousNumber { number: i32, instances: i32 },
}

impl SpecError {
    /// Machine-readable reason for the Degraded condition: bounded, CamelCase.
    pub fn reason(&self) -> &'static str {
        match self {
            SpecError::NameTooLong { .. } => "NameTooLong",
            SpecError::OwnedParameter { .. } => "ParameterOwnedByRelevo",
            SpecError::InvalidParameterName { .. } | SpecError::InvalidParameterValue { .. } => {
                "InvalidParameter"
            }
            SpecError::TooSmall { .. } => "ParameterTooSmall",
            SpecError::InvalidDuration { .. } => "InvalidDuration",
            SpecError::RecoveryFromItself => "RecoveryFromItself",
            SpecError::AmbiguousBootstrap => "AmbiguousBootstrap",
            SpecError::AmbiguousRedis => "AmbiguousRedis",
            SpecError::SynchronousNumber { .. } => "InvalidSynchronousNumber",
        }
    }
}
